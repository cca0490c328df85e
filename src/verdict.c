/*
 * verdict.c — the paper's verdict rule and a lenient one (see verdict.h).
 *
 * Owns: one scanner over the classifier's text that yields its bytes with every
 * "```" removed and stops at the first '#', and the two rules built on it.
 *
 * Invariants: nothing is allocated and the text is read once, left to right, so
 * any output (a 10-token reply or a runaway one) costs O(length) and cannot fail.
 * The scanner matches "```" where Python's str.replace would: left to right,
 * non-overlapping, on the original text.
 */
#include "verdict.h"

#include <string.h>

/* The next byte of the text with "```" removed, or -1 at the first '#' or the end. */
static int next_byte(const char **p) {
    const char *s = *p;
    while (s[0] == '`' && s[1] == '`' && s[2] == '`')
        s += 3;
    if (!*s || *s == '#') {
        *p = s;
        return -1;
    }
    *p = s + 1;
    return (unsigned char)*s;
}

/* Python's str.isspace() for one code point given as UTF-8 bytes. */
static int is_py_space(const unsigned char *b, int n) {
    if (n == 1) return (b[0] >= 9 && b[0] <= 13) || (b[0] >= 28 && b[0] <= 32);
    if (n == 2) return b[0] == 0xC2 && (b[1] == 0x85 || b[1] == 0xA0);
    if (n != 3) return 0;
    if (b[0] == 0xE1) return b[1] == 0x9A && b[2] == 0x80; /* U+1680 */
    if (b[0] == 0xE3) return b[1] == 0x80 && b[2] == 0x80; /* U+3000 */
    if (b[0] != 0xE2) return 0;
    if (b[1] == 0x81) return b[2] == 0x9F; /* U+205F */
    /* U+2000..U+200A, U+2028, U+2029, U+202F */
    return b[1] == 0x80 && (b[2] <= 0x8A || b[2] == 0xA8 || b[2] == 0xA9 || b[2] == 0xAF);
}

/* Bytes in the UTF-8 sequence a lead byte announces (1 for ASCII and stray bytes). */
static int utf8_len(unsigned char lead) {
    if (lead >= 0xF0 && lead <= 0xF7) return 4;
    if (lead >= 0xE0) return lead <= 0xEF ? 3 : 1;
    if (lead >= 0xC0) return 2;
    return 1;
}

/* The next code point of the scanned text into b (its bytes; invalid sequences come out as
 * single bytes); returns its byte count, 0 at the end. */
static int next_code_point(const char **p, unsigned char b[4]) {
    int c = next_byte(p);
    if (c < 0) return 0;
    b[0] = (unsigned char)c;
    int want = utf8_len(b[0]), n = 1;
    while (n < want) {
        const char *q = *p;
        int d = next_byte(&q);
        if (d < 0 || (d & 0xC0) != 0x80) break; /* truncated: leave the byte for the next call */
        b[n++] = (unsigned char)d;
        *p = q;
    }
    return n;
}

int wim_verdict_parse(const char *text) {
    const char *p = text ? text : "";
    /* The last three bytes scanned, and their copy taken at the last non-space code point:
     * that copy is how the text ends once trailing spaces are stripped. Leading spaces cannot
     * change what the text ends with, so they need no stripping. */
    unsigned char win[3] = {0}, end[3] = {0};
    int seen = 0, end_seen = 0;
    unsigned char b[4];
    int n;
    while ((n = next_code_point(&p, b)) > 0) {
        for (int i = 0; i < n; i++) {
            win[0] = win[1];
            win[1] = win[2];
            win[2] = b[i];
            if (seen < 3) seen++;
        }
        if (!is_py_space(b, n)) {
            memcpy(end, win, 3);
            end_seen = seen;
        }
    }
    return end_seen == 3 && memcmp(end, "YES", 3) == 0;
}

enum word_class { WORD_NONE, WORD_YES, WORD_NO, WORD_ANSWER, WORD_OTHER };

/* Class of a word given its first (up to 7) lower-cased letters and its full length. */
static enum word_class word_class(const char *w, int len) {
    if (len == 3 && memcmp(w, "yes", 3) == 0) return WORD_YES;
    if (len == 2 && memcmp(w, "no", 2) == 0) return WORD_NO;
    if (len == 6 && memcmp(w, "answer", 6) == 0) return WORD_ANSWER;
    return WORD_OTHER;
}

static int is_ascii_letter(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int wim_verdict_parse_lenient(const char *text) {
    const char *p = text ? text : "";
    /* Only the first two words and the last one matter; words longer than "answer" can match
     * none of yes / no / answer, so 7 letters are enough to keep. */
    enum word_class first = WORD_NONE, second = WORD_NONE, last = WORD_NONE;
    int words = 0, len = 0;
    char w[7];
    for (;;) {
        int c = next_byte(&p);
        if (c >= 0 && is_ascii_letter(c)) {
            if (len < (int)sizeof w) w[len] = (char)(c | 0x20); /* ASCII lower case */
            len++;
            continue;
        }
        if (len > 0) {
            enum word_class k = word_class(w, len);
            if (words == 0)
                first = k;
            else if (words == 1)
                second = k;
            last = k;
            words++;
            len = 0;
        }
        if (c < 0) break;
    }
    enum word_class lead = first == WORD_ANSWER && words > 1 ? second : first;
    if (lead == WORD_YES || lead == WORD_NO) return lead == WORD_YES;
    return last == WORD_YES;
}
