/*
 * serve_http.c — the HTTP front end of `wim serve` (libmicrohttpd, a thread
 * per connection): routing, the API key, body and document limits, JSON in,
 * JSON or Server-Sent Events out.
 *
 * Owns: each connection's request (its body, up to --max-body-mb) and the
 * translation of a request into a job or an answer from the store. Invariants:
 * nothing here computes with the model (tokenizing a chat transcript aside);
 * a request is refused with one JSON error line (400 malformed, 401 key, 403
 * foreign Host on loopback, 404 unknown, 405 method, 409 run id in use, 413
 * too large, 415 not JSON, 503 queue full with Retry-After) before any job
 * exists; a stream's status is 200 once its job is queued and failures after
 * that arrive as an error event. No request reaches the file system.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "chat.h"
#include "gguf.h"
#include "model.h"
#include "serve.h"
#include "tokenizer.h"
#include "unicode.h"

typedef struct {
    const wim_model *m;
    const serve_opts *o;
    serve_docs *docs;
    serve_queue *q;
    int loopback; /* bound to a loopback address: Host must name it (DNS rebinding) */
} server;

/* One connection's request as it arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    double t0;
} request;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type,
                                 const char *body, size_t len, const char *header,
                                 const char *value) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (header) MHD_add_response_header(r, header, value);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) return MHD_NO;
    enum MHD_Result ok = send_text(c, status, "application/json", s, strlen(s), NULL, NULL);
    free(s);
    return ok;
}

static const char *error_type(int status) {
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 415:
        return "unsupported_media_type";
    case 503:
        return "server_busy";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* {"error":{"message":...,"type":...,"code":status}} (the OpenAI API's shape). */
static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *header,
                                  const char *value, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", error_type(status));
    cJSON_AddNumberToObject(e, "code", status);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return MHD_NO;
    enum MHD_Result ok = send_text(c, status, "application/json", s, strlen(s), header, value);
    free(s);
    return ok;
}

#define FAIL(c, status, ...) send_error(c, status, NULL, NULL, __VA_ARGS__)

/* ---- streams: a job's payloads as Server-Sent Events ---- */

typedef struct {
    job *j;
    int next; /* the next payload to send */
    char *chunk;
    size_t off, len;
} sse;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    sse *s = cls;
    if (s->off == s->len) {
        job *j = s->j;
        free(s->chunk);
        s->chunk = NULL;
        s->off = s->len = 0;
        pthread_mutex_lock(&j->mu);
        if (s->next == j->n_events && !j->finished) {
            /* a comment now and then: a client that left is noticed when it fails */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&j->cv, &j->mu, &until);
        }
        int have = s->next < j->n_events, end = !have && j->finished;
        const char *payload = have ? j->events[s->next++] : NULL;
        pthread_mutex_unlock(&j->mu); /* payloads never change once pushed */
        if (end) return MHD_CONTENT_READER_END_OF_STREAM;
        if (payload) {
            s->len = strlen(payload) + 8;
            if ((s->chunk = malloc(s->len + 1)))
                snprintf(s->chunk, s->len + 1, "data: %s\n\n", payload);
        } else if ((s->chunk = strdup(": keep-alive\n\n")))
            s->len = strlen(s->chunk);
        if (!s->chunk) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->chunk + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

/* The stream is over: a client that closed it early stops its run (as Ctrl-C). */
static void sse_free(void *cls) {
    sse *s = cls;
    pthread_mutex_lock(&s->j->mu);
    if (!s->j->finished) s->j->interrupt = 1;
    pthread_mutex_unlock(&s->j->mu);
    job_unref(s->j);
    free(s->chunk);
    free(s);
}

