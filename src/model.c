/*
 * model.c — from a validated GGUF to a wim_model.
 *
 * Reads the hyper-parameters of the `llama`, `qwen2`, `phi3` and `gemma2` architectures
 * from their metadata keys, binds every weight tensor by name and checks its
 * shape. Matrices stay in the mapping (no copy); the small vectors (norms,
 * biases, rope factors) are converted to F32 once.
 */
#include "model.h"
#include "error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "interleave.h"
#include "quants.h"
#include "simd.h"

typedef struct {
    const gguf_file *f;
    char *err;
    size_t errlen;
} loader;

static int lfail(loader *l, const char *fmt, ...) {
    int n = snprintf(l->err, l->errlen, "%s: ", l->f->path);
    if (n >= 0 && (size_t)n < l->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Block b's 32 values of a Q8_0 or Q4_0 .. Q6_K row that starts at p. */
static void dequant_block(enum gguf_ttype type, const uint8_t *p, int b, float *out) {
    if (type == GGUF_T_Q8_0) {
        const block_q8_0 *q = (const block_q8_0 *)p + b;
        const float d = wim_fp16_to_fp32(q->d);
        for (int j = 0; j < QK8_0; j++)
            out[j] = d * q->qs[j];
        return;
    }
    wim_qblock q;
    wim_q_unpack(type, p, b, &q);
    wim_q_dequant(type, &q, out);
}

void wim_mat_row(const wim_mat *m, int row, float *out) {
    const uint8_t *p = (const uint8_t *)m->data + (size_t)row * m->row_bytes;
    switch (m->type) {
    case GGUF_T_F32:
        memcpy(out, p, (size_t)m->n_in * sizeof(float));
        break;
    case GGUF_T_F16:
        for (int i = 0; i < m->n_in; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = wim_fp16_to_fp32(h);
        }
        break;
    case GGUF_T_BF16:
        for (int i = 0; i < m->n_in; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = wim_bf16_to_fp32(h);
        }
        break;
    default: /* Q8_0 and the other quantized types, a 32-weight slice at a time */
        if (m->interleaved && row < m->n_out - m->n_out % 8) {
            /* group row/8 starts where its first row did; each block taken back */
            const int spb = wim_q_is_k(m->type) ? QK_K / 32 : 1; /* slices per block */
            const uint8_t *group = (const uint8_t *)m->data + (size_t)(row & ~7) * m->row_bytes;
            for (int b = 0; b < m->n_in / (32 * spb); b++) {
                uint8_t blk[256];
                wim_x8_block(m->type, group, b, row % 8, blk);
                for (int t = 0; t < spb; t++)
                    dequant_block(m->type, blk, t, out + 32 * (b * spb + t));
            }
            break;
        }
        for (int b = 0; b < m->n_in / 32; b++)
            dequant_block(m->type, p, b, out + 32 * b);
        break;
    }
}

/* Reads "<arch>.<suffix>" as a positive int. required: absent is an error. */
static int get_int(loader *l, const char *arch, const char *suffix, int required, int *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint64_t v;
    int r = gguf_get_u64(l->f, key, &v);
    if (r == 0 && !required) return 0;
    if (r == 0) return lfail(l, "missing metadata key %s", key);
    if (r < 0 || v == 0 || v > (1u << 30))
        return lfail(l, "metadata key %s has an invalid value", key);
    *out = (int)v;
    return 0;
}

static int get_float(loader *l, const char *arch, const char *suffix, float *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int r = gguf_get_f32(l->f, key, out);
    if (r < 0 || (r == 1 && !(*out > 0)))
        return lfail(l, "metadata key %s has an invalid value", key);
    return 0;
}

static int bind_mat(loader *l, const char *name, int n_in, int n_out, int optional, wim_mat *m) {
    memset(m, 0, sizeof *m);
    const gguf_tensor *t = gguf_find_tensor(l->f, name);
    if (!t) return optional ? 0 : lfail(l, "missing tensor %s", name);
    if (t->n_dims > 2 || t->ne[0] != (uint64_t)n_in || t->ne[1] != (uint64_t)n_out)
        return lfail(l, "tensor %s has shape [%llu, %llu], expected [%d, %d]", name,
                     (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], n_in, n_out);
    if (t->type == GGUF_T_Q8_0 && n_in % QK8_0)
        return lfail(l, "tensor %s: Q8_0 rows must be a multiple of 32", name);
    m->type = t->type;
    m->n_in = n_in;
    m->n_out = n_out;
    m->row_bytes = gguf_row_bytes(t->type, (uint64_t)n_in);
    m->data = t->data;
    return 0;
}

/* Binds a vector tensor of n values and converts it to a malloc'd F32 array. */
static int bind_vec(loader *l, const char *name, int n, int optional, float **out) {
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(l->f, name);
    if (!t) return optional ? 0 : lfail(l, "missing tensor %s", name);
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)n)
        return lfail(l, "tensor %s has %llu values, expected %d", name,
                     (unsigned long long)t->ne[0], n);
    wim_mat m = {t->type, n, 1, gguf_row_bytes(t->type, (uint64_t)n), t->data, 0};
    if (!(*out = malloc((size_t)n * sizeof(float)))) return lfail(l, "out of memory");
    wim_mat_row(&m, 0, *out);
    return 0;
}

