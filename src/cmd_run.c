/*
 * cmd_run.c — `wim run`: the WiM pipeline (or a baseline) on a document and a
 * query, as a thin client of wim_run(): JSON Lines events, a progress bar on
 * a terminal, and Ctrl-C that still answers from the margins so far.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "wim.h"

/* The global state of the CLI: a signal handler can only talk to the pipeline
 * through a flag. interrupt_flag: 1 after the first Ctrl-C; bar_on_screen: the
 * progress bar's line is open on the terminal. */
static volatile sig_atomic_t interrupt_flag, bar_on_screen;

static void on_sigint(int sig) {
    if (interrupt_flag) { /* second Ctrl-C: abort now, the shell's prompt on a line of its own */
        if (bar_on_screen && write(STDERR_FILENO, "\n", 1)) bar_on_screen = 0;
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupt_flag = 1;
}

typedef struct {
    FILE *events;            /* NULL: none (yet) */
    const char *events_path; /* opened at the first event: a run refused before it starts
                                leaves an earlier events file as it was */
    int events_errno;        /* why it could not be opened */
    int bar;                 /* draw a progress bar on stderr */
    int show_margins;        /* print margins to stderr as they come, with their verdicts */
    int show_prompts;        /* print prompts to stderr: 1 the first of each kind in full,
                                the others as their header line; 2 every one in full */
    unsigned prompts_shown;  /* the kinds printed in full so far (a bit each) */
    int margin_prompt_tail;  /* the tokens after the segment in the last margin prompt printed
                                in full (they change when the notes shown do) */
    char *margin;            /* the latest margin, printed once its verdict arrives */
    int chat_given;          /* --chat was passed: no note about the raw family */
    int segments, done, kept;
    long tokens;
    double ms;
    char *line;
    size_t line_cap;
} run_view;

static void draw_bar(run_view *v) {
    int width = 24, filled = v->segments ? v->done * width / v->segments : 0;
    double tps = v->ms > 0 ? v->tokens * 1e3 / v->ms : 0;
    double eta = v->done ? v->ms / v->done * (v->segments - v->done) / 1e3 : 0;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d segments  %.0f tok/s  ETA %d:%02d  margins kept %d%s", v->done,
            v->segments, tps, (int)eta / 60, (int)eta % 60, v->kept,
            interrupt_flag ? "  (stopping: Ctrl-C again to abort)" : "");
    fflush(stderr);
    bar_on_screen = 1;
}

/* --show-prompts: a header line (the prompt, its segment, its tokens, where it starts in its
 * context), then the text exactly as the model reads it; a margin's prompt starts with its
 * segment. After the first of each kind, the header alone unless every one was asked for
 * (the same template per segment is noise), but a margin prompt whose notes changed in full
 * again. */
static void print_prompt(run_view *v, const wim_event *ev) {
    static const char *const kinds[] = {"system", "margin", "classify", "answer"};
    unsigned kind = 0;
    for (unsigned k = 0; k < sizeof kinds / sizeof *kinds; k++)
        if (!strcmp(ev->kind, kinds[k])) kind = 1u << k;
    const int tail = ev->n_tokens - ev->lead_tokens;
    const int full = v->show_prompts == 2 || !(v->prompts_shown & kind) ||
                     (ev->lead_tokens && tail != v->margin_prompt_tail);
    v->prompts_shown |= kind;
    if (full && ev->lead_tokens) v->margin_prompt_tail = tail;
    if (v->bar) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "--- prompt: %s", ev->kind);
    if (ev->index >= 0) fprintf(stderr, " (segment %d)", ev->index + 1);
    fprintf(stderr, " \u00b7 %d tokens", ev->n_tokens);
    if (ev->position) fprintf(stderr, " at position %d", ev->position);
    if (ev->bos) fprintf(stderr, " (BOS first)");
    if (ev->lead_tokens) fprintf(stderr, " (segment %d + prompt %d)", ev->lead_tokens, tail);
    fprintf(stderr, "%s ---\n", full ? "" : " \u00b7 text not shown (--show-prompts=all)");
    if (!full) return;
    size_t n = strlen(ev->text);
    fprintf(stderr, "%s%s", ev->text, n && ev->text[n - 1] == '\n' ? "" : "\n");
}

