/* loader/loader.c - find, dlopen, handshake and register plugins.
 *
 * Every file goes through the same steps: realpath (a file already loaded is
 * returned as it is), dlopen(RTLD_NOW | RTLD_LOCAL), dlsym of the one entry
 * symbol, the entry call with this runtime's ABI version, validation of the
 * descriptor and of every vtable it lists, and normalisation of the vtables to
 * this runtime's layout. Any failure leaves a failed record (so the plugin list
 * shows why), closes the file and writes "path: reason" into the caller's
 * buffer; one broken file never stops the others.
 *
 * Nothing here prints, exits or aborts; every allocation is checked.
 */
#define _GNU_SOURCE /* realpath, dladdr, strdup */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loader.h"

#ifndef NNM_PLUGIN_SUBDIR
#define NNM_PLUGIN_SUBDIR "nnmod/plugins"
#endif

/* The smallest descriptor of ABI 1.x: everything through `backends`. */
#define NNM__DESC_MIN (offsetof(nnm_plugin_desc, backends) + sizeof(void *))
/* The smallest layer vtable: everything through the required `forward`. */
#define NNM__LAYER_MIN                                                                   \
    (offsetof(nnm_layer_vtable, forward) + sizeof(((nnm_layer_vtable *)0)->forward))
/* The smallest backend vtable: everything through the required `memcpy`. */
#define NNM__BACKEND_MIN                                                                 \
    (offsetof(nnm_backend_vtable, memcpy) + sizeof(((nnm_backend_vtable *)0)->memcpy))
/* The smallest comm vtable (1.3): everything through the required `wait`. */
#define NNM__COMM_MIN (offsetof(nnm_comm_vtable, wait) + sizeof(((nnm_comm_vtable *)0)->wait))
/* A descriptor lists comms only if its struct_size covers the 1.3 fields. */
#define NNM__DESC_COMMS_END (offsetof(nnm_plugin_desc, comms) + sizeof(void *))
/* A descriptor declares a domain only if its struct_size covers the 1.5 field. */
#define NNM__DESC_DOMAIN_END (offsetof(nnm_plugin_desc, domain) + sizeof(void *))
/* A struct_size above this is taken for garbage, not for a future minor. */
#define NNM__STRUCT_MAX (1u << 20)
/* Most layers or backends one descriptor may list. */
#define NNM__ENTRIES_MAX 4096u
/* Longest layer or backend name (fits nnm__version_req.name). */
#define NNM__NAME_MAX 63u
/* Bounds on the rest of what a descriptor claims (nothing is read past them). */
#define NNM__PLUGIN_NAME_MAX 63u    /* plugin name: [A-Za-z0-9_.-] */
#define NNM__DESCRIPTION_MAX 1024u  /* one line of text */
#define NNM__CONFIG_FIELDS_MAX 256u /* config keys one layer declares */
#define NNM__CONFIG_KEY_MAX 255u    /* [A-Za-z0-9_], as manifests allow */
#define NNM__CONFIG_DOC_MAX 1024u
#define NNM__DISPLAY_NAME_MAX 63u   /* a class name: [A-Za-z_][A-Za-z0-9_]* */
/* Longest message the loader composes (err buffers truncate further). */
#define NNM__MSG_CAP 2048

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
#define NNM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NNM__PRINTF(a, b)
#endif

