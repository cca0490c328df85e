/*
 * segment.c — sentence boundaries and token-bounded packing (contract and the
 * sentence rules: segment.h).
 *
 * Owns: the sentence scanner, the splitter for sentences longer than K tokens
 * and the greedy packer with its verification.
 *
 * Invariants:
 *  - Every range this file produces starts and ends at a character boundary
 *    of the strict UTF-8 reading the tokenizer uses (an invalid byte is one
 *    character), so tokenizing a range alone sees the same characters as the
 *    whole document does.
 *  - A token count stored in a unit or segment is always a real count of that
 *    exact range tokenized alone, never an estimate; estimates only choose
 *    which range to count next.
 *  - Builders either hand back a whole array or free everything they built.
 */
#include "segment.h"
#include "error.h"

#include "unicode.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* characters                                                                */

/* The character at text[i] (i < len): its code point (U+FFFD for an invalid
 * byte) and its length in *n. */
static uint32_t char_at(const char *text, size_t len, size_t i, int *n) {
    uint32_t cp;
    *n = wim_utf8_decode((const unsigned char *)text + i, len - i, &cp, NULL);
    return cp;
}

static int is_space_at(const char *text, size_t len, size_t i) {
    int n;
    return i < len && wim_uc_is_space(char_at(text, len, i, &n));
}

/* The code point of the character that ends at i (i > lim), or U+FFFD when the
 * bytes before i are not a whole valid character. */
static uint32_t char_before(const char *text, size_t len, size_t lim, size_t i) {
    size_t q = i - 1;
    while (q > lim && i - q < 4 && ((unsigned char)text[q] & 0xC0) == 0x80)
        q--;
    uint32_t cp;
    int n = wim_utf8_decode((const unsigned char *)text + q, len - q, &cp, NULL);
    return q + (size_t)n == i ? cp : WIM_UC_REPLACEMENT;
}

/* The largest character boundary <= x and >= lim (lim itself is a boundary).
 * Only continuation bytes can lie inside a character, and the only character
 * that can cover x starts at the nearest non-continuation byte at most three
 * bytes back. */
static size_t floor_boundary(const char *text, size_t len, size_t lim, size_t x) {
    if (x <= lim) return lim;
    if (x >= len) return len;
    for (size_t back = 1; back <= 3 && back <= x - lim; back++) { /* x > lim: no wrap */
        size_t q = x - back;
        if (((unsigned char)text[q] & 0xC0) == 0x80) continue;
        uint32_t cp;
        int n = wim_utf8_decode((const unsigned char *)text + q, len - q, &cp, NULL);
        return (size_t)n > back ? q : x;
    }
    return x;
}

static size_t next_boundary(const char *text, size_t len, size_t i) {
    int n;
    char_at(text, len, i, &n);
    return i + (size_t)n;
}

static int is_ascii_alpha(unsigned char c) {
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}
static int is_ascii_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}
static int is_ascii_upper(unsigned char c) {
    return c >= 'A' && c <= 'Z';
}

/* Lowercase letters the "next word is lowercase" rule knows: ASCII, Latin-1,
 * basic Greek and Cyrillic. The Unicode table here has major categories only,
 * so case for other scripts is unknown and treated as not lowercase. */
static int is_lower(uint32_t cp) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 0xDF && cp <= 0xFF && cp != 0xF7) ||
           (cp >= 0x3AC && cp <= 0x3CE) || (cp >= 0x430 && cp <= 0x45F);
}

static int is_cjk_stop(uint32_t cp) {
    return cp == 0x3002 || cp == 0xFF01 || cp == 0xFF1F || cp == 0xFF61;
}

static int is_terminator(uint32_t cp) {
    return cp == '.' || cp == '!' || cp == '?' || cp == 0x2026 || cp == 0x203D || is_cjk_stop(cp);
}

static int in_set(uint32_t cp, const uint32_t *set, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (set[i] == cp) return 1;
    return 0;
}

/* Closing quotes and brackets that may follow a terminator: " ' ) ] } ” ’ » 」 』 ） */
static const uint32_t closers[] = {'"',    '\'', ')',    ']',    '}',   0x201D,
                                   0x2019, 0xBB, 0x300D, 0x300F, 0xFF09};
