/*
 * runner.c — runs one shard of a paper-repro experiment: documents at the
 * target length, every pattern on each, scored, one JSON line per result,
 * resumable after a crash (see runner.h for the invariants).
 */
#include "runner.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "verdict.h"
#include "model.h"
#include "repro_internal.h"

static const char *const pattern_names[] = {"wim", "llm", "rag"};

char *repro_results_path(const repro_run_params *p) {
    sbuf b = {0};
    sbuf_addf(&b, "%s/%s-%d-shard%dof%d.jsonl", p->out_dir, repro_task_name(p->task), p->length,
              p->shard, p->n_shards);
    return sbuf_take(&b);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* ---- resume: which (example, pattern) pairs are already in the file ---- */

typedef struct {
    char **keys;
    int n, cap;
} key_set;

static int key_has(const key_set *s, const char *k) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->keys[i], k)) return 1;
    return 0;
}

static int key_add(key_set *s, const char *k) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        char **keys = realloc(s->keys, (size_t)cap * sizeof *keys);
        if (!keys) return -1;
        s->keys = keys;
        s->cap = cap;
    }
    return (s->keys[s->n] = repro_strdup(k)) ? (s->n++, 0) : -1;
}

static void key_free(key_set *s) {
    for (int i = 0; i < s->n; i++)
        free(s->keys[i]);
    free(s->keys);
}

static char *result_key(const char *example_id, const char *pattern) {
    sbuf b = {0};
    sbuf_addf(&b, "%s\t%s", example_id, pattern);
    return sbuf_take(&b);
}

/* The first setting in which a result line differs from this run (the thread count aside:
 * results do not depend on it), as "NAME: THERE there, HERE here"; 0 when none differs. */
static int settings_differ(const cJSON *line, const cJSON *want, const char *fingerprint, char *why,
                           size_t cap) {
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(line, "model_fingerprint");
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, fingerprint))
        return snprintf(why, cap, "another model (fingerprint %s there, %s here)",
                        cJSON_IsString(fp) ? fp->valuestring : "none", fingerprint),
               1;
    const cJSON *have = cJSON_GetObjectItemCaseSensitive(line, "settings");
    for (const cJSON *w = want->child; w; w = w->next) {
        if (!strcmp(w->string, "threads")) continue;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
        if (h && cJSON_Compare(h, w, 1)) continue;
        char *a = h ? cJSON_PrintUnformatted(h) : NULL, *b = cJSON_PrintUnformatted(w);
        snprintf(why, cap, "%s: %s there, %s here", w->string, a ? a : "absent", b ? b : "?");
        free(a);
        free(b);
        return 1;
    }
    return 0;
}

/* Reads the finished keys and cuts a torn last line off the file. A file whose results were
 * made with other settings or another model is refused: resuming would mix them. */
static int load_done(const char *path, const cJSON *settings, const char *fingerprint,
                     key_set *done, char *err, size_t errlen) {
    size_t len;
    if (access(path, F_OK) != 0) return 0;
    char *text = repro_read_file(path, &len, err, errlen);
    if (!text) return -1;
    size_t keep = len;
    while (keep > 0 && text[keep - 1] != '\n')
        keep--;
    if (keep < len && truncate(path, (off_t)keep) != 0) {
        repro_errf(err, errlen, "%s: cannot cut the torn last line: %s", path, strerror(errno));
        free(text);
        return -1;
    }
    text[keep] = 0;
    int rc = 0;
    for (char *line = text, *nl; rc == 0 && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "example_id");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        char why[256];
        if (j && settings_differ(j, settings, fingerprint, why, sizeof why)) {
            repro_errf(err, errlen,
                       "%s holds results made with other settings (%s): resuming would mix "
                       "them; use another --out, or delete the file to start over",
                       path, why);
            cJSON_Delete(j);
            free(text);
            return -1;
        }
        if (cJSON_IsString(id) && cJSON_IsString(pat)) {
            char *k = result_key(id->valuestring, pat->valuestring);
            rc = !k || key_add(done, k) ? -1 : 0;
            free(k);
        }
        cJSON_Delete(j);
    }
    free(text);
    if (rc) repro_errf(err, errlen, "out of memory");
    return rc;
}

