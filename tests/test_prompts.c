/*
 * test_prompts.c — the prompt templates and the classifier's verdict rule.
 *
 * Templates: the built-in defaults equal the .txt files in data/prompts/ byte for byte and
 * keep the WiM structure (fence opened by system, closed by extraction and final
 * answer); the reference implementation's folder renders to exact, hand-written
 * strings for ChatML and Llama 3 headers (golden); single-pass substitution,
 * literal braces, and every load / render error as one clear line.
 * Classifier: the paper's rule and the lenient one on a table of tricky outputs.
 */
#include "test.h"

#include "prompts.h"
#include "verdict.h"

#include <sys/stat.h>
#include <unistd.h>

#define CHATML_USER "<|im_start|>user\n"
#define CHATML_GEN "<|im_end|>\n<|im_start|>assistant\n"
#define LLAMA3_USER "<|start_header_id|>user<|end_header_id|>\n\n"
#define LLAMA3_GEN "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"

/* ---------- helpers ---------- */

/* A whole file (malloc'd, NUL-terminated), or NULL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n == cap - 1) {
            char *g = realloc(buf, cap * 2);
            if (!g) free(buf);
            buf = g;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(text, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The project's data/prompts, from the repository root (where tests/run.sh runs us) or
 * from a folder one below it. */
static const char *prompts_dir(void) {
    static const char *const candidates[] = {"data/prompts", "../data/prompts"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/system_message.txt", candidates[i]);
        if (t_file_exists(path)) return candidates[i];
    }
    return NULL;
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + strlen(needle), needle))
        n++;
    return n;
}

/* ---------- the built-in defaults ---------- */

static void test_defaults_match_data_files(void) {
    const char *dir = prompts_dir();
    CHECKF(dir, "data/prompts/ not found: run from the repository root");
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, wim_prompt_file_name(k));
        size_t len;
        char *text = slurp(path, &len);
        CHECKF(text, "cannot read %s", path);
        int same =
            len == strlen(wim_prompt_defaults[k]) && memcmp(text, wim_prompt_defaults[k], len) == 0;
        free(text);
        CHECKF(same,
               "%s differs from src/prompts_default.c; run: python3 data/prompts/embed.py > "
               "src/prompts_default.c",
               path);
    }
}

static void test_defaults_load(void) {
    wim_prompts p;
    char err[256] = "";
    CHECKF(wim_prompts_load(NULL, &p, err, sizeof err) == 0, "%s", err);
    CHECK(p.dir == NULL);
    for (int k = 0; k < WIM_PROMPT_COUNT; k++)
        CHECK(strcmp(p.text[k], wim_prompt_defaults[k]) == 0);
    wim_prompts_free(&p);
    const char *dir = prompts_dir();
    CHECKF(dir, "data/prompts/ not found: run from the repository root");
    CHECKF(wim_prompts_load(dir, &p, err, sizeof err) == 0, "%s", err); /* --prompts data/prompts */
    CHECK(p.dir && strcmp(p.dir, dir) == 0);
    wim_prompts_free(&p);
    CHECK(p.text[0] == NULL && p.dir == NULL);
}

/* The roles and the fence of the WiM pattern: system opens the user turn and a ``` fence; the
 * segments go inside; extraction and final answer close it and open the reply; classification
 * is a turn of its own with the margin fenced. */
