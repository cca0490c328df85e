/*
 * cmd_repro.c — `wim repro`: regenerates the paper's tables (runner and
 * merge live in paper-repro/; this is their command line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runner.h"

static const char *const usage =
    "usage: wim repro --task hotpotqa|squad|multihop-rag|cwe|babilong --length 16k -m MODEL\n"
    "                 [--data PATH] [--patterns llm,rag,wim] [--n 100] [--shard i/n] --out DIR\n"
    "                 [--seed S] [--preset paper] [--prompts DIR] [--judge-model GGUF]\n"
    "                 [--words FILE,...] [-v] [pipeline options as for wim run]\n"
    "       wim repro --table DIR|FILE... [--csv]\n"
    "  Builds each example's document at --length tokens of MODEL's tokenizer (gold\n"
    "  paragraphs among distractors; see paper-repro/README.md), runs every pattern,\n"
    "  scores it and appends one JSON line per (example, pattern) to\n"
    "  DIR/TASK-LENGTH-shardIofN.jsonl. Rerunning resumes: finished lines are kept.\n"
    "  --shard i/n (0 <= i < n) takes examples i, i+n, ...; shards never overlap.\n"
    "  --preset paper: segments of 4096 tokens, margins <= 100, answers <= 50, classifier\n"
    "  <= 10, top-p 0.9 at temperature 1.0; pass the reference templates with --prompts.\n"
    "  --table merges result files from any number of shards and machines (order does not\n"
    "  matter) into rows = models, columns = task x length x pattern + the reasoning\n"
    "  average (CWE excluded); Markdown, or CSV with --csv.\n"
    "  Pipeline options: every option of wim run (wim run --help) that shapes a run, with\n"
    "  its checks: --segment-tokens --margin-tokens --classify-tokens --answer-tokens\n"
    "  --classify --lenient-classifier --retriever --top-k --temp --top-p --seed --chat\n"
    "  --prompts --stream --kv-capacity --kv-pin --kv-type --chunk -t/--threads, and the\n"
    "  margin options (--extractive-margins ...). Resuming into a file made with other\n"
    "  settings or another model is refused (the thread count may differ).\n";

static int parse_length(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v <= 0) return -1;
    if (*end == 'k' || *end == 'K') v *= 1024, end++;
    if (*end || v > (1 << 24)) return -1;
    *out = (int)v;
    return 0;
}

static int parse_patterns(const char *s, repro_run_params *p) {
    static const char *const names[] = {"wim", "llm", "rag"};
    p->n_patterns = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(t, names[i])) k = i;
        if (k < 0 || p->n_patterns == 3) {
            free(copy);
            return cli_error("repro: --patterns takes up to three of llm, rag, wim; got '%s'", s);
        }
        p->patterns[p->n_patterns++] = (wim_pattern)k;
    }
    free(copy);
    return p->n_patterns ? 0 : cli_error("repro: --patterns is empty");
}

static int table_mode(int argc, char **argv) {
    const char **paths = calloc((size_t)argc, sizeof *paths);
    int n = 0, csv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--table")) continue;
        if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else if (argv[i][0] == '-') {
            free(paths);
            return cli_error("repro --table: unknown option '%s'", argv[i]);
        } else
            paths[n++] = argv[i];
    }
    char err[512];
    int rc = n ? repro_table(paths, n, csv, stdout, err, sizeof err) : -1;
    free(paths);
    if (!n) return cli_error("repro --table: give result files or folders");
    return rc ? cli_error("%s", err) : 0;
}

int cmd_repro(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
        if (!strcmp(argv[i], "--table")) return table_mode(argc, argv);
    }
    repro_run_params p = {.task = REPRO_TASK_COUNT, .n_shards = 1, .run = wim_run_default_params()};
    parse_patterns("llm,rag,wim", &p);
    const char *model = NULL, *judge = NULL, *words = NULL;
    char *words_copy = NULL;
    const char *word_files[16];
    int preset = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        int r = cli_run_option(argc, argv, &i, &p.run); /* the options of wim run, as there */
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-v")) {
            p.verbose = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_error("repro: unknown option or missing value: '%s'", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--task")) {
            int t = repro_task_from_name(v);
            if (t < 0)
                return cli_error("repro: --task: unknown value '%s' (one of: hotpotqa, squad, "
                                 "multihop-rag, cwe, babilong)",
                                 v);
            p.task = (repro_task)t;
        } else if (!strcmp(a, "--length")) {
            if (parse_length(v, &p.length))
                return cli_error("repro: --length expects e.g. 16k or 4000, got '%s'", v);
        } else if (!strcmp(a, "--patterns")) {
            if (parse_patterns(v, &p)) return 2;
        } else if (!strcmp(a, "--shard")) {
            if (sscanf(v, "%d/%d", &p.shard, &p.n_shards) != 2 || p.n_shards < 1 || p.shard < 0 ||
                p.shard >= p.n_shards)
                return cli_error("repro: --shard expects i/n with 0 <= i < n, got '%s'", v);
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--data"))
            p.data_path = v;
        else if (!strcmp(a, "--out"))
            p.out_dir = v;
        else if (!strcmp(a, "--judge-model"))
            judge = v;
        else if (!strcmp(a, "--words"))
            words = v;
        else if (!strcmp(a, "--preset")) {
            if (strcmp(v, "paper")) return cli_error("repro: the only preset is 'paper'");
            preset = 1;
        } else if (!strcmp(a, "--n")) {
            if (cli_int(a, v, 0, 1 << 24, &n)) return 2;
            p.n = (int)n;
        } else
            return cli_error("repro: unknown option '%s' (see wim repro --help)", a);
    }
    p.seed = p.run.seed; /* --seed: the documents' distractors and the sampling alike */
    if (cli_run_check("repro", &p.run, 0)) return 2;
    if (preset) { /* the reference implementation's published run settings */
        p.preset = "paper";
        p.run.segment_tokens = 4096;
        p.run.margin_tokens = 100;
        p.run.answer_tokens = 50;
        p.run.classify_tokens = 10;
        p.run.top_p = 0.9f;
        p.run.temp = 1.0f;
        if (!p.run.prompts_dir)
            return cli_error("repro: --preset paper needs --prompts DIR (the reference "
                             "implementation's templates/, e.g. ../shared/data/wim-templates)");
    }
    if (p.task == REPRO_TASK_COUNT) return cli_error("repro: --task is required");
    if (!p.length) return cli_error("repro: --length is required (e.g. 16k)");
    if (!model) return cli_error("repro: no model given: pass -m MODEL.gguf");
    if (!p.out_dir) return cli_error("repro: --out DIR is required");
    if (p.task != REPRO_CWE && !p.data_path)
        return cli_error("repro: --data PATH is required for %s (see paper-repro/get-data)",
                         repro_task_name(p.task));
    if (p.task == REPRO_CWE) {
        if (!words && access("/usr/share/dict/words", R_OK) == 0) words = "/usr/share/dict/words";
        if (!words)
            return cli_error("repro: cwe needs --words FILE[,FILE] (or Debian's wamerican)");
        words_copy = strdup(words);
        char *save = NULL;
        for (char *t = strtok_r(words_copy, ",", &save); t && p.n_word_files < 16;
             t = strtok_r(NULL, ",", &save))
            word_files[p.n_word_files++] = t;
        p.word_files = word_files;
    }
    p.model_path = model;
    p.judge_path = judge;
    char err[512];
    wim_model *m = NULL, *jm = NULL;
    int rc = 0;
    if (wim_model_load(model, &m, err, sizeof err) ||
        (judge && wim_model_load(judge, &jm, err, sizeof err)))
        rc = cli_error("%s", err);
    p.judge = jm;
    if (!rc && repro_run(m, &p, err, sizeof err)) rc = cli_error("%s", err);
    if (!rc) {
        char *path = repro_results_path(&p);
        fprintf(stderr, "repro: results in %s\n", path ? path : p.out_dir);
        free(path);
    }
    wim_model_free(jm);
    wim_model_free(m);
    free(words_copy);
    return rc;
}