/* ---- the optional LLM judge ---- */

/* Asks the judge model whether prediction answers question like gold does.
 * Returns 1 / 0, or -1 on error. */
static int judge_answer(const wim_model *jm, const char *question, const char *gold,
                        const char *prediction, char *err, size_t errlen) {
    wim_chat chat;
    char *tmpl = NULL;
    gguf_get_str(jm->gguf, "tokenizer.chat_template", &tmpl);
    int rc = wim_chat_detect(tmpl, &chat, err, errlen);
    free(tmpl);
    if (rc) return -1;
    sbuf b = {0};
    sbuf_addf(&b,
              "%sYou grade answers to questions. Question: %s\nCorrect answer: %s\nProposed "
              "answer: %s\nDoes the proposed answer give the correct answer? Reply with YES or NO "
              "only.%s",
              chat.user_header, question, gold, prediction, chat.generation_header);
    char *prompt = sbuf_take(&b);
    int32_t *ids = NULL;
    int n =
        prompt ? wim_tokenize_alloc(jm->tok, prompt, strlen(prompt), 1, 1, &ids, err, errlen) : -1;
    free(prompt);
    wim_ctx_params cp = wim_ctx_default_params();
    cp.n_ctx = n + 8;
    wim_ctx *c = NULL;
    float *logits = malloc((size_t)jm->cfg.n_vocab * sizeof *logits);
    wim_sampler *s = wim_sampler_new(0, 1, 0, jm->cfg.n_vocab);
    int verdict = -1;
    if (ids && logits && s && wim_ctx_new(jm, &cp, &c, err, errlen) == 0 &&
        wim_eval(c, ids, n, logits, 0, err, errlen) == 0) {
        char text[128];
        int len = 0;
        wim_detok d;
        wim_detok_init(&d, jm->tok, -1, 0);
        for (int i = 0; i < 4; i++) {
            int32_t t = wim_sample(s, logits);
            if (wim_tokenizer_is_eog(jm->tok, t)) break;
            len += wim_detok_push(&d, t, text + len, (int)sizeof text - len - 8);
            if (wim_eval(c, &t, 1, logits, 0, err, errlen)) break;
        }
        text[len] = 0;
        verdict = wim_verdict_parse_lenient(text);
    }
    if (n < 0 || !ids) repro_errf(err, errlen, "judge: cannot tokenize the prompt");
    wim_ctx_free(c);
    wim_sampler_free(s);
    free(logits);
    free(ids);
    return verdict;
}

/* ---- one result line ---- */

static cJSON *settings_json(const repro_run_params *p) {
    const wim_run_params *r = &p->run;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "preset", p->preset ? p->preset : "none");
    cJSON_AddNumberToObject(s, "segment_tokens", r->segment_tokens);
    cJSON_AddNumberToObject(s, "margin_tokens", r->margin_tokens);
    cJSON_AddNumberToObject(s, "classify_tokens", r->classify_tokens);
    cJSON_AddNumberToObject(s, "answer_tokens", r->answer_tokens);
    cJSON_AddStringToObject(s, "classify",
                            r->classify == WIM_CLASSIFY_LOGIT ? "logit" : "generate");
    cJSON_AddBoolToObject(s, "lenient_classifier", r->lenient_classifier);
    cJSON_AddStringToObject(s, "retriever",
                            r->retriever == WIM_RETRIEVER_BM25 ? "bm25" : "classifier");
    cJSON_AddNumberToObject(s, "top_k", r->top_k);
    cJSON_AddNumberToObject(s, "temp", r->temp);
    cJSON_AddNumberToObject(s, "top_p", r->top_p);
    cJSON_AddNumberToObject(s, "seed", (double)p->seed);
    cJSON_AddStringToObject(s, "prompts", r->prompts_dir ? r->prompts_dir : "default");
    cJSON_AddStringToObject(s, "chat", r->chat ? r->chat : "auto");
    cJSON_AddBoolToObject(s, "stream", r->stream);
    cJSON_AddNumberToObject(s, "kv_capacity", r->ctx.n_ctx);
    cJSON_AddNumberToObject(s, "threads", r->ctx.n_threads);
    cJSON_AddStringToObject(s, "judge", p->judge_path ? p->judge_path : "none");
    return s;
}

