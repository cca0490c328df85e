/*
 * tokenizer.c — text <-> token ids, exactly as llama.cpp / Hugging Face do it.
 *
 * Owns: the vocabulary (copied out of the GGUF, so the file may be closed),
 * special-token partitioning, the SentencePiece-style encoder (`llama`), the
 * byte-level BPE encoder (`gpt2`) with its pre-tokenizers (hand-written
 * matchers for the regexes llama.cpp uses per tokenizer.ggml.pre), and
 * decoding.
 *
 * Invariants:
 *  - A loaded tokenizer is immutable; wim_tokenize keeps its scratch memory on
 *    the call, so one tokenizer may serve several threads.
 *  - Invalid UTF-8 never fails and never shifts the text around it: it is
 *    split one byte at a time (each such byte classed like U+FFFD by the
 *    pre-tokenizers) and reaches the output as its byte-level symbol (BPE) or
 *    <0xNN> byte token (SPM), so decoding the ids gives the input bytes back;
 *    only an invalid byte that a byte-level vocabulary cannot spell (0xFF in
 *    StarCoder's, say) is encoded as U+FFFD instead. llama.cpp turns every
 *    invalid byte into U+FFFD; valid UTF-8 encodes identically in both.
 *  - Strings that BPE merges produce but the vocabulary lacks get ids past
 *    n_vocab ("extra" strings) so that every merge works on integer ids; such
 *    ids never reach the output.
 */
#include "tokenizer.h"
#include "error.h"

#include "gguf.h"
#include "unicode.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* token attributes (GGUF token types, plus what llama.cpp derives)          */

enum {
    ATTR_NORMAL = 1 << 0,
    ATTR_UNKNOWN = 1 << 1,
    ATTR_CONTROL = 1 << 2,
    ATTR_USER = 1 << 3, /* user-defined: always split out of text */
    ATTR_UNUSED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_UNDEFINED = 1 << 6,
    ATTR_RSTRIP = 1 << 7, /* eat the whitespace after it when split out */
};
#define ATTR_SPECIAL (ATTR_CONTROL | ATTR_UNKNOWN) /* hidden unless asked */

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

typedef struct {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX when empty */
    int32_t rank; /* position in tokenizer.ggml.merges (first one wins) */
    int32_t res;  /* string id of left+right */
} pairslot;

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
/* small helpers                                                             */

