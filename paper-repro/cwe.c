/*
 * cwe.c — RULER's common-words-extraction (cwe) task, generated the way
 * NVIDIA/RULER's common_words_extraction.py does (../shared/data/cwe/RULER-CWE-FORMAT.md):
 * same word pool, same Python random draws, same template strings, same length search.
 *
 * Invariants: a generator's pool and global stream are its own (no global state), so
 * two generators with one seed produce identical text; every stream draw happens in
 * RULER's call order, which is what makes seed-42 output byte-identical to RULER's for
 * the tokenizer-independent first call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrandom.h"
#include "repro_internal.h"

/* RULER's base template with its answer prefix appended (constants.py); the "10" is
 * literal text in RULER, whatever num_cw is. */
static const char TEMPLATE_HEAD[] =
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n";
static const char TEMPLATE_TAIL[] = "\nQuestion: What are the 10 most common words in the above "
                                    "list? Answer: The top 10 words that appear most often in "
                                    "the list are:";
enum { RULER_GEN_TOKENS = 120, RULER_EST_WORDS = 4096, RULER_STEP = 10 };

struct repro_cwe_gen {
    char **pool;
    int n_pool;
    py_random global; /* random.seed(seed): every sample() draws from it */
    uint64_t seed;    /* every shuffle uses a fresh random.Random(seed) */
    int n_common, freq_common, freq_uncommon;
};

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the words of one list file: lines rstripped (as wonderwords reads them), empty
 * lines and possessives ("dog's", in Debian's wamerican) left out. */
static int read_words(const char *path, char ***words, int *n, int *cap, char *err, size_t errlen) {
    size_t len;
    char *buf = repro_read_file(path, &len, err, errlen);
    if (!buf) return -1;
    for (char *line = buf; line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        char *end = nl ? nl : buf + len;
        char *e = end;
        while (e > line && strchr(" \t\r\f\v", e[-1]))
            e--;
        int possessive = e - line >= 2 && e[-2] == '\'' && e[-1] == 's';
        if (e > line && !possessive) {
            if (*n == *cap) {
                int nc = *cap ? *cap * 2 : 4096;
                char **p = realloc(*words, (size_t)nc * sizeof *p);
                if (!p) break;
                *words = p, *cap = nc;
            }
            if (!((*words)[*n] = repro_strndup(line, (size_t)(e - line)))) break;
            (*n)++;
        }
        line = end + 1;
    }
    free(buf);
    return 0;
}

int repro_cwe_gen_open(const repro_cwe_params *p, repro_cwe_gen **out, char *err, size_t errlen) {
    *out = NULL;
    repro_cwe_gen *g = calloc(1, sizeof *g);
    if (!g) return -1;
    int cap = 0;
    for (int i = 0; i < p->n_word_files; i++)
        if (read_words(p->word_files[i], &g->pool, &g->n_pool, &cap, err, errlen)) {
            repro_cwe_gen_free(g);
            return -1;
        }
    /* sorted(set(nouns + adjs + verbs)): code-point order is byte order in UTF-8 */
    qsort(g->pool, (size_t)g->n_pool, sizeof *g->pool, cmp_str);
    int k = 0;
    for (int i = 0; i < g->n_pool; i++) {
        if (k > 0 && !strcmp(g->pool[k - 1], g->pool[i]))
            free(g->pool[i]);
        else
            g->pool[k++] = g->pool[i];
    }
    g->n_pool = k;
    g->n_common = p->n_common > 0 ? p->n_common : 10;
    g->freq_common = p->freq_common > 0 ? p->freq_common : 30;
    g->freq_uncommon = p->freq_uncommon > 0 ? p->freq_uncommon : 3;
    if (g->n_pool < 40 + g->n_common) {
        repro_errf(err, errlen, "cwe: the word lists hold %d distinct words; need at least %d",
                   g->n_pool, 40 + g->n_common);
        repro_cwe_gen_free(g);
        return -1;
    }
    g->seed = p->seed;
    py_random fresh;
    py_random_seed(&fresh, p->seed);
    py_random_shuffle(&fresh, (void **)g->pool, (size_t)g->n_pool);
    py_random_seed(&g->global, p->seed);
    *out = g;
    return 0;
}

void repro_cwe_gen_free(repro_cwe_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_pool; i++)
        free(g->pool[i]);
    free(g->pool);
    free(g);
}

int repro_cwe_gen_pool_size(const repro_cwe_gen *g) {
    return g->n_pool;
}

