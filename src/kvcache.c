/*
 * kvcache.c — ring-buffer KV cache with journaled snapshots and persistence
 * (see kvcache.h for the regimes and invariants).
 *
 * Snapshots cost O(1): a mark records head, n and next_pos. Only an append
 * that overwrites a used cell while a mark is open copies that cell's old
 * contents to the journal; restore replays the journal backwards to the
 * mark. Appends into empty cells need no journal: restoring n forgets them.
 *
 * The physical layout (pin + R ring cells) depends on max_claim; kv_crc,
 * kv_save and kv_load go through the logical layout (a ring of exactly C
 * cells), which depends only on next_pos.
 */
#include "kvcache.h"
#include "error.h"
#include "outfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "simd.h"

int kv_init(wim_kvcache *kv, wim_mem *mem, int n_layer, int n_head_kv, int head_dim, int capacity,
            int pin, int streaming, int max_claim, enum wim_kv_type type, char *err,
            size_t errlen) {
    const int kv_dim = n_head_kv * head_dim;
    memset(kv, 0, sizeof *kv);
    if (!streaming) { /* no window: nothing pinned, no extra cells */
        pin = 0;
        max_claim = capacity;
    }
    if (capacity < 1 || pin < 0 || (streaming && pin >= capacity) || max_claim < 1 ||
        (streaming && max_claim - 1 > KV_MAX_POS - capacity)) {
        return wim_errorf(err, errlen, "invalid KV geometry: capacity %d, pinned %d, chunk %d",
                          capacity, pin, max_claim);
    }
    kv->mem = mem;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->n_head_kv = n_head_kv;
    kv->head_dim = head_dim;
    kv->capacity = capacity;
    kv->pin = pin;
    kv->streaming = streaming;
    kv->max_claim = max_claim;
    kv->cells = streaming ? capacity + max_claim - 1 : capacity;
    kv->head = pin;
    kv->type = type;
    kv->elem = type == WIM_KV_F32 ? 4 : 2;
    const int cells = kv->cells;
    size_t bytes = (size_t)n_layer * cells * kv_dim * kv->elem;
    kv->k = wim_mem_alloc(mem, WIM_MEM_KV, bytes);
    kv->v = wim_mem_alloc(mem, WIM_MEM_KV, bytes);
    kv->pos = wim_mem_alloc(mem, WIM_MEM_KV, (size_t)cells * sizeof *kv->pos);
    kv->tok = wim_mem_alloc(mem, WIM_MEM_KV, (size_t)cells * sizeof *kv->tok);
    if (!kv->k || !kv->v || !kv->pos || !kv->tok) {
        kv_free(kv);
        return wim_errorf(err, errlen, "cannot allocate a KV cache of %d cells (%.1f MiB)", cells,
                          2.0 * bytes / 1048576.0);
    }
    return 0;
}

size_t kv_cell_bytes(const wim_kvcache *kv) {
    return 2 * (size_t)kv->n_layer * kv->kv_dim * kv->elem;
}

void kv_free(wim_kvcache *kv) {
    if (!kv->mem) return;
    size_t bytes = (size_t)kv->n_layer * kv->cells * kv->kv_dim * kv->elem;
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->k, bytes);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->v, bytes);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->pos, (size_t)kv->cells * sizeof *kv->pos);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->tok, (size_t)kv->cells * sizeof *kv->tok);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->journal, kv->journal_cap * sizeof *kv->journal);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->journal_data, kv->journal_cap * kv_cell_bytes(kv));
    free(kv->marks);
    kv_branches_close(kv);
    memset(kv, 0, sizeof *kv);
}

int kv_room(const wim_kvcache *kv) {
    return kv->streaming ? KV_MAX_POS - kv->next_pos : kv->capacity - kv->n;
}

/* The K (v = 0) or V (v = 1) values of head h of a cell of a layer. */
static uint8_t *head_values(const wim_kvcache *kv, int v, int layer, int h, int slot) {
    return (uint8_t *)(v ? kv_v(kv, layer, h, slot) : kv_k(kv, layer, h, slot));
}

/* A cell's K (v = 0) or V (v = 1) row of a layer, packed: its heads one after the
 * other (kv_dim values, as kv_save writes them), into dst. */
