/*
 * prompts.c — loading, checking and rendering the WiM prompt templates (see prompts.h).
 *
 * Owns: the table of placeholder names and which kinds may use them, reading a
 * template folder, and the one-pass substitution.
 *
 * Invariants: a placeholder is exactly "{" identifier "}" (identifier: a letter
 * or "_", then letters, digits, "_"); everything else is literal text, so JSON
 * or "{ }" in a template needs no escaping. Rendering measures first and writes
 * second over the same scan, so the result is allocated once at its exact size.
 */
#include "prompts.h"
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VAR_USER_HEADER, VAR_GENERATION_HEADER, VAR_QUERY, VAR_ANSWER, VAR_MARGINS, VAR_COUNT };

static const char *const var_names[VAR_COUNT] = {"user_header", "generation_header", "query",
                                                 "answer", "margins"};

#define BIT(v) (1u << (v))
#define COMMON_VARS (BIT(VAR_USER_HEADER) | BIT(VAR_GENERATION_HEADER) | BIT(VAR_QUERY))

static const unsigned allowed_vars[WIM_PROMPT_COUNT] = {
    [WIM_PROMPT_SYSTEM] = COMMON_VARS,
    [WIM_PROMPT_EXTRACT] = COMMON_VARS,
    [WIM_PROMPT_CLASSIFY] = COMMON_VARS | BIT(VAR_ANSWER),
    [WIM_PROMPT_ANSWER] = COMMON_VARS | BIT(VAR_MARGINS),
};

/* A template that lacks these could not do its job (the margin to judge, the margins to use). */
static const unsigned required_vars[WIM_PROMPT_COUNT] = {
    [WIM_PROMPT_CLASSIFY] = BIT(VAR_ANSWER),
    [WIM_PROMPT_ANSWER] = BIT(VAR_MARGINS),
};

static const char *const file_names[WIM_PROMPT_COUNT] = {
    "system_message.txt", "extractive_summary.txt", "classification.txt", "final_answer.txt"};

static const char *const kind_names[WIM_PROMPT_COUNT] = {"system", "extraction", "classification",
                                                         "final answer"};

/* Templates are a few hundred bytes; a bigger file is a wrong path, not a prompt. */
#define MAX_TEMPLATE_BYTES (1u << 20)

const char *wim_prompt_file_name(enum wim_prompt_kind kind) {
    return (unsigned)kind < WIM_PROMPT_COUNT ? file_names[kind] : NULL;
}

static int is_ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Length of the placeholder "{name}" starting at s (0 when s does not start one); the name is
 * s[1 .. 1+*name_len). */
static size_t placeholder_at(const char *s, size_t *name_len) {
    if (s[0] != '{' || !is_ident_start(s[1])) return 0;
    size_t n = 1;
    while (is_ident_char(s[1 + n]))
        n++;
    if (s[1 + n] != '}') return 0;
    *name_len = n;
    return n + 2;
}

/* Index of a known placeholder name, or -1. */
static int var_index(const char *name, size_t len) {
    for (int v = 0; v < VAR_COUNT; v++)
        if (strlen(var_names[v]) == len && memcmp(var_names[v], name, len) == 0) return v;
    return -1;
}

static const char *var_value(const wim_prompt_vars *v, int idx) {
    switch (idx) {
    case VAR_USER_HEADER:
        return v->user_header;
    case VAR_GENERATION_HEADER:
        return v->generation_header;
    case VAR_QUERY:
        return v->query;
    case VAR_ANSWER:
        return v->answer;
    default:
        return v->margins;
    }
}

/* "{user_header}, {generation_header}, {query}" for a set of vars. */
static void list_vars(unsigned mask, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int v = 0; v < VAR_COUNT; v++) {
        if (!(mask & BIT(v))) continue;
        int w = snprintf(buf + used, cap - used, "%s{%s}", used ? ", " : "", var_names[v]);
        if (w < 0 || (size_t)w >= cap - used) return;
        used += (size_t)w;
    }
}

int wim_prompt_check(enum wim_prompt_kind kind, const char *tmpl, const char *label, char *err,
                     size_t errlen) {
    if ((unsigned)kind >= WIM_PROMPT_COUNT) return wim_errorf(err, errlen, "bad prompt kind");
    unsigned used = 0;
    int line = 1;
    for (const char *s = tmpl; *s; s++) {
        if (*s == '\n') line++;
        size_t nlen, len = placeholder_at(s, &nlen);
        if (!len) continue;
        int v = var_index(s + 1, nlen);
        if (v < 0)
            return wim_errorf(err, errlen, "%s: unknown placeholder {%.*s} on line %d", label,
                              (int)(nlen > 60 ? 60 : nlen), s + 1, line);
        if (!(allowed_vars[kind] & BIT(v))) {
            char allowed[128];
            list_vars(allowed_vars[kind], allowed, sizeof allowed);
            return wim_errorf(err, errlen,
                              "%s: placeholder {%s} on line %d is not allowed in the %s prompt "
                              "(allowed: %s)",
                              label, var_names[v], line, kind_names[kind], allowed);
        }
        used |= BIT(v);
        s += len - 1;
    }
    unsigned missing = required_vars[kind] & ~used;
    if (missing) {
        char names[128];
        list_vars(missing, names, sizeof names);
        return wim_errorf(err, errlen, "%s: the %s prompt must use %s", label, kind_names[kind],
                          names);
    }
    return 0;
}

