/*
 * test_wim.c — the pipeline's central promise: margins never pollute the
 * context. The KV cache after each margin is bit-identical to the cache
 * before it, and the final answer's logits equal those of a run whose
 * margins are injected as plain text without ever being generated there. And
 * extractive margins quote the document, greedy or sampled, and never keep a note twice;
 * an answer from the margins alone does not read the document.
 */
#include <unistd.h>

#include "margin_text.h"
#include "simd.h"
#include "test.h"
#include "wim.h"

static const char *document =
    "Mary moved to the bathroom. John went to the hallway. The ball is red. "
    "Daniel picked up the apple there. Sandra journeyed to the garden. "
    "Mary travelled to the office. John went back to the kitchen. The cat sat on the mat. "
    "Daniel dropped the apple. Sandra moved to the hallway. Lily saw a big red ball in the park. "
    "She wanted to play with it, but it was too high. Her mom said they could go home. "
    "Tom had a little dog named Max. Max liked to run and jump in the sun every day.";

typedef struct {
    int margins, mismatches, order_ok, last;
} watcher;

static void watch(const wim_event *ev, void *user) {
    watcher *w = user;
    if (ev->type == WIM_EV_MARGIN) {
        w->margins++;
        if (!ev->has_kv_crc || ev->kv_crc_before != ev->kv_crc_after) w->mismatches++;
    }
    if ((int)ev->type < w->last && !(ev->type == WIM_EV_SEGMENT && w->last == WIM_EV_VERDICT))
        w->order_ok = 0;
    w->last = (int)ev->type;
}

static wim_model *load(void) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", t_shared());
    if (!t_file_exists(path)) return NULL;
    wim_model *m;
    return wim_model_load(path, &m, err, sizeof err) ? NULL : m;
}

static wim_run_params params(void) {
    wim_run_params p = wim_run_default_params();
    p.segment_tokens = 48;
    p.margin_tokens = 24;
    p.answer_tokens = 16;
    p.chat = "raw";
    p.ctx.chunk = 16;
    return p;
}

static void test_margins_leave_cache_bit_identical(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    wim_run_params p = params();
    p.verify_kv = 1;
    watcher w = {0, 0, 1, 0};
    wim_result r;
    char err[256];
    CHECKF(wim_run(m, document, strlen(document), "Where is Mary?", &p, watch, &w, &r, err,
                   sizeof err) == 0,
           "%s", err);
    CHECK(r.n_segments >= 3);
    CHECKF(w.margins == r.n_segments && w.mismatches == 0, "%d margins, %d changed the cache",
           w.margins, w.mismatches);
    CHECK(w.order_ok);
    wim_result_free(&r);
    wim_model_free(m);
}

static void test_injected_margins_give_identical_answer_logits(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    int keep[64];
    for (int i = 0; i < 64; i++)
        keep[i] = i % 2 == 0; /* so the final prompt carries margins */
    wim_run_params p = params();
    p.injected_relevant = keep; /* run a: margins generated in the cache, verdicts fixed */
    p.n_injected = 64;
    wim_result a, b;
    char err[256];
    CHECKF(wim_run(m, document, strlen(document), "Where is Mary?", &p, NULL, NULL, &a, err,
                   sizeof err) == 0,
           "%s", err);
    wim_run_params q = p; /* run b: the same margins as plain text, never generated here */
    q.injected_margins = (const char *const *)a.margins;
    CHECKF(wim_run(m, document, strlen(document), "Where is Mary?", &q, NULL, NULL, &b, err,
                   sizeof err) == 0,
           "%s", err);
    CHECK(b.n_segments == a.n_segments && a.n_segments >= 3);
    int carried = 0;
    for (int i = 0; i < a.n_segments; i++)
        carried += a.relevant[i] && a.margins[i][0];
    CHECK(carried > 0);
    CHECK(memcmp(a.answer_logits, b.answer_logits, 512 * sizeof(float)) == 0);
    CHECK(!strcmp(a.answer, b.answer));
    wim_result_free(&a);
    wim_result_free(&b);
    wim_model_free(m);
}

/* --answer-from-margins: the answer reads the kept margins and not the document's window,
 * so two documents with the same kept margins give the same answer logits; with no margin
 * kept it answers from the window, as without the option. */
