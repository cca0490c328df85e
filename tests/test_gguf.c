/*
 * test_gguf.c — the GGUF reader rejects every malformed file with a message
 * and never reads out of bounds (run under ASan/UBSan by `make asan`); the
 * writer's output reads back identically.
 */
#include <stdint.h>
#include <unistd.h>

#include "gguf.h"
#include "test.h"

/* A small valid file: a few keys of each kind and three tensors. */
static uint8_t *make_file(size_t *size) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 2);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    const char *toks[] = {"<unk>", "a", "bc"};
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 3);
    float scores[3] = {0, -1, -2};
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 3);
    float a[64 * 2], b[32];
    for (int i = 0; i < 128; i++)
        a[i] = (float)i;
    for (int i = 0; i < 32; i++)
        b[i] = (float)-i;
    uint64_t ne_a[2] = {64, 2}, ne_b[1] = {32};
    gguf_writer_add_tensor(w, "alpha", GGUF_T_F32, 2, ne_a, a);
    gguf_writer_add_tensor(w, "beta", GGUF_T_F32, 1, ne_b, b);
    uint16_t h[64] = {0};
    uint64_t ne_h[1] = {64};
    gguf_writer_add_tensor(w, "gamma", GGUF_T_F16, 1, ne_h, h);
    char path[] = "/tmp/wim-test-gguf-XXXXXX", err[256];
    int fd = mkstemp(path);
    close(fd);
    uint8_t *buf = NULL;
    if (gguf_writer_write(w, path, err, sizeof err) == 0) {
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        *size = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc(*size);
        if (fread(buf, 1, *size, f) != *size) {
            free(buf);
            buf = NULL;
        }
        fclose(f);
    }
    unlink(path);
    gguf_writer_free(w);
    return buf;
}

/* Opens a copy sized exactly to n bytes, so ASan sees any read past it. */
static int open_copy(const uint8_t *src, size_t n, char *err, size_t errlen) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, src, n);
    gguf_file *f;
    int rc = gguf_open_buffer(copy, n, "t.gguf", &f, err, errlen);
    if (rc == 0) gguf_close(f);
    free(copy);
    return rc;
}

static size_t find(const uint8_t *buf, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, needle, k)) return i;
    return 0;
}

static void test_roundtrip(void) {
    size_t n;
    uint8_t *buf = make_file(&n);
    CHECK(buf);
    gguf_file *f;
    char err[256];
    CHECKF(gguf_open_buffer(buf, n, "t.gguf", &f, err, sizeof err) == 0, "%s", err);
    uint32_t u;
    float x;
    int b;
    char *s;
    CHECK(gguf_get_u32(f, "llama.block_count", &u) == 1 && u == 2);
    CHECK(gguf_get_f32(f, "llama.rope.freq_base", &x) == 1 && x == 10000.0f);
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b) == 1 && b == 1);
    CHECK(gguf_get_str(f, "general.architecture", &s) == 1 && !strcmp(s, "llama"));
    free(s);
    CHECK(gguf_get_u32(f, "general.architecture", &u) == -1); /* wrong type */
    CHECK(gguf_get_u32(f, "absent.key", &u) == 0);
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->value.v.arr.n == 3 && kv->value.v.arr.values[2].v.str.len == 2);
    const gguf_tensor *t = gguf_find_tensor(f, "alpha");
    CHECK(t && t->ne[0] == 64 && t->ne[1] == 2 && ((const float *)t->data)[127] == 127.0f);
    CHECK(((uintptr_t)t->data - (uintptr_t)buf) % 32 == 0);
    t = gguf_find_tensor(f, "beta");
    CHECK(t && ((const float *)t->data)[31] == -31.0f);
    gguf_close(f);
    free(buf);
}

static void test_every_truncation_rejected(void) {
    size_t n;
    uint8_t *buf = make_file(&n);
    CHECK(buf);
    char err[256];
    for (size_t cut = 0; cut < n; cut++) {
        err[0] = 0;
        CHECKF(open_copy(buf, cut, err, sizeof err) == -1, "truncated at %zu of %zu was accepted",
               cut, n);
        CHECKF(err[0] && !strchr(err, '\n'), "truncated at %zu: no one-line message", cut);
    }
    CHECK(open_copy(buf, n, err, sizeof err) == 0);
    free(buf);
}

