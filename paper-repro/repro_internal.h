/*
 * repro_internal.h — helpers shared by the paper-repro C files, not part of the
 * repro.h contract: whole-file reads, a growable byte buffer, error lines, and the
 * constructors that keep repro_example's ownership rules in one place.
 *
 * Invariants: every string a repro_example points to is its own malloc'd copy, so
 * repro_dataset_free can free everything it reaches; a sbuf's data is always
 * NUL-terminated once anything was appended.
 */
#ifndef WIM_REPRO_INTERNAL_H
#define WIM_REPRO_INTERNAL_H

#include <stddef.h>

#include "repro.h"

/* One line "path: what" into err (a no-op when err is NULL). */
void repro_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads a whole file; *len gets its size. NULL with err set on failure. */
char *repro_read_file(const char *path, size_t *len, char *err, size_t errlen);

char *repro_strdup(const char *s);
char *repro_strndup(const char *s, size_t n);

typedef struct {
    char *data;
    size_t len, cap;
    int oom; /* sticky: an append failed */
} sbuf;
void sbuf_add(sbuf *b, const char *s, size_t n);
void sbuf_adds(sbuf *b, const char *s);
void sbuf_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over (NULL when an append failed) and resets b. */
char *sbuf_take(sbuf *b);

/* Growable arrays of examples / paragraphs / answers. Return 0 or -1 (out of memory). */
int repro_push_example(repro_dataset *d, int *cap, repro_example **out);
int repro_push_para(repro_example *e, const char *title, const char *text, int gold);
int repro_push_answer(repro_example *e, const char *answer);
void repro_example_free(repro_example *e);

/* Token count of text with tok (no BOS, specials as text); -1 on error. */
int repro_count_tokens(const wim_tokenizer *tok, const char *text, size_t len);

#endif
