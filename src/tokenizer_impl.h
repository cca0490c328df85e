/*
 * tokenizer_impl.h — what the tokenizer's files share; not part of the API
 * (that is tokenizer.h).
 *
 * Owns: the fields of a loaded tokenizer, the scratch memory of one
 * wim_tokenize call, and the functions each file offers the others. The files,
 * each using only the ones listed below it (no loops):
 *   tokenizer.c          the API: vocabulary and special tokens from GGUF,
 *                        special-token partitioning, dispatch, decoding
 *   tokenizer_bpe.c      byte-level BPE (`gpt2`): merge ranks, byte symbols
 *   tokenizer_spm.c      SentencePiece-style encoder (`llama`): score merges
 *   pretokenize.c        the regex-equivalent splitters BPE runs first
 *   tokenizer_merge.c    a call's scratch, its word cache, the merge loop
 *   tokenizer_strings.c  the string table: pieces and extra strings, text -> id
 *
 * Invariants:
 *  - A loaded tokenizer is immutable; everything a call writes is in its
 *    scratch, so one tokenizer may serve several threads.
 *  - String ids below n_vocab are token ids; ids from n_vocab up are the
 *    extra strings BPE merges produce (never output).
 *  - A scratch that failed an allocation has oom set; every later step that
 *    needs memory does nothing, and wim_tokenize reports the failure.
 */
#ifndef WIM_TOKENIZER_IMPL_H
#define WIM_TOKENIZER_IMPL_H

#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>

struct gguf_file;

/* Pre-tokenizers: each is a sequence of regexes applied one after another,
 * every later one splitting the pieces of the earlier ones (llama.cpp's
 * unicode_regex_split). */
enum pre_kind {
    PRE_DEFAULT,
    PRE_GPT2,
    PRE_LLAMA3,
    PRE_QWEN2,
    PRE_STARCODER,
    PRE_FALCON,
    PRE_DEEPSEEK_LLM,
    PRE_DEEPSEEK_CODER,
};

typedef struct {
    uint32_t hash;
    int32_t val; /* string id, -1 when the slot is empty */
} smslot;

typedef struct {
    smslot *slots;
    uint32_t mask, count;
} strmap;

typedef struct pairslot pairslot; /* tokenizer_bpe.c */

struct wim_tokenizer {
    enum wim_tok_kind kind;
    enum pre_kind pre;
    int n_vocab;
    int n_str; /* n_vocab + extra strings */
    int cap_str;
    char *arena; /* every string, each NUL-terminated */
    size_t arena_len, arena_cap;
    uint32_t *str_off, *str_len;
    float *score;  /* n_vocab */
    uint8_t *attr; /* n_vocab */
    uint8_t *eog;  /* n_vocab */
    strmap tok;    /* text -> string id (the last token id wins, as in llama.cpp) */

    /* what each token decodes to (control text included; hidden at use) */
    char *dec;
    uint32_t *dec_off, *dec_len;

    /* special tokens in partition order: longer first, then lower id */
    int n_spec;
    int32_t *spec;
    int32_t *spec_rank;      /* n_vocab: index in spec, or -1 */
    strmap spec_map;         /* text -> token id of its first entry in spec */
    uint8_t first_byte[256]; /* bit 0: some special starts so; bit 1: a user-defined one */
    uint8_t *first_pair;     /* the same for the first two bytes (65536 entries) */
    uint32_t lens_off[257];  /* distinct lengths of the specials starting with each byte */
    uint32_t *lens;          /* longest first */

    /* BPE */
    pairslot *pairs;
    uint32_t pair_mask;
    int ignore_merges;
    int32_t byte_sym[256]; /* string id of each byte's byte-level character, or -1 */
    char byte_chr[256][2];
    uint8_t byte_chr_len[256];
    int16_t cp_to_byte[0x144];

    /* SPM */
    int32_t byte_tok[256]; /* <0xNN> token, or -1 */
    int add_space_prefix;
    int spm_chunks; /* no token has U+2581 right after another character */

    int bos, eos, eot, eom, unk, add_bos;
};

/* ------------------------------------------------------------------------ */
/* the string table (tokenizer_strings.c)                                    */

/* An open-addressing table's slots for n keys: a power of two, at most half full. */
static inline uint32_t tok_table_slots(size_t n) {
    uint32_t cap = 64;
    while (cap < n * 2 + 16)
        cap *= 2;
    return cap;
}

static inline uint64_t tok_mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline const char *tok_str(const wim_tokenizer *t, int32_t id) {
    return t->arena + t->str_off[id];
}

/* Grows *p (elements of size sz) to hold at least need; 0 or -1. */
int tok_grow(void **p, size_t *cap, size_t need, size_t sz);
uint32_t tok_hash_bytes(const char *s, size_t n);

