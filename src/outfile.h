/*
 * outfile.h — files that appear whole or not at all (saved KV caches, GGUF
 * models, profiles).
 *
 * Owns: the unnamed file that takes the bytes (O_TMPFILE in the target's
 * folder) and linking it into place. Invariants: the target's name shows
 * either what it held before or the complete new file, never a part of one; a
 * process killed while writing leaves nothing behind (on a file system without
 * O_TMPFILE, a PATH.tmp.XXXXXX that only a kill between open and commit can
 * leave); a target that exists must be a regular file (a device or a FIFO is
 * never replaced by a file).
 */
#ifndef WIM_OUTFILE_H
#define WIM_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;          /* write here */
    const char *path; /* the target */
    char *tmp;        /* the named fallback, or NULL */
} wim_outfile;

/* Returns 0 with o->f open for writing, or -1 with "PATH: why" in err. */
int outfile_open(wim_outfile *o, const char *path, char *err, size_t errlen);
/* Flushes, syncs and puts the file at its path (replacing what was there).
 * Returns 0, or -1 with "PATH: cannot write: why" (nothing is left). o is
 * closed either way. */
int outfile_commit(wim_outfile *o, char *err, size_t errlen);
/* Drops the file (nothing appears at the path). */
void outfile_abort(wim_outfile *o);

#endif
