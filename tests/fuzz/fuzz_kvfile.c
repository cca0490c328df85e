/*
 * fuzz_kvfile.c — saved documents (KV cache files, wim_doc_load) on arbitrary
 * bytes, for the tiny llama of the model corpus (a few bytes per cell, so the
 * seeds are small): a file loads or is refused with one line, and what
 * loads is consistent (its token count within its capacity, its segments'
 * text inside it). The first byte chooses how the rest is used: as the whole
 * file; or (odd) as a header of 80 bytes then the payload, which the harness
 * compresses and seals with a correct CRC, so the checks past the checksum
 * (geometry, cell layout, the segment table) are reached too.
 */
#include <zlib.h>

#include "fuzz.h"
#include "wim.h"

static wim_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[256];
    const char *path = "tests/fuzz/corpus/fuzz_model/llama-f32.gguf"; /* from the repository */
    if (wim_model_load(path, &model, err, sizeof err)) {
        fprintf(stderr, "fuzz_kvfile: %s\n", err);
        model = NULL;
    }
    return 0;
}

/* The version 2 header: magic[8], version, type (u32), fingerprint (u64), n_layer, kv_dim,
 * capacity, pin, streaming, n, head, next_pos (i32), raw_bytes, zip_bytes (u64), crc,
 * extra_bytes (u32): 80 bytes, the CRC over it (crc zeroed) and the raw payload. */
enum { HDR = 80, OFF_RAW = 56, OFF_ZIP = 64, OFF_CRC = 72 };

static uint8_t *seal(const uint8_t *hdr, const uint8_t *raw, size_t raw_n, size_t *out_n) {
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *f = malloc(HDR + zn);
    if (!f || compress(f + HDR, &zn, raw, (uLong)raw_n) != Z_OK) return free(f), NULL;
    memcpy(f, hdr, HDR);
    uint64_t r = raw_n, z = zn;
    uint32_t crc = 0;
    memcpy(f + OFF_RAW, &r, 8), memcpy(f + OFF_ZIP, &z, 8), memcpy(f + OFF_CRC, &crc, 4);
    uLong c = crc32(crc32(0L, Z_NULL, 0), f, HDR);
    crc = (uint32_t)crc32(c, raw, (uInt)raw_n);
    memcpy(f + OFF_CRC, &crc, 4);
    *out_n = HDR + zn;
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model || size < 1 || size > (1 << 20)) return 0;
    size_t n = size - 1;
    uint8_t *sealed = NULL;
    const uint8_t *file = data + 1;
    if ((data[0] & 1) && n >= HDR) {
        if (!(sealed = seal(data + 1, data + 1 + HDR, n - HDR, &n))) return 0;
        file = sealed;
    }
    char path[64], err[512];
    int fd = fuzz_file(file, n, path);
    if (fd >= 0) {
        wim_ctx_params cp = wim_ctx_default_params();
        cp.n_threads = 1, cp.chunk = 8; /* small scratch: loading is what is tested */
        wim_doc *d;
        if (wim_doc_load(model, path, &cp, &d, err, sizeof err) == 0) {
            FUZZ_ASSERT(wim_doc_tokens(d) >= 0, "negative token count");
            unsigned sum = 0; /* every byte of every segment readable (ASan watches) */
            for (int i = 0; i < wim_doc_segments(d); i++) {
                size_t len;
                const char *s = wim_doc_segment(d, i, &len);
                FUZZ_ASSERT(s != NULL, "segment %d of %d missing", i, wim_doc_segments(d));
                for (size_t k = 0; k < len; k++)
                    sum += (unsigned char)s[k];
            }
            (void)sum;
            wim_doc_free(d);
        } else {
            FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
        }
        close(fd);
    }
    free(sealed);
    return 0;
}