static void test_answer_from_margins_reads_only_the_notes(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    static const char *other = "Tom had a little dog named Max. The sun was hot. Lily ran home. "
                               "Sandra went to the garden and sat under a big tree all day.";
    const char *margins[64];
    int keep[64] = {1}, none[64] = {0};
    for (int i = 0; i < 64; i++)
        margins[i] = i == 0 ? "Mary travelled to the office." : "";
    /* runs: the option on both documents; without it; the option and nothing kept;
     * neither */
    const int option[5] = {1, 1, 0, 1, 0}, on_other[5] = {0, 1, 0, 0, 0}, kept[5] = {1, 1, 1, 0, 0};
    float logits[5][512];
    for (int run = 0; run < 5; run++) {
        wim_run_params p = params();
        p.injected_margins = margins;
        p.injected_relevant = kept[run] ? keep : none;
        p.n_injected = 64;
        p.answer_from_margins = option[run];
        const char *doc = on_other[run] ? other : document;
        wim_result r;
        char err[256];
        CHECKF(wim_run(m, doc, strlen(doc), "Where is Mary?", &p, NULL, NULL, &r, err,
                       sizeof err) == 0,
               "%s", err);
        memcpy(logits[run], r.answer_logits, sizeof logits[run]);
        wim_result_free(&r);
    }
    CHECKF(memcmp(logits[0], logits[1], sizeof logits[0]) == 0,
           "the answer read the document although the option drops it");
    CHECKF(memcmp(logits[0], logits[2], sizeof logits[0]) != 0,
           "with and without the window the answer logits are the same: the test cannot tell");
    CHECKF(memcmp(logits[3], logits[4], sizeof logits[3]) == 0,
           "with no margin kept the option changed the answer");
    wim_model_free(m);
}

/* --dedupe-margins: kept margins joined line by line, each distinct line once. Margins
 * "A\nB", "B\nC", "A" must give the final prompt of margins "A\nB", "C" without it. */
static void test_dedupe_margins_joins_distinct_lines(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    const char *dup[64], *plain[64];
    int keep_dup[64] = {1, 1, 1}, keep_plain[64] = {1, 1};
    for (int i = 0; i < 64; i++)
        dup[i] = plain[i] = "";
    dup[0] = plain[0] = "Mary is in the office.\nJohn is in the kitchen.";
    dup[1] = "John is in the kitchen.\nThe ball is red.";
    dup[2] = "Mary is in the office.";
    plain[1] = "The ball is red.";
    wim_run_params p = params();
    p.n_injected = 64;
    p.injected_margins = dup;
    p.injected_relevant = keep_dup;
    p.dedupe_margins = 1;
    wim_run_params q = p;
    q.injected_margins = plain;
    q.injected_relevant = keep_plain;
    q.dedupe_margins = 0;
    wim_run_params r = p;
    r.dedupe_margins = 0;
    wim_result a, b, c;
    char err[256];
    int ok = wim_run(m, document, strlen(document), "Where is Mary?", &p, NULL, NULL, &a, err,
                     sizeof err) == 0 &&
             wim_run(m, document, strlen(document), "Where is Mary?", &q, NULL, NULL, &b, err,
                     sizeof err) == 0 &&
             wim_run(m, document, strlen(document), "Where is Mary?", &r, NULL, NULL, &c, err,
                     sizeof err) == 0;
    CHECKF(ok, "%s", err);
    if (!ok) return;
    CHECK(a.n_segments >= 3);
    CHECK(memcmp(a.answer_logits, b.answer_logits, 512 * sizeof(float)) == 0);
    CHECK(a.tokens_prefilled == b.tokens_prefilled);
    CHECK(c.tokens_prefilled > a.tokens_prefilled); /* without dedupe the repeats stay */
    wim_result_free(&a);
    wim_result_free(&b);
    wim_result_free(&c);
    wim_model_free(m);
}

/* Counts the verdict events that say their margin was blank. */
static void count_blank(const wim_event *ev, void *user) {
    *(int *)user += ev->type == WIM_EV_VERDICT && ev->blank;
}

/* Whether holds(line, its length, arg) for every line of text. */
static int every_line(const char *text, int (*holds)(const char *, size_t, const void *),
                      const void *arg) {
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (!holds(p, len, arg)) return 0;
        p += len + (eol != NULL);
    }
    return 1;
}

typedef struct {
    const wim_span *span;
    int n;
} sentence_table;

static int is_document_sentence(const char *line, size_t len, const void *arg) {
    const sentence_table *t = arg;
    for (int j = 0; j < t->n; j++)
        if (t->span[j].len == len && !memcmp(document + t->span[j].start, line, len)) return 1;
    return 0;
}

/* Whether every line of margin is one of the document's sentences. */
static int quotes_document(const char *margin) {
    wim_span *sent;
    int n = wim_sentences(document, strlen(document), &sent);
    sentence_table t = {sent, n};
    int ok = n >= 0 && every_line(margin, is_document_sentence, &t);
    free(sent);
    return ok;
}