static void msg_set(char *buf, size_t cap, const char *fmt, ...) NNM__PRINTF(3, 4);
static void msg_set(char *buf, size_t cap, const char *fmt, ...) {
    if (!buf || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* Appends to buf (holding *len bytes) without overflowing cap. */
static void msg_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    NNM__PRINTF(4, 5);
static void msg_append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    *len += (size_t)n;
    if (*len >= cap) *len = cap - 1;
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int semver_cmp(nnm__semver a, nnm__semver b) {
    if (a.major != b.major) return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
    if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
    return 0;
}

static nnm__semver layer_version(const nnm_layer_vtable *vt) {
    nnm__semver v = {vt->version_major, vt->version_minor, vt->version_patch};
    return v;
}

static nnm__semver backend_version(const nnm_backend_vtable *vt) {
    nnm__semver v = {vt->version_major, vt->version_minor, vt->version_patch};
    return v;
}

/* DLPack's name of a DLDeviceType (dlpack.h's kDL* without the prefix, in
 * lower case), "unknown" for another value. A backend may serve any of
 * them (the runtime picks a backend by device type alone). */
const char *nnm__device_type_name(int32_t type) {
    static const char *const names[] = {
        NULL,     "cpu",  "cuda",     "cuda_host", "opencl",       NULL,     NULL,    "vulkan",  "metal",
        "vpi",    "rocm", "rocm_host", "ext_dev",  "cuda_managed", "oneapi", "webgpu", "hexagon", "maia"};
    if (type >= 0 && type < (int32_t)(sizeof names / sizeof names[0]) && names[type]) return names[type];
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Records and the registry                                                  */
/* ------------------------------------------------------------------------ */

static void plugin_free(nnm__plugin *p) {
    if (p->dl) dlclose(p->dl);
    if (p->qnames)
        for (uint32_t i = 0; i < p->n_layers; i++) free(p->qnames[i]);
    free(p->qnames);
    free(p->domain);
    free(p->path);
    free(p->error);
    free(p->layers);
    free(p->backends);
    free(p->comms);
    free(p);
}

void nnm__plugin_retain(nnm__plugin *p) {
    if (p) __atomic_fetch_add(&p->refs, 1u, __ATOMIC_RELAXED);
}

void nnm__plugin_release(nnm__plugin *p) {
    if (!p) return;
    if (__atomic_sub_fetch(&p->refs, 1u, __ATOMIC_ACQ_REL) == 0) plugin_free(p);
}

void nnm__registry_init(nnm__registry *r) {
    if (!r) return;
    r->items = NULL;
    r->count = 0;
    r->cap = 0;
}

void nnm__registry_fini(nnm__registry *r) {
    if (!r) return;
    for (uint32_t i = 0; i < r->count; i++) nnm__plugin_release(r->items[i]);
    free(r->items);
    nnm__registry_init(r);
}

/* Appends p (whose reference passes to the registry). NNM_E_NOMEM leaves p
 * with the caller. */
static nnm_status registry_push(nnm__registry *r, nnm__plugin *p) {
    if (r->count == r->cap) {
        if (r->cap > UINT32_MAX / 2) return NNM_E_LIMIT;
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        nnm__plugin **items = realloc(r->items, (size_t)cap * sizeof *items);
        if (!items) return NNM_E_NOMEM;
        r->items = items;
        r->cap = cap;
    }
    r->items[r->count++] = p;
    return NNM_OK;
}

/* Drops record i from the list (and the registry's reference to it). */
static void registry_remove(nnm__registry *r, uint32_t i) {
    nnm__plugin *p = r->items[i];
    memmove(&r->items[i], &r->items[i + 1], (size_t)(r->count - i - 1) * sizeof *r->items);
    r->count--;
    nnm__plugin_release(p);
}

/* Records a failure: closes dl, copies msg into err and keeps a failed record.
 * Returns st. If the record itself cannot be allocated, the failure is still
 * reported through err and st; only the list entry is missing. */
static nnm_status record_failure(nnm__registry *r, const char *path, void *dl, uint16_t abi_major,
                                 uint16_t abi_minor, nnm_status st, const char *msg, char *err,
                                 size_t errcap) {
    if (dl) dlclose(dl);
    msg_set(err, errcap, "%s", msg);
    nnm__plugin *p = calloc(1, sizeof *p);
    if (!p) return st;
    p->path = str_dup(path);
    p->error = str_dup(msg);
    if (!p->path || !p->error) {
        plugin_free(p);
        return st;
    }
    p->status = st;
    p->abi_major = abi_major;
    p->abi_minor = abi_minor;
    p->refs = 1;
    if (registry_push(r, p) != NNM_OK) plugin_free(p);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Descriptor validation and normalisation                                   */
/* ------------------------------------------------------------------------ */

typedef struct nnm__checked {
    uint16_t abi_major, abi_minor; /* 0 when unknown */
    int abi_known;
    uint32_t n_layers, n_backends, n_comms;
    const char *domain;            /* (1.5) the declared domain; NULL when none */
    nnm_layer_vtable *layers;      /* normalised copies, owned until handed over */
    nnm_backend_vtable *backends;
    nnm_comm_vtable *comms;
} nnm__checked;

static void checked_free(nnm__checked *c) {
    free(c->layers);
    free(c->backends);
    free(c->comms);
    c->layers = NULL;
    c->backends = NULL;
    c->comms = NULL;
}

/* Validates a layer/backend name: 1..NNM__NAME_MAX chars; layers are [a-z0-9_]. */
static int entry_name_ok(const char *name, int strict) {
    if (!name) return 0;
    size_t n = strnlen(name, NNM__NAME_MAX + 1);
    if (n == 0 || n > NNM__NAME_MAX) return 0;
    if (strict)
        for (size_t i = 0; i < n; i++)
            if (!name_char_ok(name[i])) return 0;
    return 1;
}

/* 1 when s is 1..max bytes, each accepted by ok(). */
static int text_ok(const char *s, size_t max, int (*ok)(char c, size_t i)) {
    if (!s) return 0;
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if (!ok(s[i], i)) return 0;
    return 1;
}

static int ident_char(char c, size_t i) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (i > 0 && c >= '0' && c <= '9');
}

static int key_char(char c, size_t i) {
    (void)i;
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int plugin_name_char(char c, size_t i) {
    return key_char(c, i) || c == '.' || c == '-';
}

/* Any byte but control characters (UTF-8 passes; nnm escapes on print). */
static int line_char(char c, size_t i) {
    (void)i;
    return (unsigned char)c >= 0x20 && c != 0x7f;
}

/* (1.5) A declared domain: 1..NNM__NAME_MAX bytes, segments of [a-z0-9_]
 * joined by single dots. */
static int domain_ok(const char *d) {
    size_t n = strnlen(d, NNM__NAME_MAX + 1);
    if (n == 0 || n > NNM__NAME_MAX || d[0] == '.' || d[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.') {
            if (d[i + 1] == '.') return 0;
        } else if (!name_char_ok(d[i])) {
            return 0;
        }
    }
    return 1;
}

/* Checks a layer's optional 1.2 fields: display name and config schema. */
static int check_layer_text(const nnm_layer_vtable *vt, char *why, size_t cap) {
    if (vt->struct_size >= offsetof(nnm_layer_vtable, display_name) + sizeof vt->display_name &&
        vt->display_name && !text_ok(vt->display_name, NNM__DISPLAY_NAME_MAX, ident_char)) {
        msg_set(why, cap, "layer '%s': invalid display_name (want 1 to %u of [A-Za-z0-9_], not "
                "starting with a digit)", vt->name, NNM__DISPLAY_NAME_MAX);
        return 0;
    }
    if (vt->struct_size < offsetof(nnm_layer_vtable, n_config_fields) + sizeof vt->n_config_fields)
        return 1;
    uint32_t n = vt->n_config_fields;
    if (!vt->config_fields) {
        if (n) {
            msg_set(why, cap, "layer '%s': declares %u config fields but config_fields is NULL",
                    vt->name, n);
            return 0;
        }
        return 1;
    }
    if (n > NNM__CONFIG_FIELDS_MAX) {
        msg_set(why, cap, "layer '%s': declares %u config fields (at most %u)", vt->name, n,
                NNM__CONFIG_FIELDS_MAX);
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const nnm_config_field *f = &vt->config_fields[i];
        if (!text_ok(f->key, NNM__CONFIG_KEY_MAX, key_char)) {
            msg_set(why, cap, "layer '%s': config field #%u: invalid key (want 1 to %u of "
                    "[A-Za-z0-9_])", vt->name, i, NNM__CONFIG_KEY_MAX);
            return 0;
        }
        if (f->type < NNM_CONFIG_INT || f->type > NNM_CONFIG_ANY) {
            msg_set(why, cap, "layer '%s': config field '%s': unknown type %d", vt->name, f->key,
                    (int)f->type);
            return 0;
        }
        if (f->flags & ~NNM_CONFIG_REQUIRED) {
            msg_set(why, cap, "layer '%s': config field '%s': unknown flags 0x%x", vt->name, f->key,
                    f->flags & ~NNM_CONFIG_REQUIRED);
            return 0;
        }
        if (f->doc && strnlen(f->doc, NNM__CONFIG_DOC_MAX + 1) > NNM__CONFIG_DOC_MAX) {
            msg_set(why, cap, "layer '%s': config field '%s': doc longer than %u bytes", vt->name,
                    f->key, NNM__CONFIG_DOC_MAX);
            return 0;
        }
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(vt->config_fields[j].key, f->key) == 0) {
                msg_set(why, cap, "layer '%s': config field '%s' is declared twice", vt->name,
                        f->key);
                return 0;
            }
    }
    return 1;
}

static const nnm__plugin *registry_find_backend_exact(const nnm__registry *r, const char *name,
                                                      nnm__semver v) {
    for (uint32_t i = 0; i < r->count; i++) {
        const nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) continue;
        for (uint32_t j = 0; j < p->n_backends; j++)
            if (strcmp(p->backends[j].name, name) == 0 &&
                semver_cmp(backend_version(&p->backends[j]), v) == 0)
                return p;
    }
    return NULL;
}

static nnm__semver comm_version(const nnm_comm_vtable *vt) {
    nnm__semver v = {vt->version_major, vt->version_minor, vt->version_patch};
    return v;
}

static const nnm__plugin *registry_find_comm_exact(const nnm__registry *r, const char *name,
                                                   nnm__semver v) {
    for (uint32_t i = 0; i < r->count; i++) {
        const nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) continue;
        for (uint32_t j = 0; j < p->n_comms; j++)
            if (strcmp(p->comms[j].name, name) == 0 &&
                semver_cmp(comm_version(&p->comms[j]), v) == 0)
                return p;
    }
    return NULL;
}

/* Checks the layers of desc and fills c->layers with normalised copies.
 * Writes the reason (without the path) into why. */
static nnm_status check_layers(const nnm__registry *r, const nnm_plugin_desc *desc,
                               nnm__checked *c, char *why, size_t cap) {
    (void)r;
    uint32_t n = desc->n_layers;
    if (n == 0) return NNM_OK;
    if (n > NNM__ENTRIES_MAX) {
        msg_set(why, cap, "descriptor lists %u layers (at most %u)", n, NNM__ENTRIES_MAX);
        return NNM_E_LIMIT;
    }
    if (!desc->layers) {
        msg_set(why, cap, "descriptor declares %u layers but its layer list is NULL", n);
        return NNM_E_PLUGIN;
    }
    c->layers = calloc(n, sizeof *c->layers);
    if (!c->layers) {
        msg_set(why, cap, "out of memory");
        return NNM_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const nnm_layer_vtable *src = desc->layers[i];
        if (!src) {
            msg_set(why, cap, "layer #%u: vtable pointer is NULL", i);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size < NNM__LAYER_MIN) {
            msg_set(why, cap,
                    "layer #%u: vtable struct_size %u is too small; ABI %d.x needs at least %zu, "
                    "through 'forward'",
                    i, src->struct_size, NNM_ABI_MAJOR, (size_t)NNM__LAYER_MIN);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size > NNM__STRUCT_MAX) {
            msg_set(why, cap, "layer #%u: vtable struct_size %u is implausible", i,
                    src->struct_size);
            return NNM_E_PLUGIN;
        }
        nnm_layer_vtable *vt = &c->layers[i];
        size_t bytes = src->struct_size < sizeof *vt ? src->struct_size : sizeof *vt;
        memcpy(vt, src, bytes);
        vt->struct_size = src->struct_size;
        if (!entry_name_ok(vt->name, 1)) {
            if (vt->name)
                msg_set(why, cap, "layer #%u: invalid name '%.*s' (want 1 to %u of [a-z0-9_])", i,
                        (int)NNM__NAME_MAX, vt->name, NNM__NAME_MAX);
            else
                msg_set(why, cap, "layer #%u: name is NULL", i);
            return NNM_E_PLUGIN;
        }
        if (!check_layer_text(vt, why, cap)) return NNM_E_PLUGIN;
        nnm__semver v = layer_version(vt);
        if (!vt->create || !vt->forward) {
            msg_set(why, cap, "layer '%s' %u.%u.%u: required slot '%s' is NULL", vt->name,
                    v.major, v.minor, v.patch, !vt->create ? "create" : "forward");
            return NNM_E_PLUGIN;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->layers[j].name, vt->name) == 0 &&
                semver_cmp(layer_version(&c->layers[j]), v) == 0) {
                msg_set(why, cap, "layer '%s' %u.%u.%u is listed twice", vt->name, v.major,
                        v.minor, v.patch);
                return NNM_E_EXISTS;
            }
        }
        /* Another file providing the same name and version is no reason to
         * refuse this one: names are resolved by rule when a layer is asked
         * for (nnm__registry_find_layer), where an ambiguous request fails
         * naming both files. */
    }
    c->n_layers = n;
    return NNM_OK;
}

