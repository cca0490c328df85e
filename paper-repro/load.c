/*
 * load.c — repro_load: the official dataset files (and the layouts in ../shared/data)
 * turned into repro_example lists, parsed with cJSON.
 *
 * Invariants: examples come out in file order; on failure the output dataset is empty
 * and err names the file and the record; a record with the wrong shape is an error,
 * never silently dropped (only SQuAD v2's unanswerable questions are skipped, counted).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "repro_internal.h"

/* Called once per record; returns 0 to go on, 1 when enough were loaded, -1 on error. */
typedef int (*record_fn)(const cJSON *rec, int index, void *ctx, char *err, size_t errlen);

/* Feeds every record of path to fn: the elements of a top-level array, a single object,
 * or each value of a JSON Lines file (one parse per value, so JSONL needs no array). */
static int for_each_record(const char *path, record_fn fn, void *ctx, char *err, size_t errlen) {
    size_t len;
    char *buf = repro_read_file(path, &len, err, errlen);
    if (!buf) return -1;
    const char *p = buf, *end = buf + len;
    int index = 0, rc = 0;
    while (rc == 0) {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
            p++;
        if (p >= end) break;
        const char *stop = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        if (!v) {
            repro_errf(err, errlen, "%s: invalid JSON at byte %zu", path,
                       (size_t)((stop ? stop : p) - buf));
            rc = -1;
            break;
        }
        if (cJSON_IsArray(v)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, v) {
                if ((rc = fn(it, index++, ctx, err, errlen)) != 0) break;
            }
        } else {
            rc = fn(v, index++, ctx, err, errlen);
        }
        cJSON_Delete(v);
        p = stop;
    }
    free(buf);
    return rc < 0 ? -1 : 0;
}

static cJSON *read_json(const char *path, char *err, size_t errlen) {
    size_t len;
    char *buf = repro_read_file(path, &len, err, errlen);
    if (!buf) return NULL;
    const char *stop = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(buf, len, &stop, 0);
    if (!v)
        repro_errf(err, errlen, "%s: invalid JSON at byte %zu", path,
                   (size_t)((stop ? stop : buf) - buf));
    free(buf);
    return v;
}

static const char *str_field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* path itself when it is a file; dir/name when it is a directory. */
static void resolve(const char *path, const char *name, char *out, size_t cap) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(out, cap, "%s/%s", path, name);
    else
        snprintf(out, cap, "%s", path);
}

/* The file called name in the folder of path. */
static void sibling(const char *path, const char *name, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "%.*s/%s", (int)(slash - path), path, name);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

typedef struct {
    repro_dataset *d;
    int cap, max_n, skipped;
    const char *path;
    const cJSON *truth;  /* ground_truth.json of the ../shared layouts */
    const cJSON *corpus; /* MultiHop-RAG corpus.json, or NULL */
} load_ctx;

static int enough(const load_ctx *c) {
    return c->max_n > 0 && c->d->n >= c->max_n;
}

static int oom(const load_ctx *c, char *err, size_t errlen) {
    repro_errf(err, errlen, "%s: out of memory", c->path);
    return -1;
}

/* ---- HotpotQA ---- */

static int hotpot_is_supporting(const cJSON *facts, const char *title) {
    const cJSON *f;
    cJSON_ArrayForEach(f, facts) {
        const cJSON *t = cJSON_GetArrayItem(f, 0);
        if (cJSON_IsString(t) && !strcmp(t->valuestring, title)) return 1;
    }
    return 0;
}

