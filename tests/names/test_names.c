/* tests/names/test_names.c - layer names shared with strangers (issue 20).
 *
 * The scenario of the issue: a plugin written for nnmod 0.2 (frozen ABI 1.2
 * headers) provides `gelu` and `layer_norm`, which nnmod's own library gained
 * later. It loads beside nnm_activations.so; the plain names stay nnmod's, its
 * layers answer to "acme_old.gelu" or to a pin, and a plugin that declares a
 * domain (ABI 1.5, "acme") is reached by qualified names with version
 * ranges. Ties between files are refused when a layer is asked for, naming
 * both files, whether the files were discovered or loaded explicitly.
 */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

#define TU_CTX g_ctx
static nnm_ctx *g_ctx;

#define FX NNM_NAMES_FX_DIR "/"
#define FXM NNM_NAMES_FX_MORE_DIR "/"
#define PL NNM_NAMES_PLUGIN_DIR "/"

/* A context without discovery holding nnmod's cpu backend and, when
 * `with_nnmod`, its activations and normalization plugins. */
static nnm_ctx *ctx_with(int with_nnmod) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(&o, &ctx) != NNM_OK) return NULL;
    if (nnm_plugin_load(ctx, PL "nnm_cpu.so") != NNM_OK) goto fail;
    if (nnm_plugin_load(ctx, PL "nnm_sequential.so") != NNM_OK) goto fail;
    if (with_nnmod && (nnm_plugin_load(ctx, PL "nnm_activations.so") != NNM_OK ||
                       nnm_plugin_load(ctx, PL "nnm_normalization.so") != NNM_OK))
        goto fail;
    return ctx;
fail:
    fprintf(stderr, "ctx_with: %s\n", nnm_ctx_errmsg(ctx));
    nnm_ctx_free(ctx);
    return NULL;
}

/* y[0] of the module made from `request` on x = [1.0]; NAN when it fails. */
static float one(nnm_ctx *ctx, const char *request, const nnm_config *cfg) {
    nnm_module *m = NULL;
    nnm_tensor *x = NULL, *y = NULL;
    float out = NAN;
    const float one_f = 1.0f;
    if (nnm_module_create(ctx, request, cfg, &m) == NNM_OK &&
        nnm_tensor_from_f32(ctx, 1, (int64_t[]){1}, &one_f, &x) == NNM_OK &&
        nnm_module_call(m, &x, 1, &y, 1) == NNM_OK)
        nnm_tensor_to_f32(y, &out, 1);
    else
        fprintf(stderr, "\n  one(%s): %s\n", request, nnm_ctx_errmsg(ctx));
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    return out;
}

static int near(float a, float b) { return fabsf(a - b) < 1e-4f; }

/* Flags and qualified name of the layer `qname` at version major `maj`;
 * returns 0 when no record has it. */
static int layer_info(nnm_ctx *ctx, const char *qname, uint32_t maj, nnm_layer_info *out,
                      const char **path) {
    for (uint32_t i = 0; i < nnm_plugin_count(ctx); i++) {
        nnm_plugin_info pi = {sizeof pi};
        if (nnm_plugin_info_get(ctx, i, &pi) != NNM_OK) continue;
        for (uint32_t j = 0; j < pi.n_layers; j++) {
            nnm_layer_info li = {sizeof li};
            if (nnm_plugin_layer_info(ctx, i, j, &li) == NNM_OK &&
                strcmp(li.qualified_name, qname) == 0 && li.version_major == maj) {
                *out = li;
                if (path) *path = pi.path;
                return 1;
            }
        }
    }
    return 0;
}

static const float GELU1 = 0.8413447f; /* nnmod's gelu(1) */

/* ---- the issue's scenario ----------------------------------------------- */