static nnm_status check_backends(const nnm__registry *r, const nnm_plugin_desc *desc,
                                 nnm__checked *c, char *why, size_t cap) {
    uint32_t n = desc->n_backends;
    if (n == 0) return NNM_OK;
    if (n > NNM__ENTRIES_MAX) {
        msg_set(why, cap, "descriptor lists %u backends (at most %u)", n, NNM__ENTRIES_MAX);
        return NNM_E_LIMIT;
    }
    if (!desc->backends) {
        msg_set(why, cap, "descriptor declares %u backends but its backend list is NULL", n);
        return NNM_E_PLUGIN;
    }
    c->backends = calloc(n, sizeof *c->backends);
    if (!c->backends) {
        msg_set(why, cap, "out of memory");
        return NNM_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const nnm_backend_vtable *src = desc->backends[i];
        if (!src) {
            msg_set(why, cap, "backend #%u: vtable pointer is NULL", i);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size < NNM__BACKEND_MIN) {
            msg_set(why, cap,
                    "backend #%u: vtable struct_size %u is too small; ABI %d.x needs at least "
                    "%zu, through 'memcpy'",
                    i, src->struct_size, NNM_ABI_MAJOR, (size_t)NNM__BACKEND_MIN);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size > NNM__STRUCT_MAX) {
            msg_set(why, cap, "backend #%u: vtable struct_size %u is implausible", i,
                    src->struct_size);
            return NNM_E_PLUGIN;
        }
        nnm_backend_vtable *vt = &c->backends[i];
        size_t bytes = src->struct_size < sizeof *vt ? src->struct_size : sizeof *vt;
        memcpy(vt, src, bytes);
        vt->struct_size = src->struct_size;
        if (!entry_name_ok(vt->name, 0)) {
            if (vt->name)
                msg_set(why, cap, "backend #%u: invalid name '%.*s' (want 1 to %u characters)", i,
                        (int)NNM__NAME_MAX, vt->name, NNM__NAME_MAX);
            else
                msg_set(why, cap, "backend #%u: name is NULL", i);
            return NNM_E_PLUGIN;
        }
        nnm__semver v = backend_version(vt);
        const char *missing = !vt->init     ? "init"
                              : !vt->alloc  ? "alloc"
                              : !vt->free   ? "free"
                              : !vt->memcpy ? "memcpy"
                                            : NULL;
        if (missing) {
            msg_set(why, cap, "backend '%s' %u.%u.%u: required slot '%s' is NULL", vt->name,
                    v.major, v.minor, v.patch, missing);
            return NNM_E_PLUGIN;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->backends[j].name, vt->name) == 0 &&
                semver_cmp(backend_version(&c->backends[j]), v) == 0) {
                msg_set(why, cap, "backend '%s' %u.%u.%u is listed twice", vt->name, v.major,
                        v.minor, v.patch);
                return NNM_E_EXISTS;
            }
        }
        const nnm__plugin *other = registry_find_backend_exact(r, vt->name, v);
        if (other) {
            msg_set(why, cap, "backend '%s' %u.%u.%u is already provided by %s", vt->name,
                    v.major, v.minor, v.patch, other->path);
            return NNM_E_EXISTS;
        }
    }
    c->n_backends = n;
    return NNM_OK;
}