/* Grows *p (elements of size sz) to hold at least need; 0 or -1. */
static int grow(void **p, size_t *cap, size_t need, size_t sz) {
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

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint32_t hash_bytes(const char *s, size_t n) {
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
    return (uint32_t)mix64(h ^ v);
}

static const char *str_ptr(const wim_tokenizer *t, int32_t id) {
    return t->arena + t->str_off[id];
}

/* ------------------------------------------------------------------------ */
/* string map: text -> string id (keys live in the tokenizer's arena)        */

static int strmap_init(strmap *m, size_t expected) {
    uint32_t cap = 64;
    while (cap < expected * 2 + 16)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].val = -1;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static int32_t strmap_get(const wim_tokenizer *t, const strmap *m, const char *s, size_t n) {
    uint32_t h = hash_bytes(s, n);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const smslot *sl = &m->slots[i];
        if (sl->val < 0) return -1;
        if (sl->hash == h && t->str_len[sl->val] == n && memcmp(str_ptr(t, sl->val), s, n) == 0)
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
static int strmap_put(const wim_tokenizer *t, strmap *m, int32_t id, int replace) {
    if ((m->count + 1) * 2 > m->mask + 1 && strmap_grow(m)) return -1;
    const char *s = str_ptr(t, id);
    size_t n = t->str_len[id];
    uint32_t h = hash_bytes(s, n);
    uint32_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        smslot *sl = &m->slots[i];
        if (sl->val < 0) break;
        if (sl->hash == h && t->str_len[sl->val] == n && memcmp(str_ptr(t, sl->val), s, n) == 0) {
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

static int add_string(wim_tokenizer *t, const char *s, size_t n) {
    if (n > UINT32_MAX || t->n_str == INT_MAX) return -1;
    size_t cap = (size_t)t->cap_str;
    if ((size_t)t->n_str >= cap) {
        size_t c1 = cap, c2 = cap;
        if (grow((void **)&t->str_off, &c1, cap + 1, sizeof *t->str_off) ||
            grow((void **)&t->str_len, &c2, cap + 1, sizeof *t->str_len))
            return -1;
        t->cap_str = (int)(c1 < c2 ? c1 : c2);
    }
    if (grow((void **)&t->arena, &t->arena_cap, t->arena_len + n + 1, 1)) return -1;
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    t->str_off[t->n_str] = (uint32_t)t->arena_len;
    t->str_len[t->n_str] = (uint32_t)n;
    t->arena_len += n + 1;
    if (t->arena_len > UINT32_MAX) return -1;
    return t->n_str++;
}

/* The string id of s, adding it as an extra string when absent. */
static int32_t intern(wim_tokenizer *t, const char *s, size_t n) {
    int32_t id = strmap_get(t, &t->tok, s, n);
    if (id >= 0) return id;
    id = add_string(t, s, n);
    if (id < 0 || strmap_put(t, &t->tok, id, 0)) return -1;
    return id;
}

/* A token id for text (vocabulary only); -1 when absent. */
static int32_t text_to_token(const wim_tokenizer *t, const char *s, size_t n) {
    int32_t id = strmap_get(t, &t->tok, s, n);
    return id < t->n_vocab ? id : -1;
}

/* ------------------------------------------------------------------------ */
/* BPE merges                                                                */

static uint32_t pair_hash(uint64_t key) {
    return (uint32_t)mix64(key);
}

static int pairs_init(wim_tokenizer *t, size_t n) {
    uint32_t cap = 64;
    while (cap < n * 2 + 16)
        cap *= 2;
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
        if (grow((void **)&buf, &cap, nl + nr + 1, 1)) goto oom;
        memcpy(buf, s.ptr, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t l = intern(t, s.ptr, nl);
        int32_t r = intern(t, sp + 1, nr);
        int32_t res = intern(t, buf, nl + nr);
        if (l < 0 || r < 0 || res < 0) goto oom;
        pair_put(t, l, r, (int32_t)i, res);
    }
    free(buf);
    return 0;
oom:
    free(buf);
    return wim_errorf(err, errlen, "out of memory");
}

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
        t->byte_sym[b] = strmap_get(t, &t->tok, t->byte_chr[b], t->byte_chr_len[b]);
    }
}

/* ------------------------------------------------------------------------ */
/* loading                                                                   */

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

static uint8_t attr_of_type(int64_t type) {
    switch (type) {
    case 1:
        return ATTR_NORMAL;
    case 2:
        return ATTR_UNKNOWN;
    case 3:
        return ATTR_CONTROL;
    case 4:
        return ATTR_USER;
    case 5:
        return ATTR_UNUSED;
    case 6:
        return ATTR_BYTE;
    default:
        return ATTR_UNDEFINED;
    }
}

/* Element i of a numeric GGUF array as int64 / float (the data may be unaligned). */
static int64_t arr_int(const gguf_value *v, uint64_t i) {
    const uint8_t *p = v->v.arr.data;
    switch (v->v.arr.type) {
    case GGUF_VT_INT8:
        return (int8_t)p[i];
    case GGUF_VT_UINT8:
        return p[i];
    case GGUF_VT_INT16: {
        int16_t x;
        memcpy(&x, p + 2 * i, 2);
        return x;
    }
    case GGUF_VT_UINT16: {
        uint16_t x;
        memcpy(&x, p + 2 * i, 2);
        return x;
    }
    case GGUF_VT_INT32: {
        int32_t x;
        memcpy(&x, p + 4 * i, 4);
        return x;
    }
    case GGUF_VT_UINT32: {
        uint32_t x;
        memcpy(&x, p + 4 * i, 4);
        return x;
    }
    case GGUF_VT_INT64: {
        int64_t x;
        memcpy(&x, p + 8 * i, 8);
        return x;
    }
    case GGUF_VT_UINT64: {
        uint64_t x;
        memcpy(&x, p + 8 * i, 8);
        return (int64_t)x;
    }
    default:
        return 0;
    }
}

static int arr_is_int(enum gguf_vtype et) {
    return et == GGUF_VT_INT8 || et == GGUF_VT_UINT8 || et == GGUF_VT_INT16 ||
           et == GGUF_VT_UINT16 || et == GGUF_VT_INT32 || et == GGUF_VT_UINT32 ||
           et == GGUF_VT_INT64 || et == GGUF_VT_UINT64;
}

/* A numeric array of exactly n elements, or NULL when absent; -1 via *bad. */
static const gguf_value *vocab_array(const gguf_file *f, const char *key, uint64_t n,
                                     int want_float, char *err, size_t errlen, int *bad) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return NULL;
    const gguf_value *v = &kv->value;
    int ok = v->type == GGUF_VT_ARRAY && v->v.arr.n == n &&
             (want_float ? v->v.arr.type == GGUF_VT_FLOAT32 : arr_is_int(v->v.arr.type));
    if (!ok) {
        *bad = wim_errorf(err, errlen, "%s: expected %llu %s", key, (unsigned long long)n,
                          want_float ? "float32 values" : "integers");
        return NULL;
    }
    return v;
}

static int load_tokens(wim_tokenizer *t, const gguf_file *f, char *err, size_t errlen) {
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    if (!kv || kv->value.type != GGUF_VT_ARRAY || kv->value.v.arr.type != GGUF_VT_STRING)
        return wim_errorf(err, errlen, "tokenizer.ggml.tokens is missing");
    uint64_t n = kv->value.v.arr.n;
    if (n == 0 || n > INT32_MAX / 2)
        return wim_errorf(err, errlen, "bad vocabulary size %llu", (unsigned long long)n);
    int bad = 0;
    const gguf_value *scores = vocab_array(f, "tokenizer.ggml.scores", n, 1, err, errlen, &bad);
    const gguf_value *types = vocab_array(f, "tokenizer.ggml.token_type", n, 0, err, errlen, &bad);
    if (bad) return -1;

    size_t bytes = 0;
    for (uint64_t i = 0; i < n; i++)
        bytes += kv->value.v.arr.values[i].v.str.len + 1;
    t->n_vocab = (int)n;
    t->score = malloc(n * sizeof *t->score);
    t->attr = malloc(n);
    t->eog = calloc(n, 1);
    if (!t->score || !t->attr || !t->eog ||
        grow((void **)&t->arena, &t->arena_cap, bytes + 1024, 1) || strmap_init(&t->tok, (size_t)n))
        return wim_errorf(err, errlen, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = kv->value.v.arr.values[i].v.str;
        char empty[32];
        int32_t id;
        if (s.len == 0) { /* as llama.cpp: an empty piece gets a placeholder name */
            int m = snprintf(empty, sizeof empty, "[EMPTY_%llu]", (unsigned long long)i);
            id = add_string(t, empty, (size_t)m);
        } else {
            id = add_string(t, s.ptr, s.len);
        }
        if (id < 0 || strmap_put(t, &t->tok, id, 1))
            return wim_errorf(err, errlen, "out of memory");
        if (scores) {
            float x;
            memcpy(&x, scores->v.arr.data + 4 * i, 4);
            t->score[i] = x;
        } else {
            t->score[i] = 0.0f;
        }
        t->attr[i] = types ? attr_of_type(arr_int(types, i)) : ATTR_NORMAL;
    }
    return 0;
}

/* An id from metadata when present and in range; otherwise def. */
static int meta_id(const gguf_file *f, const char *key, int n_vocab, int def) {
    int64_t v;
    if (gguf_get_i64(f, key, &v) == 1 && v >= 0 && v < n_vocab) return (int)v;
    return def;
}

static int meta_bool(const gguf_file *f, const char *key, int def) {
    int v;
    return gguf_get_bool(f, key, &v) == 1 ? v : def;
}

/* llama.cpp recognises some special tokens by their text and marks them
 * control (so they stop being split out of plain text): the end-of-turn,
 * end-of-message and fill-in-the-middle tokens, and every end-of-generation
 * text.  Each group takes the first listed text that the vocabulary has,
 * unless its id came from metadata. */
static const char *const eot_texts[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<EOT>",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        NULL};
static const char *const eog_texts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|eom_id|>", "<EOT>",   NULL};
static const struct {
    const char *key;
    int eog;              /* the found token also ends generation */
    const char *texts[5]; /* NULL-terminated */
} control_groups[] = {
    {"tokenizer.ggml.eom_token_id", 1, {"<|eom_id|>"}},
    {"tokenizer.ggml.fim_pre_token_id",
     0,
     {"<|fim_prefix|>", "<fim-prefix>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81"
      "begin\xef\xbd\x9c>",
      "<PRE>"}},
    {"tokenizer.ggml.fim_suf_token_id",
     0,
     {"<|fim_suffix|>", "<fim-suffix>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81hole\xef\xbd\x9c>",
      "<SUF>"}},
    {"tokenizer.ggml.fim_mid_token_id",
     0,
     {"<|fim_middle|>", "<fim-middle>",
      "<\xef\xbd\x9c"
      "fim\xe2\x96\x81"
      "end\xef\xbd\x9c>",
      "<MID>"}},
    {"tokenizer.ggml.fim_pad_token_id", 1, {"<|fim_pad|>", "<fim-pad>", "<PAD>"}},
    {"tokenizer.ggml.fim_rep_token_id",
     1,
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
    {"tokenizer.ggml.fim_sep_token_id", 1, {"<|file_sep|>"}},
};

/* The first of a NULL-terminated list of texts that is a token; -1 if none. */
static int find_first(const wim_tokenizer *t, const char *const *texts) {
    for (int i = 0; texts[i]; i++) {
        int id = text_to_token(t, texts[i], strlen(texts[i]));
        if (id >= 0) return id;
    }
    return -1;
}

static void mark_control(wim_tokenizer *t, int id) {
    if (id >= 0 && !(t->attr[id] & ATTR_CONTROL)) t->attr[id] = ATTR_CONTROL;
}

static void load_special_ids(wim_tokenizer *t, const gguf_file *f) {
    int n = t->n_vocab, spm = t->kind == WIM_TOK_SPM;
    t->bos = meta_id(f, "tokenizer.ggml.bos_token_id", n, spm && n > 1 ? 1 : -1);
    t->eos = meta_id(f, "tokenizer.ggml.eos_token_id", n, spm && n > 2 ? 2 : -1);
    t->unk = meta_id(f, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1);
    t->eot = meta_id(f, "tokenizer.ggml.eot_token_id", n, -1);
    t->eom = meta_id(f, "tokenizer.ggml.eom_token_id", n, -1);
    if (t->eot < 0) mark_control(t, t->eot = find_first(t, eot_texts));
    for (size_t g = 0; g < sizeof control_groups / sizeof control_groups[0]; g++) {
        int id = meta_id(f, control_groups[g].key, n, -1);
        if (id < 0) mark_control(t, id = find_first(t, control_groups[g].texts));
        if (g == 0 && t->eom < 0) t->eom = id;
        if (control_groups[g].eog && id >= 0) t->eog[id] = 1;
    }
    for (int i = 0; eog_texts[i]; i++) {
        int id = text_to_token(t, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0) continue;
        t->eog[id] = 1;
        mark_control(t, id);
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
}

typedef struct {
    uint32_t len;
    int32_t id;
} spec_key;

/* Partition order: longer texts first (as llama.cpp), then lower ids. */
static int cmp_spec(const void *a, const void *b) {
    const spec_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

typedef struct {
    uint32_t byte, len;
} blen;

static int cmp_blen(const void *a, const void *b) {
    const blen *x = a, *y = b;
    if (x->byte != y->byte) return x->byte < y->byte ? -1 : 1;
    return (x->len < y->len) - (x->len > y->len); /* longer first */
}

/* The list of tokens split out of text before encoding (llama.cpp's
 * cache_special_tokens) and the tables that find them quickly: which first
 * bytes and first byte pairs start one, and the distinct lengths per first
 * byte. Bit 0 of a filter: any special; bit 1: a user-defined one. */
static int build_specials(wim_tokenizer *t) {
    int n = t->n_vocab;
    t->spec = malloc((size_t)n * sizeof *t->spec);
    t->spec_rank = malloc((size_t)n * sizeof *t->spec_rank);
    t->first_pair = calloc(65536, 1);
    spec_key *keys = malloc((size_t)n * sizeof *keys);
    blen *bl = malloc(((size_t)n + 1) * sizeof *bl);
    if (!t->spec || !t->spec_rank || !t->first_pair || !keys || !bl) goto oom;
    t->n_spec = 0;
    for (int i = 0; i < n; i++) {
        t->spec_rank[i] = -1;
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER | ATTR_UNKNOWN))
            keys[t->n_spec++] = (spec_key){t->str_len[i], i};
    }
    qsort(keys, (size_t)t->n_spec, sizeof *keys, cmp_spec);
    for (int k = 0; k < t->n_spec; k++)
        t->spec[k] = keys[k].id;
    if (strmap_init(&t->spec_map, (size_t)t->n_spec)) goto oom;
    for (int k = 0; k < t->n_spec; k++) {
        int id = t->spec[k];
        const unsigned char *u = (const unsigned char *)str_ptr(t, id);
        uint8_t bits = (t->attr[id] & ATTR_USER) ? 3 : 1;
        t->spec_rank[id] = k;
        if (strmap_put(t, &t->spec_map, id, 0)) goto oom;
        t->first_byte[u[0]] |= bits;
        if (t->str_len[id] >= 2) t->first_pair[u[0] << 8 | u[1]] |= bits;
        bl[k] = (blen){u[0], t->str_len[id]};
    }
    qsort(bl, (size_t)t->n_spec, sizeof *bl, cmp_blen);
    t->lens = malloc(((size_t)t->n_spec + 1) * sizeof *t->lens);
    if (!t->lens) goto oom;
    uint32_t nl = 0;
    for (int k = 0, b = 0; b <= 256; b++) {
        t->lens_off[b] = nl;
        for (; k < t->n_spec && bl[k].byte == (uint32_t)b; k++)
            if (nl == t->lens_off[b] || t->lens[nl - 1] != bl[k].len) t->lens[nl++] = bl[k].len;
    }
    free(keys);
    free(bl);
    return 0;
oom:
    free(keys);
    free(bl);
    return -1;
}

/* Phi-3 marks its special tokens rstrip in tokenizer.json; GGUF does not
 * carry that, so llama.cpp keys it on the model name. So do we. */
static void phi3_rstrip(wim_tokenizer *t, const gguf_file *f) {
    char *name = NULL;
    if (gguf_get_str(f, "general.name", &name) != 1) return;
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < t->n_spec; k++)
            t->attr[t->spec[k]] |= ATTR_RSTRIP;
        int eos_s = text_to_token(t, "</s>", 4);
        if (eos_s >= 0) t->attr[eos_s] |= ATTR_RSTRIP;
        for (int i = 0; i < 3; i++) {
            int id = text_to_token(t, keep[i], strlen(keep[i]));
            if (id >= 0) t->attr[id] &= (uint8_t)~ATTR_RSTRIP;
        }
    }
    free(name);
}

/* What each token decodes to. */
static int build_decoded(wim_tokenizer *t) {
    int n = t->n_vocab;
    size_t cap = t->arena_len + 16, len = 0;
    t->dec = malloc(cap);
    t->dec_off = malloc((size_t)n * sizeof *t->dec_off);
    t->dec_len = malloc((size_t)n * sizeof *t->dec_len);
    if (!t->dec || !t->dec_off || !t->dec_len) return -1;
    for (int id = 0; id < n; id++) {
        const char *s = str_ptr(t, id);
        size_t sl = t->str_len[id];
        if (grow((void **)&t->dec, &cap, len + sl + 4, 1)) return -1;
        char *o = t->dec + len;
        size_t m = 0;
        uint8_t a = t->attr[id];
        if (a & (ATTR_SPECIAL | ATTR_USER)) {
            memcpy(o, s, sl);
            m = sl;
        } else if ((a & ATTR_BYTE) && t->kind == WIM_TOK_SPM) {
            unsigned v;
            if (sl == 6 && sscanf(s, "<0x%2x>", &v) == 1) o[m++] = (char)v;
        } else if ((a & ATTR_NORMAL) && t->kind == WIM_TOK_SPM) {
            for (size_t i = 0; i < sl; i++) {
                if (i + 2 < sl && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    o[m++] = ' ';
                    i += 2;
                } else {
                    o[m++] = s[i];
                }
            }
        } else if (a & ATTR_NORMAL) { /* byte-level BPE: each character stands for a byte */
            const unsigned char *u = (const unsigned char *)s;
            for (size_t i = 0; i < sl;) {
                uint32_t cp;
                int k = wim_utf8_decode(u + i, sl - i, &cp, NULL);
                if (cp < 0x144 && t->cp_to_byte[cp] >= 0)
                    o[m++] = (char)t->cp_to_byte[cp];
                else
                    memcpy(o + m, s + i, (size_t)k), m += (size_t)k; /* not byte-level: as is */
                i += (size_t)k;
            }
        }
        t->dec_off[id] = (uint32_t)len;
        t->dec_len[id] = (uint32_t)m;
        len += m;
        if (len > UINT32_MAX) return -1;
    }
    return 0;
}

/* True when no piece has U+2581 right after a character other than U+2581. */
static int spm_words_independent(const wim_tokenizer *t) {
    for (int id = 0; id < t->n_vocab; id++) {
        const char *p = str_ptr(t, id), *q = p;
        while ((q = strstr(q + 1, "\xe2\x96\x81")) != NULL)
            if (q - p < 3 || memcmp(q - 3, "\xe2\x96\x81", 3) != 0) return 0;
    }
    return 1;
}

static void init_byte_tokens(wim_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        int id = text_to_token(t, buf, 6);
        if (id < 0) {
            buf[0] = (char)b;
            id = text_to_token(t, buf, 1);
        }
        t->byte_tok[b] = id;
    }
}

