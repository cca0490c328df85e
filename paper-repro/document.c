/*
 * document.c — repro_build_document: one example's gold paragraphs padded with
 * distractor paragraphs up to a target length in the model's own tokens.
 *
 * Method (the paper does not publish its padding procedure; README "Long-context
 * padding"): candidates are the example's own non-gold paragraphs (seeded order), then
 * every paragraph of the other examples (seeded order), skipping any whose text or title
 * repeats a gold paragraph or an already chosen one. Candidates are taken while the
 * summed per-paragraph token counts stay below the target; the last one taken is cut at
 * a sentence (else word) boundary. The layout is a seeded shuffle of the distractors with
 * each gold paragraph inserted at a seeded random position, paragraphs joined by a blank
 * line. The whole document is then tokenized once and the cut corrected by the observed
 * difference (token counts are not exactly additive across joins), a few rounds at most.
 *
 * Invariants: every gold paragraph appears exactly once and is never cut; the result
 * depends only on (example, pool, tokenizer, target, seed).
 */
#include <stdlib.h>
#include <string.h>

#include "pyrandom.h"
#include "repro_internal.h"

static const char SEP[] = "\n\n";
enum { MAX_ROUNDS = 8 };

typedef struct {
    char *text; /* rendered: "title\ntext", or text when the title is empty */
    size_t len;
    int tokens;
} item;

typedef struct {
    item *v;
    int n, cap;
} items;

static int items_push(items *a, item it) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        item *p = realloc(a->v, (size_t)nc * sizeof *p);
        if (!p) return -1;
        a->v = p, a->cap = nc;
    }
    a->v[a->n++] = it;
    return 0;
}

static void items_free(items *a) {
    for (int i = 0; i < a->n; i++)
        free(a->v[i].text);
    free(a->v);
}

