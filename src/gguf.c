/*
 * gguf.c — GGUF v2/v3 reader (the file read into huge pages or mapped, validated
 * once) and writer.
 *
 * The reader walks the header with a bounds-checked cursor: every length is
 * compared with the bytes that remain before it is used, so a truncated or
 * hostile file produces an error message, never an out-of-bounds read. After
 * gguf_open returns 0 the rest of the engine may trust the index (see gguf.h).
 */
#include "gguf.h"
#include "error.h"
#include "mem.h"
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quants.h"

#define GGUF_MAX_NESTING 3

typedef struct {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
    const char *name;
} cursor;

static int fail(cursor *c, const char *fmt, ...) {
    if (c->err && c->errlen) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->name);
        if (n < 0) n = 0;
        if ((size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static size_t remaining(const cursor *c) {
    return (size_t)(c->end - c->p);
}

static int take(cursor *c, void *out, size_t n, const char *what) {
    if (remaining(c) < n) return fail(c, "file ends inside %s (truncated?)", what);
    memcpy(out, c->p, n);
    c->p += n;
    return 0;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) {
    return take(c, v, 4, what);
}
static int read_u64(cursor *c, uint64_t *v, const char *what) {
    return take(c, v, 8, what);
}

static int read_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t len = 0;
    if (read_u64(c, &len, what)) return -1;
    if (len > remaining(c))
        return fail(c, "%s has length %llu but only %zu bytes remain", what,
                    (unsigned long long)len, remaining(c));
    s->ptr = (const char *)c->p;
    s->len = len;
    c->p += len;
    return 0;
}

static const size_t vtype_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1,   [GGUF_VT_INT8] = 1,  [GGUF_VT_UINT16] = 2,  [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4,  [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_STRING] = 0,  [GGUF_VT_ARRAY] = 0, [GGUF_VT_UINT64] = 8,  [GGUF_VT_INT64] = 8,
    [GGUF_VT_FLOAT64] = 8,
};

size_t gguf_vtype_size(enum gguf_vtype t) {
    return (unsigned)t < GGUF_VT_COUNT ? vtype_size[t] : 0;
}

const char *gguf_vtype_name(enum gguf_vtype t) {
    static const char *names[GGUF_VT_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                               "i32", "f32", "bool", "string", "array",
                                               "u64", "i64", "f64"};
    return (unsigned)t < GGUF_VT_COUNT ? names[t] : "?";
}

/* Decodes one scalar of type t from raw bytes (already bounds-checked). */
static void decode_scalar(enum gguf_vtype t, const uint8_t *p, gguf_value *v) {
    v->type = t;
    switch (t) {
    case GGUF_VT_UINT8:
        v->v.u64 = p[0];
        break;
    case GGUF_VT_BOOL:
        v->v.u64 = p[0] != 0;
        break;
    case GGUF_VT_INT8:
        v->v.i64 = (int8_t)p[0];
        break;
    case GGUF_VT_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        v->v.u64 = x;
        break;
    }
    case GGUF_VT_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        v->v.i64 = x;
        break;
    }
    case GGUF_VT_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        v->v.u64 = x;
        break;
    }
    case GGUF_VT_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        v->v.i64 = x;
        break;
    }
    case GGUF_VT_FLOAT32: {
        float x;
        memcpy(&x, p, 4);
        v->v.f64 = x;
        break;
    }
    case GGUF_VT_UINT64:
        memcpy(&v->v.u64, p, 8);
        break;
    case GGUF_VT_INT64:
        memcpy(&v->v.i64, p, 8);
        break;
    case GGUF_VT_FLOAT64:
        memcpy(&v->v.f64, p, 8);
        break;
    default:
        break;
    }
}

static void free_value(gguf_value *v) {
    if (v->type != GGUF_VT_ARRAY || !v->v.arr.values) return;
    for (uint64_t i = 0; i < v->v.arr.n; i++)
        free_value(&v->v.arr.values[i]);
    free(v->v.arr.values);
    v->v.arr.values = NULL;
}

