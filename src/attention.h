/*
 * attention.h — causal attention against the KV cache, fp32, online softmax.
 *
 * Scores are computed a tile of ATTN_TILE cells at a time and folded into a
 * running maximum, sum and weighted value accumulator per query, so scratch
 * is O(ATTN_TILE x (head_dim + queries)) whatever the context length. A tile's
 * K and V are converted to fp32 once for every query that sees the same cells
 * (the heads of a GQA group; in prefill, every token past the tile), and the
 * scores and weighted values of those queries are small products on them
 * (simd.h: attn_load, attn_scores, attn_accum).
 *
 * The tiles are grouped into spans of ATTN_SPAN logical slots. Each span's
 * online softmax starts afresh (attn_span_part), and the spans' states are
 * merged in span order (attn_merge): that is the arithmetic of every query,
 * so a decode step may compute its spans on different threads and merge them
 * after, and get the same bits as one thread walking them in order.
 */
#ifndef WIM_ATTENTION_H
#define WIM_ATTENTION_H

#include "kvcache.h"
#include "simd.h"

#define ATTN_TILE 64
#define ATTN_SPAN 256 /* logical slots per span: a whole number of tiles */

/* A block of queries that share one KV head (the heads of a GQA group, over
 * several tokens of a chunk), so each K/V tile is fetched into cache once for
 * all of them; a query's arithmetic depends only on its own
 * visible cells, so results do not depend on how queries are blocked (and so
 * not on the chunk size or the thread count). scratch holds
 * attn_block_scratch_floats(head_dim, nq) floats. */
#define ATTN_QBLOCK 16 /* tokens per block */

typedef struct {
    const float *q;
    float *out;
    int qpos;
    int branch; /* -1: the trunk; else the KV branch the query belongs to (kvcache.h) */
    /* NULL, or qpos + 1 floats indexed by key position that receive the weights the
     * softmax gave each key, as the values were weighted with (the same exponentials,
     * the same rescalings, the same final division); -1 where the key was not visible */
    float *weights;
} attn_query;

/* The softmax state of nq queries over some of their keys: acc[j * head_dim ..] the
 * values weighted by their exponentials (not yet divided by the sum), max[j] the
 * score those exponentials are taken from, sum[j] their sum. max -inf: no key yet. */
typedef struct {
    float *acc, *max, *sum;
} attn_part;

static inline size_t attn_part_floats(int head_dim, int nq) {
    return (size_t)nq * (head_dim + 2);
}

/* The state carved from attn_part_floats(head_dim, nq) floats at base. */
static inline attn_part attn_part_at(float *base, int head_dim, int nq) {
    attn_part p = {base, base + (size_t)nq * head_dim, base + (size_t)nq * (head_dim + 1)};
    return p;
}

/* Scratch of attn_span_part: a tile's K (transposed) and V in fp32, the queries' scores. */
static inline size_t attn_part_scratch_floats(int head_dim, int max_queries) {
    return 2 * (size_t)ATTN_TILE * head_dim + (size_t)ATTN_TILE * max_queries;
}

/* Scratch of attn_block: attn_span_part's, a span's state and the running one. */
static inline size_t attn_block_scratch_floats(int head_dim, int max_queries) {
    return attn_part_scratch_floats(head_dim, max_queries) +
           2 * attn_part_floats(head_dim, max_queries);
}

/* What a layer's attention looks like beyond the causal mask: window > 0, the
 * model's sliding window (a query at p sees only positions (p - window, p], on
 * top of the cache's own visibility rule); softcap > 0, scores squashed to
 * softcap * tanh(score / softcap) before the softmax (gemma2). */
typedef struct {
    float scale, softcap;
    int window;
} attn_shape;

void attn_block(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
                const attn_query *qs, int nq, attn_shape shape, float *scratch);

/* How many spans of ATTN_SPAN logical slots the queries' keys lie in. */
int attn_spans(const wim_kvcache *kv, const attn_query *qs, int nq);
/* Span s's state for the queries (scratch: attn_part_scratch_floats(head_dim, nq));
 * a traced query's weights get the span's exponentials with the span's own
 * rescalings, and nothing else (attn_block does the rest). */
void attn_span_part(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
                    const attn_query *qs, int nq, attn_shape shape, int s, attn_part part,
                    float *scratch);
/* Folds `part`, the state of the span after those `into` holds, into `into`. */
void attn_merge(attn_part into, attn_part part, int nq, int head_dim);
/* Sets every state to "no key yet". */
void attn_part_clear(attn_part p, int nq, int head_dim);
/* Each query's output: its accumulated values over the sum. */
void attn_finish(attn_part total, const attn_query *qs, int nq, int head_dim);

/* The same result computed the textbook way: all n scores of the query are
 * written to row[kv->n], then softmax, then the weighted sum of values.
 * weights: NULL, or as attn_query's. */
void attn_head_materialized(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh,
                            int head_dim, const float *q, int qpos, attn_shape shape, float *out,
                            float *row, float *weights);

#endif
