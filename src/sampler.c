/*
 * sampler.c — choosing the next token from logits (greedy, temperature,
 * top-p), with a private seeded generator so runs are reproducible.
 */
#include <math.h>
#include <stdlib.h>

#include "wim.h"

typedef struct {
    float p;
    int id;
} cand;

struct wim_sampler {
    float temp, top_p;
    uint64_t state;
    int n_vocab;
    cand *cands;
};

wim_sampler *wim_sampler_new(float temp, float top_p, uint64_t seed, int n_vocab) {
    wim_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->temp = temp;
    s->top_p = top_p;
    s->state = seed ? seed : 0x9e3779b97f4a7c15ULL; /* xorshift must not start at 0 */
    s->n_vocab = n_vocab;
    if (temp > 0 && !(s->cands = malloc((size_t)n_vocab * sizeof *s->cands))) {
        free(s);
        return NULL;
    }
    return s;
}

void wim_sampler_free(wim_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s);
}

static float next_uniform(wim_sampler *s) { /* xorshift64*, 24 bits -> [0, 1) */
    s->state ^= s->state >> 12;
    s->state ^= s->state << 25;
    s->state ^= s->state >> 27;
    return (float)((s->state * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

int wim_sample(wim_sampler *s, const float *logits) {
    const int n = s->n_vocab;
    if (s->temp <= 0) return argmax(logits, n);
    float mx = logits[argmax(logits, n)], sum = 0;
    for (int i = 0; i < n; i++) {
        s->cands[i].p = expf((logits[i] - mx) / s->temp);
        s->cands[i].id = i;
        sum += s->cands[i].p;
    }
    int m = n;
    float mass = sum;
    if (s->top_p > 0 && s->top_p < 1) {
        /* tokens below (1-p)/(n-1) of the mass can never be in the nucleus */
        float cutoff = (1.0f - s->top_p) / (n - 1) * sum;
        m = 0;
        for (int i = 0; i < n; i++)
            if (s->cands[i].p >= cutoff) s->cands[m++] = s->cands[i];
        qsort(s->cands, (size_t)m, sizeof *s->cands, by_prob_desc);
        float cum = 0;
        for (int i = 0; i < m; i++) {
            cum += s->cands[i].p;
            if (cum >= s->top_p * sum) {
                m = i + 1;
                break;
            }
        }
        mass = 0;
        for (int i = 0; i < m; i++)
            mass += s->cands[i].p;
    }
    float r = next_uniform(s) * mass, cum = 0;
    for (int i = 0; i < m; i++) {
        cum += s->cands[i].p;
        if (r < cum) return s->cands[i].id;
    }
    return s->cands[m - 1].id;
}
