/*
 * table.c — merges paper-repro result files into the paper's tables.
 *
 * Results are keyed by (model fingerprint, task, length, example, pattern)
 * and counted once, so shards from any number of machines merge in any
 * order to the same table. A cell is the mean headline score (percent) of
 * its examples; "reasoning" averages the reasoning tasks' cells (CWE is an
 * aggregation task and stays out, as in the paper).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "repro_internal.h"
#include "runner.h"

typedef struct {
    char *key; /* fingerprint|task|length|example|pattern */
    char *model;
    int task, length, pattern;
    double score, judge; /* judge < 0: none */
} record;

typedef struct {
    record *r;
    int n, cap;
} records;

static const char *const patterns[] = {"llm", "rag", "wim"}; /* the paper's column order */

static int pattern_index(const char *s) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, patterns[i])) return i;
    return -1;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const record *)a)->key, ((const record *)b)->key);
}

static int add_line(records *rs, const char *line) {
    cJSON *j = cJSON_Parse(line);
    if (!j) return 0; /* not a result line: ignored */
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(j, "task"),
                *len = cJSON_GetObjectItemCaseSensitive(j, "length"),
                *id = cJSON_GetObjectItemCaseSensitive(j, "example_id"),
                *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                *model = cJSON_GetObjectItemCaseSensitive(j, "model"),
                *fp = cJSON_GetObjectItemCaseSensitive(j, "model_fingerprint"),
                *score = cJSON_GetObjectItemCaseSensitive(j, "score");
    const cJSON *headline = cJSON_GetObjectItemCaseSensitive(score, "score"),
                *judge = cJSON_GetObjectItemCaseSensitive(score, "judge");
    int t = cJSON_IsString(task) ? repro_task_from_name(task->valuestring) : -1;
    int pi = cJSON_IsString(pat) ? pattern_index(pat->valuestring) : -1;
    int rc = 0;
    if (t >= 0 && pi >= 0 && cJSON_IsNumber(len) && cJSON_IsString(id) && cJSON_IsString(model) &&
        cJSON_IsString(fp) && cJSON_IsNumber(headline)) {
        if (rs->n == rs->cap) {
            int cap = rs->cap ? 2 * rs->cap : 256;
            record *r = realloc(rs->r, (size_t)cap * sizeof *r);
            if (!r)
                rc = -1;
            else
                rs->r = r, rs->cap = cap;
        }
        if (rc == 0) {
            sbuf b = {0};
            sbuf_addf(&b, "%s|%d|%d|%s|%d", fp->valuestring, t, len->valueint, id->valuestring, pi);
            record *r = &rs->r[rs->n];
            r->key = sbuf_take(&b);
            r->model = repro_strdup(model->valuestring);
            r->task = t;
            r->length = len->valueint;
            r->pattern = pi;
            r->score = headline->valuedouble;
            r->judge = cJSON_IsNumber(judge) ? judge->valuedouble : -1;
            if (!r->key || !r->model)
                rc = -1;
            else
                rs->n++;
        }
    }
    cJSON_Delete(j);
    return rc;
}

static int add_file(records *rs, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = repro_read_file(path, &len, err, errlen);
    if (!text) return -1;
    int rc = 0;
    for (char *line = text, *nl; rc == 0 && line < text + len; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) break; /* a torn last line of a crashed run */
        *nl = 0;
        rc = add_line(rs, line);
    }
    free(text);
    if (rc) repro_errf(err, errlen, "out of memory");
    return rc;
}

