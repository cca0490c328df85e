/*
 * serve_request.c — the JSON bodies of `wim serve`'s requests, taken apart:
 * a document to read, a question, a chat transcript (tokenized in the model's
 * chat format).
 *
 * Owns: which fields each request has, their types and ranges, and the one
 * line that says what is wrong (the server answers 400 with it). Invariants:
 * nothing here touches the network, the queue or the store, so the fuzzer
 * (tests/fuzz/fuzz_serve_request.c) runs it alone; an unknown field is an
 * error for wim's own endpoints (a typo must not pass for a default), and
 * ignored for chat completions (OpenAI clients send many).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "error.h"
#include "gguf.h"
#include "model.h"
#include "serve.h"
#include "tokenizer.h"
#include "unicode.h"

/* A name from a request as it may be quoted in an error line: at most 40 bytes, control
 * characters shown as '?' (the message stays one line whatever the client sent). */
static const char *quoted(const char *name, char *buf, size_t cap) {
    size_t n = 0;
    for (; name[n] && n + 4 < cap && n < 40; n++)
        buf[n] = (unsigned char)name[n] < 0x20 || name[n] == 0x7f ? '?' : name[n];
    if (name[n]) buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n] = 0;
    return buf;
}

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
    /* the range first: converting a double past long's range would be undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != floor(v->valuedouble))
        return wim_errorf(err, errlen, "'%s' must be an integer in [%ld, %ld]", name, lo, hi);
    *dst = (int)v->valuedouble;
    return 0;
}

static int get_float(const cJSON *o, const char *name, double lo, double hi, float *dst, char *err,
                     size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return wim_errorf(err, errlen, "'%s' must be a number in [%g, %g]", name, lo, hi);
    *dst = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *name, int *dst, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return wim_errorf(err, errlen, "'%s' must be true or false", name);
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
    if (!cJSON_IsString(v)) return wim_errorf(err, errlen, "'%s' must be a string", name);
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

cJSON *request_json(const char *body, size_t len, char *err, size_t errlen) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = wim_utf8_next((const unsigned char *)body + i, len - i, &cp);
        if (n <= 0)
            return wim_errorf(err, errlen, "the request body is not valid UTF-8 (byte %zu)", i),
                   NULL;
        i += (size_t)n;
    }
    const char *end = NULL;
    cJSON *o = len ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
    if (!o) {
        if (len)
            wim_errorf(err, errlen, "malformed JSON at byte %ld", end ? (long)(end - body) : 0L);
        else
            wim_errorf(err, errlen, "the request needs a JSON body");
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        wim_errorf(err, errlen, "the request body must be a JSON object");
        return NULL;
    }
    return o;
}

int request_document(const cJSON *o, document_request *r, char *err, size_t errlen) {
    static const char *const fields[] = {"text", "stream", NULL};
    const char *bad = unknown_field(o, fields);
    memset(r, 0, sizeof *r);
    char q[48];
    if (bad)
        return wim_errorf(err, errlen, "unknown field '%s' (known: text, stream)",
                          quoted(bad, q, sizeof q));
    if (get_string(o, "text", &r->text, err, errlen) ||
        get_bool(o, "stream", &r->stream, err, errlen))
        return -1;
    if (!r->text) return wim_errorf(err, errlen, "'text' is required: the document");
    return 0;
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

int request_wim(const cJSON *o, const wim_run_params *base, wim_request *r, char *err,
                size_t errlen) {
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
    const char *bad = unknown_field(o, fields);
    char q[48];
    memset(r, 0, sizeof *r);
    r->p = *base;
    if (bad)
        return wim_errorf(err, errlen, "unknown field '%s' (see the README: wim serve)",
                          quoted(bad, q, sizeof q));
    if (get_string(o, "document", &r->document, err, errlen) ||
        get_string(o, "text", &r->text, err, errlen) ||
        get_string(o, "question", &r->question, err, errlen) ||
        get_string(o, "run_id", &r->run_id, err, errlen) ||
        get_bool(o, "stream", &r->stream, err, errlen) || run_options(o, &r->p, err, errlen))
        return -1;
    if (!r->question) return wim_errorf(err, errlen, "'question' is required");
    if (!r->document == !r->text)
        return wim_errorf(err, errlen, "give either 'document' (an id) or 'text'");
    if (r->run_id && !valid_run_id(r->run_id))
        return wim_errorf(err, errlen, "'run_id' must be 1 to 64 letters, digits, '-' or '_'");
    return 0;
}

/* Appends the tokens of text (special: chat headers may hold control tokens;
 * message contents never do). */
