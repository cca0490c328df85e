/*
 * clock.h — the one clock wim times itself with: monotonic milliseconds (never
 * stepped by NTP, so a duration is always >= 0).
 */
#ifndef WIM_CLOCK_H
#define WIM_CLOCK_H

#include <time.h>

static inline double wim_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

#endif