static void row_get(const wim_kvcache *kv, int v, int layer, int slot, uint8_t *dst) {
    const size_t piece = (size_t)kv->head_dim * kv->elem;
    for (int h = 0; h < kv->n_head_kv; h++)
        memcpy(dst + (size_t)h * piece, head_values(kv, v, layer, h, slot), piece);
}

/* The reverse of row_get: the packed row src (NULL: zeros) into the cell. */
static void row_put(wim_kvcache *kv, int v, int layer, int slot, const uint8_t *src) {
    const size_t piece = (size_t)kv->head_dim * kv->elem;
    for (int h = 0; h < kv->n_head_kv; h++) {
        uint8_t *at = head_values(kv, v, layer, h, slot);
        if (src)
            memcpy(at, src + (size_t)h * piece, piece);
        else
            memset(at, 0, piece);
    }
}

/* Copies one cell's K and V (all layers) to or from a packed buffer. */
static void cell_copy(wim_kvcache *kv, int slot, uint8_t *buf, int to_buf) {
    const size_t row = (size_t)kv->kv_dim * kv->elem;
    for (int l = 0; l < kv->n_layer; l++)
        for (int v = 0; v < 2; v++) {
            uint8_t *b = buf + (size_t)(2 * l + v) * row;
            if (to_buf)
                row_get(kv, v, l, slot, b);
            else
                row_put(kv, v, l, slot, b);
        }
}

static int journal_push(wim_kvcache *kv, int slot) {
    size_t cb = kv_cell_bytes(kv);
    if (kv->journal_len == kv->journal_cap) {
        size_t cap = kv->journal_cap ? 2 * kv->journal_cap : 64;
        kv_journal_entry *j = wim_mem_alloc(kv->mem, WIM_MEM_KV, cap * sizeof *j);
        uint8_t *d = wim_mem_alloc(kv->mem, WIM_MEM_KV, cap * cb);
        if (!j || !d) {
            wim_mem_free(kv->mem, WIM_MEM_KV, j, cap * sizeof *j);
            wim_mem_free(kv->mem, WIM_MEM_KV, d, cap * cb);
            return -1;
        }
        if (kv->journal_len) {
            memcpy(j, kv->journal, kv->journal_len * sizeof *j);
            memcpy(d, kv->journal_data, kv->journal_len * cb);
        }
        wim_mem_free(kv->mem, WIM_MEM_KV, kv->journal, kv->journal_cap * sizeof *j);
        wim_mem_free(kv->mem, WIM_MEM_KV, kv->journal_data, kv->journal_cap * cb);
        kv->journal = j;
        kv->journal_data = d;
        kv->journal_cap = cap;
    }
    kv->journal[kv->journal_len] = (kv_journal_entry){slot, kv->pos[slot], kv->tok[slot]};
    cell_copy(kv, slot, kv->journal_data + kv->journal_len * cb, 1);
    kv->journal_len++;
    return 0;
}

int kv_claim(wim_kvcache *kv, int n_new, const int32_t *tokens, int *slots) {
    if (n_new > kv_room(kv)) return -1;
    if (kv->streaming && n_new > kv->max_claim) return -1;
    for (int i = 0; i < n_new; i++) {
        int slot;
        if (kv->n < kv->cells)
            slot = kv->n++;
        else if (kv->streaming) {
            slot = kv->head;
            if (kv->n_marks && journal_push(kv, slot)) return -1;
            kv->head = kv->pin + (kv->head - kv->pin + 1) % (kv->cells - kv->pin);
        } else
            return -1;
        slots[i] = slot;
        kv->pos[slot] = kv->next_pos++;
        kv->tok[slot] = tokens ? tokens[i] : -1;
    }
    return 0;
}

void kv_store(wim_kvcache *kv, int layer, int slot, const float *k, const float *v) {
    const int hd = kv->head_dim;
    for (int h = 0; h < kv->n_head_kv; h++) {
        const float *kh = k + (size_t)h * hd, *vh = v + (size_t)h * hd;
        uint8_t *kd = head_values(kv, 0, layer, h, slot), *vd = head_values(kv, 1, layer, h, slot);
        if (kv->type == WIM_KV_F32) {
            memcpy(kd, kh, (size_t)hd * 4);
            memcpy(vd, vh, (size_t)hd * 4);
            continue;
        }
        for (int i = 0; i < hd; i++) {
            ((uint16_t *)kd)[i] = wim_fp32_to_fp16(kh[i]);
            ((uint16_t *)vd)[i] = wim_fp32_to_fp16(vh[i]);
        }
    }
}

