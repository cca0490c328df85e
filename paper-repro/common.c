/*
 * common.c — task names and the ownership helpers of repro_internal.h: file reads,
 * string buffers, example construction and freeing.
 *
 * Invariants: the push helpers either add a fully owned element or leave the
 * structure as it was; repro_dataset_free accepts a zeroed or half-built dataset.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repro_internal.h"

static const char *const task_names[REPRO_TASK_COUNT] = {"hotpotqa", "squad", "multihop-rag", "cwe",
                                                         "babilong"};

int repro_task_from_name(const char *name) {
    for (int i = 0; name && i < REPRO_TASK_COUNT; i++)
        if (!strcmp(name, task_names[i])) return i;
    return -1;
}

const char *repro_task_name(repro_task t) {
    return (unsigned)t < REPRO_TASK_COUNT ? task_names[t] : "?";
}

int repro_task_is_reasoning(repro_task t) {
    return t != REPRO_CWE && (unsigned)t < REPRO_TASK_COUNT;
}

void repro_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *repro_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        repro_errf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) {
        repro_errf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

char *repro_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *repro_strdup(const char *s) {
    return repro_strndup(s ? s : "", s ? strlen(s) : 0);
}

void sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void sbuf_adds(sbuf *b, const char *s) {
    sbuf_add(b, s, strlen(s));
}

void sbuf_addf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1); /* longer than the stack buffer: format again */
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sbuf_add(b, big, (size_t)n);
    free(big);
}

char *sbuf_take(sbuf *b) {
    char *s = b->oom ? NULL : b->data;
    if (b->oom) free(b->data);
    if (!s && !b->oom) s = repro_strdup("");
    memset(b, 0, sizeof *b);
    return s;
}

int repro_push_example(repro_dataset *d, int *cap, repro_example **out) {
    if (d->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        repro_example *p = realloc(d->ex, (size_t)nc * sizeof *p);
        if (!p) return -1;
        d->ex = p;
        *cap = nc;
    }
    *out = &d->ex[d->n++];
    memset(*out, 0, sizeof **out);
    return 0;
}

int repro_push_para(repro_example *e, const char *title, const char *text, int gold) {
    repro_para *p = realloc(e->paras, (size_t)(e->n_paras + 1) * sizeof *p);
    if (!p) return -1;
    e->paras = p;
    repro_para *np = &p[e->n_paras];
    np->title = repro_strdup(title);
    np->text = repro_strdup(text);
    np->gold = gold;
    if (!np->title || !np->text) {
        free(np->title);
        free(np->text);
        return -1;
    }
    e->n_paras++;
    return 0;
}

int repro_push_answer(repro_example *e, const char *answer) {
    char **a = realloc(e->answers, (size_t)(e->n_answers + 1) * sizeof *a);
    if (!a) return -1;
    e->answers = a;
    if (!(a[e->n_answers] = repro_strdup(answer))) return -1;
    e->n_answers++;
    return 0;
}

void repro_example_free(repro_example *e) {
    free(e->id);
    free(e->question);
    free(e->answer_prefix);
    for (int i = 0; i < e->n_answers; i++)
        free(e->answers[i]);
    free(e->answers);
    for (int i = 0; i < e->n_paras; i++) {
        free(e->paras[i].title);
        free(e->paras[i].text);
    }
    free(e->paras);
    memset(e, 0, sizeof *e);
}

void repro_dataset_free(repro_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++)
        repro_example_free(&d->ex[i]);
    free(d->ex);
    d->ex = NULL;
    d->n = 0;
}

int repro_count_tokens(const wim_tokenizer *tok, const char *text, size_t len) {
    char err[128];
    return wim_tokenize(tok, text, len, 0, 0, NULL, 0, err, sizeof err);
}
