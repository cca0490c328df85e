/*
 * tokenizer_bpe.c — the byte-level BPE encoder (tokenizer.ggml.model `gpt2`),
 * as llama.cpp's llm_tokenizer_bpe_session.
 *
 * Owns: the merge table read from tokenizer.ggml.merges (pair of string ids ->
 * rank and result), GPT-2's byte <-> character mapping, and encoding: the
 * fragment is split by its pre-tokenizer (pretokenize.c), then in each word the
 * adjacent pair with the lowest merge rank merges until none is left.
 *
 * Invariants:
 *  - Merges work on string ids; a result the vocabulary lacks is an extra
 *    string (id >= n_vocab) that never reaches the output: its single-byte
 *    tokens do instead, as in llama.cpp.
 *  - A byte with no byte-level symbol in the vocabulary is encoded through
 *    U+FFFD rather than dropped.
 */
#include "tokenizer_impl.h"

#include "error.h"
#include "gguf.h"
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the merge table: (left id, right id) -> rank and result                   */

struct pairslot {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX when empty */
    int32_t rank; /* position in tokenizer.ggml.merges (first one wins) */
    int32_t res;  /* string id of left+right */
};

static uint32_t pair_hash(uint64_t key) {
    return (uint32_t)tok_mix64(key);
}

static int pairs_init(wim_tokenizer *t, size_t n) {
    const uint32_t cap = tok_table_slots(n);
    t->pairs = malloc(cap * sizeof *t->pairs);
    if (!t->pairs) return -1;
    for (uint32_t i = 0; i < cap; i++)
        t->pairs[i].key = UINT64_MAX;
    t->pair_mask = cap - 1;
    return 0;
}

static const pairslot *pair_get(const wim_tokenizer *t, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint32_t i = pair_hash(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        const pairslot *p = &t->pairs[i];
        if (p->key == key) return p;
        if (p->key == UINT64_MAX) return NULL;
    }
}

static void pair_put(wim_tokenizer *t, int32_t l, int32_t r, int32_t rank, int32_t res) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint32_t i = pair_hash(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        pairslot *p = &t->pairs[i];
        if (p->key == key) return; /* the first rank wins */
        if (p->key == UINT64_MAX) {
            p->key = key;
            p->rank = rank;
            p->res = res;
            return;
        }
    }
}

static int load_merges(wim_tokenizer *t, const gguf_file *f, char *err, size_t errlen) {
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.merges");
    if (!kv || kv->value.type != GGUF_VT_ARRAY || kv->value.v.arr.type != GGUF_VT_STRING)
        return wim_errorf(err, errlen,
                          "tokenizer.ggml.merges is missing (needed by a gpt2 tokenizer)");
    uint64_t n = kv->value.v.arr.n;
    if (n > INT32_MAX) return wim_errorf(err, errlen, "too many merges");
    if (pairs_init(t, (size_t)n)) return wim_errorf(err, errlen, "out of memory");
    char *buf = NULL;
    size_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = kv->value.v.arr.values[i].v.str;
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) continue; /* not "A B": llama.cpp's ("", "") pair never matches */
        size_t nl = (size_t)(sp - s.ptr), nr = s.len - nl - 1;
        if (tok_grow((void **)&buf, &cap, nl + nr + 1, 1)) goto oom;
        memcpy(buf, s.ptr, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t l = tok_intern(t, s.ptr, nl);
        int32_t r = tok_intern(t, sp + 1, nr);
        int32_t res = tok_intern(t, buf, nl + nr);
        if (l < 0 || r < 0 || res < 0) goto oom;
        pair_put(t, l, r, (int32_t)i, res);
    }
    free(buf);
    return 0;
oom:
    free(buf);
    return wim_errorf(err, errlen, "out of memory");
}

/* ------------------------------------------------------------------------ */
/* byte-level symbols                                                        */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * others for U+0100 onwards in byte order. */
static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void init_byte_level(wim_tokenizer *t) {
    unsigned next = 0x100;
    for (unsigned i = 0; i < 0x144; i++)
        t->cp_to_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = byte_is_printable(b) ? b : next++;
        t->byte_chr_len[b] = (uint8_t)wim_utf8_encode(cp, t->byte_chr[b]);
        t->cp_to_byte[cp] = (int16_t)b;
        t->byte_sym[b] = tok_strmap_get(t, &t->tok, t->byte_chr[b], t->byte_chr_len[b]);
    }
}