/* (1.3) The comms of desc, only when its struct_size covers the fields:
 * the same checks as layers and backends (sizes, names, required slots,
 * duplicates in the file and across the registry). */
static nnm_status check_comms(const nnm__registry *r, const nnm_plugin_desc *desc,
                              nnm__checked *c, char *why, size_t cap) {
    if (desc->struct_size < NNM__DESC_COMMS_END) return NNM_OK;
    uint32_t n = desc->n_comms;
    if (n == 0) return NNM_OK;
    if (n > NNM__ENTRIES_MAX) {
        msg_set(why, cap, "descriptor lists %u comms (at most %u)", n, NNM__ENTRIES_MAX);
        return NNM_E_LIMIT;
    }
    if (!desc->comms) {
        msg_set(why, cap, "descriptor declares %u comms but its comm list is NULL", n);
        return NNM_E_PLUGIN;
    }
    c->comms = calloc(n, sizeof *c->comms);
    if (!c->comms) {
        msg_set(why, cap, "out of memory");
        return NNM_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const nnm_comm_vtable *src = desc->comms[i];
        if (!src) {
            msg_set(why, cap, "comm #%u: vtable pointer is NULL", i);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size < NNM__COMM_MIN) {
            msg_set(why, cap,
                    "comm #%u: vtable struct_size %u is too small; ABI %d.x needs at least %zu, "
                    "through 'wait'",
                    i, src->struct_size, NNM_ABI_MAJOR, (size_t)NNM__COMM_MIN);
            return NNM_E_PLUGIN;
        }
        if (src->struct_size > NNM__STRUCT_MAX) {
            msg_set(why, cap, "comm #%u: vtable struct_size %u is implausible", i,
                    src->struct_size);
            return NNM_E_PLUGIN;
        }
        nnm_comm_vtable *vt = &c->comms[i];
        size_t bytes = src->struct_size < sizeof *vt ? src->struct_size : sizeof *vt;
        memcpy(vt, src, bytes);
        vt->struct_size = src->struct_size;
        if (!entry_name_ok(vt->name, 1)) {
            if (vt->name)
                msg_set(why, cap, "comm #%u: invalid name '%.*s' (want 1 to %u of [a-z0-9_])", i,
                        (int)NNM__NAME_MAX, vt->name, NNM__NAME_MAX);
            else
                msg_set(why, cap, "comm #%u: name is NULL", i);
            return NNM_E_PLUGIN;
        }
        nnm__semver v = comm_version(vt);
        const char *missing = !vt->init               ? "init"
                              : !vt->shutdown         ? "shutdown"
                              : !vt->all_reduce_start ? "all_reduce_start"
                              : !vt->broadcast_start  ? "broadcast_start"
                              : !vt->all_gather_start ? "all_gather_start"
                              : !vt->barrier_start    ? "barrier_start"
                              : !vt->wait             ? "wait"
                                                      : NULL;
        if (missing) {
            msg_set(why, cap, "comm '%s' %u.%u.%u: required slot '%s' is NULL", vt->name,
                    v.major, v.minor, v.patch, missing);
            return NNM_E_PLUGIN;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->comms[j].name, vt->name) == 0 &&
                semver_cmp(comm_version(&c->comms[j]), v) == 0) {
                msg_set(why, cap, "comm '%s' %u.%u.%u is listed twice", vt->name, v.major,
                        v.minor, v.patch);
                return NNM_E_EXISTS;
            }
        }
        const nnm__plugin *other = registry_find_comm_exact(r, vt->name, v);
        if (other) {
            msg_set(why, cap, "comm '%s' %u.%u.%u is already provided by %s", vt->name, v.major,
                    v.minor, v.patch, other->path);
            return NNM_E_EXISTS;
        }
    }
    c->n_comms = n;
    return NNM_OK;
}

/* The whole handshake after the entry call. On failure writes the complete
 * message ("where: reason (plugin ABI x.y, runtime ABI a.b)") into msg and
 * frees what it allocated; on success c holds the normalised vtables. */
static nnm_status check_desc(const nnm__registry *r, const nnm_plugin_desc *desc,
                             const char *where, nnm__checked *c, char *msg, size_t cap) {
    memset(c, 0, sizeof *c);
    if (!desc) {
        msg_set(msg, cap, "%s: plugin refused runtime ABI %d.%d (its entry returned NULL)", where,
                NNM_ABI_MAJOR, NNM_ABI_MINOR);
        return NNM_E_VERSION;
    }
    if (desc->struct_size < offsetof(nnm_plugin_desc, name)) {
        msg_set(msg, cap,
                "%s: plugin descriptor struct_size %u is too small to hold an ABI version "
                "(runtime ABI %d.%d)",
                where, desc->struct_size, NNM_ABI_MAJOR, NNM_ABI_MINOR);
        return NNM_E_PLUGIN;
    }
    c->abi_major = desc->abi_major;
    c->abi_minor = desc->abi_minor;
    c->abi_known = 1;
    if (desc->abi_major != NNM_ABI_MAJOR) {
        msg_set(msg, cap,
                "%s: plugin ABI %u.%u is not compatible with runtime ABI %d.%d (major differs)",
                where, c->abi_major, c->abi_minor, NNM_ABI_MAJOR, NNM_ABI_MINOR);
        return NNM_E_VERSION;
    }

    char why[NNM__MSG_CAP];
    nnm_status st = NNM_OK;
    why[0] = '\0';
    if (desc->struct_size < NNM__DESC_MIN) {
        msg_set(why, sizeof why,
                "plugin descriptor struct_size %u is too small; ABI %d.x needs at least %zu",
                desc->struct_size, NNM_ABI_MAJOR, (size_t)NNM__DESC_MIN);
        st = NNM_E_PLUGIN;
    } else if (desc->struct_size > NNM__STRUCT_MAX) {
        msg_set(why, sizeof why, "plugin descriptor struct_size %u is implausible",
                desc->struct_size);
        st = NNM_E_PLUGIN;
    } else if (!desc->name || !desc->name[0]) {
        msg_set(why, sizeof why, "plugin descriptor has no name");
        st = NNM_E_PLUGIN;
    } else if (!text_ok(desc->name, NNM__PLUGIN_NAME_MAX, plugin_name_char)) {
        msg_set(why, sizeof why, "invalid plugin name (want 1 to %u of [A-Za-z0-9_.-])",
                NNM__PLUGIN_NAME_MAX);
        st = NNM_E_PLUGIN;
    } else if (desc->description && !text_ok(desc->description, NNM__DESCRIPTION_MAX, line_char) &&
               desc->description[0]) {
        msg_set(why, sizeof why, "invalid description (want at most %u bytes, no control characters)",
                NNM__DESCRIPTION_MAX);
        st = NNM_E_PLUGIN;
    } else if (desc->struct_size >= NNM__DESC_DOMAIN_END && desc->domain && desc->domain[0] &&
               !domain_ok(desc->domain)) {
        msg_set(why, sizeof why,
                "invalid domain '%.*s' (want 1 to %u bytes: segments of [a-z0-9_] joined by "
                "single dots, as \"acme\" or \"com.acme\")",
                (int)NNM__NAME_MAX, desc->domain, NNM__NAME_MAX);
        st = NNM_E_PLUGIN;
    } else {
        if (desc->struct_size >= NNM__DESC_DOMAIN_END && desc->domain && desc->domain[0])
            c->domain = desc->domain;
        st = check_layers(r, desc, c, why, sizeof why);
        if (st == NNM_OK) st = check_backends(r, desc, c, why, sizeof why);
        if (st == NNM_OK) st = check_comms(r, desc, c, why, sizeof why);
    }
    if (st != NNM_OK) {
        msg_set(msg, cap, "%s: %s (plugin ABI %u.%u, runtime ABI %d.%d)", where, why,
                c->abi_major, c->abi_minor, NNM_ABI_MAJOR, NNM_ABI_MINOR);
        checked_free(c);
        c->n_layers = c->n_backends = c->n_comms = 0;
    }
    return st;
}

