/*
 * chat.h — chat families and the header strings the WiM prompts need.
 *
 * Owns: recognising the chat family from tokenizer.chat_template and the
 * `user_header` / `generation_header` strings of each family.
 *
 * Invariant: a model without a template is the `raw` family (empty headers);
 * a template that matches no known family is an error unless the caller
 * names a family explicitly.
 */
#ifndef WIM_CHAT_H
#define WIM_CHAT_H

#include <stddef.h>

enum wim_chat_family {
    WIM_CHAT_RAW = 0,
    WIM_CHAT_CHATML, /* <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n */
    WIM_CHAT_LLAMA3, /* <|start_header_id|>user<|end_header_id|>\n\n ... <|eot_id|> */
    WIM_CHAT_LLAMA2, /* [INST] ... [/INST] (Llama 2, Mistral) */
    WIM_CHAT_PHI3,   /* <|user|>\n ... <|end|>\n<|assistant|>\n */
    WIM_CHAT_GEMMA,  /* <start_of_turn>user\n ... <end_of_turn>\n<start_of_turn>model\n */
    WIM_CHAT_COUNT
};

typedef struct {
    enum wim_chat_family family;
    const char *name;              /* "raw", "chatml", "llama3", "llama2", "phi3" */
    const char *user_header;       /* text that opens a user turn */
    const char *generation_header; /* text that closes the user turn and opens the reply */
    const char *end_of_turn;       /* text that closes a reply, before the next user turn
                                      (a transcript of several turns: wim serve's chat) */
} wim_chat;

/* Detects the family from a Jinja chat template (NULL or "" -> raw).
 * Returns 0, or -1 with err set when the template is not recognised. */
int wim_chat_detect(const char *tmpl, wim_chat *out, char *err, size_t errlen);
/* By name ("chatml", "llama3", "llama2", "mistral", "phi3", "raw"); -1 if unknown. */
int wim_chat_by_name(const char *name, wim_chat *out, char *err, size_t errlen);

#endif