void kv_clear(wim_kvcache *kv) {
    kv->n = 0;
    kv->head = kv->pin;
    kv->next_pos = 0;
    kv->n_marks = 0;
    kv->journal_len = 0;
}

int kv_copy(wim_kvcache *dst, const wim_kvcache *src, int upto, char *err, size_t errlen) {
    if (src->streaming || dst->streaming || upto < 0 || upto > src->next_pos ||
        upto > dst->capacity || src->n_layer != dst->n_layer || src->head_dim != dst->head_dim ||
        src->n_head_kv != dst->n_head_kv || src->type != dst->type) {
        return wim_errorf(err, errlen, "cannot copy %d cells of a KV cache into one of %d", upto,
                          dst->capacity);
    }
    kv_clear(dst);
    const size_t bytes = (size_t)upto * src->head_dim * src->elem; /* slots [0, upto) of a head */
    for (int l = 0; l < src->n_layer; l++)
        for (int h = 0; h < src->n_head_kv; h++) {
            memcpy(head_values(dst, 0, l, h, 0), kv_k(src, l, h, 0), bytes);
            memcpy(head_values(dst, 1, l, h, 0), kv_v(src, l, h, 0), bytes);
        }
    memcpy(dst->pos, src->pos, (size_t)upto * sizeof *src->pos);
    memcpy(dst->tok, src->tok, (size_t)upto * sizeof *src->tok);
    dst->n = upto;
    dst->next_pos = upto;
    return 0;
}

int kv_clone(wim_kvcache *dst, const wim_kvcache *src, char *err, size_t errlen) {
    if (src->streaming != dst->streaming || src->cells != dst->cells || src->pin != dst->pin ||
        src->capacity != dst->capacity || src->n_layer != dst->n_layer ||
        src->n_head_kv != dst->n_head_kv || src->head_dim != dst->head_dim ||
        src->type != dst->type) {
        return wim_errorf(err, errlen, "cannot clone a KV cache into one of another geometry");
    }
    kv_clear(dst);
    const size_t bytes = (size_t)src->n_layer * src->cells * src->kv_dim * src->elem;
    memcpy(dst->k, src->k, bytes);
    memcpy(dst->v, src->v, bytes);
    memcpy(dst->pos, src->pos, (size_t)src->cells * sizeof *src->pos);
    memcpy(dst->tok, src->tok, (size_t)src->cells * sizeof *src->tok);
    dst->n = src->n;
    dst->head = src->head;
    dst->next_pos = src->next_pos;
    return 0;
}

/* ---- branches ---- */

/* Bytes of the branch area's K (or V) array for `cells` cells. */
static size_t branch_bytes(const wim_kvcache *kv, int cells) {
    return (size_t)kv->n_layer * cells * kv->kv_dim * kv->elem;
}

void kv_branches_close(wim_kvcache *kv) {
    const int bc = kv->branch_cells;
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->bk, branch_bytes(kv, bc));
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->bv, branch_bytes(kv, bc));
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->bpos, (size_t)bc * sizeof *kv->bpos);
    wim_mem_free(kv->mem, WIM_MEM_KV, kv->btok, (size_t)bc * sizeof *kv->btok);
    free(kv->branches);
    kv->bk = kv->bv = NULL;
    kv->bpos = kv->btok = NULL;
    kv->branches = NULL;
    kv->n_branches = kv->branch_cells = 0;
}

