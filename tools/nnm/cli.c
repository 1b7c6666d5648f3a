/* tools/nnm/cli.c - option parsing, errors, the context and formatting helpers
 * shared by the nnm subcommands (see cli.h). */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_env_add_plugin_dir(cli_env *env, const char *dir) {
    if (env->n_plugin_dirs == env->cap_plugin_dirs) {
        size_t cap = env->cap_plugin_dirs ? env->cap_plugin_dirs * 2 : 4;
        const char **dirs = realloc(env->plugin_dirs, cap * sizeof *dirs);
        if (!dirs) return -1;
        env->plugin_dirs = dirs;
        env->cap_plugin_dirs = cap;
    }
    env->plugin_dirs[env->n_plugin_dirs++] = dir;
    return 0;
}

void cli_env_free(cli_env *env) {
    free(env->plugin_dirs);
    env->plugin_dirs = NULL;
    env->n_plugin_dirs = env->cap_plugin_dirs = 0;
}

/* ------------------------------------------------------------------------ */
/* Option parsing                                                            */
/* ------------------------------------------------------------------------ */

void cli_parser_init(cli_parser *p, const char *cmd, cli_env *env, int argc, char **argv,
                     int first) {
    memset(p, 0, sizeof *p);
    p->cmd = cmd;
    p->env = env;
    p->argc = argc;
    p->argv = argv;
    p->i = first;
}

/* Takes an option's value: "=VALUE" glued on, or the next argument. */
static int take_value(cli_parser *p, const char *shown, const char *glued) {
    if (glued) {
        p->arg = glued;
        return 0;
    }
    if (p->i >= p->argc) {
        cli_usage(p->cmd, "option '%s' needs a value", shown);
        return -1;
    }
    p->arg = p->argv[p->i++];
    return 0;
}

/* --max-param-bytes, a global option like --plugins (0: the default). */
static uint64_t g_max_param_bytes;

int cli_next(cli_parser *p, const cli_opt *opts) {
    for (;;) {
        if (p->i >= p->argc) return CLI_END;
        const char *a = p->argv[p->i++];
        p->arg = a;
        if (p->only_positional || a[0] != '-' || a[1] == '\0') return CLI_POSITIONAL;
        if (strcmp(a, "--") == 0) {
            p->only_positional = 1;
            continue;
        }
        if (a[1] != '-') { /* "-x" */
            if (a[2] != '\0') return cli_usage(p->cmd, "unknown option '%s'", a), CLI_ERROR;
            if (a[1] == 'h') return CLI_HELP;
            for (const cli_opt *o = opts; o && o->name; o++) {
                if (o->short_name != a[1]) continue;
                if (o->has_arg && take_value(p, a, NULL)) return CLI_ERROR;
                return o->id;
            }
            return cli_usage(p->cmd, "unknown option '%s'", a), CLI_ERROR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *glued = eq ? eq + 1 : NULL;
        if (len == 4 && strncmp(name, "help", 4) == 0) {
            if (glued) return cli_usage(p->cmd, "option '--help' takes no value"), CLI_ERROR;
            return CLI_HELP;
        }
        if (len == 15 && strncmp(name, "max-param-bytes", 15) == 0) {
            uint64_t v;
            if (take_value(p, "--max-param-bytes", glued)) return CLI_ERROR;
            if (cli_parse_u64(p->arg, &v) || v == 0)
                return cli_usage(p->cmd, "option '--max-param-bytes' needs a positive number of bytes"),
                       CLI_ERROR;
            g_max_param_bytes = v;
            continue;
        }
        if (len == 7 && strncmp(name, "plugins", 7) == 0) {
            if (take_value(p, "--plugins", glued)) return CLI_ERROR;
            if (p->arg[0] == '\0')
                return cli_usage(p->cmd, "option '--plugins' needs a directory"), CLI_ERROR;
            if (cli_env_add_plugin_dir(p->env, p->arg))
                return cli_failf(p->cmd, "out of memory"), CLI_ERROR;
            continue;
        }
        for (const cli_opt *o = opts; o && o->name; o++) {
            if (strlen(o->name) != len || strncmp(o->name, name, len) != 0) continue;
            if (!o->has_arg) {
                if (glued) {
                    cli_usage(p->cmd, "option '--%s' takes no value", o->name);
                    return CLI_ERROR;
                }
                return o->id;
            }
            char shown[64];
            snprintf(shown, sizeof shown, "--%s", o->name);
            if (take_value(p, shown, glued)) return CLI_ERROR;
            return o->id;
        }
        return cli_usage(p->cmd, "unknown option '%.*s'", (int)(len + 2), a), CLI_ERROR;
    }
}

/* ------------------------------------------------------------------------ */
/* Ending a command                                                          */
/* ------------------------------------------------------------------------ */

/* Every message goes through cli_text: library messages quote manifest keys,
 * plugin names and file paths, any of which may hold control sequences. */
static void vmessage(const char *prefix, const char *fmt, va_list ap) {
    char raw[4096], shown[CLI_TEXT_CAP * 2];
    vsnprintf(raw, sizeof raw, fmt, ap);
    fprintf(stderr, "%s%s", prefix, cli_text(raw, shown, sizeof shown, 0));
}

static void message(const char *prefix, const char *fmt, ...) CLI_PRINTF(2, 3);
static void message(const char *prefix, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(prefix, fmt, ap);
    va_end(ap);
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "nnm%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'nnm%s%s --help'\n", cmd ? " " : "", cmd ? cmd : "");
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *cmd, const nnm_ctx *ctx, nnm_status st) {
    const char *msg = ctx ? nnm_ctx_errmsg(ctx) : "";
    if (!msg || !msg[0]) msg = nnm_status_str(st);
    message("", "nnm %s: %s", cmd, msg);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

int cli_fail_file(const char *cmd, const char *path, const nnm_ctx *ctx, nnm_status st) {
    const char *msg = ctx ? nnm_ctx_errmsg(ctx) : "";
    size_t n = strlen(path);
    if (!msg || !msg[0]) msg = nnm_status_str(st);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':')
        message("", "nnm %s: %s", cmd, msg);
    else
        message("", "nnm %s: %s: %s", cmd, path, msg);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

int cli_failf(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "nnm %s: ", cmd);
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EXIT_FAIL;
}