static int load_kind(wim_tokenizer *t, const gguf_file *f, char *err, size_t errlen) {
    char *model = NULL, *pre = NULL;
    int r = gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (r != 1)
        return wim_errorf(err, errlen,
                          "tokenizer.ggml.model is missing: no vocabulary in this file");
    int rc = 0;
    if (strcmp(model, "llama") == 0) {
        t->kind = WIM_TOK_SPM;
        t->pre = PRE_DEFAULT;
    } else if (strcmp(model, "gpt2") == 0) {
        t->kind = WIM_TOK_BPE;
        if (gguf_get_str(f, "tokenizer.ggml.pre", &pre) != 1 || !*pre) {
            t->pre = PRE_DEFAULT; /* as llama.cpp, which warns that quality may suffer */
        } else {
            size_t i, n = sizeof pre_names / sizeof pre_names[0];
            for (i = 0; i < n && strcmp(pre_names[i].name, pre) != 0; i++) {
            }
            if (i == n) {
                rc = wim_errorf(err, errlen, "unsupported tokenizer.ggml.pre '%s'", pre);
            } else {
                t->pre = pre_names[i].pre;
                t->ignore_merges = pre_names[i].llama3;
                t->add_bos = pre_names[i].llama3;
            }
        }
    } else if (strcmp(model, "bert") == 0) {
        rc = wim_errorf(err, errlen,
                        "unsupported tokenizer.ggml.model 'bert' (WordPiece is not implemented)");
    } else {
        rc = wim_errorf(err, errlen, "unsupported tokenizer.ggml.model '%s'", model);
    }
    free(model);
    free(pre);
    return rc;
}