static void on_event(const wim_event *ev, void *user) {
    run_view *v = user;
    if (!v->events && v->events_path && !v->events_errno &&
        !(v->events = fopen(v->events_path, "w")))
        v->events_errno = errno ? errno : EIO;
    if (v->events) {
        if (v->events == stdout && v->bar && bar_on_screen) { /* not glued to the bar */
            fprintf(stderr, "\r\033[K");
            bar_on_screen = 0;
        }
        size_t n = wim_event_json(ev, v->line, v->line_cap);
        if (n >= v->line_cap) {
            char *bigger = realloc(v->line, n + 1);
            if (bigger) {
                v->line = bigger;
                v->line_cap = n + 1;
                wim_event_json(ev, v->line, v->line_cap);
            }
        }
        fprintf(v->events, "%s\n", v->line);
        fflush(v->events); /* each event as it happens */
    }
    switch (ev->type) {
    case WIM_EV_START:
        v->segments = ev->segments;
        if (!v->chat_given && !strcmp(ev->chat, "raw"))
            fprintf(stderr, "wim: note: the model has no chat template; using plain prompts (the "
                            "raw family)\n");
        break;
    case WIM_EV_SEGMENT:
        v->done = ev->index + 1;
        v->tokens += ev->n_tokens;
        v->ms += ev->ms;
        break;
    case WIM_EV_MARGIN:
        v->ms += ev->ms;
        free(v->margin);
        v->margin = v->show_margins && ev->text ? strdup(ev->text) : NULL;
        break;
    case WIM_EV_PROMPT:
        print_prompt(v, ev);
        break;
    case WIM_EV_VERDICT:
        v->kept += ev->relevant;
        if (v->margin) {
            if (v->bar) fprintf(stderr, "\r\033[K");
            if (ev->blank)
                fprintf(stderr, "margin %d: (no sentence the model was sure of)\n", ev->index + 1);
            else
                fprintf(stderr, "margin %d (%s): %s\n", ev->index + 1,
                        ev->relevant ? "kept" : "dropped", v->margin);
            free(v->margin);
            v->margin = NULL;
        }
        break;
    default:
        break;
    }
    if (v->bar && ev->type != WIM_EV_DONE) draw_bar(v);
    if (v->bar && ev->type == WIM_EV_ANSWER) fprintf(stderr, "\n"), bar_on_screen = 0;
}

static const char *const usage =
    "usage: wim run -m MODEL -d FILE -q QUERY [options]   (-d -: the document from stdin)\n"
    "  Runs Writing in the Margins (or a baseline) over a document and answers the query.\n"
    "  The answer goes to stdout; --events writes JSON Lines (schema in the README).\n"
    "  --pattern wim|llm|rag     the pipeline (default wim) or a baseline\n"
    "  --retriever classifier|bm25  how rag picks segments (default classifier); --top-k N\n"
    "  --segment-tokens K        tokens per segment (default 4096, or 1/4 of the model context)\n"
    "  --margin-tokens N         margin length (100); --answer-tokens N (50)\n"
    "  --classify generate|logit the paper's YES/NO generation (default) or one logit comparison\n"
    "  --classify-tokens N       (10); --lenient-classifier accepts yes/YES./Answer: YES\n"
    "  --temp T --top-p P --seed S  sampling (default greedy)\n"
    "  --prompts DIR             template folder (the reference implementation's works as is)\n"
    "  --chat FAMILY             chatml|llama3|llama2|mistral|phi3|gemma|raw (default: the\n"
    "                            model's template)\n"
    "  --max-segments N          process only the first N segments\n"
    "  --margins-in-extraction   show kept margins to each extraction prompt (not the paper's)\n"
    "  --dedupe-margins          note each distinct margin line once (not the paper's)\n"
    "  --extractive-margins      margins quote their segment: line by line the sentence the\n"
    "                            model finds likeliest (for models that copy; not the paper's)\n"
    "  --quote-min-prob P        with it, drop a quoted line where the model gave a token < P\n"
    "                            (it meant a sentence the segment lacks; default 0)\n"
    "  --quote-notes             with it and --margins-in-extraction, a line of the notes\n"
    "                            shown may be quoted again (written, not kept twice)\n"
    "  --answer-from-margins     answer from the kept margins alone, without the document's\n"
    "                            last window (when any was kept; not the paper's)\n"
    "  --quote-exhaustive        with it, score every sentence in full, not the pruned\n"
    "                            search (the same lines; slower; a reference for checks)\n"
    "  --stream                  stream the document through the KV window (pins the system\n"
    "                            prompt); --kv-capacity C, --kv-pin P, --kv-type f16|f32\n"
    "                            (streaming allocates C + chunk - 1 cells)\n"
    "  --sequential-margins      the paper's loop: each margin decoded alone after its segment\n"
    "                            (implied by --stream, --margins-in-extraction and\n"
    "                            --extractive-margins). Otherwise every segment is read, then\n"
    "                            all margins decode together as branches of the cache (one\n"
    "                            forward pass per step for all; the same greedy text)\n"
    "  --save-kv FILE            save the document once read (its KV cells and segments; rag\n"
    "                            prefills it for this) so that --load-kv can ask again\n"
    "  --load-kv FILE            answer from a saved document instead of -d, any pattern\n"
    "                            (wim: not a cache that streamed)\n"
    "  --events FILE|-           JSON Lines events ('-' = stdout)\n"
    "  --show-margins            print each margin on stderr as it is written\n"
    "  --show-prompts[=all]      print each prompt on stderr as the model reads it (chat\n"
    "                            headers included) under a line with its tokens and position;\n"
    "                            a margin's starts with its segment. Margin and classify\n"
    "                            prompts after the first: the line alone (a margin's in full\n"
    "                            again when the notes it shows change), unless =all.\n"
    "                            --events then has them too (\"prompt\" events)\n"
    "  --verify-kv               CRC the KV cache around every margin (events prove no trace)\n"
    "  --chunk K, -t THREADS     prefill chunk (512) and threads\n"
    "  Ctrl-C once: stop after the current step and answer from the margins so far.\n";