static void test_old_plugin_beside_nnmod(void) {
    g_ctx = ctx_with(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    /* It loads: no more "layer 'gelu' 1.0.0 is already provided by ...". */
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme_old.so"), NNM_OK);
    for (uint32_t i = 0; i < nnm_plugin_count(g_ctx); i++) {
        nnm_plugin_info pi = {sizeof pi};
        CU_ASSERT_EQUAL(nnm_plugin_info_get(g_ctx, i, &pi), NNM_OK);
        CU_ASSERT_EQUAL(pi.status, NNM_OK);
    }
    /* The plain names are nnmod's library's... */
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), GELU1));
    CU_ASSERT(near(one(g_ctx, "gelu@^1", NULL), GELU1));
    CU_ASSERT(near(one(g_ctx, "nnmod.gelu", NULL), GELU1));
    nnm_config *cfg;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&cfg), NNM_OK);
    nnm_config_set_ints(cfg, "normalized_shape", (int64_t[]){1}, 1);
    CU_ASSERT(near(one(g_ctx, "layer_norm", cfg), 0.0f)); /* nnmod's: (x - mean) / std */
    nnm_config_free(cfg);
    /* ...the old plugin's answer to its qualified name (its plugin name is
     * its domain) and to a pin: file name, plugin name or path. */
    CU_ASSERT(near(one(g_ctx, "acme_old.gelu", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "acme_old.layer_norm@^1", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "gelu#nnm_names_acme_old.so", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "gelu@1.0.0#acme_old", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "layer_norm#" FX "nnm_names_acme_old.so", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "gelu#nnm_activations.so", NULL), GELU1));

    /* What the listing says about both. */
    nnm_layer_info li;
    const char *path = NULL;
    CU_ASSERT_FATAL(layer_info(g_ctx, "acme_old.gelu", 1, &li, &path));
    CU_ASSERT_STRING_EQUAL(li.name, "gelu");
    CU_ASSERT_STRING_EQUAL(li.domain, "acme_old");
    CU_ASSERT_EQUAL(li.flags, NNM_LAYER_INFO_SHADOWED);
    CU_ASSERT(strstr(path, "nnm_names_acme_old.so") != NULL);
    CU_ASSERT_FATAL(layer_info(g_ctx, "nnmod.gelu", 1, &li, &path));
    CU_ASSERT_EQUAL(li.flags, NNM_LAYER_INFO_BUILTIN | NNM_LAYER_INFO_PLAIN |
                                  NNM_LAYER_INFO_DECLARED);
    CU_ASSERT(strstr(path, "nnm_activations.so") != NULL);

    /* A plain request nnmod cannot serve points at the other provider. */
    CHECK_ERROR(nnm_layer_find(g_ctx, "gelu@^2", &(const nnm_layer_vtable *){NULL}),
                NNM_E_NOT_FOUND, "also loaded: acme_old.gelu 1.0.0 (");
    CHECK_ERROR(nnm_layer_find(g_ctx, "gelu#nnm_no_such.so", &(const nnm_layer_vtable *){NULL}),
                NNM_E_NOT_FOUND, "from provider 'nnm_no_such.so'");
    CHECK_ERROR(nnm_layer_find(g_ctx, "gelu#", &(const nnm_layer_vtable *){NULL}),
                NNM_E_INVALID, "[domain.]name[@spec][#provider]");
    tu_ctx_free(&g_ctx);
}

/* Without nnmod's own gelu, the plain name reaches the plugins that declare
 * no domain, by the same version rule. */
static void test_plain_names_of_old_plugins(void) {
    g_ctx = ctx_with(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme_old.so"), NNM_OK);
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), 3.0f));
    nnm_layer_info li;
    CU_ASSERT_FATAL(layer_info(g_ctx, "acme_old.gelu", 1, &li, NULL));
    CU_ASSERT_EQUAL(li.flags, NNM_LAYER_INFO_PLAIN);
    /* A second vendor's gelu 1.0.0: the plain name is now ambiguous, and the
     * message names both files; qualified names and pins still work. */
    CHECK_STATUS(nnm_plugin_load(g_ctx, FXM "nnm_names_other_old.so"), NNM_OK);
    CHECK_ERROR(nnm_layer_find(g_ctx, "gelu", &(const nnm_layer_vtable *){NULL}), NNM_E_EXISTS,
                "'gelu' is ambiguous: layer 'gelu' 1.0.0 is provided by ");
    CHECK_MSG("nnm_names_acme_old.so");
    CHECK_MSG("nnm_names_other_old.so");
    CHECK_MSG("pin a provider");
    CU_ASSERT(near(one(g_ctx, "other_old.gelu", NULL), 11.0f));
    CU_ASSERT(near(one(g_ctx, "gelu#other_old", NULL), 11.0f));
    CU_ASSERT(near(one(g_ctx, "old_only", NULL), 13.0f));
    tu_ctx_free(&g_ctx);
}

