/*
 * cmd_info.c — `wim info`: a model's architecture, hyper-parameters, tensors
 * and memory; --cpu the kernels chosen; --dump a tensor's rows as decoded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "simd.h"
#include "tokenizer.h"
#include "wim.h"

static const char *const info_usage =
    "usage: wim info [-m MODEL] [--cpu] [--no-tensors] [--dump TENSOR [-n ROWS]]\n"
    "  Prints the model's architecture, hyper-parameters, tensor types and counts,\n"
    "  tensor table and memory estimate; --cpu prints the detected CPU features and\n"
    "  the kernel set chosen. --dump prints the first ROWS rows (default 4) of a weight\n"
    "  tensor as the engine decodes them (any type), one row a line.\n";

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
    if (o.dump) {
        rc = dump_tensor(m, o.dump, o.n);
        wim_model_free(m);
        return rc;
    }
    wim_model_describe(m, stdout, o.tensors);
    wim_model_free(m);
    return 0;
}