static int set_enum(const char *opt, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    char list[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    cli_error("%s: unknown value '%s' (one of: %s)", opt, v, list);
    return -1;
}

int cli_run_option(int argc, char **argv, int *i, wim_run_params *p) {
    static const char *const patterns[] = {"wim", "llm", "rag"};
    static const char *const classifiers[] = {"generate", "logit"};
    static const char *const retrievers[] = {"classifier", "bm25"};
    static const char *const kv_types[] = {"f16", "f32"};
    static const struct {
        const char *name;
        size_t offset;
    } flags[] = {
        {"--stream", offsetof(wim_run_params, stream)},
        {"--lenient-classifier", offsetof(wim_run_params, lenient_classifier)},
        {"--margins-in-extraction", offsetof(wim_run_params, margins_in_extraction)},
        {"--dedupe-margins", offsetof(wim_run_params, dedupe_margins)},
        {"--extractive-margins", offsetof(wim_run_params, extractive_margins)},
        {"--quote-notes", offsetof(wim_run_params, quote_notes)},
        {"--answer-from-margins", offsetof(wim_run_params, answer_from_margins)},
        {"--quote-exhaustive", offsetof(wim_run_params, quote_exhaustive)},
        {"--verify-kv", offsetof(wim_run_params, verify_kv)},
        {"--sequential-margins", offsetof(wim_run_params, sequential_margins)},
    };
    const char *a = argv[*i];
    long n;
    double x;
    int e;
    for (size_t f = 0; f < sizeof flags / sizeof *flags; f++)
        if (!strcmp(a, flags[f].name)) {
            *(int *)((char *)p + flags[f].offset) = 1;
            return 1;
        }
    if (*i + 1 >= argc) return 0;
    const char *val = argv[*i + 1];
#define INT(name, lo, hi, dst)                                                                     \
    else if (!strcmp(a, name)) {                                                                   \
        if (cli_int(a, val, lo, hi, &n)) return -1;                                                \
        dst = (int)n;                                                                              \
    }
#define ENUM(name, table, dst)                                                                     \
    else if (!strcmp(a, name)) {                                                                   \
        if (set_enum(a, val, table, (int)(sizeof table / sizeof *table), &e)) return -1;           \
        dst = e;                                                                                   \
    }
    if (!strcmp(a, "--prompts"))
        p->prompts_dir = val;
    else if (!strcmp(a, "--chat"))
        p->chat = val;
    ENUM("--pattern", patterns, p->pattern)
    ENUM("--classify", classifiers, p->classify)
    ENUM("--retriever", retrievers, p->retriever)
    ENUM("--kv-type", kv_types, p->ctx.kv_type)
    INT("--segment-tokens", 1, 1 << 20, p->segment_tokens)
    INT("--margin-tokens", 1, 1 << 16, p->margin_tokens)
    INT("--classify-tokens", 1, 1 << 16, p->classify_tokens)
    INT("--answer-tokens", 1, 1 << 16, p->answer_tokens)
    INT("--top-k", 1, 1 << 20, p->top_k)
    INT("--max-segments", 1, 1 << 24, p->max_segments)
    INT("--kv-capacity", 1, 1 << 24, p->ctx.n_ctx)
    INT("--kv-pin", 0, 1 << 24, p->ctx.kv_pin)
    INT("--chunk", 1, 1 << 16, p->ctx.chunk)
    INT("-t", 1, 1024, p->ctx.n_threads)
    INT("--threads", 1, 1024, p->ctx.n_threads)
    else if (!strcmp(a, "--seed")) {
        if (cli_int(a, val, 0, 0x7fffffffL, &n)) return -1;
        p->seed = (uint64_t)n;
    }
    else if (!strcmp(a, "--temp")) {
        if (cli_float(a, val, 0, 100, &x)) return -1;
        p->temp = (float)x;
    }
    else if (!strcmp(a, "--top-p")) {
        if (cli_float(a, val, 0, 1, &x)) return -1;
        p->top_p = (float)x;
    }
    else if (!strcmp(a, "--quote-min-prob")) {
        if (cli_float(a, val, 0, 1, &x)) return -1;
        p->quote_min_prob = (float)x;
    }
    else return 0;
#undef INT
#undef ENUM
    ++*i;
    return 1;
}

/* One line on stderr for options the pattern never reads: the same command line may be run
 * with each --pattern to compare them, so this is a note and not an error. */
static void note_unused(const char *cmd, const char *options, const char *pattern) {
    fprintf(stderr, "wim: note: %s: %s not used by %s (ignored)\n", cmd, options, pattern);
}

int cli_run_check(const char *cmd, const wim_run_params *p, int one_pattern) {
    const wim_run_params d = wim_run_default_params();
    const int wim = p->pattern == WIM_PATTERN_WIM, rag = p->pattern == WIM_PATTERN_RAG;
    const int bm25 = rag && p->retriever == WIM_RETRIEVER_BM25;
    const char *name = wim ? "the wim pattern" : rag ? "the rag pattern" : "the llm pattern";
    if (one_pattern && !wim &&
        (p->extractive_margins || p->margins_in_extraction || p->dedupe_margins ||
         p->sequential_margins || p->verify_kv || p->margin_tokens != d.margin_tokens))
        note_unused(cmd, "margin options (--margin-tokens, --extractive-margins, ...) are", name);
    if (one_pattern && !rag && p->retriever != d.retriever)
        note_unused(cmd, "--retriever is", name);
    if (one_pattern && !bm25 && p->top_k != d.top_k)
        note_unused(cmd, "--top-k is", rag ? "the classifier (only --retriever bm25)" : name);
    if (one_pattern && (p->pattern == WIM_PATTERN_LLM || bm25) &&
        (p->classify != d.classify || p->classify_tokens != d.classify_tokens ||
         p->lenient_classifier))
        note_unused(cmd, "classifier options (--classify, --classify-tokens, ...) are",
                    bm25 ? "BM25 retrieval" : name);
    if (p->quote_min_prob > 0 && !p->extractive_margins)
        return cli_error("%s: --quote-min-prob applies to --extractive-margins only", cmd);
    if (p->quote_notes && !(p->extractive_margins && p->margins_in_extraction))
        return cli_error("%s: --quote-notes needs --extractive-margins and --margins-in-extraction",
                         cmd);
    if (p->answer_from_margins && p->pattern != WIM_PATTERN_WIM)
        return cli_error("%s: --answer-from-margins applies to the wim pattern only", cmd);
    if (p->quote_exhaustive && !p->extractive_margins)
        return cli_error("%s: --quote-exhaustive applies to --extractive-margins only", cmd);
    return 0;
}

static int parse(int argc, char **argv, wim_run_params *p, const char **model, const char **doc,
                 const char **query, const char **events, run_view *v) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_run_option(argc, argv, &i, p);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "--show-margins")) {
            v->show_margins = 1;
            continue;
        }
        if (!strcmp(a, "--show-prompts")) { /* its value is optional: --show-prompts=all */
            const char *how = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : NULL;
            if (how && strcmp(how, "all"))
                return cli_error("--show-prompts: unknown value '%s' (one of: all)", how);
            v->show_prompts = how ? 2 : 1;
            p->prompt_events = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_error("run: unknown option or missing value: '%s'", a);
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            *model = val;
        else if (!strcmp(a, "-d") || !strcmp(a, "--doc"))
            *doc = val;
        else if (!strcmp(a, "-q") || !strcmp(a, "--query"))
            *query = val;
        else if (!strcmp(a, "--events"))
            *events = val;
        else if (!strcmp(a, "--save-kv"))
            p->save_kv = val;
        else if (!strcmp(a, "--load-kv"))
            p->load_kv = val;
        else
            return cli_error("run: unknown option '%s' (see wim run --help)", a);
    }
    v->chat_given = p->chat != NULL;
    if (!*model) return cli_error("run: no model given: pass -m MODEL.gguf");
    if (!*doc && !p->load_kv)
        return cli_error("run: no document given: pass -d FILE (or -d - for stdin)");
    if (!*query) return cli_error("run: no query given: pass -q QUERY");
    if (*doc && p->load_kv)
        return cli_error("run: -d and --load-kv both give the document: pass one of them");
    if (p->save_kv && cli_check_output("--save-kv", p->save_kv, 1)) return 2;
    if (*events && strcmp(*events, "-") && cli_check_output("--events", *events, 0)) return 2;
    return cli_run_check("run", p, 1);
}