static int hotpot_record(const cJSON *rec, int index, void *vctx, char *err, size_t errlen) {
    load_ctx *c = vctx;
    const char *id = str_field(rec, "_id"), *q = str_field(rec, "question"),
               *a = str_field(rec, "answer");
    if (!id) id = str_field(rec, "id");
    const cJSON *facts = cJSON_GetObjectItemCaseSensitive(rec, "supporting_facts");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(rec, "context");
    if (!id || !q || !a || !cJSON_IsArray(facts) || !cJSON_IsArray(ctx)) {
        repro_errf(err, errlen,
                   "%s: record %d lacks _id, question, answer, supporting_facts or context "
                   "(official HotpotQA layout expected)",
                   c->path, index);
        return -1;
    }
    repro_example *e;
    if (repro_push_example(c->d, &c->cap, &e) || !(e->id = repro_strdup(id)) ||
        !(e->question = repro_strdup(q)) || repro_push_answer(e, a))
        return oom(c, err, errlen);
    const cJSON *para;
    cJSON_ArrayForEach(para, ctx) {
        const cJSON *title = cJSON_GetArrayItem(para, 0), *sents = cJSON_GetArrayItem(para, 1);
        if (!cJSON_IsString(title) || !cJSON_IsArray(sents)) {
            repro_errf(err, errlen, "%s: record %d (%s): context entry is not [title, [sentences]]",
                       c->path, index, id);
            return -1;
        }
        sbuf text = {0};
        const cJSON *s;
        cJSON_ArrayForEach(s, sents) { /* sentences carry their own leading spaces */
            if (cJSON_IsString(s)) sbuf_adds(&text, s->valuestring);
        }
        char *t = sbuf_take(&text);
        int rc = t ? repro_push_para(e, title->valuestring, t,
                                     hotpot_is_supporting(facts, title->valuestring))
                   : -1;
        free(t);
        if (rc) return oom(c, err, errlen);
    }
    return enough(c);
}

/* ---- SQuAD ---- */

static int squad_add(load_ctx *c, const char *id, const char *title, const char *context,
                     const char *question, const char *const *answers, int n_answers) {
    repro_example *e;
    if (repro_push_example(c->d, &c->cap, &e) || !(e->id = repro_strdup(id)) ||
        !(e->question = repro_strdup(question)) || repro_push_para(e, title, context, 1))
        return -1;
    for (int i = 0; i < n_answers; i++)
        if (repro_push_answer(e, answers[i])) return -1;
    return 0;
}

/* Official SQuAD v1/v2: {data:[{title, paragraphs:[{context, qas:[{id, question, answers,
 * is_impossible}]}]}]}. */
static int squad_official(load_ctx *c, const cJSON *root, char *err, size_t errlen) {
    const cJSON *art;
    cJSON_ArrayForEach(art, cJSON_GetObjectItemCaseSensitive(root, "data")) {
        const char *title = str_field(art, "title");
        const cJSON *para;
        cJSON_ArrayForEach(para, cJSON_GetObjectItemCaseSensitive(art, "paragraphs")) {
            const char *context = str_field(para, "context");
            const cJSON *qa;
            cJSON_ArrayForEach(qa, cJSON_GetObjectItemCaseSensitive(para, "qas")) {
                const char *id = str_field(qa, "id"), *q = str_field(qa, "question");
                if (!context || !id || !q) {
                    repro_errf(err, errlen,
                               "%s: a paragraph or question lacks context, id or "
                               "question",
                               c->path);
                    return -1;
                }
                const cJSON *ans = cJSON_GetObjectItemCaseSensitive(qa, "answers");
                int impossible =
                    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(qa, "is_impossible"));
                const char *texts[64];
                int n = 0;
                const cJSON *a;
                cJSON_ArrayForEach(a, ans) {
                    const char *t = str_field(a, "text");
                    if (t && n < 64) texts[n++] = t;
                }
                if (impossible || n == 0) {
                    c->skipped++;
                    continue;
                }
                if (squad_add(c, id, title ? title : "", context, q, texts, n))
                    return oom(c, err, errlen);
                if (enough(c)) return 0;
            }
        }
    }
    return 0;
}

/* The ../shared/data/squad2 layout: queries.json {queries:[{id, context, question}]} and
 * ground_truth.json {id: {answers:[str], is_impossible}} beside it. */
static int squad_shared(load_ctx *c, const cJSON *root, char *err, size_t errlen) {
    const cJSON *q;
    int index = 0;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(root, "queries")) {
        const char *id = str_field(q, "id"), *ctx = str_field(q, "context"),
                   *question = str_field(q, "question");
        const cJSON *gt = id ? cJSON_GetObjectItemCaseSensitive(c->truth, id) : NULL;
        if (!ctx || !question || !gt) {
            repro_errf(err, errlen, "%s: query %d lacks id, context, question or ground truth",
                       c->path, index);
            return -1;
        }
        index++;
        const char *texts[64];
        int n = 0;
        const cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(gt, "answers")) {
            if (cJSON_IsString(a) && a->valuestring[0] && n < 64) texts[n++] = a->valuestring;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(gt, "is_impossible")) || n == 0) {
            c->skipped++;
            continue;
        }
        if (squad_add(c, id, "", ctx, question, texts, n)) return oom(c, err, errlen);
        if (enough(c)) return 0;
    }
    return 0;
}

