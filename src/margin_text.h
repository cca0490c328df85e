/*
 * margin_text.h — a margin's text between the model and the final prompt.
 *
 * Owns: the sentences an extractive margin may quote (`--extractive-margins` builds each
 * margin from the sentences of its segment, verbatim), and joining the kept margins into
 * the text the final prompt and the extraction prompts show.
 *
 * Invariants: pure functions of their inputs, any bytes; a sentence is a span of the
 * text, never empty, with a letter or digit, without the blanks (spaces, tabs, carriage
 * returns) around it and never across a line break.
 */
#ifndef WIM_MARGIN_TEXT_H
#define WIM_MARGIN_TEXT_H

#include <stddef.h>

typedef struct {
    size_t start, len;
} wim_span;

/* The distinct sentences of text[0, len), in order of first appearance: each line split
 * after '.', '!' or '?' where a blank follows. A line's list marker ("- " or "* ") stays
 * with its first sentence. Returns the count and *out (malloc'd; NULL when none), or -1
 * when memory runs out. */
int wim_sentences(const char *text, size_t len, wim_span **out);

/* Whether text has a letter or digit (any non-ASCII byte counts: UTF-8 letters). */
int wim_margin_has_word(const char *text);

/* The margins whose relevant[i] is set, each followed by '\n'; with dedupe, line by line
 * with blank and repeated lines dropped. malloc'd, NULL when memory runs out. */
char *wim_margins_join(char *const *margins, const int *relevant, int n, int dedupe);

#endif