/* Opening marks skipped before the next word's first letter: " ' ( [ { “ ‘ « 「 『 （ ¿ ¡ */
static const uint32_t openers[] = {'"',  '\'',   '(',    '[',    '{',  0x201C, 0x2018,
                                   0xAB, 0x300C, 0x300E, 0xFF08, 0xBF, 0xA1};

static int is_closer(uint32_t cp) {
    return in_set(cp, closers, sizeof closers / sizeof closers[0]);
}
static int is_opener(uint32_t cp) {
    return in_set(cp, openers, sizeof openers / sizeof openers[0]);
}

/* ------------------------------------------------------------------------ */
/* sentence rules                                                            */

/* The terminator run a whitespace run follows: [start, run_end) are the
 * terminators, then closers up to the whitespace. */
typedef struct {
    size_t start, run_end;
    int cjk; /* the run holds a CJK full stop */
} term_run;

/* Scans the whitespace run at i; returns its end. *nl counts newlines ("\r\n"
 * and a lone "\r" are one) and *after_nl is the offset just past the last. */
static size_t scan_space(const char *text, size_t len, size_t i, int *nl, size_t *after_nl) {
    *nl = 0;
    while (i < len) {
        int n;
        uint32_t cp = char_at(text, len, i, &n);
        if (!wim_uc_is_space(cp)) break;
        if (cp == '\n' || (cp == '\r' && (i + 1 >= len || text[i + 1] != '\n'))) {
            (*nl)++;
            *after_nl = i + (size_t)n;
        }
        i += (size_t)n;
    }
    return i;
}

/* A Markdown heading: the line's first non-blank character is '#'. */
static int line_is_heading(const char *text, size_t line_start, size_t end) {
    size_t p = line_start;
    while (p < end && (text[p] == ' ' || text[p] == '\t'))
        p++;
    return p < end && text[p] == '#';
}

/* The line starting (after blanks) at w opens a heading or a list item. */
static int line_opens_block(const char *text, size_t len, size_t w) {
    if (w >= len) return 0;
    unsigned char c = (unsigned char)text[w];
    size_t after;
    if (c == '#') return 1;
    if (c == '-' || c == '*' || c == '+')
        after = w + 1;
    else if (len - w >= 3 && !memcmp(text + w, "\xe2\x80\xa2", 3)) /* • */
        after = w + 3;
    else {
        size_t d = w;
        while (d < len && d - w < 4 && is_ascii_digit((unsigned char)text[d]))
            d++;
        if (d == w || d - w > 3 || d >= len || (text[d] != '.' && text[d] != ')')) return 0;
        after = d + 1;
    }
    return after < len && (text[after] == ' ' || text[after] == '\t');
}

/* Abbreviations a single '.' does not end a sentence after. Lowercase entries
 * also match with a capital first letter (sentence-initial "Cf."). */
static const struct {
    const char *word;
    int needs_digit; /* only before a number: "No. 5", "Fig. 3" */
} abbrevs[] = {
    {"Mr", 0},   {"Mrs", 0},    {"Ms", 0},  {"Dr", 0},  {"Prof", 0}, {"St", 0},   {"Jr", 0},
    {"Sr", 0},   {"vs", 0},     {"etc", 0}, {"Inc", 0}, {"Ltd", 0},  {"Co", 0},   {"Corp", 0},
    {"Mt", 0},   {"Gen", 0},    {"Col", 0}, {"Lt", 0},  {"Sgt", 0},  {"Capt", 0}, {"Rev", 0},
    {"Hon", 0},  {"Gov", 0},    {"Sen", 0}, {"Rep", 0}, {"Ave", 0},  {"Blvd", 0}, {"Dept", 0},
    {"Univ", 0}, {"approx", 0}, {"cf", 0},  {"al", 0},  {"Jan", 0},  {"Feb", 0},  {"Mar", 0},
    {"Apr", 0},  {"Jun", 0},    {"Jul", 0}, {"Aug", 0}, {"Sep", 0},  {"Sept", 0}, {"Oct", 0},
    {"Nov", 0},  {"Dec", 0},    {"No", 1},  {"Nos", 1}, {"Fig", 1},  {"Figs", 1}, {"Eq", 1},
    {"Eqs", 1},  {"Vol", 1},    {"vol", 1}, {"pp", 1},  {"p", 1},
};

