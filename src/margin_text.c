/*
 * margin_text.c — the sentences an extractive margin may quote, and joining kept margins.
 *
 * Extractive margins exist for models trained to copy sentences (the bundled one, see
 * data/wim-tiny/): left free, such a model invents a plausible line in every segment that
 * lacks the fact, and over a long document those inventions drown the one true line; it
 * also miscopies values (a year's last digits). Choosing among the segment's own
 * sentences removes both. The paper's margins are free summaries, so the pipeline quotes
 * only when asked.
 */
#include "margin_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

static int has_word(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            return 1;
    }
    return 0;
}

int wim_margin_has_word(const char *text) {
    return has_word(text, strlen(text));
}

/* Appends text[start, end) trimmed as a sentence unless it has no word or is already
 * there. Returns 0, or -1 when memory runs out. */
static int add_sentence(const char *text, size_t start, size_t end, wim_span **out, int *n,
                        int *cap) {
    while (start < end && is_blank(text[start]))
        start++;
    while (end > start && is_blank(text[end - 1]))
        end--;
    if (!has_word(text + start, end - start)) return 0;
    for (int i = 0; i < *n; i++)
        if ((*out)[i].len == end - start &&
            !memcmp(text + (*out)[i].start, text + start, end - start))
            return 0;
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        wim_span *grown = realloc(*out, (size_t)c * sizeof *grown);
        if (!grown) return -1;
        *out = grown, *cap = c;
    }
    (*out)[(*n)++] = (wim_span){start, end - start};
    return 0;
}

int wim_sentences(const char *text, size_t len, wim_span **out) {
    int n = 0, cap = 0;
    *out = NULL;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int line_end = i == len || text[i] == '\n';
        int stop = !line_end && strchr(".!?", text[i]) && text[i] &&
                   (i + 1 == len || is_blank(text[i + 1]) || text[i + 1] == '\n');
        if (!line_end && !stop) continue;
        if (add_sentence(text, start, stop ? i + 1 : i, out, &n, &cap)) {
            free(*out);
            *out = NULL;
            return -1;
        }
        start = i + 1;
    }
    return n;
}

/* Whether the line [line, line+len) already occurs as a whole line of out. */
static int has_line(const char *out, const char *line, size_t len) {
    for (const char *p = out; *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n == len && memcmp(p, line, len) == 0) return 1;
        p += n + (eol != NULL);
    }
    return 0;
}

char *wim_margins_join(char *const *margins, const int *relevant, int n, int dedupe) {
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (relevant[i] && margins[i]) len += strlen(margins[i]) + 1;
    char *out = malloc(len);
    if (!out) return NULL;
    out[0] = 0;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (!relevant[i] || !margins[i]) continue;
        if (!dedupe) {
            used += (size_t)sprintf(out + used, "%s\n", margins[i]);
            continue;
        }
        for (const char *p = margins[i]; *p;) {
            const char *eol = strchr(p, '\n');
            size_t k = eol ? (size_t)(eol - p) : strlen(p);
            if (k > 0 && !has_line(out, p, k)) {
                memcpy(out + used, p, k);
                out[used += k] = '\n';
                out[++used] = 0;
            }
            p += k + (eol != NULL);
        }
    }
    return out;
}
