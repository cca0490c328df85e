/*
 * cmd_logits.c — `wim logits`: the top logits at every position as JSON Lines
 * (what the reference forward pass and llama.cpp are compared against).
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
    "                  [--load-kv F] [-t N]\n"
    "  JSON Lines on stdout: {\"tokens\":[...],\"n_vocab\":N}, then for every position\n"
    "  {\"pos\":i,\"top\":[[id,logit],...]} with the K largest logits (default 5), largest\n"
    "  first (ties: lower id first). -p TEXT gets the model's BOS token.\n"
    "  --save-kv F saves the KV cache afterwards; --load-kv F starts from a saved cache\n"
    "  (positions then continue from it). KV options as for wim generate.\n";

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

int cmd_logits(int argc, char **argv) {
    if (cli_wants_help(argc, argv, logits_usage)) return 0;
    cli_opts o = {.top = 5, .kv_pin = -1};
    int rc = cli_parse_opts(
        argc, argv, O_MODEL | O_PROMPT | O_TOKENS | O_TOP | O_CHUNK | O_THREADS | O_KVFILE, &o);
    if (rc) return rc;
    if (!!o.tokens + !!o.prompt + !!o.prompt_file != 1)
        return cli_error("logits: give exactly one of --tokens, -p or -f");
    wim_model *m = NULL;
    wim_ctx *c = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    char *file_text = NULL;
    int n;
    if ((rc = cli_load_model(o.model, &m))) goto done;
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
    if (wim_eval(c, toks, n, logits, 1, err, sizeof err) ||
        (o.save_kv && wim_ctx_save(c, o.save_kv, err, sizeof err))) {
        rc = cli_error("%s", err);
        goto done;
    }
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
    free(file_text);
    free(logits);
    free(toks);
    wim_ctx_free(c);
    wim_model_free(m);
    return rc;
}