/* ---- qualified names ---------------------------------------------------- */

static void test_declared_domain(void) {
    g_ctx = ctx_with(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme.so"), NNM_OK);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme_old.so"), NNM_OK);
    /* The range picks; the highest match wins. */
    CU_ASSERT(near(one(g_ctx, "acme.gelu", NULL), 7.0f));
    CU_ASSERT(near(one(g_ctx, "acme.gelu@^1", NULL), 5.0f));
    CU_ASSERT(near(one(g_ctx, "acme.gelu@>=1.5", NULL), 7.0f));
    CU_ASSERT(near(one(g_ctx, "acme.layer_norm", NULL), 5.0f));
    CHECK_ERROR(nnm_layer_find(g_ctx, "acme.gelu@3", &(const nnm_layer_vtable *){NULL}),
                NNM_E_NOT_FOUND, "no layer 'acme.gelu' matches 3 (have 1.0.0, 2.0.0)");
    /* A declared domain replaces the plugin name, and opts out of plain names. */
    CHECK_ERROR(nnm_layer_find(g_ctx, "acme_layers.gelu", &(const nnm_layer_vtable *){NULL}),
                NNM_E_NOT_FOUND, "no layer named 'acme_layers.gelu' is loaded");
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), GELU1));
    CU_ASSERT(near(one(g_ctx, "gelu@2#acme_layers", NULL), 7.0f)); /* a pin reaches it */
    nnm_layer_info li;
    CU_ASSERT_FATAL(layer_info(g_ctx, "acme.gelu", 2, &li, NULL));
    CU_ASSERT_EQUAL(li.flags, NNM_LAYER_INFO_DECLARED);
    CU_ASSERT_STRING_EQUAL(li.domain, "acme");
    CU_ASSERT_EQUAL(li.version_major, 2);
    /* Out of range and on failed records. */
    nnm_layer_info bad = {sizeof bad};
    CU_ASSERT_EQUAL(nnm_plugin_layer_info(g_ctx, 999, 0, &bad), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_plugin_layer_info(g_ctx, 0, 999, &bad), NNM_E_NOT_FOUND);
    bad.struct_size = 4;
    CU_ASSERT_EQUAL(nnm_plugin_layer_info(g_ctx, 0, 0, &bad), NNM_E_INVALID);
    tu_ctx_free(&g_ctx);
}

/* The same plugin in two files: every acme name has two providers of each
 * version. Loading both succeeds; asking is refused naming both files, and
 * a pin settles it. */
static void test_same_version_two_files(void) {
    g_ctx = ctx_with(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme.so"), NNM_OK);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FXM "nnm_names_acme_copy.so"), NNM_OK);
    CHECK_ERROR(nnm_layer_find(g_ctx, "acme.gelu", &(const nnm_layer_vtable *){NULL}),
                NNM_E_EXISTS, "'acme.gelu' is ambiguous: layer 'gelu' 2.0.0 is provided by ");
    CHECK_MSG(FX "nnm_names_acme.so");
    CHECK_MSG(FXM "nnm_names_acme_copy.so");
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, "acme.gelu@^1", NULL, &m), NNM_E_EXISTS, "1.0.0");
    CHECK_MSG("pin a provider ('acme.gelu@1.0.0#nnm_names_acme");
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(near(one(g_ctx, "acme.gelu#nnm_names_acme_copy.so", NULL), 7.0f));
    CU_ASSERT(near(one(g_ctx, "acme.gelu@1#" FX "nnm_names_acme.so", NULL), 5.0f));
    /* The plugin name is in both files: that pin is no better. */
    CHECK_ERROR(nnm_layer_find(g_ctx, "acme.gelu#acme_layers", &(const nnm_layer_vtable *){NULL}),
                NNM_E_EXISTS, "is ambiguous");
    /* nnmod's names are untouched. */
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), GELU1));
    tu_ctx_free(&g_ctx);
}

