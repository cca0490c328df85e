/*
 * tokenizer.h — text <-> token ids, exactly as the model was trained.
 *
 * Owns: the vocabulary read from GGUF metadata (tokenizer.ggml.*), the
 * SentencePiece-style (`llama`) and byte-level BPE (`gpt2`, with the
 * pre-tokenizer named by tokenizer.ggml.pre) encoders, special-token
 * parsing, and streaming-safe decoding.
 *
 * Invariants:
 *  - Special (control) tokens are recognised in text only when the caller
 *    asks (parse_special); a user's document never produces them by accident.
 *  - The streaming decoder never emits half a UTF-8 character.
 */
#ifndef WIM_TOKENIZER_H
#define WIM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct gguf_file;
typedef struct wim_tokenizer wim_tokenizer;

enum wim_tok_kind { WIM_TOK_SPM, WIM_TOK_BPE };

/* Builds the tokenizer from GGUF metadata (the file may be freed afterwards
 * only if the implementation copies what it needs; it does). Returns 0, or -1
 * with one line in err (e.g. "unsupported tokenizer.ggml.pre 'xyz'"). */
int wim_tokenizer_load(const struct gguf_file *f, wim_tokenizer **out, char *err, size_t errlen);
void wim_tokenizer_free(wim_tokenizer *t);

int wim_tokenizer_n_vocab(const wim_tokenizer *t);
enum wim_tok_kind wim_tokenizer_kind(const wim_tokenizer *t);
int wim_tokenizer_bos(const wim_tokenizer *t);     /* -1 when none */
int wim_tokenizer_eos(const wim_tokenizer *t);     /* -1 when none */
int wim_tokenizer_eot(const wim_tokenizer *t);     /* end of turn, -1 when none */
int wim_tokenizer_add_bos(const wim_tokenizer *t); /* the model's add_bos_token default */
/* True for EOS, EOT and other end-of-generation tokens. */
int wim_tokenizer_is_eog(const wim_tokenizer *t, int id);
/* The raw vocabulary piece (e.g. "▁Once", "<0x0A>", "Ġthe"), or NULL if out of range. */
const char *wim_tokenizer_piece(const wim_tokenizer *t, int id);
/* Looks a piece up exactly; -1 when absent. */
int wim_tokenizer_find(const wim_tokenizer *t, const char *piece);

/* Encodes len bytes of text. Writes at most cap ids to ids and returns the
 * total number the text needs (call again with a bigger buffer if larger than
 * cap), or -1 with err set. Invalid UTF-8 is handled deterministically (each
 * invalid byte is treated as U+FFFD for splitting and encoded through byte
 * fallback / byte-level tokens); it never fails for that reason. */
int wim_tokenize(const wim_tokenizer *t, const char *text, size_t len, int add_bos,
                 int parse_special, int32_t *ids, int cap, char *err, size_t errlen);

/* The same, into a malloc'd array sized for the text (one pass in practice:
 * a text never needs more than one token per byte plus BOS and the dummy
 * prefix). Returns the count with *ids set (caller frees), or -1 with err. */
int wim_tokenize_alloc(const wim_tokenizer *t, const char *text, size_t len, int add_bos,
                       int parse_special, int32_t **ids, char *err, size_t errlen);

/* The bytes a token stands for (▁ -> space, <0xNN> -> that byte, byte-level
 * BPE unicode -> bytes; control tokens -> their text only if render_special).
 * Returns the byte count (may exceed cap: then only cap bytes are written). */
int wim_token_bytes(const wim_tokenizer *t, int id, int render_special, char *buf, int cap);

/* Streaming decoder: feed ids one at a time; it returns only whole UTF-8
 * characters and keeps an incomplete tail for the next call.  Follows
 * SentencePiece's rule that the first piece after BOS loses one leading space
 * (llama2.c's run.c does the same). */
typedef struct {
    const wim_tokenizer *tok;
    int prev;           /* previous id fed, -1 at start */
    int render_special; /* print control tokens as text */
    unsigned char pending[8];
    int n_pending;
} wim_detok;

void wim_detok_init(wim_detok *d, const wim_tokenizer *t, int prev_id, int render_special);
/* Appends the decoded bytes of id to out (cap bytes); returns bytes written. */
int wim_detok_push(wim_detok *d, int id, char *out, int cap);
/* Flushes any incomplete tail (as U+FFFD); returns bytes written. */
int wim_detok_flush(wim_detok *d, char *out, int cap);

#endif