static int load_squad(load_ctx *c, const char *path, char *err, size_t errlen) {
    char file[4096], gt_path[4096];
    resolve(path, "queries.json", file, sizeof file);
    c->path = file;
    cJSON *root = read_json(file, err, errlen);
    if (!root) return -1;
    int rc;
    if (cJSON_GetObjectItemCaseSensitive(root, "data")) {
        rc = squad_official(c, root, err, errlen);
    } else if (cJSON_GetObjectItemCaseSensitive(root, "queries")) {
        sibling(file, "ground_truth.json", gt_path, sizeof gt_path);
        cJSON *gt = read_json(gt_path, err, errlen);
        c->truth = gt;
        rc = gt ? squad_shared(c, root, err, errlen) : -1;
        cJSON_Delete(gt);
    } else {
        repro_errf(err, errlen, "%s: neither official SQuAD ({data:[...]}) nor queries.json", file);
        rc = -1;
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- MultiHop-RAG ---- */

/* The article body for one evidence item from corpus.json (matched by url, then title). */
static const char *corpus_body(const cJSON *corpus, const cJSON *ev) {
    const char *url = str_field(ev, "url"), *title = str_field(ev, "title");
    const cJSON *art;
    cJSON_ArrayForEach(art, corpus) {
        const char *u = str_field(art, "url"), *t = str_field(art, "title");
        if ((url && u && !strcmp(url, u)) || (!url && title && t && !strcmp(title, t)))
            return str_field(art, "body");
    }
    return NULL;
}

static int has_para(const repro_example *e, const char *text) {
    for (int i = 0; i < e->n_paras; i++)
        if (!strcmp(e->paras[i].text, text)) return 1;
    return 0;
}

/* One query: gold paragraphs are the evidence articles' bodies when corpus.json is there,
 * else the evidence facts themselves. */
static int mhr_add(load_ctx *c, const char *id, const char *question, const char *answer,
                   const cJSON *evidence) {
    repro_example *e;
    if (repro_push_example(c->d, &c->cap, &e) || !(e->id = repro_strdup(id)) ||
        !(e->question = repro_strdup(question)) || repro_push_answer(e, answer))
        return -1;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evidence) {
        const char *title = str_field(ev, "title"), *text = str_field(ev, "fact");
        const char *body = c->corpus ? corpus_body(c->corpus, ev) : NULL;
        if (body) text = body;
        if (!text || has_para(e, text)) continue;
        if (repro_push_para(e, title ? title : "", text, 1)) return -1;
    }
    return 0;
}

static int mhr_official(const cJSON *rec, int index, void *vctx, char *err, size_t errlen) {
    load_ctx *c = vctx;
    const char *q = str_field(rec, "query"), *a = str_field(rec, "answer");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(rec, "evidence_list");
    if (!q || !a || !cJSON_IsArray(ev)) {
        repro_errf(err, errlen, "%s: record %d lacks query, answer or evidence_list", c->path,
                   index);
        return -1;
    }
    char id[32];
    snprintf(id, sizeof id, "%d", index);
    if (mhr_add(c, id, q, a, ev)) return oom(c, err, errlen);
    return enough(c);
}

static int mhr_shared(load_ctx *c, const cJSON *root, char *err, size_t errlen) {
    const cJSON *q;
    int index = 0;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(root, "queries")) {
        const char *id = str_field(q, "id"), *question = str_field(q, "question");
        const cJSON *gt = id ? cJSON_GetObjectItemCaseSensitive(c->truth, id) : NULL;
        const char *a = str_field(gt, "answer");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(gt, "evidence_list");
        if (!question || !a || !cJSON_IsArray(ev)) {
            repro_errf(err, errlen, "%s: query %d lacks id, question, answer or evidence_list",
                       c->path, index);
            return -1;
        }
        index++;
        if (mhr_add(c, id, question, a, ev)) return oom(c, err, errlen);
        if (enough(c)) return 0;
    }
    return 0;
}

