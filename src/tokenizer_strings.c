/*
 * tokenizer_strings.c — the tokenizer's string table: every vocabulary piece,
 * then the extra strings BPE merges need, each with an integer id.
 *
 * Owns: the arena the strings live in, the open-addressing map from text to
 * string id (also used for the special tokens' map), and the growth and hash
 * helpers the other tokenizer files share.
 *
 * Invariants:
 *  - Ids are dense and assigned in insertion order: 0..n_vocab-1 are the
 *    tokens, later ids the extra strings (tok_text_to_token never returns
 *    one of those).
 *  - Every string is NUL-terminated in the arena, and offsets fit in 32 bits.
 */
#include "tokenizer_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

/* Grows *p (elements of size sz) to hold at least need; 0 or -1. */
int tok_grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * sz);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

uint32_t tok_hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    return (uint32_t)tok_mix64(h ^ v);
}

/* ------------------------------------------------------------------------ */
/* string map: text -> string id (keys live in the tokenizer's arena)        */

int tok_strmap_init(strmap *m, size_t expected) {
    const uint32_t cap = tok_table_slots(expected);
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].val = -1;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

int32_t tok_strmap_get(const wim_tokenizer *t, const strmap *m, const char *s, size_t n) {
    uint32_t h = tok_hash_bytes(s, n);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const smslot *sl = &m->slots[i];
        if (sl->val < 0) return -1;
        if (sl->hash == h && t->str_len[sl->val] == n && memcmp(tok_str(t, sl->val), s, n) == 0)
            return sl->val;
    }
}

static int strmap_grow(strmap *m) {
    uint32_t cap = (m->mask + 1) * 2;
    smslot *ns = malloc(cap * sizeof *ns);
    if (!ns) return -1;
    for (uint32_t i = 0; i < cap; i++)
        ns[i].val = -1;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->slots[i].val < 0) continue;
        uint32_t j = m->slots[i].hash & (cap - 1);
        while (ns[j].val >= 0)
            j = (j + 1) & (cap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->mask = cap - 1;
    return 0;
}

/* Maps the text of string id to id. replace: an equal key takes the new id
 * (later tokens win); otherwise the first one stays. */
int tok_strmap_put(const wim_tokenizer *t, strmap *m, int32_t id, int replace) {
    if ((m->count + 1) * 2 > m->mask + 1 && strmap_grow(m)) return -1;
    const char *s = tok_str(t, id);
    size_t n = t->str_len[id];
    uint32_t h = tok_hash_bytes(s, n);
    uint32_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        smslot *sl = &m->slots[i];
        if (sl->val < 0) break;
        if (sl->hash == h && t->str_len[sl->val] == n && memcmp(tok_str(t, sl->val), s, n) == 0) {
            if (replace) sl->val = id;
            return 0;
        }
    }
    m->slots[i].hash = h;
    m->slots[i].val = id;
    m->count++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* strings: vocabulary pieces first, then the extra strings merges need      */

int tok_add_string(wim_tokenizer *t, const char *s, size_t n) {
    if (n > UINT32_MAX || t->n_str == INT_MAX) return -1;
    size_t cap = (size_t)t->cap_str;
    if ((size_t)t->n_str >= cap) {
        size_t c1 = cap, c2 = cap;
        if (tok_grow((void **)&t->str_off, &c1, cap + 1, sizeof *t->str_off) ||
            tok_grow((void **)&t->str_len, &c2, cap + 1, sizeof *t->str_len))
            return -1;
        t->cap_str = (int)(c1 < c2 ? c1 : c2);
    }
    if (tok_grow((void **)&t->arena, &t->arena_cap, t->arena_len + n + 1, 1)) return -1;
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    t->str_off[t->n_str] = (uint32_t)t->arena_len;
    t->str_len[t->n_str] = (uint32_t)n;
    t->arena_len += n + 1;
    if (t->arena_len > UINT32_MAX) return -1;
    return t->n_str++;
}

/* The string id of s, adding it as an extra string when absent. */
int32_t tok_intern(wim_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_strmap_get(t, &t->tok, s, n);
    if (id >= 0) return id;
    id = tok_add_string(t, s, n);
    if (id < 0 || tok_strmap_put(t, &t->tok, id, 0)) return -1;
    return id;
}
