/*
 * fuzz_gguf.c — the GGUF reader on arbitrary bytes: it opens them or says why
 * not; what it opens is consistent (every tensor's bytes inside the buffer,
 * every key readable through the typed getters, the strings of arrays inside
 * the buffer), and a tokenizer loads from it or is refused.
 */
#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f;
    char err[256];
    if (gguf_open_buffer(data, size, "fuzz", &f, err, sizeof err)) {
        FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
        return 0;
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const uint8_t *p = t->data;
        FUZZ_ASSERT(p >= data && p + t->nbytes <= data + size, "tensor %llu outside the file",
                    (unsigned long long)i);
        char *name = strndup(t->name.ptr, t->name.len);
        if (name && strlen(name) == t->name.len) /* a name without NUL bytes is found */
            FUZZ_ASSERT(gguf_find_tensor(f, name) != NULL, "tensor '%s' not found", name);
        free(name);
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        char *key = strndup(f->kv[i].key.ptr, f->kv[i].key.len);
        if (!key) continue;
        uint64_t u;
        int64_t s;
        float x;
        int b;
        char *str = NULL;
        enum gguf_vtype et;
        gguf_get_u64(f, key, &u), gguf_get_u32(f, key, (uint32_t *)&b), gguf_get_i64(f, key, &s);
        gguf_get_f32(f, key, &x), gguf_get_bool(f, key, &b), gguf_get_arr(f, key, &et, &u);
        if (gguf_get_str(f, key, &str) == 1) FUZZ_ASSERT(str != NULL, "string without bytes");
        free(str);
        free(key);
    }
    wim_tokenizer *t;
    if (wim_tokenizer_load(f, &t, err, sizeof err) == 0) {
        int32_t ids[64];
        wim_tokenize(t, "Hello, world! 123", 17, 1, 1, ids, 64, err, sizeof err);
        wim_tokenizer_free(t);
    }
    gguf_close(f);
    return 0;
}
