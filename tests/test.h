/*
 * test.h — the smallest test harness that does the job.
 *
 * Each test binary runs its tests in order and prints one line per test:
 *   PASS name | FAIL name: file:line: what | SKIP name: why
 * tests/run.sh counts those lines over every binary and script and prints the
 * closing "N passed, N failed, N skipped". A binary that dies mid-way has its
 * missing results counted as failures by the runner (non-zero exit).
 */
#ifndef WIM_TEST_H
#define WIM_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char t_msg[512];
static int t_state; /* 0 pass, 1 fail, 2 skip */
static int t_failures;

static inline void t_set(int state, const char *fmt, ...) {
    if (t_state != 0) return; /* first message wins */
    t_state = state;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_set(1, "%s:%d: %s", __FILE__, __LINE__, #cond);                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char t_tmp_[400];                                                                      \
            snprintf(t_tmp_, sizeof t_tmp_, __VA_ARGS__);                                          \
            t_set(1, "%s:%d: %s", __FILE__, __LINE__, t_tmp_);                                     \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define SKIP(...)                                                                                  \
    do {                                                                                           \
        t_set(2, __VA_ARGS__);                                                                     \
        return;                                                                                    \
    } while (0)

static inline void t_run(const char *name, void (*fn)(void)) {
    t_state = 0;
    t_msg[0] = 0;
    fn();
    if (t_state == 0 && t_msg[0])
        printf("PASS %s (%s)\n", name, t_msg);
    else if (t_state == 0)
        printf("PASS %s\n", name);
    else if (t_state == 1) {
        printf("FAIL %s: %s\n", name, t_msg);
        t_failures++;
    } else
        printf("SKIP %s: %s\n", name, t_msg);
    fflush(stdout);
}

#define RUN(fn) t_run(#fn, fn)

/* What a passing test measured, printed beside its PASS. */
#define t_note(...) (t_state == 0 ? (void)snprintf(t_msg, sizeof t_msg, __VA_ARGS__) : (void)0)

/* Where the read-only fixtures live: $WIM_SHARED, else ../shared. */
static inline const char *t_shared(void) {
    const char *s = getenv("WIM_SHARED");
    return s && *s ? s : "../shared";
}

static inline int t_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* Relative difference used by numeric comparisons. */
static inline double t_reldiff(double a, double b) {
    double d = fabs(a - b), m = fmax(fabs(a), fabs(b));
    return m > 1e-30 ? d / m : d;
}

static inline int t_exit(void) {
    return t_failures ? 1 : 0;
}

/* Deterministic generator for test inputs (xorshift64*). */
static inline unsigned long long t_rand_next(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}
static inline float t_rand_float(unsigned long long *s) { /* uniform in [-1, 1) */
    return (float)((t_rand_next(s) >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

#endif