int kv_branches_open(wim_kvcache *kv, int n, const int *forks, const int *cells, char *err,
                     size_t errlen) {
    kv_branches_close(kv);
    if (kv->streaming) { /* a window overwrites the cells an older fork sees */
        return wim_errorf(err, errlen, "branches need a KV cache that holds the whole document");
    }
    long total = 0;
    for (int b = 0; b < n; b++) {
        if (forks[b] < 0 || forks[b] > kv->next_pos || cells[b] < 1) {
            return wim_errorf(err, errlen, "branch %d: fork %d outside the %d cached tokens", b,
                              forks[b], kv->next_pos);
        }
        total += cells[b];
    }
    if (n < 1 || total > KV_MAX_POS - (long)kv->cells) {
        return wim_errorf(err, errlen, "invalid branches: %d of %ld cells", n, total);
    }
    const int bc = (int)total;
    kv->branches = malloc((size_t)n * sizeof *kv->branches);
    kv->bk = wim_mem_alloc(kv->mem, WIM_MEM_KV, branch_bytes(kv, bc));
    kv->bv = wim_mem_alloc(kv->mem, WIM_MEM_KV, branch_bytes(kv, bc));
    kv->bpos = wim_mem_alloc(kv->mem, WIM_MEM_KV, (size_t)bc * sizeof *kv->bpos);
    kv->btok = wim_mem_alloc(kv->mem, WIM_MEM_KV, (size_t)bc * sizeof *kv->btok);
    kv->branch_cells = bc;
    if (!kv->branches || !kv->bk || !kv->bv || !kv->bpos || !kv->btok) {
        kv_branches_close(kv);
        return wim_errorf(err, errlen, "cannot allocate %d branch cells (%.1f MiB)", bc,
                          2.0 * branch_bytes(kv, bc) / 1048576.0);
    }
    for (int b = 0, first = 0; b < n; first += cells[b++])
        kv->branches[b] = (kv_branch){forks[b], first, 0, cells[b]};
    kv->n_branches = n;
    return 0;
}

int kv_branch_claim(wim_kvcache *kv, int b, int n_new, const int32_t *tokens, int *slots) {
    kv_branch *br = &kv->branches[b];
    if (n_new > br->cap - br->len) return -1;
    for (int i = 0; i < n_new; i++) {
        const int cell = br->first + br->len;
        kv->bpos[cell] = br->fork + br->len++;
        kv->btok[cell] = tokens ? tokens[i] : -1;
        slots[i] = kv->cells + cell;
    }
    return 0;
}

int kv_snapshot(wim_kvcache *kv) {
    if (kv->n_marks == kv->cap_marks) {
        int cap = kv->cap_marks ? 2 * kv->cap_marks : 8;
        kv_mark *m = realloc(kv->marks, (size_t)cap * sizeof *m);
        if (!m) return -1;
        kv->marks = m;
        kv->cap_marks = cap;
    }
    kv->marks[kv->n_marks++] = (kv_mark){kv->head, kv->n, kv->next_pos, kv->journal_len};
    return kv->n_marks;
}

int kv_restore(wim_kvcache *kv) {
    if (!kv->n_marks) return -1;
    kv_mark m = kv->marks[--kv->n_marks];
    size_t cb = kv_cell_bytes(kv);
    while (kv->journal_len > m.journal_len) {
        kv_journal_entry *e = &kv->journal[--kv->journal_len];
        cell_copy(kv, e->slot, kv->journal_data + kv->journal_len * cb, 0);
        kv->pos[e->slot] = e->pos;
        kv->tok[e->slot] = e->tok;
    }
    kv->head = m.head;
    kv->n = m.n;
    kv->next_pos = m.next_pos;
    return 0;
}

int kv_snapshot_drop(wim_kvcache *kv) {
    if (!kv->n_marks) return -1;
    kv->n_marks--;
    if (!kv->n_marks) kv->journal_len = 0; /* nobody can roll back any more */
    return 0;
}

/* ---- logical layout: a ring of exactly C cells ---- */

/* Cells in use, and the head, in a ring of C cells after next_pos tokens. */
static int logical_n(const wim_kvcache *kv, int next_pos) {
    return next_pos < kv->capacity ? next_pos : kv->capacity;
}
static int logical_head(const wim_kvcache *kv, int next_pos) {
    return next_pos <= kv->capacity ? kv->pin : kv_logical_slot(kv, next_pos);
}
/* The position in logical slot v (< logical_n) once next_pos tokens are in. */
static int logical_pos(const wim_kvcache *kv, int v, int next_pos) {
    if (v < kv->pin || next_pos <= kv->capacity) return v;
    const int w = kv_window(kv), a = kv_window_start(kv, next_pos - 1); /* the oldest one */
    const int va = kv_logical_slot(kv, a);
    return a + (v - va + w) % w;
}

