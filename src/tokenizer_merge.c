/*
 * tokenizer_merge.c — what the SentencePiece and BPE encoders share: the
 * scratch memory of one wim_tokenize call, its output sink, the word cache,
 * and the loop that merges adjacent symbols best bigram first.
 *
 * Owns: freeing the scratch (its buffers grow through tok_reserve, which
 * records a failure in s->oom instead of returning it through every caller),
 * emitting ids (counted past the caller's cap, so the caller learns the size
 * it needs), remembering each word's ids, and the bigram heap.
 *
 * Invariants:
 *  - The heap pops the smallest key, ties the leftmost bigram, as llama.cpp's
 *    priority queues do; a bigram whose symbols changed since it was queued is
 *    skipped, never merged.
 *  - The word cache changes no result: a word's ids depend only on its bytes
 *    within one call.
 */
#include "tokenizer_impl.h"

#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* Words repeat (Zipf), so each call remembers what its words encoded to:
 * word bytes -> ids, for words up to WC_MAX_KEY bytes and WC_MAX_ENTRIES
 * distinct words. The result is the same with or without it. */
#define WC_MAX_KEY 64
#define WC_MAX_ENTRIES (1u << 16)

/* ------------------------------------------------------------------------ */
/* scratch memory and the output sink                                        */

void tok_scratch_free(scratch *s) {
    free(s->cp);
    free(s->off);
    free(s->seg);
    free(s->seg2);
    free(s->fl);
    free(s->syms);
    free(s->heap);
    free(s->buf);
    free(s->word);
    free(s->frags);
    free(s->wids);
    free(s->cache.slots);
    free(s->cache.keys);
    free(s->cache.ids);
}

void tok_emit(scratch *s, int32_t id) {
    if (s->n < s->cap) s->ids[s->n] = id;
    s->n++;
}

/* ------------------------------------------------------------------------ */
/* a word's ids, and the word cache                                          */

/* Adds an id to the word being encoded (see tok_word_end). */
void tok_wpush(scratch *s, int32_t id) {
    if (tok_reserve(s, (void **)&s->wids, &s->cap_wids, s->n_wids + 1, sizeof *s->wids)) return;
    s->wids[s->n_wids++] = id;
}

static wc_slot *cache_find(word_cache *c, const char *key, size_t n, uint32_t h) {
    for (uint32_t i = h & c->mask;; i = (i + 1) & c->mask) {
        wc_slot *sl = &c->slots[i];
        if (sl->klen == 0 ||
            (sl->hash == h && sl->klen == n && memcmp(c->keys + sl->key, key, n) == 0))
            return sl;
    }
}

/* Emits the cached ids of a word; 0 when it is not cached. */
int tok_word_cached(scratch *s, const char *key, size_t n) {
    word_cache *c = &s->cache;
    if (!c->slots || n > WC_MAX_KEY) return 0;
    const wc_slot *sl = cache_find(c, key, n, tok_hash_bytes(key, n));
    if (sl->klen == 0) return 0;
    for (uint32_t i = 0; i < sl->nids; i++)
        tok_emit(s, c->ids[sl->ids + i]);
    return 1;
}

static int cache_grow(word_cache *c) {
    uint32_t cap = c->slots ? (c->mask + 1) * 2 : 1024;
    wc_slot *ns = calloc(cap, sizeof *ns);
    if (!ns) return -1;
    for (uint32_t i = 0; c->slots && i <= c->mask; i++) {
        if (c->slots[i].klen == 0) continue;
        uint32_t j = c->slots[i].hash & (cap - 1);
        while (ns[j].klen)
            j = (j + 1) & (cap - 1);
        ns[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = ns;
    c->mask = cap - 1;
    return 0;
}

/* The word is encoded (its ids in s->wids): remember and emit them. */
void tok_word_end(scratch *s, const char *key, size_t n) {
    word_cache *c = &s->cache;
    for (size_t i = 0; i < s->n_wids; i++)
        tok_emit(s, s->wids[i]);
    /* (a word that encodes to nothing, in a vocab without byte tokens, is not worth caching) */
    if (s->oom || n == 0 || s->n_wids == 0 || n > WC_MAX_KEY || c->count >= WC_MAX_ENTRIES) return;
    if (((c->count + 1) * 2 > (c->slots ? c->mask + 1 : 0) && cache_grow(c)) ||
        tok_grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        tok_grow((void **)&c->ids, &c->ids_cap, c->ids_len + s->n_wids, sizeof *c->ids))
        return; /* the cache is an optimisation: no memory, no caching */
    uint32_t h = tok_hash_bytes(key, n);
    wc_slot *sl = cache_find(c, key, n, h);
    if (sl->klen) return;
    memcpy(c->keys + c->keys_len, key, n);
    memcpy(c->ids + c->ids_len, s->wids, s->n_wids * sizeof *c->ids);
    *sl =
        (wc_slot){h, (uint32_t)c->keys_len, (uint32_t)n, (uint32_t)c->ids_len, (uint32_t)s->n_wids};
    c->keys_len += n;
    c->ids_len += s->n_wids;
    c->count++;
}

/* ------------------------------------------------------------------------ */
/* the bigram heap and the merge loop                                        */

void tok_heap_push(scratch *s, bigram b) {
    if (tok_reserve(s, (void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof b)) return;
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        const bigram *u = &s->heap[up];
        if (u->key < b.key || (u->key == b.key && u->left < b.left)) break;
        s->heap[i] = *u;
        i = up;
    }
    s->heap[i] = b;
}

static bigram heap_pop(scratch *s) {
    bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n &&
            (s->heap[c + 1].key < s->heap[c].key ||
             (s->heap[c + 1].key == s->heap[c].key && s->heap[c + 1].left < s->heap[c].left)))
            c++;
        if (last.key < s->heap[c].key ||
            (last.key == s->heap[c].key && last.left < s->heap[c].left))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Merges the best bigram until none is left (the loop SPM and BPE share). */
void tok_merge_all(const wim_tokenizer *t, scratch *s, pair_fn add_pair, merged_fn merged) {
    while (s->n_heap > 0 && !s->oom) {
        bigram b = heap_pop(s);
        sym *l = &s->syms[b.left], *r = &s->syms[b.right];
        if (l->n != b.lsize || r->n != b.rsize) continue; /* outdated */
        if (merged) l->id = merged(t, l->id, r->id);
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->syms[r->next].prev = b.left;
        if (l->prev >= 0) add_pair(t, s, l->prev, b.left);
        if (l->next >= 0) add_pair(t, s, b.left, l->next);
    }
}

/* Splits buf[a..b) into symbols, one per UTF-8 character (one per byte for
 * invalid sequences); returns the count or -1. */
int tok_split_symbols(scratch *s, size_t a, size_t b) {
    if (tok_reserve(s, (void **)&s->syms, &s->cap_sym, b - a + 1, sizeof *s->syms)) return -1;
    int k = 0;
    for (size_t i = a; i < b; k++) {
        uint32_t cp;
        int len = wim_utf8_decode((const unsigned char *)s->buf + i, b - i, &cp, NULL);
        s->syms[k] = (sym){k - 1, i + (size_t)len < b ? k + 1 : -1, (uint32_t)i, (uint32_t)len, -1};
        i += (size_t)len;
    }
    return k;
}