static int read_config(loader *l, wim_config *c) {
    char *arch = NULL;
    if (gguf_get_str(l->f, "general.architecture", &arch) != 1)
        return lfail(l, "missing or invalid general.architecture (is this a model file?)");
    if (!strcmp(arch, "llama"))
        c->arch = WIM_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2"))
        c->arch = WIM_ARCH_QWEN2;
    else if (!strcmp(arch, "phi3"))
        c->arch = WIM_ARCH_PHI3;
    else if (!strcmp(arch, "gemma2"))
        c->arch = WIM_ARCH_GEMMA2;
    else {
        lfail(l, "architecture '%s' is not supported (llama, qwen2, phi3, gemma2 are)", arch);
        free(arch);
        return -1;
    }
    snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
    free(arch);
    const char *a = c->arch_name;
    if (get_int(l, a, "embedding_length", 1, &c->n_embd) ||
        get_int(l, a, "block_count", 1, &c->n_layer) ||
        get_int(l, a, "attention.head_count", 1, &c->n_head) ||
        get_int(l, a, "feed_forward_length", 1, &c->n_ff))
        return -1;
    c->n_head_kv = c->n_head;
    c->n_ctx_train = 2048;
    if (get_int(l, a, "attention.head_count_kv", 0, &c->n_head_kv) ||
        get_int(l, a, "context_length", 0, &c->n_ctx_train))
        return -1;
    if (c->n_embd % c->n_head) return lfail(l, "embedding length not divisible by head count");
    if (c->n_head % c->n_head_kv)
        return lfail(l, "head count %d not divisible by KV head count %d", c->n_head, c->n_head_kv);
    c->head_dim = c->n_embd / c->n_head;
    if (get_int(l, a, "attention.key_length", 0, &c->head_dim)) return -1;
    int value_dim = c->head_dim;
    if (get_int(l, a, "attention.value_length", 0, &value_dim)) return -1;
    if (value_dim != c->head_dim)
        return lfail(l, "value head size %d differs from key head size %d (not supported)",
                     value_dim, c->head_dim);
    if (get_int(l, a, "attention.sliding_window", 0, &c->sliding_window)) return -1;
    if (c->arch == WIM_ARCH_GEMMA2) {
        c->swa_even_only = 1;
        if (get_float(l, a, "attn_logit_softcapping", &c->attn_softcap) ||
            get_float(l, a, "final_logit_softcapping", &c->final_softcap))
            return -1;
    }
    c->n_rot = c->head_dim;
    if (get_int(l, a, "rope.dimension_count", 0, &c->n_rot)) return -1;
    if (c->n_rot > c->head_dim || c->n_rot % 2)
        return lfail(l, "rope dimension count %d is invalid for head size %d", c->n_rot,
                     c->head_dim);
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    if (get_float(l, a, "rope.freq_base", &c->rope_theta) ||
        get_float(l, a, "attention.layer_norm_rms_epsilon", &c->norm_eps))
        return -1;
    c->rope_neox = c->arch != WIM_ARCH_LLAMA;
    char key[96];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    char *scaling = NULL;
    c->rope_scale = 1.0f;
    c->rope_scaling = WIM_ROPE_NONE;
    c->rope_attn_factor = 0.0f; /* 0: not given */
    c->rope_orig_ctx = c->n_ctx_train;
    if (gguf_get_str(l->f, key, &scaling) == 1 && strcmp(scaling, "none") != 0) {
        if (!strcmp(scaling, "linear"))
            c->rope_scaling = WIM_ROPE_LINEAR;
        else if (!strcmp(scaling, "yarn"))
            c->rope_scaling = WIM_ROPE_YARN;
        else if (!strcmp(scaling, "longrope"))
            c->rope_scaling = WIM_ROPE_LONGROPE; /* the factor tensors decide below */
        else {
            lfail(l, "rope scaling '%s' is not supported (none, linear, yarn, longrope are)",
                  scaling);
            free(scaling);
            return -1;
        }
        snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
        if (c->rope_scaling != WIM_ROPE_LONGROPE &&
            (gguf_get_f32(l->f, key, &c->rope_scale) != 1 || !(c->rope_scale > 0))) {
            lfail(l, "rope scaling '%s' needs a positive %s", scaling, key);
            free(scaling);
            return -1;
        }
    }
    free(scaling);
    if (get_int(l, a, "rope.scaling.original_context_length", 0, &c->rope_orig_ctx) ||
        get_float(l, a, "rope.scaling.attn_factor", &c->rope_attn_factor))
        return -1;
    return 0;
}

