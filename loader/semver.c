/* loader/semver.c - semantic versions and layer requests ("name@^1.2",
 * "acme.gelu@^1#nnm_acme.so").
 *
 * Versions are MAJOR[.MINOR[.PATCH]] of decimal numbers without leading zeros
 * (semver 2.0 section 2); pre-release and build suffixes are not accepted.
 * Partial versions in a request follow npm and cargo: "=1.2" is 1.2.x, "~1" is
 * 1.x, "^0.0" is 0.0.x, "^0" is 0.x.
 */
#include <string.h>

#include "loader.h"

/* Parses one decimal component starting at *s; advances *s past it. */
static int parse_part(const char **s, uint32_t *out) {
    const char *p = *s;
    if (*p < '0' || *p > '9') return 0;
    if (p[0] == '0' && p[1] >= '0' && p[1] <= '9') return 0; /* leading zero */
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10u + (uint64_t)(*p - '0');
        if (v > UINT32_MAX) return 0;
        p++;
    }
    *out = (uint32_t)v;
    *s = p;
    return 1;
}

/* Parses a version of 1 to 3 components; *parts receives how many were given. */
static nnm_status semver_parse_parts(const char *s, nnm__semver *out, int *parts) {
    if (!s || !out) return NNM_E_INVALID;
    uint32_t v[3] = {0, 0, 0};
    int n = 0;
    const char *p = s;
    for (;;) {
        if (!parse_part(&p, &v[n])) return NNM_E_INVALID;
        n++;
        if (*p == '\0') break;
        if (*p != '.' || n == 3) return NNM_E_INVALID;
        p++;
    }
    out->major = v[0];
    out->minor = v[1];
    out->patch = v[2];
    if (parts) *parts = n;
    return NNM_OK;
}

nnm_status nnm__semver_parse(const char *s, nnm__semver *out) {
    return semver_parse_parts(s, out, NULL);
}

static int name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int domain_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

nnm_status nnm__version_req_parse(const char *request, nnm__version_req *out) {
    if (!request || !out) return NNM_E_INVALID;
    nnm__version_req req;
    memset(&req, 0, sizeof req);
    /* "[domain.]name[@spec][#provider]": the pin is everything after the
     * first '#' (a path may hold '@'), the spec what follows '@' before it. */
    const char *hash = strchr(request, '#');
    size_t head_len = hash ? (size_t)(hash - request) : strlen(request);
    if (hash) {
        req.provider = hash + 1;
        if (!req.provider[0]) return NNM_E_INVALID;
    }
    const char *at = memchr(request, '@', head_len);
    size_t qlen = at ? (size_t)(at - request) : head_len;
    /* The layer's own name is what follows the last '.'. */
    size_t start = qlen;
    while (start > 0 && request[start - 1] != '.') start--;
    size_t name_len = qlen - start;
    if (name_len == 0 || name_len >= sizeof req.name) return NNM_E_INVALID;
    for (size_t i = start; i < qlen; i++)
        if (!name_char_ok(request[i])) return NNM_E_INVALID;
    memcpy(req.name, request + start, name_len);
    req.name[name_len] = '\0';
    if (start > 0) {
        size_t dlen = start - 1; /* without the separating '.' */
        if (dlen == 0 || dlen >= sizeof req.domain) return NNM_E_INVALID;
        for (size_t i = 0; i < dlen; i++)
            if (!domain_char_ok(request[i])) return NNM_E_INVALID;
        memcpy(req.domain, request, dlen);
        req.domain[dlen] = '\0';
    }

    req.op = NNM__REQ_ANY;
    if (at) {
        char spec_buf[64];
        size_t slen = head_len - (size_t)(at + 1 - request);
        if (slen >= sizeof spec_buf) return NNM_E_INVALID;
        memcpy(spec_buf, at + 1, slen);
        spec_buf[slen] = '\0';
        const char *spec = spec_buf;
        if (strcmp(spec, "*") == 0) {
            req.op = NNM__REQ_ANY;
        } else {
            if (spec[0] == '^') {
                req.op = NNM__REQ_CARET;
                spec++;
            } else if (spec[0] == '~') {
                req.op = NNM__REQ_TILDE;
                spec++;
            } else if (spec[0] == '>' && spec[1] == '=') {
                req.op = NNM__REQ_GE;
                spec += 2;
            } else if (spec[0] == '=') {
                req.op = NNM__REQ_EXACT;
                spec++;
            } else {
                req.op = NNM__REQ_EXACT;
            }
            if (semver_parse_parts(spec, &req.v, &req.parts) != NNM_OK) return NNM_E_INVALID;
        }
    }
    *out = req;
    return NNM_OK;
}

static int semver_cmp(nnm__semver a, nnm__semver b) {
    if (a.major != b.major) return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
    if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
    return 0;
}

int nnm__version_matches(const nnm__version_req *req, nnm__semver v) {
    if (!req) return 0;
    /* A request built by hand (parts 0) means a full major.minor.patch. */
    int parts = req->parts >= 1 && req->parts <= 3 ? req->parts : 3;
    const nnm__semver r = req->v;
    switch (req->op) {
    case NNM__REQ_ANY:
        return 1;
    case NNM__REQ_EXACT:
        if (v.major != r.major) return 0;
        if (parts >= 2 && v.minor != r.minor) return 0;
        if (parts >= 3 && v.patch != r.patch) return 0;
        return 1;
    case NNM__REQ_GE:
        return semver_cmp(v, r) >= 0;
    case NNM__REQ_TILDE:
        /* ~1.2.3 := >=1.2.3 <1.3.0; ~1.2 := >=1.2.0 <1.3.0; ~1 := >=1.0.0 <2.0.0 */
        if (semver_cmp(v, r) < 0 || v.major != r.major) return 0;
        return parts == 1 || v.minor == r.minor;
    case NNM__REQ_CARET:
        /* The left-most non-zero component given may not change:
         * ^1.2.3 := <2.0.0; ^0.2.3 := <0.3.0; ^0.0.3 := <0.0.4;
         * ^0.0 := <0.1.0; ^0 := <1.0.0. */
        if (semver_cmp(v, r) < 0 || v.major != r.major) return 0;
        if (r.major > 0 || parts == 1) return 1;
        if (v.minor != r.minor) return 0;
        if (r.minor > 0 || parts == 2) return 1;
        return v.patch == r.patch;
    default:
        return 0;
    }
}