/* The whole file as a NUL-terminated string; NULL with err on failure. */
static char *read_template(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        wim_errorf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1024, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (len < cap - 1) break; /* end of file or error; ferror says which */
        if (cap >= MAX_TEMPLATE_BYTES) {
            wim_errorf(err, errlen, "%s: larger than %u bytes; not a prompt template", path,
                       MAX_TEMPLATE_BYTES);
            goto fail;
        }
        char *grown = realloc(buf, cap * 2);
        if (!grown) free(buf);
        buf = grown; /* NULL ends the loop as out of memory */
        cap *= 2;
    }
    if (!buf) {
        wim_errorf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    if (ferror(f)) {
        wim_errorf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    buf[len] = 0;
    if (memchr(buf, 0, len)) {
        wim_errorf(err, errlen, "%s: contains a NUL byte; not a text template", path);
        goto fail;
    }
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

/* "dir/name", without a doubled "/" when dir already ends with one. */
static char *join_path(const char *dir, const char *name) {
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (slash) p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

/* One template: read (or copy the built-in) and check. NULL with err on failure. */
static char *load_one(const char *dir, enum wim_prompt_kind kind, char *err, size_t errlen) {
    char label[96];
    char *path = NULL, *text;
    if (!dir) {
        snprintf(label, sizeof label, "built-in %s", file_names[kind]);
        text = strdup(wim_prompt_defaults[kind]);
        if (!text) wim_errorf(err, errlen, "%s: out of memory", label);
    } else {
        path = join_path(dir, file_names[kind]);
        if (!path) {
            wim_errorf(err, errlen, "out of memory");
            return NULL;
        }
        text = read_template(path, err, errlen);
    }
    if (text && wim_prompt_check(kind, text, path ? path : label, err, errlen)) {
        free(text);
        text = NULL;
    }
    free(path);
    return text;
}

int wim_prompts_load(const char *dir, wim_prompts *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    if (dir && !(p->dir = strdup(dir))) return wim_errorf(err, errlen, "out of memory");
    for (int k = 0; k < WIM_PROMPT_COUNT; k++) {
        p->text[k] = load_one(dir, (enum wim_prompt_kind)k, err, errlen);
        if (!p->text[k]) {
            wim_prompts_free(p);
            return -1;
        }
    }
    return 0;
}

void wim_prompts_free(wim_prompts *p) {
    if (!p) return;
    for (int k = 0; k < WIM_PROMPT_COUNT; k++)
        free(p->text[k]);
    free(p->dir);
    memset(p, 0, sizeof *p);
}

/* One scan of tmpl: with out NULL measures the result into *total, otherwise writes it.
 * Returns 0, or -1 with err (unknown placeholder, missing value, size overflow). */
static int render_pass(const char *tmpl, const wim_prompt_vars *v, char *out, size_t *total,
                       char *err, size_t errlen) {
    size_t n = 0;
    const char *lit = tmpl; /* start of the literal run not yet emitted */
    const char *s = tmpl;
    for (;; s++) {
        size_t nlen = 0, len = *s ? placeholder_at(s, &nlen) : 0;
        if (*s && !len) continue;
        size_t litlen = (size_t)(s - lit);
        if (out) memcpy(out + n, lit, litlen);
        n += litlen;
        if (!*s) break;
        int idx = var_index(s + 1, nlen);
        if (idx < 0)
            return wim_errorf(err, errlen, "unknown placeholder {%.*s}",
                              (int)(nlen > 60 ? 60 : nlen), s + 1);
        const char *val = var_value(v, idx);
        if (!val)
            return wim_errorf(err, errlen, "the template uses {%s} but no value was given",
                              var_names[idx]);
        size_t vlen = strlen(val);
        if (vlen > SIZE_MAX / 2 - n) return wim_errorf(err, errlen, "rendered prompt too large");
        if (out) memcpy(out + n, val, vlen);
        n += vlen;
        s += len - 1;
        lit = s + 1;
    }
    if (out) out[n] = 0;
    *total = n;
    return 0;
}

char *wim_prompt_render(const char *tmpl, const wim_prompt_vars *v, char *err, size_t errlen) {
    size_t n;
    if (render_pass(tmpl, v, NULL, &n, err, errlen)) return NULL;
    char *out = malloc(n + 1);
    if (!out) {
        wim_errorf(err, errlen, "out of memory rendering a prompt");
        return NULL;
    }
    render_pass(tmpl, v, out, &n, err, errlen);
    return out;
}