/* LongRoPE: both factor tensors, or neither; the attention factor defaults to
 * Phi-3's sqrt(1 + ln(s) / ln(original context)), s = context / original. */
static int bind_longrope(loader *l, wim_model *m) {
    wim_config *c = &m->cfg;
    if (bind_vec(l, "rope_factors_long.weight", c->n_rot / 2, 1, &m->rope_long) ||
        bind_vec(l, "rope_factors_short.weight", c->n_rot / 2, 1, &m->rope_short))
        return -1;
    if (!m->rope_long != !m->rope_short)
        return lfail(l,
                     "LongRoPE needs both rope_factors_long.weight and rope_factors_short.weight");
    if (!m->rope_long) {
        if (c->rope_scaling == WIM_ROPE_LONGROPE)
            return lfail(l, "rope scaling 'longrope' without rope_factors_long/short tensors");
        return 0;
    }
    if (c->rope_scaling != WIM_ROPE_NONE && c->rope_scaling != WIM_ROPE_LONGROPE)
        return lfail(l, "rope_factors_long/short tensors with another rope scaling type");
    for (int i = 0; i < c->n_rot / 2; i++)
        if (!(m->rope_long[i] > 0) || !(m->rope_short[i] > 0))
            return lfail(l, "rope factor %d is not a positive number", i);
    c->rope_scaling = WIM_ROPE_LONGROPE;
    if (c->rope_attn_factor == 0.0f) {
        double s = (double)c->n_ctx_train / c->rope_orig_ctx;
        c->rope_attn_factor = s > 1 ? (float)sqrt(1 + log(s) / log(c->rope_orig_ctx)) : 1.0f;
    }
    return 0;
}

static int bind_layer(loader *l, const wim_config *c, int i, wim_layer *L) {
    char n[96];
    int d = c->n_embd, qd = c->n_head * c->head_dim, kvd = c->n_head_kv * c->head_dim;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if (bind_vec(l, NAME("attn_norm.weight"), d, 0, &L->attn_norm) ||
        bind_vec(l, NAME("ffn_norm.weight"), d, 0, &L->ffn_norm) ||
        bind_mat(l, NAME("attn_qkv.weight"), d, qd + 2 * kvd, 1, &L->wqkv))
        return -1;
    if (!L->wqkv.data && (bind_mat(l, NAME("attn_q.weight"), d, qd, 0, &L->wq) ||
                          bind_mat(l, NAME("attn_k.weight"), d, kvd, 0, &L->wk) ||
                          bind_mat(l, NAME("attn_v.weight"), d, kvd, 0, &L->wv)))
        return -1;
    if (bind_vec(l, NAME("attn_q.bias"), qd, 1, &L->bq) ||
        bind_vec(l, NAME("attn_k.bias"), kvd, 1, &L->bk) ||
        bind_vec(l, NAME("attn_v.bias"), kvd, 1, &L->bv) ||
        bind_mat(l, NAME("attn_output.weight"), qd, d, 0, &L->wo) ||
        bind_mat(l, NAME("ffn_gate.weight"), d, c->n_ff, 1, &L->w_gate))
        return -1;
    const int fused = !L->w_gate.data; /* no ffn_gate: ffn_up holds gate|up */
    if (bind_mat(l, NAME("ffn_up.weight"), d, fused ? 2 * c->n_ff : c->n_ff, 0,
                 fused ? &L->w_gate_up : &L->w_up) ||
        bind_mat(l, NAME("ffn_down.weight"), c->n_ff, d, 0, &L->w_down))
        return -1;
    if (c->arch == WIM_ARCH_GEMMA2 &&
        (bind_vec(l, NAME("post_attention_norm.weight"), d, 0, &L->post_attn_norm) ||
         bind_vec(l, NAME("post_ffw_norm.weight"), d, 0, &L->post_ffn_norm)))
        return -1;
#undef NAME
    return 0;
}

