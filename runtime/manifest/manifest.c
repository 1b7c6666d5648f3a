/* runtime/manifest/manifest.c - the public manifest API: reading (limits,
 * format sniffing), the object's life, writing, hashing, accessors. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "manifest_internal.h"

nnm_status nnm__mf_limits(nnm_ctx *ctx, const nnm_manifest_limits *in, nnm_manifest_limits *out) {
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    if (in) {
        if (in->struct_size < offsetof(nnm_manifest_limits, max_bytes) + sizeof in->max_bytes ||
            in->struct_size > 4096)
            return nnm__error(ctx, NNM_E_INVALID, "nnm_manifest_limits: struct_size %u is not valid",
                              in->struct_size);
        size_t n = in->struct_size < sizeof *out ? in->struct_size : sizeof *out;
        memcpy(out, in, n);
        out->struct_size = sizeof *out;
    }
    if (!out->max_depth) out->max_depth = NNM_MANIFEST_DEFAULT_MAX_DEPTH;
    if (out->max_depth > NNM__MF_MSGPACK_MAX_DEPTH) out->max_depth = NNM__MF_MSGPACK_MAX_DEPTH;
    if (!out->max_bytes) out->max_bytes = NNM_MANIFEST_DEFAULT_MAX_BYTES;
    if (!out->max_nodes) out->max_nodes = NNM_MANIFEST_DEFAULT_MAX_NODES;
    if (!out->max_modules) out->max_modules = NNM_MANIFEST_DEFAULT_MAX_MODULES;
    if (!out->max_param_bytes) out->max_param_bytes = NNM_MANIFEST_DEFAULT_MAX_PARAM_BYTES;
    return NNM_OK;
}

nnm_manifest *nnm__mf_new(nnm_ctx *ctx, const char *base_dir) {
    nnm_manifest *mf = calloc(1, sizeof *mf);
    if (!mf) return NULL;
    mf->base_dir = strdup(base_dir ? base_dir : "");
    if (!mf->base_dir) {
        free(mf);
        return NULL;
    }
    mf->ctx = ctx;
    mf->max_param_bytes = NNM_MANIFEST_DEFAULT_MAX_PARAM_BYTES;
    nnm__ctx_retain(ctx);
    return mf;
}

NNM_API void nnm_manifest_free(nnm_manifest *mf) {
    if (!mf) return;
    for (uint32_t i = 0; i < mf->n_plugins; i++) {
        free(mf->plugins[i].name);
        free(mf->plugins[i].range);
        free(mf->plugins[i].provider);
        free(mf->plugins[i].request);
    }
    free(mf->plugins);
    for (uint32_t i = 0; i < mf->n_modules; i++) {
        free(mf->modules[i].path);
        free(mf->modules[i].name);
        nnm_config_free(mf->modules[i].cfg);
        free(mf->modules[i].children);
    }
    free(mf->modules);
    for (uint32_t i = 0; i < mf->n_meta; i++) {
        free(mf->meta_keys[i]);
        free(mf->meta_values[i]);
    }
    free(mf->meta_keys);
    free(mf->meta_values);
    for (uint32_t i = 0; i < mf->n_ties; i++) {
        free(mf->tie_keys[i]);
        free(mf->tie_values[i]);
    }
    free(mf->tie_keys);
    free(mf->tie_values);
    nnm_config_free(mf->training);
    free(mf->weights_path);
    free(mf->weights_sha256);
    free(mf->base_dir);
    free(mf->source);
    nnm__ctx_release(mf->ctx);
    free(mf);
}

nnm__mf_module *nnm__mf_add_module(nnm_manifest *mf, const char *path) {
    if (mf->n_modules == mf->cap_modules) {
        uint32_t cap = mf->cap_modules ? mf->cap_modules * 2 : 16;
        nnm__mf_module *p = realloc(mf->modules, cap * sizeof *p);
        if (!p) return NULL;
        mf->modules = p;
        mf->cap_modules = cap;
    }
    char *copy = strdup(path);
    if (!copy) return NULL;
    nnm__mf_module *m = &mf->modules[mf->n_modules++];
    memset(m, 0, sizeof *m);
    m->path = copy;
    return m;
}

int nnm__mf_plugin_index(nnm_manifest *mf, const char *name, const char *range,
                         const char *provider) {
    for (uint32_t i = 0; i < mf->n_plugins; i++)
        if (strcmp(mf->plugins[i].name, name) == 0) return (int)i;
    nnm__mf_plugin *p = realloc(mf->plugins, (mf->n_plugins + 1) * sizeof *p);
    if (!p) return -1;
    mf->plugins = p;
    nnm__mf_plugin *e = &p[mf->n_plugins];
    memset(e, 0, sizeof *e);
    size_t n = strlen(name) + strlen(range) + 3 + (provider ? strlen(provider) : 0);
    e->name = strdup(name);
    e->range = strdup(range);
    e->provider = provider ? strdup(provider) : NULL;
    e->request = malloc(n);
    if (!e->name || !e->range || !e->request || (provider && !e->provider)) {
        free(e->name);
        free(e->range);
        free(e->provider);
        free(e->request);
        return -1;
    }
    snprintf(e->request, n, "%s@%s%s%s", name, range, provider ? "#" : "", provider ? provider : "");
    return (int)mf->n_plugins++;
}

/* ---- reading ------------------------------------------------------------ */

