/*
 * cmd_info.c — `wim info`: a model's architecture, hyper-parameters, tensors
 * and memory; --cpu the kernels chosen; --dump a tensor's rows as decoded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf.h"
#include "model.h"
#include "simd.h"
#include "tokenizer.h"
#include "wim.h"

static const char *const info_usage =
    "usage: wim info [-m MODEL] [--cpu] [--no-tensors] [--meta] [--dump TENSOR [-n ROWS]]\n"
    "  Prints the model's architecture, hyper-parameters, tensor types and counts,\n"
    "  tensor table and memory estimate; --cpu prints the detected CPU features and\n"
    "  the kernel set chosen. --meta prints the GGUF file as it is: every metadata key\n"
    "  with its type and value (long strings and arrays shortened), then every tensor\n"
    "  with its type, shape, byte offset in the file and size. --dump prints the first\n"
    "  ROWS rows (default 4) of a weight tensor as the engine decodes them (any type),\n"
    "  one row a line.\n";

/* Prints rows of a tensor as decoded floats (what a teacher or a quantizer test
 * wants to see of a weight type). */
static int dump_tensor(const wim_model *m, const char *name, long rows) {
    int n_in = 0, n_rows = 0;
    if (wim_model_tensor_shape(m, name, &n_in, &n_rows))
        return cli_error("info: no matrix or vector tensor named '%s'", name);
    float *row = malloc((size_t)n_in * sizeof *row);
    if (!row) return cli_error("info: out of memory");
    for (int r = 0; r < n_rows && r < rows; r++) {
        wim_model_tensor_row(m, name, r, row);
        for (int i = 0; i < n_in; i++)
            printf(i ? " %.9g" : "%.9g", row[i]);
        printf("\n");
    }
    free(row);
    return 0;
}

/* A string as one line: at most max bytes, control characters escaped. */
static void put_text(const char *p, uint64_t len, uint64_t max) {
    putchar('"');
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (len > max) printf("... (%llu bytes)", (unsigned long long)len);
}

/* One element of an array of numbers, from its bytes in the mapping. */
static void put_number(enum gguf_vtype t, const uint8_t *b) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint64_t u64;
        int64_t i64;
        double f64;
    } v;
    memcpy(&v, b, gguf_vtype_size(t));
    switch (t) {
    case GGUF_VT_UINT8:
        printf("%u", v.u8);
        break;
    case GGUF_VT_INT8:
        printf("%d", v.i8);
        break;
    case GGUF_VT_UINT16:
        printf("%u", v.u16);
        break;
    case GGUF_VT_INT16:
        printf("%d", v.i16);
        break;
    case GGUF_VT_UINT32:
        printf("%u", v.u32);
        break;
    case GGUF_VT_INT32:
        printf("%d", v.i32);
        break;
    case GGUF_VT_FLOAT32:
        printf("%g", v.f32);
        break;
    case GGUF_VT_BOOL:
        printf("%s", v.u8 ? "true" : "false");
        break;
    case GGUF_VT_UINT64:
        printf("%llu", (unsigned long long)v.u64);
        break;
    case GGUF_VT_INT64:
        printf("%lld", (long long)v.i64);
        break;
    default:
        printf("%g", v.f64);
        break;
    }
}

static void put_value(const gguf_value *v) {
    switch (v->type) {
    case GGUF_VT_STRING:
        put_text(v->v.str.ptr, v->v.str.len, 60);
        break;
    case GGUF_VT_ARRAY: {
        const enum gguf_vtype et = v->v.arr.type;
        printf("[%s x %llu]", gguf_vtype_name(et), (unsigned long long)v->v.arr.n);
        for (uint64_t i = 0; i < v->v.arr.n && i < 4; i++) {
            fputs(i ? ", " : " ", stdout);
            if (v->v.arr.values)
                put_value(&v->v.arr.values[i]);
            else
                put_number(et, v->v.arr.data + i * gguf_vtype_size(et));
        }
        if (v->v.arr.n > 4) fputs(", ...", stdout);
        break;
    }
    case GGUF_VT_BOOL:
        printf("%s", v->v.u64 ? "true" : "false");
        break;
    case GGUF_VT_FLOAT32:
    case GGUF_VT_FLOAT64:
        printf("%g", v->v.f64);
        break;
    case GGUF_VT_INT8:
    case GGUF_VT_INT16:
    case GGUF_VT_INT32:
    case GGUF_VT_INT64:
        printf("%lld", (long long)v->v.i64);
        break;
    default:
        printf("%llu", (unsigned long long)v->v.u64);
        break;
    }
}

/* The file as it is: its header, every key, every tensor with where its bytes lie. */
static void describe_gguf(const gguf_file *f) {
    printf("gguf v%u, %llu keys, %llu tensors, alignment %llu, tensor data from byte %llu\n\n",
           f->version, (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors,
           (unsigned long long)f->alignment, (unsigned long long)f->data_offset);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        printf("%-44.*s %-8s ", (int)kv->key.len, kv->key.ptr, gguf_vtype_name(kv->value.type));
        put_value(&kv->value);
        putchar('\n');
    }
    printf("\n%-36s %-6s %-22s %12s %12s\n", "tensor", "type", "shape", "offset", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char shape[64] = "[";
        for (uint32_t d = 0; d < t->n_dims; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", d ? ", " : "",
                     (unsigned long long)t->ne[d]);
        strncat(shape, "]", sizeof shape - strlen(shape) - 1);
        printf("%-36.*s %-6s %-22s %12llu %12llu\n", (int)t->name.len, t->name.ptr,
               gguf_ttype_name(t->type), shape, (unsigned long long)(f->data_offset + t->offset),
               (unsigned long long)t->nbytes);
    }
}

int cmd_info(int argc, char **argv) {
    if (cli_wants_help(argc, argv, info_usage)) return 0;
    cli_opts o = {.tensors = 1, .n = 4};
    int rc = cli_parse_opts(argc, argv, O_MODEL | O_INFO | O_N, &o);
    if (rc) return rc;
    if (o.cpu) {
        char buf[512];
        wim_cpu_describe(buf, sizeof buf);
        printf("cpu            %s\nkernels        %s\n", buf, wim_kernels_get()->isa);
        if (!o.model) return 0;
    }
    wim_model *m;
    if ((rc = cli_load_model(o.model, &m))) return rc;
    if (o.meta) {
        describe_gguf(m->gguf);
        wim_model_free(m);
        return 0;
    }
    if (o.dump) {
        rc = dump_tensor(m, o.dump, o.n);
        wim_model_free(m);
        return rc;
    }
    wim_model_describe(m, stdout, o.tensors);
    wim_model_free(m);
    return 0;
}
