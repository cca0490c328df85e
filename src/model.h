/*
 * model.h — a loaded model: hyper-parameters, weights (views into the GGUF
 * mapping) and the tokenizer.
 *
 * Owns: reading the architecture's metadata keys and tensor names, and
 * checking every tensor's shape against the configuration, so the forward
 * pass can index weights without further checks.
 *
 * Invariants after wim_model_load: every matrix has the shape the config
 * implies; norms, biases and rope factors are F32 copies; the mapping stays
 * alive until wim_model_free.
 */
#ifndef WIM_MODEL_H
#define WIM_MODEL_H

#include <stdint.h>

#include "gguf.h"
#include "tokenizer.h"
#include "wim.h"

typedef enum { WIM_ARCH_LLAMA, WIM_ARCH_QWEN2, WIM_ARCH_PHI3, WIM_ARCH_GEMMA2 } wim_arch;

/* How positions become rotation angles beyond the base frequencies:
 *  LINEAR   angle = pos * f_i / factor
 *  YARN     per dimension, a ramp between interpolation (f_i / factor) for the
 *           low frequencies and extrapolation (f_i) for the high ones, with
 *           cos/sin scaled by attn_factor * (1 + 0.1 ln factor)  (Peng et al. 2023)
 *  LONGROPE f_i divided by a per-dimension factor from rope_factors_long (when the
 *           context exceeds the original one) or rope_factors_short, cos/sin
 *           scaled by attn_factor (Phi-3 *-128k) */
typedef enum { WIM_ROPE_NONE, WIM_ROPE_LINEAR, WIM_ROPE_YARN, WIM_ROPE_LONGROPE } wim_rope_scaling;

typedef struct {
    wim_arch arch;
    char arch_name[16];
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int n_rot;     /* dimensions rotated by RoPE (<= head_dim) */
    int rope_neox; /* 1: pairs (i, i+n_rot/2) (NEOX); 0: pairs (2i, 2i+1) (NORM) */
    float rope_theta, norm_eps;
    float rope_scale; /* linear or YaRN factor: positions are divided by it (1: none) */
    wim_rope_scaling rope_scaling;
    int rope_orig_ctx;      /* rope.scaling.original_context_length (YaRN, LongRoPE) */
    float rope_attn_factor; /* cos/sin multiplier (LongRoPE; YaRN multiplies its own in) */
    int tied_output;        /* no output.weight: the embedding matrix is reused */
    int sliding_window; /* attention.sliding_window: a query sees the last W positions (0: all) */
    int swa_even_only;  /* gemma2: the window on even layers only (odd layers see everything) */
    /* gemma2: scores and final logits squashed as cap * tanh(v / cap) (0: none), the
     * embedding scaled by sqrt(n_embd), GELU (tanh) gating, norms after attention and FFN */
    float attn_softcap, final_softcap;
} wim_config;

/* A weight matrix: n_out rows of n_in values of `type`, row-major, or with `interleaved`
 * set, rows below n_out - n_out % 8 in groups of 8 (interleave.h). */
typedef struct {
    enum gguf_ttype type;
    int n_in, n_out;
    size_t row_bytes;
    const void *data;
    int interleaved;
} wim_mat;

typedef struct {
    float *attn_norm, *ffn_norm;
    wim_mat wq, wk, wv;  /* separate projections ... */
    wim_mat wqkv;        /* ... or one fused q|k|v (phi3); .data == NULL when absent */
    float *bq, *bk, *bv; /* optional biases (qwen2) */
    wim_mat wo;
    wim_mat w_gate, w_up; /* SwiGLU's two inputs ... */
    wim_mat w_gate_up; /* ... or both in one (phi3): rows gate then up; .data == NULL when absent */
    wim_mat w_down;
    float *post_attn_norm, *post_ffn_norm; /* gemma2; NULL elsewhere */
} wim_layer;

struct wim_model {
    gguf_file *gguf;
    wim_config cfg;
    wim_mat tok_embd, output;
    float *output_norm;
    float *rope_freqs;             /* n_rot/2 divisors of the base frequencies, or NULL */
    float *rope_long, *rope_short; /* LongRoPE's n_rot/2 divisors, or NULL */
    wim_layer *layers;
    wim_tokenizer *tok;
    uint64_t fingerprint;
    int n_interleaved; /* matrices interleaved at load for the kernels (interleave.h) */
};

/* Dequantizes row `row` of m into out[m.n_in]. */
void wim_mat_row(const wim_mat *m, int row, float *out);

#endif
