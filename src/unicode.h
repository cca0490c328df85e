/*
 * unicode.h — codepoint classes and strict UTF-8, as the tokenizers need them.
 *
 * Owns: the per-codepoint flags (major general category + White_Space) read
 * from the table that src/gen-unicode-tables.py generates from Debian's
 * unicode-data (src/unicode_tables.c), and UTF-8 decoding/encoding.
 *
 * Invariants:
 *  - wim_uc_flags is total: any uint32_t gives an answer (0 = undefined past
 *    U+10FFFF and for unassigned codepoints).
 *  - UTF-8 is decoded strictly (RFC 3629 / Unicode table 3-7): overlong forms,
 *    surrogates, values past U+10FFFF and truncated sequences are invalid, and
 *    an invalid sequence is always reported one byte at a time, so every byte
 *    of any input is accounted for exactly once.
 */
#ifndef WIM_UNICODE_H
#define WIM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Major general category, the low 3 bits of the flags (\p{N}, \p{L}, ...). */
enum wim_uc_cat {
    WIM_UC_UNDEFINED = 0, /* Cn, and past U+10FFFF */
    WIM_UC_NUMBER = 1,    /* N* */
    WIM_UC_LETTER = 2,    /* L* */
    WIM_UC_SEPARATOR = 3, /* Z* */
    WIM_UC_MARK = 4,      /* M* */
    WIM_UC_PUNCT = 5,     /* P* */
    WIM_UC_SYMBOL = 6,    /* S* */
    WIM_UC_CONTROL = 7,   /* Cc, Cf, Co, Cs */
};
#define WIM_UC_CAT_MASK 0x07u
#define WIM_UC_WHITESPACE 0x08u /* PropList White_Space (what regex \s means here) */

/* Generated tables (src/unicode_tables.c). */
extern const uint16_t wim_uc_stage1[0x110000 >> 8];
extern const uint8_t wim_uc_stage2[][256];

static inline unsigned wim_uc_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return wim_uc_stage2[wim_uc_stage1[cp >> 8]][cp & 0xFF];
}
static inline unsigned wim_uc_cat(uint32_t cp) {
    return wim_uc_flags(cp) & WIM_UC_CAT_MASK;
}
static inline int wim_uc_is_space(uint32_t cp) {
    return (wim_uc_flags(cp) & WIM_UC_WHITESPACE) != 0;
}

#define WIM_UC_REPLACEMENT 0xFFFDu

/* Looks at the sequence starting at s[0] (n >= 1 bytes available).
 * Returns its length 1..4 and sets *cp when s starts with a complete valid
 * character; 0 when the n bytes are a valid but incomplete start of one (more
 * bytes could complete it); -1 when s[0] cannot start a valid character
 * given what follows (the caller should treat that one byte as invalid). */
int wim_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* Decodes one character for splitting text: the length of a valid character,
 * or 1 with *cp = U+FFFD for an invalid or truncated sequence. *invalid (if
 * not NULL) tells which. Requires n >= 1. */
int wim_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, int *invalid);

/* Writes cp as UTF-8 (1..4 bytes) to out; cp must be <= U+10FFFF. */
int wim_utf8_encode(uint32_t cp, char *out);

/* True when s[0..n) is entirely valid UTF-8. */
int wim_utf8_valid(const char *s, size_t n);

#endif
