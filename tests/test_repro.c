/*
 * test_repro.c — paper-repro's data half: the Python-compatible random stream, the
 * scorers on hand-worked examples (normalisation: articles, punctuation, Unicode,
 * numbers), every loader on every dataset in ../shared plus synthesized official-format
 * files, the CWE generator against RULER's format and seed-42 vectors, and the
 * long-context builder (length within 1 %, each gold paragraph once, seeded).
 */
#include "test.h"

#include "gguf.h"
#include "pyrandom.h"
#include "repro.h"
#include "tokenizer.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ---- fixtures ---- */

static const char *fixture(const char *rel) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", t_shared(), rel);
    return path;
}

/* The Llama 3 vocabulary, loaded once for the whole binary (NULL when absent). */
static wim_tokenizer *llama3(void) {
    static wim_tokenizer *tok;
    static int tried;
    if (tried) return tok;
    tried = 1;
    char err[256];
    gguf_file *f;
    const char *path = fixture("vocab/ggml-vocab-llama-bpe.gguf");
    if (!t_file_exists(path) || gguf_open(path, &f, err, sizeof err)) return NULL;
    if (wim_tokenizer_load(f, &tok, err, sizeof err)) tok = NULL;
    gguf_close(f);
    return tok;
}

static int count(const char *s) {
    char err[64];
    return wim_tokenize(llama3(), s, strlen(s), 0, 0, NULL, 0, err, sizeof err);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
    if (b) b[len] = 0;
    if (n) *n = (size_t)len;
    return b;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- random ---- */

static void test_pyrandom_seed42(void) {
    /* ../shared/data/cwe/derived/vectors-seed42.json, mt19937_seed42_first10_u32 */
    static const uint32_t want[10] = {2746317213u, 478163327u, 107420369u, 3184935163u, 1181241943u,
                                      1051802512u, 958682846u, 599310825u, 3163119785u, 440213415u};
    py_random r;
    py_random_seed(&r, 42);
    for (int i = 0; i < 10; i++)
        CHECKF(py_random_u32(&r) == want[i], "draw %d", i);
    /* values printed by CPython 3: Random(0).getrandbits(32); a seed above 2^32 */
    py_random_seed(&r, 0);
    CHECK(py_random_u32(&r) == 3626764237u);
    py_random_seed(&r, (1ull << 40) + 5);
    CHECK(py_random_u32(&r) == 2166296868u);
    /* random.seed(3); shuffle(list(range(30))); sample(range(100), 7) (set method);
     * sample(range(50), 7) (pool method) */
    py_random_seed(&r, 3);
    intptr_t x[30];
    void *xp[30];
    for (int i = 0; i < 30; i++)
        xp[i] = (void *)(intptr_t)i;
    py_random_shuffle(&r, xp, 30);
    for (int i = 0; i < 30; i++)
        x[i] = (intptr_t)xp[i];
    CHECK(x[0] == 26 && x[1] == 21 && x[2] == 9 && x[3] == 14 && x[4] == 10);
    size_t s1[7], s2[7];
    static const size_t w1[7] = {85, 99, 8, 20, 97, 75, 5}, w2[7] = {19, 1, 17, 30, 38, 24, 27};
    CHECK(py_random_sample(&r, 100, 7, s1) == 0 && py_random_sample(&r, 50, 7, s2) == 0);
    for (int i = 0; i < 7; i++)
        CHECKF(s1[i] == w1[i] && s2[i] == w2[i], "sample item %d", i);
}

/* ---- scorers ---- */

static int norm_is(const char *in, const char *want) {
    char *n = repro_normalize_answer(in);
    int ok = n && !strcmp(n, want);
    if (!ok) fprintf(stderr, "normalize(%s) = [%s], want [%s]\n", in, n ? n : "(null)", want);
    free(n);
    return ok;
}

static void test_normalize(void) {
    CHECK(norm_is("The Cat", "cat"));
    CHECK(norm_is("  a  Tale of   an Apple\t\n", "tale of apple"));
    CHECK(norm_is("Theatre, anyone?", "theatre anyone")); /* articles only as whole words */
    CHECK(norm_is("the-end", "theend"));                  /* punctuation is removed, not spaced */
    CHECK(norm_is("U.S.A.", "usa"));
    CHECK(norm_is("don't", "dont"));
    CHECK(norm_is("$1,000.50", "100050"));
    CHECK(norm_is("1,000 people", "1000 people"));
    CHECK(norm_is("3.14", "314"));
    CHECK(
        norm_is("Gesellschaft mit beschränkter Haftung", "gesellschaft mit beschränkter haftung"));
    CHECK(norm_is("ÉCOLE Ørsted", "école ørsted"));
    CHECK(norm_is("ΑΘΗΝΑ", "αθηνα"));
    CHECK(norm_is("Москва", "москва"));
    CHECK(norm_is("北京", "北京"));
    CHECK(norm_is("a—the", "—")); /* U+2014 is not ASCII punctuation: kept, as officially */
    CHECK(norm_is("the\xC2\xA0"
                  "answer",
                  "answer")); /* NBSP is whitespace */
    CHECK(norm_is("", ""));
    CHECK(norm_is("The a an", ""));
}

static repro_example one_answer(const char *a, const char *b) {
    static char *answers[2];
    answers[0] = (char *)a;
    answers[1] = (char *)b;
    repro_example e = {.id = "t", .question = "q", .answers = answers, .n_answers = b ? 2 : 1};
    return e;
}

static void test_em_f1(void) {
    repro_score s;
    repro_example e = one_answer("the Eiffel Tower", NULL);
    repro_score_prediction(REPRO_SQUAD, &e, "Eiffel tower.", &s);
    CHECK(s.em == 1 && s.f1 == 1 && s.score == 1);
    /* pred "eiffel tower in paris" vs "eiffel tower": P = 2/4, R = 1, F1 = 2/3 */
    repro_score_prediction(REPRO_SQUAD, &e, "The Eiffel Tower in Paris", &s);
    CHECKF(s.em == 0 && fabs(s.f1 - 2.0 / 3) < 1e-12, "f1 %g", s.f1);
    /* bag of tokens: "a a b" vs "a b b" -> common 2 (min counts), P = R = 2/3 */
    e = one_answer("x x y", NULL);
    repro_score_prediction(REPRO_SQUAD, &e, "x y y", &s);
    CHECKF(fabs(s.f1 - 2.0 / 3) < 1e-12, "f1 %g", s.f1);
    /* max over answers */
    e = one_answer("Denver Broncos", "Broncos");
    repro_score_prediction(REPRO_SQUAD, &e, "broncos", &s);
    CHECK(s.em == 1 && s.f1 == 1);
    /* an empty prediction against a non-empty answer */
    repro_score_prediction(REPRO_SQUAD, &e, "", &s);
    CHECK(s.em == 0 && s.f1 == 0);
    repro_score_prediction(REPRO_SQUAD, &e, NULL, &s);
    CHECK(s.f1 == 0);
    /* both empty after normalisation: SQuAD v2 counts a match */
    e = one_answer("the", NULL);
    repro_score_prediction(REPRO_SQUAD, &e, "a", &s);
    CHECK(s.em == 1 && s.f1 == 1);
    /* numbers: "1,000" and "1000" normalise alike */
    e = one_answer("1,000 km", NULL);
    repro_score_prediction(REPRO_HOTPOTQA, &e, "1000 km", &s);
    CHECK(s.em == 1 && s.f1 == 1);
}

static void test_hotpot_yes_no(void) {
    repro_score s;
    repro_example e = one_answer("yes", NULL);
    repro_score_prediction(REPRO_HOTPOTQA, &e, "Yes.", &s);
    CHECK(s.em == 1 && s.f1 == 1);
    /* "yes it is" shares "yes" but hotpot_evaluate_v1 gives yes/no answers no partial F1 */
    repro_score_prediction(REPRO_HOTPOTQA, &e, "yes it is", &s);
    CHECK(s.em == 0 && s.f1 == 0);
    repro_score_prediction(REPRO_SQUAD, &e, "yes it is", &s);
    CHECKF(fabs(s.f1 - 0.5) < 1e-12, "squad f1 %g", s.f1);
    e = one_answer("Arthur's Magazine", NULL);
    repro_score_prediction(REPRO_HOTPOTQA, &e, "no", &s);
    CHECK(s.f1 == 0);
}

static void test_accuracy_scores(void) {
    repro_score s;
    repro_example e = one_answer("Sam Bankman-Fried", NULL);
    repro_score_prediction(REPRO_MULTIHOP_RAG, &e, "The person is Sam Bankman-Fried, the founder.",
                           &s);
    CHECK(s.accuracy == 1 && s.score == 1);
    e = one_answer("no", NULL);
    repro_score_prediction(REPRO_MULTIHOP_RAG, &e, "No, they differ.", &s);
    CHECK(s.accuracy == 1);
    repro_score_prediction(REPRO_MULTIHOP_RAG, &e, "Nobody knows", &s); /* whole tokens only */
    CHECK(s.accuracy == 0 && s.score == 0);
    e = one_answer("Insufficient information.", NULL);
    repro_score_prediction(REPRO_MULTIHOP_RAG, &e, "insufficient information", &s);
    CHECK(s.accuracy == 1 && s.em == 1);
    e = one_answer("bathroom", NULL);
    repro_score_prediction(REPRO_BABILONG, &e, "Sandra is in the Bathroom.", &s);
    CHECK(s.accuracy == 1 && s.score == 1);
    repro_score_prediction(REPRO_BABILONG, &e, "Sandra is in the bedroom.", &s);
    CHECK(s.accuracy == 0 && s.score == 0);
}

static void test_cwe_score(void) {
    static char *w[10] = {"harvest", "acceptable", "group", "jam",     "blackbird",
                          "neglect", "peripheral", "slate", "creator", "car"};
    repro_example e = {.id = "c", .answers = w, .n_answers = 10};
    repro_score s;
    repro_score_prediction(REPRO_CWE, &e,
                           " 1. harvest 2. acceptable 3. group 4. jam 5. blackbird 6. neglect "
                           "7. peripheral 8. slate 9. creator 10. car",
                           &s);
    CHECK(s.precision == 1 && s.recall == 1 && s.f1 == 1 && s.score == 1 &&
          s.string_match_all == 1);
    /* 5 right, 3 wrong (one repeated right word counts once): P = 5/8, R = 5/10 */
    repro_score_prediction(REPRO_CWE, &e,
                           "Harvest, acceptable, GROUP, jam, blackbird, jam, cat, dog, "
                           "cow",
                           &s);
    CHECKF(fabs(s.precision - 5.0 / 8) < 1e-12 && fabs(s.recall - 0.5) < 1e-12, "p %g r %g",
           s.precision, s.recall);
    CHECK(fabs(s.f1 - 2 * (5.0 / 8) * 0.5 / (5.0 / 8 + 0.5)) < 1e-12);
    /* RULER's substring metric credits "car" inside "carpet"; ours does not */
    repro_score_prediction(REPRO_CWE, &e, "carpet\nslate", &s);
    CHECKF(fabs(s.string_match_all - 0.2) < 1e-12 && fabs(s.recall - 0.1) < 1e-12, "sma %g r %g",
           s.string_match_all, s.recall);
    CHECK(fabs(s.precision - 0.5) < 1e-12);
    /* a lead-in sentence costs one wrong item, not one per word */
    repro_score_prediction(REPRO_CWE, &e, "The most common words are: harvest and group", &s);
    CHECKF(fabs(s.recall - 0.2) < 1e-12 && fabs(s.precision - 2.0 / 3) < 1e-12, "p %g r %g",
           s.precision, s.recall);
    repro_score_prediction(REPRO_CWE, &e, "", &s);
    CHECK(s.precision == 0 && s.recall == 0 && s.score == 0);
}

static void test_task_names(void) {
    for (int t = 0; t < REPRO_TASK_COUNT; t++)
        CHECK(repro_task_from_name(repro_task_name((repro_task)t)) == t);
    CHECK(repro_task_from_name("nope") == -1);
    CHECK(!repro_task_is_reasoning(REPRO_CWE) && repro_task_is_reasoning(REPRO_HOTPOTQA));
}

/* ---- loaders on ../shared ---- */

static void test_load_hotpotqa_shared(void) {
    const char *path = fixture("data/hotpotqa/hotpot_dev_distractor_sample.jsonl");
    if (!t_file_exists(path)) SKIP("%s not found", path);
    repro_dataset d;
    char err[256];
    CHECKF(repro_load(REPRO_HOTPOTQA, path, 0, &d, err, sizeof err) == 0, "%s", err);
    CHECKF(d.n == 100, "n %d", d.n);
    const repro_example *e = &d.ex[0];
    int ok = !strcmp(e->id, "5a7613c15542994ccc9186bf") && e->n_answers == 1 &&
             !strcmp(e->answers[0], "Gesellschaft mit beschränkter Haftung") && e->n_paras == 10 &&
             !e->prebuilt && strstr(e->question, "VIVA Media AG");
    int golds_ok = 1;
    for (int i = 0; i < d.n; i++) {
        int g = 0;
        for (int j = 0; j < d.ex[i].n_paras; j++)
            g += d.ex[i].paras[j].gold;
        golds_ok &= d.ex[i].n_paras == 10 && g >= 2;
    }
    /* gold: titles "VIVA Media" and "Gesellschaft mit beschränkter Haftung" */
    int g0 = 0;
    for (int j = 0; j < e->n_paras; j++)
        if (e->paras[j].gold)
            g0 += !strcmp(e->paras[j].title, "VIVA Media") ||
                  !strcmp(e->paras[j].title, "Gesellschaft mit beschränkter Haftung");
    /* sentences are joined as they are (they carry their own leading spaces) */
    int joined = !strcmp(e->paras[1].text, "VIVA Polska (earlier \"VIVApolska!\") is a Polish 24h "
                                           "music and entertainment channel from Viacom "
                                           "International Media Networks Polska. The channel was "
                                           "officially launched on June 10, 2000 by the German "
                                           "VIVA Media AG.");
    repro_dataset_free(&d);
    CHECK(ok && golds_ok && g0 == 2 && joined);
    CHECK(repro_load(REPRO_HOTPOTQA, path, 5, &d, err, sizeof err) == 0 && d.n == 5);
    repro_dataset_free(&d);
}

static void test_load_squad_shared(void) {
    const char *path = fixture("data/squad2/queries.json");
    if (!t_file_exists(path)) SKIP("%s not found", path);
    repro_dataset d;
    char err[256];
    CHECKF(repro_load(REPRO_SQUAD, path, 0, &d, err, sizeof err) == 0, "%s", err);
    int n = d.n, skipped = d.skipped;
    const repro_example *e = &d.ex[0];
    int ok = !strcmp(e->id, "572a06af3f37b3190047866a") && e->n_answers == 3 &&
             !strcmp(e->answers[1], "RNA interference") && e->n_paras == 1 && e->paras[0].gold &&
             strstr(e->paras[0].text, "Pattern recognition receptors");
    int in_context = 1; /* README: every answer occurs verbatim in its context */
    for (int i = 0; i < d.n; i++)
        for (int a = 0; a < d.ex[i].n_answers; a++)
            in_context &= strstr(d.ex[i].paras[0].text, d.ex[i].answers[a]) != NULL;
    repro_dataset_free(&d);
    CHECKF(n == 242 && skipped == 258, "n %d skipped %d", n, skipped);
    CHECK(ok && in_context);
    /* the folder works too */
    CHECK(repro_load(REPRO_SQUAD, fixture("data/squad2"), 7, &d, err, sizeof err) == 0 && d.n == 7);
    repro_dataset_free(&d);
}

static void test_load_multihop_shared(void) {
    const char *path = fixture("data/multihop-rag/queries.json");
    if (!t_file_exists(path)) SKIP("%s not found", path);
    repro_dataset d;
    char err[256];
    CHECKF(repro_load(REPRO_MULTIHOP_RAG, path, 0, &d, err, sizeof err) == 0, "%s", err);
    int n = d.n, note = d.note && strstr(d.note, "facts");
    const repro_example *e = &d.ex[0];
    int ok = !strcmp(e->id, "0") && !strcmp(e->answers[0], "no") && e->n_paras == 3 &&
             e->paras[0].gold && !strncmp(e->paras[0].text, "The Justice Department", 22) &&
             strstr(e->paras[0].title, "Apple defends Google Search deal");
    int null_queries = 0, golds = 1;
    for (int i = 0; i < d.n; i++) {
        null_queries += d.ex[i].n_paras == 0;
        for (int j = 0; j < d.ex[i].n_paras; j++)
            golds &= d.ex[i].paras[j].gold;
    }
    repro_dataset_free(&d);
    CHECKF(n == 500 && note && ok && golds, "n %d", n);
    CHECKF(null_queries == 71, "null queries %d", null_queries);
}

static void test_load_babilong_shared(void) {
    static const char *const files[4][2] = {
        {"8k", "bathroom"}, {"16k", "bedroom"}, {"32k", "office"}, {"64k", "bathroom"}};
    static const size_t chars[4] = {31716, 57249, 134802, 278685}; /* UTF-8 bytes for 16k */
    for (int i = 0; i < 4; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "data/babilong/babilong_%s.json", files[i][0]);
        const char *path = fixture(rel);
        if (!t_file_exists(path)) SKIP("%s not found", path);
        repro_dataset d;
        char err[256];
        CHECKF(repro_load(REPRO_BABILONG, path, 0, &d, err, sizeof err) == 0, "%s", err);
        const repro_example *e = &d.ex[0];
        int ok = d.n == 1 && e->prebuilt && e->n_paras == 1 && e->n_answers == 1 &&
                 !strcmp(e->answers[0], files[i][1]) && !strncmp(e->question, "Where is ", 9) &&
                 e->question[strlen(e->question) - 1] == ' ' &&
                 strlen(e->paras[0].text) == chars[i];
        repro_dataset_free(&d);
        CHECKF(ok, "%s", rel);
    }
}