void wim_model_free(wim_model *m) {
    if (!m) return;
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layer; i++) {
            wim_layer *L = &m->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->post_attn_norm);
            free(L->post_ffn_norm);
        }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freqs);
    free(m->rope_long);
    free(m->rope_short);
    wim_tokenizer_free(m->tok);
    gguf_close(m->gguf);
    free(m);
}

/* A layer's matrices (its 9 slots, unbound ones included). */
#define LAYER_MATS 9
static void layer_mats(const wim_layer *L, wim_mat **out) {
    wim_layer *l = (wim_layer *)L;
    wim_mat *mats[LAYER_MATS] = {&l->wq,     &l->wk,   &l->wv,        &l->wqkv,  &l->wo,
                                 &l->w_gate, &l->w_up, &l->w_gate_up, &l->w_down};
    memcpy(out, mats, sizeof mats);
}

/* The matrix a decode step reads whose bytes start at data (the output, which is
 * token_embd when tied, or a layer's), or NULL. */
static const wim_mat *decode_mat_at(const wim_model *m, const void *data) {
    if (m->output.data == data) return &m->output;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        wim_mat *mats[LAYER_MATS];
        layer_mats(&m->layers[l], mats);
        for (int i = 0; i < LAYER_MATS; i++)
            if (mats[i]->data == data) return mats[i];
    }
    return NULL;
}

static int interleave_mat(wim_model *m, wim_mat *w) {
    if (!w->data || !wim_x8_type(w->type) || w->n_out < 8) return 0;
    if (wim_interleave(w->type, (void *)w->data, w->n_out, w->n_in)) return -1;
    w->interleaved = 1;
    m->n_interleaved++;
    return 0;
}

/* Interleaves the quantized matrices a decode step reads when the kernel table asks for
 * it (interleave.h): their decode GEMV then needs no horizontal sums (Q8_0's in-cache
 * rate 2.7x with AVX-512 VNNI).  Only in bytes of our own (gguf.c's
 * huge-page copy): a file mapping would turn every written page into private memory of
 * a model that was mapped because it is large.  WIM_INTERLEAVE=0 keeps the file's
 * layout.  On one thread (about 0.2 s per GB): OpenMP's thread pool started here would
 * not survive the fork of `wim profile`'s children, whose first parallel region hangs. */
static int interleave_weights(loader *l, wim_model *m) {
    const gguf_file *g = m->gguf;
    const char *env = getenv("WIM_INTERLEAVE");
    if (!wim_kernels_get()->interleave || !g->huge_pages || (env && !strcmp(env, "0"))) return 0;
    int failed = mprotect((void *)g->base, g->mapped, PROT_READ | PROT_WRITE) ||
                 interleave_mat(m, &m->output);
    for (int i = 0; i < m->cfg.n_layer && !failed; i++) {
        wim_mat *mats[LAYER_MATS];
        layer_mats(&m->layers[i], mats);
        for (int j = 0; j < LAYER_MATS && !failed; j++)
            failed = interleave_mat(m, mats[j]);
    }
    if (mprotect((void *)g->base, g->mapped, PROT_READ) || failed)
        return lfail(l, "out of memory interleaving the weights");
    if (m->cfg.tied_output) m->tok_embd.interleaved = m->output.interleaved;
    return 0;
}

