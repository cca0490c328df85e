/*
 * context.h — the inference context behind the opaque wim_ctx.
 */
#ifndef WIM_CONTEXT_H
#define WIM_CONTEXT_H

#include "kvcache.h"
#include "mem.h"
#include "simd.h"
#include "tiles.h"
#include "wim.h"

struct wim_ctx {
    const wim_model *m;
    wim_ctx_params p;
    const wim_kernels *kern;
    wim_mem mem; /* every allocation below is counted here */
    wim_kvcache kv;
    /* scratch for one chunk of p.chunk tokens */
    float *x, *xb, *xb2, *q, *k, *v, *qkv, *att, *hb, *hb2;
    block_q8_0 *xq;            /* activations quantized for int8 products (or block_q8_K) */
    float *att_scratch;        /* per-thread attention tiles and query lists */
    size_t att_scratch_floats; /* floats of att_scratch per thread */
    size_t att_query_offset;   /* where each thread's query list starts, in floats */
    float *att_spans;    /* a decode step's span states, ATTN_WAVE x n_head queries (forward.c) */
    float *att_total;    /* their merge, SPLIT_TOKENS x n_head queries (attention.h: attn_part) */
    double *inv_freq;    /* RoPE inverse frequencies, every scaling applied */
    float rope_mscale;   /* RoPE cos/sin multiplier (YaRN, LongRoPE; else 1) */
    tile_run *runs;      /* one per thread: the tiles of the product in hand (tiles.h) */
    _Atomic int pass_rc; /* 0, or why the pass in hand fails (forward.c) */
    float *att_scores;   /* the materialised reference's score matrix, while it exists */
    int *slots;          /* KV cells of the tokens in the current chunk */
    int *tok_pos, *tok_branch; /* their positions, and branches (-1: the trunk) */
    void *scratch;             /* the block all of the above are carved from */
    size_t scratch_size;
    wim_trace *trace; /* NULL, or what trunk passes record for a student (wim.h) */
};

/* Branches of the context's cache (kvcache.h: sequences forked from the trunk
 * that see it only below their fork, and never each other). */
int ctx_branches_open(wim_ctx *c, int n, const int *forks, const int *cells, char *err,
                      size_t errlen);
void ctx_branches_close(wim_ctx *c);
/* Feeds n tokens, token i to branch br[i] at that branch's next position
 * (a branch's tokens in order; branches mixed freely), in passes of at most
 * p.chunk tokens. For each i with want[i] set, n_vocab logits go to logits,
 * in token order. A token's results are the bits it would get appended to
 * the trunk at its branch's fork (same kernels, same tiles), except for F32
 * matrices, where OpenBLAS takes passes of 4 rows or more. */
int ctx_eval_branches(wim_ctx *c, const int32_t *tokens, const int *br, int n, const char *want,
                      float *logits, char *err, size_t errlen);

/* wim_ctx_save / wim_ctx_load with extra bytes kept beside the cells (kvcache.h). */
int ctx_save_with(const wim_ctx *c, const char *path, const void *extra, size_t extra_len,
                  char *err, size_t errlen);
int ctx_load_with(wim_ctx *c, const char *path, void **extra, size_t *extra_len, char *err,
                  size_t errlen);
/* kv_file_geometry, refusing a streaming window too large to be believed for model m
 * (the capacity it asks for would be reserved before the file's checksum is verified). */
int ctx_file_geometry(const wim_model *m, const char *path, int *capacity, int *pin, int *streaming,
                      int *cached, char *err, size_t errlen);

#endif
