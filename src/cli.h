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
