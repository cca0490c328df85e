/*
 * fuzz_serve_request.c — the request bodies of `wim serve` on arbitrary bytes:
 * each is taken or refused with one line (which the server sends as a 400),
 * and what is taken is consistent: a question with exactly one of a document
 * id and a text, options within their ranges, a chat transcript that fits the
 * model's context with its completion. The first byte picks the endpoint
 * (documents, wim, chat completions); chats are tokenized by stories260K.
 */
#include "fuzz.h"
#include "model.h"
#include "serve.h"

static wim_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", fuzz_shared());
    if (wim_model_load(path, &model, err, sizeof err)) model = NULL;
    return 0;
}

static void one_line(const char *err) {
    FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char err[512];
    cJSON *o = request_json((const char *)data + 1, size - 1, err, sizeof err);
    if (!o) return one_line(err), 0;
    const wim_run_params base = wim_run_default_params();
    switch (data[0] % 3) {
    case 0: {
        document_request r;
        if (request_document(o, &r, err, sizeof err))
            one_line(err);
        else
            FUZZ_ASSERT(r.text != NULL, "a document without text");
        break;
    }
    case 1: {
        wim_request r;
        if (request_wim(o, &base, &r, err, sizeof err)) {
            one_line(err);
            break;
        }
        FUZZ_ASSERT(r.question && !r.document != !r.text, "question, document or text");
        FUZZ_ASSERT(r.p.margin_tokens >= 1 && r.p.top_k >= 1 && r.p.top_p >= 0 && r.p.top_p <= 1,
                    "an option out of range");
        break;
    }
    default:
        if (!model) break;
        job *j = job_new(JOB_CHAT, "c");
        if (!j) break;
        if (request_chat(o, model, &base, j, err, sizeof err))
            one_line(err);
        else
            FUZZ_ASSERT(j->n_prompt >= 1 && j->max_tokens >= 1 &&
                            j->n_prompt + j->max_tokens <= model->cfg.n_ctx_train,
                        "prompt %d + completion %d tokens", j->n_prompt, j->max_tokens);
        job_unref(j);
    }
    cJSON_Delete(o);
    return 0;
}
