/*
 * quotes.h — extractive margins (--extractive-margins): a margin written as sentences
 * quoted verbatim from its segment, a line at a time, chosen by the model's likelihood.
 *
 * Owns: the choice of each line (the sentence the model finds likeliest next, or the end
 * of the reply when that is likelier) and the two searches behind it: a pruned search over
 * the candidates' tokens as a trie (the default) and the exhaustive scan of every candidate
 * in full (--quote-exhaustive, the reference the pruned search is tested against).
 *
 * Invariants: both searches pick the same lines, bit for bit, where the forward pass does
 * not depend on how tokens are chunked (quantized and f16 weights): each token's
 * log-probability comes from the same pass and is summed in the same order. Each line
 * chosen is evaluated in the context (what follows sees it); everything evaluated only to
 * choose it is rolled back under nested snapshots. Nothing here prints; a failure is one
 * line in err (error.h).
 */
#ifndef WIM_QUOTES_H
#define WIM_QUOTES_H

#include <stddef.h>

#include "wim.h"

typedef struct {
    int max_tokens;    /* the margin's budget: its lines and the line breaks between them */
    float min_prob;    /* a line in which the model gave one of the sentence's tokens less
                          than this is written (what follows sees it) but not kept (0: all) */
    int exhaustive;    /* score every offered sentence in full (the reference) */
    const char *notes; /* the notes the extraction prompt shows (NULL: none): their sentences
                          are offered too, written but never kept (they are kept already) */
} wim_quote_params;

typedef struct {
    int n_tokens;     /* tokens written: the lines and the line breaks between them */
    int notes_quoted; /* lines copied from the notes (written, not kept) */
    long scored;      /* tokens evaluated to choose the lines (not counting those written) */
} wim_quote_stats;

/* An extractive margin of segment src, written in c, whose next-token logits are in logits
 * (n_vocab floats; on return, those after the last line written). Each line is the sentence
 * of src (or of the notes) the model finds likeliest next, by the sum of its tokens'
 * log-probabilities (after a line break, from the second line on), unless ending the reply
 * is likelier; a sentence is offered once, and only while it fits the budget. Returns the
 * kept lines joined by '\n' (malloc'd; "" when none) with *st filled, or NULL with one line
 * in err. */
char *wim_quote_margin(const wim_model *m, wim_ctx *c, float *logits, const char *src,
                       const wim_quote_params *qp, wim_quote_stats *st, char *err, size_t errlen);

#endif