static int sniff_json(const unsigned char *p, size_t len) {
    size_t i = 0;
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3; /* BOM */
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i < len && (p[i] == '{' || p[i] == '[' || p[i] == '"');
}

NNM_API nnm_status nnm_manifest_parse(nnm_ctx *ctx, const void *data, size_t len, int format,
                                      const nnm_manifest_limits *limits, const char *base_dir,
                                      nnm_manifest **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!out || (!data && len)) return nnm__error(ctx, NNM_E_INVALID, "nnm_manifest_parse: NULL argument");
    nnm_manifest_limits lim;
    nnm_status st = nnm__mf_limits(ctx, limits, &lim);
    if (st) return st;
    if (len > lim.max_bytes)
        return nnm__error(ctx, NNM_E_LIMIT, "document: %zu bytes is more than %llu (limits.max_bytes)",
                          len, (unsigned long long)lim.max_bytes);
    if (format == NNM_MANIFEST_AUTO)
        format = sniff_json(data, len) ? NNM_MANIFEST_JSON : NNM_MANIFEST_MSGPACK;
    json_t *doc = NULL;
    if (format == NNM_MANIFEST_JSON)
        st = nnm__mf_read_json(ctx, data, len, &lim, &doc);
    else if (format == NNM_MANIFEST_MSGPACK)
        st = nnm__mf_read_msgpack(ctx, data, len, &lim, &doc);
    else
        st = nnm__error(ctx, NNM_E_INVALID, "nnm_manifest_parse: unknown format %d", format);
    if (st) return st;
    nnm_manifest *mf = nnm__mf_new(ctx, base_dir);
    if (!mf) {
        json_decref(doc);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    }
    mf->max_param_bytes = lim.max_param_bytes;
    st = nnm__mf_from_doc(mf, doc, &lim);
    json_decref(doc);
    if (st) {
        nnm_manifest_free(mf);
        return st;
    }
    *out = mf;
    return NNM_OK;
}

