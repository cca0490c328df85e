#!/usr/bin/env python3
"""Writes a damaged copy of a GGUF file, for tests of what the loader and the engine refuse.

  gguf_patch.py IN OUT --u32 KEY VALUE          a u32 metadata value replaced
  gguf_patch.py IN OUT --f32 TENSOR INDEX VALUE  one value of an F32 tensor replaced (inf, nan)
"""
import struct
import sys

from reference_forward import Reader


def layout(buf):
    """Where each u32 metadata value and each tensor's data start."""
    r = Reader(buf)
    r.off = 4
    r.scalar("I")
    n_t, n_kv = r.scalar("Q"), r.scalar("Q")
    values, meta = {}, {}
    for _ in range(n_kv):
        k = r.string()
        t = r.scalar("I")
        values[k] = (t, r.off)
        meta[k] = r.value(t)
    infos = []
    for _ in range(n_t):
        name = r.string()
        ne = [r.scalar("Q") for _ in range(r.scalar("I"))]
        infos.append((name, r.scalar("I"), r.scalar("Q")))
    align = meta.get("general.alignment", 32)
    data = (r.off + align - 1) // align * align
    return values, {name: (t, data + off) for name, t, off in infos}


def main():
    src, dst, what = sys.argv[1:4]
    buf = bytearray(open(src, "rb").read())
    values, tensors = layout(bytes(buf))
    if what == "--u32":
        t, off = values[sys.argv[4]]
        assert t == 4, f"{sys.argv[4]} is not a u32"
        struct.pack_into("<I", buf, off, int(sys.argv[5]))
    else:
        t, off = tensors[sys.argv[4]]
        assert t == 0, f"{sys.argv[4]} is not F32"
        struct.pack_into("<f", buf, off + 4 * int(sys.argv[5]), float(sys.argv[6]))
    open(dst, "wb").write(buf)


if __name__ == "__main__":
    main()