static void test_defaults_structure(void) {
    const char *const *t = wim_prompt_defaults;
    const char *sys = t[WIM_PROMPT_SYSTEM], *ext = t[WIM_PROMPT_EXTRACT];
    const char *cls = t[WIM_PROMPT_CLASSIFY], *ans = t[WIM_PROMPT_ANSWER];
    CHECK(starts_with(sys, "{user_header}") && ends_with(sys, "\n```\n"));
    CHECK(count_of(sys, "```") == 1 && !strstr(sys, "{query}")); /* the cache serves any query */
    for (int k = WIM_PROMPT_EXTRACT; k < WIM_PROMPT_COUNT; k++) {
        CHECKF(ends_with(t[k], "{generation_header}"), "%s", wim_prompt_file_name(k));
        CHECKF(count_of(t[k], "{generation_header}") == 1, "%s", wim_prompt_file_name(k));
        CHECKF(strstr(t[k], "{query}"), "%s", wim_prompt_file_name(k));
    }
    /* extraction and final answer continue the system turn and close its fence */
    CHECK(starts_with(ext, "\n```\n") && count_of(ext, "```") == 1 &&
          !strstr(ext, "{user_header}"));
    CHECK(starts_with(ans, "\n```\n") && count_of(ans, "```") == 1 &&
          !strstr(ans, "{user_header}"));
    /* a fixed sentence for "nothing here", which the classifier is told to reject */
    CHECK(strstr(ext, "reply exactly: Nothing relevant.") && strstr(cls, "\"Nothing relevant\""));
    /* classification: its own turn, the margin fenced, the YES#/NO# format shown */
    CHECK(starts_with(cls, "{user_header}") && count_of(cls, "{user_header}") == 1);
    CHECK(strstr(cls, "```\n{answer}\n```") && count_of(cls, "```") == 2);
    CHECK(strstr(cls, "\nYES#") && strstr(cls, "\nNO#"));
    CHECK(strstr(ans, "{margins}"));
}

/* The prefill order of one WiM step renders to one well-formed ChatML conversation. */
static void test_defaults_render_wim_step(void) {
    wim_prompt_vars v = {CHATML_USER, CHATML_GEN, "Where is the apple?", NULL, NULL};
    char err[256] = "";
    char *sys = wim_prompt_render(wim_prompt_defaults[WIM_PROMPT_SYSTEM], &v, err, sizeof err);
    char *ext = wim_prompt_render(wim_prompt_defaults[WIM_PROMPT_EXTRACT], &v, err, sizeof err);
    CHECKF(sys && ext, "%s", err);
    char all[4096];
    snprintf(all, sizeof all, "%s%s%s", sys, "Mary went to the kitchen. She put the apple there.",
             ext);
    free(sys);
    free(ext);
    CHECK(starts_with(all, CHATML_USER "Read the document below."));
    CHECK(strstr(all, "```\nMary went to the kitchen. She put the apple there.\n```\n"));
    CHECK(strstr(all, "Question: Where is the apple?\n"));
    CHECK(ends_with(all, "Nothing relevant." CHATML_GEN));
    CHECK(count_of(all, "<|im_start|>") == 2 && count_of(all, "<|im_end|>") == 1);
}

/* ---------- golden: the reference implementation's templates ---------- */

#define Q "Where is the apple?"
#define MARGIN "The apple is in the kitchen."
#define MARGINS "Mary moved to the hallway. The apple is in the kitchen."

/* Written by hand from the bytes of ../shared/data/wim-templates/ (none ends with a newline;
 * two lines of classification.txt end with a space). */
#define REF_SYSTEM(UH) UH "\n```"
#define REF_EXTRACT(GH)                                                                            \
    "```\nGiven the above context, extract all information relevant to the query: \"" Q "\". If "  \
    "the context is not relevant to the query, answer \"I don't know.\"" GH
#define REF_CLASSIFY(UH, GH)                                                                       \
    UH "\nI asked an LLM assistant whether a piece of document is related to the query: \"" Q      \
       "\". This is its answer: \n"                                                                \
       "```text\n" MARGIN "\n```\n"                                                                \
       "Should I save it for later? \n"                                                            \
       "Here are rules:\n"                                                                         \
       "- Answer YES if the answer contains information about the query. \n"                       \
       "- Answer NO if the answer says the piece isn't related to the query.\n"                    \
       "\n"                                                                                        \
       "Provide the answer in the format: <YES/NO>#<Explanation>. \n"                              \
       "Here is are example answers:\n"                                                            \
       "\n"                                                                                        \
       "YES#Yes, the information contains an excerpt from a book that is related to the "          \
       "question.\n"                                                                               \
       "NO#No, the LLM assistant concluded the information isn't relevant.\n"                      \
       "\n"                                                                                        \
       "Don't add any other comments, all your remarks should be included in the \"Explanation\" " \
       "section.\n" GH