/* Queues j and answers: a stream at once, or the outcome once finished. */
static enum MHD_Result submit(server *sv, struct MHD_Connection *c, job *j) {
    int retry;
    int rc = queue_push(sv->q, j, &retry);
    if (rc) {
        if (j->doc) docs_release(sv->docs, j->doc_id);
        j->doc = NULL;
        char id[sizeof j->id];
        memcpy(id, j->id, sizeof id);
        job_unref(j);
        if (rc == -2)
            return FAIL(c, 409, "run id '%s' is in use by a queued or running job", id);
        char secs[16];
        snprintf(secs, sizeof secs, "%d", retry);
        return send_error(c, 503, "Retry-After", secs,
                          "the queue is full (%d waiting, --queue); retry in %d s", sv->o->queue,
                          retry);
    }
    if (!j->stream) {
        job_wait(j);
        enum MHD_Result ok = send_text(c, j->status, "application/json", j->body,
                                       j->body ? strlen(j->body) : 0, NULL, NULL);
        job_unref(j);
        return ok;
    }
    sse *s = calloc(1, sizeof *s);
    struct MHD_Response *r =
        s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free) : NULL;
    if (!r) {
        free(s);
        j->interrupt = 1;
        job_unref(j);
        return MHD_NO;
    }
    s->j = j; /* the stream's reference */
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Wim-Run", j->id);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- request fields ---- */

/* Checks that every field of o is one of the names (NULL-terminated). */
static const char *unknown_field(const cJSON *o, const char *const *names) {
    for (const cJSON *f = o->child; f; f = f->next) {
        int known = 0;
        for (int i = 0; names[i] && !known; i++)
            known = !strcmp(f->string, names[i]);
        if (!known) return f->string;
    }
    return NULL;
}

static int get_int(const cJSON *o, const char *name, long lo, long hi, int *dst, char *err,
                   size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble ||
        v->valuedouble < lo || v->valuedouble > hi)
        return snprintf(err, errlen, "'%s' must be an integer in [%ld, %ld]", name, lo, hi), -1;
    *dst = (int)v->valuedouble;
    return 0;
}

static int get_float(const cJSON *o, const char *name, double lo, double hi, float *dst, char *err,
                     size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return snprintf(err, errlen, "'%s' must be a number in [%g, %g]", name, lo, hi), -1;
    *dst = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, int *dst, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return snprintf(err, errlen, "'%s' must be true or false", name), -1;
    *dst = cJSON_IsTrue(v);
    return 0;
}

static int get_enum(const cJSON *o, const char *name, const char *const *names, int n, int *dst,
                    char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    for (int i = 0; cJSON_IsString(v) && i < n; i++)
        if (!strcmp(v->valuestring, names[i])) return *dst = i, 0;
    int at = snprintf(err, errlen, "'%s' must be one of:", name);
    for (int i = 0; i < n && at > 0 && (size_t)at < errlen; i++)
        at += snprintf(err + at, errlen - (size_t)at, " %s", names[i]);
    return -1;
}

/* A string field (NULL when absent); -1 when present and not a string. */
static int get_string(const cJSON *o, const char *name, const char **dst, char *err,
                      size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    *dst = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return snprintf(err, errlen, "'%s' must be a string", name), -1;
    *dst = v->valuestring;
    return 0;
}

/* The per-question pipeline options on top of the server's. */
static int run_options(const cJSON *o, wim_run_params *p, char *err, size_t errlen) {
    static const char *const patterns[] = {"wim", "llm", "rag"};
    static const char *const classifiers[] = {"generate", "logit"};
    static const char *const retrievers[] = {"classifier", "bm25"};
    int e, seed = -1;
    int rc = get_int(o, "margin_tokens", 1, 1 << 16, &p->margin_tokens, err, errlen) ||
             get_int(o, "answer_tokens", 1, 1 << 16, &p->answer_tokens, err, errlen) ||
             get_int(o, "classify_tokens", 1, 1 << 16, &p->classify_tokens, err, errlen) ||
             get_int(o, "top_k", 1, 1 << 20, &p->top_k, err, errlen) ||
             get_int(o, "max_segments", 1, 1 << 24, &p->max_segments, err, errlen) ||
             get_int(o, "seed", 0, 0x7fffffffL, &seed, err, errlen) ||
             get_float(o, "temp", 0, 100, &p->temp, err, errlen) ||
             get_float(o, "top_p", 0, 1, &p->top_p, err, errlen) ||
             get_bool(o, "lenient_classifier", &p->lenient_classifier, err, errlen);
    if (rc) return -1;
    if (seed >= 0) p->seed = (uint64_t)seed;
    e = p->pattern;
    if (get_enum(o, "pattern", patterns, 3, &e, err, errlen)) return -1;
    p->pattern = e;
    e = p->classify;
    if (get_enum(o, "classify", classifiers, 2, &e, err, errlen)) return -1;
    p->classify = e;
    e = p->retriever;
    if (get_enum(o, "retriever", retrievers, 2, &e, err, errlen)) return -1;
    p->retriever = e;
    if (p->answer_from_margins && p->pattern != WIM_PATTERN_WIM) p->answer_from_margins = 0;
    return 0;
}

