/*
 * runner.h — `wim repro`: runs patterns over a task's examples at a target
 * length and writes one JSON line per (example, pattern); merges result files
 * into the paper's tables.
 *
 * Invariants:
 *  - A results file only ever holds complete lines: each is written and
 *    fsync'd whole, and a torn last line (a crash mid-write) is cut off when
 *    the run resumes; finished (example, pattern) pairs are never redone.
 *  - Shard i of n takes the examples whose index % n == i, so shards never
 *    overlap and together cover every example.
 *  - The merge is order-independent: results are keyed by (model fingerprint,
 *    task, length, example, pattern); duplicates count once.
 */
#ifndef WIM_REPRO_RUNNER_H
#define WIM_REPRO_RUNNER_H

#include <stdio.h>

#include "repro.h"
#include "wim.h"

typedef struct {
    repro_task task;
    const char *data_path;         /* dataset file (not for cwe) */
    const char *const *word_files; /* cwe word lists */
    int n_word_files;
    int length;          /* document tokens (the model's tokens) */
    int n;               /* examples (0: all) */
    int shard, n_shards; /* this shard, 0-based */
    const char *out_dir;
    uint64_t seed; /* documents (and sampling, via run.seed) */
    wim_pattern patterns[3];
    int n_patterns;
    wim_run_params run;                  /* the pipeline's settings */
    const char *preset;                  /* recorded: "paper" or NULL */
    const char *model_path, *judge_path; /* recorded */
    const wim_model *judge;              /* optional LLM judge */
    int verbose;                         /* a progress line per result on stderr */
} repro_run_params;

/* Runs (or resumes) the shard; returns 0, or -1 with one line in err. */
int repro_run(const wim_model *m, const repro_run_params *p, char *err, size_t errlen);

/* The results file a run writes (malloc'd): DIR/TASK-LENGTH-shardIofN.jsonl. */
char *repro_results_path(const repro_run_params *p);

/* Merges results files (or directories of *.jsonl) into the paper's layout:
 * rows = models, columns = task x length x pattern, plus the reasoning average
 * (every task but CWE); Markdown, or CSV when csv is set. */
int repro_table(const char *const *paths, int n_paths, int csv, FILE *out, char *err,
                size_t errlen);

#endif