#define REF_ANSWER(GH) "```\n" MARGINS "\n" Q "\n" GH

static void check_golden(const char *uh, const char *gh, const char *const want[WIM_PROMPT_COUNT]) {
    char dir[1024], err[256] = "";
    snprintf(dir, sizeof dir, "%s/data/wim-templates", t_shared());
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/classification.txt", dir);
    if (!t_file_exists(probe)) SKIP("%s not found (the reference template folder)", dir);
    wim_prompts p;
    CHECKF(wim_prompts_load(dir, &p, err, sizeof err) == 0, "%s", err);
    wim_prompt_vars v = {uh, gh, Q, MARGIN, MARGINS};
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        char *got = wim_prompt_render(p.text[k], &v, err, sizeof err);
        int same = got && strcmp(got, want[k]) == 0;
        if (!same)
            fprintf(stderr, "%s rendered as:\n%s\n", wim_prompt_file_name(k), got ? got : err);
        free(got);
        if (!same) wim_prompts_free(&p);
        CHECKF(same, "%s does not render to the expected string", wim_prompt_file_name(k));
    }
    wim_prompts_free(&p);
}

static void test_golden_reference_chatml(void) {
    const char *const want[WIM_PROMPT_COUNT] = {REF_SYSTEM(CHATML_USER), REF_EXTRACT(CHATML_GEN),
                                                REF_CLASSIFY(CHATML_USER, CHATML_GEN),
                                                REF_ANSWER(CHATML_GEN)};
    /* spot-check the macro expansion itself against the literal bytes */
    CHECK(strcmp(want[WIM_PROMPT_SYSTEM], "<|im_start|>user\n\n```") == 0);
    CHECK(strlen(want[WIM_PROMPT_CLASSIFY]) ==
          688 - strlen("{user_header}{query}{answer}{generation_header}") + strlen(CHATML_USER) +
              strlen(Q) + strlen(MARGIN) + strlen(CHATML_GEN));
    check_golden(CHATML_USER, CHATML_GEN, want);
}

static void test_golden_reference_llama3(void) {
    const char *const want[WIM_PROMPT_COUNT] = {REF_SYSTEM(LLAMA3_USER), REF_EXTRACT(LLAMA3_GEN),
                                                REF_CLASSIFY(LLAMA3_USER, LLAMA3_GEN),
                                                REF_ANSWER(LLAMA3_GEN)};
    CHECK(strcmp(want[WIM_PROMPT_ANSWER],
                 "```\n" MARGINS "\nWhere is the apple?\n<|eot_id|><|start_header_id|>assistant"
                 "<|end_header_id|>\n\n") == 0);
    check_golden(LLAMA3_USER, LLAMA3_GEN, want);
}

/* ---------- rendering ---------- */

static char *render(const char *tmpl, const wim_prompt_vars *v) {
    char err[256];
    return wim_prompt_render(tmpl, v, err, sizeof err);
}

static void test_render_single_pass(void) {
    /* substituted text is never scanned again */
    wim_prompt_vars v = {"<U>", "<G>", "q {answer}", "m {query} {margins} {foo}", "{user_header}"};
    char *s = render("{user_header}{query}|{answer}|{margins}{generation_header}", &v);
    CHECK(s);
    int ok = strcmp(s, "<U>q {answer}|m {query} {margins} {foo}|{user_header}<G>") == 0;
    free(s);
    CHECK(ok);
    /* repeated placeholders, empty values, empty template */
    wim_prompt_vars e = {"", "", "Q", NULL, NULL};
    s = render("{query}{query}{user_header}{query}", &e);
    CHECK(s);
    ok = strcmp(s, "QQQ") == 0;
    free(s);
    CHECK(ok);
    s = render("", &e);
    CHECK(s);
    ok = s[0] == 0;
    free(s);
    CHECK(ok);
}

