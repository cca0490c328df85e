/*
 * pretokenize.c — the pre-tokenizers a byte-level BPE vocabulary splits text
 * with before merging (tokenizer.ggml.pre): gpt2, llama3, qwen2, starcoder,
 * falcon, deepseek-llm, deepseek-coder and llama.cpp's default.
 *
 * Owns: the table of names llama.cpp accepts for each, and hand-written
 * matchers equivalent to the regexes llama.cpp runs for them (no regex
 * engine): each pre-tokenizer is a list of rules, every rule splitting the
 * pieces the previous one left, as llama.cpp's unicode_regex_split.
 *
 * Invariants:
 *  - Splitting never drops or reorders text: the pieces cover the input.
 *  - Matchers see codepoints and their Unicode flags, never bytes; an invalid
 *    UTF-8 byte is one codepoint classed like U+FFFD (wim_utf8_decode).
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* the names tokenizer.ggml.pre uses, as llama.cpp's vocabulary loader       */

static const struct {
    const char *name;
    enum pre_kind pre;
    int llama3; /* ignore_merges and add_bos by default */
} pre_names[] = {
    {"default", PRE_DEFAULT, 0},
    {"gpt2", PRE_GPT2, 0},
    {"gpt-2", PRE_GPT2, 0},
    {"phi-2", PRE_GPT2, 0},
    {"jina-es", PRE_GPT2, 0},
    {"jina-de", PRE_GPT2, 0},
    {"gigachat", PRE_GPT2, 0},
    {"jina-v1-en", PRE_GPT2, 0},
    {"jina-v2-es", PRE_GPT2, 0},
    {"jina-v2-de", PRE_GPT2, 0},
    {"jina-v2-code", PRE_GPT2, 0},
    {"roberta-bpe", PRE_GPT2, 0},
    {"mpt", PRE_GPT2, 0},
    {"olmo", PRE_GPT2, 0},
    {"jais", PRE_GPT2, 0},
    {"llama3", PRE_LLAMA3, 1},
    {"llama-v3", PRE_LLAMA3, 1},
    {"llama-bpe", PRE_LLAMA3, 1},
    {"falcon3", PRE_LLAMA3, 1},
    {"dbrx", PRE_LLAMA3, 0},
    {"smaug-bpe", PRE_LLAMA3, 0},
    {"qwen2", PRE_QWEN2, 0},
    {"deepseek-r1-qwen", PRE_QWEN2, 0},
    {"stablelm2", PRE_QWEN2, 0},
    {"megrez", PRE_QWEN2, 0},
    {"starcoder", PRE_STARCODER, 0},
    {"refact", PRE_STARCODER, 0},
    {"command-r", PRE_STARCODER, 0},
    {"smollm", PRE_STARCODER, 0},
    {"codeshell", PRE_STARCODER, 0},
    {"exaone", PRE_STARCODER, 0},
    {"minerva-7b", PRE_STARCODER, 0},
    {"falcon", PRE_FALCON, 0},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PRE_DEEPSEEK_CODER, 0},
};