/* Creates the usable record for a checked descriptor and appends it. Takes the
 * normalised vtables from c. On NNM_E_NOMEM nothing is kept and c is freed. */
static nnm_status record_loaded(nnm__registry *r, const char *path, void *dl,
                                const nnm_plugin_desc *desc, nnm__checked *c,
                                nnm__plugin **out) {
    nnm__plugin *p = calloc(1, sizeof *p);
    if (!p) {
        checked_free(c);
        return NNM_E_NOMEM;
    }
    p->path = str_dup(path);
    p->error = str_dup("");
    /* The domain: declared, or the plugin's name for one that declares none. */
    p->domain_declared = c->domain != NULL;
    p->domain = str_dup(c->domain ? c->domain : desc->name);
    p->builtin = c->domain && strcmp(c->domain, NNM_DOMAIN_NNMOD) == 0;
    p->n_layers = c->n_layers; /* for plugin_free of qnames */
    p->qnames = c->n_layers ? calloc(c->n_layers, sizeof *p->qnames) : NULL;
    int qn_ok = p->domain && (c->n_layers == 0 || p->qnames);
    for (uint32_t i = 0; qn_ok && i < c->n_layers; i++) {
        size_t len = strlen(p->domain) + 1 + strlen(c->layers[i].name) + 1;
        p->qnames[i] = malloc(len);
        if (!p->qnames[i]) qn_ok = 0;
        else snprintf(p->qnames[i], len, "%s.%s", p->domain, c->layers[i].name);
    }
    p->layers = c->layers;
    p->backends = c->backends;
    p->comms = c->comms;
    c->layers = NULL;
    c->backends = NULL;
    c->comms = NULL;
    if (!p->path || !p->error || !qn_ok || registry_push(r, p) != NNM_OK) {
        plugin_free(p); /* does not close dl: p->dl is still NULL */
        return NNM_E_NOMEM;
    }
    p->dl = dl;
    p->status = NNM_OK;
    p->desc = desc;
    p->abi_major = c->abi_major;
    p->abi_minor = c->abi_minor;
    p->n_layers = c->n_layers;
    p->n_backends = c->n_backends;
    p->n_comms = c->n_comms;
    p->refs = 1;
    if (out) *out = p;
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

nnm_status nnm__registry_load_file(nnm__registry *r, const char *path, nnm__plugin **out,
                                   char *err, size_t errcap) {
    char msg[NNM__MSG_CAP];
    if (out) *out = NULL;
    msg_set(err, errcap, "%s", "");
    if (!r || !path || !path[0]) {
        msg_set(err, errcap, "plugin path is %s", path ? "empty" : "NULL");
        return NNM_E_INVALID;
    }

    char *rp = realpath(path, NULL);
    const char *where = rp ? rp : path;

    /* Same file again: hand back the loaded record; retry a failed one. */
    for (uint32_t i = 0; i < r->count; i++) {
        nnm__plugin *p = r->items[i];
        if (strcmp(p->path, where) != 0) continue;
        if (p->status == NNM_OK && p->dl) {
            free(rp);
            if (out) *out = p;
            return NNM_OK;
        }
        if (p->status != NNM_OK) {
            registry_remove(r, i);
            break;
        }
    }

    nnm_status st;
    if (!rp) {
        int e = errno;
        msg_set(msg, sizeof msg, "%s: cannot open plugin (%s)", path, strerror(e));
        return record_failure(r, path, NULL, 0, 0, NNM_E_IO, msg, err, errcap);
    }
    struct stat sb;
    if (stat(rp, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        msg_set(msg, sizeof msg, "%s: not a regular file", rp);
        st = record_failure(r, rp, NULL, 0, 0, NNM_E_IO, msg, err, errcap);
        free(rp);
        return st;
    }

    (void)dlerror();
    void *dl = dlopen(rp, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *de = dlerror();
        if (!de) de = "unknown dlopen error";
        /* glibc starts with the path we already name: keep only its reason. */
        size_t rl = strlen(rp);
        if (strncmp(de, rp, rl) == 0 && de[rl] == ':' && de[rl + 1] == ' ') de += rl + 2;
        msg_set(msg, sizeof msg, "%s: not a loadable shared object (%s)", rp, de);
        st = record_failure(r, rp, NULL, 0, 0, NNM_E_LOAD, msg, err, errcap);
        free(rp);
        return st;
    }
    /* Another name for a file already loaded (a hard link): the dynamic linker
     * hands back the same handle. */
    for (uint32_t i = 0; i < r->count; i++) {
        if (r->items[i]->dl == dl && r->items[i]->status == NNM_OK) {
            dlclose(dl);
            free(rp);
            if (out) *out = r->items[i];
            return NNM_OK;
        }
    }

    (void)dlerror();
    void *sym = dlsym(dl, NNM_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        msg_set(msg, sizeof msg,
                "%s: no entry symbol '%s' (a plugin defines it with NNM_PLUGIN_DEFINE(desc), which "
                "also exports it from a build with -fvisibility=hidden)",
                rp, NNM_PLUGIN_ENTRY_SYMBOL);
        st = record_failure(r, rp, dl, 0, 0, NNM_E_LOAD, msg, err, errcap);
        free(rp);
        return st;
    }
    nnm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer (POSIX) */
    const nnm_plugin_desc *desc = entry((uint16_t)NNM_ABI_MAJOR, (uint16_t)NNM_ABI_MINOR);

    nnm__checked c;
    st = check_desc(r, desc, rp, &c, msg, sizeof msg);
    if (st != NNM_OK) {
        st = record_failure(r, rp, dl, c.abi_major, c.abi_minor, st, msg, err, errcap);
        free(rp);
        return st;
    }
    st = record_loaded(r, rp, dl, desc, &c, out);
    if (st != NNM_OK) {
        dlclose(dl);
        msg_set(err, errcap, "%s: out of memory while registering the plugin", rp);
    }
    free(rp);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_so_suffix(const char *name) {
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

nnm_status nnm__registry_load_dir(nnm__registry *r, const char *dir, uint32_t *n_loaded,
                                  char *err, size_t errcap) {
    if (n_loaded) *n_loaded = 0;
    msg_set(err, errcap, "%s", "");
    if (!r || !dir || !dir[0]) {
        msg_set(err, errcap, "plugin directory is %s", dir ? "empty" : "NULL");
        return NNM_E_INVALID;
    }
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        msg_set(err, errcap, "%s: cannot open plugin directory (%s)", dir, strerror(e));
        return NNM_E_IO;
    }
    size_t dlen = strlen(dir);
    const char *sep = dir[dlen - 1] == '/' ? "" : "/";
    char **paths = NULL;
    size_t n = 0, cap = 0;
    nnm_status st = NNM_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!has_so_suffix(de->d_name)) continue;
        size_t len = dlen + strlen(sep) + strlen(de->d_name) + 1;
        char *full = malloc(len);
        if (!full) {
            st = NNM_E_NOMEM;
            break;
        }
        snprintf(full, len, "%s%s%s", dir, sep, de->d_name);
        struct stat sb;
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) { /* follows symlinks */
            free(full);
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **np = realloc(paths, ncap * sizeof *np);
            if (!np) {
                free(full);
                st = NNM_E_NOMEM;
                break;
            }
            paths = np;
            cap = ncap;
        }
        paths[n++] = full;
    }
    closedir(d);
    if (st == NNM_OK) {
        if (n > 1) qsort(paths, n, sizeof *paths, cmp_str);
        uint32_t loaded = 0;
        int reported = 0;
        char one[NNM__MSG_CAP];
        for (size_t i = 0; i < n; i++) {
            if (nnm__registry_load_file(r, paths[i], NULL, one, sizeof one) == NNM_OK) {
                loaded++;
            } else if (!reported) { /* the first failure; all are in the list */
                msg_set(err, errcap, "%s", one);
                reported = 1;
            }
        }
        if (n_loaded) *n_loaded = loaded;
    } else {
        msg_set(err, errcap, "%s: out of memory while listing plugins", dir);
    }
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return st;
}

