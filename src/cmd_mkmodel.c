/*
 * cmd_mkmodel.c — `wim mkmodel`: writes a random-weight GGUF model.
 *
 * Tests and benchmarks need models of every architecture, weight type and
 * shape without downloading any. Weights come from a seeded generator (same
 * arguments, same file), scaled so activations stay O(1) through the layers;
 * the tokenizer metadata is copied from a vocab-only GGUF.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf.h"
#include "quantize.h"

typedef struct {
    const char *arch, *out, *vocab;
    const wim_qscheme *scheme;
    long dim, layers, heads, kv_heads, ff, ctx, seed;
    double theta, rope_scale, rope_yarn, rope_attn_factor, attn_softcap, final_softcap;
    long rope_orig_ctx, head_dim, sliding_window;
    int tied, rope_freqs, qkv_bias, fused, longrope;
} mk_opts;

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static float rng_uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((rng_next(s) >> 40) / 8388608.0 - 1.0);
}

/* The block index in a tensor name ("blk.7.attn_v.weight" -> 7), or -1. */
static int layer_of(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

/* Adds an [n_in, n_out] matrix (n_out rows of n_in) of the type the scheme gives it. */
static int add_matrix(gguf_writer *w, const mk_opts *o, const char *name, int n_in, int n_out,
                      float scale, uint64_t *rng) {
    enum gguf_ttype t =
        wim_qscheme_type(o->scheme, name, layer_of(name), (int)o->layers, o->tied, n_in);
    size_t n = (size_t)n_in * n_out, rb = gguf_row_bytes(t, (uint64_t)n_in);
    float *f = malloc(n * sizeof *f);
    uint8_t *data = malloc(rb * n_out + 1);
    if (!f || !data) {
        free(f);
        free(data);
        return cli_error("mkmodel: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        f[i] = scale * rng_uniform(rng);
    for (int r = 0; r < n_out; r++)
        wim_quantize_row(t, f + (size_t)r * n_in, data + (size_t)r * rb, n_in);
    uint64_t ne[2] = {(uint64_t)n_in, (uint64_t)n_out};
    gguf_writer_add_tensor(w, name, t, 2, ne, data);
    free(f);
    free(data);
    return 0;
}

/* Vectors (norms, biases, rope factors) are always F32, as converters write them. */
static void add_vector(gguf_writer *w, const char *name, int n, float base, float spread,
                       uint64_t *rng) {
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return; /* the writer reports the missing tensor as a load error later */
    for (int i = 0; i < n; i++)
        v[i] = base + spread * rng_uniform(rng);
    uint64_t ne[1] = {(uint64_t)n};
    gguf_writer_add_tensor(w, name, GGUF_T_F32, 1, ne, v);
    free(v);
}

static const char *const usage =
    "usage: wim mkmodel --vocab-from VOCAB.gguf -o OUT.gguf [--arch llama|qwen2|phi3|gemma2]\n"
    "                   [--type TYPE] [--dim D] [--layers L] [--heads H]\n"
    "                   [--kv-heads KH] [--ff F] [--ctx N] [--rope-theta T] [--seed S]\n"
    "                   [--tied] [--rope-freqs] [--rope-scale F] [--qkv-bias] [--fused]\n"
    "                   [--rope-yarn F | --longrope] [--rope-orig-ctx N] [--rope-attn-factor A]\n"
    "                   [--head-dim HD] [--sliding-window W] [--softcap ATTN,FINAL]\n"
    "  Writes a random-weight model (same arguments, same bytes). Defaults: llama, f32,\n"
    "  dim 64, 2 layers, 4 heads, 2 KV heads, ff 128, ctx 2048. qwen2 gets q/k/v biases,\n"
    "  phi3 a fused attn_qkv and a fused gate|up ffn_up; --fused does that for llama too;\n"
    "  gemma2 post-attention/FFN norms, soft-capping (--softcap, default 50,30) and a\n"
    "  tied output.\n"
    "  --rope-yarn F: YaRN scaling by F; --longrope: Phi-3-style rope_factors_long/short;\n"
    "  both from the original context N (default: --ctx).\n"
    "  TYPE: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, or the\n"
    "  mixes q4_k_m, q5_k_m (output and some attn_v/ffn_down in q6_k). K-quant rows\n"
    "  need a multiple of 256 values; others fall back to q5_0, q5_1 or q8_0\n"
    "  as llama-quantize does (wim info lists the types).\n"
    "  The tokenizer is copied from VOCAB.gguf (e.g. ../shared/vocab/ggml-vocab-gpt-2.gguf).\n";

static int parse(int argc, char **argv, mk_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *iv = NULL;
        long lo = 1, hi = 1 << 20;
        if (!strcmp(a, "--tied"))
            o->tied = 1;
        else if (!strcmp(a, "--rope-freqs"))
            o->rope_freqs = 1;
        else if (!strcmp(a, "--qkv-bias"))
            o->qkv_bias = 1;
        else if (!strcmp(a, "--fused"))
            o->fused = 1;
        else if (!strcmp(a, "--longrope"))
            o->longrope = 1;
        else if (i + 1 >= argc)
            return cli_error("mkmodel: unknown option or missing value: '%s'", a);
        else if (!strcmp(a, "-o"))
            o->out = argv[++i];
        else if (!strcmp(a, "--vocab-from"))
            o->vocab = argv[++i];
        else if (!strcmp(a, "--arch"))
            o->arch = argv[++i];
        else if (!strcmp(a, "--type")) {
            const char *t = argv[++i];
            if (!(o->scheme = wim_qscheme_find(t)))
                return cli_error("mkmodel: --type must be one of %s, not '%s'", wim_qscheme_names(),
                                 t);
        } else if (!strcmp(a, "--rope-theta")) {
            if (cli_float(a, argv[++i], 1, 1e9, &o->theta)) return 2;
        } else if (!strcmp(a, "--rope-scale")) {
            if (cli_float(a, argv[++i], 0.01, 1e6, &o->rope_scale)) return 2;
        } else if (!strcmp(a, "--rope-yarn")) {
            if (cli_float(a, argv[++i], 1, 1e6, &o->rope_yarn)) return 2;
        } else if (!strcmp(a, "--softcap")) { /* gemma2: "ATTN,FINAL" */
            const char *v = argv[++i];
            if (sscanf(v, "%lf,%lf", &o->attn_softcap, &o->final_softcap) != 2 ||
                !(o->attn_softcap > 0) || !(o->final_softcap > 0))
                return cli_error(
                    "mkmodel: --softcap needs two positive numbers ATTN,FINAL, not '%s'", v);
        } else if (!strcmp(a, "--rope-attn-factor")) {
            if (cli_float(a, argv[++i], 0.01, 100, &o->rope_attn_factor)) return 2;
        } else {
            if (!strcmp(a, "--dim"))
                iv = &o->dim;
            else if (!strcmp(a, "--layers"))
                iv = &o->layers;
            else if (!strcmp(a, "--heads"))
                iv = &o->heads;
            else if (!strcmp(a, "--kv-heads"))
                iv = &o->kv_heads;
            else if (!strcmp(a, "--ff"))
                iv = &o->ff;
            else if (!strcmp(a, "--ctx"))
                iv = &o->ctx;
            else if (!strcmp(a, "--rope-orig-ctx"))
                iv = &o->rope_orig_ctx;
            else if (!strcmp(a, "--head-dim"))
                iv = &o->head_dim;
            else if (!strcmp(a, "--sliding-window"))
                iv = &o->sliding_window;
            else if (!strcmp(a, "--seed"))
                iv = &o->seed, lo = 0, hi = 0x7fffffff;
            else
                return cli_error("mkmodel: unknown option '%s' (see wim mkmodel --help)", a);
            if (cli_int(a, argv[++i], lo, hi, iv)) return 2;
        }
    }
    if (!o->out || !o->vocab)
        return cli_error("mkmodel: -o OUT and --vocab-from VOCAB are required");
    if (strcmp(o->arch, "llama") && strcmp(o->arch, "qwen2") && strcmp(o->arch, "phi3") &&
        strcmp(o->arch, "gemma2"))
        return cli_error("mkmodel: --arch must be llama, qwen2, phi3 or gemma2, not '%s'", o->arch);
    if (!strcmp(o->arch, "gemma2")) o->tied = 1; /* gemma ties its output to the embedding */
    if ((o->rope_scale > 0) + (o->rope_yarn > 0) + o->longrope > 1)
        return cli_error("mkmodel: --rope-scale, --rope-yarn and --longrope exclude each other");
    if ((o->head_dim ? o->head_dim % 2 : o->dim % o->heads || (o->dim / o->heads) % 2) ||
        o->heads % o->kv_heads)
        return cli_error("mkmodel: dim must split into an even head size (or give an even "
                         "--head-dim), heads into KV groups");
    if (o->scheme->base != GGUF_T_F32 && o->scheme->base != GGUF_T_F16 &&
        o->scheme->base != GGUF_T_BF16 && (o->dim % 32 || o->ff % 32))
        return cli_error("mkmodel: quantized types need dim and ff to be multiples of 32 "
                         "(K-quant rows that 256 does not divide fall back to a 32-block type)");
    return 0;
}

int cmd_mkmodel(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(usage, stdout), 0;
    mk_opts o = {.arch = "llama",
                 .scheme = wim_qscheme_find("f32"),
                 .dim = 64,
                 .layers = 2,
                 .heads = 4,
                 .kv_heads = 2,
                 .ff = 128,
                 .ctx = 2048,
                 .seed = 1,
                 .theta = 10000.0,
                 .attn_softcap = 50.0,
                 .final_softcap = 30.0};
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    char err[512];
    gguf_file *vocab;
    if (gguf_open(o.vocab, &vocab, err, sizeof err)) return cli_error("%s", err);
    enum gguf_vtype et;
    uint64_t n_vocab = 0;
    if (gguf_get_arr(vocab, "tokenizer.ggml.tokens", &et, &n_vocab) != 1 || et != GGUF_VT_STRING) {
        gguf_close(vocab);
        return cli_error("%s: no tokenizer.ggml.tokens array to copy", o.vocab);
    }
    gguf_writer *w = gguf_writer_new();
    if (!w) {
        gguf_close(vocab);
        return cli_error("mkmodel: out of memory");
    }
    const char *A = o.arch;
    int is_phi3 = !strcmp(A, "phi3"), is_qwen2 = !strcmp(A, "qwen2"),
        is_gemma2 = !strcmp(A, "gemma2");
    int fused = o.fused || is_phi3, bias = o.qkv_bias || is_qwen2;
    int d = (int)o.dim, hd = (int)(o.head_dim ? o.head_dim : o.dim / o.heads);
    int qd = hd * (int)o.heads, kvd = hd * (int)o.kv_heads, ff = (int)o.ff;
    char key[128], name[128];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", A, s), key)
    gguf_writer_set_str(w, "general.architecture", A);
    snprintf(name, sizeof name, "wim random %s d%d l%ld %s seed %ld", A, d, o.layers,
             o.scheme->name, o.seed);
    gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)o.ctx);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)d);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)o.layers);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)ff);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)o.heads);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)o.kv_heads);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    if (o.head_dim) { /* Mistral-Nemo style: heads x head size != embedding */
        gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
    if (o.sliding_window)
        gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)o.sliding_window);
    if (is_gemma2) { /* Gemma 2's soft-capping of attention scores and of the logits */
        gguf_writer_set_f32(w, KEY("attn_logit_softcapping"), (float)o.attn_softcap);
        gguf_writer_set_f32(w, KEY("final_logit_softcapping"), (float)o.final_softcap);
    }
    gguf_writer_set_f32(w, KEY("rope.freq_base"), (float)o.theta);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (o.rope_scale > 0 || o.rope_yarn > 0) {
        gguf_writer_set_str(w, KEY("rope.scaling.type"), o.rope_yarn > 0 ? "yarn" : "linear");
        gguf_writer_set_f32(w, KEY("rope.scaling.factor"),
                            (float)(o.rope_yarn > 0 ? o.rope_yarn : o.rope_scale));
    }
    if (o.rope_orig_ctx)
        gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"),
                            (uint32_t)o.rope_orig_ctx);
    if (o.rope_attn_factor > 0)
        gguf_writer_set_f32(w, KEY("rope.scaling.attn_factor"), (float)o.rope_attn_factor);