/* Patches a little-endian integer of `width` bytes at off and expects failure
 * with a message containing `expect`. */
static int patched_fails(const uint8_t *buf, size_t n, size_t off, uint64_t v, int width,
                         const char *expect, char *err, size_t errlen) {
    uint8_t *copy = malloc(n);
    memcpy(copy, buf, n);
    memcpy(copy + off, &v, (size_t)width);
    int rc = open_copy(copy, n, err, errlen);
    free(copy);
    return rc == -1 && strstr(err, expect) != NULL;
}

static void test_targeted_corruptions(void) {
    size_t n;
    uint8_t *buf = make_file(&n);
    CHECK(buf);
    char err[256];
    CHECKF(patched_fails(buf, n, 0, 0x46554748, 4, "bad magic", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, 4, 1, 4, "version 1", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, 4, 99, 4, "version 99", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, 8, 1ULL << 60, 8, "tensor count", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, 16, 1ULL << 40, 8, "metadata count", err, sizeof err), "%s", err);
    /* the first key's length */
    CHECKF(patched_fails(buf, n, 24, 1ULL << 50, 8, "length", err, sizeof err), "%s", err);
    /* tensor info of "alpha": name, n_dims(4), ne0(8), ne1(8), type(4), offset(8) */
    size_t a = find(buf, n, "alpha") + 5;
    CHECKF(patched_fails(buf, n, a, 7, 4, "dimensions", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, a + 4, 0, 8, "size 0", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, a + 4, 1ULL << 40, 8, "outside the file", err, sizeof err), "%s",
           err);
    CHECKF(patched_fails(buf, n, a + 12, 1ULL << 62, 8, "overflow", err, sizeof err) ||
               strstr(err, "too large") || strstr(err, "outside"),
           "%s", err);
    CHECKF(patched_fails(buf, n, a + 20, 12, 4, "Q4_K", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, a + 20, 999, 4, "unknown", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, a + 24, 3, 8, "not aligned", err, sizeof err), "%s", err);
    CHECKF(patched_fails(buf, n, a + 24, 1ULL << 40, 8, "outside the file", err, sizeof err), "%s",
           err);
    /* beta moved onto alpha's bytes */
    size_t bt = find(buf, n, "beta") + 4;
    CHECKF(patched_fails(buf, n, bt + 16, 32, 8, "overlap", err, sizeof err), "%s", err);
    /* gamma as Q8_0 with rows of 30 elements: not a whole number of blocks */
    size_t g = find(buf, n, "gamma") + 5;
    uint8_t *copy = malloc(n);
    memcpy(copy, buf, n);
    memcpy(copy + g + 4, &(uint64_t){30}, 8);
    memcpy(copy + g + 12, &(uint32_t){GGUF_T_Q8_0}, 4);
    CHECKF(open_copy(copy, n, err, sizeof err) == -1 && strstr(err, "multiple of the Q8_0 block"),
           "%s", err);
    free(copy);
    g -= 5;
    copy = malloc(n);
    memcpy(copy, buf, n);
    memcpy(copy + g, "alpha", 5);
    CHECK(open_copy(copy, n, err, sizeof err) == -1 && strstr(err, "duplicate tensor name"));
    free(copy);
    free(buf);
}

