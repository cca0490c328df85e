/*
 * events.c — pipeline events as JSON Lines (the schema is in the README).
 *
 * Invariant: the output is always valid JSON on one line: strings are escaped
 * (control characters as \u00XX) and any invalid UTF-8 byte becomes U+FFFD,
 * so a consumer can parse every line whatever the model generated.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "wim.h"

typedef struct {
    char *buf;
    size_t cap, len; /* len counts everything, even what did not fit */
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->buf + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static void putf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || (size_t)n > avail) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 2 && c < 0xc2) return 0; /* overlong */
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))) return 0;
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || c > 0xf4 || (c == 0xf4 && s[1] > 0x8f))) return 0;
    return n;
}

static void put_str(sbuf *b, const char *s) {
    put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(b, e, 2);
            i++;
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named)
                put(b, named, 2);
            else
                putf(b, "\\u%04x", c);
            i++;
        } else {
            int len = utf8_len(p + i, n - i);
            if (len)
                put(b, (const char *)p + i, (size_t)len);
            else
                put(b, "\xef\xbf\xbd", 3);
            i += len ? (size_t)len : 1;
        }
    }
    put(b, "\"", 1);
}

static void key(sbuf *b, const char *k) {
    putf(b, ",\"%s\":", k);
}

size_t wim_event_json(const wim_event *ev, char *buf, size_t cap) {
    static const char *const names[] = {"start",  "segment", "margin", "verdict",
                                        "answer", "done",    "prompt"};
    sbuf b = {buf, cap, 0};
    putf(&b, "{\"event\":\"%s\"", names[ev->type]);
    switch (ev->type) {
    case WIM_EV_START:
        key(&b, "model");
        put_str(&b, ev->model);
        key(&b, "pattern");
        put_str(&b, ev->pattern);
        key(&b, "chat");
        put_str(&b, ev->chat);
        putf(&b, ",\"segments\":%d,\"tokens\":%d", ev->segments, ev->tokens);
        break;
    case WIM_EV_SEGMENT:
        putf(&b, ",\"index\":%d,\"tokens\":%d,\"prefilled\":%ld,\"ms\":%.1f", ev->index,
             ev->n_tokens, ev->prefilled, ev->ms);
        putf(&b, ",\"offset\":%zu,\"bytes\":%zu", ev->offset, ev->bytes);
        key(&b, "first");
        put_str(&b, ev->first ? ev->first : "");
        break;
    case WIM_EV_MARGIN:
        putf(&b, ",\"index\":%d", ev->index);
        key(&b, "text");
        put_str(&b, ev->text);
        putf(&b, ",\"tokens\":%d,\"ms\":%.1f", ev->n_tokens, ev->ms);
        if (ev->has_notes_quoted) putf(&b, ",\"notes_quoted\":%d", ev->notes_quoted);
        if (ev->has_scored) putf(&b, ",\"scored\":%ld", ev->scored);
        if (ev->has_step) putf(&b, ",\"step\":%d", ev->step);
        if (ev->has_kv_crc)
            putf(&b, ",\"kv_crc_before\":%u,\"kv_crc_after\":%u", ev->kv_crc_before,
                 ev->kv_crc_after);
        break;
    case WIM_EV_VERDICT:
        putf(&b, ",\"index\":%d,\"relevant\":%s", ev->index, ev->relevant ? "true" : "false");
        key(&b, "raw");
        put_str(&b, ev->raw);
        if (ev->has_logit_margin) putf(&b, ",\"logit_margin\":%.4f", ev->logit_margin);
        if (ev->blank) putf(&b, ",\"blank\":true");
        break;
    case WIM_EV_ANSWER:
        key(&b, "text");
        put_str(&b, ev->text);
        putf(&b, ",\"interrupted\":%s", ev->interrupted ? "true" : "false");
        break;
    case WIM_EV_PROMPT:
        key(&b, "kind");
        put_str(&b, ev->kind);
        if (ev->index >= 0) putf(&b, ",\"index\":%d", ev->index);
        putf(&b, ",\"position\":%d,\"tokens\":%d,\"bos\":%s", ev->position, ev->n_tokens,
             ev->bos ? "true" : "false");
        if (ev->lead_tokens) putf(&b, ",\"segment_tokens\":%d", ev->lead_tokens);
        key(&b, "text");
        put_str(&b, ev->text);
        break;
    case WIM_EV_DONE:
        putf(&b, ",\"interrupted\":%s,\"segments\":%d,\"relevant\":%d",
             ev->interrupted ? "true" : "false", ev->segments, ev->relevant_count);
        putf(&b, ",\"ms\":{\"total\":%.1f,\"prefill\":%.1f,\"margins\":%.1f", ev->ms_total,
             ev->ms_prefill, ev->ms_margins);
        putf(&b, ",\"classify\":%.1f,\"answer\":%.1f,\"save\":%.1f}", ev->ms_classify,
             ev->ms_answer, ev->ms_save);
        putf(&b, ",\"tokens_prefilled\":%ld,\"tokens_decoded\":%ld", ev->tokens_prefilled,
             ev->tokens_decoded);
        putf(&b, ",\"memory\":{\"kv_bytes\":%zu,\"scratch_peak_bytes\":%zu,\"rss_peak_bytes\":%zu}",
             ev->kv_bytes, ev->scratch_peak_bytes, ev->rss_peak_bytes);
        if (ev->save_error) {
            key(&b, "save_error");
            put_str(&b, ev->save_error);
        }
        break;
    }
    put(&b, "}", 1);
    if (b.len < cap)
        buf[b.len] = 0;
    else if (cap)
        buf[cap - 1] = 0;
    return b.len;
}
