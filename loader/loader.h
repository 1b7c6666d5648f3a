/* loader/loader.h - find, dlopen, handshake and register plugins; nothing else.
 *
 * Internal to libnnmod (nnm__ names, hidden). The runtime owns one registry per
 * context. The loader never calls into the runtime: errors come back as a
 * status plus a message written into the caller's buffer.
 */
#ifndef NNM_LOADER_H
#define NNM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "nnmod/plugin.h"

/* One plugin record: a loaded file, a static registration, or a failure. */
typedef struct nnm__plugin {
    char *path;                 /* file path (realpath when it exists), or origin */
    void *dl;                   /* dlopen handle; NULL for static ones and failures */
    nnm_status status;          /* NNM_OK if usable */
    char *error;                /* "" when loaded; the reason otherwise */
    const nnm_plugin_desc *desc; /* as the plugin returned it; NULL on failure */
    uint16_t abi_major, abi_minor; /* what the plugin declared; 0 if unknown */
    /* Vtables normalised to this runtime's layout: each is a zero-filled copy of
     * the plugin's first min(plugin struct_size, sizeof) bytes, with struct_size
     * set to the plugin's. Slots the plugin lacks are NULL; slots of a newer
     * minor are dropped. The runtime calls through these copies only. */
    uint32_t n_layers;
    nnm_layer_vtable *layers;
    uint32_t n_backends;
    nnm_backend_vtable *backends;
    uint32_t n_comms;           /* (1.3) communicators, normalised the same way */
    nnm_comm_vtable *comms;
    /* (1.5, names) The domain of the file's layers: the declared one, or, for
     * a plugin that declares none, its plugin name (then domain_declared is
     * 0). qnames[i] is layers[i]'s qualified name, "<domain>.<name>". NULL for
     * failed records. */
    char *domain;
    int domain_declared;
    int builtin;                /* declared NNM_DOMAIN_NNMOD: owns the plain names */
    char **qnames;
    /* One reference for the registry, one per live module made from it. The
     * file is dlclosed and the record freed when the count reaches zero. */
    uint32_t refs;
    uint32_t live_modules;      /* for nnm_plugin_info; maintained by the runtime */
} nnm__plugin;

typedef struct nnm__registry {
    nnm__plugin **items;        /* loaded and failed, in load order */
    uint32_t count, cap;
} nnm__registry;

void nnm__registry_init(nnm__registry *r);
/* Drops the registry's reference to every record. Records still referenced by
 * modules stay (and stay dlopened) until their last nnm__plugin_release. */
void nnm__registry_fini(nnm__registry *r);

/* Loads one file. A path already loaded (same realpath) returns NNM_OK with the
 * existing record. On failure a failed record is kept (so the list shows it),
 * *out is NULL, and err holds "path: reason (plugin ABI x.y, runtime ABI a.b)".
 * out may be NULL. */
nnm_status nnm__registry_load_file(nnm__registry *r, const char *path, nnm__plugin **out,
                                   char *err, size_t errcap);
/* Loads every regular file ending in ".so" in dir, sorted by name. Failures are
 * recorded, never fatal; NNM_E_IO if dir cannot be opened. */
nnm_status nnm__registry_load_dir(nnm__registry *r, const char *dir, uint32_t *n_loaded,
                                  char *err, size_t errcap);
/* Registers a descriptor linked into the application. */
nnm_status nnm__registry_register_static(nnm__registry *r, const nnm_plugin_desc *desc,
                                         const char *origin, char *err, size_t errcap);
/* Scans, in order and skipping directories already scanned: each entry of
 * env_path (':'-separated; may be NULL), the directory "nnmod/plugins" beside
 * the file libnnmod was loaded from, and installed_dir (may be NULL) only when
 * there is no such directory beside it (a libnnmod uses the plugins shipped
 * with it; another installation's copies of them would make every name
 * ambiguous). Missing directories are skipped silently; never fails. */
void nnm__registry_discover(nnm__registry *r, const char *env_path, const char *installed_dir);

/* Resolves a layer request "[domain.]name[@spec][#provider]" ("linear",
 * "acme.gelu@^1.2", "gelu@1.0.0#nnm_acme.so"; docs/abi.md, "Names"):
 * the providers the name reaches (a qualified name: that domain's; a plain
 * name: nnmod's library where it has the name, else the plugins that declare
 * no domain; a provider pin: the pinned file's layers of that name), then the
 * highest version the spec matches. NNM_E_INVALID for a malformed request,
 * NNM_E_NOT_FOUND (message lists the versions present, and other providers of
 * the name) when nothing matches, NNM_E_EXISTS (naming both files) when two
 * files provide the chosen version. *vt points into owner's normalised copies. */
