/*
 * test_margin_text.c — the sentences an extractive margin may quote (a hand-written table of
 * texts and their sentences), and joining kept margins with and without dedupe.
 */
#include "margin_text.h"
#include "test.h"

/* The sentences of text joined by '|'. */
static void sentences(const char *text, char *out, size_t cap) {
    wim_span *s;
    int n = wim_sentences(text, strlen(text), &s);
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", i ? "|" : "", (int)s[i].len,
                                 text + s[i].start);
    if (n < 0) snprintf(out, cap, "(error)");
    free(s);
}

static void test_sentence_table(void) {
    static const char *const rows[][2] = {
        {"", ""},
        {" \n\t\n", ""},                                          /* blanks only */
        {"- Ana Hunt likes tea.\n- Ana Hunt was born in 1977.\n", /* lines, markers kept */
         "- Ana Hunt likes tea.|- Ana Hunt was born in 1977."},
        {"Mary went home. John slept! Did he? Yes", /* stops where a blank follows */
         "Mary went home.|John slept!|Did he?|Yes"},
        {"Pi is 3.14 today.", "Pi is 3.14 today."},            /* a stop inside a word is not one */
        {"a line\r\n  another line  ", "a line|another line"}, /* CRLF, blanks trimmed */
        {"Tea.\nTea.\nCoffee.", "Tea.|Coffee."},               /* each sentence once */
        {"- .\n...\n- Zoë lives in Malmö.", "- Zoë lives in Malmö."}, /* no word: not one */
        {"cut mid-sentence", "cut mid-sentence"},                     /* the text's end */
    };
    char got[256];
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        sentences(rows[i][0], got, sizeof got);
        CHECKF(!strcmp(got, rows[i][1]), "'%s': '%s', want '%s'", rows[i][0], got, rows[i][1]);
    }
}

/* Spans index the text itself: concatenated, the sentences are a subsequence of it. */
static void test_spans_point_into_the_text(void) {
    const char *text = "One. Two three.\n\nFour?\n- Five!";
    wim_span *s;
    int n = wim_sentences(text, strlen(text), &s);
    CHECK(n == 4);
    size_t end = 0;
    for (int i = 0; i < n; i++) {
        CHECK(s[i].start >= end && s[i].len > 0 && s[i].start + s[i].len <= strlen(text));
        end = s[i].start + s[i].len;
    }
    free(s);
}

static void test_has_word(void) {
    CHECK(wim_margin_has_word("- Ana"));
    CHECK(wim_margin_has_word("1977"));
    CHECK(wim_margin_has_word("é"));
    CHECK(!wim_margin_has_word(""));
    CHECK(!wim_margin_has_word(" - .\n"));
}

static void test_join(void) {
    char *margins[] = {"A\nB", "B\nC", "A", "D"};
    int keep[] = {1, 1, 1, 0};
    char *plain = wim_margins_join(margins, keep, 4, 0);
    char *dedupe = wim_margins_join(margins, keep, 4, 1);
    CHECK(plain && dedupe);
    CHECKF(!strcmp(plain, "A\nB\nB\nC\nA\n"), "'%s'", plain);
    CHECKF(!strcmp(dedupe, "A\nB\nC\n"), "'%s'", dedupe);
    free(plain);
    free(dedupe);
}

int main(void) {
    RUN(test_sentence_table);
    RUN(test_spans_point_into_the_text);
    RUN(test_has_word);
    RUN(test_join);
    return t_exit();
}
