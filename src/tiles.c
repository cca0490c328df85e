/*
 * tiles.c — the tile runs of tiles.h: each thread's run, and stealing from the back.
 */
#include "tiles.h"

static uint64_t span_of(uint32_t next, uint32_t end) {
    return (uint64_t)end << 32 | next;
}

void tile_runs_init(tile_run *runs, int n, int tiles) {
    for (int r = 0; r < n; r++)
        atomic_store_explicit(&runs[r].span,
                              span_of((uint32_t)tile_run_start(tiles, r, n),
                                      (uint32_t)tile_run_start(tiles, r + 1, n)),
                              memory_order_relaxed);
}

/* The owner's end of a run: its next tile, or -1 when it is empty. */
static int take_front(tile_run *run) {
    uint64_t s = atomic_load_explicit(&run->span, memory_order_relaxed);
    while ((uint32_t)s < (uint32_t)(s >> 32))
        if (atomic_compare_exchange_weak_explicit(&run->span, &s, s + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (int)(uint32_t)s;
    return -1;
}

/* A thief's end: the run's last tile, or -1 when it is empty. */
static int take_back(tile_run *run) {
    uint64_t s = atomic_load_explicit(&run->span, memory_order_relaxed);
    while ((uint32_t)s < (uint32_t)(s >> 32)) {
        const uint32_t last = (uint32_t)(s >> 32) - 1;
        if (atomic_compare_exchange_weak_explicit(&run->span, &s, span_of((uint32_t)s, last),
                                                  memory_order_relaxed, memory_order_relaxed))
            return (int)last;
    }
    return -1;
}

int tile_next(tile_run *runs, int n, int me) {
    int t = take_front(&runs[me]);
    while (t < 0) {
        int longest = -1;
        uint32_t most = 0;
        for (int r = 0; r < n; r++) {
            const uint64_t s = atomic_load_explicit(&runs[r].span, memory_order_relaxed);
            const uint32_t left =
                (uint32_t)s < (uint32_t)(s >> 32) ? (uint32_t)(s >> 32) - (uint32_t)s : 0;
            if (left > most) most = left, longest = r;
        }
        if (longest < 0) return -1;
        t = take_back(&runs[longest]); /* -1 if it emptied meanwhile: look again */
    }
    return t;
}
