/*
 * quantize.h — the project's own weight quantizer: float rows to any weight type
 * the engine reads, and the per-tensor choices of the mixed schemes (Q4_K_M ...).
 *
 * Owns: the quantization of one row (simple round-to-nearest with per-block
 * scale/min search, no importance matrix), and the naming of schemes.
 *
 * Invariants: a quantized row always decodes (wim_mat_row) to finite values;
 * the same input gives the same bytes on every machine (scalar code only).
 */
#ifndef WIM_QUANTIZE_H
#define WIM_QUANTIZE_H

#include "gguf.h"

/* A scheme: a base type, and for the _M mixes the tensors that get more bits. */
typedef struct {
    const char *name; /* "q4_k_m", "q8_0", ... */
    enum gguf_ttype base;
    int mix; /* 1: Q4_K_M / Q5_K_M rules (output, some attn_v / ffn_down as Q6_K) */
} wim_qscheme;

/* Looks up a scheme by name (case-insensitive); NULL when unknown. */
const wim_qscheme *wim_qscheme_find(const char *name);

/* The list of scheme names, for usage and error lines ("f32, f16, ..."). */
const char *wim_qscheme_names(void);

/* The type a 2-D weight tensor gets under scheme s. layer is the block index
 * (-1 outside blocks), tied: the embedding also serves as the output matrix.
 * Rows the 256-weight K-quant blocks do not divide fall back to Q5_0 (for Q4_K),
 * Q5_1 (Q5_K) or Q8_0 (Q6_K), as llama-quantize does; rows of no multiple of 32
 * stay F16. */
enum gguf_ttype wim_qscheme_type(const wim_qscheme *s, const char *tensor, int layer, int n_layer,
                                 int tied, int n_in);

/* Quantizes n values (n a multiple of the type's block) into out
 * (gguf_row_bytes(type, n) bytes). F32, F16, BF16 and Q8_0 included. */
void wim_quantize_row(enum gguf_ttype type, const float *x, void *out, int n);

#endif
