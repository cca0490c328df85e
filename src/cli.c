/*
 * cli.c — the `wim` command: dispatch to subcommands, their shared helpers,
 * and the model-facing subcommands info, generate and logits.
 *
 * Output contract: results on stdout (formats documented in --help and the
 * README, relied on by tests and scripts), timings and progress on stderr,
 * errors as one "wim: ..." line on stderr with exit status 2 for bad usage or
 * bad input and 1 for runtime failures.
 */
#include "cli.h"
#include "forward.h"
#include "clock.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvcache.h"
#include "model.h"
#include "simd.h"
#include "tokenizer.h"
#include "wim.h"

int cli_error(const char *fmt, ...) {
    va_list ap;
    fputs("wim: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

int cli_check_output(const char *opt, const char *path, int whole) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode))
        return cli_error("%s %s: is a folder; give a file name", opt, path);
    if (whole && !stat(path, &st) && !S_ISREG(st.st_mode))
        return cli_error("%s %s: not a regular file (the file is written anew and renamed into "
                         "place)",
                         opt, path);
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return cli_error("%s %s: the folder %s does not exist", opt, path, dir);
    if (access(dir, W_OK)) return cli_error("%s %s: the folder %s is not writable", opt, path, dir);
    return 0;
}

int cli_int(const char *opt, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        cli_error("%s expects an integer in %ld..%ld, got '%s'", opt, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi)) {
        cli_error("%s expects a number in %g..%g, got '%s'", opt, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

char *cli_read_file(const char *path, size_t *len) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        cli_error("%s: is a folder; give a file", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f) ? errno : 0;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        cli_error("%s: cannot read: %s", path, buf ? strerror(bad ? bad : EIO) : "out of memory");
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* ---- options shared by the model subcommands ---- */

typedef struct {
    const char *model, *prompt, *prompt_file, *tokens, *save_kv, *load_kv, *dump;
    long n, seed, chunk, threads, top, kv_capacity, kv_pin;
    double temp, top_p;
    int ignore_eos, tensors, cpu, kv_f32;
} opts;

/* Matches argv[*i] against name; on a match stores the following value. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **val) {
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

enum {
    O_MODEL = 1,
    O_PROMPT = 2,
    O_N = 4,
    O_SAMPLING = 8,
    O_CHUNK = 16,
    O_THREADS = 32,
    O_TOKENS = 64,
    O_TOP = 128,
    O_INFO = 256,
    O_KVFILE = 512
};

/* Parses the options a subcommand accepts (mask); returns 0, or 2 after an error. */
static int parse_opts(int argc, char **argv, unsigned mask, opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = 0; /* set by VAL; other options take no value */
#define VAL(flag, name) ((mask & (flag)) && (r = opt_val(argc, argv, &i, name, &v)) != 0)
        if (VAL(O_MODEL, "-m") || VAL(O_MODEL, "--model"))
            o->model = v;
        else if (VAL(O_PROMPT, "-p") || VAL(O_PROMPT, "--prompt"))
            o->prompt = v;
        else if (VAL(O_PROMPT, "-f") || VAL(O_PROMPT, "--file"))
            o->prompt_file = v;
        else if (VAL(O_TOKENS, "--tokens"))
            o->tokens = v;
        else if (VAL(O_N, "-n")) {
            if (r > 0 && cli_int("-n", v, 0, 1 << 24, &o->n)) return 2;
        } else if (VAL(O_SAMPLING, "--temp")) {
            if (r > 0 && cli_float("--temp", v, 0, 100, &o->temp)) return 2;
        } else if (VAL(O_SAMPLING, "--top-p")) {
            if (r > 0 && cli_float("--top-p", v, 0, 1, &o->top_p)) return 2;
        } else if (VAL(O_SAMPLING, "--seed")) {
            if (r > 0 && cli_int("--seed", v, 0, 0x7fffffffL, &o->seed)) return 2;
        } else if (VAL(O_CHUNK, "--chunk")) {
            if (r > 0 && cli_int("--chunk", v, 1, 1 << 16, &o->chunk)) return 2;
        } else if (VAL(O_CHUNK, "--kv-capacity")) {
            if (r > 0 && cli_int("--kv-capacity", v, 1, 1 << 24, &o->kv_capacity)) return 2;
        } else if (VAL(O_CHUNK, "--kv-pin")) {
            if (r > 0 && cli_int("--kv-pin", v, 0, 1 << 24, &o->kv_pin)) return 2;
        } else if (VAL(O_KVFILE, "--save-kv"))
            o->save_kv = v;
        else if (VAL(O_KVFILE, "--load-kv")) {
            o->load_kv = v;
        } else if (VAL(O_THREADS, "-t") || VAL(O_THREADS, "--threads")) {
            if (r > 0 && cli_int("-t", v, 1, 1024, &o->threads)) return 2;
        } else if (VAL(O_TOP, "--top")) {
            if (r > 0 && cli_int("--top", v, 1, 1 << 24, &o->top)) return 2;
        } else if ((mask & O_SAMPLING) && !strcmp(argv[i], "--ignore-eos"))
            o->ignore_eos = 1;
        else if (VAL(O_CHUNK, "--kv-type")) {
            if (r > 0 && strcmp(v, "f16") && strcmp(v, "f32"))
                return cli_error("--kv-type must be f16 or f32, not '%s'", v);
            if (r > 0) o->kv_f32 = !strcmp(v, "f32");
        } else if ((mask & O_INFO) && !strcmp(argv[i], "--cpu"))
            o->cpu = 1;
        else if ((mask & O_INFO) && !strcmp(argv[i], "--no-tensors"))
            o->tensors = 0;
        else if (VAL(O_INFO, "--dump"))
            o->dump = v;
        else
            return cli_error("%s: unknown option '%s' (see wim %s --help)", argv[0], argv[i],
                             argv[0]);
        if (r < 0) return cli_error("%s: option %s needs a value", argv[0], argv[i]);
#undef VAL
    }
    return o->save_kv ? cli_check_output("--save-kv", o->save_kv, 1) : 0;
}

static int wants_help(int argc, char **argv, const char *usage) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 1;
        }
    return 0;
}

