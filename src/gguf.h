/*
 * gguf.h — reading and writing GGUF files (v2 and v3).
 *
 * Owns: the on-disk format. A gguf_file is an mmap of the whole file plus a
 * parsed, fully validated index of its metadata and tensor table.
 *
 * Invariants once gguf_open succeeds:
 *  - every string, array and tensor lies inside the mapping;
 *  - tensor data is aligned to `alignment` (a power of two) and tensors do not
 *    overlap; dims are positive and their product does not overflow;
 *  - keys and tensor names are unique; every type is one the engine knows.
 * Nothing else in the engine bounds-checks the file again.
 */
#ifndef WIM_GGUF_H
#define WIM_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Metadata value types (GGUF spec). */
enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
};

/* Tensor types the engine computes with (ggml numbering). */
enum gguf_ttype {
    GGUF_T_F32 = 0,
    GGUF_T_F16 = 1,
    GGUF_T_Q4_0 = 2,
    GGUF_T_Q4_1 = 3,
    GGUF_T_Q5_0 = 6,
    GGUF_T_Q5_1 = 7,
    GGUF_T_Q8_0 = 8,
    GGUF_T_Q4_K = 12,
    GGUF_T_Q5_K = 13,
    GGUF_T_Q6_K = 14,
    GGUF_T_BF16 = 30,
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *ptr; /* not NUL-terminated: points into the mapping */
    uint64_t len;
} gguf_str;

/* A metadata value. Scalars are decoded; arrays point into the mapping. */
typedef struct gguf_value {
    enum gguf_vtype type;
    union {
        uint64_t u64; /* all unsigned integers and bool */
        int64_t i64;  /* all signed integers */
        double f64;   /* float32 and float64 */
        gguf_str str;
        struct {
            enum gguf_vtype type; /* element type */
            uint64_t n;
            const uint8_t *data;       /* first element's bytes in the mapping */
            struct gguf_value *values; /* decoded elements for arrays of strings
                                          or arrays (NULL for arrays of numbers) */
        } arr;
    } v;
} gguf_value;

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_str name;
    enum gguf_ttype type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    const void *data; /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    const uint8_t *base; /* the whole file's bytes */
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint64_t data_offset; /* start of the tensor data section */
    size_t header_bytes;  /* magic through the tensor table (what the fingerprint hashes) */
    size_t mapped;        /* base is ours (gguf_open), this many bytes to munmap; 0: a caller's */
    int huge_pages;       /* base is a copy in memory that asked for transparent huge pages */
} gguf_file;

/* Opens and validates. Returns 0, or -1 with "PATH: what is wrong" in err. */
int gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);
/* Same checks on a buffer the caller keeps alive (fuzzing, tests). */
int gguf_open_buffer(const void *buf, size_t size, const char *name, gguf_file **out, char *err,
                     size_t errlen);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters: return 1 and set *out when the key exists with a compatible
 * type (any integer type for ints, float32/64 for floats), 0 when absent,
 * -1 when present with an incompatible type or out of range. */
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
/* Returns a malloc'd NUL-terminated copy in *out (caller frees). */
int gguf_get_str(const gguf_file *f, const char *key, char **out);
/* Array accessors: 1 and element count / element type, 0 absent, -1 not an array. */
int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_vtype *elem_type, uint64_t *n);

/* Helpers about tensor types. */
const char *gguf_ttype_name(enum gguf_ttype t);
int gguf_ttype_known(uint32_t t);
uint64_t gguf_ttype_block(enum gguf_ttype t);       /* elements per block */
uint64_t gguf_ttype_block_bytes(enum gguf_ttype t); /* bytes per block */
uint64_t gguf_row_bytes(enum gguf_ttype t, uint64_t ne0);
const char *gguf_vtype_name(enum gguf_vtype t);
/* Bytes of one element of a numeric type (0 for strings and arrays). */
size_t gguf_vtype_size(enum gguf_vtype t);

/* FNV-1a 64 hash of the metadata and the tensor table (names, types, dims),
 * used to tie saved state (KV cache files, results) to a model. */
uint64_t gguf_fingerprint(const gguf_file *f);

/* ---- writer ----
 * Builds a GGUF v3 file in memory order and writes it atomically (temp file in
 * the same directory, fsync, rename), so a crash never leaves half a file. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Copies a metadata value (any type, arrays included) from an open file. */
void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Array of numbers: elem_type is a scalar vtype, data holds n packed elements. */
void gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                         const void *data, uint64_t n);
void gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* data (nbytes = gguf_row_bytes(type, ne[0]) * rows) is copied. */
void gguf_writer_add_tensor(gguf_writer *w, const char *name, enum gguf_ttype type, uint32_t n_dims,
                            const uint64_t *ne, const void *data);
/* Returns 0, or -1 with a message in err. */
int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
