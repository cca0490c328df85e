/*
 * repro.h — what paper-repro needs to regenerate the paper's tables: dataset
 * loaders, the CWE generator, the long-context builder and the scorers.
 *
 * Every task is reduced to one shape, repro_example: a question, its accepted
 * answers, and paragraphs of context of which some are gold (needed for the
 * answer). The long-context builder pads the gold paragraphs with distractor
 * paragraphs from other examples up to a target length in the model's own
 * tokens. Scorers compare a prediction with the answers the way each task's
 * official evaluation does.
 */
#ifndef WIM_REPRO_H
#define WIM_REPRO_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef enum {
    REPRO_HOTPOTQA,
    REPRO_SQUAD,
    REPRO_MULTIHOP_RAG,
    REPRO_CWE,
    REPRO_BABILONG,
    REPRO_TASK_COUNT
} repro_task;

typedef struct {
    char *title; /* may be "" */
    char *text;
    int gold; /* needed for the answer */
} repro_para;

typedef struct {
    char *id;
    char *question;
    char **answers; /* accepted answers (CWE: the expected common words) */
    int n_answers;
    repro_para *paras;
    int n_paras;
    /* BABILong and CWE arrive with their whole context already built: then
     * prebuilt is set and paras holds that one context. */
    int prebuilt;
    /* Text the model's answer should continue from, or NULL. CWE: RULER's answer prefix
     * " Answer: The top 10 words that appear most often in the list are:"; RULER's whole
     * input_text is paras[0].text + "\nQuestion: " + question + answer_prefix. */
    char *answer_prefix;
} repro_example;

typedef struct {
    repro_task task;
    repro_example *ex;
    int n;
    /* A caveat about how the data was turned into examples that a report should print
     * (static string), or NULL. */
    const char *note;
    int skipped; /* records left out by the loader (SQuAD v2 unanswerable questions) */
} repro_dataset;

/* "hotpotqa", "squad", "multihop-rag", "cwe", "babilong" -> task; -1 if unknown. */
int repro_task_from_name(const char *name);
const char *repro_task_name(repro_task t);
/* Reasoning tasks count towards the paper's average; CWE (aggregation) does not. */
int repro_task_is_reasoning(repro_task t);

/* Loads up to max_n examples (0: all) of a task from path, in file order:
 *  hotpotqa: the official distractor JSON (array) or JSON Lines, fields _id, question,
 *            answer, supporting_facts, context [[title, [sentences]]]; gold = a title in
 *            supporting_facts.
 *  squad:    SQuAD v1/v2 official JSON ({data:[{title, paragraphs:[{context, qas}]}]}), or the
 *            queries/ground-truth layout in ../shared/data/squad2 (see its README); v2
 *            questions without answers are skipped (counted in out->skipped).
 *  multihop-rag: queries.json with evidence_list (facts), plus corpus.json beside it when
 *            present; without article bodies the evidence facts are the gold paragraphs and
 *            other queries' facts serve as distractors (say so in the README).
 *  babilong: one {context, query, target} object, a JSON array of them, or JSON Lines.
 *  cwe:      not loaded: use repro_cwe_generate.
 * Returns 0, or -1 with one line in err naming the file and what is wrong. */
int repro_load(repro_task task, const char *path, int max_n, repro_dataset *out, char *err,
               size_t errlen);
void repro_dataset_free(repro_dataset *d);

/* RULER's common-words-extraction task (../shared/data/cwe/RULER-CWE-FORMAT.md): n examples,
 * each a numbered word list in which n_common words appear freq_common times and the rest
 * freq_uncommon times, grown until the prompt reaches target_tokens in tok's tokens; the
 * answers are the common words. As RULER, "reaches" means prompt + 120 reserved answer tokens
 * <= target_tokens, within one 10-word step of it. Word lists are files with one word per line (the
 * RULER lists, or Debian's /usr/share/dict/words). Deterministic per seed. */
#define REPRO_WAMERICAN_WORDS "/usr/share/dict/words" /* Debian's wamerican */
typedef struct {
    const char *const *word_files;
    int n_word_files;
    int n_common, freq_common, freq_uncommon; /* RULER defaults: 10, 30, 3 */
    int target_tokens;
    uint64_t seed;
} repro_cwe_params;
int repro_cwe_generate(const wim_tokenizer *tok, const repro_cwe_params *p, int n,
                       repro_dataset *out, char *err, size_t errlen);

/* The pieces repro_cwe_generate is made of, for tests and for reproducing RULER's
 * tokenizer-independent vectors. A generator owns the word pool (the lists' lines
 * rstripped, possessives "'s" dropped, de-duplicated, sorted bytewise, shuffled with a
 * fresh Random(seed)) and RULER's global random stream (random.seed(seed)). */
typedef struct repro_cwe_gen repro_cwe_gen;
int repro_cwe_gen_open(const repro_cwe_params *p, repro_cwe_gen **out, char *err, size_t errlen);
void repro_cwe_gen_free(repro_cwe_gen *g);
int repro_cwe_gen_pool_size(const repro_cwe_gen *g);
const char *repro_cwe_gen_pool_word(const repro_cwe_gen *g, int i);
/* RULER's generate_input_output(num_words) with the base template and one few-shot
 * example: the branch for max_seq_length < 4096 when short_branch is set (few-shot 3/1,
 * main 6/1 repeats), else p's freq_common/freq_uncommon. Consumes the global stream as
 * RULER does. Returns the malloc'd input_text (ending with the answer prefix) and, when
 * answers is not NULL, a malloc'd array of n_common malloc'd words; NULL with err set. */
char *repro_cwe_gen_input(repro_cwe_gen *g, int num_words, int short_branch, char ***answers,
                          char *err, size_t errlen);

/* The document for one example at a target length: its gold paragraphs plus distractor
 * paragraphs drawn (seeded) from the example's own non-gold paragraphs, then the other
 * examples of pool, in a seeded order with the gold
 * ones at random positions, paragraphs separated by a blank line, until the text reaches
 * target_tokens (within 1 %) in tok's tokens; the last distractor is cut at a sentence (or
 * word) boundary to land on the target. Every gold paragraph appears exactly once. A
 * prebuilt example is returned as is. Returns a malloc'd string (and its token count), or
 * NULL with err set (e.g. the pool is too small to reach the target). */
char *repro_build_document(const repro_example *ex, const repro_dataset *pool,
                           const wim_tokenizer *tok, int target_tokens, uint64_t seed,
                           int *n_tokens, char *err, size_t errlen);

/* Scores. All in [0, 1]. */
typedef struct {
    double em, f1;            /* hotpotqa, squad: max over answers, official normalisation */
    double accuracy;          /* multihop-rag: normalised containment of the answer; babilong:
                                 the target word contained in the prediction (case-insensitive) */
    double precision, recall; /* cwe: over the expected words */
    double score;             /* the task's headline number (f1, accuracy or cwe F1) */
    double string_match_all;  /* cwe: RULER's metric, share of expected words that are
                                 substrings of the lower-cased prediction */
} repro_score;
/* The official answer normalisation: lower-case, remove punctuation and the articles
 * a/an/the, collapse whitespace (Unicode letters and digits are kept). Returns malloc'd. */
char *repro_normalize_answer(const char *s);
void repro_score_prediction(repro_task task, const repro_example *ex, const char *prediction,
                            repro_score *out);

#endif