static void test_bad_domain(void) {
    g_ctx = ctx_with(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_ERROR(nnm_plugin_load(g_ctx, FXM "nnm_names_baddom.so"), NNM_E_PLUGIN,
                "invalid domain 'Acme'");
    static const nnm_plugin_desc dots = {.struct_size = sizeof(nnm_plugin_desc),
                                         .abi_major = NNM_ABI_MAJOR,
                                         .abi_minor = NNM_ABI_MINOR,
                                         .name = "dots",
                                         .domain = "a..b"};
    CHECK_ERROR(nnm_plugin_register_static(g_ctx, &dots, "app"), NNM_E_PLUGIN,
                "app: invalid domain 'a..b'");
    static const nnm_plugin_desc empty = {.struct_size = sizeof(nnm_plugin_desc),
                                          .abi_major = NNM_ABI_MAJOR,
                                          .abi_minor = NNM_ABI_MINOR,
                                          .name = "empty_domain",
                                          .domain = ""}; /* "" declares none */
    CHECK_STATUS(nnm_plugin_register_static(g_ctx, &empty, "app"), NNM_OK);
    tu_ctx_free(&g_ctx);
}

/* ---- discovery and explicit loads follow one rule ------------------------ */

static void test_discovered_and_explicit(void) {
    const char *old = getenv("NNM_PLUGIN_PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("NNM_PLUGIN_PATH", NNM_NAMES_FX_DIR, 1);
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &g_ctx), NNM_OK); /* + the dir beside libnnmod */
    if (saved) setenv("NNM_PLUGIN_PATH", saved, 1);
    else unsetenv("NNM_PLUGIN_PATH");
    free(saved);
    /* Discovered: nnmod's library, acme_old and acme all loaded. */
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), GELU1));
    CU_ASSERT(near(one(g_ctx, "acme_old.gelu", NULL), 3.0f));
    CU_ASSERT(near(one(g_ctx, "acme.gelu@^1", NULL), 5.0f));
    /* An explicit load joins the same pool: now acme.gelu has two files. */
    CHECK_STATUS(nnm_plugin_load(g_ctx, FXM "nnm_names_acme_copy.so"), NNM_OK);
    CHECK_ERROR(nnm_layer_find(g_ctx, "acme.gelu@^1", &(const nnm_layer_vtable *){NULL}),
                NNM_E_EXISTS, "nnm_names_acme_copy.so");
    CU_ASSERT(near(one(g_ctx, "gelu", NULL), GELU1));
    tu_ctx_free(&g_ctx);
}

/* ---- manifests: qualified types, pins, round trips ----------------------- */

#define HDR "\"format\": \"nnmod.manifest\", \"version\": 1, "

static float build_one(const char *json) {
    nnm_manifest *mf = NULL;
    nnm_module *root = NULL;
    nnm_tensor *x = NULL, *y = NULL;
    float out = NAN;
    const float one_f = 1.0f;
    if (nnm_manifest_parse(g_ctx, json, strlen(json), NNM_MANIFEST_JSON, NULL, NULL, &mf) ==
            NNM_OK &&
        nnm_manifest_build(mf, 0, &root) == NNM_OK &&
        nnm_tensor_from_f32(g_ctx, 1, (int64_t[]){1}, &one_f, &x) == NNM_OK &&
        nnm_module_call(root, &x, 1, &y, 1) == NNM_OK)
        nnm_tensor_to_f32(y, &out, 1);
    else
        fprintf(stderr, "\n  build_one: %s\n", nnm_ctx_errmsg(g_ctx));
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(root);
    nnm_manifest_free(mf);
    return out;
}

