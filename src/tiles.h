/*
 * tiles.h — hands the output tiles of a matrix product to a team of threads.
 *
 * Each thread owns one run of adjacent tiles (thread r of n: tiles*r/n up to
 * tiles*(r+1)/n) and walks it forward, so its weights stream from memory in one
 * direction. A thread whose run is done takes tiles off the back of the run with
 * the most left, so a thread slowed by a neighbour on its core (or by a slower
 * path to memory) is relieved one tile at a time instead of holding up the rest.
 *
 * Invariants: every tile goes out exactly once; which thread takes a tile never
 * changes what it computes (forward.c computes a tile with one kernel call).
 */
#ifndef WIM_TILES_H
#define WIM_TILES_H

#include <stdatomic.h>
#include <stdint.h>

/* One thread's run: next (low 32 bits) up to end (high 32 bits), in one word so
 * the owner's next and a thief's end never cross; a cache line of its own. */
typedef struct tile_run {
    _Atomic uint64_t span;
    char pad[64 - sizeof(uint64_t)];
} tile_run;

/* The first tile of run r of n over `tiles` (run r ends where run r + 1 starts). */
static inline int tile_run_start(int tiles, int r, int n) {
    return (int)((long)tiles * r / n);
}

/* Splits tiles 0 .. tiles-1 into n runs. Must be seen by every thread (a barrier)
 * before any of them calls tile_next. */
void tile_runs_init(tile_run *runs, int n, int tiles);

/* The next tile for thread `me` of n: from its own run, else the back of the
 * longest one; -1 once every tile has gone out. */
int tile_next(tile_run *runs, int n, int me);

#endif