static void test_render_literal_braces(void) {
    wim_prompt_vars v = {"U", "G", "Q", NULL, NULL};
    static const char *const cases[][2] = {
        {"{ query }", "{ query }"},
        {"{\"a\": 1}", "{\"a\": 1}"},
        {"{}", "{}"},
        {"{{query}}", "{Q}"},
        {"{query", "{query"},
        {"query}", "query}"},
        {"{1abc}", "{1abc}"},
        {"{qu ery}", "{qu ery}"},
        {"{", "{"},
        {"}{query}{", "}Q{"},
        {"{-x}", "{-x}"},
        {"a{\nquery}", "a{\nquery}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = render(cases[i][0], &v);
        int ok = s && strcmp(s, cases[i][1]) == 0;
        CHECKF(ok, "\"%s\" rendered as \"%s\"", cases[i][0], s ? s : "(null)");
        free(s);
    }
}

static void test_render_errors(void) {
    wim_prompt_vars v = {"U", "G", "Q", NULL, NULL};
    char err[256] = "";
    CHECK(wim_prompt_render("x {foo} y", &v, err, sizeof err) == NULL);
    CHECKF(strstr(err, "unknown placeholder {foo}"), "%s", err);
    CHECK(wim_prompt_render("{Query}", &v, err, sizeof err) == NULL); /* names are case-sensitive */
    CHECKF(strstr(err, "unknown placeholder {Query}"), "%s", err);
    CHECK(wim_prompt_render("{query} {answer}", &v, err, sizeof err) == NULL);
    CHECKF(strstr(err, "{answer}") && strstr(err, "no value"), "%s", err);
    CHECK(wim_prompt_render("{margins}", &v, err, sizeof err) == NULL);
    CHECKF(strstr(err, "{margins}"), "%s", err);
}

/* ---------- loading a folder ---------- */

typedef struct {
    char dir[64];
} tmpdir;

static int tmp_make(tmpdir *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/wim-test-prompts-XXXXXX");
    return mkdtemp(t->dir) ? 0 : -1;
}

/* Writes the four templates (the defaults, with one replaced when text is not NULL). */
static int tmp_fill(const tmpdir *t, int replace, const char *text, size_t len) {
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", t->dir, wim_prompt_file_name(k));
        const char *s = k == replace ? text : wim_prompt_defaults[k];
        if (write_file(path, s, k == replace ? len : strlen(s))) return -1;
    }
    return 0;
}

static void tmp_remove(const tmpdir *t) {
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", t->dir, wim_prompt_file_name(k));
        unlink(path);
    }
    rmdir(t->dir);
}

/* Loads the defaults with one template replaced; returns the load's result, err filled. */
static int load_with(int kind, const char *text, size_t len, char *err, size_t errlen,
                     char *dir_out) {
    tmpdir t;
    if (tmp_make(&t)) return -2;
    strcpy(dir_out, t.dir);
    int rc = -2;
    if (tmp_fill(&t, kind, text, len) == 0) {
        wim_prompts p;
        rc = wim_prompts_load(t.dir, &p, err, errlen);
        if (rc == 0)
            wim_prompts_free(&p);
        else if (p.text[0] || p.dir)
            rc = -3; /* a failed load must leave p empty */
    }
    tmp_remove(&t);
    return rc;
}

#define LOAD_FAILS(kind, text, ...)                                                                \
    do {                                                                                           \
        char err_[256] = "", dir_[64], want_[300];                                                 \
        int rc_ = load_with(kind, text, strlen(text), err_, sizeof err_, dir_);                    \
        CHECKF(rc_ == -1, "load returned %d (%s)", rc_, err_);                                     \
        snprintf(want_, sizeof want_, __VA_ARGS__);                                                \
        CHECKF(strcmp(err_, want_) == 0, "got \"%.180s\", want \"%.180s\"", err_, want_);          \
    } while (0)