NNM_API nnm_status nnm_manifest_load(nnm_ctx *ctx, const char *path, int format,
                                     const nnm_manifest_limits *limits, nnm_manifest **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!path || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_manifest_load: NULL argument");
    nnm_manifest_limits lim;
    nnm_status st = nnm__mf_limits(ctx, limits, &lim);
    if (st) return st;
    int fd;
    uint64_t fsize;
    if ((st = nnm__open_regular(ctx, path, NULL, &fd, &fsize))) return st;
    if (fsize > lim.max_bytes) {
        close(fd);
        return nnm__error(ctx, NNM_E_LIMIT, "%s: %llu bytes is more than %llu (limits.max_bytes)",
                          path, (unsigned long long)fsize, (unsigned long long)lim.max_bytes);
    }
    size_t len = (size_t)fsize;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return nnm__error(ctx, NNM_E_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) {
        free(buf);
        return nnm__error(ctx, NNM_E_IO, "%s: short read", path);
    }
    /* Weights are relative to the manifest's directory. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup("");
    if (!dir) {
        free(buf);
        return nnm__error(ctx, NNM_E_NOMEM, "%s: out of memory", path);
    }
    st = nnm_manifest_parse(ctx, buf, len, format, &lim, dir, out);
    free(dir);
    free(buf);
    if (!st && !((*out)->source = strdup(path))) {
        nnm_manifest_free(*out);
        *out = NULL;
        return nnm__error(ctx, NNM_E_NOMEM, "%s: out of memory", path);
    }
    if (st) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        nnm__error(ctx, st, "%s: %s", path, msg);
    }
    return st;
}

/* ---- writing ------------------------------------------------------------ */

/* msgpack-c's sbuffer, with the one message every writer gives on OOM. */
static nnm_status write_msgpack(const nnm_manifest *mf, void **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (nnm__mf_pack(mf, &pk)) {
        msgpack_sbuffer_destroy(&sb);
        return nnm__error(mf->ctx, NNM_E_NOMEM, "out of memory (writing a manifest)");
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb); /* never empty: a document is a map */
    return NNM_OK;
}

static nnm_status write_json(const nnm_manifest *mf, void **out, size_t *len) {
    json_t *doc = nnm__mf_to_doc(mf);
    if (!doc) return nnm__error(mf->ctx, NNM_E_NOMEM, "out of memory (writing a manifest)");
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(doc);
    size_t n = text ? strlen(text) : 0;
    char *buf = text ? malloc(n + 2) : NULL; /* jansson's allocator may not be malloc: copy */
    if (!buf) {
        free(text);
        return nnm__error(mf->ctx, NNM_E_NOMEM, "out of memory (writing a manifest)");
    }
    memcpy(buf, text, n);
    buf[n] = '\n';
    buf[n + 1] = 0;
    free(text);
    *out = buf;
    *len = n + 1;
    return NNM_OK;
}

NNM_API nnm_status nnm_manifest_write(const nnm_manifest *mf, int format, void **out, size_t *len) {
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!mf) return NNM_E_INVALID;
    if (!out || !len) return nnm__error(mf->ctx, NNM_E_INVALID, "nnm_manifest_write: NULL argument");
    if (format == NNM_MANIFEST_JSON) return write_json(mf, out, len);
    if (format == NNM_MANIFEST_MSGPACK || format == NNM_MANIFEST_AUTO)
        return write_msgpack(mf, out, len);
    return nnm__error(mf->ctx, NNM_E_INVALID, "nnm_manifest_write: unknown format %d", format);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

NNM_API nnm_status nnm_manifest_save(const nnm_manifest *mf, const char *path, int format) {
    if (!mf) return NNM_E_INVALID;
    if (!path || !*path) return nnm__error(mf->ctx, NNM_E_INVALID, "nnm_manifest_save: no path");
    if (format == NNM_MANIFEST_AUTO)
        format = ends_with(path, ".json") ? NNM_MANIFEST_JSON : NNM_MANIFEST_MSGPACK;
    void *buf;
    size_t len;
    nnm_status st = nnm_manifest_write(mf, format, &buf, &len);
    if (st) return st;
    nnm__atomic af;
    if ((st = nnm__atomic_open(mf->ctx, path, &af))) {
        free(buf);
        return st;
    }
    if (nnm__write_all(af.fd, buf, len)) {
        st = nnm__error(mf->ctx, NNM_E_IO, "%s: write: %s", path, strerror(errno));
        nnm__atomic_abort(&af);
    } else {
        st = nnm__atomic_commit(mf->ctx, &af);
    }
    free(buf);
    return st;
}

/* The hash streams the msgpack encoding through SHA-256: no buffer. */
static int hash_write(void *data, const char *buf, size_t len) {
    nnm__sha256_update(data, buf, len);
    return 0;
}

NNM_API nnm_status nnm_manifest_hash(const nnm_manifest *mf, char out[65]) {
    if (!mf || !out) return NNM_E_INVALID;
    nnm__sha256 s;
    uint8_t d[32];
    nnm__sha256_init(&s);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, hash_write);
    if (nnm__mf_pack(mf, &pk)) /* hash_write never fails */
        return nnm__error(mf->ctx, NNM_E_STATE, "nnm_manifest_hash: a config value of unknown type");
    nnm__sha256_final(&s, d);
    nnm__sha256_hex(d, out);
    return NNM_OK;
}