static int add_path(records *rs, const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) {
        repro_errf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return add_file(rs, path, err, errlen);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort), rc = 0;
    if (n < 0) {
        repro_errf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]->d_name);
        if (rc == 0 && l > 6 && !strcmp(names[i]->d_name + l - 6, ".jsonl")) {
            sbuf b = {0};
            sbuf_addf(&b, "%s/%s", path, names[i]->d_name);
            char *full = sbuf_take(&b);
            rc = full ? add_file(rs, full, err, errlen) : -1;
            free(full);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- layout ---- */

typedef struct {
    int task, length, pattern; /* task == REPRO_TASK_COUNT: the reasoning average */
} column;

static int cmp_col(const void *a, const void *b) {
    const column *x = a, *y = b;
    if (x->length != y->length) return x->length - y->length;
    if (x->task != y->task) return x->task - y->task;
    return x->pattern - y->pattern;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void length_label(int length, char *buf, size_t cap) {
    if (length % 1024 == 0)
        snprintf(buf, cap, "%dk", length / 1024);
    else
        snprintf(buf, cap, "%d", length);
}

/* Mean score of a cell (judge scores when use_judge); NAN when empty. */
static double cell(const records *rs, const char *model, const column *c, int use_judge,
                   int *count) {
    double sum = 0;
    int n = 0;
    if (c->task == REPRO_TASK_COUNT) { /* average of the reasoning tasks' cells */
        for (int t = 0; t < REPRO_TASK_COUNT; t++) {
            if (!repro_task_is_reasoning((repro_task)t)) continue;
            column sub = {t, c->length, c->pattern};
            int k;
            double v = cell(rs, model, &sub, use_judge, &k);
            if (k) sum += v, n++;
        }
        *count = n;
        return n ? sum / n : 0;
    }
    for (int i = 0; i < rs->n; i++) {
        const record *r = &rs->r[i];
        if (r->task != c->task || r->length != c->length || r->pattern != c->pattern ||
            strcmp(r->model, model))
            continue;
        if (use_judge && r->judge < 0) continue;
        sum += use_judge ? r->judge : r->score;
        n++;
    }
    *count = n;
    return n ? sum / n : 0;
}

static void print_table(FILE *out, const records *rs, char **models, int n_models,
                        const column *cols, int n_cols, int csv, int use_judge) {
    const char *sep = csv ? "," : " | ";
    fprintf(out, "%smodel", csv ? "" : "| ");
    for (int c = 0; c < n_cols; c++) {
        char l[32];
        length_label(cols[c].length, l, sizeof l);
        fprintf(out, "%s%s %s %s", sep,
                cols[c].task == REPRO_TASK_COUNT ? "reasoning" : repro_task_name(cols[c].task), l,
                patterns[cols[c].pattern]);
    }
    fprintf(out, "%s\n", csv ? "" : " |");
    if (!csv) {
        fprintf(out, "|---");
        for (int c = 0; c < n_cols; c++)
            fprintf(out, "|---:");
        fprintf(out, "|\n");
    }
    for (int m = 0; m < n_models; m++) {
        fprintf(out, "%s%s", csv ? "" : "| ", models[m]);
        for (int c = 0; c < n_cols; c++) {
            int k;
            double v = cell(rs, models[m], &cols[c], use_judge, &k);
            if (k)
                fprintf(out, "%s%.1f", sep, 100 * v);
            else
                fprintf(out, "%s%s", sep, csv ? "" : "–");
        }
        fprintf(out, "%s\n", csv ? "" : " |");
    }
}

int repro_table(const char *const *paths, int n_paths, int csv, FILE *out, char *err,
                size_t errlen) {
    records rs = {0};
    int rc = 0;
    if (errlen) err[0] = 0;
    for (int i = 0; i < n_paths && rc == 0; i++)
        rc = add_path(&rs, paths[i], err, errlen);
    char **models = NULL;
    column *cols = NULL;
    int n_models = 0, n_cols = 0, judged = 0;
    if (rc == 0 && rs.n == 0) {
        repro_errf(err, errlen, "no results found in the given files");
        rc = -1;
    }
    if (rc == 0) { /* duplicates (a shard merged twice, a rerun) count once */
        qsort(rs.r, (size_t)rs.n, sizeof *rs.r, cmp_key);
        int w = 0;
        for (int i = 0; i < rs.n; i++) {
            if (w > 0 && !strcmp(rs.r[w - 1].key, rs.r[i].key)) {
                free(rs.r[i].key);
                free(rs.r[i].model);
                continue;
            }
            rs.r[w++] = rs.r[i];
        }
        rs.n = w;
        models = calloc((size_t)rs.n, sizeof *models);
        cols = calloc((size_t)rs.n * 2 + 1, sizeof *cols);
        if (!models || !cols) rc = -1;
    }
    for (int i = 0; rc == 0 && i < rs.n; i++) {
        const record *r = &rs.r[i];
        judged |= r->judge >= 0;
        int seen = 0;
        for (int m = 0; m < n_models && !seen; m++)
            seen = !strcmp(models[m], r->model);
        if (!seen) models[n_models++] = r->model;
        column c = {r->task, r->length, r->pattern},
               avg = {REPRO_TASK_COUNT, r->length, r->pattern};
        int have = 0, have_avg = !repro_task_is_reasoning((repro_task)r->task);
        for (int k = 0; k < n_cols; k++) {
            have |= !cmp_col(&cols[k], &c);
            have_avg |= !cmp_col(&cols[k], &avg);
        }
        if (!have) cols[n_cols++] = c;
        if (!have_avg) cols[n_cols++] = avg;
    }
    if (rc == 0) {
        qsort(models, (size_t)n_models, sizeof *models, cmp_str);
        qsort(cols, (size_t)n_cols, sizeof *cols, cmp_col);
        if (!csv)
            fprintf(out, "Scores (%%): mean over examples of each task's headline metric.\n\n");
        print_table(out, &rs, models, n_models, cols, n_cols, csv, 0);
        if (judged) {
            fprintf(out, csv ? "\n" : "\nLLM judge (%% judged correct):\n\n");
            print_table(out, &rs, models, n_models, cols, n_cols, csv, 1);
        }
        if (!csv) {
            fprintf(out, "\nExamples per cell:\n\n");
            for (int m = 0; m < n_models; m++) {
                fprintf(out, "- %s:", models[m]);
                for (int k = 0; k < n_cols; k++) {
                    if (cols[k].task == REPRO_TASK_COUNT) continue;
                    int count;
                    cell(&rs, models[m], &cols[k], 0, &count);
                    char l[32];
                    length_label(cols[k].length, l, sizeof l);
                    fprintf(out, " %s/%s/%s=%d", repro_task_name(cols[k].task), l,
                            patterns[cols[k].pattern], count);
                }
                fprintf(out, "\n");
            }
        }
    } else if (!err[0])
        repro_errf(err, errlen, "out of memory");
    for (int i = 0; i < rs.n; i++) {
        free(rs.r[i].key);
        free(rs.r[i].model);
    }
    free(rs.r);
    free(models);
    free(cols);
    return rc;
}
