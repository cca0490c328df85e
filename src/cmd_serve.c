/*
 * cmd_serve.c — `wim serve`: one model behind a local HTTP server and a web
 * page (src/serve_*.c); the options here, the pipeline options as for `wim run`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "serve.h"

static const char *const usage =
    "usage: wim serve -m MODEL [--host ADDR] [--port N] [--api-key KEY] [--cache-mb N]\n"
    "                 [--max-doc-tokens N] [--queue N] [--max-body-mb N] [pipeline options]\n"
    "  Serves the page at / and the HTTP API (README: wim serve) until Ctrl-C or SIGTERM.\n"
    "  One model, one computation at a time: documents, questions and chat completions wait\n"
    "  their turn in a queue.\n"
    "  --host ADDR          the address to listen on (default 127.0.0.1, loopback only); any\n"
    "                       other address needs --api-key\n"
    "  --port N             (default 8080; 0: any free port, printed at start)\n"
    "  --api-key KEY        clients must send Authorization: Bearer KEY to /v1/ (also\n"
    "                       from the WIM_API_KEY environment variable, kept out of ps)\n"
    "  --cache-mb N         memory for documents read once (default 1024); the least\n"
    "                       recently used go first; a larger document is refused (413)\n"
    "  --max-doc-tokens N   longest document accepted, in tokens (default 1048576; 413)\n"
    "  --queue N            requests that may wait behind the running one (default 64;\n"
    "                       beyond: 503 with Retry-After)\n"
    "  --max-body-mb N      request body limit (default 32; beyond: 413)\n"
    "  --quiet              no line per request on stderr\n"
    "  Pipeline options (wim run --help) set every request's defaults: --pattern,\n"
    "  --segment-tokens, --margin-tokens, --answer-tokens, --temp, --chat, --stream, ...\n"
    "  A request may override pattern, margin/answer/classify tokens, top_k, max_segments,\n"
    "  temp, top_p, seed, classify, retriever and lenient_classifier.\n";

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
    serve_opts o = {.host = "127.0.0.1",
                    .port = 8080,
                    .api_key = getenv("WIM_API_KEY"),
                    .cache_bytes = (size_t)1024 << 20,
                    .max_doc_tokens = 1 << 20,
                    .queue = 64,
                    .max_body = (size_t)32 << 20,
                    .run = wim_run_default_params()};
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long n;
        int r = cli_run_option(argc, argv, &i, &o.run);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_error("serve: unknown option or missing value: '%s'", a);
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = val;
        else if (!strcmp(a, "--host"))
            o.host = val;
        else if (!strcmp(a, "--api-key"))
            o.api_key = val;
        else if (!strcmp(a, "--port")) {
            if (cli_int(a, val, 0, 65535, &n)) return 2;
            o.port = (int)n;
        } else if (!strcmp(a, "--cache-mb")) {
            if (cli_int(a, val, 1, 1L << 24, &n)) return 2;
            o.cache_bytes = (size_t)n << 20;
        } else if (!strcmp(a, "--max-doc-tokens")) {
            if (cli_int(a, val, 1, 1L << 24, &n)) return 2;
            o.max_doc_tokens = (int)n;
        } else if (!strcmp(a, "--queue")) {
            if (cli_int(a, val, 0, 1L << 16, &n)) return 2;
            o.queue = (int)n;
        } else if (!strcmp(a, "--max-body-mb")) {
            if (cli_int(a, val, 1, 1L << 12, &n)) return 2;
            o.max_body = (size_t)n << 20;
        } else
            return cli_error("serve: unknown option '%s' (see wim serve --help)", a);
    }
    if (!model) return cli_error("serve: no model given: pass -m MODEL.gguf");
    if (o.api_key && !*o.api_key) return cli_error("serve: --api-key is empty");
    if (cli_run_check("serve", &o.run, 0)) return 2;
    char err[512];
    wim_model *m;
    if (wim_model_load(model, &m, err, sizeof err)) return cli_error("%s", err);
    int rc = serve_run(m, &o);
    wim_model_free(m);
    return rc;
}
