/*
 * cli.h — what the subcommands of `wim` share (src/cli.c, src/cmd_*.c).
 *
 * Every subcommand is `int cmd_NAME(int argc, char **argv)` with argv[0] the
 * subcommand's name; it returns the process exit status: 0 success, 1 runtime
 * failure, 2 bad usage or bad input. Errors are one line on stderr via
 * cli_error; nothing else prints to stderr except timings and progress.
 */
#ifndef WIM_CLI_H
#define WIM_CLI_H

#include <stddef.h>

#include "wim.h"

/* Prints "wim: <message>" on one line to stderr and returns 2. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses an integer/float option value; on failure prints an error and returns -1. */
int cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int cli_float(const char *opt, const char *val, double lo, double hi, double *out);
/* A comma-separated list of at most max integers in lo..hi into out; how many, or -1 after
 * an error line. */
int cli_int_list(const char *opt, const char *val, long lo, long hi, int *out, int max);
/* Reads a whole file (NUL-terminated); NULL with an error printed on failure. */
char *cli_read_file(const char *path, size_t *len);
/* Checks before any work that a file can be written at path (its folder exists
 * and is writable, and path is not a folder; whole: a file written anew and
 * renamed into place (outfile.h), so path must not be a device or a FIFO);
 * 0, or 2 after one error line naming the option. */
int cli_check_output(const char *opt, const char *path, int whole);

/* The pipeline options of `wim run` (shared by `wim serve`): argv[*i] is one of
 * them (its value, if any, consumed: *i advanced) -> 1; not one -> 0; a bad
 * value -> -1 after an error line. */
int cli_run_option(int argc, char **argv, int *i, wim_run_params *p);
/* The checks between pipeline options; 0, or 2 after an error line. one_pattern: every
 * question runs p's pattern (wim run), so options of other patterns are refused rather
 * than ignored (wim serve's requests choose their pattern). */
int cli_run_check(const char *cmd, const wim_run_params *p, int one_pattern);

/* ---- the options the measuring subcommands share (bench, profile) ---- */
typedef struct {
    const char *model;
    long threads; /* 0: the engine's default */
    int json;
} cli_measure_opts;

/* argv[*i] is -m/--model, -t/--threads or --json (a value consumed: *i advanced) -> 1; another
 * option with its value in *val (*i advanced) -> 0; a missing value -> -1 after an error line
 * naming cmd. -h/--help is the caller's (cli_wants_help). */
int cli_measure_option(const char *cmd, int argc, char **argv, int *i, cli_measure_opts *o,
                       const char **val);

/* ---- the options of the model subcommands (info, generate, logits) ---- */
typedef struct {
    const char *model, *prompt, *prompt_file, *tokens, *save_kv, *load_kv, *dump;
    const char *trace, *trace_head; /* checked against the model once it is loaded */
    long n, seed, chunk, threads, top, kv_capacity, kv_pin, trace_last;
    double temp, top_p;
    int ignore_eos, tensors, cpu, kv_f32, meta;
} cli_opts;

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
    O_KVFILE = 512,
    O_TRACE = 1024
};

/* Parses the options a subcommand accepts (mask of O_*); 0, or 2 after an error. */
int cli_parse_opts(int argc, char **argv, unsigned mask, cli_opts *o);
/* Prints usage and returns 1 when -h or --help is among the arguments. */
int cli_wants_help(int argc, char **argv, const char *usage);
int cli_load_model(const char *path, wim_model **m);
/* The context: KV capacity from --kv-capacity, else what `needed` tokens take (at most
 * the model's context); --kv-pin streams past it; --load-kv takes the saved cache's
 * geometry and contents. 0, or 2 after an error line. */
int cli_new_ctx(const wim_model *m, const cli_opts *o, int needed, wim_ctx **c);
/* Tokenizes a prompt with the model's BOS rule; the count, or -1 after an error line. */
int cli_prompt_tokens(const wim_model *m, const char *text, size_t len, int bos, int32_t **out);

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_repro(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