#undef KEY
    for (uint64_t i = 0; i < vocab->n_kv; i++)
        if (vocab->kv[i].key.len > 10 && !memcmp(vocab->kv[i].key.ptr, "tokenizer.", 10))
            gguf_writer_copy_kv(w, &vocab->kv[i]);
    gguf_close(vocab);

    uint64_t rng = 0x853c49e6748fea9bULL ^ ((uint64_t)o.seed * 0x9e3779b97f4a7c15ULL);
    float s_in = 1.0f / sqrtf((float)d), s_ff = 1.0f / sqrtf((float)ff);
    rc = add_matrix(w, &o, "token_embd.weight", d, (int)n_vocab, 1.0f, &rng);
    add_vector(w, "output_norm.weight", d, 1.0f, 0.1f, &rng);
    if (!rc && !o.tied) rc = add_matrix(w, &o, "output.weight", d, (int)n_vocab, s_in, &rng);
    if (o.rope_freqs) add_vector(w, "rope_freqs.weight", hd / 2, 4.0f, 3.0f, &rng);
    if (o.longrope) { /* Phi-3-like: short factors near 1, long ones growing to ~8 */
        add_vector(w, "rope_factors_long.weight", hd / 2, 4.5f, 3.5f, &rng);
        add_vector(w, "rope_factors_short.weight", hd / 2, 1.1f, 0.1f, &rng);
    }
    for (int l = 0; l < o.layers && !rc; l++) {
#define T(s) (snprintf(name, sizeof name, "blk.%d.%s", l, s), name)
        add_vector(w, T("attn_norm.weight"), d, 1.0f, 0.1f, &rng);
        add_vector(w, T("ffn_norm.weight"), d, 1.0f, 0.1f, &rng);
        if (is_gemma2) {
            add_vector(w, T("post_attention_norm.weight"), d, 1.0f, 0.1f, &rng);
            add_vector(w, T("post_ffw_norm.weight"), d, 1.0f, 0.1f, &rng);
        }
        if (fused)
            rc = add_matrix(w, &o, T("attn_qkv.weight"), d, qd + 2 * kvd, s_in, &rng);
        else
            rc = add_matrix(w, &o, T("attn_q.weight"), d, qd, s_in, &rng) ||
                 add_matrix(w, &o, T("attn_k.weight"), d, kvd, s_in, &rng) ||
                 add_matrix(w, &o, T("attn_v.weight"), d, kvd, s_in, &rng);
        if (bias) {
            add_vector(w, T("attn_q.bias"), qd, 0.0f, 0.2f, &rng);
            add_vector(w, T("attn_k.bias"), kvd, 0.0f, 0.2f, &rng);
            add_vector(w, T("attn_v.bias"), kvd, 0.0f, 0.2f, &rng);
        }
        rc = rc || add_matrix(w, &o, T("attn_output.weight"), qd, d, s_in, &rng);
        if (fused)
            rc = rc || add_matrix(w, &o, T("ffn_up.weight"), d, 2 * ff, s_in, &rng);
        else
            rc = rc || add_matrix(w, &o, T("ffn_gate.weight"), d, ff, s_in, &rng) ||
                 add_matrix(w, &o, T("ffn_up.weight"), d, ff, s_in, &rng);
        rc = rc || add_matrix(w, &o, T("ffn_down.weight"), ff, d, s_ff, &rng);
#undef T
    }
    if (!rc && gguf_writer_write(w, o.out, err, sizeof err)) rc = cli_error("%s", err);
    gguf_writer_free(w);
    return rc;
}
