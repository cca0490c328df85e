/*
 * pyrandom.h — CPython's `random` module, the parts RULER's generators use.
 *
 * Owns: an MT19937 state seeded the way random.seed(int) does (init_by_array
 * over the 32-bit words of |seed|), and getrandbits / _randbelow / shuffle /
 * sample with CPython 3 semantics, so that a seeded C run draws exactly what a
 * seeded Python run draws.
 *
 * Invariants: the state is a plain value (copy it to fork a stream); every
 * call consumes exactly the words CPython would consume for the same call.
 */
#ifndef WIM_PYRANDOM_H
#define WIM_PYRANDOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t mt[624];
    int mti;
} py_random;

/* random.seed(seed) / random.Random(seed) for a non-negative integer seed. */
void py_random_seed(py_random *r, uint64_t seed);
uint32_t py_random_u32(py_random *r);
/* random.getrandbits(k), 1 <= k <= 32. */
uint32_t py_random_getrandbits(py_random *r, int k);
/* random._randbelow(n) for 1 <= n < 2^32 (rejection sampling on bit_length(n) bits). */
uint32_t py_random_below(py_random *r, uint32_t n);
/* random.shuffle(x) on an array of n pointers. */
void py_random_shuffle(py_random *r, void **x, size_t n);
/* random.sample(population, k) over indices 0..n-1: writes k chosen indices to out.
 * Returns 0, or -1 when k > n or memory runs out. */
int py_random_sample(py_random *r, size_t n, size_t k, size_t *out);

#endif