static int append_tokens(const wim_model *m, int32_t **ids, int *n, const char *text, int special,
                         char *err, size_t errlen) {
    int32_t *more;
    int k = wim_tokenize_alloc(m->tok, text, strlen(text), 0, special, &more, err, errlen);
    if (k < 0) return -1;
    int32_t *all = realloc(*ids, ((size_t)*n + (size_t)k + 1) * sizeof *all);
    if (!all) return free(more), wim_errorf(err, errlen, "out of memory");
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
static int chat_prompt(const wim_model *m, const char *family, const cJSON *msgs, job *j, char *err,
                       size_t errlen) {
    wim_chat chat;
    char *tmpl = NULL;
    int rc = family ? wim_chat_by_name(family, &chat, err, errlen)
                    : (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl),
                       wim_chat_detect(tmpl, &chat, err, errlen));
    free(tmpl);
    if (rc) return -1;
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs))
        return wim_errorf(err, errlen, "'messages' must be a non-empty array");
    int bos = wim_tokenizer_add_bos(m->tok) && wim_tokenizer_bos(m->tok) >= 0, last_user = 0;
    j->n_prompt = 0;
    if (!(j->prompt = malloc(sizeof *j->prompt))) return wim_errorf(err, errlen, "out of memory");
    if (bos) j->prompt[j->n_prompt++] = wim_tokenizer_bos(m->tok);
    char *system = NULL;
    rc = 0;
    for (const cJSON *msg = msgs->child; !rc && msg; msg = msg->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        char *text = message_text(cJSON_GetObjectItemCaseSensitive(msg, "content"));
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        if (!text) {
            rc = wim_errorf(err, errlen, "each message needs a 'role' and a text 'content'");
        } else if (!strcmp(r, "system") || !strcmp(r, "developer")) {
            size_t had = system ? strlen(system) : 0;
            char *s = realloc(system, had + strlen(text) + 3);
            if (!s)
                rc = wim_errorf(err, errlen, "out of memory");
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
            char q[48];
            rc = wim_errorf(err, errlen, "unknown role '%s' (system, user, assistant)",
                            quoted(r, q, sizeof q));
        }
        free(text);
    }
    free(system);
    if (!rc && !last_user) rc = wim_errorf(err, errlen, "the last message must be the user's");
    return rc ? -1 : 0;
}

int request_chat(const cJSON *o, const wim_model *m, const wim_run_params *base, job *j, char *err,
                 size_t errlen) {
    const int n_ctx = m->cfg.n_ctx_train;
    int max_tokens = -1, n = 1, seed = -1;
    j->p = *base;
    int rc =
        get_bool(o, "stream", &j->stream, err, errlen) ||
        get_int(o, "max_tokens", 1, n_ctx, &max_tokens, err, errlen) ||
        get_int(o, "max_completion_tokens", 1, n_ctx, &max_tokens, err, errlen) ||
        get_int(o, "n", 1, 1, &n, err, errlen) ||
        get_int(o, "seed", 0, 0x7fffffffL, &seed, err, errlen) ||
        get_float(o, "temperature", 0, 2, &j->p.temp, err, errlen) ||
        get_float(o, "top_p", 0, 1, &j->p.top_p, err, errlen) ||
        chat_prompt(m, base->chat, cJSON_GetObjectItemCaseSensitive(o, "messages"), j, err, errlen);
    if (rc) return -1;
    if (seed >= 0) j->p.seed = (uint64_t)seed;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        int k = cJSON_IsString(stop) ? 1 : cJSON_IsArray(stop) ? cJSON_GetArraySize(stop) : -1;
        j->stop = k > 0 && k <= 4 ? calloc((size_t)k, sizeof *j->stop) : NULL;
        rc = k < 0 || k > 4 || (k > 0 && !j->stop);
        for (int i = 0; !rc && i < k; i++) {
            const cJSON *s = cJSON_IsString(stop) ? stop : cJSON_GetArrayItem(stop, i);
            rc = !cJSON_IsString(s) || !*s->valuestring ||
                 !(j->stop[j->n_stop++] = strdup(s->valuestring));
        }
        if (rc)
            return wim_errorf(err, errlen, "'stop' must be a string or up to 4 non-empty strings");
    }
    if (j->n_prompt >= n_ctx)
        return wim_errorf(err, errlen, "the messages take %d tokens; the model's context holds %d",
                          j->n_prompt, n_ctx);
    const int room = n_ctx - j->n_prompt;
    if (max_tokens > room)
        return wim_errorf(err, errlen,
                          "max_tokens %d does not fit: the messages take %d of the %d tokens of "
                          "context",
                          max_tokens, j->n_prompt, n_ctx);
    j->max_tokens = max_tokens > 0 ? max_tokens : room < 512 ? room : 512;
    return 0;
}
