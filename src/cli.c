/*
 * cli.c — the `wim` command: dispatch to subcommands and the helpers they
 * share (errors, option values, files, the options of the model subcommands).
 *
 * Output contract: results on stdout (formats documented in --help and the
 * README, relied on by tests and scripts), timings and progress on stderr,
 * errors as one "wim: ..." line on stderr with exit status 2 for bad usage or
 * bad input and 1 for runtime failures.
 */
#include "cli.h"
#include "clock.h"
#include "context.h"

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

int cli_int_list(const char *opt, const char *val, long lo, long hi, int *out, int max) {
    int n = 0;
    for (const char *p = val;; p++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[32];
        long v;
        if (n == max) return cli_error("%s takes at most %d values, got '%s'", opt, max, val), -1;
        if (len >= sizeof item)
            return cli_error("%s expects integers in %ld..%ld, got '%s'", opt, lo, hi, val), -1;
        memcpy(item, p, len);
        item[len] = 0;
        if (cli_int(opt, item, lo, hi, &v)) return -1;
        out[n++] = (int)v;
        if (!end) return n;
        p = end;
    }
}

int cli_measure_option(const char *cmd, int argc, char **argv, int *i, cli_measure_opts *o,
                       const char **val) {
    const char *a = argv[*i];
    if (!strcmp(a, "--json")) return o->json = 1, 1;
    if (*i + 1 >= argc) return cli_error("%s: unknown option or missing value: '%s'", cmd, a), -1;
    *val = argv[++*i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) return o->model = *val, 1;
    if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
        return cli_int("-t", *val, 1, 1024, &o->threads) ? -1 : 1;
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

/* Matches argv[*i] against name; on a match stores the following value. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **val) {
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

/* Parses the options a subcommand accepts (mask); returns 0, or 2 after an error. */
int cli_parse_opts(int argc, char **argv, unsigned mask, cli_opts *o) {
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
        else if ((mask & O_INFO) && !strcmp(argv[i], "--meta"))
            o->meta = 1;
        else if (VAL(O_INFO, "--dump"))
            o->dump = v;
        else if (VAL(O_TRACE, "--trace"))
            o->trace = v;
        else if (VAL(O_TRACE, "--head"))
            o->trace_head = v;
        else if (VAL(O_TRACE, "--trace-last")) {
            if (r > 0 && cli_int("--trace-last", v, 1, 4096, &o->trace_last)) return 2;
        } else
            return cli_error("%s: unknown option '%s' (see wim %s --help)", argv[0], argv[i],
                             argv[0]);
        if (r < 0) return cli_error("%s: option %s needs a value", argv[0], argv[i]);
#undef VAL
    }
    return o->save_kv ? cli_check_output("--save-kv", o->save_kv, 1) : 0;
}

int cli_wants_help(int argc, char **argv, const char *usage) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 1;
        }
    return 0;
}

int cli_load_model(const char *path, wim_model **m) {
    char err[512];
    if (!path) return cli_error("no model given: pass -m MODEL.gguf");
    if (wim_model_load(path, m, err, sizeof err)) return cli_error("%s", err);
    return 0;
}

/* Creates the context: KV capacity from --kv-capacity, else what `needed`
 * tokens take (at most the model's context); --kv-pin streams past it;
 * --load-kv takes the saved cache's geometry and contents. */
int cli_new_ctx(const wim_model *m, const cli_opts *o, int needed, wim_ctx **c) {
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
int cli_prompt_tokens(const wim_model *m, const char *text, size_t len, int bos, int32_t **out) {
    char err[256];
    int add_bos = bos && wim_tokenizer_add_bos(m->tok) && wim_tokenizer_bos(m->tok) >= 0;
    int need = wim_tokenize_alloc(m->tok, text, len, add_bos, 0, out, err, sizeof err);
    if (need < 0) return cli_error("%s", err), -1;
    return need;
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