/* ---- loaders on synthesized official-format files ---- */

static void test_load_official_formats(void) {
    char dir[] = "/tmp/wim-repro-XXXXXX", path[256], path2[256], err[256];
    CHECK(mkdtemp(dir));
    repro_dataset d;
    /* SQuAD v2 official, one answerable and one impossible question */
    snprintf(path, sizeof path, "%s/dev-v2.0.json", dir);
    CHECK(write_file(path,
                     "{\"version\":\"v2.0\",\"data\":[{\"title\":\"Normans\",\"paragraphs\":[{"
                     "\"context\":\"The Normans were in Normandy.\",\"qas\":["
                     "{\"id\":\"q1\",\"question\":\"Where?\",\"answers\":[{\"text\":\"Normandy\","
                     "\"answer_start\":20},{\"text\":\"in Normandy\",\"answer_start\":17}],"
                     "\"is_impossible\":false},"
                     "{\"id\":\"q2\",\"question\":\"When?\",\"answers\":[],\"plausible_answers\":"
                     "[{\"text\":\"x\",\"answer_start\":0}],\"is_impossible\":true}]}]}]}") == 0);
    CHECKF(repro_load(REPRO_SQUAD, path, 0, &d, err, sizeof err) == 0, "%s", err);
    int ok = d.n == 1 && d.skipped == 1 && !strcmp(d.ex[0].id, "q1") && d.ex[0].n_answers == 2 &&
             !strcmp(d.ex[0].paras[0].title, "Normans");
    repro_dataset_free(&d);
    CHECK(ok);
    /* HotpotQA official: a JSON array */
    snprintf(path, sizeof path, "%s/hotpot.json", dir);
    CHECK(write_file(path,
                     "[{\"_id\":\"h1\",\"question\":\"Q?\",\"answer\":\"yes\","
                     "\"supporting_facts\":[[\"B\",0]],\"context\":[[\"A\",[\"a1.\",\" a2.\"]],"
                     "[\"B\",[\"b1.\"]]]},{\"_id\":\"h2\",\"question\":\"Q2?\",\"answer\":"
                     "\"no\",\"supporting_facts\":[],\"context\":[]}]") == 0);
    CHECKF(repro_load(REPRO_HOTPOTQA, path, 0, &d, err, sizeof err) == 0, "%s", err);
    ok = d.n == 2 && d.ex[0].n_paras == 2 && !d.ex[0].paras[0].gold && d.ex[0].paras[1].gold &&
         !strcmp(d.ex[0].paras[0].text, "a1. a2.");
    repro_dataset_free(&d);
    CHECK(ok);
    /* BABILong JSON Lines, Hugging Face field names on the second line */
    snprintf(path, sizeof path, "%s/bl.jsonl", dir);
    CHECK(write_file(path, "{\"context\":\"c1\",\"query\":\"q1\",\"target\":\"t1\"}\n"
                           "{\"input\":\"c2\",\"question\":\"q2\",\"target\":\"t2\"}\n") == 0);
    CHECKF(repro_load(REPRO_BABILONG, path, 0, &d, err, sizeof err) == 0, "%s", err);
    ok = d.n == 2 && !strcmp(d.ex[1].paras[0].text, "c2") && !strcmp(d.ex[1].answers[0], "t2");
    repro_dataset_free(&d);
    CHECK(ok);
    /* MultiHop-RAG official: MultiHopRAG.json plus corpus.json with the bodies */
    snprintf(path, sizeof path, "%s/MultiHopRAG.json", dir);
    snprintf(path2, sizeof path2, "%s/corpus.json", dir);
    CHECK(write_file(path, "[{\"query\":\"Who?\",\"answer\":\"Ann\",\"question_type\":\"x\","
                           "\"evidence_list\":[{\"title\":\"T1\",\"url\":\"u1\",\"fact\":\"f1\"},"
                           "{\"title\":\"T1\",\"url\":\"u1\",\"fact\":\"f1b\"},"
                           "{\"title\":\"T2\",\"url\":\"u2\",\"fact\":\"f2\"}]}]") == 0);
    CHECK(write_file(path2, "[{\"title\":\"T1\",\"url\":\"u1\",\"body\":\"Body one.\"},"
                            "{\"title\":\"T2\",\"url\":\"u2\",\"body\":\"Body two.\"}]") == 0);
    CHECKF(repro_load(REPRO_MULTIHOP_RAG, dir, 0, &d, err, sizeof err) == 0, "%s", err);
    ok = d.n == 1 && !d.note && d.ex[0].n_paras == 2 && !strcmp(d.ex[0].paras[1].text, "Body two.");
    repro_dataset_free(&d);
    CHECK(ok);
    /* errors name the file and the record */
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    CHECK(write_file(path,
                     "{\"context\":\"c\",\"query\":\"q\",\"target\":\"t\"}\n{\"context\":1}\n") ==
          0);
    CHECK(repro_load(REPRO_BABILONG, path, 0, &d, err, sizeof err) == -1 && strstr(err, path) &&
          strstr(err, "record 1") && d.n == 0);
    CHECK(write_file(path, "{\"context\": \"c\",") == 0);
    CHECK(repro_load(REPRO_BABILONG, path, 0, &d, err, sizeof err) == -1 &&
          strstr(err, "invalid JSON"));
    CHECK(repro_load(REPRO_HOTPOTQA, "/nonexistent.json", 0, &d, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent.json"));
    CHECK(repro_load(REPRO_CWE, path, 0, &d, err, sizeof err) == -1);
    const char *names[] = {"dev-v2.0.json",    "hotpot.json", "bl.jsonl",
                           "MultiHopRAG.json", "corpus.json", "bad.jsonl"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* A synthetic HotpotQA-format file of about 5 MB loads fast (the 46 MB dev file scales
 * linearly: cJSON parses in one pass). */
static void test_load_speed(void) {
    char path[] = "/tmp/wim-repro-big-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    CHECK(f);
    for (int i = 0; i < 2000; i++) {
        fprintf(f,
                "{\"_id\":\"id%d\",\"question\":\"Question %d?\",\"answer\":\"a%d\","
                "\"supporting_facts\":[[\"T%d_0\",0],[\"T%d_1\",1]],\"context\":[",
                i, i, i, i, i);
        for (int p = 0; p < 10; p++)
            fprintf(f,
                    "%s[\"T%d_%d\",[\"Sentence one of paragraph %d about topic %d, with some "
                    "words to fill it out.\",\" Sentence two adds more text, numbers 1,234 and "
                    "names.\",\" A third sentence rounds the paragraph off for good measure "
                    "here.\"]]",
                    p ? "," : "", i, p, p, i);
        fprintf(f, "]}\n");
    }
    fclose(f);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    repro_dataset d;
    char err[256];
    int rc = repro_load(REPRO_HOTPOTQA, path, 0, &d, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    unlink(path);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    CHECKF(rc == 0 && d.n == 2000, "%s", err);
    int golds = d.ex[1999].paras[0].gold + d.ex[1999].paras[1].gold + d.ex[1999].paras[2].gold;
    repro_dataset_free(&d);
    CHECK(golds == 2);
    CHECKF(s < 5.0, "%.2f s for ~5 MB", s); /* generous: ASan builds run this too */
}

/* ---- CWE ---- */

static const char *const cwe_lists[3] = {"nounlist.txt", "adjectivelist.txt", "verblist.txt"};

static int cwe_params(repro_cwe_params *p, const char **files, uint64_t seed, int target) {
    static char paths[3][1024];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/data/cwe/%s", t_shared(), cwe_lists[i]);
        if (!t_file_exists(paths[i])) return -1;
        files[i] = paths[i];
    }
    *p = (repro_cwe_params){.word_files = files,
                            .n_word_files = 3,
                            .n_common = 10,
                            .freq_common = 30,
                            .freq_uncommon = 3,
                            .target_tokens = target,
                            .seed = seed};
    return 0;
}

static void test_cwe_pool_seed42(void) {
    const char *files[3];
    repro_cwe_params p;
    if (cwe_params(&p, files, 42, 0)) SKIP("%s/data/cwe word lists not found", t_shared());
    size_t n;
    char *want = slurp(fixture("data/cwe/derived/pool-seed42.txt"), &n);
    if (!want) SKIP("pool-seed42.txt not found");
    repro_cwe_gen *g;
    char err[256];
    int rc = repro_cwe_gen_open(&p, &g, err, sizeof err);
    if (rc) free(want);
    CHECKF(rc == 0, "%s", err);
    int same = repro_cwe_gen_pool_size(g) == 8169;
    char *line = want;
    for (int i = 0; same && i < 8169; i++) {
        char *nl = strchr(line, '\n');
        same = nl && strlen(repro_cwe_gen_pool_word(g, i)) == (size_t)(nl - line) &&
               !memcmp(line, repro_cwe_gen_pool_word(g, i), (size_t)(nl - line));
        line = nl ? nl + 1 : line;
    }
    repro_cwe_gen_free(g);
    free(want);
    CHECK(same);
}

/* RULER's first call after random.seed(42), byte for byte. */
static void check_cwe_first_call(int short_branch, int num_words, const char *file,
                                 const char *first_answer, const char *last_answer) {
    const char *files[3];
    repro_cwe_params p;
    if (cwe_params(&p, files, 42, 0)) SKIP("%s/data/cwe word lists not found", t_shared());
    size_t n;
    char *want = slurp(fixture(file), &n);
    if (!want) SKIP("%s not found", file);
    repro_cwe_gen *g;
    char err[256];
    CHECK(repro_cwe_gen_open(&p, &g, err, sizeof err) == 0);
    char **ans = NULL;
    char *got = repro_cwe_gen_input(g, num_words, short_branch, &ans, err, sizeof err);
    int same = got && strlen(got) == n && !memcmp(got, want, n);
    int answers = ans && !strcmp(ans[0], first_answer) && !strcmp(ans[9], last_answer);
    for (int i = 0; ans && i < 10; i++)
        free(ans[i]);
    free(ans);
    free(got);
    free(want);
    repro_cwe_gen_free(g);
    CHECKF(same, "%s differs", file);
    CHECK(answers);
}

static void test_cwe_first_call_long_seed42(void) {
    check_cwe_first_call(0, 4096, "data/cwe/derived/first-call-long-seed42.input.txt", "harvest",
                         "car");
}

static void test_cwe_first_call_short_seed42(void) {
    check_cwe_first_call(1, 50, "data/cwe/derived/first-call-short-seed42.input.txt", "nothing",
                         "solicitation");
}

/* Counts "N. word" entries of the main list (the last numbered list in the context). */
static void check_cwe_structure(const repro_example *e, int freq_c, int freq_u, int *ok) {
    const char *list = strrchr(e->paras[0].text, '\n');
    *ok = 0;
    if (!list || strncmp(list + 1, "1. ", 3) || e->n_answers != 10) return;
    char *copy = strdup(list + 1);
    /* entries are "i. w" separated by " "; words may contain spaces, so split on numbers */
    int n_entries = 0, expect_next = 1;
    char *words[20000];
    for (char *p = copy; *p && n_entries < 20000;) {
        char num[16];
        int k = snprintf(num, sizeof num, "%d. ", expect_next);
        if (strncmp(p, num, (size_t)k)) break;
        p += k;
        char next[18];
        snprintf(next, sizeof next, " %d. ", expect_next + 1);
        char *end = strstr(p, next);
        words[n_entries++] = p;
        expect_next++;
        if (!end) break;
        *end = 0;
        p = end + 1;
    }
    int good = n_entries > 0;
    for (int a = 0; good && a < 10; a++) {
        int c = 0;
        for (int i = 0; i < n_entries; i++)
            c += !strcmp(words[i], e->answers[a]);
        good = c == freq_c;
    }
    /* every other word appears exactly freq_u times */
    int uncommon_total = 0;
    for (int i = 0; good && i < n_entries; i++) {
        int common = 0;
        for (int a = 0; a < 10; a++)
            common |= !strcmp(words[i], e->answers[a]);
        if (common) continue;
        int c = 0;
        for (int j = 0; j < n_entries; j++)
            c += !strcmp(words[i], words[j]);
        good = c == freq_u;
        uncommon_total++;
    }
    good = good && n_entries == 10 * freq_c + uncommon_total && uncommon_total % freq_u == 0;
    free(copy);
    *ok = good;
}

static void test_cwe_generate(void) {
    if (!llama3()) SKIP("%s not found", fixture("vocab/ggml-vocab-llama-bpe.gguf"));
    const char *files[3];
    repro_cwe_params p;
    if (cwe_params(&p, files, 42, 2048)) SKIP("%s/data/cwe word lists not found", t_shared());
    static const struct {
        int target, freq_c, freq_u;
    } cases[2] = {{2048, 6, 1}, {8192, 30, 3}}; /* below 4096 RULER uses 6/1 */
    for (int c = 0; c < 2; c++) {
        p.target_tokens = cases[c].target;
        repro_dataset d, d2;
        char err[256];
        CHECKF(repro_cwe_generate(llama3(), &p, 2, &d, err, sizeof err) == 0, "%s", err);
        int ok = d.n == 2 && d.task == REPRO_CWE;
        for (int i = 0; ok && i < d.n; i++) {
            const repro_example *e = &d.ex[i];
            check_cwe_structure(e, cases[c].freq_c, cases[c].freq_u, &ok);
            if (!ok) fprintf(stderr, "structure of sample %d at %d\n", i, cases[c].target);
            /* RULER's input_text reassembles exactly and fits target - 120 ... */
            char *full = malloc(strlen(e->paras[0].text) + 300);
            sprintf(full, "%s\nQuestion: %s%s", e->paras[0].text, e->question, e->answer_prefix);
            int n = count(full);
            ok = ok && e->prebuilt && n + 120 <= cases[c].target &&
                 n + 120 >= cases[c].target * 0.93 && /* ... and reaches it (10-word steps) */
                 !strcmp(e->question, "What are the 10 most common words in the above list?") &&
                 !strcmp(e->answer_prefix,
                         " Answer: The top 10 words that appear most often in the list are:");
            if (!ok) fprintf(stderr, "sample %d: %d tokens for %d\n", i, n, cases[c].target);
            free(full);
        }
        /* seeded: the same seed gives the same text, another seed other words */
        CHECKF(repro_cwe_generate(llama3(), &p, 2, &d2, err, sizeof err) == 0, "%s", err);
        int same = !strcmp(d.ex[1].paras[0].text, d2.ex[1].paras[0].text);
        repro_dataset_free(&d2);
        p.seed = 7;
        CHECKF(repro_cwe_generate(llama3(), &p, 1, &d2, err, sizeof err) == 0, "%s", err);
        int other = strcmp(d.ex[0].answers[0], d2.ex[0].answers[0]) != 0;
        p.seed = 42;
        repro_dataset_free(&d2);
        repro_dataset_free(&d);
        CHECKF(ok && same && other, "target %d", cases[c].target);
    }
}

static void test_cwe_wamerican(void) {
    if (!llama3()) SKIP("%s not found", fixture("vocab/ggml-vocab-llama-bpe.gguf"));
    if (!t_file_exists(REPRO_WAMERICAN_WORDS))
        SKIP("%s not found (wamerican)", REPRO_WAMERICAN_WORDS);
    const char *files[1] = {REPRO_WAMERICAN_WORDS};
    repro_cwe_params p = {.word_files = files, .n_word_files = 1, .target_tokens = 2048, .seed = 1};
    repro_dataset d;
    char err[256];
    CHECKF(repro_cwe_generate(llama3(), &p, 1, &d, err, sizeof err) == 0, "%s", err);
    int ok;
    check_cwe_structure(&d.ex[0], 6, 1, &ok);
    int no_possessive = !strstr(d.ex[0].paras[0].text, "'s ");
    repro_dataset_free(&d);
    CHECK(ok && no_possessive);
}

/* ---- long-context builder ---- */

static int gold_once(const repro_example *e, const char *doc) {
    for (int j = 0; j < e->n_paras; j++) {
        if (!e->paras[j].gold) continue;
        char *r = malloc(strlen(e->paras[j].title) + strlen(e->paras[j].text) + 2);
        if (*e->paras[j].title)
            sprintf(r, "%s\n%s", e->paras[j].title, e->paras[j].text);
        else
            strcpy(r, e->paras[j].text);
        int n = occurrences(doc, r);
        free(r);
        if (n != 1) return 0;
    }
    return 1;
}

static void check_documents(repro_task task, const char *rel, const int *targets, int n_targets,
                            int n_examples) {
    if (!llama3()) SKIP("%s not found", fixture("vocab/ggml-vocab-llama-bpe.gguf"));
    const char *path = fixture(rel);
    if (!t_file_exists(path)) SKIP("%s not found", path);
    repro_dataset d;
    char err[256];
    CHECKF(repro_load(task, path, 0, &d, err, sizeof err) == 0, "%s", err);
    for (int ti = 0; ti < n_targets; ti++) {
        int target = targets[ti];
        for (int i = 0; i < n_examples; i++) {
            const repro_example *e = &d.ex[i * 7 % d.n];
            int n = 0, n2 = 0, n3 = 0;
            char *doc = repro_build_document(e, &d, llama3(), target, 1, &n, err, sizeof err);
            char *again = repro_build_document(e, &d, llama3(), target, 1, &n2, err, sizeof err);
            char *other = repro_build_document(e, &d, llama3(), target, 2, &n3, err, sizeof err);
            int ok = doc && again && other;
            int real = ok ? count(doc) : -1;
            int within = ok && real == n && abs(real - target) <= target / 100;
            int gold = ok && gold_once(e, doc);
            int det = ok && !strcmp(doc, again) && strcmp(doc, other) != 0;
            free(doc);
            free(again);
            free(other);
            if (!(ok && within && gold && det)) repro_dataset_free(&d);
            CHECKF(ok, "%s", err);
            CHECKF(within, "%s: %d tokens (reported %d) for %d", e->id, real, n, target);
            CHECKF(gold, "%s: a gold paragraph is missing or repeated", e->id);
            CHECKF(det, "%s: not deterministic per seed", e->id);
        }
    }
    repro_dataset_free(&d);
}

static void test_document_hotpotqa(void) {
    static const int targets[2] = {2000, 16384};
    check_documents(REPRO_HOTPOTQA, "data/hotpotqa/hotpot_dev_distractor_sample.jsonl", targets, 2,
                    3);
}

static void test_document_squad(void) {
    static const int targets[1] = {2048};
    check_documents(REPRO_SQUAD, "data/squad2/queries.json", targets, 1, 3);
}

static void test_document_multihop(void) {
    static const int targets[1] = {4096};
    check_documents(REPRO_MULTIHOP_RAG, "data/multihop-rag/queries.json", targets, 1, 3);
}

static void test_document_errors_and_prebuilt(void) {
    if (!llama3()) SKIP("%s not found", fixture("vocab/ggml-vocab-llama-bpe.gguf"));
    repro_para paras[2] = {{"T", "Gold text here.", 1}, {"U", "Other text.", 0}};
    repro_example e = {.id = "x", .question = "q", .paras = paras, .n_paras = 2};
    repro_dataset pool = {.task = REPRO_HOTPOTQA, .ex = &e, .n = 1};
    char err[256];
    int n;
    char *doc = repro_build_document(&e, &pool, llama3(), 5000, 1, &n, err, sizeof err);
    CHECK(!doc && strstr(err, "too few"));
    e.prebuilt = 1;
    paras[0].text = "A prebuilt context.";
    e.n_paras = 1;
    doc = repro_build_document(&e, &pool, llama3(), 5000, 1, &n, err, sizeof err);
    CHECK(doc && !strcmp(doc, "A prebuilt context.") && n == count(doc));
    free(doc);
}

int main(void) {
    RUN(test_pyrandom_seed42);
    RUN(test_normalize);
    RUN(test_em_f1);
    RUN(test_hotpot_yes_no);
    RUN(test_accuracy_scores);
    RUN(test_cwe_score);
    RUN(test_task_names);
    RUN(test_load_hotpotqa_shared);
    RUN(test_load_squad_shared);
    RUN(test_load_multihop_shared);
    RUN(test_load_babilong_shared);
    RUN(test_load_official_formats);
    RUN(test_load_speed);
    RUN(test_cwe_pool_seed42);
    RUN(test_cwe_first_call_long_seed42);
    RUN(test_cwe_first_call_short_seed42);
    RUN(test_cwe_generate);
    RUN(test_cwe_wamerican);
    RUN(test_document_hotpotqa);
    RUN(test_document_squad);
    RUN(test_document_multihop);
    RUN(test_document_errors_and_prebuilt);
    wim_tokenizer_free(llama3());
    return t_exit();
}