const char *repro_cwe_gen_pool_word(const repro_cwe_gen *g, int i) {
    return i >= 0 && i < g->n_pool ? g->pool[i] : NULL;
}

/* get_example(num_words, common_repeats, uncommon_repeats, num_cw): appends the numbered
 * context to ctx and points common[0..n_common-1] at the answer words (pool-owned). */
static int get_example(repro_cwe_gen *g, int num_words, int rep_c, int rep_u, sbuf *ctx,
                       const char **common, char *err, size_t errlen) {
    if (num_words > g->n_pool) {
        /* RULER would switch to english_words.json here, which is not available. */
        repro_errf(err, errlen, "cwe: %d words needed but the pool has only %d", num_words,
                   g->n_pool);
        return -1;
    }
    int nc = g->n_common;
    size_t total = (size_t)nc * rep_c + (size_t)(num_words - nc) * rep_u;
    size_t *idx = malloc((size_t)num_words * sizeof *idx);
    const char **list = malloc((total ? total : 1) * sizeof *list);
    if (!idx || !list || py_random_sample(&g->global, (size_t)g->n_pool, (size_t)num_words, idx)) {
        free(idx);
        free(list);
        repro_errf(err, errlen, "cwe: out of memory");
        return -1;
    }
    size_t k = 0;
    for (int r = 0; r < rep_c; r++) /* common * common_repeats: whole block repeated */
        for (int i = 0; i < nc; i++)
            list[k++] = g->pool[idx[i]];
    for (int r = 0; r < rep_u; r++)
        for (int i = nc; i < num_words; i++)
            list[k++] = g->pool[idx[i]];
    for (int i = 0; i < nc; i++)
        common[i] = g->pool[idx[i]];
    py_random fresh;
    py_random_seed(&fresh, g->seed);
    py_random_shuffle(&fresh, (void **)list, total);
    for (size_t i = 0; i < total; i++) {
        if (i) sbuf_add(ctx, " ", 1);
        sbuf_addf(ctx, "%zu. ", i + 1);
        sbuf_adds(ctx, list[i]);
    }
    free(idx);
    free(list);
    return 0;
}

char *repro_cwe_gen_input(repro_cwe_gen *g, int num_words, int short_branch, char ***answers,
                          char *err, size_t errlen) {
    if (answers) *answers = NULL;
    if (num_words < g->n_common) {
        repro_errf(err, errlen, "cwe: %d words is fewer than the %d common ones", num_words,
                   g->n_common);
        return NULL;
    }
    const char **fs = malloc((size_t)g->n_common * sizeof *fs);
    const char **main_ans = malloc((size_t)g->n_common * sizeof *main_ans);
    sbuf b = {0};
    int rc = fs && main_ans ? 0 : -1;
    /* few-shot first, then the main example: RULER's global-stream order */
    sbuf_adds(&b, TEMPLATE_HEAD);
    if (!rc)
        rc = short_branch ? get_example(g, 20, 3, 1, &b, fs, err, errlen)
                          : get_example(g, 40, 10, 3, &b, fs, err, errlen);
    sbuf_adds(&b, TEMPLATE_TAIL);
    for (int i = 0; !rc && i < g->n_common; i++) {
        sbuf_addf(&b, " %d. ", i + 1);
        sbuf_adds(&b, fs[i]);
    }
    sbuf_add(&b, "\n", 1);
    sbuf_adds(&b, TEMPLATE_HEAD);
    if (!rc)
        rc = short_branch ? get_example(g, num_words, 6, 1, &b, main_ans, err, errlen)
                          : get_example(g, num_words, g->freq_common, g->freq_uncommon, &b,
                                        main_ans, err, errlen);
    sbuf_adds(&b, TEMPLATE_TAIL);
    char *text = sbuf_take(&b);
    if (!rc && text && answers) {
        *answers = calloc((size_t)g->n_common, sizeof **answers);
        for (int i = 0; *answers && i < g->n_common; i++)
            if (!((*answers)[i] = repro_strdup(main_ans[i]))) rc = -1;
        if (!*answers) rc = -1;
    }
    int oom = !text || !fs || !main_ans;
    free(fs);
    free(main_ans);
    if (rc || !text) {
        if (answers && *answers) {
            for (int i = 0; i < g->n_common; i++)
                free((*answers)[i]);
            free(*answers);
            *answers = NULL;
        }
        if (oom) repro_errf(err, errlen, "cwe: out of memory");
        free(text);
        return NULL;
    }
    return text;
}

static void free_answers(char **a, int n) {
    for (int i = 0; a && i < n; i++)
        free(a[i]);
    free(a);
}

