/*
 * pyrandom.c — CPython-compatible MT19937 and the random-module calls built on
 * it (see pyrandom.h). Ported from the published algorithms (Matsumoto &
 * Nishimura's init_by_array/genrand_int32, CPython's random.py), checked
 * against ../shared/data/cwe/derived/vectors-seed42.json.
 */
#include "pyrandom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MT_N = 624, MT_M = 397 };

static void init_genrand(py_random *r, uint32_t s) {
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->mti = MT_N;
}

static void init_by_array(py_random *r, const uint32_t *key, int len) {
    init_genrand(r, 19650218u);
    int i = 1, j = 0;
    for (int k = MT_N > len ? MT_N : len; k; k--) {
        r->mt[i] =
            (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++, j++;
        if (i >= MT_N) r->mt[0] = r->mt[MT_N - 1], i = 1;
        if (j >= len) j = 0;
    }
    for (int k = MT_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= MT_N) r->mt[0] = r->mt[MT_N - 1], i = 1;
    }
    r->mt[0] = 0x80000000u; /* non-zero initial array, as in the reference code */
}

void py_random_seed(py_random *r, uint64_t seed) {
    /* CPython splits |seed| into 32-bit words, least significant first; 0 -> [0]. */
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    init_by_array(r, key, key[1] ? 2 : 1);
}

static void mt_refill(py_random *r) {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    int kk;
    uint32_t y;
    for (kk = 0; kk < MT_N - MT_M; kk++) {
        y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
        r->mt[kk] = r->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; kk < MT_N - 1; kk++) {
        y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
        r->mt[kk] = r->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    y = (r->mt[MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
    r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    r->mti = 0;
}

uint32_t py_random_u32(py_random *r) {
    if (r->mti >= MT_N) mt_refill(r);
    uint32_t y = r->mt[r->mti++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

uint32_t py_random_getrandbits(py_random *r, int k) {
    return py_random_u32(r) >> (32 - k);
}

uint32_t py_random_below(py_random *r, uint32_t n) {
    int k = 0;
    for (uint32_t v = n; v; v >>= 1)
        k++;
    uint32_t x = py_random_getrandbits(r, k);
    while (x >= n)
        x = py_random_getrandbits(r, k);
    return x;
}

void py_random_shuffle(py_random *r, void **x, size_t n) {
    for (size_t i = n > 0 ? n - 1 : 0; i >= 1; i--) {
        size_t j = py_random_below(r, (uint32_t)(i + 1));
        void *t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* setsize as random.sample computes it: 21, plus 4 ** ceil(log(3k, 4)) when k > 5. The
 * logarithm is taken the way math.log(x, base) does it, log(x) / log(base) in doubles. */
static double sample_setsize(size_t k) {
    double s = 21;
    if (k > 5) s += pow(4.0, ceil(log((double)(k * 3)) / log(4.0)));
    return s;
}

int py_random_sample(py_random *r, size_t n, size_t k, size_t *out) {
    if (k > n) return -1;
    if ((double)n <= sample_setsize(k)) { /* pool method */
        size_t *pool = malloc((n ? n : 1) * sizeof *pool);
        if (!pool) return -1;
        for (size_t i = 0; i < n; i++)
            pool[i] = i;
        for (size_t i = 0; i < k; i++) {
            size_t j = py_random_below(r, (uint32_t)(n - i));
            out[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
        free(pool);
        return 0;
    }
    unsigned char *selected = calloc(n, 1); /* set method */
    if (!selected) return -1;
    for (size_t i = 0; i < k; i++) {
        size_t j = py_random_below(r, (uint32_t)n);
        while (selected[j])
            j = py_random_below(r, (uint32_t)n);
        selected[j] = 1;
        out[i] = j;
    }
    free(selected);
    return 0;
}
