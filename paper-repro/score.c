/*
 * score.c — the scorers: SQuAD/HotpotQA answer normalisation, EM and F1 as the
 * official evaluation scripts compute them, MultiHop-RAG and BABILong accuracy, and
 * CWE precision/recall/F1 plus RULER's string_match_all.
 *
 * Invariants: every score is in [0, 1]; a NULL prediction scores as ""; nothing here
 * depends on the locale (case folding is a fixed table, see lower_cp).
 */
#include <stdlib.h>
#include <string.h>

#include "repro_internal.h"
#include "unicode.h"

/* ---- UTF-8 and case ---- */

/* Decodes one character; invalid bytes come back as themselves (cp = the byte | 1<<31) so
 * they pass through untouched. Returns the byte length. */
static int next_cp(const unsigned char *s, size_t n, uint32_t *cp) {
    int len = wim_utf8_next(s, n, cp);
    if (len <= 0) {
        *cp = 0x80000000u | s[0];
        return 1;
    }
    return len;
}

static void put_cp(sbuf *b, uint32_t cp) {
    char tmp[4];
    int n;
    if (cp & 0x80000000u)
        tmp[0] = (char)(cp & 0xFF), n = 1;
    else if (cp < 0x80)
        tmp[0] = (char)cp, n = 1;
    else if (cp < 0x800) {
        tmp[0] = (char)(0xC0 | (cp >> 6)), tmp[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xE0 | (cp >> 12)), tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        tmp[0] = (char)(0xF0 | (cp >> 18)), tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), tmp[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    sbuf_add(b, tmp, (size_t)n);
}

/* Simple lower-case mapping (what Python's str.lower does for these ranges): ASCII,
 * Latin-1, Latin Extended-A, Greek and Cyrillic capitals. Other scripts in the datasets
 * are caseless or rare in answers; they are kept as they are. */
static uint32_t lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if (c >= 0x100 && c <= 0x137) return c | 1u;
    if (c >= 0x139 && c <= 0x148) return (c & 1u) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c | 1u;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return (c & 1u) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    return c;
}

static int is_space_cp(uint32_t c) {
    /* Python's str.split() also splits on the information separators U+001C..U+001F. */
    return !(c & 0x80000000u) && (wim_uc_is_space(c) || (c >= 0x1C && c <= 0x1F));
}

static int is_word_cp(uint32_t c) { /* Python re's \w on str: alphanumeric or '_' */
    if (c & 0x80000000u) return 0;
    unsigned cat = wim_uc_cat(c);
    return c == '_' || cat == WIM_UC_LETTER || cat == WIM_UC_NUMBER;
}

/* ---- normalisation ---- */

static int is_ascii_punct(uint32_t c) { /* Python's string.punctuation */
    return c < 0x80 && c > 0x20 && c != 0x7F &&
           !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
}

/* Decodes s lower-cased without ASCII punctuation (the official lower() then
 * remove_punc(); the order does not matter since punctuation has no case). */
static uint32_t *lower_nopunct(const char *s, size_t *n_out) {
    size_t n = strlen(s), k = 0;
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    if (!cps) return NULL;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)next_cp((const unsigned char *)s + i, n - i, &cp);
        if (!is_ascii_punct(cp)) cps[k++] = lower_cp(cp);
    }
    *n_out = k;
    return cps;
}

static int is_article(const uint32_t *w, size_t n) {
    return (n == 1 && w[0] == 'a') || (n == 2 && w[0] == 'a' && w[1] == 'n') ||
           (n == 3 && w[0] == 't' && w[1] == 'h' && w[2] == 'e');
}

char *repro_normalize_answer(const char *s) {
    size_t n;
    uint32_t *cps = lower_nopunct(s ? s : "", &n);
    if (!cps) return NULL;
    /* remove_articles: re.sub(r"\b(a|an|the)\b", " ", text) — a whole run of word
     * characters equal to an article becomes a space. */
    for (size_t i = 0; i < n;) {
        if (!is_word_cp(cps[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && is_word_cp(cps[j]))
            j++;
        if (is_article(cps + i, j - i))
            for (size_t k = i; k < j; k++)
                cps[k] = ' ';
        i = j;
    }
    /* white_space_fix: " ".join(text.split()) */
    sbuf b = {0};
    int pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_space_cp(cps[i])) {
            pending = b.len > 0;
            continue;
        }
        if (pending) sbuf_add(&b, " ", 1), pending = 0;
        put_cp(&b, cps[i]);
    }
    free(cps);
    return sbuf_take(&b);
}

