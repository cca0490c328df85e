/*
 * fuzz_repro_load.c — paper-repro's dataset loaders on arbitrary bytes: each
 * task's file loads or is refused with one line naming it, and what loads is
 * consistent (every example has a question and an answer, every paragraph its
 * text). The first byte picks the task.
 */
#include "fuzz.h"
#include "repro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const repro_task tasks[] = {REPRO_HOTPOTQA, REPRO_SQUAD, REPRO_MULTIHOP_RAG,
                                       REPRO_BABILONG};
    if (size < 1 || size > (1 << 20)) return 0;
    repro_task task = tasks[data[0] % 4];
    char path[64], err[512];
    int fd = fuzz_file(data + 1, size - 1, path);
    if (fd < 0) return 0;
    repro_dataset d;
    if (repro_load(task, path, 0, &d, err, sizeof err) == 0) {
        for (int i = 0; i < d.n; i++) {
            const repro_example *e = &d.ex[i];
            FUZZ_ASSERT(e->question && e->n_answers >= 1, "example %d lacks a question or answer",
                        i);
            for (int k = 0; k < e->n_paras; k++)
                FUZZ_ASSERT(e->paras[k].text, "example %d paragraph %d without text", i, k);
        }
        repro_dataset_free(&d);
    } else {
        FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
    }
    close(fd);
    return 0;
}