uint32_t kv_crc(const wim_kvcache *kv) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const int n = logical_n(kv, kv->next_pos);
    int meta[3] = {n, logical_head(kv, kv->next_pos), kv->next_pos};
    crc = crc32(crc, (const Bytef *)meta, sizeof meta);
    const uInt piece = (uInt)((size_t)kv->head_dim * kv->elem);
    for (int v = 0; v < n; v++) {
        const int s = kv_slot_of(kv, logical_pos(kv, v, kv->next_pos));
        crc = crc32(crc, (const Bytef *)&kv->pos[s], sizeof *kv->pos);
        crc = crc32(crc, (const Bytef *)&kv->tok[s], sizeof *kv->tok);
        for (int l = 0; l < kv->n_layer; l++) /* K's row, then V's, each head after head */
            for (int kvv = 0; kvv < 2; kvv++)
                for (int h = 0; h < kv->n_head_kv; h++)
                    crc = crc32(crc, head_values(kv, kvv, l, h, s), piece);
    }
    return (uint32_t)crc;
}

/* ---- persistence ---- */

#define KV_MAGIC "WIMKVC\r\n"
/* 1: cells only, the CRC over the payload. 2: the caller's extra bytes after
 * the cells (wim.c: the segments), and the CRC over the header too. */
#define KV_VERSION 2

typedef struct {
    char magic[8];
    uint32_t version, type;
    uint64_t fingerprint;
    int32_t n_layer, kv_dim, capacity, pin, streaming, n, head, next_pos;
    uint64_t raw_bytes, zip_bytes; /* the payload: cells, then extra_bytes (version 2) */
    uint32_t crc, extra_bytes;     /* extra_bytes was reserved (0) in version 1 */
} kv_header;

/* Version 2's checksum: the header (its crc field zeroed), then the payload. */
static uint32_t file_crc(const kv_header *h, const uint8_t *raw, size_t raw_n) {
    kv_header z = *h;
    z.crc = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    if (h->version >= 2) crc = crc32(crc, (const Bytef *)&z, sizeof z);
    return (uint32_t)crc32(crc, raw, (uInt)raw_n);
}

static size_t payload_bytes(const wim_kvcache *kv, int n) {
    return (size_t)n * (2 * sizeof(int32_t) + kv_cell_bytes(kv));
}

int kv_save(const wim_kvcache *kv, uint64_t fingerprint, const char *path, const void *extra,
            size_t extra_len, char *err, size_t errlen) {
    if (kv->n_marks) {
        return wim_errorf(err, errlen, "%s: cannot save the KV cache while a snapshot is open",
                          path);
    }
    if (extra_len > 0x7fffffff) {
        return wim_errorf(err, errlen, "%s: %zu bytes of segments are too many to save", path,
                          extra_len);
    }
    const int n = logical_n(kv, kv->next_pos);
    size_t raw_n = payload_bytes(kv, n) + extra_len, row = (size_t)kv->kv_dim * kv->elem;
    uint8_t *raw = malloc(raw_n ? raw_n : 1);
    uLongf zip_n = compressBound((uLong)raw_n);
    uint8_t *zip = malloc(zip_n);
    if (!raw || !zip) {
        free(raw);
        free(zip);
        return wim_errorf(err, errlen, "%s: out of memory", path);
    }
    uint8_t *p = raw;
    for (int v = 0; v < n; v++) { /* logical layout */
        const int s = kv_slot_of(kv, logical_pos(kv, v, kv->next_pos));
        memcpy(p + (size_t)v * 4, &kv->pos[s], 4);
        memcpy(p + (size_t)(n + v) * 4, &kv->tok[s], 4);
    }
    p += (size_t)n * 8;
    for (int l = 0; l < kv->n_layer; l++)
        for (int v = 0; v < n; v++) {
            const int s = kv_slot_of(kv, logical_pos(kv, v, kv->next_pos));
            row_get(kv, 0, l, s, p);
            row_get(kv, 1, l, s, p + row);
            p += 2 * row;
        }
    if (extra_len) memcpy(p, extra, extra_len);
    int zrc = compress2(zip, &zip_n, raw, (uLong)raw_n, 1);
    kv_header h = {KV_MAGIC,
                   KV_VERSION,
                   (uint32_t)kv->type,
                   fingerprint,
                   kv->n_layer,
                   kv->kv_dim,
                   kv->capacity,
                   kv->pin,
                   kv->streaming,
                   n,
                   logical_head(kv, kv->next_pos),
                   kv->next_pos,
                   raw_n,
                   zip_n,
                   0,
                   (uint32_t)extra_len};
    h.crc = file_crc(&h, raw, raw_n);
    free(raw);
    if (zrc != Z_OK) {
        free(zip);
        return wim_errorf(err, errlen, "%s: compression failed", path);
    }
    wim_outfile o;
    if (outfile_open(&o, path, err, errlen)) {
        free(zip);
        return -1;
    }
    int ok = fwrite(&h, sizeof h, 1, o.f) == 1 && fwrite(zip, 1, zip_n, o.f) == zip_n;
    free(zip);
    if (!ok) {
        wim_errorf(err, errlen, "%s: cannot write: %s", path, strerror(errno ? errno : EIO));
        outfile_abort(&o);
        return -1;
    }
    return outfile_commit(&o, err, errlen);
}

