/*
 * test_tiles.c — the tile runs that share a product's tiles out (src/tiles.h): a
 * thread walks its own run forward, then takes tiles off the back of the longest
 * run; every tile goes out exactly once, alone or with threads racing for them,
 * however the tiles and threads compare in number.
 */
#include "test.h"

#include "tiles.h"

#include <omp.h>

/* One thread of n alone: its own run in order, then the others' from their backs. */
static void test_one_thread_order(void) {
    tile_run runs[3];
    tile_runs_init(runs, 3, 10); /* runs 0..2, 3..5, 6..9; of equal runs, the first */
    const int want[] = {3, 4, 5, 9, 2, 8, 1, 7, 0, 6};
    for (int i = 0; i < 10; i++) {
        const int t = tile_next(runs, 3, 1);
        CHECKF(t == want[i], "take %d: tile %d, want %d", i, t, want[i]);
    }
    CHECK(tile_next(runs, 3, 1) == -1);
    CHECK(tile_next(runs, 3, 0) == -1);
}

/* More threads than tiles, and no tiles at all. */
static void test_edges(void) {
    tile_run runs[4];
    tile_runs_init(runs, 4, 2); /* runs from 0, 0, 1, 1: two empty */
    int seen[2] = {0};
    for (int t; (t = tile_next(runs, 4, 0)) >= 0;) {
        CHECKF(t >= 0 && t < 2, "tile %d out of range", t);
        seen[t]++;
    }
    CHECK(seen[0] == 1 && seen[1] == 1);
    tile_runs_init(runs, 4, 0);
    for (int me = 0; me < 4; me++)
        CHECK(tile_next(runs, 4, me) == -1);
}

/* Threads racing (one slowed down, so the others steal): each tile exactly once. */
static void test_race_exactly_once(void) {
    enum { MAX_TILES = 2000, THREADS = 4 };
    static int count[MAX_TILES];
    tile_run runs[THREADS];
    int bad = 0;
    for (int round = 0; round < 300 && !bad; round++) {
        const int tiles = 1 + round * 7 % MAX_TILES;
        memset(count, 0, sizeof count);
        tile_runs_init(runs, THREADS, tiles);
#pragma omp parallel num_threads(THREADS)
        {
            const int me = omp_get_thread_num(), n = omp_get_num_threads();
            volatile double sink = 0;
            for (int t; (t = tile_next(runs, n, me)) >= 0;) {
#pragma omp atomic
                count[t]++;
                for (int k = 0; k < (me == round % n ? 2000 : 10); k++) /* one slow thread */
                    sink += k;
            }
        }
        for (int t = 0; t < tiles; t++)
            if (count[t] != 1) bad = 1 + t;
        CHECKF(!bad, "round %d (%d tiles): tile %d went out %d times", round, tiles, bad - 1,
               count[bad - 1]);
    }
}

int main(void) {
    RUN(test_one_thread_order);
    RUN(test_edges);
    RUN(test_race_exactly_once);
    return t_exit();
}