static void test_manifests(void) {
    g_ctx = ctx_with(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme.so"), NNM_OK);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme_old.so"), NNM_OK);
    /* Each provider by its qualified name, in one tree: 1 -> nnmod's gelu ->
     * x3 (acme_old) -> x5 (acme 1.x). */
    const char *seq = "{" HDR
        "\"plugins\": {\"sequential\": \"^1\", \"gelu\": \"^1\", \"acme_old.gelu\": \"^1\", "
        "\"acme.gelu\": \"^1\"}, \"root\": {\"type\": \"sequential\", \"children\": ["
        "{\"type\": \"gelu\"}, {\"type\": \"acme_old.gelu\"}, {\"type\": \"acme.gelu\"}]}}";
    CU_ASSERT(near(build_one(seq), GELU1 * 15.0f));
    /* A range picks among the versions of one qualified name. */
    CU_ASSERT(near(build_one("{" HDR "\"plugins\": {\"acme.gelu\": \">=2\"}, "
                             "\"root\": {\"type\": \"acme.gelu\"}}"), 7.0f));
    /* A pin: the map form. */
    const char *pinned = "{" HDR "\"plugins\": {\"gelu\": {\"version\": \"^1\", \"provider\": "
                         "\"nnm_names_acme_old.so\"}}, \"root\": {\"type\": \"gelu\"}}";
    CU_ASSERT(near(build_one(pinned), 3.0f));
    /* It survives a round trip (JSON and msgpack) and changes the hash. */
    nnm_manifest *mf = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_manifest_parse(g_ctx, pinned, strlen(pinned), NNM_MANIFEST_JSON,
                                             NULL, NULL, &mf), NNM_OK);
    void *buf = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(nnm_manifest_write(mf, NNM_MANIFEST_JSON, &buf, &len), NNM_OK);
    char *text = malloc(len + 1);
    memcpy(text, buf, len);
    text[len] = 0;
    CU_ASSERT(strstr(text, "\"provider\": \"nnm_names_acme_old.so\"") != NULL ||
              strstr(text, "\"provider\":\"nnm_names_acme_old.so\"") != NULL);
    CU_ASSERT(near(build_one(text), 3.0f));
    free(text);
    nnm_free(buf);
    CU_ASSERT_EQUAL(nnm_manifest_write(mf, NNM_MANIFEST_MSGPACK, &buf, &len), NNM_OK);
    nnm_manifest *back = NULL;
    CU_ASSERT_EQUAL(nnm_manifest_parse(g_ctx, buf, len, NNM_MANIFEST_MSGPACK, NULL, NULL, &back),
                    NNM_OK);
    char h1[65], h2[65];
    CU_ASSERT_EQUAL(nnm_manifest_hash(mf, h1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_manifest_hash(back, h2), NNM_OK);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    nnm_manifest_free(back);
    nnm_free(buf);
    nnm_manifest_free(mf);

    /* Refusals name the document path. */
    nnm_manifest *bad = NULL;
    const char *j1 = "{" HDR "\"plugins\": {\"gelu\": {\"version\": \"^1\", \"from\": \"x\"}}, "
                     "\"root\": {\"type\": \"gelu\"}}";
    CHECK_ERROR(nnm_manifest_parse(g_ctx, j1, strlen(j1), NNM_MANIFEST_JSON, NULL, NULL, &bad),
                NNM_E_INVALID, "plugins.gelu");
    const char *j2 = "{" HDR "\"plugins\": {\"gelu\": {\"provider\": 3}}, "
                     "\"root\": {\"type\": \"gelu\"}}";
    CHECK_ERROR(nnm_manifest_parse(g_ctx, j2, strlen(j2), NNM_MANIFEST_JSON, NULL, NULL, &bad),
                NNM_E_TYPE, "plugins.gelu.provider: expected a non-empty string");
    const char *j3 = "{" HDR "\"plugins\": {\"Acme.gelu@1\": \"^1\"}, "
                     "\"root\": {\"type\": \"gelu\"}}";
    CHECK_ERROR(nnm_manifest_parse(g_ctx, j3, strlen(j3), NNM_MANIFEST_JSON, NULL, NULL, &bad),
                NNM_E_INVALID, "is not a layer type name");
    CHECK_STATUS(nnm_plugin_load(g_ctx, FXM "nnm_names_acme_copy.so"), NNM_OK);
    const char *j4 = "{" HDR "\"plugins\": {\"acme.gelu\": \"^1\"}, "
                     "\"root\": {\"type\": \"acme.gelu\"}}";
    CHECK_ERROR(nnm_manifest_parse(g_ctx, j4, strlen(j4), NNM_MANIFEST_JSON, NULL, NULL, &bad),
                NNM_E_EXISTS, "plugins.acme.gelu: 'acme.gelu@^1' is ambiguous");
    CU_ASSERT_PTR_NULL(bad);
    tu_ctx_free(&g_ctx);
}