static int read_value(cursor *c, enum gguf_vtype t, gguf_value *v, int depth, const char *what);

static int read_array(cursor *c, gguf_value *v, int depth, const char *what) {
    uint32_t et = 0;
    uint64_t n = 0;
    if (read_u32(c, &et, what) || read_u64(c, &n, what)) return -1;
    if (et >= GGUF_VT_COUNT) return fail(c, "%s: array of unknown value type %u", what, et);
    if (et == GGUF_VT_ARRAY && depth >= GGUF_MAX_NESTING)
        return fail(c, "%s: arrays nested deeper than %d", what, GGUF_MAX_NESTING);
    v->type = GGUF_VT_ARRAY;
    v->v.arr.type = (enum gguf_vtype)et;
    v->v.arr.n = n;
    v->v.arr.data = c->p;
    v->v.arr.values = NULL;
    size_t es = vtype_size[et];
    if (es) { /* numbers: bounds-check and point into the mapping */
        if (n > remaining(c) / es)
            return fail(c, "%s: array of %llu %s elements exceeds the file", what,
                        (unsigned long long)n, gguf_vtype_name(et));
        c->p += n * es;
        return 0;
    }
    /* strings and arrays: each element takes at least 8 bytes (a length or header) */
    if (n > remaining(c) / 8)
        return fail(c, "%s: array of %llu %s elements exceeds the file", what,
                    (unsigned long long)n, gguf_vtype_name(et));
    v->v.arr.values = calloc(n ? n : 1, sizeof(gguf_value));
    if (!v->v.arr.values)
        return fail(c, "%s: out of memory for %llu elements", what, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (read_value(c, (enum gguf_vtype)et, &v->v.arr.values[i], depth + 1, what)) return -1;
    return 0;
}

static int read_value(cursor *c, enum gguf_vtype t, gguf_value *v, int depth, const char *what) {
    if (t == GGUF_VT_STRING) {
        v->type = t;
        return read_str(c, &v->v.str, what);
    }
    if (t == GGUF_VT_ARRAY) return read_array(c, v, depth, what);
    size_t es = vtype_size[t];
    if (remaining(c) < es) return fail(c, "file ends inside the value of %s (truncated?)", what);
    decode_scalar(t, c->p, v);
    c->p += es;
    return 0;
}

/* ---- tensor types ---- */

static const char *const ttype_names[] = {
    [0] = "F32",     [1] = "F16",      [2] = "Q4_0",   [3] = "Q4_1",    [6] = "Q5_0",
    [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",   [10] = "Q2_K",   [11] = "Q3_K",
    [12] = "Q4_K",   [13] = "Q5_K",    [14] = "Q6_K",  [15] = "Q8_K",   [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
    [22] = "IQ2_S",  [23] = "IQ4_XS",  [24] = "I8",    [25] = "I16",    [26] = "I32",
    [27] = "I64",    [28] = "F64",     [29] = "IQ1_M", [30] = "BF16",
};

const char *gguf_ttype_name(enum gguf_ttype t) {
    if ((unsigned)t < sizeof ttype_names / sizeof *ttype_names && ttype_names[t])
        return ttype_names[t];
    return "unknown";
}

int gguf_ttype_known(uint32_t t) {
    return t == GGUF_T_F32 || t == GGUF_T_F16 || t == GGUF_T_BF16 || t == GGUF_T_Q8_0 ||
           wim_q_known((int)t);
}

uint64_t gguf_ttype_block(enum gguf_ttype t) {
    if (t == GGUF_T_Q8_0) return 32;
    return wim_q_known((int)t) ? (uint64_t)wim_q_block_weights((int)t) : 1;
}

uint64_t gguf_ttype_block_bytes(enum gguf_ttype t) {
    switch (t) {
    case GGUF_T_F32:
        return 4;
    case GGUF_T_F16:
    case GGUF_T_BF16:
        return 2;
    case GGUF_T_Q8_0:
        return 34;
    default:
        return wim_q_block_bytes((int)t);
    }
}

uint64_t gguf_row_bytes(enum gguf_ttype t, uint64_t ne0) {
    return ne0 / gguf_ttype_block(t) * gguf_ttype_block_bytes(t);
}

/* ---- validation helpers ---- */

static int str_cmp(gguf_str a, gguf_str b) {
    size_t n = a.len < b.len ? a.len : b.len;
    int r = memcmp(a.ptr, b.ptr, n);
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int cmp_kv(const void *a, const void *b) {
    return str_cmp(((const gguf_kv *const *)a)[0]->key, ((const gguf_kv *const *)b)[0]->key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return str_cmp(((const gguf_tensor *const *)a)[0]->name,
                   ((const gguf_tensor *const *)b)[0]->name);
}
static int cmp_tensor_off(const void *a, const void *b) {
    uint64_t x = ((const gguf_tensor *const *)a)[0]->offset;
    uint64_t y = ((const gguf_tensor *const *)b)[0]->offset;
    return x < y ? -1 : x > y;
}

static int str_eq(gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.len == n && memcmp(s.ptr, z, n) == 0;
}

/* Prints a name safely into messages (it may hold any bytes). */
static const char *printable(gguf_str s, char *buf, size_t cap) {
    size_t j = 0;
    for (uint64_t i = 0; i < s.len && j + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 32 && ch < 127)
            buf[j++] = (char)ch;
        else
            j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", ch);
    }
    buf[j] = 0;
    return buf;
}

static int check_unique(cursor *c, gguf_file *f) {
    int rc = 0;
    char nb[128];
    if (f->n_kv > 1) {
        const gguf_kv **s = malloc(f->n_kv * sizeof *s);
        if (!s) return fail(c, "out of memory");
        for (uint64_t i = 0; i < f->n_kv; i++)
            s[i] = &f->kv[i];
        qsort(s, f->n_kv, sizeof *s, cmp_kv);
        for (uint64_t i = 1; i < f->n_kv && !rc; i++)
            if (str_cmp(s[i - 1]->key, s[i]->key) == 0)
                rc = fail(c, "duplicate metadata key '%s'", printable(s[i]->key, nb, sizeof nb));
        free(s);
    }
    if (rc || f->n_tensors < 2) return rc;
    const gguf_tensor **t = malloc(f->n_tensors * sizeof *t);
    if (!t) return fail(c, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++)
        t[i] = &f->tensors[i];
    qsort(t, f->n_tensors, sizeof *t, cmp_tensor_name);
    for (uint64_t i = 1; i < f->n_tensors && !rc; i++)
        if (str_cmp(t[i - 1]->name, t[i]->name) == 0)
            rc = fail(c, "duplicate tensor name '%s'", printable(t[i]->name, nb, sizeof nb));
    if (!rc) {
        qsort(t, f->n_tensors, sizeof *t, cmp_tensor_off);
        for (uint64_t i = 1; i < f->n_tensors && !rc; i++)
            if (t[i - 1]->offset + t[i - 1]->nbytes > t[i]->offset) {
                char nb2[128];
                rc = fail(c, "tensors '%s' and '%s' overlap",
                          printable(t[i - 1]->name, nb, sizeof nb),
                          printable(t[i]->name, nb2, sizeof nb2));
            }
    }
    free(t);
    return rc;
}

static int read_tensor_info(cursor *c, gguf_file *f, gguf_tensor *t, uint64_t idx) {
    char what[64], nb[128];
    snprintf(what, sizeof what, "tensor #%llu", (unsigned long long)idx);
    if (read_str(c, &t->name, what) || read_u32(c, &t->n_dims, what)) return -1;
    const char *nm = printable(t->name, nb, sizeof nb);
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c, "tensor '%s' has %u dimensions (1..%d allowed)", nm, t->n_dims,
                    GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (read_u64(c, &t->ne[d], what)) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return fail(c, "tensor '%s' has dimension %u of size %llu", nm, d,
                        (unsigned long long)t->ne[d]);
        if (n_elem > (uint64_t)INT64_MAX / t->ne[d])
            return fail(c, "tensor '%s' has dimensions whose product overflows", nm);
        n_elem *= t->ne[d];
    }
    uint32_t type = 0;
    if (read_u32(c, &type, what) || read_u64(c, &t->offset, what)) return -1;
    if (!gguf_ttype_known(type))
        return fail(c,
                    "tensor '%s' has type %s (%u); wim supports F32, F16, BF16, Q8_0, Q4_0, "
                    "Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K",
                    nm, gguf_ttype_name((enum gguf_ttype)type), type);
    t->type = (enum gguf_ttype)type;
    if (t->ne[0] % gguf_ttype_block(t->type))
        return fail(c,
                    "tensor '%s' has rows of %llu elements, not a multiple of the %s block (%llu)",
                    nm, (unsigned long long)t->ne[0], gguf_ttype_name(t->type),
                    (unsigned long long)gguf_ttype_block(t->type));
    uint64_t rows = n_elem / t->ne[0], rb = gguf_row_bytes(t->type, t->ne[0]);
    if (rb && rows > UINT64_MAX / rb) return fail(c, "tensor '%s' is too large", nm);
    t->nbytes = rows * rb;
    if (t->offset % f->alignment)
        return fail(c, "tensor '%s' offset %llu is not aligned to %llu", nm,
                    (unsigned long long)t->offset, (unsigned long long)f->alignment);
    return 0;
}

static int parse(gguf_file *f, char *err, size_t errlen) {
    cursor c = {f->base, f->base + f->size, err, errlen, f->path};
    char magic[4];
    if (f->size < 4) return fail(&c, "file is %zu bytes, too small to be GGUF", f->size);
    if (take(&c, magic, 4, "the magic") || memcmp(magic, "GGUF", 4))
        return fail(&c, "not a GGUF file (bad magic)");
    if (read_u32(&c, &f->version, "the version")) return -1;
    if (f->version != 2 && f->version != 3)
        return fail(&c, "GGUF version %u is not supported (2 and 3 are)", f->version);
    if (read_u64(&c, &f->n_tensors, "the tensor count") ||
        read_u64(&c, &f->n_kv, "the metadata count"))
        return -1;
    /* a key is >= 12 bytes (length + type), a tensor info >= 28 */
    if (f->n_kv > remaining(&c) / 12)
        return fail(&c, "metadata count %llu is impossible for a file of %zu bytes",
                    (unsigned long long)f->n_kv, f->size);
    if (f->n_tensors > remaining(&c) / 28)
        return fail(&c, "tensor count %llu is impossible for a file of %zu bytes",
                    (unsigned long long)f->n_tensors, f->size);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return fail(&c, "out of memory");

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        char what[64], kb[128];
        snprintf(what, sizeof what, "metadata entry #%llu", (unsigned long long)i);
        uint32_t t = 0;
        if (read_str(&c, &kv->key, what) || read_u32(&c, &t, what)) return -1;
        const char *kn = printable(kv->key, kb, sizeof kb);
        if (t >= GGUF_VT_COUNT) return fail(&c, "metadata key '%s' has unknown type %u", kn, t);
        if (read_value(&c, (enum gguf_vtype)t, &kv->value, 0, kn)) return -1;
        if (str_eq(kv->key, "general.alignment")) {
            if (t != GGUF_VT_UINT32)
                return fail(&c, "general.alignment has type %s (u32 expected)", gguf_vtype_name(t));
            uint64_t a = kv->value.v.u64;
            if (a == 0 || (a & (a - 1)))
                return fail(&c, "general.alignment %llu is not a power of two",
                            (unsigned long long)a);
            f->alignment = a;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (read_tensor_info(&c, f, &f->tensors[i], i)) return -1;

    size_t header_end = (size_t)(c.p - f->base);
    f->header_bytes = header_end;
    uint64_t data = (header_end + f->alignment - 1) / f->alignment * f->alignment;
    f->data_offset = data;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char nb[128];
        if (data > f->size || t->offset > f->size - data || t->nbytes > f->size - data - t->offset)
            return fail(&c, "tensor '%s' (%llu bytes at offset %llu) lies outside the file",
                        printable(t->name, nb, sizeof nb), (unsigned long long)t->nbytes,
                        (unsigned long long)t->offset);
        t->data = f->base + data + t->offset;
    }
    return check_unique(&c, f);
}

static void free_index(gguf_file *f) {
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++)
            free_value(&f->kv[i].value);
    free(f->kv);
    free(f->tensors);
    f->kv = NULL;
    f->tensors = NULL;
}

int gguf_open_buffer(const void *buf, size_t size, const char *name, gguf_file **out, char *err,
                     size_t errlen) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name ? name : "(buffer)"))) {
        free(f);
        return wim_errorf(err, errlen, "%s: out of memory", name ? name : "(buffer)");
    }
    f->base = buf;
    f->size = size;
    if (parse(f, err, errlen)) {
        free_index(f);
        free(f->path);
        free(f);
        return -1;
    }
    *out = f;
    return 0;
}

