/*
 * serve_jobs.c — the queue of `wim serve` and the one worker that runs it.
 *
 * Owns: the jobs waiting (first in, first out, at most opts.queue of them),
 * the running one, and what each kind of job does: read a document into the
 * store, ask a question (wim_doc_ask on a document read before, wim_run on a
 * text), complete a chat. Invariants: one job computes at a time (the model's
 * threads are all its own); a job's events are appended under its mutex and
 * never change once appended, so a stream can send them while more come; a
 * job is finished exactly once, and freed when its last reference goes (the
 * queue's and each HTTP thread's).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "model.h"
#include "serve.h"
#include "tokenizer.h"

struct serve_queue {
    const wim_model *m;
    serve_docs *docs;
    const serve_opts *o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail, *running;
    int waiting, quit;
    unsigned long next_id;
    double avg_ms; /* a job's running time, smoothed (Retry-After) */
    pthread_t worker;
};

const char *serve_model_name(const wim_model *m) {
    const char *slash = strrchr(m->gguf->path, '/');
    return slash ? slash + 1 : m->gguf->path;
}

job *job_new(job_kind kind, const char *run_id) {
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->kind = kind;
    j->refs = 1;
    snprintf(j->id, sizeof j->id, "%s", run_id);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    return j;
}

void job_unref(job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    for (int i = 0; i < j->n_events; i++)
        free(j->events[i]);
    free(j->events);
    for (int i = 0; i < j->n_stop; i++)
        free(j->stop[i]);
    free(j->stop);
    free(j->text);
    free(j->question);
    free(j->prompt);
    free(j->body);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Appends one payload (owned by the job from now on); NULL (out of memory) is dropped. */
static void job_push(job *j, char *payload) {
    if (!payload) return;
    pthread_mutex_lock(&j->mu);
    if (j->n_events == j->cap_events) {
        int cap = j->cap_events ? 2 * j->cap_events : 16;
        char **e = realloc(j->events, (size_t)cap * sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&j->mu);
            free(payload);
            return;
        }
        j->events = e;
        j->cap_events = cap;
    }
    j->events[j->n_events++] = payload;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static char *json_take(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* The outcome: an HTTP status and body; a stream gets a failure as an error event. */
static void job_finish(job *j, int status, char *body) {
    pthread_mutex_lock(&j->mu);
    j->status = status;
    j->body = body;
    j->finished = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_fail(job *j, int status, const char *msg) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddNumberToObject(e, "code", status);
    if (j->stream) job_push(j, json_take(cJSON_Duplicate(e, 1)));
    cJSON *body = cJSON_CreateObject(), *inner = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(inner, "message", msg);
    cJSON_AddStringToObject(inner, "type", status == 413 ? "too_large" : "invalid_request_error");
    cJSON_AddNumberToObject(inner, "code", status);
    cJSON_Delete(e);
    job_finish(j, status, json_take(body));
}

void job_wait(job *j) {
    pthread_mutex_lock(&j->mu);
    while (!j->finished)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

/* ---- the kinds of job ---- */

static void on_event(const wim_event *ev, void *user) {
    job *j = user;
    char small[1024];
    size_t n = wim_event_json(ev, small, sizeof small);
    char *line = malloc(n + 1);
    if (!line) return;
    if (n < sizeof small)
        memcpy(line, small, n + 1);
    else
        wim_event_json(ev, line, n + 1);
    job_push(j, line);
}

static void run_read(serve_queue *q, job *j) {
    char err[512];
    int n = wim_tokenize(q->m->tok, j->text, j->text_len, 0, 0, NULL, 0, err, sizeof err);
    if (n < 0) return job_fail(j, 400, err);
    if (n > q->o->max_doc_tokens) {
        snprintf(err, sizeof err,
                 "the document has %d tokens; this server reads at most %d "
                 "(--max-doc-tokens)",
                 n, q->o->max_doc_tokens);
        return job_fail(j, 413, err);
    }
    const double t0 = wim_now_ms();
    wim_doc *d;
    if (wim_doc_read(q->m, j->text, j->text_len, &j->p, on_event, j, &d, err, sizeof err))
        return job_fail(j, 400, err);
    char id[16];
    size_t bytes = wim_doc_bytes(d);
    if (docs_add(q->docs, d, id)) {
        snprintf(err, sizeof err,
                 "the document needs %.1f MiB of cache; this server keeps at "
                 "most %.1f MiB (--cache-mb)",
                 bytes / 1048576.0, q->o->cache_bytes / 1048576.0);
        wim_doc_free(d);
        return job_fail(j, 413, err);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "tokens", wim_doc_document_tokens(d));
    cJSON_AddNumberToObject(o, "cache_tokens", wim_doc_tokens(d));
    cJSON_AddNumberToObject(o, "segments", wim_doc_segments(d));
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "ms", wim_now_ms() - t0);
    if (j->stream) {
        cJSON *ev = cJSON_Duplicate(o, 1);
        cJSON_AddStringToObject(ev, "event", "document");
        job_push(j, json_take(ev));
    }
    job_finish(j, 201, json_take(o));
}

/* The payload of the last event, if it is a done event (a run that finished). */
static cJSON *done_event(job *j) {
    pthread_mutex_lock(&j->mu);
    cJSON *o = j->n_events ? cJSON_Parse(j->events[j->n_events - 1]) : NULL;
    pthread_mutex_unlock(&j->mu);
    cJSON *type = cJSON_GetObjectItem(o, "event");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "done")) {
        cJSON_DeleteItemFromObject(o, "event");
        return o;
    }
    cJSON_Delete(o);
    return NULL;
}

