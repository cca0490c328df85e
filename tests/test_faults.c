/*
 * test_faults.c — fault injection: every allocation of the engine's own code
 * fails in turn (linked with -Wl,--wrap for malloc, calloc, realloc and
 * aligned_alloc, so the libraries it calls are left alone), through loading a
 * model, one wim run and saving and loading a document; and every output file
 * meets a full disk (fwrite stops short with ENOSPC). Each must end in one
 * error line, with no crash, no leak (make asan's LeakSanitizer) and nothing
 * half-written under the file's name. WIM_TEST_QUICK steps through every 5th
 * allocation only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "simd.h"
#include "test.h"
#include "wim.h"

/* ---- the failing allocator: the allocation numbered fail_at (from 0) fails ---- */
static long fail_at = -1, n_allocs;
static int full_disk; /* fwrite from the engine stops short with ENOSPC */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
size_t __real_fwrite(const void *p, size_t size, size_t n, FILE *f);

static int fails(void) {
    return fail_at >= 0 && n_allocs++ == fail_at;
}
void *__wrap_malloc(size_t n) {
    return fails() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
    return fails() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
    return fails() ? NULL : __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
    return fails() ? NULL : __real_aligned_alloc(align, n);
}
size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f) {
    if (!full_disk || n == 0 || size == 0) return __real_fwrite(p, size, n, f);
    size_t half = n / 2; /* some of it lands, then the disk is full */
    if (half) __real_fwrite(p, size, half, f);
    errno = ENOSPC;
    return half;
}

static const char *document = "Mary moved to the bathroom. John went to the hallway. "
                              "Daniel picked up the apple there. Sandra journeyed to the garden. "
                              "Mary travelled to the office. Daniel dropped the apple.";

static int one_line(const char *err) {
    return err[0] && !strchr(err, '\n');
}

static long step(void) {
    return getenv("WIM_TEST_QUICK") && *getenv("WIM_TEST_QUICK") ? 5 : 1;
}

static void model_path(char *path, size_t cap) {
    snprintf(path, cap, "%s/models/stories260K.gguf", t_shared());
}

/* Fails allocation k, k + step, ... of f() until a run makes no more allocations than k:
 * each failed run must report one line. *total: how many allocations a whole run makes. */
typedef int (*attempt_fn)(char *err, size_t errlen);
static void every_allocation(attempt_fn f, const char *what, long *total) {
    char err[256];
    *total = -1;
    for (long k = 0;; k += step()) {
        fail_at = k, n_allocs = 0, err[0] = 0;
        int rc = f(err, sizeof err);
        fail_at = -1;
        if (n_allocs <= k) { /* nothing failed: the whole run */
            CHECKF(rc == 0, "%s without a failure: %s", what, err);
            *total = n_allocs;
            return;
        }
        CHECKF(rc == 0 || one_line(err), "%s, allocation %ld failing: rc %d, '%s'", what, k, rc,
               err);
    }
}

static int load_model(char *err, size_t errlen) {
    char path[512];
    model_path(path, sizeof path);
    wim_model *m;
    if (wim_model_load(path, &m, err, errlen)) return -1;
    wim_model_free(m);
    return 0;
}

static wim_model *model;

static wim_run_params params(void) {
    wim_run_params p = wim_run_default_params();
    p.segment_tokens = 24;
    p.margin_tokens = 6;
    p.answer_tokens = 4;
    p.classify_tokens = 3;
    p.chat = "raw";
    p.ctx.chunk = 16;
    p.ctx.n_threads = 1;
    return p;
}

static int run_wim(char *err, size_t errlen) {
    wim_run_params p = params();
    wim_result r;
    if (wim_run(model, document, strlen(document), "Where is Mary?", &p, NULL, NULL, &r, err,
                errlen))
        return -1;
    wim_result_free(&r);
    return 0;
}

static char doc_path[64];

static int save_and_load(char *err, size_t errlen) {
    wim_run_params p = params();
    wim_doc *d, *back;
    if (wim_doc_read(model, document, strlen(document), &p, NULL, NULL, &d, err, errlen)) return -1;
    int rc = wim_doc_save(d, doc_path, err, errlen);
    wim_doc_free(d);
    if (rc || wim_doc_load(model, doc_path, &p.ctx, &back, err, errlen)) return -1;
    wim_doc_free(back);
    return 0;
}

