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

#include "clock.h"
#include "model.h"
#include "serve.h"

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
        if (rc == -2) return FAIL(c, 409, "run id '%s' is in use by a queued or running job", id);
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
    /* a first comment sends the headers (and the run id) now, even while the job waits */
    if ((s->chunk = strdup(": accepted\n\n"))) s->len = strlen(s->chunk);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Wim-Run", j->id);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
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

static enum MHD_Result post_document(server *sv, struct MHD_Connection *c, const cJSON *o) {
    char err[256], id[16];
    document_request r;
    if (request_document(o, &r, err, sizeof err)) return FAIL(c, 400, "%s", err);
    queue_next_id(sv->q, id, sizeof id);
    job *j = job_new(JOB_READ, id);
    if (!j || !(j->text = strdup(r.text))) {
        job_unref(j);
        return FAIL(c, 500, "out of memory");
    }
    j->text_len = strlen(r.text);
    j->stream = r.stream;
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

static enum MHD_Result post_wim(server *sv, struct MHD_Connection *c, const cJSON *o) {
    char err[256], id[72];
    wim_request r;
    if (request_wim(o, &sv->o->run, &r, err, sizeof err)) return FAIL(c, 400, "%s", err);
    if (r.run_id)
        snprintf(id, sizeof id, "%s", r.run_id);
    else
        queue_next_id(sv->q, id, sizeof id);
    job *j = job_new(JOB_WIM, id);
    if (!j || !(j->question = strdup(r.question)) || (r.text && !(j->text = strdup(r.text)))) {
        job_unref(j);
        return FAIL(c, 500, "out of memory");
    }
    j->text_len = r.text ? strlen(r.text) : 0;
    j->stream = r.stream;
    j->p = r.p;
    if (r.document) { /* held from now on: the store does not evict it while the job waits */
        snprintf(j->doc_id, sizeof j->doc_id, "%s", r.document);
        if (strlen(r.document) >= sizeof j->doc_id || !(j->doc = docs_hold(sv->docs, r.document))) {
            job_unref(j);
            return FAIL(c, 404, "no document '%s' (unknown, deleted, or evicted from the cache)",
                        r.document);
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

static enum MHD_Result chat_completions(server *sv, struct MHD_Connection *c, const cJSON *o) {
    char err[512], id[24], chat_id[80];
    queue_next_id(sv->q, id, sizeof id);
    snprintf(chat_id, sizeof chat_id, "chatcmpl-%s", id);
    job *j = job_new(JOB_CHAT, chat_id);
    if (!j) return FAIL(c, 500, "out of memory");
    if (request_chat(o, sv->m, &sv->o->run, j, err, sizeof err)) {
        job_unref(j);
        return FAIL(c, 400, "%s", err);
    }
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
    char err[256];
    cJSON *o = request_json(rq->body, rq->len, err, sizeof err);
    if (!o) return FAIL(c, 400, "%s", err);
    enum MHD_Result ok;
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
        rq->t0 = wim_now_ms();
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
        fprintf(stderr, "wim: serve: %u %.0f ms%s\n", ci ? ci->http_status : 0,
                wim_now_ms() - rq->t0,
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