static int load_model(const char *path, wim_model **m) {
    char err[512];
    if (!path) return cli_error("no model given: pass -m MODEL.gguf");
    if (wim_model_load(path, m, err, sizeof err)) return cli_error("%s", err);
    return 0;
}

/* Creates the context: KV capacity from --kv-capacity, else what `needed`
 * tokens take (at most the model's context); --kv-pin streams past it;
 * --load-kv takes the saved cache's geometry and contents. */
static int new_ctx(const wim_model *m, const opts *o, int needed, wim_ctx **c) {
    char err[512];
    wim_ctx_params p = wim_ctx_default_params();
    p.n_threads = (int)o->threads;
    if (o->chunk) p.chunk = (int)o->chunk;
    p.kv_type = o->kv_f32 ? WIM_KV_F32 : WIM_KV_F16;
    p.kv_pin = (int)o->kv_pin;
    if (o->load_kv) {
        int streaming, cached;
        if (ctx_file_geometry(m, o->load_kv, &p.n_ctx, &p.kv_pin, &streaming, &cached, err,
                              sizeof err))
            return cli_error("%s", err);
        if (!streaming) { /* a plain cache: room for its cells and this run, nothing more */
            p.kv_pin = -1;
            p.n_ctx = cached + (needed > 0 ? needed : 1);
        }
    } else if (o->kv_capacity)
        p.n_ctx = (int)o->kv_capacity;
    else {
        p.n_ctx = needed < m->cfg.n_ctx_train ? needed : m->cfg.n_ctx_train;
        if (p.n_ctx < 1) p.n_ctx = 1;
    }
    if (p.kv_pin < 0 && !o->load_kv && needed > p.n_ctx)
        return cli_error("context too long: %d tokens needed but the KV cache holds %d "
                         "(raise --kv-capacity, or stream with --kv-pin P)",
                         needed, p.n_ctx);
    if (wim_ctx_new(m, &p, c, err, sizeof err)) return cli_error("%s", err);
    if (o->load_kv && wim_ctx_load(*c, o->load_kv, err, sizeof err)) {
        wim_ctx_free(*c);
        *c = NULL;
        return cli_error("%s", err);
    }
    return 0;
}

