/*
 * chat.c — chat families and their WiM header strings (see chat.h).
 *
 * Owns: the table of families and their `user_header` / `generation_header`
 * strings (as the WiM reference run scripts use them), and recognising a
 * family from the markers a Jinja chat template writes out.
 *
 * Invariants: detection never guesses: a template is one family only when it
 * carries that family's turn markers, and anything else is an error naming
 * the --chat override. No template at all is the raw family (the caller says
 * so once on stderr: a library does not print).
 */
#include "chat.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const wim_chat families[WIM_CHAT_COUNT] = {
    [WIM_CHAT_RAW] = {WIM_CHAT_RAW, "raw", "", "", "\n\n"},
    [WIM_CHAT_CHATML] = {WIM_CHAT_CHATML, "chatml", "<|im_start|>user\n",
                         "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>\n"},
    [WIM_CHAT_LLAMA3] = {WIM_CHAT_LLAMA3, "llama3", "<|start_header_id|>user<|end_header_id|>\n\n",
                         "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                         "<|eot_id|>"},
    [WIM_CHAT_LLAMA2] = {WIM_CHAT_LLAMA2, "llama2", "[INST] ", " [/INST]", "</s>"},
    [WIM_CHAT_PHI3] = {WIM_CHAT_PHI3, "phi3", "<|user|>\n", "<|end|>\n<|assistant|>\n",
                       "<|end|>\n"},
    [WIM_CHAT_GEMMA] = {WIM_CHAT_GEMMA, "gemma", "<start_of_turn>user\n",
                        "<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>\n"},
};

/* The markers that identify a family in a template, most specific first:
 * every marker of an entry must be present. */
static const struct {
    enum wim_chat_family family;
    const char *markers[2];
} rules[] = {
    {WIM_CHAT_LLAMA3, {"<|start_header_id|>", "<|end_header_id|>"}},
    {WIM_CHAT_CHATML, {"<|im_start|>", "<|im_end|>"}},
    {WIM_CHAT_PHI3, {"<|user|>", "<|end|>"}},
    {WIM_CHAT_LLAMA2, {"[INST]", "[/INST]"}},
    {WIM_CHAT_GEMMA, {"<start_of_turn>", "<end_of_turn>"}},
};

int wim_chat_detect(const char *tmpl, wim_chat *out, char *err, size_t errlen) {
    if (!tmpl || !*tmpl) {
        *out = families[WIM_CHAT_RAW];
        return 0;
    }
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        int all = 1;
        for (int k = 0; k < 2 && rules[i].markers[k]; k++)
            all &= strstr(tmpl, rules[i].markers[k]) != NULL;
        if (all) {
            *out = families[rules[i].family];
            return 0;
        }
    }
    return wim_errorf(err, errlen,
                      "unrecognised chat template (not ChatML, Llama 3, Llama 2/Mistral [INST], "
                      "Phi-3 or Gemma); name the family with --chat "
                      "chatml|llama3|llama2|mistral|phi3|gemma|raw");
}

int wim_chat_by_name(const char *name, wim_chat *out, char *err, size_t errlen) {
    if (name && strcmp(name, "mistral") == 0) name = "llama2";
    for (int f = 0; name && f < WIM_CHAT_COUNT; f++) {
        if (strcmp(families[f].name, name) == 0) {
            *out = families[f];
            return 0;
        }
    }
    return wim_errorf(
        err, errlen, "unknown chat family '%s' (chatml, llama3, llama2, mistral, phi3, gemma, raw)",
        name ? name : "");
}