static cJSON *strings_json(char **v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i] ? v[i] : ""));
    return a;
}

static int write_line(FILE *f, cJSON *j, char *err, size_t errlen) {
    char *line = cJSON_PrintUnformatted(j);
    int ok = line && fprintf(f, "%s\n", line) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    free(line);
    if (!ok) repro_errf(err, errlen, "cannot write a result line: %s", strerror(errno));
    return ok ? 0 : -1;
}

static int run_one(const wim_model *m, const repro_run_params *p, const repro_example *ex,
                   const char *doc, int doc_tokens, wim_pattern pat, FILE *out, char *err,
                   size_t errlen) {
    wim_run_params rp = p->run;
    rp.pattern = pat;
    wim_result res;
    if (wim_run(m, doc, strlen(doc), ex->question, &rp, NULL, NULL, &res, err, errlen)) return -1;
    repro_score sc;
    repro_score_prediction(p->task, ex, res.answer, &sc);
    cJSON *j = cJSON_CreateObject();
    const char *slash = strrchr(p->model_path, '/');
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)m->fingerprint);
    cJSON_AddStringToObject(j, "task", repro_task_name(p->task));
    cJSON_AddNumberToObject(j, "length", p->length);
    cJSON_AddStringToObject(j, "example_id", ex->id);
    cJSON_AddStringToObject(j, "pattern", pattern_names[pat]);
    cJSON_AddStringToObject(j, "model", slash ? slash + 1 : p->model_path);
    cJSON_AddStringToObject(j, "model_fingerprint", fp);
    cJSON_AddStringToObject(j, "question", ex->question);
    cJSON_AddItemToObject(j, "gold", strings_json(ex->answers, ex->n_answers));
    cJSON_AddStringToObject(j, "prediction", res.answer);
    cJSON_AddItemToObject(j, "margins",
                          strings_json(res.margins, pat == WIM_PATTERN_WIM ? res.n_segments : 0));
    cJSON *v = cJSON_AddArrayToObject(j, "verdicts");
    for (int i = 0; i < res.n_segments; i++)
        cJSON_AddItemToArray(v, cJSON_CreateBool(res.relevant[i]));
    cJSON *s = cJSON_AddObjectToObject(j, "score");
    cJSON_AddNumberToObject(s, "score", sc.score);
    cJSON_AddNumberToObject(s, "em", sc.em);
    cJSON_AddNumberToObject(s, "f1", sc.f1);
    cJSON_AddNumberToObject(s, "accuracy", sc.accuracy);
    cJSON_AddNumberToObject(s, "precision", sc.precision);
    cJSON_AddNumberToObject(s, "recall", sc.recall);
    if (p->judge) {
        int jv = judge_answer(p->judge, ex->question, ex->n_answers ? ex->answers[0] : "",
                              res.answer, err, errlen);
        if (jv < 0) {
            cJSON_Delete(j);
            wim_result_free(&res);
            return -1;
        }
        cJSON_AddNumberToObject(s, "judge", jv);
    }
    cJSON_AddNumberToObject(j, "doc_tokens", doc_tokens);
    cJSON_AddNumberToObject(j, "segments", res.n_segments);
    cJSON_AddNumberToObject(j, "tokens_prefilled", (double)res.tokens_prefilled);
    cJSON_AddNumberToObject(j, "tokens_decoded", (double)res.tokens_decoded);
    cJSON_AddNumberToObject(j, "ms", res.ms_total);
    cJSON_AddItemToObject(j, "settings", settings_json(p));
    int rc = write_line(out, j, err, errlen);
    if (p->verbose && rc == 0)
        fprintf(stderr, "repro: %s %s %s: score %.3f (%d segments, %.1f s)\n",
                repro_task_name(p->task), ex->id, pattern_names[pat], sc.score, res.n_segments,
                res.ms_total / 1e3);
    cJSON_Delete(j);
    wim_result_free(&res);
    return rc;
}

