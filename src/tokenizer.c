/*
 * tokenizer.c — text <-> token ids, exactly as llama.cpp / Hugging Face do it.
 *
 * Owns: the public entry points (tokenizer.h); the vocabulary, token types
 * and special tokens read from the GGUF (copied out, so the file may be
 * closed); splitting special tokens out of the text; dispatch of the text
 * between them to the encoder (tokenizer_spm.c, tokenizer_bpe.c); decoding.
 * What the files share is in tokenizer_impl.h.
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
 *  - Special tokens are split out before any encoder sees the text, so no
 *    merge ever crosses one.
 */
#include "tokenizer.h"
#include "tokenizer_impl.h"

#include "error.h"
#include "gguf.h"
#include "unicode.h"

#include <ctype.h>
#include <limits.h>
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

/* ------------------------------------------------------------------------ */
/* loading                                                                   */

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
        tok_grow((void **)&t->arena, &t->arena_cap, bytes + 1024, 1) ||
        tok_strmap_init(&t->tok, (size_t)n))
        return wim_errorf(err, errlen, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = kv->value.v.arr.values[i].v.str;
        char empty[32];
        int32_t id;
        if (s.len == 0) { /* as llama.cpp: an empty piece gets a placeholder name */
            int m = snprintf(empty, sizeof empty, "[EMPTY_%llu]", (unsigned long long)i);
            id = tok_add_string(t, empty, (size_t)m);
        } else {
            id = tok_add_string(t, s.ptr, s.len);
        }
        if (id < 0 || tok_strmap_put(t, &t->tok, id, 1))
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
        int id = tok_text_to_token(t, texts[i], strlen(texts[i]));
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
        int id = tok_text_to_token(t, eog_texts[i], strlen(eog_texts[i]));
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
    if (tok_strmap_init(&t->spec_map, (size_t)t->n_spec)) goto oom;
    for (int k = 0; k < t->n_spec; k++) {
        int id = t->spec[k];
        const unsigned char *u = (const unsigned char *)tok_str(t, id);
        uint8_t bits = (t->attr[id] & ATTR_USER) ? 3 : 1;
        t->spec_rank[id] = k;
        if (tok_strmap_put(t, &t->spec_map, id, 0)) goto oom;
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
        int eos_s = tok_text_to_token(t, "</s>", 4);
        if (eos_s >= 0) t->attr[eos_s] |= ATTR_RSTRIP;
        for (int i = 0; i < 3; i++) {
            int id = tok_text_to_token(t, keep[i], strlen(keep[i]));
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
        const char *s = tok_str(t, id);
        size_t sl = t->str_len[id];
        if (tok_grow((void **)&t->dec, &cap, len + sl + 4, 1)) return -1;
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
        } else if (pretok_find(pre, &t->pre, &t->ignore_merges)) {
            rc = wim_errorf(err, errlen, "unsupported tokenizer.ggml.pre '%s'", pre);
        } else {
            t->add_bos = t->ignore_merges; /* both come with Llama 3's pre-tokenizer */
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
        if (bpe_init(t, f, err, errlen)) goto fail;
        t->add_space_prefix = 0;
    } else {
        spm_init(t);
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
    return id >= 0 && id < t->n_vocab ? tok_str(t, id) : NULL;
}

int wim_tokenizer_find(const wim_tokenizer *t, const char *piece) {
    return tok_text_to_token(t, piece, strlen(piece));
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
    if (tok_reserve(s, (void **)&s->frags, &s->cap_frag, s->n_frag + 1, sizeof *s->frags)) return;
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
            int32_t id = tok_strmap_get(t, &t->spec_map, (const char *)u + p, len);
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
    const unsigned char *tx = (const unsigned char *)tok_str(t, id);
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
            if (tok_reserve(s, (void **)tk, cap, nt + 1, sizeof **tk)) return nt;
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
    if (add_bos && t->bos >= 0) tok_emit(&s, t->bos);
    if (len > 0) partition(t, &s, text, len, parse_special);
    int prev_special = 1; /* SPM: a dummy prefix space at the start and after each special */
    for (size_t i = 0; i < s.n_frag && !s.oom; i++) {
        const frag *g = &s.frags[i];
        if (g->id >= 0) {
            tok_emit(&s, g->id);
            prev_special = 1;
        } else if (t->kind == WIM_TOK_SPM) {
            spm_fragment(t, &s, text + g->start, g->len, t->add_space_prefix && prev_special);
            prev_special = 0;
        } else {
            bpe_fragment(t, &s, text + g->start, g->len);
        }
    }
    int n = s.n, oom = s.oom;
    tok_scratch_free(&s);
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
