/* runtime/core/text.c - untrusted text: UTF-8 validation (safetensors headers,
 * manifests) and quoting names and paths in messages. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

size_t nnm__utf8_invalid_at(const void *p, size_t len) {
    const unsigned char *s = p;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return i;
        if (len - i - 1 < n) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += n + 1;
    }
    return len;
}

/* Copies s for quoting in a message: at most cap-1 bytes, control bytes
 * shown as '?', "..." when cut (never in the middle of a UTF-8 sequence). */
const char *nnm__show(const char *s, char *buf, size_t cap) {
    size_t len = strlen(s), n = len;
    int cut = 0;
    if (n > cap - 1) {
        n = cap - 4;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
        cut = 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (cut) memcpy(buf + n, "...", 3), n += 3;
    buf[n] = 0;
    return buf;
}

/* Paths keep their tail (the file name) when cut. */
const char *nnm__show_path(const char *p, char *buf, size_t cap) {
    size_t len = strlen(p);
    if (len < cap) return nnm__show(p, buf, cap);
    const char *tail = p + len - (cap - 4);
    while (((unsigned char)*tail & 0xC0) == 0x80) tail++;
    char tmp[NNM__SHOW_PATH];
    nnm__show(tail, tmp, sizeof tmp);
    snprintf(buf, cap, "...%s", tmp);
    return buf;
}