/* Whether a copy of `size` bytes in huge pages is worth having: the kernel hands out
 * transparent huge pages to a region that asks (THP "always" or "madvise"), and the
 * copy takes at most half of the memory available now (page cache included), so a
 * model near the machine's size stays a mapping the kernel may page out. */
static int huge_copy_pays(size_t size) {
    char line[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    int ok = fgets(line, sizeof line, f) && !strstr(line, "[never]");
    fclose(f);
    unsigned long long avail_kb = 0;
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1) break;
    if (f) fclose(f);
    return ok && size / 1024 < avail_kb / 2;
}

/* The file's bytes in memory of our own: *len bytes at the result (munmap them), or
 * MAP_FAILED with errno set.  Decode reads every weight once per token, and from a
 * file mapping's 4 KiB pages TLB misses cost it 10-30 % (Qwen2.5-0.5B-shape Q8_0
 * tg64 on Zen 4: 47 -> 53 t/s at 1 thread, 67-80 -> 72-89 at 2), so the bytes are
 * read into anonymous memory that asks for transparent huge pages.  Without THP, for
 * a file of more than half the available memory, or with WIM_MMAP=1, the file is
 * mapped as it is (shared with other processes). */
static void *file_bytes(int fd, size_t size, size_t *len, int *huge) {
    const char *force_map = getenv("WIM_MMAP");
    *len = size;
    *huge = 0;
    if ((force_map && !strcmp(force_map, "1")) || !huge_copy_pays(size))
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    void *p = wim_huge_pages(size, len);
    if (!p) return MAP_FAILED;
    for (size_t got = 0; got < size;) {
        const ssize_t n = pread(fd, (char *)p + got, size - got, (off_t)got);
        if (n <= 0) {
            const int e = n < 0 ? errno : EIO; /* 0: the file shrank while read */
            munmap(p, *len);
            errno = e;
            return MAP_FAILED;
        }
        got += (size_t)n;
    }
    mprotect(p, *len, PROT_READ); /* the engine never writes weights */
    *huge = 1;
    return p;
}