nnm_status nnm__registry_register_static(nnm__registry *r, const nnm_plugin_desc *desc,
                                         const char *origin, char *err, size_t errcap) {
    char msg[NNM__MSG_CAP];
    msg_set(err, errcap, "%s", "");
    if (!r || !desc) {
        msg_set(err, errcap, "static plugin: %s is NULL", r ? "descriptor" : "registry");
        return NNM_E_INVALID;
    }
    if (!origin || !origin[0]) origin = "<static>";
    for (uint32_t i = 0; i < r->count; i++) /* registering twice is harmless */
        if (r->items[i]->desc == desc && !r->items[i]->dl && r->items[i]->status == NNM_OK)
            return NNM_OK;
    nnm__checked c;
    nnm_status st = check_desc(r, desc, origin, &c, msg, sizeof msg);
    if (st != NNM_OK)
        return record_failure(r, origin, NULL, c.abi_major, c.abi_minor, st, msg, err, errcap);
    st = record_loaded(r, origin, NULL, desc, &c, NULL);
    if (st != NNM_OK) msg_set(err, errcap, "%s: out of memory while registering the plugin", origin);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Discovery                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct nnm__seen {
    char **dirs;
    size_t n, cap;
} nnm__seen;

/* Scans dir once per discovery: missing dirs and dirs already seen (by
 * realpath) are skipped. */
static void discover_dir(nnm__registry *r, nnm__seen *seen, const char *dir) {
    if (!dir || !dir[0]) return;
    char *rp = realpath(dir, NULL);
    if (!rp) return;
    struct stat sb;
    if (stat(rp, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        free(rp);
        return;
    }
    for (size_t i = 0; i < seen->n; i++) {
        if (strcmp(seen->dirs[i], rp) == 0) {
            free(rp);
            return;
        }
    }
    char err[NNM__MSG_CAP];
    (void)nnm__registry_load_dir(r, rp, NULL, err, sizeof err);
    if (seen->n == seen->cap) {
        size_t ncap = seen->cap ? seen->cap * 2 : 8;
        char **nd = realloc(seen->dirs, ncap * sizeof *nd);
        if (!nd) { /* cannot remember it: a repeat is deduplicated by file anyway */
            free(rp);
            return;
        }
        seen->dirs = nd;
        seen->cap = ncap;
    }
    seen->dirs[seen->n++] = rp;
}

/* "<dir of the object holding this code>/nnmod/plugins", malloc'd; NULL if
 * unknown. */
static char *beside_lib_dir(void) {
    void (*self_fn)(nnm__registry *, const char *, const char *) = nnm__registry_discover;
    void *addr;
    memcpy(&addr, &self_fn, sizeof addr);
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname || !info.dli_fname[0]) return NULL;
    /* For code in the main program glibc reports argv[0], which has no slash
     * when it was found through PATH. */
    char *obj = strchr(info.dli_fname, '/') ? realpath(info.dli_fname, NULL)
                                            : realpath("/proc/self/exe", NULL);
    if (!obj) return NULL;
    char *slash = strrchr(obj, '/');
    if (!slash) {
        free(obj);
        return NULL;
    }
    *slash = '\0';
    const char *base = obj[0] ? obj : "";
    size_t len = strlen(base) + 1 + sizeof NNM_PLUGIN_SUBDIR;
    char *dir = malloc(len);
    if (dir) snprintf(dir, len, "%s/%s", base, NNM_PLUGIN_SUBDIR);
    free(obj);
    return dir;
}

void nnm__registry_discover(nnm__registry *r, const char *env_path, const char *installed_dir) {
    if (!r) return;
    nnm__seen seen = {NULL, 0, 0};
    if (env_path && env_path[0]) {
        char *copy = str_dup(env_path);
        if (copy) {
            char *save = NULL;
            for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save))
                discover_dir(r, &seen, tok);
            free(copy);
        }
    }
    /* The plugins shipped beside this very libnnmod: a build tree (or a
     * relocated install) uses its own plugins. The installed dir is scanned
     * only where there is no such directory (installed, both are one
     * directory): another installation's copies of nnmod's library would
     * provide every name twice, and names are never settled by load order. */
    char *beside = beside_lib_dir();
    struct stat sb;
    int have_beside = beside && stat(beside, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (beside) {
        discover_dir(r, &seen, beside);
        free(beside);
    }
    if (!have_beside) discover_dir(r, &seen, installed_dir);
    for (size_t i = 0; i < seen.n; i++) free(seen.dirs[i]);
    free(seen.dirs);
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */
/* ------------------------------------------------------------------------ */

/* 1 when p is the provider a pin names: a path (with a '/') names the file
 * (by realpath), anything else the file's base name or the plugin's name. */
static int provider_matches(const nnm__plugin *p, const char *pin, const char *pin_real) {
    if (strchr(pin, '/')) return strcmp(p->path, pin_real ? pin_real : pin) == 0;
    const char *slash = strrchr(p->path, '/');
    const char *base = slash ? slash + 1 : p->path;
    return strcmp(base, pin) == 0 || (p->desc && p->desc->name && strcmp(p->desc->name, pin) == 0);
}

/* 1 when a plugin of nnmod's library (domain NNM_DOMAIN_NNMOD) provides a
 * layer named `name`: the plain name is then reserved for it. */
static int name_reserved(const nnm__registry *r, const char *name) {
    for (uint32_t i = 0; i < r->count; i++) {
        const nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK || !p->builtin) continue;
        for (uint32_t j = 0; j < p->n_layers; j++)
            if (strcmp(p->layers[j].name, name) == 0) return 1;
    }
    return 0;
}