/* Whether word[0..n) (ASCII letters) is in the list; -1 when it is but needs
 * a digit after. */
static int abbrev_lookup(const char *word, size_t n) {
    for (size_t i = 0; i < sizeof abbrevs / sizeof abbrevs[0]; i++) {
        const char *a = abbrevs[i].word;
        if (strlen(a) != n) continue;
        int same = !memcmp(a, word, n) || (a[0] >= 'a' && a[0] <= 'z' && word[0] == a[0] - 32 &&
                                           !memcmp(a + 1, word + 1, n - 1));
        if (same) return abbrevs[i].needs_digit ? -1 : 1;
    }
    return 0;
}

/* Dotted abbreviation: parts of one or two letters joined by '.' ("e.g",
 * "U.S.A", "Ph.D"); word holds at least one '.'. */
static int is_dotted_abbrev(const char *word, size_t n) {
    size_t part = 0, dots = 0;
    for (size_t i = 0; i < n; i++) {
        if (word[i] == '.') {
            if (part == 0) return 0;
            part = 0;
            dots++;
        } else if (++part > 2)
            return 0;
    }
    return dots > 0 && part > 0;
}

/* The single '.' at dot is part of an abbreviation, an initial or a list
 * marker; w is where the next word starts. */
static int dot_is_abbreviation(const char *text, size_t len, size_t line_start, size_t dot,
                               size_t w) {
    size_t a = dot; /* back over letters and single dots between letters ("U.S") */
    while (a > 0 && (is_ascii_alpha((unsigned char)text[a - 1]) ||
                     (text[a - 1] == '.' && a >= 2 && a < dot &&
                      is_ascii_alpha((unsigned char)text[a - 2]))))
        a--;
    if (a == dot) { /* "12. " opening its line is a list marker */
        size_t d = dot;
        while (d > line_start && dot - d <= 3 && is_ascii_digit((unsigned char)text[d - 1]))
            d--;
        if (d == dot || dot - d > 3) return 0;
        while (d > line_start && (text[d - 1] == ' ' || text[d - 1] == '\t'))
            d--;
        return d == line_start;
    }
    if (a > 0) { /* the tail of a longer word ("café.", "3Mr.") is no abbreviation */
        unsigned cat = wim_uc_cat(char_before(text, len, 0, a));
        if (cat == WIM_UC_LETTER || cat == WIM_UC_NUMBER || cat == WIM_UC_MARK) return 0;
    }
    const char *word = text + a;
    size_t n = dot - a;
    if (n == 1 && is_ascii_upper((unsigned char)word[0])) return 1; /* an initial */
    if (memchr(word, '.', n)) return is_dotted_abbrev(word, n);
    int hit = abbrev_lookup(word, n);
    if (hit < 0) return w < len && is_ascii_digit((unsigned char)text[w]);
    return hit;
}

/* The word at w, past opening quotes and brackets, starts lowercase. */
static int next_word_is_lower(const char *text, size_t len, size_t w) {
    while (w < len) {
        int n;
        uint32_t cp = char_at(text, len, w, &n);
        if (!is_opener(cp)) return is_lower(cp);
        w += (size_t)n;
    }
    return 0;
}

/* Whether the whitespace run [k, w) holding nl newlines ends a sentence; term
 * is the terminator run right before it, or NULL. */
static int space_ends_sentence(const char *text, size_t len, size_t line_start,
                               const term_run *term, size_t k, size_t w, int nl) {
    if (nl >= 2) return 1;
    if (nl == 1 && (line_is_heading(text, line_start, k) || line_opens_block(text, len, w)))
        return 1;
    if (!term) return 0;
    if (term->cjk) return 1;
    if (next_word_is_lower(text, len, w)) return 0;
    if (term->run_end == term->start + 1 && text[term->start] == '.' &&
        dot_is_abbreviation(text, len, line_start, term->start, w))
        return 0;
    return 1;
}

