/*
 * serve_page.c — the page `wim serve` answers at `/`: src/serve_page.html,
 * embedded in the binary at build time (no build step for the page, no file
 * read at run time, no CDN).
 */
#include "serve.h"

/* .incbin resolves the path from the folder make runs in (the repository root). */
__asm__(".section .rodata\n"
        "serve_page_bytes:\n"
        ".incbin \"src/serve_page.html\"\n"
        "serve_page_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char serve_page_bytes[], serve_page_end[];

const char *serve_page(size_t *len) {
    *len = (size_t)(serve_page_end - serve_page_bytes);
    return serve_page_bytes;
}
