/*
 * wim.h — the public API of the wim engine.
 *
 * A wim_model is read-only after loading and may be shared by any number of
 * wim_ctx (each holds its own KV cache and scratch). Functions that can fail
 * return 0 on success or -1 with one human-readable line in err; none of them
 * exit or abort.
 */
#ifndef WIM_H
#define WIM_H

#include <stddef.h>
#include <stdint.h>

#define WIM_VERSION "0.1.0"
#define WIM_FIRST_WORDS 48 /* bytes of a segment's start in its event */

typedef struct wim_model wim_model;
typedef struct wim_ctx wim_ctx;

/* ---- models ---- */
int wim_model_load(const char *path, wim_model **out, char *err, size_t errlen);
void wim_model_free(wim_model *m);
/* Writes a human-readable description (architecture, hyper-parameters,
 * tensor table, memory estimate) to f (a FILE*). */
void wim_model_describe(const wim_model *m, void *file, int with_tensors);

/* ---- contexts: a KV cache plus scratch for one sequence ---- */
enum wim_kv_type { WIM_KV_F16 = 0, WIM_KV_F32 = 1 };

typedef struct {
    int n_threads; /* 0: every core less those other processes keep busy at creation */
    int n_ctx;     /* KV capacity in tokens; 0: the model's context length */
    int chunk;     /* tokens per forward pass during prefill (default 512) */
    enum wim_kv_type kv_type;
    /* -1: the cache holds at most n_ctx tokens and eval fails beyond. >= 0: it
     * streams past n_ctx as a sliding window that keeps the first kv_pin cells
     * (see kvcache.h); chunk is then limited to n_ctx - kv_pin, and the cache
     * holds n_ctx + chunk - 1 cells so that every token of a prefill chunk sees
     * the same window as if fed alone. */
    int kv_pin;
    /* Reference attention that materialises the full chunk x context score
     * matrix (what the paper's memory argument assumes); for `wim profile`. */
    int attn_materialize;
} wim_ctx_params;

wim_ctx_params wim_ctx_default_params(void);
int wim_ctx_new(const wim_model *m, const wim_ctx_params *p, wim_ctx **out, char *err,
                size_t errlen);
void wim_ctx_free(wim_ctx *c);
/* The absolute position of the next token (tokens fed so far). */
int wim_ctx_pos(const wim_ctx *c);
/* KV capacity in tokens. */
int wim_ctx_capacity(const wim_ctx *c);
/* The thread count the context runs with. */
int wim_ctx_threads(const wim_ctx *c);
/* Forgets the whole sequence (the KV cache becomes empty). */
void wim_ctx_reset(wim_ctx *c);

/* Feeds n tokens at the next positions, in chunks of p.chunk. If logits is not
 * NULL it receives n_vocab floats for the last token, or for every token
 * (n * n_vocab floats) when all_logits is set. */
int wim_eval(wim_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits, char *err,
             size_t errlen);

int wim_model_n_vocab(const wim_model *m);
/* The context length the model was trained for (its positions beyond are extrapolated). */
int wim_model_n_ctx(const wim_model *m);
int wim_model_n_layer(const wim_model *m);
int wim_model_n_head(const wim_model *m); /* query heads */
/* Bytes of weights one decode step reads: every matrix once (the embedding is one row,
 * unless it is also the output matrix). Decode is bound by streaming these. */
size_t wim_model_decode_bytes(const wim_model *m);

/* A 1-D or 2-D tensor by name: its row length and row count (0, or -1 when no
 * such tensor), and one row decoded to floats whatever its type (out: n_in). */
int wim_model_tensor_shape(const wim_model *m, const char *name, int *n_in, int *n_rows);
void wim_model_tensor_row(const wim_model *m, const char *name, int row, float *out);

/* ---- a view inside the forward pass (wim logits --trace) ----
 * While a trace is set, every pass over the trunk (wim_eval) records, for the tokens at
 * positions pos0 .. pos0 + n_pos - 1, the size of the residual stream x after the
 * embedding and after each block adds its output, and the attention weights one head
 * gave each key: read from the buffers the pass computes with, never recomputed, so the
 * results are the same bits traced or not. Branch passes are not recorded. The caller
 * owns the arrays. */
typedef struct {
    int layer, head; /* whose attention weights: 0..n_layer-1, 0..n_head-1 */
    int pos0, n_pos; /* the query positions recorded */
    /* resid[(i * (1 + 2 * n_layer) + s) * 3 + {0, 1, 2}]: the L2 norm, the RMS and the
     * largest |x| of position pos0 + i's residual stream at stage s: 0 the embedding,
     * 1 + 2l after layer l's attention, 2 + 2l after its feed-forward block */
    float *resid;
    /* attn[i * (pos0 + n_pos) + k]: the weight query pos0 + i gave the key at position k,
     * after the softmax, as the values were weighted; -1 where the query did not see the
     * key (the causal mask, a sliding window, a streaming window) */
    float *attn;
} wim_trace;