/* --extractive-margins: every margin line is a sentence of the document (of its segment),
 * where the same model unconstrained writes lines that are not; with --quote-min-prob 1
 * no line is sure enough, every margin is blank (and its verdict event says so) and none
 * is kept. */
static void test_extractive_margins_quote_the_document(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    size_t len = strlen(document);
    int invented = 0;
    for (int run = 0; run < 3; run++) {
        wim_run_params p = params();
        p.extractive_margins = run > 0;
        p.quote_min_prob = run == 2 ? 1.0f : 0.0f;
        int blank = 0;
        wim_result r;
        char err[256];
        CHECKF(wim_run(m, document, len, "Where is Mary?", &p, count_blank, &blank, &r, err,
                       sizeof err) == 0,
               "%s", err);
        CHECK(r.n_segments >= 3);
        int words = 0, kept = 0;
        for (int i = 0; i < r.n_segments; i++) {
            words += wim_margin_has_word(r.margins[i]);
            kept += r.relevant[i];
            if (run == 0)
                invented += !quotes_document(r.margins[i]);
            else
                CHECKF(quotes_document(r.margins[i]), "margin %d is not the document's: '%s'", i,
                       r.margins[i]);
        }
        if (run == 1) CHECKF(words > 0, "every margin blank");
        if (run == 2) CHECKF(words == 0 && kept == 0, "%d margins written, %d kept", words, kept);
        if (run == 2) CHECKF(blank == r.n_segments, "%d blank verdict events", blank);
        wim_result_free(&r);
    }
    CHECKF(invented > 0,
           "unconstrained, every margin quoted the document: the test proves nothing");
    wim_model_free(m);
}

/* Sums the margin events' notes_quoted; counts those that report it. */
static void count_notes_quoted(const wim_event *ev, void *user) {
    int *n = user;
    if (ev->type != WIM_EV_MARGIN) return;
    n[0] += ev->notes_quoted;
    n[1] += ev->has_notes_quoted;
}

typedef struct {
    const char *text;
    size_t len;
} line_ref;

static int differs_from(const char *line, size_t len, const void *arg) {
    const line_ref *other = arg;
    return len != other->len || memcmp(line, other->text, len);
}

/* Whether line is none of the lines of earlier. */
static int is_new_line(const char *line, size_t len, const void *earlier) {
    line_ref ref = {line, len};
    return every_line(earlier, differs_from, &ref);
}

/* --quote-notes: the notes shown to an extraction prompt may be quoted again, but such a
 * line is written, never kept: as the segments share no sentence, no kept line repeats an
 * earlier one. Every margin is kept (injected verdicts) so the notes fill up. */
static void test_quote_notes_never_keeps_a_note(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    int keep[64];
    for (int i = 0; i < 64; i++)
        keep[i] = 1;
    wim_run_params p = params();
    p.extractive_margins = p.margins_in_extraction = p.dedupe_margins = p.quote_notes = 1;
    p.injected_relevant = keep;
    p.n_injected = 64;
    int counts[2] = {0, 0};
    wim_result r;
    char err[256];
    CHECKF(wim_run(m, document, strlen(document), "Where is Mary?", &p, count_notes_quoted, counts,
                   &r, err, sizeof err) == 0,
           "%s", err);
    CHECK(r.n_segments >= 3 && r.n_segments <= 64);
    CHECKF(counts[1] == r.n_segments, "%d of %d margin events report notes_quoted", counts[1],
           r.n_segments);
    for (int i = 1; i < r.n_segments; i++) {
        char *earlier = wim_margins_join(r.margins, r.relevant, i, 1);
        CHECK(earlier != NULL);
        CHECKF(every_line(r.margins[i], is_new_line, earlier), "margin %d keeps a note again: '%s'",
               i, r.margins[i]);
        free(earlier);
    }
    CHECKF(counts[0] > 0, "no note was quoted again: the test proves nothing");
    wim_result_free(&r);
    wim_model_free(m);
}

/* wim_doc: a document read once answers each question as wim_run does on the text, for
 * every pattern (and an answer from the margins alone, which starts a context of its own),
 * and for the paper's loop too: on a plain cache (each margin on a copy of the cache as it
 * was after its segment) and through a streaming window (the window kept after each
 * segment); asking leaves the document as it was (the first question asked again gives the
 * same bits), and a document saved and loaded back answers the same (a streamed one, which
 * keeps no windows, refuses the wim pattern). */