/* The body as a JSON object, or an error answered. */
static cJSON *parse_body(struct MHD_Connection *c, const request *rq, enum MHD_Result *ok) {
    for (size_t i = 0; i < rq->len;) {
        uint32_t cp;
        int n = wim_utf8_next((const unsigned char *)rq->body + i, rq->len - i, &cp);
        if (n <= 0) {
            *ok = FAIL(c, 400, "the request body is not valid UTF-8 (byte %zu)", i);
            return NULL;
        }
        i += (size_t)n;
    }
    const char *end = NULL;
    cJSON *o = rq->len ? cJSON_ParseWithLengthOpts(rq->body, rq->len, &end, 0) : NULL;
    if (!o) {
        *ok = rq->len
                  ? FAIL(c, 400, "malformed JSON at byte %ld", end ? (long)(end - rq->body) : 0L)
                  : FAIL(c, 400, "the request needs a JSON body");
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        *ok = FAIL(c, 400, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

/* ---- routes ---- */

static enum MHD_Result health(server *sv, struct MHD_Connection *c) {
    int n;
    size_t bytes;
    docs_usage(sv->docs, &n, &bytes);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "model", serve_model_name(sv->m));
    cJSON_AddStringToObject(o, "version", WIM_VERSION);
    cJSON_AddNumberToObject(o, "queue", queue_waiting(sv->q));
    cJSON_AddNumberToObject(o, "documents", n);
    cJSON_AddNumberToObject(o, "cache_bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "cache_limit_bytes", (double)sv->o->cache_bytes);
    return send_json(c, 200, o);
}

static enum MHD_Result models(server *sv, struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", serve_model_name(sv->m));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddStringToObject(m, "owned_by", "wim");
    cJSON_AddItemToArray(data, m);
    return send_json(c, 200, o);
}

static enum MHD_Result post_document(server *sv, struct MHD_Connection *c, cJSON *o) {
    static const char *const fields[] = {"text", "stream", NULL};
    char err[256];
    const char *text, *bad = unknown_field(o, fields);
    int stream = 0;
    if (bad) return FAIL(c, 400, "unknown field '%s' (known: text, stream)", bad);
    if (get_string(o, "text", &text, err, sizeof err) ||
        get_bool(o, "stream", &stream, err, sizeof err))
        return FAIL(c, 400, "%s", err);
    if (!text) return FAIL(c, 400, "'text' is required: the document");
    char id[16];
    queue_next_id(sv->q, id, sizeof id);
    job *j = job_new(JOB_READ, id);
    if (!j || !(j->text = strdup(text))) {
        job_unref(j);
        return FAIL(c, 500, "out of memory");
    }
    j->text_len = strlen(text);
    j->stream = stream;
    j->p = sv->o->run;
    return submit(sv, c, j);
}

static enum MHD_Result get_document(server *sv, struct MHD_Connection *c, const char *id) {
    int tokens;
    size_t bytes;
    wim_doc *d = docs_hold(sv->docs, id);
    if (!d || docs_info(sv->docs, id, &tokens, &bytes)) {
        if (d) docs_release(sv->docs, id);
        return FAIL(c, 404, "no document '%s' (unknown, deleted, or evicted from the cache)", id);
    }
    cJSON *o = cJSON_CreateObject(), *texts = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "tokens", tokens);
    cJSON_AddNumberToObject(o, "segments", wim_doc_segments(d));
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    for (int i = 0; i < wim_doc_segments(d); i++) {
        size_t len;
        const char *s = wim_doc_segment(d, i, &len);
        char *t = strndup(s, len);
        cJSON_AddItemToArray(texts, cJSON_CreateString(t ? t : ""));
        free(t);
    }
    cJSON_AddItemToObject(o, "segment_texts", texts);
    docs_release(sv->docs, id);
    return send_json(c, 200, o);
}

static enum MHD_Result delete_document(server *sv, struct MHD_Connection *c, const char *id) {
    if (docs_delete(sv->docs, id))
        return FAIL(c, 404, "no document '%s' (unknown, deleted, or evicted from the cache)", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "deleted", 1);
    return send_json(c, 200, o);
}

static int valid_run_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static enum MHD_Result post_wim(server *sv, struct MHD_Connection *c, cJSON *o) {
    static const char *const fields[] = {"document",
                                         "text",
                                         "question",
                                         "stream",
                                         "run_id",
                                         "pattern",
                                         "margin_tokens",
                                         "answer_tokens",
                                         "classify_tokens",
                                         "top_k",
                                         "max_segments",
                                         "temp",
                                         "top_p",
                                         "seed",
                                         "classify",
                                         "retriever",
                                         "lenient_classifier",
                                         NULL};
    char err[256], id[72];
    const char *doc_id, *text, *question, *run_id, *bad = unknown_field(o, fields);
    int stream = 0;
    wim_run_params p = sv->o->run;
    if (bad) return FAIL(c, 400, "unknown field '%s' (see the README: wim serve)", bad);
    if (get_string(o, "document", &doc_id, err, sizeof err) ||
        get_string(o, "text", &text, err, sizeof err) ||
        get_string(o, "question", &question, err, sizeof err) ||
        get_string(o, "run_id", &run_id, err, sizeof err) ||
        get_bool(o, "stream", &stream, err, sizeof err) || run_options(o, &p, err, sizeof err))
        return FAIL(c, 400, "%s", err);
    if (!question) return FAIL(c, 400, "'question' is required");
    if (!doc_id == !text) return FAIL(c, 400, "give either 'document' (an id) or 'text'");
    if (run_id && !valid_run_id(run_id))
        return FAIL(c, 400, "'run_id' must be 1 to 64 letters, digits, '-' or '_'");
    if (run_id)
        snprintf(id, sizeof id, "%s", run_id);
    else
        queue_next_id(sv->q, id, sizeof id);
    job *j = job_new(JOB_WIM, id);
    if (!j || !(j->question = strdup(question)) || (text && !(j->text = strdup(text)))) {
        job_unref(j);
        return FAIL(c, 500, "out of memory");
    }
    j->text_len = text ? strlen(text) : 0;
    j->stream = stream;
    j->p = p;
    if (doc_id) { /* held from now on: the store does not evict it while the job waits */
        snprintf(j->doc_id, sizeof j->doc_id, "%s", doc_id);
        if (strlen(doc_id) >= sizeof j->doc_id || !(j->doc = docs_hold(sv->docs, doc_id))) {
            job_unref(j);
            return FAIL(c, 404, "no document '%s' (unknown, deleted, or evicted from the cache)",
                        doc_id);
        }
    }
    return submit(sv, c, j);
}

static enum MHD_Result stop_run(server *sv, struct MHD_Connection *c, const char *id) {
    if (queue_stop(sv->q, id)) return FAIL(c, 404, "no queued or running job '%s'", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "stopping", 1);
    return send_json(c, 200, o);
}

/* Appends the tokens of text (special: chat headers may hold control tokens;
 * message contents never do). */
static int append_tokens(const wim_model *m, int32_t **ids, int *n, const char *text, int special,
                         char *err, size_t errlen) {
    int32_t *more;
    int k = wim_tokenize_alloc(m->tok, text, strlen(text), 0, special, &more, err, errlen);
    if (k < 0) return -1;
    int32_t *all = realloc(*ids, ((size_t)*n + (size_t)k + 1) * sizeof *all);
    if (!all) return free(more), snprintf(err, errlen, "out of memory"), -1;
    memcpy(all + *n, more, (size_t)k * sizeof *all);
    free(more);
    *ids = all;
    *n += k;
    return 0;
}

/* A message's content: a string, or the OpenAI API's array of text parts. */
static char *message_text(const cJSON *content) {
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) return NULL;
    size_t len = 0;
    char *out = calloc(1, 1);
    for (const cJSON *part = content->child; out && part; part = part->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(t)) {
            free(out);
            return NULL;
        }
        char *grown = realloc(out, len + strlen(t->valuestring) + 1);
        if (!grown) return free(out), NULL;
        out = grown;
        strcpy(out + len, t->valuestring);
        len += strlen(t->valuestring);
    }
    return out;
}

