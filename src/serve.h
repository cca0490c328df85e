/*
 * serve.h — what the files of `wim serve` share: the options, the document
 * store (serve_docs.c), the job queue and its worker (serve_jobs.c), the HTTP
 * front end (serve_http.c) and the embedded page (serve_page.c).
 *
 * One model, one worker thread: requests that compute (reading a document, a
 * question, a chat completion) become jobs in a bounded first-in-first-out
 * queue; the HTTP threads only parse, wait and stream. Every job reports
 * through a list of JSON payloads (the events a stream sends as `data:` lines)
 * and a final status and body.
 */
#ifndef WIM_SERVE_H
#define WIM_SERVE_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>

#include "wim.h"

typedef struct {
    const char *host;    /* numeric IPv4/IPv6 address to bind (default 127.0.0.1) */
    int port;            /* 0: any free port */
    const char *api_key; /* NULL: none (only allowed on a loopback address) */
    size_t cache_bytes;  /* the documents' budget (LRU beyond it) */
    int max_doc_tokens;  /* a document longer than this is refused (413) */
    int queue;           /* jobs that may wait behind the running one */
    size_t max_body;     /* request body limit (413 beyond it) */
    int quiet;           /* no line per request on stderr */
    wim_run_params run;  /* the pipeline options every request starts from */
} serve_opts;

/* ---- documents read once (serve_docs.c): an LRU store within a byte budget ---- */
typedef struct serve_docs serve_docs;
serve_docs *docs_new(size_t budget);
void docs_free(serve_docs *s);
/* Adopts d under a new id (written to id, 16 bytes), evicting the least
 * recently used documents no job holds; -1 when d alone exceeds the budget
 * (d is then not adopted). */
int docs_add(serve_docs *s, wim_doc *d, char *id);
/* The document with this id, held (it is not evicted or freed) until
 * docs_release; NULL when unknown. */
wim_doc *docs_hold(serve_docs *s, const char *id);
void docs_release(serve_docs *s, const char *id);
/* Forgets the id (the document is freed once no job holds it); -1 if unknown. */
int docs_delete(serve_docs *s, const char *id);
/* Its document tokens and bytes, without touching its cache (a job may be
 * using it); -1 if unknown. */
int docs_info(serve_docs *s, const char *id, int *tokens, size_t *bytes);
void docs_usage(serve_docs *s, int *count, size_t *bytes);

/* ---- jobs (serve_jobs.c) ---- */
typedef enum { JOB_READ, JOB_WIM, JOB_CHAT } job_kind;

typedef struct job job;
struct job {
    job_kind kind;
    char id[72];
    int stream;
    /* inputs */
    wim_run_params p; /* the server's options with the request's on top */
    char *text;       /* JOB_READ, JOB_WIM without a document: the document */
    size_t text_len;
    char *question;
    char doc_id[16]; /* JOB_WIM: a document read before (held from admission) */
    wim_doc *doc;
    int32_t *prompt; /* JOB_CHAT: the conversation, tokenized */
    int n_prompt, max_tokens;
    char **stop; /* JOB_CHAT: stop strings */
    int n_stop;
    /* outputs, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **events; /* JSON payloads in order */
    int n_events, cap_events;
    int finished, status; /* HTTP status of the outcome */
    char *body;           /* the non-streamed response (JSON) */
    volatile int interrupt;
    int refs;
    job *next; /* queue */
};

typedef struct serve_queue serve_queue;
serve_queue *queue_new(const wim_model *m, serve_docs *docs, const serve_opts *o);
/* Stops the worker (the running job is interrupted and answers from what it
 * has; the waiting ones fail with 503); later pushes are refused. */
void queue_close(serve_queue *q);
void queue_free(serve_queue *q); /* closes it first */
job *job_new(job_kind kind, const char *run_id);
void job_unref(job *j);
/* Queues j (taking a reference); -1 when the queue is full (retry_after: the
 * seconds the queue ahead is expected to take), -2 when a queued or running
 * job has j's id. */
int queue_push(serve_queue *q, job *j, int *retry_after);
/* Asks the queued or running job with this id to stop; -1 if there is none. */
int queue_stop(serve_queue *q, const char *id);
int queue_waiting(serve_queue *q);
/* A fresh run id ("r1", "r2", ...). */
void queue_next_id(serve_queue *q, char *id, size_t cap);
/* Waits until j is finished. */
void job_wait(job *j);
const char *serve_model_name(const wim_model *m);

/* ---- requests (serve_request.c): JSON bodies taken apart, or one line why not ---- */
/* The body as a JSON object: valid UTF-8, well-formed JSON, an object. */
cJSON *request_json(const char *body, size_t len, char *err, size_t errlen);
typedef struct {
    const char *text; /* points into the JSON */
    int stream;
} document_request;
int request_document(const cJSON *o, document_request *r, char *err, size_t errlen);
typedef struct {
    const char *document, *text, *question, *run_id; /* into the JSON; one of document, text */
    int stream;
    wim_run_params p; /* base with the request's options on top */
} wim_request;
int request_wim(const cJSON *o, const wim_run_params *base, wim_request *r, char *err,
                size_t errlen);
/* A chat completion into j: the transcript tokenized in the model's chat format (base->chat,
 * or the family its template names), the completion's length, sampling, stop strings. */
int request_chat(const cJSON *o, const wim_model *m, const wim_run_params *base, job *j, char *err,
                 size_t errlen);

/* ---- HTTP (serve_http.c) ---- */
/* Serves until SIGINT or SIGTERM; returns the exit status (errors on stderr). */
int serve_run(const wim_model *m, const serve_opts *o);

/* ---- the page (serve_page.c) ---- */
const char *serve_page(size_t *len);

#endif
