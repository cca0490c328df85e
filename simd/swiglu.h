/*
 * swiglu.h — SwiGLU's gate in portable C (simd.h: swiglu): scalar.c's reference,
 * and neon.c's.
 *
 * out = silu(g) * u with silu(g) = g / (1 + e^-g): e^-g is attn_tile.h's polynomial
 * exp (attn_exp1, within 2.5 ulp of expf), so a vector twin that runs the same
 * rounded steps in its lanes gives the same bits; then a division and a product,
 * each rounded once.  Where e^-g would overflow (-g > 88) it is +inf and silu(g) is
 * -0 (the true value is below 6e-37 in magnitude).
 */
#ifndef WIM_SWIGLU_H
#define WIM_SWIGLU_H

#include <math.h>

#include "attn_tile.h"

static inline float swiglu1(float g, float u) {
    const float e = -g > 88.0f ? INFINITY : attn_exp1(-g);
    return g / (1.0f + e) * u;
}

static inline void swiglu_generic(const float *g, const float *u, float *out, int n) {
    for (int i = 0; i < n; i++)
        out[i] = swiglu1(g[i], u[i]);
}

#endif