/* The conversation in the model's chat format: system messages open the next
 * user turn; the reply is generated after the last user message. */
static int chat_prompt(server *sv, const cJSON *msgs, job *j, char *err, size_t errlen) {
    const wim_model *m = sv->m;
    wim_chat chat;
    char *tmpl = NULL;
    int rc = sv->o->run.chat ? wim_chat_by_name(sv->o->run.chat, &chat, err, errlen)
                             : (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl),
                                wim_chat_detect(tmpl, &chat, err, errlen));
    free(tmpl);
    if (rc) return -1;
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs))
        return snprintf(err, errlen, "'messages' must be a non-empty array"), -1;
    int bos = wim_tokenizer_add_bos(m->tok) && wim_tokenizer_bos(m->tok) >= 0, last_user = 0;
    j->n_prompt = 0;
    if (!(j->prompt = malloc(sizeof *j->prompt))) return snprintf(err, errlen, "out of memory"), -1;
    if (bos) j->prompt[j->n_prompt++] = wim_tokenizer_bos(m->tok);
    char *system = NULL;
    rc = 0;
    for (const cJSON *msg = msgs->child; !rc && msg; msg = msg->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        char *text = message_text(cJSON_GetObjectItemCaseSensitive(msg, "content"));
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        if (!text) {
            rc = snprintf(err, errlen, "each message needs a 'role' and a text 'content'");
        } else if (!strcmp(r, "system") || !strcmp(r, "developer")) {
            size_t had = system ? strlen(system) : 0;
            char *s = realloc(system, had + strlen(text) + 3);
            if (!s)
                rc = snprintf(err, errlen, "out of memory");
            else
                sprintf(s + had, "%s%s", had ? "\n\n" : "", text), system = s;
        } else if (!strcmp(r, "user")) {
            rc = append_tokens(m, &j->prompt, &j->n_prompt, chat.user_header, 1, err, errlen);
            if (!rc && system) {
                rc = append_tokens(m, &j->prompt, &j->n_prompt, system, 0, err, errlen) ||
                     append_tokens(m, &j->prompt, &j->n_prompt, "\n\n", 0, err, errlen);
                free(system);
                system = NULL;
            }
            rc = rc || append_tokens(m, &j->prompt, &j->n_prompt, text, 0, err, errlen) ||
                 append_tokens(m, &j->prompt, &j->n_prompt, chat.generation_header, 1, err, errlen);
            last_user = 1;
        } else if (!strcmp(r, "assistant")) {
            rc = append_tokens(m, &j->prompt, &j->n_prompt, text, 0, err, errlen) ||
                 append_tokens(m, &j->prompt, &j->n_prompt, chat.end_of_turn, 1, err, errlen);
            last_user = 0;
        } else {
            rc = snprintf(err, errlen, "unknown role '%s' (system, user, assistant)", r);
        }
        free(text);
    }
    free(system);
    if (!rc && !last_user) rc = snprintf(err, errlen, "the last message must be the user's");
    return rc ? -1 : 0;
}

