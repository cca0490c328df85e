/*
 * serve_docs.c — the documents `wim serve` has read, kept within a byte budget.
 *
 * Owns: every wim_doc handed to it, under ids "d1", "d2", ... in least
 * recently used order. Invariants: the bytes of the documents kept never
 * exceed the budget except while a held document waits to be evicted; a held
 * document (a job reads it) is never freed; a deleted or evicted id is unknown
 * at once, and its document is freed when the last holder lets go. One mutex
 * guards everything: calls come from the HTTP threads and the worker.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

typedef struct entry {
    char id[16];
    wim_doc *doc;
    size_t bytes;
    int tokens; /* the document's (segments') tokens */
    int holds;
    int gone;                  /* deleted or evicted: freed when the last hold goes */
    struct entry *prev, *next; /* most recently used first */
} entry;

struct serve_docs {
    pthread_mutex_t mu;
    size_t budget, bytes; /* bytes: the documents not gone */
    int count;
    unsigned long next_id;
    entry *head, *tail;
    entry *limbo; /* gone, still held (linked through next) */
};

serve_docs *docs_new(size_t budget) {
    serve_docs *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->budget = budget;
    s->next_id = 1;
    return s;
}

static void unlink_entry(serve_docs *s, entry *e) {
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(serve_docs *s, entry *e) {
    e->prev = NULL;
    e->next = s->head;
    if (s->head) s->head->prev = e;
    s->head = e;
    if (!s->tail) s->tail = e;
}

/* Takes e out of the store; it is freed now, or when its last hold goes. */
static void retire(serve_docs *s, entry *e) {
    unlink_entry(s, e);
    s->bytes -= e->bytes;
    s->count--;
    e->gone = 1;
    if (e->holds) {
        e->next = s->limbo;
        s->limbo = e;
        return;
    }
    wim_doc_free(e->doc);
    free(e);
}

void docs_free(serve_docs *s) {
    if (!s) return;
    for (entry *e = s->head, *n; e; e = n) {
        n = e->next;
        wim_doc_free(e->doc);
        free(e);
    }
    for (entry *e = s->limbo, *n; e; e = n) {
        n = e->next;
        wim_doc_free(e->doc);
        free(e);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static entry *find(serve_docs *s, const char *id) {
    for (entry *e = s->head; e; e = e->next)
        if (!strcmp(e->id, id)) return e;
    return NULL;
}

/* Evicts from the least recently used end until `more` bytes fit; held
 * documents stay (over budget until they are let go). */
static void make_room(serve_docs *s, size_t more) {
    for (entry *v = s->tail, *prev; v && s->bytes + more > s->budget; v = prev) {
        prev = v->prev;
        if (!v->holds) retire(s, v);
    }
}

int docs_add(serve_docs *s, wim_doc *d, char *id) {
    size_t bytes = wim_doc_bytes(d);
    if (bytes > s->budget) return -1;
    entry *e = calloc(1, sizeof *e);
    if (!e) return -1;
    pthread_mutex_lock(&s->mu);
    make_room(s, bytes);
    snprintf(e->id, sizeof e->id, "d%lu", s->next_id++);
    e->doc = d;
    e->bytes = bytes;
    e->tokens = wim_doc_document_tokens(d);
    push_front(s, e);
    s->bytes += bytes;
    s->count++;
    memcpy(id, e->id, sizeof e->id);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

wim_doc *docs_hold(serve_docs *s, const char *id) {
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    if (e) {
        e->holds++;
        unlink_entry(s, e);
        push_front(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    return e ? e->doc : NULL;
}

void docs_release(serve_docs *s, const char *id) {
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    if (e) {
        e->holds--;
        /* a question may have grown its cache */
        size_t bytes = wim_doc_bytes(e->doc);
        s->bytes += bytes - e->bytes;
        e->bytes = bytes;
        make_room(s, 0);
    } else { /* gone while held */
        entry **link = &s->limbo;
        while (*link && strcmp((*link)->id, id))
            link = &(*link)->next;
        if ((e = *link) && --e->holds == 0) {
            *link = e->next;
            wim_doc_free(e->doc);
            free(e);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

int docs_delete(serve_docs *s, const char *id) {
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    if (e) retire(s, e);
    pthread_mutex_unlock(&s->mu);
    return e ? 0 : -1;
}

int docs_info(serve_docs *s, const char *id, int *tokens, size_t *bytes) {
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    if (e) *tokens = e->tokens, *bytes = e->bytes;
    pthread_mutex_unlock(&s->mu);
    return e ? 0 : -1;
}

void docs_usage(serve_docs *s, int *count, size_t *bytes) {
    pthread_mutex_lock(&s->mu);
    *count = s->count;
    *bytes = s->bytes;
    pthread_mutex_unlock(&s->mu);
}