static int read_header(FILE *f, const char *path, kv_header *h, char *err, size_t errlen) {
    if (fread(h, sizeof *h, 1, f) != 1 || memcmp(h->magic, KV_MAGIC, 8)) {
        return wim_errorf(err, errlen, "%s: not a wim KV cache file", path);
    }
    if (h->version < 1 || h->version > KV_VERSION) {
        return wim_errorf(err, errlen,
                          "%s: KV cache file version %u is not supported (1 to %d are)", path,
                          h->version, KV_VERSION);
    }
    if (h->version == 1 && h->extra_bytes) {
        return wim_errorf(err, errlen, "%s: corrupt KV cache header", path);
    }
    if (h->capacity < 1 || h->n < 0 || h->n > h->capacity || h->pin < 0 || h->pin > h->capacity ||
        h->head < h->pin || h->head > h->capacity || h->next_pos < h->n || h->type > WIM_KV_F32) {
        return wim_errorf(err, errlen, "%s: corrupt KV cache header", path);
    }
    /* the sizes must agree before any of them is believed: a plain cache holds every token,
     * a window the last C; the cells' bytes follow from the geometry; the compressed payload
     * is the rest of the file, and deflate cannot shrink data more than about 1032 times */
    const int held =
        h->streaming ? (h->next_pos < h->capacity ? h->next_pos : h->capacity) : h->next_pos;
    const uint64_t cell =
        8 + 2 * (uint64_t)h->n_layer * (uint64_t)h->kv_dim * (h->type == WIM_KV_F32 ? 4 : 2);
    struct stat st;
    if (h->n != held || h->n_layer < 1 || h->n_layer > 4096 || h->kv_dim < 1 ||
        h->kv_dim > (1 << 20) || h->raw_bytes != (uint64_t)h->n * cell + h->extra_bytes ||
        fstat(fileno(f), &st) || (uint64_t)st.st_size != sizeof *h + h->zip_bytes ||
        h->raw_bytes > h->zip_bytes * 1032 + 1024) {
        return wim_errorf(err, errlen, "%s: truncated or corrupt KV cache file", path);
    }
    return 0;
}

int kv_file_geometry(const char *path, int *capacity, int *pin, int *streaming, int *next_pos,
                     char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return wim_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    kv_header h;
    int rc = read_header(f, path, &h, err, errlen);
    fclose(f);
    if (rc) return -1;
    *capacity = h.capacity;
    *pin = h.pin;
    *streaming = h.streaming;
    if (next_pos) *next_pos = h.next_pos;
    return 0;
}

