/*
 * error.h — the engine's one way to report an error: a single line written
 * into the caller's buffer, and -1 to return. Library code never prints.
 */
#ifndef WIM_ERROR_H
#define WIM_ERROR_H

#include <stddef.h>

/* Formats one line into err (when err and errlen are set) and returns -1. */
int wim_errorf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