int gguf_open(const char *path, gguf_file **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return wim_errorf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        wim_errorf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        wim_errorf(err, errlen, "%s: file is empty", path);
        close(fd);
        return -1;
    }
    size_t len;
    int huge;
    void *map = file_bytes(fd, (size_t)st.st_size, &len, &huge);
    close(fd);
    if (map == MAP_FAILED) {
        return wim_errorf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    }
    if (gguf_open_buffer(map, (size_t)st.st_size, path, out, err, errlen)) {
        munmap(map, len);
        return -1;
    }
    (*out)->mapped = len;
    (*out)->huge_pages = huge;
    return 0;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    free_index(f);
    if (f->mapped) munmap((void *)f->base, f->mapped);
    free(f->path);
    free(f);
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static int is_unsigned(enum gguf_vtype t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 ||
           t == GGUF_VT_UINT64 || t == GGUF_VT_BOOL;
}
static int is_signed(enum gguf_vtype t) {
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (is_signed(kv->value.type))
        *out = kv->value.v.i64;
    else if (is_unsigned(kv->value.type) && kv->value.v.u64 <= (uint64_t)INT64_MAX)
        *out = (int64_t)kv->value.v.u64;
    else
        return -1;
    return 1;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (is_unsigned(kv->value.type))
        *out = kv->value.v.u64;
    else if (is_signed(kv->value.type) && kv->value.v.i64 >= 0)
        *out = (uint64_t)kv->value.v.i64;
    else
        return -1;
    return 1;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    uint64_t v;
    int r = gguf_get_u64(f, key, &v);
    if (r != 1) return r;
    if (v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 1;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (kv->value.type != GGUF_VT_FLOAT32 && kv->value.type != GGUF_VT_FLOAT64) return -1;
    *out = (float)kv->value.v.f64;
    return 1;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (kv->value.type != GGUF_VT_BOOL) return -1;
    *out = (int)kv->value.v.u64;
    return 1;
}

int gguf_get_str(const gguf_file *f, const char *key, char **out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (kv->value.type != GGUF_VT_STRING) return -1;
    char *s = malloc(kv->value.v.str.len + 1);
    if (!s) return -1;
    memcpy(s, kv->value.v.str.ptr, kv->value.v.str.len);
    s[kv->value.v.str.len] = 0;
    *out = s;
    return 1;
}

int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_vtype *elem_type, uint64_t *n) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return 0;
    if (kv->value.type != GGUF_VT_ARRAY) return -1;
    *elem_type = kv->value.v.arr.type;
    *n = kv->value.v.arr.n;
    return 1;
}

