/*
 * outfile.c — files that appear whole or not at all (see outfile.h).
 */
#include "outfile.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder of path ("." when it names none). */
static void folder_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else
        snprintf(dir, cap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

int outfile_open(wim_outfile *o, const char *path, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    o->path = path;
    struct stat st;
    if (!stat(path, &st) && !S_ISREG(st.st_mode))
        return wim_errorf(err, errlen,
                          "%s: not a regular file (the file is written anew and "
                          "renamed into place)",
                          path);
    char dir[4096];
    folder_of(path, dir, sizeof dir);
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return wim_errorf(err, errlen, "%s: cannot write in %s: %s", path, dir, strerror(errno));
    if (fd < 0) { /* no O_TMPFILE here: a named temporary beside the target */
        size_t n = strlen(path) + 16;
        if (!(o->tmp = malloc(n))) return wim_errorf(err, errlen, "%s: out of memory", path);
        snprintf(o->tmp, n, "%s.tmp.XXXXXX", path);
        if ((fd = mkstemp(o->tmp)) < 0) {
            wim_errorf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
            free(o->tmp);
            o->tmp = NULL;
            return -1;
        }
        fchmod(fd, 0644); /* mkstemp's 0600 is wrong for a model or a cache to share */
    }
    if (!(o->f = fdopen(fd, "wb"))) {
        wim_errorf(err, errlen, "%s: out of memory", path);
        close(fd);
        outfile_abort(o);
        return -1;
    }
    return 0;
}

void outfile_abort(wim_outfile *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

/* Links the unnamed file into place: straight at the path when it is free,
 * else under a fresh name in the same folder, renamed over the path. */
static int link_into_place(int fd, const char *path) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (!linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW)) return 0;
    if (errno != EEXIST) return -1;
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return errno = ENOMEM, -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, n, "%s.tmp.%d.%d", path, (int)getpid(), attempt);
        if (!linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW)) {
            int rc = rename(tmp, path);
            int saved = errno;
            if (rc) unlink(tmp);
            free(tmp);
            errno = saved;
            return rc;
        }
        if (errno != EEXIST) break;
    }
    int saved = errno;
    free(tmp);
    errno = saved;
    return -1;
}

int outfile_commit(wim_outfile *o, char *err, size_t errlen) {
    int ok = !ferror(o->f) && fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
    int saved = errno;
    if (ok) {
        ok = o->tmp ? rename(o->tmp, o->path) == 0 : link_into_place(fileno(o->f), o->path) == 0;
        saved = errno;
        if (ok && o->tmp) free(o->tmp), o->tmp = NULL;
    }
    if (fclose(o->f) && ok) ok = 0, saved = errno;
    o->f = NULL;
    if (ok) {
        char dir[4096]; /* the new name, durable too */
        folder_of(o->path, dir, sizeof dir);
        int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) fsync(d), close(d);
        memset(o, 0, sizeof *o);
        return 0;
    }
    wim_errorf(err, errlen, "%s: cannot write: %s", o->path, strerror(saved ? saved : EIO));
    outfile_abort(o);
    return -1;
}