static int same_result(const wim_result *a, const wim_result *b) {
    if (a->n_segments != b->n_segments || strcmp(a->answer, b->answer) ||
        memcmp(a->answer_logits, b->answer_logits, 512 * sizeof(float)))
        return 0;
    for (int i = 0; i < a->n_segments; i++)
        if (a->relevant[i] != b->relevant[i] ||
            ((a->margins[i] || b->margins[i]) &&
             (!a->margins[i] || !b->margins[i] || strcmp(a->margins[i], b->margins[i]))))
            return 0;
    return 1;
}

static void test_document_read_once_answers_like_wim_run(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    static const char *const queries[3] = {"Where is Mary?", "What did Daniel drop?",
                                           "Where is Mary?"};
    char err[256], path[64];
    snprintf(path, sizeof path, "/tmp/wim-doc-%d.kv", (int)getpid());
    char longer[4 * 1024]; /* four times the document: more than the window below */
    snprintf(longer, sizeof longer, "%s %s %s %s", document, document, document, document);
    for (int variant = 0; variant < 6; variant++) {
        wim_run_params p = params();
        if (variant >= 4) { /* the loop: extractive margins that see the notes so far */
            p.extractive_margins = p.margins_in_extraction = p.quote_notes = 1;
            p.stream = variant == 5;
            p.ctx.n_ctx = variant == 5 ? 340 : 0; /* the window: a few segments */
        }
        const char *text = p.stream ? longer : document;
        p.pattern = variant == 1   ? WIM_PATTERN_LLM
                    : variant == 2 ? WIM_PATTERN_RAG
                                   : WIM_PATTERN_WIM;
        p.answer_from_margins = variant == 3;
        wim_doc *d = NULL, *loaded = NULL;
        CHECKF(wim_doc_read(m, text, strlen(text), &p, NULL, NULL, &d, err, sizeof err) == 0, "%s",
               err);
        CHECK(wim_doc_segments(d) >= 3 && wim_doc_tokens(d) > (p.stream ? 400 : 100));
        CHECKF(wim_doc_save(d, path, err, sizeof err) == 0, "%s", err);
        CHECKF(wim_doc_load(m, path, &p.ctx, &loaded, err, sizeof err) == 0, "%s", err);
        unlink(path);
        int ok = 1;
        if (p.stream) { /* the file holds the last window only */
            wim_result r;
            CHECKF(wim_doc_ask(loaded, queries[0], &p, NULL, NULL, &r, err, sizeof err) == -1 &&
                       strstr(err, "window after each segment"),
                   "a streamed document loaded from a file: %s", err);
        }
        for (int q = 0; q < (variant >= 4 ? 2 : 4) && ok; q++) { /* the loop: slower */
            const char *query = queries[q % 3];
            wim_result fresh, asked;
            CHECKF(wim_run(m, text, strlen(text), query, &p, NULL, NULL, &fresh, err, sizeof err) ==
                       0,
                   "%s", err);
            int rc = wim_doc_ask(q == 3 && !p.stream ? loaded : d, query, &p, NULL, NULL, &asked,
                                 err, sizeof err);
            ok = rc == 0 && same_result(&fresh, &asked);
            wim_result_free(&fresh);
            if (rc == 0) wim_result_free(&asked);
            CHECKF(ok, "variant %d, question %d (%s): %s", variant, q, query,
                   rc ? err : "differs from wim_run");
        }
        wim_doc_free(d);
        wim_doc_free(loaded);
    }
    wim_model_free(m);
}

static void test_input_checks(void) {
    wim_model *m = load();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    wim_run_params p = params();
    wim_result r;
    char err[256];
    CHECK(wim_run(m, "", 0, "q", &p, NULL, NULL, &r, err, sizeof err) == -1 &&
          strstr(err, "empty"));
    CHECK(wim_run(m, document, strlen(document), "", &p, NULL, NULL, &r, err, sizeof err) == -1 &&
          strstr(err, "query"));
    p.ctx.n_ctx = 64; /* far too small for the document, and no streaming */
    CHECK(wim_run(m, document, strlen(document), "q", &p, NULL, NULL, &r, err, sizeof err) == -1 &&
          strstr(err, "KV"));
    wim_model_free(m);
}

int main(void) {
    char err[128];
    if (wim_kernels_init(err, sizeof err)) {
        printf("FAIL kernels: %s\n", err);
        return 1;
    }
    RUN(test_margins_leave_cache_bit_identical);
    RUN(test_injected_margins_give_identical_answer_logits);
    RUN(test_dedupe_margins_joins_distinct_lines);
    RUN(test_answer_from_margins_reads_only_the_notes);
    RUN(test_extractive_margins_quote_the_document);
    RUN(test_quote_notes_never_keeps_a_note);
    RUN(test_document_read_once_answers_like_wim_run);
    RUN(test_input_checks);
    return t_exit();
}
