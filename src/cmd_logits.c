/*
 * cmd_logits.c — `wim logits`: the top logits at every position as JSON Lines
 * (what the reference forward pass and llama.cpp are compared against), and with
 * --trace a text view inside the forward pass for a student before them: the
 * residual stream's size after every block, and one head's attention weights.
 * No line of the view starts with '{', so grep '^{' keeps the JSON Lines, which
 * are the same bytes traced or not.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "simd.h"
#include "tokenizer.h"
#include "wim.h"

static const char *const logits_usage =
    "usage: wim logits -m MODEL (--tokens \"1,2,3\" | -p TEXT | -f FILE) [--top K] [--chunk K]\n"
    "                  [--kv-type f16|f32] [--kv-capacity C] [--kv-pin P] [--save-kv F]\n"
    "                  [--load-kv F] [-t N] [--trace L [--head H] [--trace-last N]]\n"
    "  JSON Lines on stdout: {\"tokens\":[...],\"n_vocab\":N}, then for every position\n"
    "  {\"pos\":i,\"top\":[[id,logit],...]} with the K largest logits (default 5), largest\n"
    "  first (ties: lower id first). -p TEXT gets the model's BOS token.\n"
    "  --save-kv F saves the KV cache afterwards; --load-kv F starts from a saved cache\n"
    "  (positions then continue from it). KV options as for wim generate.\n"
    "  --trace L [--head H] [--trace-last N]: before the JSON Lines, a view inside the\n"
    "  forward pass as text (no line of it starts with '{'; the JSON Lines are the same):\n"
    "  the size (L2 norm, RMS, largest |x|) of the residual stream after the\n"
    "  embedding and after every layer's attention and feed-forward blocks, for the last\n"
    "  position and (L2) for each of the last N positions (default 12); then the\n"
    "  attention weights of head H (default 0) of layer L as the engine used them, after\n"
    "  the softmax: a row per query, a column per key, blank where the query may not see\n"
    "  the key (the causal mask, any window); each row sums to 1. Past N positions, the\n"
    "  view keeps the last N and a column sums the weights of the earlier keys. Layers\n"
    "  and heads count from 0.\n";

/* Parses "1,2,3" into ids; returns the count, or -1 after an error line. */
static int parse_token_list(const char *s, int32_t **out) {
    int n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    *out = malloc((size_t)n * sizeof **out);
    if (!*out) return cli_error("out of memory"), -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            cli_error("--tokens expects comma-separated token ids, got '%s'", s);
            return -1;
        }
        (*out)[i] = (int32_t)v;
        p = end + (*end == ',');
    }
    return n;
}

/* ---- the trace as text ---- */

#define LABEL_CHARS 10 /* a row's token piece, at most */
#define ATTN_W 6       /* an attention column: " 0.123" */
#define NORM_W 8       /* a norm column */

/* Prints s in `width` display columns (UTF-8 characters, control bytes as '?'), cut to
 * width - 1 with a trailing '~' when longer; right-aligned or left-aligned. */