/* Sets (t) or clears (NULL) the context's trace; fills t's arrays with -1 (nothing
 * recorded yet). -1 with one line when t's layer, head or positions are out of range. */
int wim_ctx_set_trace(wim_ctx *c, wim_trace *t, char *err, size_t errlen);

/* ---- KV snapshots and persistence ----
 * snapshot is O(1) and nests; restore rolls the cache back to the bytes it
 * held at the matching snapshot, so text evaluated in between (a margin)
 * leaves no trace; drop keeps the changes. */
int wim_ctx_snapshot(wim_ctx *c);
int wim_ctx_restore(wim_ctx *c);
int wim_ctx_snapshot_drop(wim_ctx *c);
/* CRC-32 of the live cache (cells and metadata). */
uint32_t wim_ctx_kv_crc(const wim_ctx *c);
/* Saves / loads the cache (zlib, versioned, tied to the model's fingerprint,
 * CRC-checked, written atomically). A failed load leaves the context as it was. */
int wim_ctx_save(const wim_ctx *c, const char *path, char *err, size_t errlen);
int wim_ctx_load(wim_ctx *c, const char *path, char *err, size_t errlen);
/* The capacity and pin a context must be created with to load a saved cache. */
int wim_kv_file_geometry(const char *path, int *capacity, int *pin, char *err, size_t errlen);

/* ---- memory accounting ---- */
typedef struct {
    size_t weights_bytes; /* tensor bytes in the mapping (not copied) */
    size_t kv_bytes;      /* KV cache now (cells and journal) */
    size_t kv_peak;
    size_t scratch_bytes; /* working buffers now */
    size_t scratch_peak;  /* largest working set so far */
} wim_mem_report;
void wim_ctx_memory(const wim_ctx *c, wim_mem_report *r);
void wim_ctx_reset_peaks(wim_ctx *c);

/* ---- sampling ----
 * temp == 0: greedy (the first index of the largest logit, so ties go to the
 * lowest id). Otherwise softmax(logits / temp), restricted to the smallest
 * set of most likely tokens whose mass reaches top_p (when top_p < 1), drawn
 * with a seeded generator: the same seed gives the same tokens. */
typedef struct wim_sampler wim_sampler;
wim_sampler *wim_sampler_new(float temp, float top_p, uint64_t seed, int n_vocab);
void wim_sampler_free(wim_sampler *s);
int wim_sample(wim_sampler *s, const float *logits);

/* ---- the WiM pipeline and its baselines ---- */
typedef enum { WIM_PATTERN_WIM, WIM_PATTERN_LLM, WIM_PATTERN_RAG } wim_pattern;
typedef enum { WIM_CLASSIFY_GENERATE, WIM_CLASSIFY_LOGIT } wim_classify_mode;
typedef enum { WIM_RETRIEVER_CLASSIFIER, WIM_RETRIEVER_BM25 } wim_retriever;