static void run_wim(serve_queue *q, job *j) {
    char err[512];
    wim_result res;
    j->p.interrupt = &j->interrupt;
    int rc;
    if (j->doc)
        rc = wim_doc_ask(j->doc, j->question, &j->p, on_event, j, &res, err, sizeof err);
    else
        rc = wim_run(q->m, j->text, j->text_len, j->question, &j->p, on_event, j, &res, err,
                     sizeof err);
    if (j->doc) {
        docs_release(q->docs, j->doc_id);
        j->doc = NULL;
    }
    if (rc) return job_fail(j, 400, err);
    size_t n;
    const char *a = wim_answer_text(res.answer, &n);
    cJSON *o = cJSON_CreateObject(), *ms = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "id", j->id);
    char *answer = strndup(a, n);
    cJSON_AddStringToObject(o, "answer", answer ? answer : "");
    free(answer);
    cJSON_AddBoolToObject(o, "interrupted", res.interrupted);
    cJSON_AddNumberToObject(o, "segments", res.n_segments);
    for (int i = 0; i < res.n_segments; i++) {
        if (!res.margins[i]) continue;
        cJSON *mg = cJSON_CreateObject();
        cJSON_AddNumberToObject(mg, "index", i);
        cJSON_AddStringToObject(mg, "text", res.margins[i]);
        cJSON_AddBoolToObject(mg, "relevant", res.relevant[i]);
        cJSON_AddItemToArray(ms, mg);
    }
    cJSON_AddItemToObject(o, "margins", ms);
    cJSON *done = done_event(j);
    if (done) cJSON_AddItemToObject(o, "timings", done);
    wim_result_free(&res);
    job_finish(j, 200, json_take(o));
}

/* ---- chat completions (the OpenAI API's shape) ---- */

static cJSON *chat_chunk(const job *j, const serve_queue *q, time_t created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", serve_model_name(q->m));
    return o;
}

static void push_delta(job *j, serve_queue *q, time_t created, const char *role, const char *text,
                       size_t len, const char *finish) {
    cJSON *o = chat_chunk(j, q, created), *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject(), *delta = cJSON_AddObjectToObject(c, "delta");
    cJSON_AddNumberToObject(c, "index", 0);
    if (role) cJSON_AddStringToObject(delta, "role", role);
    if (text) {
        char *t = strndup(text, len);
        cJSON_AddStringToObject(delta, "content", t ? t : "");
        free(t);
    }
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    job_push(j, json_take(o));
}