void cli_warn(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "nnm %s: warning: ", cmd);
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------------------ */
/* The context                                                               */
/* ------------------------------------------------------------------------ */

nnm_ctx *cli_ctx_new(const cli_env *env, const char *cmd, uint32_t flags, uint64_t seed) {
    nnm_ctx_options o = {sizeof o, (flags & CLI_CTX_NO_DISCOVERY) ? NNM_CTX_NO_DISCOVERY : 0u,
                         seed};
    nnm_ctx *ctx = NULL;
    nnm_status st = nnm_ctx_new(&o, &ctx);
    if (st != NNM_OK) {
        cli_failf(cmd, "cannot create a context: %s", nnm_status_str(st));
        return NULL;
    }
    for (size_t i = 0; i < env->n_plugin_dirs; i++) {
        uint32_t before = nnm_plugin_count(ctx);
        /* a directory: every *.so in it; a file (what a plugin's author
         * tends to pass): that plugin alone */
        struct stat sb;
        if (stat(env->plugin_dirs[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            st = nnm_plugin_load(ctx, env->plugin_dirs[i]);
            if (st != NNM_OK && nnm_plugin_count(ctx) > before)
                st = NNM_OK; /* recorded as failed: warned below, as in a directory */
        } else
            st = nnm_plugin_load_dir(ctx, env->plugin_dirs[i], NULL);
        if (st != NNM_OK) {
            cli_fail(cmd, ctx, st);
            nnm_ctx_free(ctx);
            return NULL;
        }
        /* A broken plugin never stops the others, but say so: it is
         * probably why a layer will not be found. */
        for (uint32_t k = before; k < nnm_plugin_count(ctx); k++) {
            nnm_plugin_info info = {sizeof info};
            if (nnm_plugin_info_get(ctx, k, &info) == NNM_OK && info.status != NNM_OK)
                cli_warn(cmd, "%s", info.error && info.error[0] ? info.error : info.path);
        }
    }
    return ctx;
}

int cli_manifest_open(nnm_ctx *ctx, const char *cmd, const char *path, uint32_t flags,
                      nnm_manifest **mf, nnm_module **root) {
    /* Every command reads and builds a manifest through here, so validate,
     * inspect and run make the same checks (the library's: the schema, names,
     * then the meta-device pass and limits.max_param_bytes). */
    nnm_manifest_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.struct_size = sizeof lim;
    lim.max_param_bytes = g_max_param_bytes; /* 0: the library's default */
    nnm_status s = nnm_manifest_load(ctx, path, NNM_MANIFEST_AUTO, &lim, mf);
    if (s == NNM_OK && root) {
        s = nnm_manifest_build(*mf, flags, root);
        if (s != NNM_OK) {
            nnm_manifest_free(*mf);
            *mf = NULL;
        }
    }
    return s == NNM_OK ? 0 : cli_fail_file(cmd, path, ctx, s);
}

/* ------------------------------------------------------------------------ */
/* Parsing values                                                            */
/* ------------------------------------------------------------------------ */

int cli_parse_u64(const char *s, uint64_t *out) {
    char *end = NULL;
    if (!s || !isdigit((unsigned char)s[0])) return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_device(const char *s, nnm_device *out) {
    if (!s) return -1;
    uint64_t id = 0;
    if (!strcmp(s, "cpu") || !strcmp(s, "cpu:0")) {
        *out = (nnm_device){NNM_DEVICE_CPU, 0};
        return 0;
    }
    if (strncmp(s, "cuda", 4) != 0) return -1;
    if (s[4] == ':') {
        if (cli_parse_u64(s + 5, &id) || id > CLI_MAX_DEVICE_ID) return -1;
    } else if (s[4] != '\0') {
        return -1;
    }
    *out = (nnm_device){NNM_DEVICE_CUDA, (int32_t)id};
    return 0;
}

const char *cli_device_str(nnm_device d, char *buf, size_t cap) {
    if (d.type == NNM_DEVICE_CPU) snprintf(buf, cap, "cpu");
    else if (d.type == NNM_DEVICE_CUDA) snprintf(buf, cap, "cuda:%d", (int)d.id);
    else snprintf(buf, cap, "device %d:%d", (int)d.type, (int)d.id);
    return buf;
}

int cli_parse_double(const char *s, double *out) {
    char *end = NULL;
    if (!s || !*s || isspace((unsigned char)s[0])) return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_parse_shape(const char *s, int64_t shape[NNM_MAX_DIMS]) {
    int n = 0;
    const char *q = s;
    while (isspace((unsigned char)*q)) q++;
    int bracket = *q == '[';
    if (bracket) q++;
    for (;;) {
        while (isspace((unsigned char)*q)) q++;
        if (!isdigit((unsigned char)*q)) return -1;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(q, &end, 10);
        if (errno || v <= 0 || n == NNM_MAX_DIMS) return -1;
        shape[n++] = (int64_t)v;
        q = end;
        while (isspace((unsigned char)*q)) q++;
        if (*q == 'x' || *q == 'X' || *q == ',') {
            q++;
            continue;
        }
        break;
    }
    if (bracket) {
        if (*q != ']') return -1;
        q++;
        while (isspace((unsigned char)*q)) q++;
    }
    return *q ? -1 : n;
}

/* ------------------------------------------------------------------------ */
/* Checked arithmetic                                                        */
/* ------------------------------------------------------------------------ */

int cli_mul_i64(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
    *out = r;
    return 0;
}

int cli_shape_numel(int32_t ndim, const int64_t *shape, int64_t *out) {
    int64_t n = 1;
    for (int32_t d = 0; d < ndim; d++)
        if (cli_mul_i64(n, shape[d], &n)) return -1;
    *out = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                                */
/* ------------------------------------------------------------------------ */

const char *cli_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t n = 0;
    if (!cap) return buf;
    buf[0] = '\0';
    int w = snprintf(buf, cap, "[");
    n = w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < ndim && n < cap; i++) {
        w = snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0) break;
        n += (size_t)w;
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

const char *cli_dtype_str(nnm_dtype dt, char *buf, size_t cap) {
    const char *kind = "?";
    switch (dt.code) {
    case NNM_DTYPE_INT: kind = "i"; break;
    case NNM_DTYPE_UINT: kind = "u"; break;
    case NNM_DTYPE_FLOAT: kind = "f"; break;
    case NNM_DTYPE_BFLOAT: kind = "bf"; break;
    case NNM_DTYPE_BOOL: snprintf(buf, cap, "bool"); return buf;
    default: break;
    }
    if (dt.lanes > 1)
        snprintf(buf, cap, "%s%ux%u", kind, (unsigned)dt.bits, (unsigned)dt.lanes);
    else
        snprintf(buf, cap, "%s%u", kind, (unsigned)dt.bits);
    return buf;
}

/* Length of the UTF-8 character at s (1 to 4), or 0 when s does not start a
 * valid one (no overlongs, surrogates or code points past U+10FFFF). */
static size_t utf8_len(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n) return 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

/* 1 for a C1 control character (U+0080..U+009F), which some terminals obey. */
static int is_c1(const unsigned char *s, size_t n) { return n == 2 && s[0] == 0xc2 && s[1] <= 0x9f; }

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        size_t n = utf8_len(c);
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20 || *c == 0x7f)
                fprintf(f, "\\u%04x", (unsigned)*c);
            else if (!n)
                fputs("\\ufffd", f); /* JSON text is UTF-8 */
            else if (is_c1(c, n))
                fprintf(f, "\\u%04x", (unsigned)c[1]);
            else
                fwrite(c, 1, n, f);
        }
        c += n ? n : 1;
    }
    fputc('"', f);
}

