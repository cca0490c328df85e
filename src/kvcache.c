/*
 * kvcache.c — a plain KV cache: cells are filled in order and never evicted.
 */
#include "kvcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simd.h"

int kv_init(wim_kvcache *kv, int n_layer, int kv_dim, int capacity, enum wim_kv_type type,
            char *err, size_t errlen) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->capacity = capacity;
    kv->type = type;
    kv->elem = type == WIM_KV_F32 ? 4 : 2;
    size_t bytes = (size_t)n_layer * capacity * kv_dim * kv->elem;
    kv->k = malloc(bytes);
    kv->v = malloc(bytes);
    kv->pos = malloc((size_t)capacity * sizeof *kv->pos);
    if (!kv->k || !kv->v || !kv->pos) {
        kv_free(kv);
        snprintf(err, errlen, "cannot allocate a KV cache of %d tokens (%.1f MiB)", capacity,
                 2.0 * bytes / 1048576.0);
        return -1;
    }
    return 0;
}

void kv_free(wim_kvcache *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->pos);
    kv->k = kv->v = NULL;
    kv->pos = NULL;
}

size_t kv_bytes(const wim_kvcache *kv) {
    return 2 * (size_t)kv->n_layer * kv->capacity * kv->kv_dim * kv->elem +
           (size_t)kv->capacity * sizeof *kv->pos;
}

int kv_claim(wim_kvcache *kv, int n_new, int pos0, int *slots) {
    if (n_new > kv->capacity - kv->n) return -1;
    for (int i = 0; i < n_new; i++) {
        slots[i] = kv->n + i;
        kv->pos[kv->n + i] = pos0 + i;
    }
    kv->n += n_new;
    return 0;
}

void kv_store(wim_kvcache *kv, int layer, int slot, const float *k, const float *v) {
    uint8_t *kd = (uint8_t *)kv_k(kv, layer, slot), *vd = (uint8_t *)kv_v(kv, layer, slot);
    if (kv->type == WIM_KV_F32) {
        memcpy(kd, k, (size_t)kv->kv_dim * 4);
        memcpy(vd, v, (size_t)kv->kv_dim * 4);
        return;
    }
    uint16_t *kh = (uint16_t *)kd, *vh = (uint16_t *)vd;
    for (int i = 0; i < kv->kv_dim; i++) {
        kh[i] = wim_fp32_to_fp16(k[i]);
        vh[i] = wim_fp32_to_fp16(v[i]);
    }
}

void kv_clear(wim_kvcache *kv) { kv->n = 0; }