/* Tokenizes the prompt (with the model's BOS rule); returns the count or -1. */
static int prompt_tokens(const wim_model *m, const char *text, size_t len, int bos, int32_t **out) {
    char err[256];
    int add_bos = bos && wim_tokenizer_add_bos(m->tok) && wim_tokenizer_bos(m->tok) >= 0;
    int need = wim_tokenize_alloc(m->tok, text, len, add_bos, 0, out, err, sizeof err);
    if (need < 0) return cli_error("%s", err), -1;
    return need;
}

static const char *const info_usage =
    "usage: wim info [-m MODEL] [--cpu] [--no-tensors] [--dump TENSOR [-n ROWS]]\n"
    "  Prints the model's architecture, hyper-parameters, tensor types and counts,\n"
    "  tensor table and memory estimate; --cpu prints the detected CPU features and\n"
    "  the kernel set chosen. --dump prints the first ROWS rows (default 4) of a weight\n"
    "  tensor as the engine decodes them (any type), one row a line.\n";

/* Prints rows of a tensor as decoded floats (what a teacher or a quantizer test
 * wants to see of a weight type). */
static int dump_tensor(const wim_model *m, const char *name, long rows) {
    int n_in = 0, n_rows = 0;
    if (wim_model_tensor_shape(m, name, &n_in, &n_rows))
        return cli_error("info: no matrix or vector tensor named '%s'", name);
    float *row = malloc((size_t)n_in * sizeof *row);
    if (!row) return cli_error("info: out of memory");
    for (int r = 0; r < n_rows && r < rows; r++) {
        wim_model_tensor_row(m, name, r, row);
        for (int i = 0; i < n_in; i++)
            printf(i ? " %.9g" : "%.9g", row[i]);
        printf("\n");
    }
    free(row);
    return 0;
}

