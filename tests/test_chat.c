/*
 * test_chat.c — chat family detection on the templates that ship in the
 * shared vocabularies (qwen2, llama-bpe, phi-3) and on hand-written ChatML,
 * Llama 2 / Mistral [INST] and Phi-3 templates; the names; the errors.
 */
#include "test.h"

#include "chat.h"
#include "gguf.h"

/* tokenizer.chat_template of a shared vocabulary (malloc'd), or NULL. */
static char *template_of(const char *vocab) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", t_shared(), vocab);
    gguf_file *f;
    if (!t_file_exists(path) || gguf_open(path, &f, err, sizeof err)) return NULL;
    char *tmpl = NULL;
    if (gguf_get_str(f, "tokenizer.chat_template", &tmpl) != 1) tmpl = NULL;
    gguf_close(f);
    return tmpl;
}

static void check_fixture(const char *vocab, enum wim_chat_family want, const char *user,
                          const char *gen) {
    char *tmpl = template_of(vocab);
    if (!tmpl)
        SKIP("%s/vocab/ggml-vocab-%s.gguf (with a chat template) not found", t_shared(), vocab);
    wim_chat c;
    char err[256] = "";
    int rc = wim_chat_detect(tmpl, &c, err, sizeof err);
    free(tmpl);
    CHECKF(rc == 0, "%s: %s", vocab, err);
    CHECKF(c.family == want, "%s: detected %s", vocab, c.name);
    CHECK(strcmp(c.user_header, user) == 0 && strcmp(c.generation_header, gen) == 0);
}

static void test_qwen2_template(void) {
    check_fixture("qwen2", WIM_CHAT_CHATML, "<|im_start|>user\n",
                  "<|im_end|>\n<|im_start|>assistant\n");
}

static void test_llama_bpe_template(void) {
    check_fixture("llama-bpe", WIM_CHAT_LLAMA3, "<|start_header_id|>user<|end_header_id|>\n\n",
                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_phi3_template(void) {
    check_fixture("phi-3", WIM_CHAT_PHI3, "<|user|>\n", "<|end|>\n<|assistant|>\n");
}

static enum wim_chat_family detect(const char *tmpl) {
    wim_chat c;
    char err[256];
    return wim_chat_detect(tmpl, &c, err, sizeof err) == 0 ? c.family : WIM_CHAT_COUNT;
}

static void test_hand_written(void) {
    /* ChatML as SmolLM / Qwen write it */
    CHECK(
        detect(
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|im_start|>assistant\\n' }}{% endif %}") == WIM_CHAT_CHATML);
    /* Mistral Instruct */
    CHECK(
        detect("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + "
               "eos_token}}{% endif %}{% endfor %}") == WIM_CHAT_LLAMA2);
    /* Llama 2 chat with a system block */
    CHECK(
        detect(
            "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
            "messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + "
            "content.strip() + ' [/INST]' }}") == WIM_CHAT_LLAMA2);
    /* Phi-3 */
    CHECK(detect("{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\\n' + "
                 "message['content'] + '<|end|>\\n<|assistant|>\\n'}}{% endif %}{% endfor %}") ==
          WIM_CHAT_PHI3);
    /* Llama 3 */
    CHECK(detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
                 "message['content'] | trim + '<|eot_id|>' }}") == WIM_CHAT_LLAMA3);
}

static void test_raw_and_unknown(void) {
    wim_chat c;
    char err[256] = "";
    CHECK(wim_chat_detect(NULL, &c, err, sizeof err) == 0 && c.family == WIM_CHAT_RAW);
    CHECK(strcmp(c.name, "raw") == 0 && c.user_header[0] == 0 && c.generation_header[0] == 0);
    CHECK(wim_chat_detect("", &c, err, sizeof err) == 0 && c.family == WIM_CHAT_RAW);
    /* Gemma's turns are recognised; Zephyr (<|user|> without Phi-3's <|end|>) is not guessed */
    CHECK(wim_chat_detect("{{ '<start_of_turn>user\\n' + content + '<end_of_turn>\\n' }}", &c, err,
                          sizeof err) == 0 &&
          c.family == WIM_CHAT_GEMMA);
    CHECK(strcmp(c.user_header, "<start_of_turn>user\n") == 0 &&
          strcmp(c.generation_header, "<end_of_turn>\n<start_of_turn>model\n") == 0);
    CHECK(wim_chat_detect("{{ '<|user|>\\n' + message['content'] + eos_token }}", &c, err,
                          sizeof err) == -1);
    CHECK(strstr(err, "--chat") != NULL);
}

static void test_by_name(void) {
    static const struct {
        const char *name;
        enum wim_chat_family f;
    } names[] = {{"chatml", WIM_CHAT_CHATML}, {"llama3", WIM_CHAT_LLAMA3},
                 {"llama2", WIM_CHAT_LLAMA2}, {"mistral", WIM_CHAT_LLAMA2},
                 {"phi3", WIM_CHAT_PHI3},     {"gemma", WIM_CHAT_GEMMA},
                 {"raw", WIM_CHAT_RAW}};
    wim_chat c;
    char err[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECKF(wim_chat_by_name(names[i].name, &c, err, sizeof err) == 0 && c.family == names[i].f,
               "%s", names[i].name);
    CHECK(wim_chat_by_name("llama2", &c, err, sizeof err) == 0);
    CHECK(strcmp(c.user_header, "[INST] ") == 0 && strcmp(c.generation_header, " [/INST]") == 0);
    CHECK(wim_chat_by_name("zephyr", &c, err, sizeof err) == -1 && strstr(err, "zephyr") != NULL);
    CHECK(wim_chat_by_name(NULL, &c, err, sizeof err) == -1);
}

int main(void) {
    RUN(test_qwen2_template);
    RUN(test_llama_bpe_template);
    RUN(test_phi3_template);
    RUN(test_hand_written);
    RUN(test_raw_and_unknown);
    RUN(test_by_name);
    return t_exit();
}