nnm_status nnm__registry_find_layer(const nnm__registry *r, const char *request,
                                    const nnm_layer_vtable **vt, nnm__plugin **owner,
                                    char *err, size_t errcap);
/* DLPack's name of a device type ("cpu", "cuda", "ext_dev", ...), "unknown"
 * for a value DLPack does not name. Static storage. */
const char *nnm__device_type_name(int32_t type);
/* The highest version of a backend for device_type, NNM_E_NOT_FOUND if none. */
nnm_status nnm__registry_find_backend(const nnm__registry *r, int32_t device_type,
                                      const nnm_backend_vtable **vt, nnm__plugin **owner,
                                      char *err, size_t errcap);

/* The highest version of a comm matching request ("mpi", "nccl@^1"),
 * NNM_E_NOT_FOUND (naming the file it would be in) if none. */
nnm_status nnm__registry_find_comm(const nnm__registry *r, const char *request,
                                   const nnm_comm_vtable **vt, nnm__plugin **owner, char *err,
                                   size_t errcap);

/* The request that names layer `vt` of `owner` in a manifest: its plain name
 * when "name@=x.y.z" resolves to it, else its qualified name. Writes into buf
 * (at least 128 bytes). */
void nnm__registry_request_name(const nnm__registry *r, const nnm__plugin *owner,
                                const nnm_layer_vtable *vt, char *buf, size_t cap);
/* Flags of layer j of p, the values of nnmod.h's NNM_LAYER_INFO_*. */
#define NNM__LF_DECLARED 1u  /* the plugin declared its domain */
#define NNM__LF_PLAIN 2u     /* the plain name reaches it */
#define NNM__LF_SHADOWED 4u  /* no domain, and nnmod's library owns the plain name */
#define NNM__LF_BUILTIN 8u   /* domain NNM_DOMAIN_NNMOD */
uint32_t nnm__registry_layer_flags(const nnm__registry *r, const nnm__plugin *p, uint32_t j);

void nnm__plugin_retain(nnm__plugin *p);
void nnm__plugin_release(nnm__plugin *p); /* NULL: no-op */

/* Semantic versions and requests (exposed for tests). */
typedef struct nnm__semver {
    uint32_t major, minor, patch;
} nnm__semver;

enum nnm__req_op { NNM__REQ_ANY, NNM__REQ_EXACT, NNM__REQ_CARET, NNM__REQ_TILDE, NNM__REQ_GE };

typedef struct nnm__version_req {
    char name[64];              /* the layer's own name: "gelu" of "acme.gelu" */
    char domain[64];            /* "acme" of "acme.gelu"; "" for a plain name */
    const char *provider;       /* after '#': a pinned provider (points into the
                                 * request string); NULL when none */
    int op;                     /* enum nnm__req_op */
    nnm__semver v;
    int parts;                  /* components given in the spec, 1..3 (npm/cargo
                                 * partials: "=1.2" is 1.2.x, "~1" is 1.x, "^0.0"
                                 * is 0.0.x); 0 for "any" or a hand-built request,
                                 * which then means a full major.minor.patch */
} nnm__version_req;

/* Parses "1", "1.2" or "1.2.3" (missing parts are 0). NNM_E_INVALID otherwise. */
nnm_status nnm__semver_parse(const char *s, nnm__semver *out);
/* Parses a request "[domain.]name[@spec][#provider]"; no spec means any.
 * The domain is 1..63 of [A-Za-z0-9_.-] (a declared domain, or the name of a
 * plugin that declares none), the name 1..63 of [a-z0-9_]. */
nnm_status nnm__version_req_parse(const char *request, nnm__version_req *out);
/* 1 if v satisfies req (name not compared). Caret follows npm/cargo: ^1.2 is
 * >=1.2.0 <2.0.0, ^0.2 is >=0.2.0 <0.3.0; tilde ~1.2 is >=1.2.0 <1.3.0. */
int nnm__version_matches(const nnm__version_req *req, nnm__semver v);

#endif /* NNM_LOADER_H */