typedef struct {
    size_t *v;
    size_t n, cap;
    int oom;
} offsets;

/* Appends x; on failure (out of memory, or more than the int count the API
 * returns) sets oom and keeps what it had, for the caller to free. */
static void offsets_push(offsets *o, size_t x) {
    if (o->oom || o->n >= (size_t)INT_MAX) {
        o->oom = 1;
        return;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        size_t *v = realloc(o->v, cap * sizeof *v);
        if (!v) {
            o->oom = 1;
            return;
        }
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = x;
}

int wim_sentence_ends(const char *text, size_t len, size_t **ends) {
    *ends = NULL;
    if (len == 0) return 0;
    offsets o = {0};
    size_t i = 0, line_start = 0;
    term_run term = {SIZE_MAX, SIZE_MAX, 0};
    size_t term_end = SIZE_MAX; /* where the last terminator run and its closers end */
    int content = 0;            /* non-space text since the last end: no blank sentences */
    while (i < len && !o.oom) {
        int n;
        uint32_t cp = char_at(text, len, i, &n);
        if (wim_uc_is_space(cp)) {
            int nl;
            size_t after_nl = 0, w = scan_space(text, len, i, &nl, &after_nl);
            if (w == len) break; /* trailing whitespace stays with the last sentence */
            const term_run *t = term_end == i ? &term : NULL;
            if (content && space_ends_sentence(text, len, line_start, t, i, w, nl)) {
                offsets_push(&o, w);
                content = 0;
            }
            if (nl) line_start = after_nl;
            i = w;
            continue;
        }
        content = 1;
        if (!is_terminator(cp)) {
            i += (size_t)n;
            continue;
        }
        term.start = i;
        term.cjk = 0;
        while (i < len && is_terminator(cp = char_at(text, len, i, &n))) {
            term.cjk |= is_cjk_stop(cp);
            i += (size_t)n;
        }
        term.run_end = i;
        while (i < len && is_closer(char_at(text, len, i, &n)))
            i += (size_t)n;
        term_end = i;
        if (term.cjk && i < len && !is_space_at(text, len, i)) { /* CJK needs no space */
            offsets_push(&o, i);
            content = 0;
        }
    }
    if (!o.oom && (o.n == 0 || o.v[o.n - 1] != len)) offsets_push(&o, len);
    if (o.oom) {
        free(o.v);
        return -1;
    }
    *ends = o.v;
    return (int)o.n;
}

/* ------------------------------------------------------------------------ */
/* splitting and packing                                                     */

/* A piece of work: the document, the tokenizer and the bound. */
typedef struct {
    const wim_tokenizer *tok;
    const char *text;
    size_t len;
    int k;
    char *err;
    size_t errlen;
} packer;

typedef struct {
    wim_segment *v;
    size_t n, cap;
} seg_vec;

static int seg_push(const packer *p, seg_vec *s, size_t start, size_t end, int n_tokens) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        wim_segment *v = realloc(s->v, cap * sizeof *v);
        if (!v) return wim_errorf(p->err, p->errlen, "out of memory while segmenting");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (wim_segment){start, end - start, n_tokens};
    return 0;
}

/* Tokens in text[a..b) tokenized alone, or -1 with err set. */
static int count(const packer *p, size_t a, size_t b) {
    return wim_tokenize(p->tok, p->text + a, b - a, 0, 0, NULL, 0, p->err, p->errlen);
}

/* A cut inside a word moves back to the last whitespace within the piece's
 * last WS_STRETCH bytes (or last half, if shorter): long enough for any normal
 * word, short enough to waste little of the segment when the text has none. */
#define WS_STRETCH 256

static size_t ws_stretch(size_t pos, size_t x) {
    return (x - pos) / 2 < WS_STRETCH ? (x - pos) / 2 : WS_STRETCH;
}

static int is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The last cut in (from, to] that follows ASCII whitespace, or 0. Such a cut
 * is a character boundary: it follows a one-byte character. */
static size_t last_ws_cut(const char *text, size_t from, size_t to) {
    for (size_t y = to; y > from; y--)
        if (is_ascii_space(text[y - 1])) return y;
    return 0;
}

