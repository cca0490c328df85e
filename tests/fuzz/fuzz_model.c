/*
 * fuzz_model.c — model loading and one forward step on arbitrary bytes: a file
 * loads or is refused with one line; a model that loads runs two tokens
 * through a small context, and its logits are finite or the step fails with
 * one line (non-finite activations are an error naming the layer). Seeds are
 * tiny random models of each architecture (tests/fuzz/make-seeds.sh).
 */
#include <math.h>

#include "fuzz.h"
#include "wim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (4 << 20)) return 0;
    char path[64], err[512];
    int fd = fuzz_file(data, size, path);
    if (fd < 0) return 0;
    wim_model *m;
    if (wim_model_load(path, &m, err, sizeof err)) {
        FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
        close(fd);
        return 0;
    }
    wim_ctx_params cp = wim_ctx_default_params();
    cp.n_threads = 1, cp.n_ctx = 8, cp.chunk = 4;
    wim_ctx *c;
    const int nv = wim_model_n_vocab(m);
    float *logits = malloc((size_t)nv * 2 * sizeof *logits);
    if (logits && wim_ctx_new(m, &cp, &c, err, sizeof err) == 0) {
        int32_t toks[2] = {0, nv - 1};
        if (wim_eval(c, toks, 2, logits, 1, err, sizeof err) == 0) {
            for (int i = 0; i < 2 * nv; i++)
                FUZZ_ASSERT(isfinite(logits[i]), "logit %d is %g", i, logits[i]);
        } else {
            FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
        }
        wim_ctx_free(c);
    }
    free(logits);
    wim_model_free(m);
    close(fd);
    return 0;
}