typedef struct {
    wim_pattern pattern;
    int segment_tokens;  /* K: at most this many tokens per segment (0: 4096, or a quarter of
                            the model's context when that is smaller) */
    int margin_tokens;   /* default 100 */
    int classify_tokens; /* default 10 */
    int answer_tokens;   /* default 50 */
    wim_classify_mode classify;
    int lenient_classifier; /* accept "yes", "YES." ...; default: the paper's exact rule */
    wim_retriever retriever;
    int top_k; /* segments kept by BM25 (default 3) */
    float temp, top_p;
    uint64_t seed;
    int max_segments;        /* 0: all */
    const char *prompts_dir; /* NULL: the project's defaults */
    const char *chat;        /* chat family name, NULL: from the model's template */
    int stream;              /* let the document stream through a KV window (pins the system
                                prompt unless ctx.kv_pin says otherwise) */
    int verify_kv;     /* CRC the whole KV cache before and after each margin and report both in
                          the margin event (proof that margins leave no trace; costs a pass over
                          the cache per margin, so it is off by default) */
    int prompt_events; /* a prompt event before each prompt is fed: its text as the model
                          reads it, its tokens and where it starts (wim run --show-prompts);
                          off, the events are exactly those of a run without it */
    int margins_in_extraction; /* show the margins kept so far to each extraction prompt
                                  (departs from the paper; helps two-hop questions when the
                                  window has forgotten the first hop) */
    int dedupe_margins;        /* join kept margins line by line, each distinct line once
                                  (departs from the paper: a sentence visible to several
                                  extraction steps is noted once, so counts stay right) */
    int extractive_margins;    /* build each margin from its segment's sentences, verbatim:
                                  line by line the one the model finds likeliest next, or the
                                  end when likelier (greedy); a margin left blank is not kept
                                  and not classified. Departs from the paper, whose margins
                                  are free text: for models trained to copy, which invent a
                                  line where the segment lacks the fact */
    float quote_min_prob;      /* extractive margins: drop a line in which the model gave
                                  one of the sentence's tokens less than this (0: keep all) */
    int quote_notes;           /* extractive margins with margins_in_extraction: the notes
                                  shown may be quoted too; such a line is written (the model
                                  reads it) but not kept again. A model that copies a note
                                  (two-hop: the bridge, then the second hop) is no longer
                                  pushed into a sentence of the segment it did not mean */
    int answer_from_margins;   /* wim: answer from the kept margins alone, the document's
                                  last window dropped from the context (when any margin was
                                  kept; with none, from the window as usual). Departs from
                                  the paper, whose answer reads the whole document: under a
                                  streaming window that is only its tail, which misleads */
    int sequential_margins;    /* the paper's loop: each margin decoded alone right after its
                                  segment (snapshot, extract, restore). Otherwise, when the
                                  whole document stays in the cache, margins are branches of
                                  it: every segment is prefilled, then one forward pass per
                                  step decodes every unfinished margin (the same greedy text,
                                  bit for bit). Implied by stream, margins_in_extraction and
                                  extractive_margins, which need the loop */
    int quote_exhaustive;      /* extractive margins: score every offered sentence in full
                                  instead of the pruned search (the same lines, bit for bit
                                  with quantized or f16 weights, and slower: the reference the
                                  pruned search is tested against) */
    wim_ctx_params ctx;        /* threads, chunk, KV capacity / pin / type for the main context */
    /* save_kv: after the document (BOS, system prompt and every segment; margins leave no
     * trace), save the main KV cache with the segments (their text and where each ends; rag
     * prefills the document too, so that the file serves every pattern). load_kv: start from
     * such a file instead of a document, so one prefilled document serves many queries:
     * llm appends the question, wim forks its margins at the saved segment ends (a cache
     * that streamed holds only its last window: llm and rag only), rag classifies the saved
     * segments. */
    const char *save_kv, *load_kv;
    const volatile int *interrupt; /* when it becomes non-zero: stop after the current step
                                      and answer from the margins so far */
    /* Replay (tests, debugging): use these margins and/or verdicts instead of generating or
     * classifying them; either may be NULL. n_injected must cover every segment processed. */
    const char *const *injected_margins;
    const int *injected_relevant;
    int n_injected;
} wim_run_params;

wim_run_params wim_run_default_params(void);

typedef enum {
    WIM_EV_START,
    WIM_EV_SEGMENT,
    WIM_EV_MARGIN,
    WIM_EV_VERDICT,
    WIM_EV_ANSWER,
    WIM_EV_DONE,
    WIM_EV_PROMPT /* only with prompt_events */
} wim_event_type;

typedef struct {
    wim_event_type type;
    const char *model, *pattern, *chat; /* start */
    int segments, tokens;               /* start: segment count, document tokens */
    int index;    /* segment / margin / verdict; prompt: its segment (margin, classify), or -1 */
    int n_tokens; /* segment: its tokens; margin: tokens generated; prompt: its tokens as fed
                     (pieces fed one after another are tokenized apart) */
    const char *kind;     /* prompt: system, margin, classify or answer */
    int position;         /* prompt: where its text starts in its context (the tokens before it) */
    int bos;              /* prompt: BOS opens it (counted in n_tokens, not in text) */
    int lead_tokens;      /* prompt, margin: its first tokens are the segment's, document text read
                             before the extraction prompt (text starts with the segment) */
    long prefilled;       /* segment: tokens prefilled so far (all prompts included) */
    size_t offset, bytes; /* segment: its byte range in the document */
    const char *first;    /* segment: its first words (at most WIM_FIRST_WORDS bytes) */
    double ms;            /* segment: prefill time; margin: generation time */
    const char *text;     /* margin text (as generated), answer text; prompt: as the model
                             reads it, chat headers included */
    int blank;            /* verdict, extractive margins: the margin quoted nothing (not kept,
                             the classifier not asked; raw is "") */
    int relevant;         /* verdict */
    const char *raw;      /* verdict: the classifier's raw output */
    int has_logit_margin; /* verdict: --classify logit was used */
    float logit_margin;   /* verdict, --classify logit: logit(YES) - logit(NO) */
    int has_notes_quoted; /* margin: quote_notes was set */
    int notes_quoted;     /* margin, quote_notes: note lines it copied again (written, not kept) */
    int has_scored;       /* margin: extractive margins */
    long scored;          /* margin, extractive margins: tokens evaluated to choose its lines */
    int has_step;         /* margin: decoded as a branch (not sequential_margins) */
    int step;             /* margin, branches: the forward pass of the margin phase (from 1)
                             on which it finished */
    int has_kv_crc;       /* margin: verify_kv was set */
    uint32_t kv_crc_before, kv_crc_after; /* margin: the cache before and after (equal) */
    int interrupted;                      /* answer, done */
    /* done */
    double ms_total, ms_prefill, ms_margins, ms_classify, ms_answer, ms_save; /* the phases
                                            add up to ms_total: ms_prefill is the rest */
    long tokens_prefilled, tokens_decoded;
    size_t kv_bytes, scratch_peak_bytes, rss_peak_bytes;
    int relevant_count;
    const char *save_error; /* done: --save-kv could not write its file, and why (or NULL) */
} wim_event;