static char *render(const repro_para *p, size_t *len) {
    sbuf b = {0};
    if (p->title && *p->title) {
        sbuf_adds(&b, p->title);
        sbuf_add(&b, "\n", 1);
    }
    sbuf_adds(&b, p->text);
    char *s = sbuf_take(&b);
    *len = s ? strlen(s) : 0;
    return s;
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

/* Open-addressing set of text hashes: "has this paragraph (or title) been used". */
typedef struct {
    uint64_t *slot;
    size_t mask;
} hset;

static int hset_init(hset *h, size_t want) {
    size_t n = 64;
    while (n < want * 2)
        n *= 2;
    h->slot = calloc(n, sizeof *h->slot);
    h->mask = n - 1;
    return h->slot ? 0 : -1;
}

/* Adds key; returns 1 when it was already there. */
static int hset_add(hset *h, uint64_t key) {
    for (size_t i = key & h->mask;; i = (i + 1) & h->mask) {
        if (h->slot[i] == key) return 1;
        if (!h->slot[i]) {
            h->slot[i] = key;
            return 0;
        }
    }
}

typedef struct {
    const repro_example *ex;
    const repro_dataset *pool;
    const wim_tokenizer *tok;
    py_random rng;
    /* candidate paragraphs in the order they are offered */
    const repro_para **cand;
    size_t n_cand, next;
    hset seen;
} picker;

static int is_self(const repro_example *a, const repro_example *b) {
    return a == b || (a->id && b->id && !strcmp(a->id, b->id));
}

static int picker_init(picker *pk, const repro_example *ex, const repro_dataset *pool,
                       uint64_t seed) {
    size_t total = (size_t)ex->n_paras;
    for (int i = 0; pool && i < pool->n; i++)
        if (!is_self(&pool->ex[i], ex)) total += (size_t)pool->ex[i].n_paras;
    pk->cand = malloc((total ? total : 1) * sizeof *pk->cand);
    if (!pk->cand || hset_init(&pk->seen, total + (size_t)ex->n_paras * 2 + 16)) return -1;
    /* the layout differs per example under one seed: mix the id into the seed */
    uint64_t s = seed ^ (ex->id ? fnv1a(ex->id, strlen(ex->id)) : 0);
    py_random_seed(&pk->rng, s);
    size_t n_own = 0;
    for (int i = 0; i < ex->n_paras; i++)
        if (!ex->paras[i].gold) pk->cand[n_own++] = &ex->paras[i];
    py_random_shuffle(&pk->rng, (void **)pk->cand, n_own);
    size_t n = n_own;
    for (int i = 0; pool && i < pool->n; i++)
        if (!is_self(&pool->ex[i], ex))
            for (int j = 0; j < pool->ex[i].n_paras; j++)
                pk->cand[n++] = &pool->ex[i].paras[j];
    py_random_shuffle(&pk->rng, (void **)(pk->cand + n_own), n - n_own);
    pk->n_cand = n;
    pk->next = 0;
    /* gold texts and titles are never repeated as distractors */
    for (int i = 0; i < ex->n_paras; i++)
        if (ex->paras[i].gold) {
            const repro_para *p = &ex->paras[i];
            hset_add(&pk->seen, fnv1a(p->text, strlen(p->text)));
            if (p->title && *p->title) hset_add(&pk->seen, fnv1a(p->title, strlen(p->title)) ^ 2);
        }
    return 0;
}

/* The next unused candidate, rendered and counted; 0 when none is left, -1 on error. */
static int picker_next(picker *pk, item *out) {
    while (pk->next < pk->n_cand) {
        const repro_para *p = pk->cand[pk->next++];
        if (!*p->text) continue;
        int dup = hset_add(&pk->seen, fnv1a(p->text, strlen(p->text)));
        if (p->title && *p->title)
            dup |= hset_add(&pk->seen, fnv1a(p->title, strlen(p->title)) ^ 2);
        if (dup) continue;
        out->text = render(p, &out->len);
        if (!out->text) return -1;
        out->tokens = repro_count_tokens(pk->tok, out->text, out->len);
        if (out->tokens < 0) {
            free(out->text);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* The longest prefix of s (at most len bytes) ending at a word boundary whose token
 * count is at most want, moved back to a sentence end when that costs at most slack
 * tokens. Binary search over the word boundaries: only this paragraph is re-tokenized. */
static size_t cut_point(const wim_tokenizer *tok, const char *s, size_t len, int want, int slack) {
    if (want <= 0) return 0;
    size_t lo = 0, hi = len, best = 0; /* invariant: prefix of best bytes fits */
    while (lo <= hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t b = mid; /* snap to a word boundary at or before mid */
        while (b > 0 && b < len && s[b] != ' ' && s[b] != '\n')
            b--;
        int n = repro_count_tokens(tok, s, b);
        if (n >= 0 && n <= want) {
            if (b > best) best = b;
            lo = mid + 1;
        } else {
            if (mid == 0) break;
            hi = mid - 1;
        }
    }
    for (size_t b = best; b > 0; b--) /* a sentence end close enough before best? */
        if ((s[b - 1] == '.' || s[b - 1] == '!' || s[b - 1] == '?') &&
            (b == len || s[b] == ' ' || s[b] == '\n')) {
            int n = repro_count_tokens(tok, s, b), nb = repro_count_tokens(tok, s, best);
            if (n >= 0 && nb >= 0 && nb - n <= slack) best = b;
            break;
        }
    return best;
}

/* Joins golds and distractors in the seeded layout; the last distractor keeps only
 * cut bytes. */
static char *assemble(const items *gold, const items *dis, size_t cut, uint64_t layout_seed) {
    int n = gold->n + dis->n;
    const item **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return NULL;
    for (int i = 0; i < dis->n; i++)
        order[i] = &dis->v[i];
    py_random rng;
    py_random_seed(&rng, layout_seed);
    py_random_shuffle(&rng, (void **)order, (size_t)dis->n);
    int k = dis->n;
    for (int g = 0; g < gold->n; g++) { /* each gold paragraph at a random position */
        int pos = (int)py_random_below(&rng, (uint32_t)(k + 1));
        memmove(order + pos + 1, order + pos, (size_t)(k - pos) * sizeof *order);
        order[pos] = &gold->v[g];
        k++;
    }
    const item *last = dis->n ? &dis->v[dis->n - 1] : NULL;
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    int first = 1;
    for (int i = 0; i < n; i++) {
        size_t len = order[i] == last ? cut : order[i]->len;
        while (len > 0 && (order[i]->text[len - 1] == ' ' || order[i]->text[len - 1] == '\n'))
            len--;
        if (!len) continue;
        if (!first) sbuf_add(&b, SEP, sizeof SEP - 1);
        sbuf_add(&b, order[i]->text, len);
        first = 0;
    }
    free(order);
    return sbuf_take(&b);
}

static char *build_prebuilt(const repro_example *ex, const wim_tokenizer *tok, int *n_tokens,
                            char *err, size_t errlen) {
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    for (int i = 0; i < ex->n_paras; i++) {
        if (i) sbuf_add(&b, SEP, sizeof SEP - 1);
        sbuf_adds(&b, ex->paras[i].text);
    }
    char *s = sbuf_take(&b);
    int n = s ? repro_count_tokens(tok, s, strlen(s)) : -1;
    if (n < 0) {
        free(s);
        repro_errf(err, errlen, "%s: cannot build the document", ex->id ? ex->id : "?");
        return NULL;
    }
    if (n_tokens) *n_tokens = n;
    return s;
}

char *repro_build_document(const repro_example *ex, const repro_dataset *pool,
                           const wim_tokenizer *tok, int target_tokens, uint64_t seed,
                           int *n_tokens, char *err, size_t errlen) {
    if (ex->prebuilt) return build_prebuilt(ex, tok, n_tokens, err, errlen);
    const char *id = ex->id ? ex->id : "?";
    items gold = {0}, dis = {0};
    picker pk = {.ex = ex, .pool = pool, .tok = tok};
    char *doc = NULL;
    const char *why = "out of memory or tokenizer failure";
    int sep_tokens = repro_count_tokens(tok, SEP, sizeof SEP - 1);
    int tol = target_tokens / 200; /* aim at 0.5 %, inside the promised 1 % */
    if (picker_init(&pk, ex, pool, seed) || sep_tokens < 0) goto fail;
    long est = 0;
    for (int i = 0; i < ex->n_paras; i++) {
        if (!ex->paras[i].gold) continue;
        item it;
        if (!(it.text = render(&ex->paras[i], &it.len))) goto fail;
        it.tokens = repro_count_tokens(tok, it.text, it.len);
        if (it.tokens < 0 || items_push(&gold, it)) {
            free(it.text);
            goto fail;
        }
        est += it.tokens + (gold.n > 1 ? sep_tokens : 0);
    }
    if (est > target_tokens + tol) {
        why = "the gold paragraphs alone exceed the target";
        goto fail;
    }
    /* take candidates until the additive estimate reaches the target */
    while (est < target_tokens) {
        item it;
        int r = picker_next(&pk, &it);
        if (r < 0) goto fail;
        if (r == 0) {
            why = "the pool has too few distinct paragraphs to reach the target";
            goto fail;
        }
        if (items_push(&dis, it)) {
            free(it.text);
            goto fail;
        }
        est += it.tokens + (gold.n + dis.n > 1 ? sep_tokens : 0);
    }
    /* want: tokens the last distractor should contribute */
    int want = dis.n ? dis.v[dis.n - 1].tokens - (int)(est - target_tokens) : 0;
    uint64_t layout_seed = seed ^ 0x9e3779b97f4a7c15ull ^ (ex->id ? fnv1a(id, strlen(id)) : 0);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        item *last = dis.n ? &dis.v[dis.n - 1] : NULL;
        while (last && want > last->tokens) { /* the cut paragraph is not enough: add one */
            item it;
            int r = picker_next(&pk, &it);
            if (r <= 0) {
                if (r == 0) why = "the pool has too few distinct paragraphs to reach the target";
                goto fail;
            }
            want -= last->tokens + sep_tokens;
            if (items_push(&dis, it)) {
                free(it.text);
                goto fail;
            }
            last = &dis.v[dis.n - 1];
        }
        while (last && want < 0 && dis.n > 1) { /* overshoot beyond this paragraph: drop it */
            free(last->text);
            dis.n--;
            last = &dis.v[dis.n - 1];
            want += last->tokens + sep_tokens;
        }
        size_t cut = last ? cut_point(tok, last->text, last->len, want, tol / 2) : 0;
        free(doc);
        if (!(doc = assemble(&gold, &dis, cut, layout_seed))) goto fail;
        int n = repro_count_tokens(tok, doc, strlen(doc));
        if (n < 0) goto fail;
        if (n_tokens) *n_tokens = n;
        int diff = target_tokens - n;
        if ((diff >= 0 ? diff : -diff) <= tol || !last) break;
        want += diff;
    }
    items_free(&gold);
    items_free(&dis);
    free(pk.cand);
    free(pk.seen.slot);
    return doc;
fail:
    repro_errf(err, errlen, "%s: cannot build a %d-token document: %s", id, target_tokens, why);
    free(doc);
    items_free(&gold);
    items_free(&dis);
    free(pk.cand);
    free(pk.seen.slot);
    return NULL;
}
