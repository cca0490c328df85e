/*
 * cmd_tokenize.c — `wim tokenize`: the token ids (or pieces) of a text.
 *
 * Output contract: one line on stdout, the ids separated by single spaces
 * (an empty line for an empty text); no BOS unless --add-bos. With --pieces
 * the vocabulary pieces are printed instead, with bytes below 0x21 and the
 * backslash written as \xNN so that the line stays one line and splits on
 * spaces. Only a vocabulary is needed: a vocab-only GGUF works.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gguf.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: wim tokenize -m MODEL (-p TEXT | -f FILE) [--add-bos] [--parse-special] [--pieces]\n"
    "\n"
    "Prints the token ids of TEXT (or of FILE's bytes) on one line, separated by spaces.\n"
    "  -m, --model MODEL   a GGUF file with tokenizer metadata (vocab-only files work)\n"
    "  -p, --prompt TEXT   the text to tokenize\n"
    "  -f, --file FILE     tokenize the contents of FILE instead\n"
    "  --add-bos           start with the BOS token (when the vocabulary has one)\n"
    "  --parse-special     recognise control tokens written in the text (e.g. <|im_start|>);\n"
    "                      without it they are tokenized as ordinary text\n"
    "  --pieces            print the vocabulary pieces instead of ids (bytes below 0x21\n"
    "                      and '\\' are written as \\xNN)\n"
    "\n"
    "Invalid UTF-8 is not an error: each invalid byte is encoded on its own as its byte\n"
    "token, or as U+FFFD when the vocabulary has no token for that byte.\n";

typedef struct {
    const char *model, *text, *file;
    int add_bos, parse_special, pieces;
} tok_opts;

/* Returns -1 to go on, else the exit status (help printed or usage error). */
static int parse_args(int argc, char **argv, tok_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            dst = &o->model;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            dst = &o->text;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file"))
            dst = &o->file;
        else if (!strcmp(a, "--add-bos"))
            o->add_bos = 1;
        else if (!strcmp(a, "--parse-special"))
            o->parse_special = 1;
        else if (!strcmp(a, "--pieces"))
            o->pieces = 1;
        else
            return cli_error("tokenize: unknown option '%s' (see wim tokenize --help)", a);
        if (dst) {
            if (i + 1 >= argc) return cli_error("tokenize: %s needs a value", a);
            *dst = argv[++i];
        }
    }
    if (!o->model) return cli_error("tokenize: -m MODEL is required (see wim tokenize --help)");
    if (!o->text == !o->file) return cli_error("tokenize: give exactly one of -p TEXT and -f FILE");
    return -1;
}

static void print_piece(const char *p) {
    for (const unsigned char *u = (const unsigned char *)p; *u; u++) {
        if (*u < 0x21 || *u == '\\')
            printf("\\x%02X", *u);
        else
            putchar(*u);
    }
}

static int load_tokenizer(const char *path, wim_tokenizer **tok) {
    char err[512];
    gguf_file *f;
    if (gguf_open(path, &f, err, sizeof err)) return cli_error("%s", err);
    int rc = wim_tokenizer_load(f, tok, err, sizeof err);
    gguf_close(f);
    if (rc) return cli_error("%s: %s", path, err);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    tok_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    wim_tokenizer *tok = NULL;
    if (load_tokenizer(o.model, &tok)) return 2;
    size_t len = 0;
    char *owned = NULL;
    const char *text = o.text;
    if (o.file) {
        if (!(owned = cli_read_file(o.file, &len))) {
            wim_tokenizer_free(tok);
            return 2;
        }
        text = owned;
    } else {
        len = strlen(text);
    }
    if (o.add_bos && wim_tokenizer_bos(tok) < 0)
        fprintf(stderr, "wim: tokenize: this vocabulary has no BOS token; --add-bos ignored\n");
    char err[256];
    rc = 1;
    int32_t *ids = NULL;
    int n = wim_tokenize_alloc(tok, text, len, o.add_bos, o.parse_special, &ids, err, sizeof err);
    if (n < 0)
        cli_error("tokenize: %s", err);
    else {
        for (int i = 0; i < n; i++) {
            if (i) putchar(' ');
            if (o.pieces)
                print_piece(wim_tokenizer_piece(tok, ids[i]));
            else
                printf("%d", (int)ids[i]);
        }
        putchar('\n');
        rc = fflush(stdout) ? 1 : 0;
    }
    free(ids);
    free(owned);
    wim_tokenizer_free(tok);
    return rc;
}