static enum MHD_Result chat_completions(server *sv, struct MHD_Connection *c, cJSON *o) {
    char err[512], id[24];
    const int n_ctx = sv->m->cfg.n_ctx_train;
    int stream = 0, max_tokens = -1, n = 1, seed = -1;
    queue_next_id(sv->q, id, sizeof id);
    char chat_id[80];
    snprintf(chat_id, sizeof chat_id, "chatcmpl-%s", id);
    job *j = job_new(JOB_CHAT, chat_id);
    if (!j) return FAIL(c, 500, "out of memory");
    j->p = sv->o->run;
    float temp = j->p.temp, top_p = j->p.top_p;
    int rc = get_bool(o, "stream", &stream, err, sizeof err) ||
             get_int(o, "max_tokens", 1, n_ctx, &max_tokens, err, sizeof err) ||
             get_int(o, "max_completion_tokens", 1, n_ctx, &max_tokens, err, sizeof err) ||
             get_int(o, "n", 1, 1, &n, err, sizeof err) ||
             get_int(o, "seed", 0, 0x7fffffffL, &seed, err, sizeof err) ||
             get_float(o, "temperature", 0, 2, &temp, err, sizeof err) ||
             get_float(o, "top_p", 0, 1, &top_p, err, sizeof err) ||
             chat_prompt(sv, cJSON_GetObjectItemCaseSensitive(o, "messages"), j, err, sizeof err);
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!rc && stop && !cJSON_IsNull(stop)) {
        int k = cJSON_IsString(stop) ? 1 : cJSON_IsArray(stop) ? cJSON_GetArraySize(stop) : -1;
        j->stop = k > 0 ? calloc((size_t)k, sizeof *j->stop) : NULL;
        rc = k < 0 || k > 4 || (k > 0 && !j->stop);
        for (int i = 0; !rc && i < k; i++) {
            const cJSON *s = cJSON_IsString(stop) ? stop : cJSON_GetArrayItem(stop, i);
            rc = !cJSON_IsString(s) || !*s->valuestring ||
                 !(j->stop[j->n_stop++] = strdup(s->valuestring));
        }
        if (rc) snprintf(err, sizeof err, "'stop' must be a string or up to 4 non-empty strings");
    }
    if (rc) {
        job_unref(j);
        return FAIL(c, 400, "%s", err);
    }
    if (j->n_prompt >= n_ctx) {
        job_unref(j);
        return FAIL(c, 400, "the messages take %d tokens; the model's context holds %d",
                    j->n_prompt, n_ctx);
    }
    int room = n_ctx - j->n_prompt;
    if (max_tokens > room) {
        job_unref(j);
        return FAIL(c, 400,
                    "max_tokens %d does not fit: the messages take %d of the %d tokens "
                    "of context",
                    max_tokens, j->n_prompt, n_ctx);
    }
    j->max_tokens = max_tokens > 0 ? max_tokens : room < 512 ? room : 512;
    j->stream = stream;
    j->p.temp = temp, j->p.top_p = top_p;
    if (seed >= 0) j->p.seed = (uint64_t)seed;
    return submit(sv, c, j);
}