int bpe_init(wim_tokenizer *t, const gguf_file *f, char *err, size_t errlen) {
    if (load_merges(t, f, err, errlen)) return -1;
    init_byte_level(t);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* encoding                                                                  */

/* The string id of a queued pair's merge (the merge loop's callback). */
static int32_t bpe_merged(const wim_tokenizer *t, int32_t l, int32_t r) {
    return pair_get(t, l, r)->res;
}

static void bpe_pair(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r) {
    const sym *a = &s->syms[l], *b = &s->syms[r];
    if (a->id < 0 || b->id < 0) return;
    const pairslot *p = pair_get(t, a->id, b->id);
    if (p) tok_heap_push(s, (bigram){(double)p->rank, l, r, a->n, b->n});
}

/* A byte that the vocabulary has no byte-level symbol for (an invalid byte such
 * as 0xFF in most vocabularies; a control character some vocabularies lack,
 * such as U+0016 in Falcon's) would be dropped without a trace; its character
 * is encoded as U+FFFD instead, which byte-level vocabularies have. Returns the
 * word to encode (w itself when nothing changes) and its length in *m. */
static const unsigned char *patch_unknown_bytes(const wim_tokenizer *t, scratch *s,
                                                const unsigned char *w, size_t *m) {
    size_t i, n = *m;
    for (i = 0; i < n && t->byte_sym[w[i]] >= 0; i++) {
    }
    if (i == n || tok_reserve(s, (void **)&s->word, &s->cap_word, 3 * n, 1)) return w;
    size_t k = 0;
    for (i = 0; i < n;) {
        uint32_t cp;
        int bad, len = wim_utf8_decode(w + i, n - i, &cp, &bad), spelled = 1;
        for (int j = 0; j < len; j++)
            spelled &= t->byte_sym[w[i + (size_t)j]] >= 0;
        if (!spelled)
            memcpy(s->word + k, "\xef\xbf\xbd", 3), k += 3;
        else
            memcpy(s->word + k, w + i, (size_t)len), k += (size_t)len;
        i += (size_t)len;
    }
    *m = k;
    return (const unsigned char *)s->word;
}

/* Encodes one pre-tokenized word of len bytes. */
static void bpe_word(const wim_tokenizer *t, scratch *s, const unsigned char *word, size_t len) {
    if (tok_word_cached(s, (const char *)word, len)) return;
    s->n_wids = 0;
    size_t m = len;
    const unsigned char *w = patch_unknown_bytes(t, s, word, &m);
    if (tok_reserve(s, (void **)&s->buf, &s->cap_buf, 2 * m + 1, 1) ||
        tok_reserve(s, (void **)&s->syms, &s->cap_sym, m + 1, sizeof *s->syms))
        return;
    uint32_t pos = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned b = w[i];
        memcpy(s->buf + pos, t->byte_chr[b], t->byte_chr_len[b]);
        s->syms[i] = (sym){(int32_t)i - 1, i + 1 < m ? (int32_t)i + 1 : -1, pos, t->byte_chr_len[b],
                           t->byte_sym[b]};
        pos += t->byte_chr_len[b];
    }
    int32_t whole = t->ignore_merges ? tok_text_to_token(t, s->buf, pos) : -1;
    if (whole >= 0) { /* Llama 3: a word that is a token is taken whole */
        tok_wpush(s, whole);
        tok_word_end(s, (const char *)word, len);
        return;
    }
    s->n_heap = 0;
    for (size_t i = 1; i < m; i++)
        bpe_pair(t, s, (int32_t)i - 1, (int32_t)i);
    tok_merge_all(t, s, bpe_pair, bpe_merged);
    for (int32_t i = 0; i >= 0 && !s->oom; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        if (y->id >= 0 && y->id < t->n_vocab) {
            tok_wpush(s, y->id);
            continue;
        }
        /* not a token (a merge result the vocabulary lacks): as llama.cpp,
         * keep whatever single bytes of its text are tokens */
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t id = tok_text_to_token(t, s->buf + y->start + j, 1);
            if (id >= 0) tok_wpush(s, id);
        }
    }
    tok_word_end(s, (const char *)word, len);
}

/* Pre-tokenizes one text fragment and BPE-encodes each word. */
void bpe_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n) {
    size_t nseg = pretokenize(t->pre, s, text, n);
    size_t a = 0;
    for (size_t i = 0; i < nseg && !s->oom; i++) {
        size_t b = s->seg[i];
        bpe_word(t, s, (const unsigned char *)text + a, b - a);
        a = b;
    }
}