/* ---- accessors ---------------------------------------------------------- */

NNM_API const char *nnm_manifest_weights_path(const nnm_manifest *mf) {
    return mf ? mf->weights_path : NULL;
}

NNM_API const char *nnm_manifest_weights_sha256(const nnm_manifest *mf) {
    return mf ? mf->weights_sha256 : NULL;
}

NNM_API nnm_status nnm_manifest_set_weights(nnm_manifest *mf, const char *path, const char *sha256_hex) {
    if (!mf) return NNM_E_INVALID;
    char *p = NULL, *h = NULL;
    if (path && !nnm__utf8_valid(path, strlen(path)))
        return nnm__error(mf->ctx, NNM_E_INVALID,
                          "nnm_manifest_set_weights: the path is not UTF-8, which a manifest cannot hold");
    if (path && (!*path || !(p = strdup(path))))
        return nnm__error(mf->ctx, *path ? NNM_E_NOMEM : NNM_E_INVALID,
                          "nnm_manifest_set_weights: %s", *path ? "out of memory" : "empty path");
    if (path && sha256_hex) {
        int ok = strlen(sha256_hex) == 64;
        for (int i = 0; ok && i < 64; i++) {
            char c = sha256_hex[i];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        }
        if (!ok) {
            free(p);
            return nnm__error(mf->ctx, NNM_E_INVALID, "weights.sha256: expected 64 hex digits");
        }
        if (!(h = strdup(sha256_hex))) {
            free(p);
            return nnm__error(mf->ctx, NNM_E_NOMEM, "nnm_manifest_set_weights: out of memory");
        }
        for (char *c = h; *c; c++)
            if (*c >= 'A' && *c <= 'F') *c = (char)(*c - 'A' + 'a');
    }
    free(mf->weights_path);
    free(mf->weights_sha256);
    mf->weights_path = p;
    mf->weights_sha256 = h;
    return NNM_OK;
}

NNM_API uint32_t nnm_manifest_plugin_count(const nnm_manifest *mf) { return mf ? mf->n_plugins : 0; }

NNM_API nnm_status nnm_manifest_plugin(const nnm_manifest *mf, uint32_t index, const char **name,
                                       const char **range, const char **resolved_version) {
    if (!mf || index >= mf->n_plugins) return NNM_E_NOT_FOUND;
    if (name) *name = mf->plugins[index].name;
    if (range) *range = mf->plugins[index].range;
    if (resolved_version) *resolved_version = mf->plugins[index].version;
    return NNM_OK;
}

NNM_API const nnm_config *nnm_manifest_training(const nnm_manifest *mf) {
    return mf ? mf->training : NULL;
}

NNM_API uint32_t nnm_manifest_metadata_count(const nnm_manifest *mf) {
    return mf ? mf->n_meta : 0;
}

NNM_API nnm_status nnm_manifest_metadata(const nnm_manifest *mf, uint32_t index, const char **key,
                                         const char **value) {
    if (key) *key = NULL;
    if (value) *value = NULL;
    if (!mf) return NNM_E_INVALID;
    if (index >= mf->n_meta) return NNM_E_NOT_FOUND;
    if (key) *key = mf->meta_keys[index];
    if (value) *value = mf->meta_values[index];
    return NNM_OK;
}