int cmd_info(int argc, char **argv) {
    if (wants_help(argc, argv, info_usage)) return 0;
    opts o = {.tensors = 1, .n = 4};
    int rc = parse_opts(argc, argv, O_MODEL | O_INFO | O_N, &o);
    if (rc) return rc;
    if (o.cpu) {
        char buf[512];
        wim_cpu_describe(buf, sizeof buf);
        printf("cpu            %s\nkernels        %s\n", buf, wim_kernels_get()->isa);
        if (!o.model) return 0;
    }
    wim_model *m;
    if ((rc = load_model(o.model, &m))) return rc;
    if (o.dump) {
        rc = dump_tensor(m, o.dump, o.n);
        wim_model_free(m);
        return rc;
    }
    wim_model_describe(m, stdout, o.tensors);
    wim_model_free(m);
    return 0;
}

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
    if (wants_help(argc, argv, generate_usage)) return 0;
    opts o = {.n = 128, .top_p = 1.0, .kv_pin = -1};
    int rc = parse_opts(argc, argv,
                        O_MODEL | O_PROMPT | O_N | O_SAMPLING | O_CHUNK | O_THREADS | O_KVFILE, &o);
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
    if ((rc = load_model(o.model, &m))) goto done;
    /* a loaded cache already holds the BOS and the text before this prompt */
    int np = prompt_tokens(m, text, plen, !o.load_kv, &toks);
    if (np < 0) {
        rc = 2;
        goto done;
    }
    if (np == 0) {
        rc = cli_error(o.load_kv ? "generate: --load-kv needs a prompt to continue the cache with"
                                 : "generate: the prompt is empty and this model has no BOS token");
        goto done;
    }
    if ((rc = new_ctx(m, &o, np + (int)o.n, &c))) goto done;
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
    if (wants_help(argc, argv, logits_usage)) return 0;
    opts o = {.top = 5, .kv_pin = -1};
    int rc = parse_opts(argc, argv,
                        O_MODEL | O_PROMPT | O_TOKENS | O_TOP | O_CHUNK | O_THREADS | O_KVFILE, &o);
    if (rc) return rc;
    if (!!o.tokens + !!o.prompt + !!o.prompt_file != 1)
        return cli_error("logits: give exactly one of --tokens, -p or -f");
    wim_model *m = NULL;
    wim_ctx *c = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    char *file_text = NULL;
    int n;
    if ((rc = load_model(o.model, &m))) goto done;
    if (o.tokens)
        n = parse_token_list(o.tokens, &toks);
    else {
        size_t len = o.prompt ? strlen(o.prompt) : 0;
        if (o.prompt_file && !(file_text = cli_read_file(o.prompt_file, &len))) {
            rc = 2;
            goto done;
        }
        n = prompt_tokens(m, file_text ? file_text : o.prompt, len, !o.load_kv, &toks);
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
    if ((rc = new_ctx(m, &o, n, &c))) goto done;
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

/* ---- dispatch ---- */

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "Writing in the Margins (or a baseline) over a document and a query"},
    {"serve", cmd_serve, "a local HTTP server and web page: documents read once, many questions"},
    {"repro", cmd_repro, "regenerate the paper's tables (run shards, then --table to merge)"},
    {"info", cmd_info, "describe a model (and --cpu: the CPU and kernels)"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"logits", cmd_logits, "print the top logits at every position as JSON Lines"},
    {"tokenize", cmd_tokenize, "print the token ids (or pieces) of a text"},
    {"bench", cmd_bench, "prefill and decode tokens/s (llama-bench style table or --json)"},
    {"profile", cmd_profile, "memory and time of chunked prefill against L and K (table, SVG)"},
    {"mkmodel", cmd_mkmodel, "write a random-weight GGUF model of a given shape"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: wim COMMAND [options]   (wim help COMMAND, or wim COMMAND --help, for "
               "each; wim --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

/* A command's exit status, once its output has reached stdout: a full disk or a
 * closed pipe is an error, not a silent exit 0. */
static int finish(int rc) {
    if (fflush(stdout) || ferror(stdout)) {
        int e = errno;
        cli_error("cannot write the output: %s", strerror(e ? e : EIO));
        return rc ? rc : 1;
    }
    return rc;
}

/* `--name=value` as two arguments, the way every parser here reads options. Only an
 * argument shaped like an option is split (a value that happens to look like one comes out
 * as an extra argument, which the parser then refuses: never silently). The names are
 * copies, listed in names[0, *n_names) for the caller to free. NULL: no memory. */
static char **split_assignments(int *argc, char **argv, char **names, int *n_names) {
    char **out = calloc(2 * (size_t)*argc + 1, sizeof *out);
    int n = 0;
    *n_names = 0;
    for (int i = 0; out && i < *argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        int option = i > 0 && !strncmp(a, "--", 2) && eq && eq > a + 2;
        for (const char *c = a + 2; option && c < eq; c++)
            option = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-';
        if (!option) {
            out[n++] = argv[i];
        } else if ((names[(*n_names)++] = out[n++] = strndup(a, (size_t)(eq - a)))) {
            out[n++] = (char *)eq + 1;
        } else {
            free(out);
            out = NULL;
        }
    }
    *argc = n;
    return out;
}

static int dispatch(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        (!strcmp(argv[1], "help") && argc == 2)) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : finish(0);
    }
    char err[256];
    if (wim_kernels_init(err, sizeof err)) return cli_error("%s", err);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("wim %s (kernels: %s)\n", WIM_VERSION, wim_kernels_get()->isa);
        return finish(0);
    }
    char *name = argv[1], *help[4] = {argv[0], argv[argc - 1], "--help", NULL};
    if (!strcmp(name, "help")) /* wim help COMMAND: its --help */
        name = help[1], argc = 3, argv = help;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(name, commands[i].name)) return finish(commands[i].fn(argc - 1, argv + 1));
    return cli_error("unknown command '%s' (see wim --help)", name);
}

int main(int argc, char **argv) {
    int n = argc, n_names;
    char **names = calloc((size_t)argc + 1, sizeof *names);
    char **args = names ? split_assignments(&n, argv, names, &n_names) : NULL;
    int rc = args ? dispatch(n, args) : cli_error("out of memory");
    for (int i = 0; args && i < n_names; i++)
        free(names[i]);
    free(names);
    free(args);
    return rc;
}