/* Whether the cut x already sits at whitespace (after it, or before it). */
static int at_whitespace(const packer *p, size_t x) {
    return is_ascii_space(p->text[x - 1]) || is_space_at(p->text, p->len, x);
}

/* A proposed cut snapped down to a character boundary, kept above lo. */
static size_t snap(const packer *p, size_t lo, size_t x) {
    size_t b = floor_boundary(p->text, p->len, lo, x);
    return b > lo ? b : next_boundary(p->text, p->len, lo);
}

/* What the search for one piece knows: [pos, lo) is the longest verified fit
 * (lo == pos: none yet), [pos, hi) the shortest verified overflow (0: none). */
typedef struct {
    size_t lo, hi;
    int nlo, nhi;
} bracket;

/* The first cut in (from, to) that follows ASCII whitespace, or 0. */
static size_t first_ws_cut(const char *text, size_t from, size_t to) {
    for (size_t y = from + 1; y < to; y++)
        if (is_ascii_space(text[y - 1])) return y;
    return 0;
}

/* 2^streak - 1 tokens: how far past the estimate an open bracket reaches. */
static double reach(int streak) {
    return (double)((1u << (streak < 20 ? streak : 20)) - 1);
}

/* Where to probe next, or 0 to stop. Token counts grow almost linearly with
 * length, so the count's own rate points near the answer: first bracket it
 * (reaching further each time a probe lands on the same side), then regula
 * falsi aimed between k and k+1 tokens, bisecting after two steps in a row
 * failed to halve the bracket. Where the text has whitespace, only cuts right
 * after it are probed inside the bracket: prefer_whitespace would move a cut
 * inside a word back anyway. */
static size_t next_probe(const packer *p, size_t pos, size_t end, const bracket *b, int *streak,
                         int bisect) {
    double target = p->k + 0.5;
    if (!b->hi) { /* everything so far fits: extrapolate past lo */
        if (b->lo == end) return 0;
        double rate = (double)(b->lo - pos) / (b->nlo > 0 ? b->nlo : 1);
        double dx = (target + reach((*streak)++) - b->nlo) * rate;
        if (dx < 1) dx = 1;
        return dx >= (double)(end - b->lo) ? end : snap(p, b->lo, b->lo + (size_t)dx);
    }
    if (b->lo == pos) { /* everything so far overflows: interpolate below hi */
        double rate = (double)(b->hi - pos) / b->nhi;
        double dx = (p->k - 0.5 - reach((*streak)++)) * rate;
        size_t x = snap(p, pos, pos + (size_t)(dx > 1 ? dx : 1));
        return x < b->hi ? x : 0;
    }
    size_t w = b->hi - b->lo, x;
    if (bisect || b->nhi <= b->nlo)
        x = b->lo + w / 2;
    else
        x = b->lo + (size_t)((double)w * (target - b->nlo) / (b->nhi - b->nlo));
    if (last_ws_cut(p->text, b->lo - ws_stretch(pos, b->lo), b->hi - 1) > pos) {
        size_t y = last_ws_cut(p->text, b->lo, x);
        return y > b->lo ? y : first_ws_cut(p->text, x, b->hi);
    }
    x = snap(p, b->lo, x);
    return x < b->hi ? x : 0;
}

/* A long prefix [pos, *cut) of [pos, end) that fits in k tokens: the longest
 * one up to the last word (token counts are nearly but not exactly monotone in
 * the length; every answer is a verified count). bpt is the expected bytes
 * per token, for the first guess. */