int kv_load(wim_kvcache *kv, uint64_t fingerprint, const char *path, void **extra,
            size_t *extra_len, char *err, size_t errlen) {
    if (extra) *extra = NULL, *extra_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        return wim_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    kv_header h;
    uint8_t *zip = NULL, *raw = NULL;
    int rc = -1;
    if (read_header(f, path, &h, err, errlen)) goto done;
    if (h.fingerprint != fingerprint) {
        wim_errorf(err, errlen,
                   "%s: saved from a different model (fingerprint %016llx, this "
                   "model %016llx)",
                   path, (unsigned long long)h.fingerprint, (unsigned long long)fingerprint);
        goto done;
    }
    /* a window must be the same window; a plain cache may load into a larger one */
    int fits = kv->streaming ? h.capacity == kv->capacity : h.n <= kv->capacity;
    if (h.n_layer != kv->n_layer || h.kv_dim != kv->kv_dim || !fits || h.pin != kv->pin ||
        h.streaming != kv->streaming || h.type != (uint32_t)kv->type) {
        wim_errorf(err, errlen,
                   "%s: saved with KV capacity %d, pin %d, %s; this context has "
                   "capacity %d, pin %d, %s",
                   path, h.capacity, h.pin, h.type == WIM_KV_F32 ? "f32" : "f16", kv->capacity,
                   kv->pin, kv->type == WIM_KV_F32 ? "f32" : "f16");
        goto done;
    }
    const size_t cells_n = payload_bytes(kv, h.n), expect = cells_n + h.extra_bytes;
    struct stat st;
    if (h.raw_bytes != expect || fstat(fileno(f), &st) ||
        (uint64_t)st.st_size != sizeof h + h.zip_bytes) {
        wim_errorf(err, errlen, "%s: truncated or corrupt KV cache file", path);
        goto done;
    }
    zip = malloc(h.zip_bytes ? h.zip_bytes : 1);
    raw = malloc(expect ? expect : 1);
    if (!zip || !raw) {
        wim_errorf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    uLongf raw_n = (uLongf)expect;
    if (fread(zip, 1, h.zip_bytes, f) != h.zip_bytes ||
        uncompress(raw, &raw_n, zip, (uLong)h.zip_bytes) != Z_OK || raw_n != expect ||
        file_crc(&h, raw, expect) != h.crc) {
        wim_errorf(err, errlen, "%s: corrupt KV cache file (checksum mismatch)", path);
        goto done;
    }
    /* the cells must be the logical layout of next_pos tokens */
    int layout_ok = h.next_pos <= KV_MAX_POS && (kv->streaming || h.next_pos == h.n) &&
                    h.n == logical_n(kv, h.next_pos) && h.head == logical_head(kv, h.next_pos);
    for (int v = 0; layout_ok && v < h.n; v++) {
        int32_t q;
        memcpy(&q, raw + (size_t)v * 4, 4);
        layout_ok = q == logical_pos(kv, v, h.next_pos);
    }
    if (!layout_ok) {
        wim_errorf(err, errlen, "%s: corrupt KV cache file (cell layout)", path);
        goto done;
    }
    /* everything checked: now replace the cache contents, each cell in the
     * physical slot its position has here; slots of positions the file does
     * not hold (no query can see them any more) are emptied */
    kv_clear(kv);
    const int used = h.next_pos < kv->cells ? h.next_pos : kv->cells;
    size_t row = (size_t)kv->kv_dim * kv->elem;
    for (int s = 0; s < used; s++)
        kv->pos[s] = kv->tok[s] = -1;
    const uint8_t *p = raw + (size_t)h.n * 8;
    for (int v = 0; v < h.n; v++) {
        int32_t q, t;
        memcpy(&q, raw + (size_t)v * 4, 4);
        memcpy(&t, raw + (size_t)(h.n + v) * 4, 4);
        const int s = kv_slot_of(kv, q);
        kv->pos[s] = q;
        kv->tok[s] = t;
        for (int l = 0; l < kv->n_layer; l++) {
            const uint8_t *c = p + ((size_t)l * h.n + v) * 2 * row;
            row_put(kv, 0, l, s, c);
            row_put(kv, 1, l, s, c + row);
        }
    }
    for (int s = 0; s < used; s++)
        if (kv->pos[s] < 0)
            for (int l = 0; l < kv->n_layer; l++) {
                row_put(kv, 0, l, s, NULL);
                row_put(kv, 1, l, s, NULL);
            }
    kv->n = used;
    kv->head = h.next_pos <= kv->cells ? kv->pin : kv_slot_of(kv, h.next_pos);
    kv->next_pos = h.next_pos;
    if (extra && h.extra_bytes) {
        if (!(*extra = malloc(h.extra_bytes))) { /* the cache is loaded: report, keep it */
            wim_errorf(err, errlen, "%s: out of memory", path);
            goto done;
        }
        memcpy(*extra, raw + cells_n, h.extra_bytes);
        *extra_len = h.extra_bytes;
    }
    rc = 0;
done:
    free(zip);
    free(raw);
    fclose(f);
    return rc;
}
