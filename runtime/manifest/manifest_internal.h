/* runtime/manifest/manifest_internal.h - what the manifest files share.
 *
 * Both encodings are read into one document model, a jansson tree (JSON
 * directly; msgpack through msgpack-c, after a bounded pre-scan). The schema
 * pass turns the tree into an nnm_manifest: flat, validated, with the
 * document path of every module kept for the messages of later stages.
 * Writing goes the other way: nnm_manifest -> jansson tree -> JSON text, and
 * nnm_manifest -> msgpack bytes directly (also what the hash digests), in
 * the same key order, so both encodings of one manifest say the same thing.
 */
#ifndef NNM_MANIFEST_INTERNAL_H
#define NNM_MANIFEST_INTERNAL_H

#include <jansson.h>
#include <msgpack.h>
#include <string.h>

#include "../internal.h"

#define NNM__MF_FORMAT "nnmod.manifest"
#define NNM__MF_VERSION 1
/* msgpack-c's unpacker keeps a fixed stack of this many containers; so
 * that whatever one encoding reads the other can too, it is the deepest a
 * document of either may nest, whatever the limits say. */
#define NNM__MF_MSGPACK_MAX_DEPTH 32u
/* The longest map key (config keys, metadata keys, plugin names), in bytes,
 * in either encoding, so that whatever one reads the other can too. */
#define NNM__MF_MAX_KEY 255u

/* Document paths, for messages, built without printf: the readers and the
 * schema pass extend one for every value they visit. Each appends to the
 * path of length len in buf[cap] (cap > len), truncating where it must,
 * keeps it NUL-terminated and returns the new length. */
static inline size_t nnm__path_put(char *buf, size_t cap, size_t len, const char *s, size_t n) {
    if (n > cap - 1 - len) n = cap - 1 - len;
    memcpy(buf + len, s, n);
    buf[len + n] = 0;
    return len + n;
}
/* buf = path */
static inline size_t nnm__path_set(char *buf, size_t cap, const char *path) {
    return nnm__path_put(buf, cap, 0, path, strlen(path));
}
/* ".key", or "key" at the start of the document */
static inline size_t nnm__path_key(char *buf, size_t cap, size_t len, const char *key) {
    if (len) len = nnm__path_put(buf, cap, len, ".", 1);
    return nnm__path_put(buf, cap, len, key, strlen(key));
}
/* "[i]" */
static inline size_t nnm__path_index(char *buf, size_t cap, size_t len, uint64_t i) {
    char d[24];
    size_t at = sizeof d;
    d[--at] = ']';
    do d[--at] = (char)('0' + i % 10); while (i /= 10);
    d[--at] = '[';
    return nnm__path_put(buf, cap, len, d + at, sizeof d - at);
}

typedef struct nnm__mf_plugin {
    char *name;                   /* layer type, "linear" */
    char *range;                  /* "^1.0" */
    char *provider;               /* a pinned provider ("nnm_acme.so"); NULL when none */
    char *request;                /* "linear@^1.0[#provider]", what the registry resolves */
    char version[48];             /* what it resolved to, "1.0.0" */
} nnm__mf_plugin;

typedef struct nnm__mf_module {
    char *path;                   /* "root.children[2]" */
    char *name;                   /* the child name ("" for the root) */
    uint32_t plugin;              /* index into plugins */
    nnm_config *cfg;              /* owned */
    uint32_t *children;           /* indexes into modules */
    uint32_t n_children;
    uint32_t dotted_len;          /* bytes of its dotted name ("0.fc1"); 0 for the root */
} nnm__mf_module;

struct nnm_manifest {
    nnm_ctx *ctx;                 /* referenced */
    char *base_dir;               /* weights are relative to this ("" = cwd) */
    char *source;                 /* the file it was loaded from; NULL if parsed from memory */
    nnm__mf_plugin *plugins;
    uint32_t n_plugins;
    nnm__mf_module *modules;      /* pre-order; modules[0] is the root */
    uint32_t n_modules, cap_modules;
    char *weights_path;           /* NULL when the document names none */
    char *weights_sha256;         /* NULL, or 64 lowercase hex digits */
    char **meta_keys, **meta_values; /* "metadata": string to string */
    uint32_t n_meta;
    char **tie_keys, **tie_values; /* "ties": parameter name to the one it is tied to */
    uint32_t n_ties;
    uint64_t max_param_bytes;     /* limits.max_param_bytes, for builds */
    nnm_config *training;         /* "training": hyper-parameters for nnm train; NULL when absent */
};

/* Limits with defaults filled in; NNM_E_INVALID for a bad struct_size. */
nnm_status nnm__mf_limits(nnm_ctx *ctx, const nnm_manifest_limits *in, nnm_manifest_limits *out);

/* Readers: a bounded document -> a jansson tree (*out owned by the caller). */
nnm_status nnm__mf_read_msgpack(nnm_ctx *ctx, const unsigned char *data, size_t len,
                                const nnm_manifest_limits *lim, json_t **out);
nnm_status nnm__mf_read_json(nnm_ctx *ctx, const char *data, size_t len,
                             const nnm_manifest_limits *lim, json_t **out);

/* The schema pass: fills an empty mf (ctx and base_dir set) from doc. */
nnm_status nnm__mf_from_doc(nnm_manifest *mf, const json_t *doc, const nnm_manifest_limits *lim);
/* The document of mf (new reference; NULL on OOM). */
json_t *nnm__mf_to_doc(const nnm_manifest *mf);
/* Packs mf's document (nnm__mf_to_doc's, key for key) into pk: 0, or -1
 * when pk's write fails. */
int nnm__mf_pack(const nnm_manifest *mf, msgpack_packer *pk);

/* A config value <-> document value. */
json_t *nnm__mf_config_to_doc(const nnm_config *cfg);

/* Appends a module record (zeroed but for path); NULL on OOM. Its index is
 * mf->n_modules - 1. */
nnm__mf_module *nnm__mf_add_module(nnm_manifest *mf, const char *path);
/* Finds or adds a plugin entry (provider may be NULL: no pin); returns its
 * index or -1 on OOM. */
int nnm__mf_plugin_index(nnm_manifest *mf, const char *name, const char *range,
                         const char *provider);
/* An empty manifest bound to ctx; NULL on OOM. */
nnm_manifest *nnm__mf_new(nnm_ctx *ctx, const char *base_dir);

#endif
