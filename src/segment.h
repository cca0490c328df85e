/*
 * segment.h — cuts a document into the segments the WiM pipeline prefills one
 * at a time: sentence-aligned, at most K model tokens each, nothing dropped.
 *
 * Owns: sentence boundary detection (wim_sentence_ends) and packing sentences
 * into token-bounded segments (wim_segment_text).
 *
 * Invariants:
 *  - The segments tile the text: in order, contiguous, non-empty, their
 *    concatenation is the input byte for byte (the reference implementation
 *    silently drops the sentence that overflows each segment; this never does).
 *  - Every segment, tokenized alone (no BOS, no special parsing), has
 *    n_tokens <= max_tokens, and n_tokens is that exact count.
 *  - Cuts fall at sentence ends except inside a sentence longer than
 *    max_tokens, which is cut at UTF-8 character boundaries (preferably right
 *    after ASCII whitespace) into pieces measured from the sentence's start;
 *    its last piece may share a segment with the sentences after it. An
 *    invalid byte counts as one character, as in the tokenizer.
 *  - Packing is greedy: a segment takes the following sentences while their
 *    estimated joint count fits, then the real count decides (token counts
 *    are not additive across joins); a sentence the estimate puts just past
 *    the bound is still tried, so segments come out nearly full.
 *  - Cost is linear in the document, up to log factors: each sentence is
 *    tokenized once, each segment a few times.
 *
 * Sentence rules (wim_sentence_ends). A sentence includes its trailing
 * whitespace (Unicode White_Space), so the sentences tile the text; leading
 * whitespace of the text belongs to the first sentence.
 *  1. A run of terminators . ! ? … ‽ (so "?!" and "..." are one terminator),
 *     then any closing marks " ' ) ] } ” ’ » 」 』 ）, then whitespace, ends a
 *     sentence, unless an exception below applies.
 *  2. CJK full stops 。 ！ ？ ｡ (then closers) end a sentence even without
 *     whitespace after them.
 *  3. Newlines: a whitespace run holding a blank line (two or more newlines;
 *     "\r\n" and a lone "\r" count as one) always ends a sentence. A single
 *     newline ends one only when the line it closes is a Markdown heading
 *     (first non-blank character '#') or the next line starts a heading or a
 *     list item ("- ", "* ", "+ ", "• ", "1. ", "12) "). Otherwise a single
 *     newline is a hard wrap inside running text.
 * Exceptions to rule 1 (not a boundary):
 *  - the next word (after opening quotes/brackets) starts with a lowercase
 *    letter (ASCII, Latin-1, basic Greek and Cyrillic): "e.g. this",
 *    "Wait... what", "\"Stop!\" she said";
 *  - a single '.' after an abbreviation from a fixed list (Mr Mrs Ms Dr Prof
 *    St Jr Sr vs etc Inc Ltd Co Corp Mt Gen Col Lt Sgt Capt Rev Hon Gov Sen
 *    Rep Ave Blvd Dept Univ approx cf al, the months Jan..Dec and Sept, and
 *    e.g. i.e. U.S. a.m. p.m. ...; lowercase entries also match capitalized);
 *    number abbreviations (No Nos Fig Figs Eq Eqs Vol vol pp p) only when a
 *    digit follows: "No. 5" but "said No. Then";
 *  - a single '.' after a dotted abbreviation of parts of one or two letters
 *    ("U.S.A.", "Ph.D.") or after a single capital letter ("J. R. R.
 *    Tolkien");
 *  - a single '.' after 1-3 digits that open their line (a list marker, "1. ").
 * Decimals and versions (3.14, v1.2.3) need no rule: no whitespace follows the
 * dot. Single-capital initials make "plan B. Then" one sentence: accepted.
 */
#ifndef WIM_SEGMENT_H
#define WIM_SEGMENT_H

#include <stddef.h>

#include "tokenizer.h"

typedef struct {
    size_t start, len; /* a byte range of the document */
    int n_tokens;      /* wim_tokenize count of exactly that range, alone */
} wim_segment;

/* Splits text[0..len) into consecutive segments whose concatenation is exactly the text.
 * Each segment, tokenized alone by wim_tokenize(tok, text+start, len, add_bos=0, parse_special=0),
 * has n_tokens <= max_tokens tokens (n_tokens is that count). Segments end at sentence
 * boundaries when a whole sentence fits; a sentence longer than max_tokens is cut into
 * pieces of at most max_tokens tokens, preferably at whitespace, always at UTF-8 character
 * boundaries. Empty text gives 0 segments. Returns the number of segments and a malloc'd array
 * in *out, or -1 with one line in err (e.g. max_tokens < 1, out of memory, or a single
 * character that alone needs more than max_tokens tokens). *out is NULL when 0 or -1. */
int wim_segment_text(const wim_tokenizer *tok, const char *text, size_t len, int max_tokens,
                     wim_segment **out, char *err, size_t errlen);

/* Sentence boundaries alone (no tokenizer): writes the byte offsets where sentences end
 * (each sentence includes its trailing whitespace, so the pieces tile the text). Returns the
 * count, a malloc'd array in *ends (last element == len), or -1 on out of memory (or more
 * than INT_MAX sentences). Empty text gives 0 and *ends = NULL. */
int wim_sentence_ends(const char *text, size_t len, size_t **ends);

#endif