const char *cli_text(const char *s, char *buf, size_t cap, unsigned flags) {
    if (!buf || cap == 0) return "";
    if (!s) s = "";
    const unsigned char *c = (const unsigned char *)s;
    size_t len = 0, cut = 0; /* cut: where "..." goes if the rest does not fit */
    while (*c) {
        size_t n = utf8_len(c);
        char piece[24];
        size_t pn = 0;
        if ((*c == '\n' && (flags & CLI_TEXT_NEWLINES)) || (*c >= 0x20 && *c != 0x7f && n == 1)) {
            piece[pn++] = (char)*c;
        } else if (n > 1 && !is_c1(c, n)) {
            memcpy(piece, c, n);
            pn = n;
        } else { /* a control character, or a byte that is not UTF-8 */
            if (!n) n = 1;
            for (size_t i = 0; i < n; i++)
                pn += (size_t)snprintf(piece + pn, sizeof piece - pn, "\\x%02x", c[i]);
        }
        if (len + pn + 1 > cap) { /* cut, on a character boundary */
            len = cut;
            if (len + 4 <= cap) memcpy(buf + len, "...", 3), len += 3;
            break;
        }
        memcpy(buf + len, piece, pn);
        len += pn;
        if (len + 4 <= cap) cut = len;
        c += n;
    }
    buf[len] = 0;
    return buf;
}

