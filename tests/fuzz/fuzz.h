/*
 * fuzz.h — what the libFuzzer harnesses in tests/fuzz/ share.
 *
 * Each harness defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when
 * it loads fixtures). `make fuzz` links them with libFuzzer under clang's
 * sanitizers; `make test` links them with replay.c, which feeds every file of
 * the committed corpora and past crashes (tests/fuzz/corpus/NAME/,
 * tests/fuzz/crashes/NAME/) once, so a finding stays fixed.
 *
 * A harness aborts (FUZZ_ASSERT) only when a property the library promises is
 * broken; an input the library refuses with an error is a pass.
 */
#ifndef WIM_FUZZ_H
#define WIM_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_ASSERT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The fixtures folder (WIM_SHARED, default ../shared as make runs from the repository). */
static inline const char *fuzz_shared(void) {
    const char *s = getenv("WIM_SHARED");
    return s && *s ? s : "../shared";
}

/* The bytes as a file the library can open by name (an anonymous memory file):
 * writes its path to path (64 bytes) and returns the descriptor to close, or -1. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path) {
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -1;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
