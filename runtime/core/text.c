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

/* 1 for a C0 control byte or DEL, 2 for a C1 control (U+0080..U+009F, in
 * UTF-8 C2 80..C2 9F) at s (n > 0 bytes left), else 0. */
static size_t control_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x20 || s[0] == 0x7f) return 1;
    if (s[0] == 0xC2 && n > 1 && s[1] >= 0x80 && s[1] <= 0x9F) return 2;
    return 0;
}

int nnm__name_valid(const char *s) {
    const size_t len = strlen(s);
    if (!len || memchr(s, '.', len) || !nnm__utf8_valid(s, len)) return 0;
    for (size_t i = 0; i < len; i++)
        if (control_len((const unsigned char *)s + i, len - i)) return 0;
    return 1;
}

/* Copies s for quoting in a message: at most cap-1 bytes, control
 * characters shown as '?', "..." when cut (never in the middle of a UTF-8
 * sequence). */
const char *nnm__show(const char *s, char *buf, size_t cap) {
    size_t len = strlen(s), n = len, o = 0;
    int cut = 0;
    if (n > cap - 1) {
        n = cap - 4;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
        cut = 1;
    }
    for (size_t i = 0; i < n;) {
        size_t k = control_len((const unsigned char *)s + i, n - i);
        buf[o++] = k ? '?' : s[i];
        i += k ? k : 1;
    }
    if (cut) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = 0;
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
