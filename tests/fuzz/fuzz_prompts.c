/*
 * fuzz_prompts.c — prompt templates on arbitrary text: a template the checker
 * accepts for its kind renders (every variable given), substituted text is
 * never scanned again (a variable holding "{query}" stays literal), and a
 * template without "{" renders to itself. The first byte picks the kind.
 */
#include "fuzz.h"
#include "prompts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    enum wim_prompt_kind kind = (enum wim_prompt_kind)(data[0] % WIM_PROMPT_COUNT);
    char *tmpl = strndup((const char *)data + 1, size - 1); /* a file's text ends at a NUL */
    if (!tmpl) return 0;
    char err[256];
    const wim_prompt_vars v = {"<U>", "<G>", "Q{query}", "A{answer}", "M{margins}"};
    if (wim_prompt_check(kind, tmpl, "fuzz", err, sizeof err) == 0) {
        char *out = wim_prompt_render(tmpl, &v, err, sizeof err);
        FUZZ_ASSERT(out, "an accepted template does not render: %s", err);
        if (!strchr(tmpl, '{')) FUZZ_ASSERT(!strcmp(out, tmpl), "plain text changed");
        free(out);
    } else {
        FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
    }
    char *out = wim_prompt_render(tmpl, &v, err, sizeof err); /* any template: no crash */
    free(out);
    free(tmpl);
    return 0;
}