static char *read_doc(const char *path, size_t *len) {
    if (strcmp(path, "-")) return cli_read_file(path, len);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0;) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b) free(buf);
            buf = b;
            cap *= 2;
        }
    }
    if (!buf)
        cli_error("out of memory reading stdin");
    else
        buf[n] = 0;
    *len = n;
    return buf;
}

int cmd_run(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
    wim_run_params p = wim_run_default_params();
    const char *model = NULL, *doc_path = NULL, *query = NULL, *events = NULL;
    run_view v = {0};
    int rc = parse(argc, argv, &p, &model, &doc_path, &query, &events, &v);
    if (rc) return rc;
    size_t doc_len = 0;
    char *doc = doc_path ? read_doc(doc_path, &doc_len) : calloc(1, 1);
    if (!doc) return 2;
    char err[512];
    wim_model *m = NULL;
    wim_result res = {0};
    if (wim_model_load(model, &m, err, sizeof err)) {
        free(doc);
        return cli_error("%s", err);
    }
    if (p.ctx.n_ctx > wim_model_n_ctx(m))
        fprintf(stderr,
                "wim: note: --kv-capacity %d is past the %d tokens the model was trained on: "
                "positions beyond are extrapolated\n",
                p.ctx.n_ctx, wim_model_n_ctx(m));
    if (events && strcmp(events, "-")) v.events_path = events;
    if (events && !strcmp(events, "-")) v.events = stdout;
    v.bar = isatty(STDERR_FILENO);
    v.line_cap = 4096;
    v.line = malloc(v.line_cap);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    p.interrupt = (const volatile int *)&interrupt_flag;
    if (wim_run(m, doc, doc_len, query, &p, on_event, &v, &res, err, sizeof err)) {
        if (v.bar && bar_on_screen) fprintf(stderr, "\n");
        rc = cli_error("%s", err);
        if (interrupt_flag) rc = 130; /* stopped by Ctrl-C, as a shell reports it */
    } else if (v.events != stdout) {  /* the answer alone on its line, without the space
                                         a tokenizer writes before a first word */
        size_t n;
        const char *a = wim_answer_text(res.answer, &n);
        printf("%.*s\n", (int)n, a);
    }
    sigaction(SIGINT, &old, NULL);
    if (!rc && res.interrupted)
        fprintf(stderr,
                "wim: interrupted: the answer comes from the first %d segments and the "
                "margins written by then\n",
                res.n_segments);
    if (!rc && res.save_error) { /* the answer is out; the file is not */
        fprintf(stderr, "wim: --save-kv: %s\n", res.save_error);
        rc = 1;
    }
    if (v.events_errno && !rc)
        rc = cli_error("%s: cannot write events: %s", events, strerror(v.events_errno));
    if (v.events && v.events != stdout && (ferror(v.events) | fclose(v.events)) && !rc)
        rc = cli_error("%s: cannot write events: %s", events, strerror(errno ? errno : EIO));
    wim_result_free(&res);
    free(v.line);
    free(v.margin);
    wim_model_free(m);
    free(doc);
    return rc;
}
