/*
 * tokenizer_spm.c — the SentencePiece-style encoder (tokenizer.ggml.model
 * `llama`), as llama.cpp's llm_tokenizer_spm.
 *
 * Owns: the byte-fallback table (<0xNN> tokens), the test that lets each word
 * be merged on its own, and encoding a fragment of text: spaces become U+2581,
 * then the adjacent pair whose concatenation is the best-scoring token merges
 * until none is left.
 *
 * Invariants:
 *  - Every input byte reaches the output, as part of a token or as its <0xNN>
 *    byte token; only a vocabulary without that byte token gives the unknown
 *    token (or, without one, nothing) instead.
 *  - Chunking by word gives the same ids as one pass over the fragment; it is
 *    only used when the vocabulary makes that provable (t->spm_chunks).
 */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <string.h>

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* ------------------------------------------------------------------------ */
/* set-up                                                                    */

/* True when no piece has U+2581 right after a character other than U+2581. */
static int spm_words_independent(const wim_tokenizer *t) {
    for (int id = 0; id < t->n_vocab; id++) {
        const char *p = tok_str(t, id), *q = p;
        while ((q = strstr(q + 1, SPM_SPACE)) != NULL)
            if (q - p < 3 || memcmp(q - 3, SPM_SPACE, 3) != 0) return 0;
    }
    return 1;
}

/* The token each byte falls back to: <0xNN>, else the byte as a piece. */
static void init_byte_tokens(wim_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        int id = tok_text_to_token(t, buf, 6);
        if (id < 0) {
            buf[0] = (char)b;
            id = tok_text_to_token(t, buf, 1);
        }
        t->byte_tok[b] = id;
    }
}

void spm_init(wim_tokenizer *t) {
    init_byte_tokens(t);
    t->spm_chunks = spm_words_independent(t);
}

/* ------------------------------------------------------------------------ */
/* encoding                                                                  */

static void spm_pair(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r) {
    const sym *a = &s->syms[l], *b = &s->syms[r];
    int32_t id = tok_text_to_token(t, s->buf + a->start, a->n + b->n);
    if (id >= 0) tok_heap_push(s, (bigram){-(double)t->score[id], l, r, a->n, b->n});
}

static int is_spm_space(const char *p) {
    return memcmp(p, SPM_SPACE, 3) == 0;
}

/* Merges the symbols of buf[a..b) and emits their tokens. */
static void spm_chunk(const wim_tokenizer *t, scratch *s, size_t a, size_t b) {
    if (tok_word_cached(s, s->buf + a, b - a)) return;
    s->n_wids = 0;
    int k = tok_split_symbols(s, a, b);
    if (k <= 0) return;
    s->n_heap = 0;
    for (int i = 1; i < k; i++)
        spm_pair(t, s, i - 1, i);
    tok_merge_all(t, s, spm_pair, NULL);
    for (int i = 0; i >= 0 && !s->oom; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        int32_t id = tok_text_to_token(t, s->buf + y->start, y->n);
        if (id >= 0) {
            tok_wpush(s, id);
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t tb = t->byte_tok[(unsigned char)s->buf[y->start + j]];
            if (tb >= 0)
                tok_wpush(s, tb);
            else if (t->unk >= 0)
                tok_wpush(s, t->unk);
        }
    }
    tok_word_end(s, s->buf + a, b - a);
}

/* Encodes one text fragment: spaces become U+2581, an optional dummy prefix
 * space is added, then the best-scoring adjacent pair that forms a token is
 * merged until none does; leftovers fall back to <0xNN> byte tokens.
 * When no token has U+2581 after another character (t->spm_chunks), no merge
 * can cross the start of a word, so each word is merged on its own: the same
 * result as one pass over the fragment, without a fragment-sized heap. */
void spm_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n, int prefix) {
    if (tok_reserve(s, (void **)&s->buf, &s->cap_buf, 3 * n + 4, 1)) return;
    size_t m = 0;
    if (prefix) memcpy(s->buf, SPM_SPACE, 3), m = 3;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ')
            memcpy(s->buf + m, SPM_SPACE, 3), m += 3;
        else
            s->buf[m++] = text[i];
    }
    size_t a = 0;
    if (t->spm_chunks) {
        for (size_t i = 3; i + 3 <= m; i++) {
            if (s->buf[i] != '\xe2' || !is_spm_space(s->buf + i) || is_spm_space(s->buf + i - 3))
                continue;
            spm_chunk(t, s, a, i);
            a = i;
        }
    }
    spm_chunk(t, s, a, m);
}