static void test_load_errors(void) {
    char dir[64], err[256] = "";
    /* the defaults written to a folder load */
    CHECKF(load_with(-1, NULL, 0, err, sizeof err, dir) == 0, "%s", err);
    LOAD_FAILS(WIM_PROMPT_CLASSIFY, "{user_header}\n{query}\n\n{answer} {foo}{generation_header}",
               "%s/classification.txt: unknown placeholder {foo} on line 4", dir_);
    LOAD_FAILS(WIM_PROMPT_SYSTEM, "{user_header}{answer}",
               "%s/system_message.txt: placeholder {answer} on line 1 is not allowed in the system "
               "prompt (allowed: {user_header}, {generation_header}, {query})",
               dir_);
    LOAD_FAILS(WIM_PROMPT_EXTRACT, "```\n{margins}{generation_header}",
               "%s/extractive_summary.txt: placeholder {margins} on line 2 is not allowed in the "
               "extraction prompt (allowed: {user_header}, {generation_header}, {query})",
               dir_);
    LOAD_FAILS(WIM_PROMPT_ANSWER, "{answer}{margins}",
               "%s/final_answer.txt: placeholder {answer} on line 1 is not allowed in the final "
               "answer prompt (allowed: {user_header}, {generation_header}, {query}, {margins})",
               dir_);
    LOAD_FAILS(WIM_PROMPT_ANSWER, "```\n{query}{generation_header}",
               "%s/final_answer.txt: the final answer prompt must use {margins}", dir_);
    LOAD_FAILS(WIM_PROMPT_CLASSIFY, "{query}",
               "%s/classification.txt: the classification prompt "
               "must use {answer}",
               dir_);
    /* a NUL byte */
    char nul[] = "{query}\0{answer}";
    int rc = load_with(WIM_PROMPT_CLASSIFY, nul, sizeof nul - 1, err, sizeof err, dir);
    CHECKF(rc == -1 && strstr(err, "classification.txt: contains a NUL byte"), "%d %s", rc, err);
    /* a missing folder, and a trailing slash on the folder */
    wim_prompts p;
    CHECK(wim_prompts_load("/nonexistent/wim-prompts", &p, err, sizeof err) == -1);
    CHECKF(strcmp(err, "/nonexistent/wim-prompts/system_message.txt: No such file or directory") ==
               0,
           "%s", err);
    const char *pd = prompts_dir();
    CHECKF(pd, "data/prompts/ not found: run from the repository root");
    char slash[256];
    snprintf(slash, sizeof slash, "%s/", pd);
    CHECKF(wim_prompts_load(slash, &p, err, sizeof err) == 0, "%s", err);
    wim_prompts_free(&p);
}

static void test_check_allowed_per_kind(void) {
    static const char *const names[] = {"user_header", "generation_header", "query", "answer",
                                        "margins"};
    /* rows: kinds; columns: names (1 allowed) */
    static const int allowed[WIM_PROMPT_COUNT][5] = {
        {1, 1, 1, 0, 0}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 0}, {1, 1, 1, 0, 1}};
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        for (int v = 0; v < 5; v++) {
            char tmpl[128], err[256] = "";
            /* add what the kind requires, so only the name under test can fail */
            snprintf(tmpl, sizeof tmpl, "x {%s} y%s", names[v],
                     k == WIM_PROMPT_CLASSIFY ? "{answer}"
                     : k == WIM_PROMPT_ANSWER ? "{margins}"
                                              : "");
            int rc = wim_prompt_check(k, tmpl, "t", err, sizeof err);
            CHECKF((rc == 0) == allowed[k][v], "%s with {%s}: rc %d %s", wim_prompt_file_name(k),
                   names[v], rc, err);
        }
    }
}

/* ---------- the classifier's rule ---------- */

