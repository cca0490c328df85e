#!/usr/bin/env python3
"""Writes a damaged copy of a GGUF file, for tests of what the loader and the engine refuse.

  gguf_patch.py IN OUT --u32 KEY VALUE          a u32 metadata value replaced
  gguf_patch.py IN OUT --f32 TENSOR INDEX VALUE  one value of an F32 tensor replaced (inf, nan)
"""
import struct
import sys

from reference_forward import gguf_layout


def main():
    src, dst, what = sys.argv[1:4]
    buf = bytearray(open(src, "rb").read())
    _, values, infos, data = gguf_layout(bytes(buf))
    if what == "--u32":
        t, off = values[sys.argv[4]]
        assert t == 4, f"{sys.argv[4]} is not a u32"
        struct.pack_into("<I", buf, off, int(sys.argv[5]))
    else:
        name, _, t, off = next(i for i in infos if i[0] == sys.argv[4])
        assert t == 0, f"{name} is not F32"
        struct.pack_into("<f", buf, data + off + 4 * int(sys.argv[5]), float(sys.argv[6]))
    open(dst, "wb").write(buf)


if __name__ == "__main__":
    main()