/* Where the first stop string starts in text[0, len) at or after from; -1 if none. */
static long find_stop(const job *j, const char *text, size_t len, size_t from) {
    long best = -1;
    for (int i = 0; i < j->n_stop; i++) {
        const char *hit = memmem(text + from, len - from, j->stop[i], strlen(j->stop[i]));
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}

static void run_chat(serve_queue *q, job *j) {
    char err[512];
    const wim_model *m = q->m;
    wim_ctx_params cp = j->p.ctx;
    cp.n_ctx = j->n_prompt + j->max_tokens;
    cp.kv_pin = -1;
    wim_ctx *c = NULL;
    wim_sampler *s = wim_sampler_new(j->p.temp, j->p.top_p, j->p.seed, m->cfg.n_vocab);
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    size_t cap = 1024, len = 0, sent = 0, max_stop = 0;
    char *text = malloc(cap);
    if (!s || !logits || !text) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < j->n_stop; i++)
        if (strlen(j->stop[i]) > max_stop) max_stop = strlen(j->stop[i]);
    if (wim_ctx_new(m, &cp, &c, err, sizeof err) ||
        wim_eval(c, j->prompt, j->n_prompt, logits, 0, err, sizeof err))
        goto fail;
    const time_t created = time(NULL);
    if (j->stream) push_delta(j, q, created, "assistant", "", 0, NULL);
    wim_detok d;
    wim_detok_init(&d, m->tok, j->prompt[j->n_prompt - 1], 0);
    const char *finish = "length";
    int n = 0;
    long stop_at = -1;
    for (; n < j->max_tokens && !j->interrupt; n++) {
        int32_t next = wim_sample(s, logits);
        if (wim_tokenizer_is_eog(m->tok, next)) {
            finish = "stop";
            break;
        }
        char piece[256];
        int nb = wim_detok_push(&d, next, piece, sizeof piece);
        if (len + (size_t)nb + 1 > cap) {
            char *t = realloc(text, cap = 2 * cap + (size_t)nb);
            if (!t) {
                snprintf(err, sizeof err, "out of memory");
                goto fail;
            }
            text = t;
        }
        memcpy(text + len, piece, (size_t)nb);
        len += (size_t)nb;
        if (j->n_stop && (stop_at = find_stop(j, text, len, sent)) >= 0) {
            finish = "stop";
            n++;
            break;
        }
        /* a stream holds back what could still become a stop string, cut at a character */
        const size_t hold = max_stop ? max_stop - 1 : 0;
        size_t safe = len > hold ? len - hold : 0;
        while (safe > sent && safe < len && ((unsigned char)text[safe] & 0xC0) == 0x80)
            safe--;
        if (j->stream && safe > sent) {
            push_delta(j, q, created, NULL, text + sent, safe - sent, NULL);
            sent = safe;
        }
        if (n + 1 < j->max_tokens && wim_eval(c, &next, 1, logits, 0, err, sizeof err)) goto fail;
    }
    if (stop_at >= 0)
        len = (size_t)stop_at;
    else
        len += (size_t)wim_detok_flush(&d, text + len, (int)(cap - len - 1));
    text[len] = 0;
    if (j->stream) {
        if (len > sent) push_delta(j, q, created, NULL, text + sent, len - sent, NULL);
        push_delta(j, q, created, NULL, NULL, 0, finish);
        job_push(j, strdup("[DONE]"));
    }
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", serve_model_name(m));
    cJSON *ch = cJSON_CreateObject(), *msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", text);
    cJSON_AddStringToObject(ch, "finish_reason", finish);
    cJSON_AddItemToArray(choices, ch);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", j->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n);
    cJSON_AddNumberToObject(u, "total_tokens", j->n_prompt + n);
    job_finish(j, 200, json_take(o));
    goto done;
fail:
    job_fail(j, 400, err);
done:
    free(text);
    free(logits);
    wim_sampler_free(s);
    wim_ctx_free(c);
}