/* ---- EM / F1 ---- */

typedef struct {
    char **tok;
    int n;
    char *buf;
} tokens;

/* Splits a normalised string (single spaces) into tokens, in place in a copy. */
static int split_tokens(const char *norm, tokens *t) {
    t->buf = repro_strdup(norm);
    t->n = 0;
    size_t n = strlen(norm);
    t->tok = malloc((n / 2 + 1) * sizeof *t->tok);
    if (!t->buf || !t->tok) return -1;
    for (char *p = t->buf; *p;) {
        t->tok[t->n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) break;
        *sp = 0;
        p = sp + 1;
    }
    return 0;
}

static void free_tokens(tokens *t) {
    free(t->tok);
    free(t->buf);
}

/* Token-bag F1 of the official scripts (collections.Counter intersection). */
static double token_f1(const char *pred_norm, const char *gold_norm) {
    tokens p, g;
    if (split_tokens(pred_norm, &p) | split_tokens(gold_norm, &g)) {
        free_tokens(&p);
        free_tokens(&g);
        return 0;
    }
    double f1 = 0;
    if (p.n == 0 || g.n == 0) {
        f1 = p.n == g.n; /* SQuAD v2: both empty is a match */
    } else {
        char *used = calloc((size_t)g.n, 1);
        int common = 0;
        for (int i = 0; used && i < p.n; i++)
            for (int j = 0; j < g.n; j++)
                if (!used[j] && !strcmp(p.tok[i], g.tok[j])) {
                    used[j] = 1;
                    common++;
                    break;
                }
        free(used);
        if (common) {
            double prec = (double)common / p.n, rec = (double)common / g.n;
            f1 = 2 * prec * rec / (prec + rec);
        }
    }
    free_tokens(&p);
    free_tokens(&g);
    return f1;
}

static int is_yes_no(const char *norm) {
    return !strcmp(norm, "yes") || !strcmp(norm, "no") || !strcmp(norm, "noanswer");
}

/* Whole-token containment of gold in pred, both normalised. */
static int contains_tokens(const char *pred_norm, const char *gold_norm) {
    if (!*gold_norm) return !*pred_norm;
    size_t gl = strlen(gold_norm);
    for (const char *p = strstr(pred_norm, gold_norm); p; p = strstr(p + 1, gold_norm))
        if ((p == pred_norm || p[-1] == ' ') && (p[gl] == 0 || p[gl] == ' ')) return 1;
    return 0;
}

static void score_answers(repro_task task, const repro_example *ex, const char *pred,
                          repro_score *out) {
    char *pn = repro_normalize_answer(pred);
    for (int i = 0; pn && i < ex->n_answers; i++) {
        char *gn = repro_normalize_answer(ex->answers[i]);
        if (!gn) break;
        double em = !strcmp(pn, gn), f1 = token_f1(pn, gn);
        /* HotpotQA's hotpot_evaluate_v1.py: a yes/no/noanswer on either side only scores
         * when both agree. */
        if (task == REPRO_HOTPOTQA && (is_yes_no(pn) || is_yes_no(gn)) && strcmp(pn, gn)) f1 = 0;
        if (em > out->em) out->em = em;
        if (f1 > out->f1) out->f1 = f1;
        if (contains_tokens(pn, gn)) out->accuracy = 1;
        free(gn);
    }
    free(pn);
}

/* ASCII-and-table lower-casing of a whole string, for the containment scorers. */
static char *lower_str(const char *s) {
    size_t n = strlen(s);
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)next_cp((const unsigned char *)s + i, n - i, &cp);
        put_cp(&b, lower_cp(cp));
    }
    return sbuf_take(&b);
}

/* ---- CWE ---- */

static int is_item_sep(char c) {
    return c == ',' || c == ';' || c == ':' || c == '\n' || c == '\r' || c == '\t' || c == '|';
}

/* Trims spaces, bullets and punctuation around an item (keeps inner hyphens, apostrophes
 * and spaces, which pool words contain). */
static void trim_item(const char **s, const char **e) {
    while (*s < *e && strchr(" .*-\"'()[]!?", **s))
        (*s)++;
    while (*e > *s && strchr(" .*-\"'()[]!?", (*e)[-1]))
        (*e)--;
    if (*e - *s > 4 && (!strncmp(*s, "and ", 4) || !strncmp(*s, "or ", 3)))
        *s += (*s)[1] == 'n' ? 4 : 3;
}