static void test_every_allocation_of_model_loading(void) {
    char path[512];
    model_path(path, sizeof path);
    if (!t_file_exists(path)) SKIP("stories260K.gguf not found under %s", t_shared());
    long n;
    every_allocation(load_model, "loading stories260K", &n);
    t_note("%ld allocations, %s failed once", n, step() > 1 ? "every 5th" : "each");
}

static void test_every_allocation_of_a_run(void) {
    if (!model) SKIP("stories260K.gguf not found under %s", t_shared());
    char err[256];
    run_wim(err, sizeof err); /* OpenMP and the kernels set up before counting */
    long n;
    every_allocation(run_wim, "a wim run", &n);
    t_note("%ld allocations, %s failed once", n, step() > 1 ? "every 5th" : "each");
}

static void test_every_allocation_of_save_and_load(void) {
    if (!model) SKIP("stories260K.gguf not found under %s", t_shared());
    snprintf(doc_path, sizeof doc_path, "/tmp/wim-faults-%d.kv", (int)getpid());
    long n;
    every_allocation(save_and_load, "a document read, saved and loaded", &n);
    unlink(doc_path);
    t_note("%ld allocations, %s failed once", n, step() > 1 ? "every 5th" : "each");
}

/* A full disk under each writer: one line naming the file and the reason, and the name
 * keeps what it had (nothing, or the earlier file). */
static void test_full_disk(void) {
    if (!model) SKIP("stories260K.gguf not found under %s", t_shared());
    char err[256], path[64];
    snprintf(path, sizeof path, "/tmp/wim-faults-%d.kv", (int)getpid());
    unlink(path);
    wim_run_params p = params();
    wim_doc *d;
    CHECKF(wim_doc_read(model, document, strlen(document), &p, NULL, NULL, &d, err, sizeof err) ==
               0,
           "%s", err);
    full_disk = 1;
    int rc = wim_doc_save(d, path, err, sizeof err);
    full_disk = 0;
    struct stat st;
    CHECKF(rc == -1 && strstr(err, "No space left") && one_line(err), "KV save: rc %d, '%s'", rc,
           err);
    CHECKF(stat(path, &st) != 0, "a part file was left at %s", path);
    /* over an earlier file: it stays as it was */
    CHECKF(wim_doc_save(d, path, err, sizeof err) == 0, "%s", err);
    CHECK(stat(path, &st) == 0);
    const off_t size = st.st_size;
    full_disk = 1;
    rc = wim_doc_save(d, path, err, sizeof err);
    full_disk = 0;
    CHECK(rc == -1 && stat(path, &st) == 0 && st.st_size == size);
    wim_doc *back;
    CHECKF(wim_doc_load(model, path, &p.ctx, &back, err, sizeof err) == 0,
           "the earlier file no longer loads: %s", err);
    wim_doc_free(back);
    wim_doc_free(d);
    unlink(path);
    /* the GGUF writer (wim mkmodel, tests) */
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    float data[64] = {0};
    uint64_t ne[2] = {8, 8};
    gguf_writer_add_tensor(w, "t", GGUF_T_F32, 2, ne, data);
    full_disk = 1;
    rc = gguf_writer_write(w, path, err, sizeof err);
    full_disk = 0;
    gguf_writer_free(w);
    CHECKF(rc == -1 && strstr(err, "No space left") && stat(path, &st) != 0,
           "GGUF write: rc %d, '%s'", rc, err);
}

int main(void) {
    char err[256], path[512];
    if (wim_kernels_init(err, sizeof err)) {
        printf("FAIL kernels: %s\n", err);
        return 1;
    }
    model_path(path, sizeof path);
    if (t_file_exists(path) && wim_model_load(path, &model, err, sizeof err)) model = NULL;
    RUN(test_every_allocation_of_model_loading);
    RUN(test_every_allocation_of_a_run);
    RUN(test_every_allocation_of_save_and_load);
    RUN(test_full_disk);
    wim_model_free(model);
    return t_exit();
}
