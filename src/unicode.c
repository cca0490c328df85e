/*
 * unicode.c — strict UTF-8 decoding and encoding (see unicode.h).
 *
 * Owns: the well-formedness rules of Unicode table 3-7. The codepoint class
 * table itself is generated (src/unicode_tables.c) and read inline through
 * wim_uc_flags.
 *
 * Invariant: wim_utf8_next never reads past s[n-1].
 */
#include "unicode.h"

/* Allowed range of the second byte for each lead byte (table 3-7); the third
 * and fourth bytes are always 80..BF. */
static int second_range(unsigned lead, unsigned *lo, unsigned *hi) {
    *lo = 0x80, *hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead == 0xE0)
        *lo = 0xA0;
    else if (lead == 0xED)
        *hi = 0x9F;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead == 0xF0)
        *lo = 0x90;
    else if (lead == 0xF4)
        *hi = 0x8F;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0; /* 80..C1, F5..FF never start a character */
}

int wim_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned lead = s[0];
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    }
    unsigned lo, hi;
    int len = second_range(lead, &lo, &hi);
    if (len == 0) return -1;
    uint32_t v = lead & (0x7Fu >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0; /* valid so far, but incomplete */
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return -1;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
}

int wim_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, int *invalid) {
    int len = wim_utf8_next(s, n, cp);
    if (invalid) *invalid = len <= 0;
    if (len > 0) return len;
    *cp = WIM_UC_REPLACEMENT;
    return 1;
}

int wim_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int wim_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = wim_utf8_next(p + i, n - i, &cp);
        if (len <= 0) return 0;
        i += (size_t)len;
    }
    return 1;
}