static int longest_fit(const packer *p, size_t pos, size_t end, double bpt, size_t *cut,
                       int *n_cut) {
    bracket b = {pos, 0, 0, 0};
    double g = (double)p->k * bpt;
    size_t x = g >= (double)(end - pos) ? end : snap(p, pos, pos + (size_t)g);
    int streak = 0, slow = 0; /* slow: steps in a row that did not halve the bracket */
    size_t width = SIZE_MAX;  /* the closed bracket before the last probe */
    while (x) {
        int n = count(p, pos, x);
        if (n < 0) return -1;
        int was_open = !b.hi || b.lo == pos;
        if (n <= p->k)
            b.lo = x, b.nlo = n;
        else
            b.hi = x, b.nhi = n;
        if (b.hi && b.lo > pos) {
            if (was_open) streak = 0;
            slow = width != SIZE_MAX && 2 * (b.hi - b.lo) > width && slow < 2 ? slow + 1 : 0;
            width = b.hi - b.lo;
        }
        x = next_probe(p, pos, end, &b, &streak, slow == 2);
    }
    if (b.lo == pos) {
        size_t c1 = next_boundary(p->text, p->len, pos);
        return wim_errorf(
            p->err, p->errlen,
            "max_tokens %d is too small: the character at byte %zu alone needs %d tokens", p->k,
            pos, count(p, pos, c1));
    }
    *cut = b.lo;
    *n_cut = b.nlo;
    return 0;
}

/* Moves a cut that falls inside a word back to just after the last whitespace
 * in the final stretch of the piece, when that shorter piece still fits. */
static int prefer_whitespace(const packer *p, size_t pos, size_t end, size_t *cut, int *n_cut) {
    size_t x = *cut;
    if (x >= end || at_whitespace(p, x)) return 0;
    size_t y = last_ws_cut(p->text, x - ws_stretch(pos, x), x - 1);
    if (y <= pos) return 0;
    int n = count(p, pos, y);
    if (n < 0) return -1;
    if (n <= p->k) *cut = y, *n_cut = n;
    return 0;
}

/* Cuts the sentence [a, b) of c > k tokens into pieces of at most k tokens. */
static int split_sentence(const packer *p, size_t a, size_t b, int c, seg_vec *units) {
    double bpt = (double)(b - a) / c;
    for (size_t pos = a; pos < b;) {
        size_t cut = b;
        int n = 0;
        if (longest_fit(p, pos, b, bpt, &cut, &n) || prefer_whitespace(p, pos, b, &cut, &n) ||
            seg_push(p, units, pos, cut, n))
            return -1;
        if (n > 0) bpt = (double)(cut - pos) / n;
        pos = cut;
    }
    return 0;
}

/* Units are sentences of at most k tokens and the pieces of longer ones, each
 * with its count alone: the packer's building blocks. */
static int make_units(const packer *p, const size_t *ends, int n_ends, seg_vec *units) {
    size_t a = 0;
    for (int i = 0; i < n_ends; a = ends[i++]) {
        int c = count(p, a, ends[i]);
        if (c < 0) return -1;
        if (c <= p->k ? seg_push(p, units, a, ends[i], c) : split_sentence(p, a, ends[i], c, units))
            return -1;
    }
    return 0;
}

/* Counts units s..e-1 joined (they are contiguous in the text). */
static int count_span(const packer *p, const wim_segment *u, size_t s, size_t e) {
    return e == s + 1 ? u[s].n_tokens : count(p, u[s].start, u[e - 1].start + u[e - 1].len);
}

/* Given units s..lo-1 fit (count *n) and s..hi-1 do not, finds a longer fit:
 * first drops just the last unit (the usual case), then bisects. */
static int fit_between(const packer *p, const wim_segment *u, size_t s, size_t *lo, int *n,
                       size_t hi) {
    int first = 1;
    while (hi > *lo + 1) {
        size_t mid = first ? hi - 1 : *lo + (hi - *lo) / 2;
        first = 0;
        int m = count_span(p, u, s, mid);
        if (m < 0) return -1;
        if (m <= p->k)
            *lo = mid, *n = m;
        else
            hi = mid;
    }
    return 0;
}

/* How much joining costs, learnt from the verified segments so far:
 * standalone counts overestimate a join (SentencePiece adds a dummy-prefix
 * space to each text; a sentence's trailing space merges with the next word)
 * by about saved / joins tokens per join. */
typedef struct {
    double saved, joins;
} join_stats;

static double per_join(const join_stats *js, double saved, double joins) {
    saved += js->saved, joins += js->joins;
    return joins > 0 ? saved / joins : 0;
}

/* Bounds the verified growth steps per segment, so a poor estimate costs a
 * few extra tokenizations of the segment, never a quadratic number. */