int tok_strmap_init(strmap *m, size_t expected);
int32_t tok_strmap_get(const wim_tokenizer *t, const strmap *m, const char *s, size_t n);
int tok_strmap_put(const wim_tokenizer *t, strmap *m, int32_t id, int replace);

int tok_add_string(wim_tokenizer *t, const char *s, size_t n);
int32_t tok_intern(wim_tokenizer *t, const char *s, size_t n);

/* A token id for text (vocabulary only); -1 when absent. */
static inline int32_t tok_text_to_token(const wim_tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_strmap_get(t, &t->tok, s, n);
    return id < t->n_vocab ? id : -1;
}

/* ------------------------------------------------------------------------ */
/* a call's scratch memory and output sink (tokenizer_merge.c)               */

typedef struct {
    int32_t prev, next; /* linked list of live symbols; -1 ends it */
    uint32_t start, n;  /* bytes in the word buffer; n == 0 once merged away */
    int32_t id;         /* BPE: string id of the text (may be an extra string), or -1 */
} sym;

typedef struct {
    double key;          /* BPE: merge rank; SPM: -score (smaller pops first) */
    int32_t left, right; /* symbol indices; ties pop the leftmost first */
    uint32_t lsize, rsize;
} bigram;

typedef struct {
    size_t start, len;
    int32_t id; /* a special token, or -1 for text */
} frag;

typedef struct {
    uint32_t hash, key, klen, ids, nids; /* klen == 0: empty slot */
} wc_slot;

typedef struct {
    wc_slot *slots;
    uint32_t mask, count;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
} word_cache;

typedef struct {
    uint32_t *cp, *off, *seg, *seg2; /* pretokenize.c */
    uint8_t *fl;
    size_t cap_cp, cap_seg, cap_seg2, cap_off, cap_fl;
    sym *syms;
    size_t cap_sym;
    bigram *heap;
    size_t cap_heap, n_heap;
    char *buf, *word;
    size_t cap_buf, cap_word;
    frag *frags;
    size_t cap_frag, n_frag;
    int32_t *wids; /* ids of the word being encoded */
    size_t cap_wids, n_wids;
    word_cache cache;
    int32_t *ids; /* caller's buffer */
    int cap, n;
    int oom;
} scratch;

void tok_scratch_free(scratch *s);
/* Grows *p to need elements of sz bytes; on failure sets s->oom. 0, or -1
 * once any allocation of the call failed. Inline: most calls need no growth. */
static inline int tok_reserve(scratch *s, void **p, size_t *cap, size_t need, size_t sz) {
    if (need > *cap && tok_grow(p, cap, need, sz)) s->oom = 1;
    return s->oom ? -1 : 0;
}
/* Appends a token id to the output (counted even past the caller's cap). */
void tok_emit(scratch *s, int32_t id);

/* Encoding one word: tok_word_cached emits the ids the same bytes gave before
 * in this call and returns 1; otherwise (0) the encoder clears s->n_wids,
 * adds the word's ids with tok_wpush and ends with tok_word_end, which emits
 * and remembers them. */
int tok_word_cached(scratch *s, const char *key, size_t n);
void tok_wpush(scratch *s, int32_t id);
void tok_word_end(scratch *s, const char *key, size_t n);

/* The merge loop: add_pair queues the bigram of two adjacent symbols when
 * they may merge; merged (NULL for SPM) gives the string id of a merge. */
typedef void (*pair_fn)(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r);
typedef int32_t (*merged_fn)(const wim_tokenizer *t, int32_t l, int32_t r);
void tok_heap_push(scratch *s, bigram b);
void tok_merge_all(const wim_tokenizer *t, scratch *s, pair_fn add_pair, merged_fn merged);
int tok_split_symbols(scratch *s, size_t a, size_t b);

/* ------------------------------------------------------------------------ */
/* the encoders and the pre-tokenizers                                       */

/* tokenizer_spm.c: byte tokens and the word-chunking test; encoding */
void spm_init(wim_tokenizer *t);
void spm_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n, int prefix);

/* tokenizer_bpe.c: merges and byte symbols (0, or -1 with err); encoding */
int bpe_init(wim_tokenizer *t, const struct gguf_file *f, char *err, size_t errlen);
void bpe_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n);

/* pretokenize.c: the pre-tokenizer named by tokenizer.ggml.pre (0), or -1
 * when unknown; llama3 tells whether it implies ignore_merges and add_bos. */
int pretok_find(const char *name, enum pre_kind *pre, int *llama3);
/* Splits text[0..n) into pieces; returns their count, with each piece's end
 * (a byte offset) in s->seg. 0 for empty text or out of memory. */
size_t pretokenize(enum pre_kind pre, scratch *s, const char *text, size_t n);

#endif