/* 1 when layer j of p is one the request's name reaches (version not checked). */
static int name_reaches(const nnm__plugin *p, uint32_t j, const nnm__version_req *req,
                        int reserved) {
    if (strcmp(p->layers[j].name, req->name) != 0) return 0;
    if (req->domain[0]) /* the reserved domain is only ever nnmod's, declared */
        return p->domain && strcmp(p->domain, req->domain) == 0 &&
               (p->builtin || strcmp(req->domain, NNM_DOMAIN_NNMOD) != 0);
    if (req->provider) return 1; /* a pin names the file: its layer of that name */
    return reserved ? p->builtin : !p->domain_declared;
}

nnm_status nnm__registry_find_layer(const nnm__registry *r, const char *request,
                                    const nnm_layer_vtable **vt, nnm__plugin **owner,
                                    char *err, size_t errcap) {
    if (vt) *vt = NULL;
    if (owner) *owner = NULL;
    if (err && errcap) err[0] = 0; /* every module create passes here: no printf */
    if (!r || !request || !vt) {
        msg_set(err, errcap, "layer lookup: %s is NULL", !request ? "request" : "argument");
        return NNM_E_INVALID;
    }
    nnm__version_req req;
    if (nnm__version_req_parse(request, &req) != NNM_OK) {
        msg_set(err, errcap,
                "malformed layer request '%.*s' (expected [domain.]name[@spec][#provider]: name "
                "of [a-z0-9_], spec 1.2.3, =1.2, ^1.2, ~1.2, >=1.2 or *)",
                200, request);
        return NNM_E_INVALID;
    }
    const int reserved = !req.domain[0] && !req.provider && name_reserved(r, req.name);
    char *pin_real = req.provider && strchr(req.provider, '/') ? realpath(req.provider, NULL) : NULL;

    const nnm_layer_vtable *best = NULL;
    nnm__plugin *best_owner = NULL, *tie_owner = NULL;
    for (uint32_t i = 0; i < r->count; i++) {
        nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) continue;
        if (req.provider && !provider_matches(p, req.provider, pin_real)) continue;
        for (uint32_t j = 0; j < p->n_layers; j++) {
            if (!name_reaches(p, j, &req, reserved)) continue;
            const nnm_layer_vtable *l = &p->layers[j];
            nnm__semver v = layer_version(l);
            if (!nnm__version_matches(&req, v)) continue;
            int c = best ? semver_cmp(v, layer_version(best)) : 1;
            if (c > 0) {
                best = l;
                best_owner = p;
                tie_owner = NULL;
            } else if (c == 0 && p != best_owner && !tie_owner) {
                tie_owner = p;
            }
        }
    }
    free(pin_real);
    char shown[200]; /* the name as asked, without spec or pin */
    if (req.domain[0])
        snprintf(shown, sizeof shown, "%s.%s", req.domain, req.name);
    else
        snprintf(shown, sizeof shown, "%s", req.name);
    if (best && tie_owner) {
        nnm__semver v = layer_version(best);
        /* The pin suggested must settle it: the file name, unless both files
         * have the same one (an installed copy beside its build directory's),
         * then the path. A qualified request needs nothing but the pin. */
        const char *slash = strrchr(best_owner->path, '/');
        const char *tslash = strrchr(tie_owner->path, '/');
        const char *base = slash ? slash + 1 : best_owner->path;
        const char *tbase = tslash ? tslash + 1 : tie_owner->path;
        const char *pin = strcmp(base, tbase) != 0 ? base : best_owner->path;
        msg_set(err, errcap,
                "'%.*s' is ambiguous: layer '%s' %u.%u.%u is provided by %s and by %s; %spin a "
                "provider ('%s@%u.%u.%u#%s')",
                200, request, req.name, v.major, v.minor, v.patch, best_owner->path,
                tie_owner->path, req.domain[0] ? "" : "ask for a qualified name or ", shown,
                v.major, v.minor, v.patch, pin);
        return NNM_E_EXISTS;
    }
    if (best) {
        *vt = best;
        if (owner) *owner = best_owner;
        return NNM_OK;
    }

    /* Say what is there: the versions the name reaches, ascending,
     * deduplicated; then the other providers of a layer of that name. */
    enum { SHOW = 32 };
    nnm__semver have[SHOW];
    size_t n_have = 0, n_more = 0;
    uint32_t n_failed = 0;
    pin_real = req.provider && strchr(req.provider, '/') ? realpath(req.provider, NULL) : NULL;
    for (uint32_t i = 0; i < r->count; i++) {
        const nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) {
            n_failed++;
            continue;
        }
        if (req.provider && !provider_matches(p, req.provider, pin_real)) continue;
        for (uint32_t j = 0; j < p->n_layers; j++) {
            if (!name_reaches(p, j, &req, reserved)) continue;
            nnm__semver v = layer_version(&p->layers[j]);
            size_t k = 0;
            while (k < n_have && semver_cmp(have[k], v) < 0) k++;
            if (k < n_have && semver_cmp(have[k], v) == 0) continue;
            if (n_have == SHOW) {
                n_more++;
                if (k == SHOW) continue;
                n_have--; /* keep the lowest SHOW */
            }
            memmove(&have[k + 1], &have[k], (n_have - k) * sizeof *have);
            have[k] = v;
            n_have++;
        }
    }
    free(pin_real);
    char buf[NNM__MSG_CAP];
    size_t len = 0;
    buf[0] = '\0';
    if (n_have == 0) {
        msg_append(buf, sizeof buf, &len, "no layer named '%s' is loaded", shown);
        if (req.provider)
            msg_append(buf, sizeof buf, &len, " from provider '%.*s'", 200, req.provider);
        if (n_failed)
            msg_append(buf, sizeof buf, &len, " (%u plugin file%s failed to load)", n_failed,
                       n_failed == 1 ? "" : "s");
    } else {
        const char *at = strchr(request, '@');
        const char *hash = strchr(request, '#');
        int spec_len = at && (!hash || at < hash) ? (int)(hash ? hash - at - 1 : 64) : 1;
        if (spec_len > 64) spec_len = 64;
        msg_append(buf, sizeof buf, &len, "no layer '%s' matches %.*s (have ", shown, spec_len,
                   at && (!hash || at < hash) ? at + 1 : "*");
        for (size_t k = 0; k < n_have; k++)
            msg_append(buf, sizeof buf, &len, "%s%u.%u.%u", k ? ", " : "", have[k].major,
                       have[k].minor, have[k].patch);
        if (n_more) msg_append(buf, sizeof buf, &len, ", ...");
        msg_append(buf, sizeof buf, &len, ")");
    }
    /* Other providers of a layer of that name, by the names that reach them. */
    uint32_t n_other = 0;
    for (uint32_t i = 0; i < r->count && n_other < 8; i++) {
        const nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) continue;
        for (uint32_t j = 0; j < p->n_layers && n_other < 8; j++) {
            const nnm_layer_vtable *l = &p->layers[j];
            if (strcmp(l->name, req.name) != 0 || name_reaches(p, j, &req, reserved)) continue;
            if (req.provider) continue; /* a pin already says which file */
            msg_append(buf, sizeof buf, &len, "%s%s %u.%u.%u (%s)",
                       n_other ? ", " : "; also loaded: ", p->qnames[j], l->version_major,
                       l->version_minor, l->version_patch, p->path);
            n_other++;
        }
    }
    msg_set(err, errcap, "%s", buf);
    return NNM_E_NOT_FOUND;
}