/* ------------------------------------------------------------------------ */
/* safetensors elements                                                      */
/* ------------------------------------------------------------------------ */

typedef struct st_dtype_info {
    const char *name;
    size_t size;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},  {"I16", 2},
    {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
};

size_t cli_st_elem_size(const char *dtype_name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (dtype_name && strcmp(st_dtypes[i].name, dtype_name) == 0) return st_dtypes[i].size;
    return 0;
}

int cli_st_dtype_numeric(const char *dtype_name) {
    return cli_st_elem_size(dtype_name) != 0;
}

static double half_to_double(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp((double)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexp((double)(man | 0x400), exp - 25);
    return sign ? -v : v;
}

double cli_st_elem(const nnm_st_entry *e, uint64_t i) {
    const unsigned char *p = e->data;
    const char *n = e->dtype_name;
    size_t sz = cli_st_elem_size(n);
    p += i * sz;
    /* safetensors is little-endian, like every machine nnmod runs on. */
    if (strcmp(n, "F64") == 0) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    if (strcmp(n, "F32") == 0) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (strcmp(n, "F16") == 0) {
        uint16_t v;
        memcpy(&v, p, 2);
        return half_to_double(v);
    }
    if (strcmp(n, "BF16") == 0) {
        uint16_t v;
        uint32_t bits;
        float f;
        memcpy(&v, p, 2);
        bits = (uint32_t)v << 16;
        memcpy(&f, &bits, 4);
        return f;
    }
    if (strcmp(n, "I64") == 0) {
        int64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    if (strcmp(n, "I32") == 0) {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    if (strcmp(n, "I16") == 0) {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    if (strcmp(n, "I8") == 0) return (int8_t)p[0];
    if (strcmp(n, "U64") == 0) {
        uint64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    if (strcmp(n, "U32") == 0) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    if (strcmp(n, "U16") == 0) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    if (strcmp(n, "U8") == 0 || strcmp(n, "BOOL") == 0) return p[0];
    return NAN;
}