static void put_text(const char *s, int width, int right) {
    int chars = 0;
    for (const char *p = s; *p; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    const int cut = chars > width ? width - 1 : chars, pad = width - cut - (chars > width);
    if (right) printf("%*s", pad, "");
    for (int n = 0; *s; s++) {
        const unsigned char b = (unsigned char)*s;
        if ((b & 0xC0) != 0x80 && n++ == cut) break;
        putchar(b < 0x20 || b == 0x7F ? '?' : b);
    }
    if (chars > width) putchar('~');
    if (!right) printf("%*s", pad, "");
}

/* The vocabulary piece of the token at position p ("" for a position the prompt did not
 * give: one of a loaded cache). */
static const char *piece_at(const wim_model *m, const int32_t *toks, int pos0, int p) {
    const char *s = p >= pos0 ? wim_tokenizer_piece(m->tok, toks[p - pos0]) : NULL;
    return s ? s : "";
}

/* A non-negative value in `width` columns, with as many decimals as fit. */
static void put_num(float v, int width) {
    const int dec = v < 10 ? 3 : v < 100 ? 2 : v < 1000 ? 1 : 0;
    printf("%*.*f", width, dec, v);
}

/* The two header lines of a table with a column per position p0..p1-1 (labelled
 * with its position and piece); `first`: an extra first column's two labels, or NULL. */
static void put_columns(const wim_model *m, const int32_t *toks, int pos0, int p0, int p1, int w,
                        const char *const first[2]) {
    for (int line = 0; line < 2; line++) {
        printf("%*s", 6 + LABEL_CHARS, "");
        if (first) put_text(first[line], w, 1);
        for (int p = p0; p < p1; p++) {
            char num[16];
            snprintf(num, sizeof num, "%d", p);
            putchar(' '); /* a column's labels never touch the next */
            put_text(line ? piece_at(m, toks, pos0, p) : num, w - 1, 1);
        }
        putchar('\n');
    }
}

/* A stage of the residual stream as a row label: 0 the embedding, then per layer. */
static void put_stage(int s) {
    char label[32];
    if (s == 0)
        snprintf(label, sizeof label, "embedding");
    else
        snprintf(label, sizeof label, "layer %d %s", (s - 1) / 2, s % 2 ? "attn" : "ffn");
    printf("  %-*s", 4 + LABEL_CHARS, label);
}

/* The residual stream: every measure at the last position, then the L2 norm at each
 * recorded position. */
static void print_residual(const wim_model *m, const wim_trace *t, const int32_t *toks, int pos0) {
    const int stages = 1 + 2 * wim_model_n_layer(m), last = t->pos0 + t->n_pos - 1;
    printf("The residual stream x at the last position (%d %s), after the embedding and\n"
           "after each block adds its output (x += attn(x), then x += ffn(x)):\n",
           last, piece_at(m, toks, pos0, last));
    printf("  %-*s", 4 + LABEL_CHARS, "after");
    printf("%*s%*s%*s\n", NORM_W + 2, "L2 norm", NORM_W + 2, "RMS", NORM_W + 2, "max |x|");
    for (int s = 0; s < stages; s++) {
        const float *v = t->resid + ((size_t)(t->n_pos - 1) * stages + s) * 3;
        put_stage(s);
        for (int k = 0; k < 3; k++)
            put_num(v[k], NORM_W + 2);
        putchar('\n');
    }
    printf("\nThe L2 norm of x at every position:\n");
    put_columns(m, toks, pos0, t->pos0, t->pos0 + t->n_pos, NORM_W, NULL);
    for (int s = 0; s < stages; s++) {
        put_stage(s);
        for (int i = 0; i < t->n_pos; i++)
            put_num(t->resid[((size_t)i * stages + s) * 3], NORM_W);
        putchar('\n');
    }
}

/* One head's attention weights: a row per recorded query, a column per key from the first
 * recorded position; the weights of earlier keys summed in a first column. */
static void print_attention(const wim_model *m, const wim_trace *t, const int32_t *toks, int pos0) {
    const int keys = t->pos0 + t->n_pos, k0 = t->pos0;
    printf("\nAttention weights of layer %d, head %d of %d, after the softmax (as the engine\n"
           "used them): a row per query, a column per key, blank where the query may not see\n"
           "the key (the causal mask, and any window).\n",
           t->layer, t->head, wim_model_n_head(m));
    char earlier[24];
    snprintf(earlier, sizeof earlier, "<%d", k0);
    const char *const first[2] = {earlier, "sum"};
    if (k0 > 0)
        printf("Keys 0..%d are not shown: column '%s' sums their weights.\n", k0 - 1, earlier);
    put_columns(m, toks, pos0, k0, keys, ATTN_W, k0 > 0 ? first : NULL);
    for (int i = 0; i < t->n_pos; i++) {
        const float *row = t->attn + (size_t)i * keys;
        printf("  %4d ", t->pos0 + i);
        put_text(piece_at(m, toks, pos0, t->pos0 + i), LABEL_CHARS, 0);
        if (k0 > 0) {
            double sum = 0;
            int seen = 0;
            for (int k = 0; k < k0; k++)
                if (row[k] >= 0) sum += row[k], seen = 1;
            seen ? printf("%*.3f", ATTN_W, sum) : printf("%*s", ATTN_W, "");
        }
        int end = keys; /* no trailing blanks */
        while (end > k0 && row[end - 1] < 0)
            end--;
        for (int k = k0; k < end; k++)
            row[k] >= 0 ? printf("%*.3f", ATTN_W, row[k]) : printf("%*s", ATTN_W, "");
        putchar('\n');
    }
}

/* The whole view; n tokens were evaluated from position pos0. */
static void print_trace(const wim_model *m, const wim_trace *t, const int32_t *toks, int pos0,
                        int n) {
    printf("Trace of the forward pass: %d layers, %d tokens", wim_model_n_layer(m), n);
    if (t->n_pos < n) printf(", the last %d shown (--trace-last N)", t->n_pos);
    printf(".\n\n");
    print_residual(m, t, toks, pos0);
    print_attention(m, t, toks, pos0);
    putchar('\n');
}

/* The trace of the last `last` of n tokens evaluated from pos0, set on c: 0, or an exit
 * status after an error line. */
static int trace_setup(wim_ctx *c, const wim_model *m, wim_trace *t, int pos0, int n, int last) {
    char err[512];
    t->n_pos = n < last ? n : last;
    t->pos0 = pos0 + n - t->n_pos;
    const size_t stages = 1 + 2 * (size_t)wim_model_n_layer(m), keys = (size_t)pos0 + n;
    t->resid = malloc((size_t)t->n_pos * stages * 3 * sizeof *t->resid);
    t->attn = malloc((size_t)t->n_pos * keys * sizeof *t->attn);
    if (!t->resid || !t->attn) return cli_error("out of memory for the trace");
    return wim_ctx_set_trace(c, t, err, sizeof err) ? cli_error("%s", err) : 0;
}

/* --trace L and --head H against the model: 0, or 2 after an error line naming the range. */
static int trace_index(const char *opt, const char *what, const char *val, int count, int *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < 0 || v >= count)
        return cli_error("%s expects a %s in 0..%d (the model has %d), got '%s'", opt, what,
                         count - 1, count, val);
    *out = (int)v;
    return 0;
}