typedef void (*wim_event_fn)(const wim_event *ev, void *user);

typedef struct {
    char *answer;
    int interrupted;
    int n_segments;       /* processed */
    char **margins;       /* n_segments (NULL entries for patterns without margins) */
    int *relevant;        /* n_segments verdicts */
    float *answer_logits; /* the logits that chose the first answer token (n_vocab) */
    long tokens_prefilled, tokens_decoded;
    double ms_total;
    char *save_error; /* save_kv could not be written: why (the answer still came); or NULL */
} wim_result;

/* Runs one pattern over a document and a query, reporting progress through cb
 * (may be NULL). Returns 0 with *res filled (free with wim_result_free), or -1
 * with one line in err: empty document or query, a document larger than the KV
 * capacity without streaming, a template with an unknown placeholder, ... */
int wim_run(const wim_model *m, const char *doc, size_t doc_len, const char *query,
            const wim_run_params *p, wim_event_fn cb, void *user, wim_result *res, char *err,
            size_t errlen);
void wim_result_free(wim_result *r);
/* An answer as a reader wants it, without the white space around it (a tokenizer writes
 * a space before a first word): where it starts, and its length in *len. */
const char *wim_answer_text(const char *answer, size_t *len);

/* ---- a document read once, asked many questions ----
 * wim_doc_read segments a document and prefills BOS, the system prompt and
 * every segment into a context of its own (p: segment size, prompts, chat,
 * KV and thread settings; the capacity is planned for p's pattern and lengths,
 * and grows when a later question needs more). A start event (the segment
 * count and tokens ahead) and segment events go to cb.
 * wim_doc_ask then runs p's pattern for a query without reading the document
 * again, exactly as wim_run would on the same text (wim: margins as branches
 * forked where each segment ends, so not on a document read through a
 * streaming window; rag: the classifier or BM25 over the kept segments); the
 * document's cells are rolled back after each question. wim_doc_save writes
 * cells and segments to a file (the --save-kv format) that wim_doc_load reads
 * (cp: threads, chunk, KV type; NULL: defaults), as wim_run's load_kv does.
 * One wim_doc serves one question at a time. */
typedef struct wim_doc wim_doc;
int wim_doc_read(const wim_model *m, const char *doc, size_t doc_len, const wim_run_params *p,
                 wim_event_fn cb, void *user, wim_doc **out, char *err, size_t errlen);
int wim_doc_ask(wim_doc *d, const char *query, const wim_run_params *p, wim_event_fn cb, void *user,
                wim_result *res, char *err, size_t errlen);
int wim_doc_save(const wim_doc *d, const char *path, char *err, size_t errlen);
int wim_doc_load(const wim_model *m, const char *path, const wim_ctx_params *cp, wim_doc **out,
                 char *err, size_t errlen);
int wim_doc_segments(const wim_doc *d);        /* -1: a file saved without its segments */
int wim_doc_tokens(const wim_doc *d);          /* tokens in its cache (BOS and system prompt too) */
int wim_doc_document_tokens(const wim_doc *d); /* the segments' tokens */
/* Segment i's text (len bytes, not NUL-terminated), or NULL when out of range. */
const char *wim_doc_segment(const wim_doc *d, int i, size_t *len);
/* The memory it holds: KV cells, working buffers, the text and its segment table. */
size_t wim_doc_bytes(const wim_doc *d);
void wim_doc_free(wim_doc *d);

/* One event as a single line of JSON (no newline); returns the length, or the
 * size needed when it exceeds cap (nothing is truncated silently). */
size_t wim_event_json(const wim_event *ev, char *buf, size_t cap);

#endif