static int load_mhr(load_ctx *c, const char *path, char *err, size_t errlen) {
    char file[4096], aux[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(file, sizeof file, "%s/queries.json", path);
        if (!file_exists(file)) snprintf(file, sizeof file, "%s/MultiHopRAG.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    c->path = file;
    sibling(file, "corpus.json", aux, sizeof aux);
    cJSON *corpus = NULL;
    if (file_exists(aux) && !(corpus = read_json(aux, err, errlen))) return -1;
    c->corpus = corpus;
    c->d->note = corpus ? NULL
                        : "MultiHop-RAG: no corpus.json beside the queries, so the evidence "
                          "facts are the gold paragraphs and other queries' facts the "
                          "distractors";
    cJSON *root = read_json(file, err, errlen);
    int rc = -1;
    if (root && cJSON_IsArray(root)) {
        rc = 0;
        const cJSON *it;
        int index = 0;
        cJSON_ArrayForEach(it, root) {
            if ((rc = mhr_official(it, index++, c, err, errlen)) != 0) break;
        }
        rc = rc < 0 ? -1 : 0;
    } else if (root && cJSON_GetObjectItemCaseSensitive(root, "queries")) {
        sibling(file, "ground_truth.json", aux, sizeof aux);
        cJSON *gt = read_json(aux, err, errlen);
        c->truth = gt;
        rc = gt ? mhr_shared(c, root, err, errlen) : -1;
        cJSON_Delete(gt);
    } else if (root) {
        repro_errf(err, errlen,
                   "%s: neither MultiHopRAG.json (an array) nor queries.json ({queries:[...]})",
                   file);
    }
    cJSON_Delete(root);
    cJSON_Delete(corpus);
    return rc;
}

/* ---- BABILong ---- */

static int babilong_record(const cJSON *rec, int index, void *vctx, char *err, size_t errlen) {
    load_ctx *c = vctx;
    /* The WiM repository's files use context/query/target; the Hugging Face release of
     * BABILong uses input/question/target. */
    const char *ctx = str_field(rec, "context"), *q = str_field(rec, "query"),
               *t = str_field(rec, "target");
    if (!ctx) ctx = str_field(rec, "input");
    if (!q) q = str_field(rec, "question");
    if (!ctx || !q || !t) {
        repro_errf(err, errlen, "%s: record %d lacks context, query or target", c->path, index);
        return -1;
    }
    const char *base = strrchr(c->path, '/');
    base = base ? base + 1 : c->path;
    char id[512];
    snprintf(id, sizeof id, "%s:%d", base, index);
    repro_example *e;
    if (repro_push_example(c->d, &c->cap, &e) || !(e->id = repro_strdup(id)) ||
        !(e->question = repro_strdup(q)) || repro_push_answer(e, t) ||
        repro_push_para(e, "", ctx, 1))
        return oom(c, err, errlen);
    e->prebuilt = 1;
    return enough(c);
}

int repro_load(repro_task task, const char *path, int max_n, repro_dataset *out, char *err,
               size_t errlen) {
    memset(out, 0, sizeof *out);
    out->task = task;
    load_ctx c = {.d = out, .max_n = max_n, .path = path};
    int rc;
    switch (task) {
    case REPRO_HOTPOTQA:
        rc = for_each_record(path, hotpot_record, &c, err, errlen);
        break;
    case REPRO_SQUAD:
        rc = load_squad(&c, path, err, errlen);
        break;
    case REPRO_MULTIHOP_RAG:
        rc = load_mhr(&c, path, err, errlen);
        break;
    case REPRO_BABILONG:
        rc = for_each_record(path, babilong_record, &c, err, errlen);
        break;
    case REPRO_CWE:
        repro_errf(err, errlen, "%s: cwe is generated (repro_cwe_generate), not loaded", path);
        rc = -1;
        break;
    default:
        repro_errf(err, errlen, "%s: unknown task %d", path, (int)task);
        rc = -1;
    }
    out->skipped = c.skipped;
    if (rc == 0 && out->n == 0) {
        repro_errf(err, errlen, "%s: no examples", path);
        rc = -1;
    }
    if (rc) {
        repro_dataset_free(out);
        out->note = NULL;
    }
    return rc;
}