int cmd_logits(int argc, char **argv) {
    if (cli_wants_help(argc, argv, logits_usage)) return 0;
    cli_opts o = {.top = 5, .kv_pin = -1};
    int rc = cli_parse_opts(
        argc, argv,
        O_MODEL | O_PROMPT | O_TOKENS | O_TOP | O_CHUNK | O_THREADS | O_KVFILE | O_TRACE, &o);
    if (rc) return rc;
    if (!!o.tokens + !!o.prompt + !!o.prompt_file != 1)
        return cli_error("logits: give exactly one of --tokens, -p or -f");
    if (!o.trace && (o.trace_head || o.trace_last))
        return cli_error("logits: --head and --trace-last belong to --trace L");
    wim_model *m = NULL;
    wim_ctx *c = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    char *file_text = NULL;
    wim_trace tr = {0, 0, 0, 0, NULL, NULL};
    int n;
    if ((rc = cli_load_model(o.model, &m))) goto done;
    if (o.trace &&
        ((rc = trace_index("--trace", "layer", o.trace, wim_model_n_layer(m), &tr.layer)) ||
         (o.trace_head &&
          (rc = trace_index("--head", "head", o.trace_head, wim_model_n_head(m), &tr.head)))))
        goto done;
    if (o.tokens)
        n = parse_token_list(o.tokens, &toks);
    else {
        size_t len = o.prompt ? strlen(o.prompt) : 0;
        if (o.prompt_file && !(file_text = cli_read_file(o.prompt_file, &len))) {
            rc = 2;
            goto done;
        }
        n = cli_prompt_tokens(m, file_text ? file_text : o.prompt, len, !o.load_kv, &toks);
    }
    if (n <= 0) {
        rc = n < 0 ? 2 : cli_error("logits: no tokens to evaluate");
        goto done;
    }
    const int V = m->cfg.n_vocab;
    for (int i = 0; i < n; i++)
        if (toks[i] >= V) {
            rc = cli_error("token id %d is outside the vocabulary (0..%d)", toks[i], V - 1);
            goto done;
        }
    if ((rc = cli_new_ctx(m, &o, n, &c))) goto done;
    if (!(logits = malloc((size_t)n * V * sizeof *logits))) {
        rc = cli_error("out of memory for %d x %d logits", n, V);
        goto done;
    }
    char err[512];
    int pos0 = wim_ctx_pos(c);
    if (o.trace && (rc = trace_setup(c, m, &tr, pos0, n, o.trace_last ? (int)o.trace_last : 12)))
        goto done;
    if (wim_eval(c, toks, n, logits, 1, err, sizeof err) ||
        (o.save_kv && wim_ctx_save(c, o.save_kv, err, sizeof err))) {
        rc = cli_error("%s", err);
        goto done;
    }
    if (o.trace) print_trace(m, &tr, toks, pos0, n);
    printf("{\"tokens\":[");
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", toks[i]);
    printf("],\"n_vocab\":%d}\n", V);
    int k = o.top < V ? (int)o.top : V;
    int *best = malloc((size_t)k * sizeof *best);
    if (!best) {
        rc = cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V;
        int nb = 0; /* insertion into a sorted top-k list */
        for (int id = 0; id < V; id++) {
            if (nb == k && !(l[id] > l[best[k - 1]])) continue;
            int j = nb < k ? nb++ : k - 1;
            while (j > 0 && l[id] > l[best[j - 1]]) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = id;
        }
        printf("{\"pos\":%d,\"top\":[", pos0 + i);
        for (int j = 0; j < nb; j++)
            printf("%s[%d,%.9g]", j ? "," : "", best[j], l[best[j]]);
        printf("]}\n");
    }
    free(best);
    rc = 0;
done:
    free(tr.resid);
    free(tr.attn);
    free(file_text);
    free(logits);
    free(toks);
    wim_ctx_free(c);
    wim_model_free(m);
    return rc;
}