int wim_tokenizer_load(const struct gguf_file *f, wim_tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    wim_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return wim_errorf(err, errlen, "out of memory");
    if (load_kind(t, f, err, errlen) || load_tokens(t, f, err, errlen)) goto fail;
    if (t->kind == WIM_TOK_BPE) {
        if (load_merges(t, f, err, errlen)) goto fail;
        init_byte_level(t);
        t->add_space_prefix = 0;
    } else {
        init_byte_tokens(t);
        t->spm_chunks = spm_words_independent(t);
        t->add_space_prefix = 1;
        t->add_bos = 1;
    }
    t->add_space_prefix = meta_bool(f, "tokenizer.ggml.add_space_prefix", t->add_space_prefix);
    t->add_bos = meta_bool(f, "tokenizer.ggml.add_bos_token", t->add_bos);
    load_special_ids(t, f);
    if (build_specials(t) || build_decoded(t)) {
        wim_errorf(err, errlen, "out of memory");
        goto fail;
    }
    phi3_rstrip(t, f);
    *out = t;
    return 0;
fail:
    wim_tokenizer_free(t);
    return -1;
}

void wim_tokenizer_free(wim_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->str_off);
    free(t->str_len);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->tok.slots);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->spec);
    free(t->spec_rank);
    free(t->spec_map.slots);
    free(t->lens);
    free(t->first_pair);
    free(t->pairs);
    free(t);
}