typedef struct {
    char **want; /* lower-cased expected words */
    int n_want;
    char *found; /* per expected word */
    int items, hits;
} cwe_tally;

static int cwe_match(cwe_tally *t, const char *s, size_t n) {
    for (int i = 0; i < t->n_want; i++)
        if (strlen(t->want[i]) == n && !memcmp(t->want[i], s, n)) {
            if (!t->found[i]) t->found[i] = 1, t->items++, t->hits++;
            return 1; /* a repeated word is neither a new item nor a new error */
        }
    return 0;
}

/* One item: an expected word; else its words that are expected ones, plus one wrong item
 * for whatever else it holds (so "the top 10 words are" costs one, not six). */
static void cwe_item(cwe_tally *t, const char *s, const char *e) {
    trim_item(&s, &e);
    if (s >= e || cwe_match(t, s, (size_t)(e - s))) return;
    int other = 0;
    for (const char *w = s; w < e;) {
        while (w < e && *w == ' ')
            w++;
        const char *we = w;
        while (we < e && *we != ' ')
            we++;
        const char *ws = w, *wend = we;
        trim_item(&ws, &wend);
        size_t wl = (size_t)(wend - ws);
        int connective = (wl == 3 && !memcmp(ws, "and", 3)) || (wl == 2 && !memcmp(ws, "or", 2));
        if (ws < wend && !connective && !cwe_match(t, ws, wl)) other = 1;
        w = we;
    }
    t->items += other;
}

/* Splits at separators and at list numbers ("12." or "12)") and scores each item. */
static void cwe_items(cwe_tally *t, const char *p) {
    const char *start = p;
    for (const char *q = p;; q++) {
        int numbered = 0;
        if ((q == p || q[-1] == ' ' || is_item_sep(q[-1])) && *q >= '0' && *q <= '9') {
            const char *d = q;
            while (*d >= '0' && *d <= '9')
                d++;
            if (*d == '.' || *d == ')') numbered = (int)(d - q) + 1;
        }
        if (*q == 0 || is_item_sep(*q) || numbered) {
            cwe_item(t, start, q);
            if (*q == 0) break;
            if (numbered) q += numbered - 1;
            start = q + 1;
        }
    }
}

static void score_cwe(const repro_example *ex, const char *pred, repro_score *out) {
    char *lp = lower_str(pred);
    cwe_tally t = {.n_want = ex->n_answers};
    t.want = calloc((size_t)ex->n_answers + 1, sizeof *t.want);
    t.found = calloc((size_t)ex->n_answers + 1, 1);
    int ok = lp && t.want && t.found;
    for (int i = 0; ok && i < ex->n_answers; i++)
        ok = (t.want[i] = lower_str(ex->answers[i])) != 0;
    if (ok) {
        int sub = 0; /* RULER string_match_all: r.lower() in pred.lower() */
        for (int i = 0; i < ex->n_answers; i++)
            sub += strstr(lp, t.want[i]) != NULL;
        out->string_match_all = ex->n_answers ? (double)sub / ex->n_answers : 0;
        cwe_items(&t, lp);
        out->recall = ex->n_answers ? (double)t.hits / ex->n_answers : 0;
        out->precision = t.items ? (double)t.hits / t.items : 0;
        double s = out->precision + out->recall;
        out->f1 = s > 0 ? 2 * out->precision * out->recall / s : 0;
        out->score = out->f1;
    }
    for (int i = 0; t.want && i < ex->n_answers; i++)
        free(t.want[i]);
    free(t.want);
    free(t.found);
    free(lp);
}

void repro_score_prediction(repro_task task, const repro_example *ex, const char *prediction,
                            repro_score *out) {
    memset(out, 0, sizeof *out);
    const char *pred = prediction ? prediction : "";
    switch (task) {
    case REPRO_CWE:
        score_cwe(ex, pred, out);
        return;
    case REPRO_BABILONG: {
        score_answers(task, ex, pred, out);
        out->accuracy = 0;
        char *lp = lower_str(pred);
        for (int i = 0; lp && i < ex->n_answers; i++) {
            char *la = lower_str(ex->answers[i]);
            if (la && *la && strstr(lp, la)) out->accuracy = 1;
            free(la);
        }
        free(lp);
        out->score = out->accuracy;
        return;
    }
    case REPRO_MULTIHOP_RAG:
        score_answers(task, ex, pred, out);
        out->score = out->accuracy;
        return;
    default:
        score_answers(task, ex, pred, out);
        out->score = out->f1;
        return;
    }
}