static int load_examples(const wim_model *m, const repro_run_params *p, repro_dataset *ds,
                         char *err, size_t errlen) {
    if (p->task != REPRO_CWE)
        return repro_load(p->task, p->data_path, 0, ds, err, errlen); /* all: the distractor pool */
    repro_cwe_params cp = {p->word_files, p->n_word_files, 10, 30, 3, p->length, p->seed};
    return repro_cwe_generate(m->tok, &cp, p->n > 0 ? p->n : 100, ds, err, errlen);
}

int repro_run(const wim_model *m, const repro_run_params *p, char *err, size_t errlen) {
    if (p->n_shards < 1 || p->shard < 0 || p->shard >= p->n_shards) {
        repro_errf(err, errlen, "shard %d/%d: need 0 <= i < n", p->shard, p->n_shards);
        return -1;
    }
    repro_dataset ds = {0};
    key_set done = {0};
    char *path = repro_results_path(p);
    FILE *out = NULL;
    int rc = -1;
    cJSON *settings = settings_json(p);
    char fingerprint[32];
    snprintf(fingerprint, sizeof fingerprint, "%016llx", (unsigned long long)m->fingerprint);
    /* the data first: a bad --data leaves no empty --out behind */
    if (!path || !settings || load_examples(m, p, &ds, err, errlen)) goto end;
    if (mkdir(p->out_dir, 0755) != 0 && errno != EEXIST) {
        repro_errf(err, errlen, "%s: cannot create: %s", p->out_dir, strerror(errno));
        goto end;
    }
    if (load_done(path, settings, fingerprint, &done, err, errlen)) goto end;
    if (!(out = fopen(path, "a"))) {
        repro_errf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        goto end;
    }
    int n = p->n > 0 && p->n < ds.n ? p->n : ds.n;
    rc = 0;
    for (int i = p->shard; i < n && rc == 0; i += p->n_shards) {
        const repro_example *ex = &ds.ex[i];
        int todo = 0;
        for (int k = 0; k < p->n_patterns; k++) {
            char *key = result_key(ex->id, pattern_names[p->patterns[k]]);
            todo += key && !key_has(&done, key);
            free(key);
        }
        if (!todo) continue; /* finished before a crash or an earlier run */
        int doc_tokens = 0;
        char *doc = repro_build_document(ex, &ds, m->tok, p->length, p->seed ^ fnv1a(ex->id),
                                         &doc_tokens, err, errlen);
        if (!doc) {
            rc = -1;
            break;
        }
        for (int k = 0; k < p->n_patterns && rc == 0; k++) {
            char *key = result_key(ex->id, pattern_names[p->patterns[k]]);
            if (key && !key_has(&done, key))
                rc = run_one(m, p, ex, doc, doc_tokens, p->patterns[k], out, err, errlen);
            free(key);
        }
        free(doc);
    }
end:
    if (out && fclose(out) != 0 && rc == 0) {
        repro_errf(err, errlen, "%s: cannot write", path);
        rc = -1;
    }
    free(path);
    cJSON_Delete(settings);
    key_free(&done);
    repro_dataset_free(&ds);
    return rc;
}