uint64_t gguf_fingerprint(const gguf_file *f) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */
    for (size_t i = 0; i < f->header_bytes; i++) {
        h ^= f->base[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ================================ writer ================================ */

typedef struct {
    char *key;
    uint8_t *bytes; /* serialized type + value */
    size_t len;
} wkv;

typedef struct {
    char *name;
    enum gguf_ttype type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    void *data;
    uint64_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
};

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void wb_u32(wbuf *b, uint32_t v) {
    wb_put(b, &v, 4);
}
static void wb_u64(wbuf *b, uint64_t v) {
    wb_put(b, &v, 8);
}
static void wb_str(wbuf *b, const char *s, size_t n) {
    wb_u64(b, n);
    wb_put(b, s, n);
}

gguf_writer *gguf_writer_new(void) {
    return calloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].bytes);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Adds or replaces key with the serialized value in b (takes ownership). */
static void put_kv(gguf_writer *w, const char *key, wbuf *b) {
    if (b->oom) {
        free(b->p);
        w->oom = 1;
        return;
    }
    if (!strcmp(key, "general.alignment")) { /* the writer aligns to the default, and says so */
        free(b->p);
        return;
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].bytes);
            w->kv[i].bytes = b->p;
            w->kv[i].len = b->len;
            return;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(b->p);
            w->oom = 1;
            return;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(b->p);
        w->oom = 1;
        return;
    }
    w->kv[w->n_kv++] = (wkv){k, b->p, b->len};
}