/* ---- the queue and its worker ---- */

static const char *const kind_names[] = {"read", "wim", "chat"};

static void *worker(void *arg) {
    serve_queue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->quit)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->quit) {
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        job *j = q->head;
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        q->waiting--;
        q->running = j;
        pthread_mutex_unlock(&q->mu);
        const double t0 = wim_now_ms();
        if (j->kind == JOB_READ)
            run_read(q, j);
        else if (j->kind == JOB_WIM)
            run_wim(q, j);
        else
            run_chat(q, j);
        const double ms = wim_now_ms() - t0;
        if (!q->o->quiet)
            fprintf(stderr, "wim: serve: %s %s %d in %.0f ms%s\n", j->id, kind_names[j->kind],
                    j->status, ms, j->interrupt ? " (stopped early)" : "");
        pthread_mutex_lock(&q->mu);
        q->avg_ms = q->avg_ms ? 0.8 * q->avg_ms + 0.2 * ms : ms;
        q->running = NULL;
        pthread_mutex_unlock(&q->mu);
        job_unref(j);
    }
}

serve_queue *queue_new(const wim_model *m, serve_docs *docs, const serve_opts *o) {
    serve_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->m = m, q->docs = docs, q->o = o;
    q->next_id = 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->worker, NULL, worker, q)) {
        free(q);
        return NULL;
    }
    return q;
}

void queue_close(serve_queue *q) {
    pthread_mutex_lock(&q->mu);
    int was = q->quit;
    q->quit = 1;
    if (q->running) q->running->interrupt = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (was) return;
    pthread_join(q->worker, NULL); /* the running job answers from what it has */
    for (job *j = q->head, *n; j; j = n) {
        n = j->next;
        if (j->doc) docs_release(q->docs, j->doc_id);
        j->doc = NULL;
        job_fail(j, 503, "the server is shutting down");
        job_unref(j);
    }
    q->head = q->tail = NULL;
    q->waiting = 0;
}

void queue_free(serve_queue *q) {
    if (!q) return;
    queue_close(q);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

/* Whether j has answered (under j->mu; callers may hold q->mu: always q->mu, then j->mu). */
static int answered(job *j) {
    pthread_mutex_lock(&j->mu);
    int done = j->finished;
    pthread_mutex_unlock(&j->mu);
    return done;
}

/* The job by that id still to answer; one that has answered is gone to its client (a stop
 * finds nothing to stop, and the id is free again), though the worker may still tidy up. */
static job *active(serve_queue *q, const char *id) {
    if (q->running && !strcmp(q->running->id, id) && !answered(q->running)) return q->running;
    for (job *j = q->head; j; j = j->next)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

int queue_push(serve_queue *q, job *j, int *retry_after) {
    pthread_mutex_lock(&q->mu);
    if (active(q, j->id)) {
        pthread_mutex_unlock(&q->mu);
        return -2;
    }
    /* the running job does not count: --queue 0 runs one request at a time, nothing waits
     * (and a job that has answered is done, though the worker is still tidying up) */
    const int busy = q->running && !answered(q->running);
    if ((q->waiting >= q->o->queue && (busy || q->waiting)) || q->quit) {
        double s = q->avg_ms * (q->waiting + 1) / 1e3;
        *retry_after = s < 1 ? 1 : s > 3600 ? 3600 : (int)(s + 0.999);
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->waiting++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int queue_stop(serve_queue *q, const char *id) {
    pthread_mutex_lock(&q->mu);
    job *j = active(q, id);
    if (j) j->interrupt = 1;
    pthread_mutex_unlock(&q->mu);
    return j ? 0 : -1;
}

int queue_waiting(serve_queue *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->waiting;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void queue_next_id(serve_queue *q, char *id, size_t cap) {
    pthread_mutex_lock(&q->mu);
    snprintf(id, cap, "r%lu", q->next_id++);
    pthread_mutex_unlock(&q->mu);
}
