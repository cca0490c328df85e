/*
 * prompts.h — the four WiM prompt templates: loading, checking, rendering.
 *
 * Owns: the template files of a prompt folder (the reference implementation's
 * names: system_message.txt, extractive_summary.txt, classification.txt,
 * final_answer.txt), the project's built-in defaults (data/prompts/, compiled
 * in as src/prompts_default.c), which placeholders each template may use, and
 * the substitution of {name} placeholders.
 *
 * Roles, in the order the pipeline uses them:
 *   system   prefilled once, first; opens the user turn and a ``` fence
 *   extract  appended after the segments (inside the fence); closes the fence,
 *            asks for the margin, opens the reply with {generation_header}
 *   classify a fresh context; judges one margin ({answer}); reply YES#... / NO#...
 *   answer   appended after the segments; closes the fence, lists the relevant
 *            {margins}, asks {query}, opens the reply
 *
 * Placeholders: {user_header}, {generation_header}, {query} anywhere; {answer}
 * only in classify; {margins} only in answer. Anything of the form {identifier}
 * is a placeholder; any other "{" (JSON, "{ }", "{{") is literal text.
 *
 * Invariants: a loaded wim_prompts holds four templates whose placeholders are
 * all allowed for their kind; rendering is one pass, so substituted text (a
 * query or margin containing "{query}") is never re-scanned.
 */
#ifndef WIM_PROMPTS_H
#define WIM_PROMPTS_H

#include <stddef.h>

enum wim_prompt_kind {
    WIM_PROMPT_SYSTEM,
    WIM_PROMPT_EXTRACT,
    WIM_PROMPT_CLASSIFY,
    WIM_PROMPT_ANSWER,
    WIM_PROMPT_COUNT
};

typedef struct {
    char *text[WIM_PROMPT_COUNT];
    char *dir; /* the folder they came from; NULL for the built-in defaults */
} wim_prompts;

/* Loads the four templates from dir (file names system_message.txt, extractive_summary.txt,
 * classification.txt, final_answer.txt), or the built-in defaults when dir is NULL (the defaults
 * are the files in data/prompts/, compiled in as src/prompts_default.c; a test checks they are
 * identical). Files are used byte for byte (no newline is added or stripped). Checks every
 * template's placeholders against those allowed for its kind, and that classify uses {answer}
 * and answer uses {margins}. Fails with one line, e.g. "DIR/classification.txt: unknown
 * placeholder {foo} on line 3". Returns 0, or -1 with err (p is then left empty). */
int wim_prompts_load(const char *dir, wim_prompts *p, char *err, size_t errlen);
void wim_prompts_free(wim_prompts *p);

typedef struct {
    const char *user_header, *generation_header, *query, *answer, *margins;
} wim_prompt_vars;

/* Single-pass substitution of {name} placeholders (text substituted in is never re-scanned, so a
 * margin containing "{query}" stays literal). A "{" not starting a placeholder is literal.
 * Returns a malloc'd string, or NULL with err set (unknown placeholder, a needed var NULL, OOM). */
char *wim_prompt_render(const char *tmpl, const wim_prompt_vars *v, char *err, size_t errlen);

/* Checks one template's placeholders for its kind; `label` names it in the message
 * ("LABEL: unknown placeholder {foo} on line N"). Returns 0, or -1 with err. */
int wim_prompt_check(enum wim_prompt_kind kind, const char *tmpl, const char *label, char *err,
                     size_t errlen);

/* "system_message.txt", "extractive_summary.txt", "classification.txt", "final_answer.txt". */
const char *wim_prompt_file_name(enum wim_prompt_kind kind);

/* The built-in templates, generated from data/prompts/ by data/prompts/embed.py. */
extern const char *const wim_prompt_defaults[WIM_PROMPT_COUNT];

#endif