/* nnm_manifest_from_module writes the name that reaches each module's layer. */
static void test_from_module_names(void) {
    g_ctx = ctx_with(1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_ctx);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme.so"), NNM_OK);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FX "nnm_names_acme_old.so"), NNM_OK);
    CHECK_STATUS(nnm_plugin_load(g_ctx, FXM "nnm_names_other_old.so"), NNM_OK);
    nnm_module *seq = NULL, *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "sequential", NULL, &seq), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "gelu", NULL, &a), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "acme_old.gelu", NULL, &b), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "acme.gelu@1", NULL, &c), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "old_only", NULL, &d), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, a), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, b), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, c), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, d), NNM_OK);
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_from_module(seq, &mf), NNM_OK);
    const char *names[8] = {0};
    uint32_t n = nnm_manifest_plugin_count(mf);
    CU_ASSERT_EQUAL(n, 5);
    for (uint32_t i = 0; i < n && i < 8; i++) nnm_manifest_plugin(mf, i, &names[i], NULL, NULL);
    int seen[4] = {0};
    for (uint32_t i = 0; i < n && i < 8; i++) {
        if (strcmp(names[i], "gelu") == 0) seen[0]++;
        if (strcmp(names[i], "acme_old.gelu") == 0) seen[1]++;
        if (strcmp(names[i], "acme.gelu") == 0) seen[2]++;
        if (strcmp(names[i], "old_only") == 0) seen[3]++;
    }
    CU_ASSERT(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    /* ...and it rebuilds the same tree: 1 -> gelu -> x3 -> x5 -> x13. */
    nnm_module *again = NULL;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &again), NNM_OK);
    nnm_tensor *x = NULL, *y = NULL;
    const float one_f = 1.0f;
    float out = 0;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, 1, (int64_t[]){1}, &one_f, &x), NNM_OK);
    CHECK_STATUS(nnm_module_call(again, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_to_f32(y, &out, 1);
    CU_ASSERT(near(out, GELU1 * 3.0f * 5.0f * 13.0f));
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(again);
    nnm_manifest_free(mf);
    nnm_module_release(seq);
    nnm_module_release(a);
    nnm_module_release(b);
    nnm_module_release(c);
    nnm_module_release(d);
    tu_ctx_free(&g_ctx);
}

int main(void) {
    CU_pSuite s = tu_suite("names", NULL, NULL);
    if (!s) return 1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"old_plugin_beside_nnmod", test_old_plugin_beside_nnmod},
        {"plain_names_of_old_plugins", test_plain_names_of_old_plugins},
        {"declared_domain", test_declared_domain},
        {"same_version_two_files", test_same_version_two_files},
        {"bad_domain", test_bad_domain},
        {"discovered_and_explicit", test_discovered_and_explicit},
        {"manifests", test_manifests},
        {"from_module_names", test_from_module_names},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!CU_add_test(s, tests[i].name, tests[i].fn)) {
            CU_cleanup_registry();
            return 1;
        }
    }
    return tu_run();
}