int pretok_find(const char *name, enum pre_kind *pre, int *llama3) {
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++) {
        if (strcmp(pre_names[i].name, name) == 0) {
            *pre = pre_names[i].pre;
            *llama3 = pre_names[i].llama3;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* matchers                                                                  */
/*                                                                           */
/* Each matcher returns the length (in codepoints) of the match that the    */
/* regex (ECMAScript semantics: leftmost alternative, greedy with            */
/* backtracking) finds starting exactly at p, within the piece ending at e,  */
/* or 0. \s is White_Space, \p{..} the major general category.               */

static inline int f_L(unsigned f) {
    return (f & WIM_UC_CAT_MASK) == WIM_UC_LETTER;
}
static inline int f_N(unsigned f) {
    return (f & WIM_UC_CAT_MASK) == WIM_UC_NUMBER;
}
static inline int f_P(unsigned f) {
    return (f & WIM_UC_CAT_MASK) == WIM_UC_PUNCT;
}
static inline int f_WS(unsigned f) {
    return (f & WIM_UC_WHITESPACE) != 0;
}
static inline int f_O(unsigned f) {
    return !f_WS(f) && !f_L(f) && !f_N(f);
} /* [^\s\p{L}\p{N}] */

#define DEFINE_RUN(name, test)                                                                     \
    static size_t name(const scratch *s, size_t p, size_t e) {                                     \
        size_t q = p;                                                                              \
        while (q < e && test(s->fl[q]))                                                            \
            q++;                                                                                   \
        return q - p;                                                                              \
    }
DEFINE_RUN(run_L, f_L)
DEFINE_RUN(run_N, f_N)
DEFINE_RUN(run_P, f_P)
DEFINE_RUN(run_WS, f_WS)
DEFINE_RUN(run_O, f_O)

static int is_crlf(uint32_t c) {
    return c == '\r' || c == '\n';
}

/* 's|'t|'re|'ve|'m|'ll|'d, ASCII case-insensitive when ci. */
static size_t contraction(const scratch *s, size_t p, size_t e, int ci) {
    if (s->cp[p] != '\'' || p + 1 >= e) return 0;
    uint32_t a = s->cp[p + 1], b = p + 2 < e ? s->cp[p + 2] : 0;
    if (ci) {
        a |= (a >= 'A' && a <= 'Z') ? 0x20 : 0;
        b |= (b >= 'A' && b <= 'Z') ? 0x20 : 0;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static size_t m_gpt2(const scratch *s, size_t p, size_t e) {
    size_t k = contraction(s, p, e, 0);
    if (k) return k;
    size_t sp = s->cp[p] == ' ' && p + 1 < e;
    unsigned f = s->fl[p + sp];
    if (f_L(f)) return sp + run_L(s, p + sp, e);
    if (f_N(f)) return sp + run_N(s, p + sp, e);
    if (f_O(f)) return sp + run_O(s, p + sp, e);
    size_t n = run_WS(s, p, e);
    if (p + n == e) return n;
    return n >= 2 ? n - 1 : 0; /* one space before a non-space: no match (a gap) */
}

/* Llama 3 (maxdig 3) and Qwen2 (maxdig 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_llama3_n(const scratch *s, size_t p, size_t e, size_t maxdig) {
    size_t k = contraction(s, p, e, 1);
    if (k) return k;
    uint32_t c = s->cp[p];
    unsigned f = s->fl[p];
    if (f_L(f)) return run_L(s, p, e);
    if (!is_crlf(c) && !f_N(f) && p + 1 < e && f_L(s->fl[p + 1])) return 1 + run_L(s, p + 1, e);
    if (f_N(f)) {
        size_t n = run_N(s, p, e);
        return n < maxdig ? n : maxdig;
    }
    size_t sp = c == ' ' && p + 1 < e && f_O(s->fl[p + 1]);
    if (sp || f_O(f)) {
        size_t q = p + sp;
        q += run_O(s, q, e);
        while (q < e && is_crlf(s->cp[q]))
            q++;
        return q - p;
    }
    size_t n = run_WS(s, p, e), last = 0;
    for (size_t q = p; q < p + n; q++)
        if (is_crlf(s->cp[q])) last = q + 1;
    if (last) return last - p;          /* \s*[\r\n]+ */
    if (p + n == e || n == 1) return n; /* \s+(?!\S) at the end, or \s+ */
    return n - 1;                       /* \s+(?!\S) */
}
static size_t m_llama3(const scratch *s, size_t p, size_t e) {
    return m_llama3_n(s, p, e, 3);
}
static size_t m_qwen2(const scratch *s, size_t p, size_t e) {
    return m_llama3_n(s, p, e, 1);
}

/* [\r\n] */
static size_t m_crlf(const scratch *s, size_t p, size_t e) {
    (void)e;
    return is_crlf(s->cp[p]);
}
/* \s?\p{L}+ */
static size_t m_ws_letters(const scratch *s, size_t p, size_t e) {
    if (f_L(s->fl[p])) return run_L(s, p, e);
    return f_WS(s->fl[p]) && p + 1 < e && f_L(s->fl[p + 1]) ? 1 + run_L(s, p + 1, e) : 0;
}
/* \s?\p{P}+ */
static size_t m_ws_punct(const scratch *s, size_t p, size_t e) {
    if (f_P(s->fl[p])) return run_P(s, p, e);
    return f_WS(s->fl[p]) && p + 1 < e && f_P(s->fl[p + 1]) ? 1 + run_P(s, p + 1, e) : 0;
}
/* \p{N} */
static size_t m_digit(const scratch *s, size_t p, size_t e) {
    (void)e;
    return f_N(s->fl[p]);
}
/* \p{N}+ */
static size_t m_digits(const scratch *s, size_t p, size_t e) {
    return run_N(s, p, e);
}
/* [0-9][0-9][0-9] */
static size_t m_digits3(const scratch *s, size_t p, size_t e) {
    if (p + 3 > e) return 0;
    for (size_t i = p; i < p + 3; i++)
        if (s->cp[i] < '0' || s->cp[i] > '9') return 0;
    return 3;
}
/* [\p{P}\$\+<=>\^~\|`]+ (falcon) and [\p{P}\$\+<=>\^~\|]+ (default) */
static size_t punct_sym_run(const scratch *s, size_t p, size_t e, const char *extra) {
    size_t q = p;
    while (q < e &&
           (f_P(s->fl[q]) || (s->cp[q] && s->cp[q] < 0x80 && strchr(extra, (int)s->cp[q]))))
        q++;
    return q - p;
}
static size_t m_punct_falcon(const scratch *s, size_t p, size_t e) {
    return punct_sym_run(s, p, e, "$+<=>^~|`");
}
static size_t m_punct_default(const scratch *s, size_t p, size_t e) {
    return punct_sym_run(s, p, e, "$+<=>^~|");
}

/* Classes written as explicit codepoint ranges (no \p{..}): llama.cpp runs
 * them through std::wregex on text where every non-ASCII whitespace was
 * replaced by U+000B, so such a character never matches a range. */
typedef struct {
    uint32_t lo, hi;
} cprange;

static int in_ranges(const scratch *s, size_t q, const cprange *r, size_t n) {
    uint32_t c = s->cp[q];
    if (c >= 0x80 && f_WS(s->fl[q])) return 0;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* [一-龥ࠀ-一가-퟿] (deepseek) */
static const cprange cjk_ranges[] = {{0x0800, 0x9FA5}, {0xAC00, 0xD7FF}};
/* deepseek-llm's letter class [A-Za-zµÀ-ÖØ-öø-ƺ...𞤀-𞥃] */
static const cprange ds_letters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
    {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
    {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* deepseek-llm's punctuation class [!-/:-~！-／：-～‘-‟　-。] */
static const cprange ds_punct[] = {{0x21, 0x2F},     {0x3A, 0x7E},     {0x2018, 0x201F},
                                   {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}};
#define NRANGES(a) (sizeof(a) / sizeof((a)[0]))

static size_t range_run(const scratch *s, size_t p, size_t e, const cprange *r, size_t n) {
    size_t q = p;
    while (q < e && in_ranges(s, q, r, n))
        q++;
    return q - p;
}
/* \s?[class]+ */
static size_t ws_opt_range_run(const scratch *s, size_t p, size_t e, const cprange *r, size_t n) {
    size_t k = range_run(s, p, e, r, n);
    if (k) return k;
    return f_WS(s->fl[p]) && p + 1 < e && (k = range_run(s, p + 1, e, r, n)) ? 1 + k : 0;
}
static size_t m_cjk(const scratch *s, size_t p, size_t e) {
    return range_run(s, p, e, cjk_ranges, NRANGES(cjk_ranges));
}
static size_t m_ds_letters(const scratch *s, size_t p, size_t e) {
    return ws_opt_range_run(s, p, e, ds_letters, NRANGES(ds_letters));
}
static size_t m_ds_punct(const scratch *s, size_t p, size_t e) {
    return ws_opt_range_run(s, p, e, ds_punct, NRANGES(ds_punct));
}

/* ------------------------------------------------------------------------ */
/* the rules of each pre-tokenizer, and splitting                            */

typedef size_t (*matcher)(const scratch *s, size_t p, size_t e);
#define TRAILING_WS ((matcher)0) /* \s+$: searched from the end, not position by position */

typedef struct {
    const matcher *rules;
    int n;
} pre_rules;

static const matcher rules_default[] = {m_punct_default, m_gpt2, m_digits, m_digits3};
static const matcher rules_gpt2[] = {m_gpt2};
static const matcher rules_llama3[] = {m_llama3};
static const matcher rules_qwen2[] = {m_qwen2};
static const matcher rules_starcoder[] = {m_digit, m_gpt2};
static const matcher rules_falcon[] = {m_punct_falcon, m_gpt2, m_digits3};
static const matcher rules_ds_llm[] = {m_crlf,      m_ds_letters, m_ds_punct,
                                       TRAILING_WS, m_cjk,        m_digits};
static const matcher rules_ds_coder[] = {m_crlf, m_ws_letters, m_ws_punct, m_cjk, m_digit};

static pre_rules rules_of(enum pre_kind k) {
#define R(a) ((pre_rules){a, (int)(sizeof(a) / sizeof((a)[0]))})
    switch (k) {
    case PRE_GPT2:
        return R(rules_gpt2);
    case PRE_LLAMA3:
        return R(rules_llama3);
    case PRE_QWEN2:
        return R(rules_qwen2);
    case PRE_STARCODER:
        return R(rules_starcoder);
    case PRE_FALCON:
        return R(rules_falcon);
    case PRE_DEEPSEEK_LLM:
        return R(rules_ds_llm);
    case PRE_DEEPSEEK_CODER:
        return R(rules_ds_coder);
    default:
        return R(rules_default);
    }
#undef R
}

/* Splits the piece [a, b) with one rule as a regex split does: each match is
 * a piece, and so is each run of text between matches. Appends piece ends. */
static size_t split_piece(const scratch *s, matcher m, size_t a, size_t b, uint32_t *out,
                          size_t no) {
    if (!m) { /* \s+$ */
        size_t q = b;
        while (q > a && f_WS(s->fl[q - 1]))
            q--;
        if (q > a && q < b) out[no++] = (uint32_t)q;
        out[no++] = (uint32_t)b;
        return no;
    }
    size_t p = a;
    while (p < b) {
        size_t q = p, len = 0;
        while (q < b && (len = m(s, q, b)) == 0)
            q++;
        if (q > p) out[no++] = (uint32_t)q;
        if (q == b) break;
        p = q + len;
        out[no++] = (uint32_t)p;
    }
    return no;
}

/* Decodes text[0..n) into s->cp/fl/off; returns the codepoint count or -1. */
static long decode_text(scratch *s, const char *text, size_t n) {
    if (tok_reserve(s, (void **)&s->cp, &s->cap_cp, n + 1, sizeof *s->cp) ||
        tok_reserve(s, (void **)&s->fl, &s->cap_fl, n + 1, 1) ||
        tok_reserve(s, (void **)&s->off, &s->cap_off, n + 1, sizeof *s->off))
        return -1;
    const unsigned char *u = (const unsigned char *)text;
    size_t c = 0;
    for (size_t i = 0; i < n; c++) {
        uint32_t cp;
        int len = u[i] < 0x80 ? (cp = u[i], 1) : wim_utf8_decode(u + i, n - i, &cp, NULL);
        s->cp[c] = cp;
        s->fl[c] = (uint8_t)wim_uc_flags(cp);
        s->off[c] = (uint32_t)i;
        i += (size_t)len;
    }
    s->off[c] = (uint32_t)n;
    return (long)c;
}

/* Splits every piece of s->seg[0..nseg) with one rule (the new ends go to
 * s->seg2, then the two swap); returns the new count. */
static size_t apply_rule(scratch *s, matcher m, size_t nseg) {
    size_t no = 0, a = 0;
    for (size_t i = 0; i < nseg; i++) {
        no = split_piece(s, m, a, s->seg[i], s->seg2, no);
        a = s->seg[i];
    }
    uint32_t *tmp = s->seg;
    s->seg = s->seg2;
    s->seg2 = tmp;
    size_t tc = s->cap_seg;
    s->cap_seg = s->cap_seg2;
    s->cap_seg2 = tc;
    return no;
}

size_t pretokenize(enum pre_kind pre, scratch *s, const char *text, size_t n) {
    long c = decode_text(s, text, n);
    if (c <= 0) return 0;
    if (tok_reserve(s, (void **)&s->seg, &s->cap_seg, (size_t)c + 1, sizeof *s->seg) ||
        tok_reserve(s, (void **)&s->seg2, &s->cap_seg2, (size_t)c + 1, sizeof *s->seg2))
        return 0;
    pre_rules r = rules_of(pre);
    size_t nseg = 1;
    s->seg[0] = (uint32_t)c;
    for (int k = 0; k < r.n; k++)
        nseg = apply_rule(s, r.rules[k], nseg);
    for (size_t i = 0; i < nseg; i++) /* codepoint ends -> byte ends */
        s->seg[i] = s->off[s->seg[i]];
    return nseg;
}