int wim_model_load(const char *path, wim_model **out, char *err, size_t errlen) {
    *out = NULL;
    wim_model *m = calloc(1, sizeof *m);
    if (!m) {
        return wim_errorf(err, errlen, "%s: out of memory", path);
    }
    if (gguf_open(path, &m->gguf, err, errlen)) {
        free(m);
        return -1;
    }
    loader l = {m->gguf, err, errlen};
    wim_config *c = &m->cfg;
    if (read_config(&l, c)) goto fail;
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) {
        lfail(&l, "missing tensor token_embd.weight");
        goto fail;
    }
    if (emb->ne[1] > (1u << 24) || emb->ne[1] < 2) {
        lfail(&l, "token_embd.weight has an implausible vocabulary of %llu rows",
              (unsigned long long)emb->ne[1]);
        goto fail;
    }
    c->n_vocab = (int)emb->ne[1];
    if (bind_mat(&l, "token_embd.weight", c->n_embd, c->n_vocab, 0, &m->tok_embd) ||
        bind_vec(&l, "output_norm.weight", c->n_embd, 0, &m->output_norm) ||
        bind_mat(&l, "output.weight", c->n_embd, c->n_vocab, 1, &m->output) ||
        bind_vec(&l, "rope_freqs.weight", c->n_rot / 2, 1, &m->rope_freqs) || bind_longrope(&l, m))
        goto fail;
    if (c->rope_attn_factor == 0.0f) c->rope_attn_factor = 1.0f;
    if (!m->output.data) {
        c->tied_output = 1;
        m->output = m->tok_embd;
    }
    /* every layer has a few tensors: a block count the tensor table cannot hold is a
     * corrupt header, refused before any per-layer memory is reserved */
    if ((uint64_t)c->n_layer * 4 > m->gguf->n_tensors) {
        lfail(&l, "%s.block_count = %d, but the file holds only %llu tensors", c->arch_name,
              c->n_layer, (unsigned long long)m->gguf->n_tensors);
        goto fail;
    }
    if (!(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers))) {
        lfail(&l, "out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_layer; i++)
        if (bind_layer(&l, c, i, &m->layers[i])) goto fail;
    if (wim_tokenizer_load(m->gguf, &m->tok, err, errlen)) goto fail;
    if (wim_tokenizer_n_vocab(m->tok) > c->n_vocab) {
        lfail(&l, "tokenizer has %d tokens but the embedding only %d rows",
              wim_tokenizer_n_vocab(m->tok), c->n_vocab);
        goto fail;
    }
    m->fingerprint = gguf_fingerprint(m->gguf);
    if (interleave_weights(&l, m)) goto fail;
    *out = m;
    return 0;
fail:
    wim_model_free(m);
    return -1;
}

int wim_model_tensor_shape(const wim_model *m, const char *name, int *n_in, int *n_rows) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t || t->n_dims > 2 || t->ne[0] > (1u << 30) || t->ne[1] > (1u << 30)) return -1;
    *n_in = (int)t->ne[0];
    *n_rows = (int)t->ne[1];
    return 0;
}

void wim_model_tensor_row(const wim_model *m, const char *name, int row, float *out) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    wim_mat mat = {
        t->type, (int)t->ne[0], (int)t->ne[1], gguf_row_bytes(t->type, t->ne[0]), t->data, 0};
    const wim_mat *bound = decode_mat_at(m, t->data);
    if (bound) mat.interleaved = bound->interleaved;
    wim_mat_row(&mat, row, out);
}

int wim_model_n_vocab(const wim_model *m) {
    return m->cfg.n_vocab;
}

int wim_model_n_layer(const wim_model *m) {
    return m->cfg.n_layer;
}

static size_t mat_bytes(const wim_mat *w) {
    return w->data ? (size_t)w->n_out * w->row_bytes : 0;
}

size_t wim_model_decode_bytes(const wim_model *m) {
    size_t n = mat_bytes(m->cfg.tied_output ? &m->tok_embd : &m->output);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        wim_mat *mats[LAYER_MATS];
        layer_mats(&m->layers[l], mats);
        for (int i = 0; i < LAYER_MATS; i++)
            n += mat_bytes(mats[i]);
    }
    return n;
}

int wim_model_n_head(const wim_model *m) {
    return m->cfg.n_head;
}

int wim_model_n_ctx(const wim_model *m) {
    return m->cfg.n_ctx_train;
}