void nnm__registry_request_name(const nnm__registry *r, const nnm__plugin *owner,
                                const nnm_layer_vtable *vt, char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    buf[0] = '\0';
    if (!r || !owner || !vt) return;
    uint32_t j = (uint32_t)(vt - owner->layers);
    if (vt < owner->layers || j >= owner->n_layers) {
        msg_set(buf, cap, "%s", vt->name);
        return;
    }
    char req[160];
    snprintf(req, sizeof req, "%s@=%u.%u.%u", vt->name, vt->version_major, vt->version_minor,
             vt->version_patch);
    const nnm_layer_vtable *found = NULL;
    if (nnm__registry_find_layer(r, req, &found, NULL, NULL, 0) == NNM_OK && found == vt)
        msg_set(buf, cap, "%s", vt->name);
    else
        msg_set(buf, cap, "%s", owner->qnames[j]);
}

uint32_t nnm__registry_layer_flags(const nnm__registry *r, const nnm__plugin *p, uint32_t j) {
    if (!r || !p || p->status != NNM_OK || j >= p->n_layers) return 0;
    uint32_t f = 0;
    if (p->domain_declared) f |= NNM__LF_DECLARED;
    if (p->builtin) f |= NNM__LF_BUILTIN;
    int reserved = name_reserved(r, p->layers[j].name);
    if (p->builtin) f |= NNM__LF_PLAIN;
    else if (!p->domain_declared) f |= reserved ? NNM__LF_SHADOWED : NNM__LF_PLAIN;
    return f;
}

nnm_status nnm__registry_find_backend(const nnm__registry *r, int32_t device_type,
                                      const nnm_backend_vtable **vt, nnm__plugin **owner,
                                      char *err, size_t errcap) {
    if (vt) *vt = NULL;
    if (owner) *owner = NULL;
    if (err && errcap) err[0] = 0;
    if (!r || !vt) {
        msg_set(err, errcap, "backend lookup: argument is NULL");
        return NNM_E_INVALID;
    }
    const nnm_backend_vtable *best = NULL;
    nnm__plugin *best_owner = NULL;
    for (uint32_t i = 0; i < r->count; i++) {
        nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) continue;
        for (uint32_t j = 0; j < p->n_backends; j++) {
            const nnm_backend_vtable *b = &p->backends[j];
            if (b->device_type != device_type) continue;
            if (!best || semver_cmp(backend_version(b), backend_version(best)) > 0) {
                best = b;
                best_owner = p;
            }
        }
    }
    if (!best) {
        msg_set(err, errcap, "no backend for device type %d (%s) is loaded", (int)device_type,
                nnm__device_type_name(device_type));
        return NNM_E_NOT_FOUND;
    }
    *vt = best;
    if (owner) *owner = best_owner;
    return NNM_OK;
}

nnm_status nnm__registry_find_comm(const nnm__registry *r, const char *request,
                                   const nnm_comm_vtable **vt, nnm__plugin **owner, char *err,
                                   size_t errcap) {
    if (vt) *vt = NULL;
    if (owner) *owner = NULL;
    msg_set(err, errcap, "%s", "");
    if (!r || !request || !vt) {
        msg_set(err, errcap, "comm lookup: %s is NULL", !request ? "request" : "argument");
        return NNM_E_INVALID;
    }
    nnm__version_req req;
    if (nnm__version_req_parse(request, &req) != NNM_OK || req.domain[0] || req.provider) {
        msg_set(err, errcap, "malformed comm request '%.*s' (expected name[@spec], e.g. mpi)",
                200, request);
        return NNM_E_INVALID;
    }
    const nnm_comm_vtable *best = NULL;
    nnm__plugin *best_owner = NULL;
    uint32_t n_failed = 0;
    for (uint32_t i = 0; i < r->count; i++) {
        nnm__plugin *p = r->items[i];
        if (p->status != NNM_OK) {
            n_failed++;
            continue;
        }
        for (uint32_t j = 0; j < p->n_comms; j++) {
            const nnm_comm_vtable *c = &p->comms[j];
            if (strcmp(c->name, req.name) != 0) continue;
            nnm__semver v = comm_version(c);
            if (!nnm__version_matches(&req, v)) continue;
            if (!best || semver_cmp(v, comm_version(best)) > 0) {
                best = c;
                best_owner = p;
            }
        }
    }
    if (!best) {
        msg_set(err, errcap, "no comm plugin named '%s' is loaded (nnm_comm_%s.so)%s", req.name,
                req.name, n_failed ? "; some plugin files failed to load" : "");
        return NNM_E_NOT_FOUND;
    }
    *vt = best;
    if (owner) *owner = best_owner;
    return NNM_OK;
}