static void put_scalar(gguf_writer *w, const char *key, enum gguf_vtype t, const void *v) {
    wbuf b = {0};
    wb_u32(&b, t);
    wb_put(&b, v, vtype_size[t]);
    put_kv(w, key, &b);
}

void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    put_scalar(w, key, GGUF_VT_UINT32, &v);
}
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    put_scalar(w, key, GGUF_VT_INT32, &v);
}
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    put_scalar(w, key, GGUF_VT_FLOAT32, &v);
}
void gguf_writer_set_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    put_scalar(w, key, GGUF_VT_BOOL, &b);
}
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_STRING);
    wb_str(&b, v, strlen(v));
    put_kv(w, key, &b);
}

void gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                         const void *data, uint64_t n) {
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_ARRAY);
    wb_u32(&b, elem_type);
    wb_u64(&b, n);
    wb_put(&b, data, n * vtype_size[elem_type]);
    put_kv(w, key, &b);
}

void gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_ARRAY);
    wb_u32(&b, GGUF_VT_STRING);
    wb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++)
        wb_str(&b, v[i], strlen(v[i]));
    put_kv(w, key, &b);
}

/* Serializes a value as it is in the file (type tag first unless elem). */
static void ser_value(wbuf *b, const gguf_value *v, int with_tag) {
    if (with_tag) wb_u32(b, v->type);
    switch (v->type) {
    case GGUF_VT_STRING:
        wb_str(b, v->v.str.ptr, v->v.str.len);
        break;
    case GGUF_VT_ARRAY:
        wb_u32(b, v->v.arr.type);
        wb_u64(b, v->v.arr.n);
        if (v->v.arr.values)
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                ser_value(b, &v->v.arr.values[i], 0);
        else
            wb_put(b, v->v.arr.data, v->v.arr.n * vtype_size[v->v.arr.type]);
        break;
    default: { /* re-encode the scalar in its own width */
        uint8_t raw[8];
        uint64_t u = v->v.u64;
        if (v->type == GGUF_VT_FLOAT32) {
            float x = (float)v->v.f64;
            memcpy(raw, &x, 4);
        } else if (v->type == GGUF_VT_FLOAT64)
            memcpy(raw, &v->v.f64, 8);
        else
            memcpy(raw, &u, 8); /* little-endian: low bytes first */
        wb_put(b, raw, vtype_size[v->type]);
    }
    }
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    wbuf b = {0};
    ser_value(&b, &kv->value, 1);
    char *key = malloc(kv->key.len + 1);
    if (!key) {
        free(b.p);
        w->oom = 1;
        return;
    }
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    put_kv(w, key, &b);
    free(key);
}

