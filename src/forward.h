/*
 * forward.h — the inference context behind the opaque wim_ctx.
 */
#ifndef WIM_FORWARD_H
#define WIM_FORWARD_H

#include "kvcache.h"
#include "mem.h"
#include "simd.h"
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
    double *inv_freq;          /* RoPE inverse frequencies, every scaling applied */
    float rope_mscale;         /* RoPE cos/sin multiplier (YaRN, LongRoPE; else 1) */
    int *slots;                /* KV cells of the tokens in the current chunk */
    void *scratch;             /* the block all of the above are carved from */
    size_t scratch_size;
};

#endif