static const struct {
    const char *text;
    int paper, lenient;
} verdicts[] = {
    {"YES#The notes say where the apple is.", 1, 1},
    {"NO#The notes are unrelated.", 0, 0},
    {"YES", 1, 1},
    {"NO", 0, 0},
    {"YES#", 1, 1},
    {"#YES", 0, 0},                     /* nothing before the '#' */
    {"NO#But the answer is YES", 0, 0}, /* only the text before the first '#' counts */
    {"YES#NO", 1, 1},
    {"yes#reason", 0, 1}, /* the paper's rule is case-sensitive */
    {"Yes#reason", 0, 1},
    {"```YES```", 1, 1},
    {"```\nYES#reason\n```", 1, 1},
    {"```text\nYES#x```", 1, 1},
    {"YE```S#", 1, 1}, /* fences are removed before anything else */
    {"````YES", 1, 1}, /* "````" loses three backticks, as Python's replace */
    {"  \n YES \t\n#reason", 1, 1},
    {"YES\xc2\xa0#x", 1, 1},                   /* U+00A0 is whitespace to Python's strip() */
    {"YES\xe3\x80\x80\xe2\x80\xa9\x1f", 1, 1}, /* U+3000, U+2029, U+001F too */
    {"YES\xe2\x80\x8b#", 0, 1},                /* U+200B is not */
    {"YES.#reason", 0, 1},
    {"YES.", 0, 1},
    {"**YES**#x", 0, 1},
    {"The answer is YES#because", 1, 1},
    {"Answer: YES", 1, 1},
    {"Answer: yes.", 0, 1},
    {"YESNO#x", 0, 0},
    {"EYES#x", 1, 0}, /* endswith("YES") without a word boundary */
    {"yesterday", 0, 0},
    {"YES, the notes mention the kitchen.", 0, 1}, /* '#' missing */
    {"NO, but YES", 1, 0},
    {"NO YES", 1, 0},
    {"No.#", 0, 0},
    {"I don't know.", 0, 0},
    {"Nothing relevant.", 0, 0},
    {"", 0, 0},
    {"   \n\t", 0, 0},
    {"```", 0, 0},
    {"#", 0, 0},
};

static void test_classify_table(void) {
    CHECK(sizeof verdicts / sizeof verdicts[0] >= 20);
    for (size_t i = 0; i < sizeof verdicts / sizeof verdicts[0]; i++) {
        int p = wim_verdict_parse(verdicts[i].text),
            l = wim_verdict_parse_lenient(verdicts[i].text);
        CHECKF(p == verdicts[i].paper, "paper rule on \"%s\": %d", verdicts[i].text, p);
        CHECKF(l == verdicts[i].lenient, "lenient rule on \"%s\": %d", verdicts[i].text, l);
    }
    CHECK(wim_verdict_parse(NULL) == 0 && wim_verdict_parse_lenient(NULL) == 0);
}

/* Long and hostile outputs: no allocation, no overrun, still the right verdict. */
static void test_classify_long(void) {
    size_t n = 1 << 20;
    char *s = malloc(n + 8);
    CHECK(s);
    for (size_t i = 0; i < n; i++)
        s[i] = "`ab \xc2"[i % 5];
    memcpy(s + n, " YES", 5);
    int p = wim_verdict_parse(s), l = wim_verdict_parse_lenient(s);
    s[n + 1] = '#';
    int p2 = wim_verdict_parse(s);
    free(s);
    CHECK(p == 1 && l == 1 && p2 == 0);
    CHECK(wim_verdict_parse("\xe2\x80") == 0 && wim_verdict_parse("YES\xe2") == 0);
    CHECK(wim_verdict_parse("YES\xe2\x80") == 0); /* a truncated sequence is not whitespace */
}

int main(void) {
    RUN(test_defaults_match_data_files);
    RUN(test_defaults_load);
    RUN(test_defaults_structure);
    RUN(test_defaults_render_wim_step);
    RUN(test_golden_reference_chatml);
    RUN(test_golden_reference_llama3);
    RUN(test_render_single_pass);
    RUN(test_render_literal_braces);
    RUN(test_render_errors);
    RUN(test_load_errors);
    RUN(test_check_allowed_per_kind);
    RUN(test_classify_table);
    RUN(test_classify_long);
    return t_exit();
}