/* ---- dispatch ---- */

static int authorized(server *sv, struct MHD_Connection *c) {
    if (!sv->o->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t n = strlen(sv->o->api_key), m = strlen(h);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < m; i++) /* time independent of where they differ */
        diff |= (unsigned char)h[i] ^ (unsigned char)sv->o->api_key[n ? i % n : 0];
    return diff == 0;
}

/* On loopback, a browser page from elsewhere must not reach us through a
 * rebound DNS name: the Host header has to name the loopback itself. */
static int host_allowed(server *sv, struct MHD_Connection *c) {
    if (!sv->loopback) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!h) return 1; /* HTTP/1.0 */
    static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(names[i]);
        if (!strncasecmp(h, names[i], n) && (h[n] == 0 || h[n] == ':')) return 1;
    }
    return 0;
}

/* The id in "/prefix/ID" or "/prefix/ID/suffix"; NULL when url is not of that shape. */
static const char *path_id(const char *url, const char *prefix, const char *suffix, char *id,
                           size_t cap) {
    size_t p = strlen(prefix);
    if (strncmp(url, prefix, p)) return NULL;
    const char *start = url + p, *end = strchr(start, '/');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n == 0 || n >= cap) return NULL;
    if (suffix ? !end || strcmp(end, suffix) : end != NULL) return NULL;
    memcpy(id, start, n);
    id[n] = 0;
    return id;
}