static void test_duplicate_key_and_alignment(void) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "aaaa", 1);
    gguf_writer_set_u32(w, "bbbb", 2);
    char path[] = "/tmp/wim-test-gguf-XXXXXX", err[256];
    close(mkstemp(path));
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    FILE *f = fopen(path, "rb");
    uint8_t buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unlink(path);
    size_t b = find(buf, n, "bbbb");
    memcpy(buf + b, "aaaa", 4);
    CHECK(open_copy(buf, n, err, sizeof err) == -1 && strstr(err, "duplicate metadata key 'aaaa'"));
    /* an alignment that is not a power of two is refused (the writer never writes one:
     * the key is renamed in the bytes) */
    w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignmenX", 48);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    f = fopen(path, "rb");
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    memcpy(buf + find(buf, n, "general.alignmenX"), "general.alignment", 17);
    CHECK(open_copy(buf, n, err, sizeof err) == -1 && strstr(err, "power of two"));
    /* a general.alignment copied from another file (64) does not make the writer's own
     * file unreadable: it aligns to the default and leaves the key out (fuzzer finding) */
    w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 64);
    const float row[3] = {1, 2, 3};
    const uint64_t ne[1] = {3};
    gguf_writer_add_tensor(w, "a", GGUF_T_F32, 1, ne, row);
    gguf_writer_add_tensor(w, "b", GGUF_T_F32, 1, ne, row);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    gguf_file *gf;
    CHECKF(gguf_open(path, &gf, err, sizeof err) == 0, "%s", err);
    const gguf_tensor *t = gguf_find_tensor(gf, "b");
    CHECK(t && !memcmp(t->data, row, sizeof row));
    gguf_close(gf);
    unlink(path);
}

static void test_random_bytes_never_crash(void) {
    size_t n;
    uint8_t *buf = make_file(&n);
    CHECK(buf);
    unsigned long long s = 42;
    char err[256];
    int accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, buf, n);
        int flips = 1 + (int)(t_rand_next(&s) % 4);
        for (int i = 0; i < flips; i++)
            copy[t_rand_next(&s) % 400 % n] ^= (uint8_t)(1u << (t_rand_next(&s) % 8));
        if (open_copy(copy, n, err, sizeof err) == 0)
            accepted++;
        else
            CHECKF(err[0] && !strchr(err, '\n'), "iteration %d: bad message", iter);
        free(copy);
    }
    /* flips inside tensor data or float values are legitimately accepted */
    CHECK(accepted < 3000);
    free(buf);
}

/* gguf_open reads the file into huge pages (THP "always"/"madvise") or, with
 * WIM_MMAP=1, maps it: the same bytes and tensors either way. */
static void test_read_and_mapped_agree(void) {
    size_t n;
    uint8_t *buf = make_file(&n);
    char path[] = "/tmp/wim-test-gguf-XXXXXX", err[256], line[128] = "";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, buf, n) == (ssize_t)n);
    close(fd);
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    const int huge = thp && fgets(line, sizeof line, thp) && !strstr(line, "[never]");
    if (thp) fclose(thp);
    for (int mapped = 0; mapped < 2; mapped++) {
        if (mapped) setenv("WIM_MMAP", "1", 1);
        gguf_file *f;
        CHECKF(gguf_open(path, &f, err, sizeof err) == 0, "%s", err);
        CHECKF(f->huge_pages == (huge && !mapped), "WIM_MMAP=%d: huge_pages %d", mapped,
               f->huge_pages);
        CHECK(f->size == n && f->mapped >= n && !memcmp(f->base, buf, n));
        const gguf_tensor *t = gguf_find_tensor(f, "alpha");
        CHECK(t && ((const float *)t->data)[127] == 127.0f);
        gguf_close(f);
        unsetenv("WIM_MMAP");
    }
    unlink(path);
    free(buf);
}

static void test_missing_file_and_directory(void) {
    gguf_file *f;
    char err[256];
    CHECK(gguf_open("/nonexistent/model.gguf", &f, err, sizeof err) == -1 &&
          strstr(err, "cannot open"));
    CHECK(gguf_open("/tmp", &f, err, sizeof err) == -1 && strstr(err, "not a regular file"));
}

int main(void) {
    RUN(test_roundtrip);
    RUN(test_every_truncation_rejected);
    RUN(test_targeted_corruptions);
    RUN(test_duplicate_key_and_alignment);
    RUN(test_random_bytes_never_crash);
    RUN(test_read_and_mapped_agree);
    RUN(test_missing_file_and_directory);
    return t_exit();
}