void gguf_writer_add_tensor(gguf_writer *w, const char *name, enum gguf_ttype type, uint32_t n_dims,
                            const uint64_t *ne, const void *data) {
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 32;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) {
            w->oom = 1;
            return;
        }
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->n_dims = n_dims;
    uint64_t rows = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d > 0) rows *= t->ne[d];
    }
    t->nbytes = gguf_row_bytes(type, t->ne[0]) * rows;
    t->name = strdup(name);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        w->oom = 1;
        return;
    }
    memcpy(t->data, data, t->nbytes);
    w->n_t++;
}

static uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen) {
    if (w->oom) {
        return wim_errorf(err, errlen, "%s: out of memory while building the file", path);
    }
    wbuf h = {0};
    wb_put(&h, "GGUF", 4);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_t);
    wb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        wb_put(&h, w->kv[i].bytes, w->kv[i].len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        wb_str(&h, t->name, strlen(t->name));
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            wb_u64(&h, t->ne[d]);
        wb_u32(&h, t->type);
        wb_u64(&h, off);
        off = align_up(off + t->nbytes, GGUF_DEFAULT_ALIGNMENT);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    wb_put(&h, zeros, align_up(h.len, GGUF_DEFAULT_ALIGNMENT) - h.len);
    if (h.oom) {
        free(h.p);
        return wim_errorf(err, errlen, "%s: out of memory", path);
    }

    wim_outfile o;
    if (outfile_open(&o, path, err, errlen)) {
        free(h.p);
        return -1;
    }
    int ok = fwrite(h.p, 1, h.len, o.f) == h.len;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        uint64_t pad = align_up(w->t[i].nbytes, GGUF_DEFAULT_ALIGNMENT) - w->t[i].nbytes;
        ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, o.f) == w->t[i].nbytes &&
             fwrite(zeros, 1, pad, o.f) == pad;
    }
    free(h.p);
    if (!ok) {
        wim_errorf(err, errlen, "%s: cannot write: %s", path, strerror(errno ? errno : EIO));
        outfile_abort(&o);
        return -1;
    }
    return outfile_commit(&o, err, errlen);
}
