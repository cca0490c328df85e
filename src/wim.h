/*
 * wim.h — the public API of the wim engine.
 *
 * A wim_model is read-only after loading and may be shared by any number of
 * wim_ctx (each holds its own KV cache and scratch). Functions that can fail
 * return 0 on success or -1 with one human-readable line in err; none of them
 * exit or abort.
 */
#ifndef WIM_H
#define WIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct wim_model wim_model;
typedef struct wim_ctx wim_ctx;

/* ---- models ---- */
int wim_model_load(const char *path, wim_model **out, char *err, size_t errlen);
void wim_model_free(wim_model *m);
/* Writes a human-readable description (architecture, hyper-parameters,
 * tensor table, memory estimate) to f (a FILE*). */
void wim_model_describe(const wim_model *m, void *file, int with_tensors);

/* ---- contexts: a KV cache plus scratch for one sequence ---- */
enum wim_kv_type { WIM_KV_F16 = 0, WIM_KV_F32 = 1 };

typedef struct {
    int n_threads; /* 0: all cores */
    int n_ctx;     /* KV capacity in tokens; 0: the model's context length */
    int chunk;     /* tokens per forward pass during prefill (default 512) */
    enum wim_kv_type kv_type;
    /* -1: the cache holds at most n_ctx tokens and eval fails beyond. >= 0: it
     * streams past n_ctx as a sliding window that keeps the first kv_pin cells
     * (see kvcache.h); chunk is then limited to n_ctx - kv_pin. */
    int kv_pin;
    /* Reference attention that materialises the full chunk x context score
     * matrix (what the paper's memory argument assumes); for `wim profile`. */
    int attn_materialize;
} wim_ctx_params;

wim_ctx_params wim_ctx_default_params(void);
int wim_ctx_new(const wim_model *m, const wim_ctx_params *p, wim_ctx **out, char *err,
                size_t errlen);
void wim_ctx_free(wim_ctx *c);
/* The absolute position of the next token (tokens fed so far). */
int wim_ctx_pos(const wim_ctx *c);
/* KV capacity in tokens. */
int wim_ctx_capacity(const wim_ctx *c);
/* The thread count the context runs with. */
int wim_ctx_threads(const wim_ctx *c);
/* Forgets the whole sequence (the KV cache becomes empty). */
void wim_ctx_reset(wim_ctx *c);

/* Feeds n tokens at the next positions, in chunks of p.chunk. If logits is not
 * NULL it receives n_vocab floats for the last token, or for every token
 * (n * n_vocab floats) when all_logits is set. */
int wim_eval(wim_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits, char *err,
             size_t errlen);

int wim_model_n_vocab(const wim_model *m);

/* ---- KV snapshots and persistence ----
 * snapshot is O(1) and nests; restore rolls the cache back to the bytes it
 * held at the matching snapshot, so text evaluated in between (a margin)
 * leaves no trace; drop keeps the changes. */
int wim_ctx_snapshot(wim_ctx *c);
int wim_ctx_restore(wim_ctx *c);
int wim_ctx_snapshot_drop(wim_ctx *c);
/* CRC-32 of the live cache (cells and metadata). */
uint32_t wim_ctx_kv_crc(const wim_ctx *c);
/* Saves / loads the cache (zlib, versioned, tied to the model's fingerprint,
 * CRC-checked, written atomically). A failed load leaves the context as it was. */
int wim_ctx_save(const wim_ctx *c, const char *path, char *err, size_t errlen);
int wim_ctx_load(wim_ctx *c, const char *path, char *err, size_t errlen);
/* The capacity and pin a context must be created with to load a saved cache. */
int wim_kv_file_geometry(const char *path, int *capacity, int *pin, char *err, size_t errlen);

/* ---- memory accounting ---- */
typedef struct {
    size_t weights_bytes;   /* tensor bytes in the mapping (not copied) */
    size_t kv_bytes;        /* KV cache now (cells and journal) */
    size_t kv_peak;
    size_t scratch_bytes;   /* working buffers now */
    size_t scratch_peak;    /* largest working set so far */
} wim_mem_report;
void wim_ctx_memory(const wim_ctx *c, wim_mem_report *r);
void wim_ctx_reset_peaks(wim_ctx *c);

/* ---- sampling ----
 * temp == 0: greedy (the first index of the largest logit, so ties go to the
 * lowest id). Otherwise softmax(logits / temp), restricted to the smallest
 * set of most likely tokens whose mass reaches top_p (when top_p < 1), drawn
 * with a seeded generator: the same seed gives the same tokens. */
typedef struct wim_sampler wim_sampler;
wim_sampler *wim_sampler_new(float temp, float top_p, uint64_t seed, int n_vocab);
void wim_sampler_free(wim_sampler *s);
int wim_sample(wim_sampler *s, const float *logits);

#endif