#define GROW_ROUNDS 4
/* A unit the estimate puts at most this many tokens past the bound is still
 * tried: one join can save more than the average. */
#define GROW_SLACK 2

static long sum_units(const wim_segment *u, size_t s, size_t e) {
    long sum = 0;
    for (size_t i = s; i < e; i++)
        sum += u[i].n_tokens;
    return sum;
}

/* The end of the longest run of units from e that the estimate says fits in
 * k, when what comes before counts n and each join saves pj tokens. */
static size_t propose(const wim_segment *u, size_t nu, size_t e, double n, double pj, int k) {
    for (; e < nu; e++) {
        double c = u[e].n_tokens - pj;
        n += c > 0.5 ? c : 0.5; /* a unit never joins for free */
        if (n > k) break;
    }
    return e;
}

/* Packs the units from s into one segment: greedy on the estimate, then
 * verified; an overflow drops trailing units (the last first), a short fall
 * grows by the corrected estimate, and a next unit the estimate puts just
 * past the bound is tried once. The end unit goes to *e_out, the real count
 * to *n_out. */
static int pack_one(const packer *p, const wim_segment *u, size_t nu, size_t s, join_stats *js,
                    size_t *e_out, int *n_out) {
    size_t e = propose(u, nu, s + 1, u[s].n_tokens, per_join(js, 0, 0), p->k);
    int n = count_span(p, u, s, e);
    if (n < 0) return -1;
    if (n > p->k) {
        size_t lo = s + 1;
        int nlo = u[s].n_tokens;
        if (fit_between(p, u, s, &lo, &nlo, e)) return -1;
        e = lo, n = nlo;
    } else {
        for (int round = 0; round < GROW_ROUNDS && e < nu; round++) {
            double pj = per_join(js, (double)(sum_units(u, s, e) - n), (double)(e - s - 1));
            size_t e2 = propose(u, nu, e, n, pj, p->k);
            if (e2 == e && propose(u, nu, e, n, pj, p->k + GROW_SLACK) == e) break;
            if (e2 == e) e2 = e + 1;
            int n2 = count_span(p, u, s, e2);
            if (n2 < 0) return -1;
            if (n2 > p->k) {
                if (fit_between(p, u, s, &e, &n, e2)) return -1;
                break;
            }
            e = e2, n = n2;
        }
    }
    js->saved += (double)(sum_units(u, s, e) - n);
    js->joins += (double)(e - s - 1);
    *e_out = e, *n_out = n;
    return 0;
}

static int pack(const packer *p, const wim_segment *u, size_t nu, seg_vec *out) {
    join_stats js = {0, 0};
    for (size_t s = 0, e; s < nu; s = e) {
        int n;
        if (pack_one(p, u, nu, s, &js, &e, &n) ||
            seg_push(p, out, u[s].start, u[e - 1].start + u[e - 1].len, n))
            return -1;
    }
    return 0;
}

int wim_segment_text(const wim_tokenizer *tok, const char *text, size_t len, int max_tokens,
                     wim_segment **out, char *err, size_t errlen) {
    *out = NULL;
    if (max_tokens < 1)
        return wim_errorf(err, errlen, "max_tokens must be at least 1 (got %d)", max_tokens);
    if (!tok) return wim_errorf(err, errlen, "no tokenizer");
    if (!text && len) return wim_errorf(err, errlen, "no text");
    if (len == 0) return 0;
    size_t *ends;
    int n_ends = wim_sentence_ends(text, len, &ends);
    if (n_ends < 0) return wim_errorf(err, errlen, "out of memory while finding sentences");
    packer p = {tok, text, len, max_tokens, err, errlen};
    seg_vec units = {0}, segs = {0};
    int rc = make_units(&p, ends, n_ends, &units);
    free(ends);
    if (!rc) rc = pack(&p, units.v, units.n, &segs);
    free(units.v);
    if (!rc && segs.n > (size_t)INT_MAX) rc = wim_errorf(err, errlen, "too many segments");
    if (rc) {
        free(segs.v);
        return -1;
    }
    *out = segs.v;
    return (int)segs.n;
}