int wim_tokenizer_n_vocab(const wim_tokenizer *t) {
    return t->n_vocab;
}
enum wim_tok_kind wim_tokenizer_kind(const wim_tokenizer *t) {
    return t->kind;
}
int wim_tokenizer_bos(const wim_tokenizer *t) {
    return t->bos;
}
int wim_tokenizer_eos(const wim_tokenizer *t) {
    return t->eos;
}
int wim_tokenizer_eot(const wim_tokenizer *t) {
    return t->eot;
}
int wim_tokenizer_add_bos(const wim_tokenizer *t) {
    return t->add_bos;
}

int wim_tokenizer_is_eog(const wim_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

const char *wim_tokenizer_piece(const wim_tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? str_ptr(t, id) : NULL;
}

int wim_tokenizer_find(const wim_tokenizer *t, const char *piece) {
    return text_to_token(t, piece, strlen(piece));
}

/* ------------------------------------------------------------------------ */
/* per-call scratch memory and the output sink                               */

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

/* Words repeat (Zipf), so each call remembers what its words encoded to:
 * word bytes -> ids, for words up to WC_MAX_KEY bytes and WC_MAX_ENTRIES
 * distinct words. The result is the same with or without it. */
#define WC_MAX_KEY 64
#define WC_MAX_ENTRIES (1u << 16)

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
    uint32_t *cp, *off, *seg, *seg2;
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

static void scratch_free(scratch *s) {
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

static int reserve(scratch *s, void **p, size_t *cap, size_t need, size_t sz) {
    if (grow(p, cap, need, sz)) s->oom = 1;
    return s->oom ? -1 : 0;
}

static void emit(scratch *s, int32_t id) {
    if (s->n < s->cap) s->ids[s->n] = id;
    s->n++;
}

/* Adds an id to the word being encoded (see word_end). */
static void wpush(scratch *s, int32_t id) {
    if (reserve(s, (void **)&s->wids, &s->cap_wids, s->n_wids + 1, sizeof *s->wids)) return;
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
static int word_cached(scratch *s, const char *key, size_t n) {
    word_cache *c = &s->cache;
    if (!c->slots || n > WC_MAX_KEY) return 0;
    const wc_slot *sl = cache_find(c, key, n, hash_bytes(key, n));
    if (sl->klen == 0) return 0;
    for (uint32_t i = 0; i < sl->nids; i++)
        emit(s, c->ids[sl->ids + i]);
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
static void word_end(scratch *s, const char *key, size_t n) {
    word_cache *c = &s->cache;
    for (size_t i = 0; i < s->n_wids; i++)
        emit(s, s->wids[i]);
    /* (a word that encodes to nothing, in a vocab without byte tokens, is not worth caching) */
    if (s->oom || n == 0 || s->n_wids == 0 || n > WC_MAX_KEY || c->count >= WC_MAX_ENTRIES) return;
    if (((c->count + 1) * 2 > (c->slots ? c->mask + 1 : 0) && cache_grow(c)) ||
        grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->ids_len + s->n_wids, sizeof *c->ids))
        return; /* the cache is an optimisation: no memory, no caching */
    uint32_t h = hash_bytes(key, n);
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

static void heap_push(scratch *s, bigram b) {
    if (reserve(s, (void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof b)) return;
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
typedef void (*pair_fn)(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r);

static void merge_all(const wim_tokenizer *t, scratch *s, pair_fn add_pair, int bpe) {
    while (s->n_heap > 0 && !s->oom) {
        bigram b = heap_pop(s);
        sym *l = &s->syms[b.left], *r = &s->syms[b.right];
        if (l->n != b.lsize || r->n != b.rsize) continue; /* outdated */
        if (bpe) l->id = pair_get(t, l->id, r->id)->res;
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
static int split_symbols(scratch *s, size_t a, size_t b) {
    if (reserve(s, (void **)&s->syms, &s->cap_sym, b - a + 1, sizeof *s->syms)) return -1;
    int k = 0;
    for (size_t i = a; i < b; k++) {
        uint32_t cp;
        int len = wim_utf8_decode((const unsigned char *)s->buf + i, b - i, &cp, NULL);
        s->syms[k] = (sym){k - 1, i + (size_t)len < b ? k + 1 : -1, (uint32_t)i, (uint32_t)len, -1};
        i += (size_t)len;
    }
    return k;
}

/* ------------------------------------------------------------------------ */
/* SentencePiece-style encoder (llama.cpp's llm_tokenizer_spm)                */

static void spm_pair(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r) {
    const sym *a = &s->syms[l], *b = &s->syms[r];
    int32_t id = text_to_token(t, s->buf + a->start, a->n + b->n);
    if (id >= 0) heap_push(s, (bigram){-(double)t->score[id], l, r, a->n, b->n});
}

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

static int is_spm_space(const char *p) {
    return memcmp(p, SPM_SPACE, 3) == 0;
}

/* Merges the symbols of buf[a..b) and emits their tokens. */
static void spm_chunk(const wim_tokenizer *t, scratch *s, size_t a, size_t b) {
    if (word_cached(s, s->buf + a, b - a)) return;
    s->n_wids = 0;
    int k = split_symbols(s, a, b);
    if (k <= 0) return;
    s->n_heap = 0;
    for (int i = 1; i < k; i++)
        spm_pair(t, s, i - 1, i);
    merge_all(t, s, spm_pair, 0);
    for (int i = 0; i >= 0 && !s->oom; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        int32_t id = text_to_token(t, s->buf + y->start, y->n);
        if (id >= 0) {
            wpush(s, id);
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t tb = t->byte_tok[(unsigned char)s->buf[y->start + j]];
            if (tb >= 0)
                wpush(s, tb);
            else if (t->unk >= 0)
                wpush(s, t->unk);
        }
    }
    word_end(s, s->buf + a, b - a);
}

/* Encodes one text fragment: spaces become U+2581, an optional dummy prefix
 * space is added, then the best-scoring adjacent pair that forms a token is
 * merged until none does; leftovers fall back to <0xNN> byte tokens.
 * When no token has U+2581 after another character (t->spm_chunks), no merge
 * can cross the start of a word, so each word is merged on its own: the same
 * result as one pass over the fragment, without a fragment-sized heap. */
static void spm_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n,
                         int prefix) {
    if (reserve(s, (void **)&s->buf, &s->cap_buf, 3 * n + 4, 1)) return;
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

/* ------------------------------------------------------------------------ */
/* byte-level BPE encoder (llama.cpp's llm_tokenizer_bpe_session)            */

static void bpe_pair(const wim_tokenizer *t, scratch *s, int32_t l, int32_t r) {
    const sym *a = &s->syms[l], *b = &s->syms[r];
    if (a->id < 0 || b->id < 0) return;
    const pairslot *p = pair_get(t, a->id, b->id);
    if (p) heap_push(s, (bigram){(double)p->rank, l, r, a->n, b->n});
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
    if (i == n || reserve(s, (void **)&s->word, &s->cap_word, 3 * n, 1)) return w;
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

/* Encodes one pre-tokenized word of m bytes. */
static void bpe_word(const wim_tokenizer *t, scratch *s, const unsigned char *word, size_t len) {
    if (word_cached(s, (const char *)word, len)) return;
    s->n_wids = 0;
    size_t m = len;
    const unsigned char *w = patch_unknown_bytes(t, s, word, &m);
    if (reserve(s, (void **)&s->buf, &s->cap_buf, 2 * m + 1, 1) ||
        reserve(s, (void **)&s->syms, &s->cap_sym, m + 1, sizeof *s->syms))
        return;
    uint32_t pos = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned b = w[i];
        memcpy(s->buf + pos, t->byte_chr[b], t->byte_chr_len[b]);
        s->syms[i] = (sym){(int32_t)i - 1, i + 1 < m ? (int32_t)i + 1 : -1, pos, t->byte_chr_len[b],
                           t->byte_sym[b]};
        pos += t->byte_chr_len[b];
    }
    int32_t whole = t->ignore_merges ? text_to_token(t, s->buf, pos) : -1;
    if (whole >= 0) { /* Llama 3: a word that is a token is taken whole */
        wpush(s, whole);
        word_end(s, (const char *)word, len);
        return;
    }
    s->n_heap = 0;
    for (size_t i = 1; i < m; i++)
        bpe_pair(t, s, (int32_t)i - 1, (int32_t)i);
    merge_all(t, s, bpe_pair, 1);
    for (int32_t i = 0; i >= 0 && !s->oom; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        if (y->id >= 0 && y->id < t->n_vocab) {
            wpush(s, y->id);
            continue;
        }
        /* not a token (a merge result the vocabulary lacks): as llama.cpp,
         * keep whatever single bytes of its text are tokens */
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t id = text_to_token(t, s->buf + y->start + j, 1);
            if (id >= 0) wpush(s, id);
        }
    }
    word_end(s, (const char *)word, len);
}

/* ------------------------------------------------------------------------ */
/* pre-tokenizers: hand-written matchers for llama.cpp's regexes             */
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
    if (reserve(s, (void **)&s->cp, &s->cap_cp, n + 1, sizeof *s->cp) ||
        reserve(s, (void **)&s->fl, &s->cap_fl, n + 1, 1) ||
        reserve(s, (void **)&s->off, &s->cap_off, n + 1, sizeof *s->off))
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

/* Pre-tokenizes one text fragment and BPE-encodes each word. */
static void bpe_fragment(const wim_tokenizer *t, scratch *s, const char *text, size_t n) {
    long c = decode_text(s, text, n);
    if (c <= 0) return;
    if (reserve(s, (void **)&s->seg, &s->cap_seg, (size_t)c + 1, sizeof *s->seg) ||
        reserve(s, (void **)&s->seg2, &s->cap_seg2, (size_t)c + 1, sizeof *s->seg2))
        return;
    pre_rules r = rules_of(t->pre);
    size_t nseg = 1;
    s->seg[0] = (uint32_t)c;
    for (int k = 0; k < r.n; k++) {
        size_t no = 0, a = 0;
        for (size_t i = 0; i < nseg; i++) {
            no = split_piece(s, r.rules[k], a, s->seg[i], s->seg2, no);
            a = s->seg[i];
        }
        uint32_t *tmp = s->seg;
        s->seg = s->seg2;
        s->seg2 = tmp;
        size_t tc = s->cap_seg;
        s->cap_seg = s->cap_seg2;
        s->cap_seg2 = tc;
        nseg = no;
    }
    size_t a = 0;
    for (size_t i = 0; i < nseg && !s->oom; i++) {
        size_t b = s->seg[i];
        bpe_word(t, s, (const unsigned char *)text + s->off[a], s->off[b] - s->off[a]);
        a = b;
    }
}

/* ------------------------------------------------------------------------ */
/* special tokens: split them out of the text first                          */

typedef struct {
    size_t pos, len;
    int32_t id;
} taken;

static int cmp_taken(const void *a, const void *b) {
    const taken *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void add_frag(scratch *s, size_t start, size_t len, int32_t id) {
    if (reserve(s, (void **)&s->frags, &s->cap_frag, s->n_frag + 1, sizeof *s->frags)) return;
    s->frags[s->n_frag++] = (frag){start, len, id};
}

/* Text between two specials, less what rstrip removed. */
static void add_text(scratch *s, const uint8_t *owned, size_t lo, size_t hi) {
    while (lo < hi && owned[lo])
        lo++;
    while (hi > lo && owned[hi - 1])
        hi--;
    if (hi > lo) add_frag(s, lo, hi - lo, -1);
}

/* Marks which specials occur in the text at all (present[rank], allocated on
 * the first hit); returns how many do. */
static size_t find_specials(const wim_tokenizer *t, scratch *s, const unsigned char *u, size_t n,
                            int parse_special, uint8_t **present) {
    unsigned mask = parse_special ? 1 : 2;
    size_t count = 0;
    for (size_t p = 0; p < n; p++) {
        if (!(t->first_byte[u[p]] & mask)) continue;
        int pair = p + 1 < n && (t->first_pair[u[p] << 8 | u[p + 1]] & mask);
        for (uint32_t j = t->lens_off[u[p]]; j < t->lens_off[u[p] + 1]; j++) {
            uint32_t len = t->lens[j];
            if (len > n - p || (len >= 2 && !pair)) continue;
            int32_t id = strmap_get(t, &t->spec_map, (const char *)u + p, len);
            if (id < 0 || (!parse_special && (t->attr[id] & ATTR_SPECIAL))) continue;
            if (!*present && !(*present = calloc((size_t)t->n_spec, 1))) {
                s->oom = 1;
                return 0;
            }
            count += !(*present)[t->spec_rank[id]];
            (*present)[t->spec_rank[id]] = 1;
        }
    }
    return count;
}

/* Takes the leftmost non-overlapping occurrences of one special inside each
 * run of text not taken yet (and, for rstrip tokens, the whitespace after
 * each). Returns the new number of taken entries. */
static size_t take_special(const wim_tokenizer *t, scratch *s, const unsigned char *u, size_t n,
                           uint8_t *owned, int32_t id, taken **tk, size_t nt, size_t *cap) {
    const unsigned char *tx = (const unsigned char *)str_ptr(t, id);
    size_t len = t->str_len[id];
    for (size_t p = 0; p < n;) {
        while (p < n && owned[p])
            p++;
        size_t end = p;
        while (end < n && !owned[end])
            end++;
        while (p + len <= end) { /* search [p, end) */
            const unsigned char *hit = memchr(u + p, tx[0], end - p - len + 1);
            if (!hit) break;
            size_t h = (size_t)(hit - u);
            if (memcmp(hit, tx, len) != 0) {
                p = h + 1;
                continue;
            }
            if (reserve(s, (void **)tk, cap, nt + 1, sizeof **tk)) return nt;
            (*tk)[nt++] = (taken){h, len, id};
            memset(owned + h, 1, len);
            p = h + len;
            if (t->attr[id] & ATTR_RSTRIP)
                for (; p < end && isspace(u[p]); p++)
                    owned[p] = 2;
        }
        p = end;
    }
    return nt;
}

/* Equivalent to llama.cpp's tokenizer_st_partition: specials are taken in
 * order (longest first); each takes its leftmost non-overlapping occurrences
 * in the text not yet taken. User-defined tokens are always split out;
 * control and unknown ones only when parse_special. The cost is one scan of
 * the text plus one per distinct special that occurs. */
static void partition(const wim_tokenizer *t, scratch *s, const char *text, size_t n,
                      int parse_special) {
    const unsigned char *u = (const unsigned char *)text;
    uint8_t *present = NULL, *owned = NULL; /* owned: 1 taken by a special, 2 stripped */
    taken *tk = NULL;
    size_t nt = 0, cap = 0;
    s->n_frag = 0;
    if (find_specials(t, s, u, n, parse_special, &present) == 0) {
        add_frag(s, 0, n, -1);
        goto done;
    }
    if (!(owned = calloc(n, 1))) {
        s->oom = 1;
        goto done;
    }
    for (int k = 0; k < t->n_spec && !s->oom; k++)
        if (present[k]) nt = take_special(t, s, u, n, owned, t->spec[k], &tk, nt, &cap);
    qsort(tk, nt, sizeof *tk, cmp_taken);
    size_t prev = 0;
    for (size_t i = 0; i < nt; i++) {
        add_text(s, owned, prev, tk[i].pos);
        add_frag(s, tk[i].pos, tk[i].len, tk[i].id);
        prev = tk[i].pos + tk[i].len;
    }
    add_text(s, owned, prev, n);
done:
    free(present);
    free(owned);
    free(tk);
}

int wim_tokenize(const wim_tokenizer *t, const char *text, size_t len, int add_bos,
                 int parse_special, int32_t *ids, int cap, char *err, size_t errlen) {
    if (len > (size_t)INT_MAX / 2 - 16 || len > UINT32_MAX / 4)
        return wim_errorf(err, errlen, "text too long to tokenize (%zu bytes)", len);
    if (!text && len) return wim_errorf(err, errlen, "no text");
    scratch s = {0};
    s.ids = ids;
    s.cap = ids && cap > 0 ? cap : 0;
    if (add_bos && t->bos >= 0) emit(&s, t->bos);
    if (len > 0) partition(t, &s, text, len, parse_special);
    int prev_special = 1; /* SPM: a dummy prefix space at the start and after each special */
    for (size_t i = 0; i < s.n_frag && !s.oom; i++) {
        const frag *g = &s.frags[i];
        if (g->id >= 0) {
            emit(&s, g->id);
            prev_special = 1;
        } else if (t->kind == WIM_TOK_SPM) {
            spm_fragment(t, &s, text + g->start, g->len, t->add_space_prefix && prev_special);
            prev_special = 0;
        } else {
            bpe_fragment(t, &s, text + g->start, g->len);
        }
    }
    int n = s.n, oom = s.oom;
    scratch_free(&s);
    if (oom) return wim_errorf(err, errlen, "out of memory while tokenizing");
    return n;
}

/* ------------------------------------------------------------------------ */
/* decoding                                                                  */

int wim_token_bytes(const wim_tokenizer *t, int id, int render_special, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    if ((t->attr[id] & ATTR_SPECIAL) && !render_special) return 0;
    int n = (int)t->dec_len[id];
    if (buf && cap > 0) memcpy(buf, t->dec + t->dec_off[id], (size_t)(n < cap ? n : cap));
    return n;
}

void wim_detok_init(wim_detok *d, const wim_tokenizer *t, int prev_id, int render_special) {
    d->tok = t;
    d->prev = prev_id;
    d->render_special = render_special;
    d->n_pending = 0;
}

/* Appends bytes to out when they fit whole (a character is never cut). */
static void put(char *out, int cap, int *w, const void *p, int n) {
    if (*w + n > cap) return;
    memcpy(out + *w, p, (size_t)n);
    *w += n;
}

static void put_replacement(char *out, int cap, int *w) {
    put(out, cap, w, "\xef\xbf\xbd", 3);
}

/* Completes the character held back from the last piece with the bytes of
 * s; returns how many bytes of s it used. A held lead byte that cannot be
 * completed becomes U+FFFD and what followed it is looked at again. */
static int finish_pending(wim_detok *d, const unsigned char *s, int n, char *out, int cap, int *w) {
    int i = 0;
    while (d->n_pending > 0 && i < n) {
        unsigned char tmp[8];
        int k = d->n_pending, take = n - i < 4 ? n - i : 4;
        memcpy(tmp, d->pending, (size_t)k);
        memcpy(tmp + k, s + i, (size_t)take);
        uint32_t cp;
        int r = wim_utf8_next(tmp, (size_t)(k + take), &cp);
        if (r > k) { /* pending bytes are always an incomplete start, so r > k */
            put(out, cap, w, tmp, r);
            i += r - k;
            d->n_pending = 0;
        } else if (r == 0) {
            memcpy(d->pending + k, s + i, (size_t)take);
            d->n_pending += take;
            i += take;
        } else {
            put_replacement(out, cap, w);
            memmove(d->pending, d->pending + 1, (size_t)--d->n_pending);
        }
    }
    return i;
}

int wim_detok_push(wim_detok *d, int id, char *out, int cap) {
    const wim_tokenizer *t = d->tok;
    int prev = d->prev, w = 0;
    d->prev = id;
    int n = wim_token_bytes(t, id, d->render_special, NULL, 0);
    if (n <= 0) return 0;
    const unsigned char *s = (const unsigned char *)t->dec + t->dec_off[id];
    /* SentencePiece: the first piece after BOS loses the dummy prefix space */
    if (t->kind == WIM_TOK_SPM && t->add_space_prefix && prev >= 0 && prev == t->bos && s[0] == ' ')
        s++, n--;
    int i = finish_pending(d, s, n, out, cap, &w);
    while (i < n) {
        uint32_t cp;
        int r = wim_utf8_next(s + i, (size_t)(n - i), &cp);
        if (r > 0) {
            put(out, cap, &w, s + i, r);
            i += r;
        } else if (r == 0) { /* an incomplete tail (at most 3 bytes) waits for the next piece */
            memcpy(d->pending, s + i, (size_t)(n - i));
            d->n_pending = n - i;
            break;
        } else {
            put_replacement(out, cap, &w);
            i++;
        }
    }
    return w;
}

int wim_detok_flush(wim_detok *d, char *out, int cap) {
    int w = 0;
    if (d->n_pending > 0) put_replacement(out, cap, &w);
    d->n_pending = 0;
    return w;
}

int wim_tokenize_alloc(const wim_tokenizer *t, const char *text, size_t len, int add_bos,
                       int parse_special, int32_t **ids, char *err, size_t errlen) {
    *ids = NULL;
    if (len > (size_t)INT32_MAX - 8)
        return wim_errorf(err, errlen, "text of %zu bytes is too long", len);
    int cap = (int)len + 4;
    for (;;) {
        int32_t *buf = malloc((size_t)cap * sizeof *buf);
        if (!buf) return wim_errorf(err, errlen, "out of memory for %d tokens", cap);
        int n = wim_tokenize(t, text, len, add_bos, parse_special, buf, cap, err, errlen);
        if (n >= 0 && n <= cap) {
            *ids = buf;
            return n;
        }
        free(buf);
        if (n < 0) return -1;
        cap = n; /* the bound did not hold: the exact size, once more */
    }
}