/* Length of generate_input_output(num_words) in tokens plus RULER's 120 reserved answer
 * tokens; -1 on error. Words beyond the pool count as "too long" without drawing. */
static long probe_length(repro_cwe_gen *g, const wim_tokenizer *tok, int num_words, int short_b,
                         char *err, size_t errlen) {
    if (num_words > g->n_pool) return 1L << 40;
    char *text = repro_cwe_gen_input(g, num_words, short_b, NULL, err, errlen);
    if (!text) return -1;
    long n = repro_count_tokens(tok, text, strlen(text));
    free(text);
    if (n < 0) repro_errf(err, errlen, "cwe: tokenizer failed");
    return n < 0 ? -1 : n + RULER_GEN_TOKENS;
}

/* sys_word_pair_random's rate estimate and binary search: the largest word count whose
 * prompt (plus 120) fitted max_len when probed; 10 when none did. */
static int search_num_words(repro_cwe_gen *g, const wim_tokenizer *tok, int max_len, int short_b,
                            char *err, size_t errlen) {
    long est = probe_length(g, tok, RULER_EST_WORDS, short_b, err, errlen);
    if (est < 0) return -1;
    double per_word = (double)(est - RULER_GEN_TOKENS) / RULER_EST_WORDS;
    int upper = (int)(max_len / per_word) * 2, lower = RULER_STEP, best = -1;
    if (upper < 20) upper = 20;
    while (lower <= upper) {
        int mid = (lower + upper) / 2;
        long total = probe_length(g, tok, mid, short_b, err, errlen);
        if (total < 0) return -1;
        if (total <= max_len)
            best = mid, lower = mid + 1;
        else
            upper = mid - 1;
    }
    return best > 0 ? best : RULER_STEP;
}

/* Splits RULER's input_text into the example: context, question, answer prefix. */
static int fill_example(repro_example *e, int index, char *text, char **answers, int n_ans) {
    e->answers = answers; /* owned by e from here on, whatever happens next */
    e->n_answers = n_ans;
    char id[32];
    snprintf(id, sizeof id, "cwe-%d", index);
    char *ap = NULL;
    for (char *p = strstr(text, " Answer: T"); p; p = strstr(p + 1, " Answer: T"))
        ap = p;
    char *q = NULL;
    for (char *p = strstr(text, "\nQuestion: "); p && (!ap || p < ap);
         p = strstr(p + 1, "\nQuestion: "))
        q = p;
    if (!ap || !q) return -1;
    e->id = repro_strdup(id);
    e->answer_prefix = repro_strdup(ap);
    e->question = repro_strndup(q + 11, (size_t)(ap - (q + 11)));
    *q = 0;
    e->prebuilt = 1;
    if (!e->id || !e->answer_prefix || !e->question || repro_push_para(e, "", text, 1)) return -1;
    return 0;
}

int repro_cwe_generate(const wim_tokenizer *tok, const repro_cwe_params *p, int n,
                       repro_dataset *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->task = REPRO_CWE;
    repro_cwe_gen *g;
    if (repro_cwe_gen_open(p, &g, err, errlen)) return -1;
    int short_b = p->target_tokens < 4096, max_len = p->target_tokens, cap = 0, rc = 0;
    int num_words = search_num_words(g, tok, max_len, short_b, err, errlen);
    if (num_words < 0) rc = -1;
    for (int i = 0; !rc && i < n; i++) {
        /* each sample draws its own words and steps down by 10 until it fits */
        for (int used = num_words;; used -= RULER_STEP) {
            char **ans = NULL;
            char *text = repro_cwe_gen_input(g, used, short_b, &ans, err, errlen);
            long len = text ? repro_count_tokens(tok, text, strlen(text)) : -1;
            if (len >= 0 && len + RULER_GEN_TOKENS <= max_len) {
                repro_example *e = NULL;
                if (repro_push_example(out, &cap, &e))
                    rc = -1;
                else if (fill_example(e, i, text, ans, g->n_common))
                    rc = -1;
                if (rc) repro_errf(err, errlen, "cwe: out of memory");
                if (rc && !e) free_answers(ans, g->n_common);
                free(text);
                break;
            }
            free_answers(ans, g->n_common);
            free(text);
            if (len < 0 || used <= RULER_STEP) {
                if (len >= 0)
                    repro_errf(err, errlen, "cwe: even %d words exceed %d tokens", used, max_len);
                rc = -1;
                break;
            }
        }
    }
    repro_cwe_gen_free(g);
    if (rc) repro_dataset_free(out);
    return rc;
}