void wim_model_describe(const wim_model *m, void *file, int with_tensors) {
    FILE *fp = file;
    const wim_config *c = &m->cfg;
    const gguf_file *g = m->gguf;
    char *name = NULL;
    gguf_get_str(g, "general.name", &name);
    fprintf(fp, "file           %s (GGUF v%u, %zu bytes)\n", g->path, g->version, g->size);
    if (name) fprintf(fp, "name           %s\n", name);
    free(name);
    fprintf(fp, "architecture   %s\n", c->arch_name);
    fprintf(fp, "vocabulary     %d\n", c->n_vocab);
    fprintf(fp, "embedding      %d\n", c->n_embd);
    fprintf(fp, "layers         %d\n", c->n_layer);
    fprintf(fp, "heads          %d (KV heads %d, head size %d%s)\n", c->n_head, c->n_head_kv,
            c->head_dim, c->n_head != c->n_head_kv ? ", GQA" : "");
    fprintf(fp, "feed-forward   %d\n", c->n_ff);
    if (c->sliding_window)
        fprintf(fp, "attention      sliding window of %d tokens%s\n", c->sliding_window,
                c->swa_even_only ? " on even layers" : "");
    if (c->attn_softcap > 0 || c->final_softcap > 0)
        fprintf(fp, "soft-capping   scores %g, logits %g\n", c->attn_softcap, c->final_softcap);
    fprintf(fp, "context        %d\n", c->n_ctx_train);
    fprintf(fp, "rope           %s, %d dims, theta %g%s", c->rope_neox ? "neox" : "norm", c->n_rot,
            c->rope_theta, m->rope_freqs ? ", rope_freqs" : "");
    if (c->rope_scaling == WIM_ROPE_LINEAR) fprintf(fp, ", linear scaling x%g", c->rope_scale);
    if (c->rope_scaling == WIM_ROPE_YARN)
        fprintf(fp, ", YaRN x%g from %d tokens", c->rope_scale, c->rope_orig_ctx);
    if (c->rope_scaling == WIM_ROPE_LONGROPE)
        fprintf(fp, ", LongRoPE (long factors past %d tokens)", c->rope_orig_ctx);
    if (c->rope_attn_factor != 1.0f) fprintf(fp, ", attention factor %g", c->rope_attn_factor);
    fprintf(fp, "\n");
    fprintf(fp, "rms epsilon    %g\n", c->norm_eps);
    fprintf(fp, "output         %s\n", c->tied_output ? "tied to token_embd" : "output.weight");
    uint64_t counts[31] = {0}, tensors[31] = {0}, bytes = 0, params = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        counts[t->type] += n;
        tensors[t->type]++;
        params += n;
        bytes += t->nbytes;
    }
    fprintf(fp, "tensors        %llu (", (unsigned long long)g->n_tensors);
    const char *tsep = "";
    for (int t = 0; t < 31; t++)
        if (tensors[t]) {
            fprintf(fp, "%s%s x %llu", tsep, gguf_ttype_name((enum gguf_ttype)t),
                    (unsigned long long)tensors[t]);
            tsep = ", ";
        }
    fprintf(fp, ")\n");
    fprintf(fp, "parameters     %llu (", (unsigned long long)params);
    const char *sep = "";
    for (int t = 0; t < 31; t++)
        if (counts[t]) {
            fprintf(fp, "%s%s %llu", sep, gguf_ttype_name((enum gguf_ttype)t),
                    (unsigned long long)counts[t]);
            sep = ", ";
        }
    fprintf(fp, ")\n");
    size_t kv_per_tok = (size_t)2 * c->n_layer * c->n_head_kv * c->head_dim;
    fprintf(fp,
            "memory         weights %.1f MiB (%s); KV cache %.1f KiB/token in f16, "
            "%.1f MiB at the full context of %d\n",
            bytes / 1048576.0,
            !g->huge_pages     ? "mapped"
            : m->n_interleaved ? "read into huge pages, rows interleaved by 8"
                               : "read into huge pages",
            kv_per_tok * 2 / 1024.0, kv_per_tok * 2.0 * c->n_ctx_train / 1048576.0, c->n_ctx_train);
    fprintf(fp, "decode         reads %.1f MiB of weights per token\n",
            wim_model_decode_bytes(m) / 1048576.0);
    fprintf(fp, "fingerprint    %016llx\n", (unsigned long long)m->fingerprint);
    if (!with_tensors) return;
    fprintf(fp, "\n%-5s %-32s %-5s %-24s %12s\n", "#", "tensor", "type", "shape", "bytes");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char shape[64];
        int n = snprintf(shape, sizeof shape, "[%llu", (unsigned long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && n < (int)sizeof shape; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, ", %llu",
                          (unsigned long long)t->ne[d]);
        if (n < (int)sizeof shape) snprintf(shape + n, sizeof shape - (size_t)n, "]");
        fprintf(fp, "%-5llu %-32.*s %-5s %-24s %12llu\n", (unsigned long long)i, (int)t->name.len,
                t->name.ptr, gguf_ttype_name(t->type), shape, (unsigned long long)t->nbytes);
    }
}