static enum MHD_Result route(server *sv, struct MHD_Connection *c, const char *url,
                             const char *method, request *rq) {
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"),
              post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    char id[80];
    if (!host_allowed(sv, c))
        return FAIL(c, 403, "this server answers only to a loopback Host (127.0.0.1, localhost)");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return FAIL(c, 405, "%s %s: only GET", method, url);
        size_t len;
        const char *page = serve_page(&len);
        return send_text(c, 200, "text/html; charset=utf-8", page, len, "Content-Security-Policy",
                         "default-src 'self'; style-src 'unsafe-inline'; script-src "
                         "'unsafe-inline'; img-src 'self' data:");
    }
    if (!strcmp(url, "/health")) return get ? health(sv, c) : FAIL(c, 405, "/health: only GET");
    if (strncmp(url, "/v1/", 4)) return FAIL(c, 404, "no such path: %s", url);
    if (!authorized(sv, c))
        return send_error(c, 401, "WWW-Authenticate", "Bearer",
                          "this server needs its API key: Authorization: Bearer KEY");
    if (!strcmp(url, "/v1/models")) return get ? models(sv, c) : FAIL(c, 405, "only GET");
    int known = !strcmp(url, "/v1/documents") || !strcmp(url, "/v1/wim") ||
                !strcmp(url, "/v1/chat/completions") ||
                path_id(url, "/v1/runs/", "/stop", id, sizeof id);
    if (path_id(url, "/v1/documents/", NULL, id, sizeof id)) {
        if (get) return get_document(sv, c, id);
        if (del) return delete_document(sv, c, id);
        return FAIL(c, 405, "%s %s: GET or DELETE", method, url);
    }
    if (!known) return FAIL(c, 404, "no such path: %s", url);
    if (!post) return FAIL(c, 405, "%s %s: only POST", method, url);
    if (path_id(url, "/v1/runs/", "/stop", id, sizeof id)) return stop_run(sv, c, id);
    /* JSON only: a form post from another site cannot start work here without a preflight */
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!type || strncasecmp(type, "application/json", 16))
        return FAIL(c, 415, "send the body as Content-Type: application/json");
    enum MHD_Result ok = MHD_NO;
    cJSON *o = parse_body(c, rq, &ok);
    if (!o) return ok;
    if (!strcmp(url, "/v1/documents"))
        ok = post_document(sv, c, o);
    else if (!strcmp(url, "/v1/wim"))
        ok = post_wim(sv, c, o);
    else
        ok = chat_completions(sv, c, o);
    cJSON_Delete(o);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state) {
    server *sv = cls;
    request *rq = *state;
    if (!rq) { /* the headers: a body announced too large is refused before it is read */
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        rq->t0 = now_ms();
        *state = rq;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->o->max_body) {
            rq->too_large = 1;
            return FAIL(c, 413, "the request body is %s bytes; the limit is %zu (--max-body-mb)",
                        cl, sv->o->max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > sv->o->max_body) {
            rq->too_large = 1;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b) return MHD_NO;
            rq->body = b, rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        return MHD_YES;
    }
    if (rq->too_large)
        return FAIL(c, 413, "the request body is over the limit of %zu bytes (--max-body-mb)",
                    sv->o->max_body);
    return route(sv, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why) {
    server *sv = cls;
    request *rq = *state;
    if (!rq) return;
    if (!sv->o->quiet) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        fprintf(stderr, "wim: serve: %u %.0f ms%s\n", ci ? ci->http_status : 0, now_ms() - rq->t0,
                why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    }
    free(rq->body);
    free(rq);
    *state = NULL;
}

static void on_log(void *cls, const char *fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    fprintf(stderr, "wim: serve: %s\n", line);
}

int serve_run(const wim_model *m, const serve_opts *o) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(o->host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "wim: serve: --host %s: %s\n", o->host, gai_strerror(gai));
        return 2;
    }
    server sv = {.m = m, .o = o};
    if (ai->ai_family == AF_INET)
        sv.loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    else
        sv.loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    if (!sv.loopback && !o->api_key) {
        freeaddrinfo(ai);
        fprintf(stderr,
                "wim: serve: --host %s is not a loopback address: pass --api-key KEY so "
                "that only clients with the key can use it\n",
                o->host);
        return 2;
    }
    /* the signals are waited for here; no other thread takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sv.docs = docs_new(o->cache_bytes);
    sv.q = sv.docs ? queue_new(m, sv.docs, o) : NULL;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d =
        sv.q ? MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, &sv,
                                MHD_OPTION_EXTERNAL_LOGGER, on_log, &sv, MHD_OPTION_SOCK_ADDR,
                                ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_END)
             : NULL;
    int rc = 0;
    if (!d) {
        fprintf(stderr, "wim: serve: cannot listen on %s port %d: %s\n", o->host, o->port,
                sv.q ? strerror(errno ? errno : EADDRINUSE) : "out of memory");
        rc = 1;
    } else {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        int v6 = ai->ai_family == AF_INET6;
        fprintf(stderr, "wim: serving %s on http://%s%s%s:%u/ (Ctrl-C stops)\n",
                serve_model_name(m), v6 ? "[" : "", o->host, v6 ? "]" : "",
                di ? di->port : (unsigned)o->port);
        int sig;
        sigwait(&sigs, &sig);
        fprintf(stderr, "wim: serve: stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        MHD_quiesce_daemon(d);
    }
    if (sv.q) queue_close(sv.q); /* open streams and waiting requests get their ends */
    if (d) MHD_stop_daemon(d);
    queue_free(sv.q);
    docs_free(sv.docs);
    freeaddrinfo(ai);
    return rc;
}
