/*
 * cmd_generate.c — `wim generate`: text from a prompt, streamed to stdout as
 * it is sampled (timings on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "model.h"
#include "simd.h"
#include "tokenizer.h"
#include "wim.h"

static const char *const generate_usage =
    "usage: wim generate -m MODEL [-p TEXT | -f FILE] [-n N] [--temp T] [--top-p P]\n"
    "                    [--seed S] [--chunk K] [-t THREADS] [--ignore-eos] [--kv-type f16|f32]\n"
    "                    [--kv-capacity C] [--kv-pin P] [--save-kv FILE] [--load-kv FILE]\n"
    "  Prints only the generated text on stdout; timings go to stderr.\n"
    "  The prompt gets the model's BOS token; an empty prompt is just BOS.\n"
    "  -n N          tokens to generate (default 128); stops early at end-of-generation\n"
    "                tokens unless --ignore-eos\n"
    "  --temp T      0 = greedy (default 0); --top-p P nucleus (default 1); --seed S\n"
    "  --chunk K     prompt tokens per forward pass (default 512)\n"
    "  --kv-capacity C  KV cache cells (default: prompt + N, at most the model's context)\n"
    "  --kv-pin P    stream past the capacity as a sliding window keeping the first P cells:\n"
    "                each token sees them and the last C - P tokens (C + chunk - 1 cells are\n"
    "                allocated so that this holds within a prefill chunk too)\n"
    "  --kv-type T   KV cache precision: f16 (default) or f32\n"
    "  --save-kv F   save the KV cache after the prompt; --load-kv F starts from a saved one\n"
    "                (the prompt then continues it)\n"
    "  -t THREADS    threads (default: all cores)\n";

int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv, generate_usage)) return 0;
    cli_opts o = {.n = 128, .top_p = 1.0, .kv_pin = -1};
    int rc = cli_parse_opts(
        argc, argv, O_MODEL | O_PROMPT | O_N | O_SAMPLING | O_CHUNK | O_THREADS | O_KVFILE, &o);
    if (rc) return rc;
    if (o.prompt && o.prompt_file) return cli_error("generate: give -p or -f, not both");
    char *file_text = NULL;
    size_t plen = o.prompt ? strlen(o.prompt) : 0;
    if (o.prompt_file && !(file_text = cli_read_file(o.prompt_file, &plen))) return 2;
    const char *text = file_text ? file_text : o.prompt ? o.prompt : "";
    wim_model *m = NULL;
    wim_ctx *c = NULL;
    wim_sampler *s = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    if ((rc = cli_load_model(o.model, &m))) goto done;
    /* a loaded cache already holds the BOS and the text before this prompt */
    int np = cli_prompt_tokens(m, text, plen, !o.load_kv, &toks);
    if (np < 0) {
        rc = 2;
        goto done;
    }
    if (np == 0) {
        rc = cli_error(o.load_kv ? "generate: --load-kv needs a prompt to continue the cache with"
                                 : "generate: the prompt is empty and this model has no BOS token");
        goto done;
    }
    if ((rc = cli_new_ctx(m, &o, np + (int)o.n, &c))) goto done;
    s = wim_sampler_new((float)o.temp, (float)o.top_p, (uint64_t)o.seed, m->cfg.n_vocab);
    logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    if (!s || !logits) {
        rc = cli_error("out of memory");
        goto done;
    }
    char err[512];
    double t0 = wim_now_ms();
    if (wim_eval(c, toks, np, logits, 0, err, sizeof err)) {
        rc = cli_error("%s", err);
        goto done;
    }
    if (o.save_kv && wim_ctx_save(c, o.save_kv, err, sizeof err)) {
        rc = cli_error("%s", err);
        goto done;
    }
    double t1 = wim_now_ms();
    wim_detok d;
    wim_detok_init(&d, m->tok, toks[np - 1], 0);
    char out[256];
    int ngen = 0;
    for (; ngen < o.n; ngen++) {
        int32_t next = wim_sample(s, logits);
        if (!o.ignore_eos && wim_tokenizer_is_eog(m->tok, next)) break;
        int nb = wim_detok_push(&d, next, out, sizeof out);
        fwrite(out, 1, (size_t)nb, stdout);
        fflush(stdout);
        if (ngen + 1 == o.n) {
            ngen++;
            break;
        }
        if (wim_eval(c, &next, 1, logits, 0, err, sizeof err)) {
            rc = cli_error("%s", err);
            goto done;
        }
    }
    int nb = wim_detok_flush(&d, out, sizeof out);
    fwrite(out, 1, (size_t)nb, stdout);
    fflush(stdout);
    double t2 = wim_now_ms();
    fprintf(stderr,
            "\nprompt %d tokens in %.1f ms (%.1f tok/s); generated %d tokens in %.1f ms "
            "(%.1f tok/s); kernels %s, %d threads\n",
            np, t1 - t0, np * 1e3 / (t1 - t0 + 1e-9), ngen, t2 - t1, ngen * 1e3 / (t2 - t1 + 1e-9),
            wim_kernels_get()->isa, wim_ctx_threads(c));
    rc = 0;
done:
    free(logits);
    free(toks);
    free(file_text);
    wim_sampler_free(s);
    wim_ctx_free(c);
    wim_model_free(m);
    return rc;
}
