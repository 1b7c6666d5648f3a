/* tests/loader/test_loader.c - the loader suite: versions and requests, every
 * broken-plugin path, directory scans, discovery, dedupe and refcounting.
 *
 * Links the loader objects directly (no runtime). The fixture plugins are built by
 * CMakeLists.txt into NNM_TEST_FIXTURE_DIR (good and broken, side by side) and
 * NNM_TEST_BESIDE_DIR ("nnmod/plugins" beside this binary). */
#define _GNU_SOURCE /* mkdtemp, symlink, link, RTLD_NOLOAD */

#include "test_util.h"

#include <dlfcn.h>

#include "loader.h"

#define FX NNM_TEST_FIXTURE_DIR "/"

/* ------------------------------------------------------------------------ */
/* A tiny fake host: enough for a fixture's create and forward               */
/* ------------------------------------------------------------------------ */

static tu_fake_host g_fake;

/* Calls vt's forward through the fake host; returns what it reported. */
static const char *call_forward(const nnm_layer_vtable *vt) {
    tu_fake_host_init(&g_fake);
    void *self = NULL;
    if (vt->create(&g_fake.env, &self) != NNM_OK) return "create failed";
    nnm_status st = vt->forward(&g_fake.env, self, NULL, 0, NULL, 0);
    if (vt->destroy) vt->destroy(self);
    return st == NNM_E_UNSUPPORTED ? g_fake.msg : "forward returned something else";
}

static int contains(const char *hay, const char *needle) {
    return hay && needle && strstr(hay, needle) != NULL;
}

static char *real(const char *path) { return realpath(path, NULL); }

/* ------------------------------------------------------------------------ */
/* Versions and requests                                                     */
/* ------------------------------------------------------------------------ */

static void test_semver_parse(void) {
    static const struct {
        const char *s;
        uint32_t a, b, c;
    } ok[] = {
        {"1", 1, 0, 0},           {"1.2", 1, 2, 0},     {"1.2.3", 1, 2, 3},
        {"0.0.0", 0, 0, 0},       {"10.20.30", 10, 20, 30},
        {"4294967295.0.1", 4294967295u, 0, 1},
    };
    static const char *const bad[] = {
        "",      "a",     "1.",          ".1",          "1..2",  "1.2.3.4", "01.2", "1.02",
        "-1",    "+1",    "1.2.3-alpha", "4294967296",  " 1",    "1.2.3 ", "1.x",  "v1.2",
        "1.2.",  "00",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        nnm__semver v = {9, 9, 9};
        CU_ASSERT_EQUAL_FATAL(nnm__semver_parse(ok[i].s, &v), NNM_OK);
        CU_ASSERT(v.major == ok[i].a && v.minor == ok[i].b && v.patch == ok[i].c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nnm__semver v;
        if (nnm__semver_parse(bad[i], &v) != NNM_E_INVALID)
            CU_FAIL_FATAL("semver accepted a malformed version");
    }
    nnm__semver v;
    CU_ASSERT_EQUAL(nnm__semver_parse(NULL, &v), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__semver_parse("1.2.3", NULL), NNM_E_INVALID);
}

static void test_request_parse(void) {
    static const struct {
        const char *req;
        const char *name;
        int op;
        uint32_t a, b, c;
        int parts;
    } ok[] = {
        {"linear", "linear", NNM__REQ_ANY, 0, 0, 0, 0},
        {"linear@*", "linear", NNM__REQ_ANY, 0, 0, 0, 0},
        {"linear@1.2.3", "linear", NNM__REQ_EXACT, 1, 2, 3, 3},
        {"linear@=1.2.3", "linear", NNM__REQ_EXACT, 1, 2, 3, 3},
        {"linear@1.2", "linear", NNM__REQ_EXACT, 1, 2, 0, 2},
        {"linear@^1.2", "linear", NNM__REQ_CARET, 1, 2, 0, 2},
        {"linear@^0", "linear", NNM__REQ_CARET, 0, 0, 0, 1},
        {"linear@~1.2", "linear", NNM__REQ_TILDE, 1, 2, 0, 2},
        {"linear@~1.2.7", "linear", NNM__REQ_TILDE, 1, 2, 7, 3},
        {"linear@>=1.2", "linear", NNM__REQ_GE, 1, 2, 0, 2},
        {"conv2d_x9@>=10", "conv2d_x9", NNM__REQ_GE, 10, 0, 0, 1},
        {"a", "a", NNM__REQ_ANY, 0, 0, 0, 0},
    };
    static const char *const bad[] = {
        "",       "@1",       "x@",     "x@^",     "x@1.2.3.4", "x@abc",   "x@~",   "x@>=",
        "x@>1",   "x@<=1",    "x@^^1",  "x@1.2.3@", "x@1@2",    "X",       "x y",   "x-y",
        "x.Y",    "x@ 1",     "x@1 ",   "x@^-1",   "x@*1",      "x@v1",    "@",     "@*",
        "x@01",   ".x",       "x.",     "x#",      "x@1#",      "x y.z",   "a.b@",  "#p",
        /* 64 characters: one too many for a name */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        nnm__version_req r;
        CU_ASSERT_EQUAL_FATAL(nnm__version_req_parse(ok[i].req, &r), NNM_OK);
        CU_ASSERT_STRING_EQUAL(r.name, ok[i].name);
        CU_ASSERT_EQUAL(r.op, ok[i].op);
        CU_ASSERT_EQUAL(r.parts, ok[i].parts);
        if (ok[i].op != NNM__REQ_ANY)
            CU_ASSERT(r.v.major == ok[i].a && r.v.minor == ok[i].b && r.v.patch == ok[i].c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nnm__version_req r;
        nnm_status st = nnm__version_req_parse(bad[i], &r);
        if (st != NNM_E_INVALID) {
            fprintf(stderr, "\n  accepted malformed request '%s'\n", bad[i]);
            CU_FAIL("malformed request accepted");
        }
    }
    /* Qualified names and pins (issue 20). */
    nnm__version_req q;
    CU_ASSERT_EQUAL_FATAL(nnm__version_req_parse("com.acme.gelu@^1.2#/x/nnm_a@b.so", &q), NNM_OK);
    CU_ASSERT_STRING_EQUAL(q.name, "gelu");
    CU_ASSERT_STRING_EQUAL(q.domain, "com.acme");
    CU_ASSERT_STRING_EQUAL(q.provider, "/x/nnm_a@b.so");
    CU_ASSERT(q.op == NNM__REQ_CARET && q.v.major == 1 && q.v.minor == 2);
    CU_ASSERT_EQUAL_FATAL(nnm__version_req_parse("My-Plugin.gelu", &q), NNM_OK);
    CU_ASSERT_STRING_EQUAL(q.domain, "My-Plugin"); /* a plugin name as implied domain */
    CU_ASSERT_PTR_NULL(q.provider);
    CU_ASSERT_EQUAL(q.op, NNM__REQ_ANY);
    CU_ASSERT_EQUAL_FATAL(nnm__version_req_parse("gelu#acme", &q), NNM_OK);
    CU_ASSERT_STRING_EQUAL(q.domain, "");
    CU_ASSERT_STRING_EQUAL(q.provider, "acme");
    /* 63 characters is the longest name. */
    char name63[64];
    memset(name63, 'a', 63);
    name63[63] = '\0';
    nnm__version_req r;
    CU_ASSERT_EQUAL(nnm__version_req_parse(name63, &r), NNM_OK);
    CU_ASSERT_EQUAL(nnm__version_req_parse(NULL, &r), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__version_req_parse("x", NULL), NNM_E_INVALID);
}

static void test_version_matches(void) {
    static const struct {
        const char *spec;
        uint32_t a, b, c;
        int want;
    } t[] = {
        /* caret, major > 0 */
        {"^1.2", 1, 2, 0, 1},   {"^1.2", 1, 9, 9, 1},   {"^1.2", 2, 0, 0, 0},
        {"^1.2", 1, 1, 9, 0},   {"^1.2.3", 1, 2, 2, 0}, {"^1.2.3", 1, 2, 3, 1},
        {"^1", 1, 0, 0, 1},     {"^1", 1, 99, 0, 1},    {"^1", 0, 9, 9, 0},
        /* caret, the 0.x rule */
        {"^0.2", 0, 2, 0, 1},   {"^0.2", 0, 2, 9, 1},   {"^0.2", 0, 3, 0, 0},
        {"^0.2.3", 0, 2, 2, 0}, {"^0.2.3", 0, 2, 4, 1}, {"^0.2.3", 0, 3, 0, 0},
        {"^0.0.3", 0, 0, 3, 1}, {"^0.0.3", 0, 0, 4, 0}, {"^0.0.3", 0, 0, 2, 0},
        {"^0.0", 0, 0, 9, 1},   {"^0.0", 0, 1, 0, 0},   {"^0", 0, 9, 9, 1},
        {"^0", 1, 0, 0, 0},
        /* tilde */
        {"~1.2", 1, 2, 0, 1},   {"~1.2", 1, 2, 9, 1},   {"~1.2", 1, 3, 0, 0},
        {"~1.2", 1, 1, 9, 0},   {"~1.2.3", 1, 2, 2, 0}, {"~1.2.3", 1, 2, 3, 1},
        {"~1.2.3", 1, 2, 9, 1}, {"~1.2.3", 1, 3, 0, 0}, {"~1", 1, 9, 0, 1},
        {"~1", 2, 0, 0, 0},     {"~0.2", 0, 2, 5, 1},   {"~0.2", 0, 3, 0, 0},
        /* >= */
        {">=1.2", 1, 2, 0, 1},  {">=1.2", 99, 0, 0, 1}, {">=1.2", 1, 1, 99, 0},
        {">=0", 0, 0, 0, 1},
        /* exact, full and partial (=1.2 is 1.2.x, as in cargo and npm) */
        {"1.2.3", 1, 2, 3, 1},  {"1.2.3", 1, 2, 4, 0},  {"1.2.3", 1, 3, 3, 0},
        {"=1.2", 1, 2, 7, 1},   {"=1.2", 1, 3, 0, 0},   {"1", 1, 5, 5, 1},
        {"1", 2, 0, 0, 0},
        /* any */
        {"*", 0, 0, 0, 1},      {"*", 99, 99, 99, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char req[64];
        snprintf(req, sizeof req, "x@%s", t[i].spec);
        nnm__version_req r;
        CU_ASSERT_EQUAL_FATAL(nnm__version_req_parse(req, &r), NNM_OK);
        nnm__semver v = {t[i].a, t[i].b, t[i].c};
        if (nnm__version_matches(&r, v) != t[i].want) {
            fprintf(stderr, "\n  %s vs %u.%u.%u: want %d\n", req, t[i].a, t[i].b, t[i].c,
                    t[i].want);
            CU_FAIL("version match");
        }
    }
    /* A request built by hand (parts 0) means the full version. */
    nnm__version_req hand;
    memset(&hand, 0, sizeof hand);
    hand.op = NNM__REQ_EXACT;
    hand.v.major = 1;
    nnm__semver v100 = {1, 0, 0}, v110 = {1, 1, 0};
    CU_ASSERT(nnm__version_matches(&hand, v100));
    CU_ASSERT(!nnm__version_matches(&hand, v110));
    hand.op = NNM__REQ_CARET;
    hand.v.major = 0;
    hand.v.minor = 0;
    hand.v.patch = 3;
    nnm__semver v003 = {0, 0, 3}, v004 = {0, 0, 4};
    CU_ASSERT(nnm__version_matches(&hand, v003));
    CU_ASSERT(!nnm__version_matches(&hand, v004));
    CU_ASSERT(!nnm__version_matches(NULL, v100));
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */
/* ------------------------------------------------------------------------ */

static void load_good(nnm__registry *r) {
    char err[512];
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(r, FX "nnm_good_a.so", NULL, err, sizeof err),
                          NNM_OK);
    CU_ASSERT_STRING_EQUAL(err, "");
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(r, FX "nnm_good_b.so", NULL, err, sizeof err),
                          NNM_OK);
}

static void test_find_highest(void) {
    static const struct {
        const char *req;
        const char *want; /* what that version's forward reports */
        const char *file;
    } t[] = {
        {"vlayer", "vlayer 2.0.0 forward", "nnm_good_b.so"},
        {"vlayer@*", "vlayer 2.0.0 forward", "nnm_good_b.so"},
        {"vlayer@^1", "vlayer 1.3.5 forward", "nnm_good_b.so"},
        {"vlayer@^1.0", "vlayer 1.3.5 forward", "nnm_good_b.so"},
        {"vlayer@^1.2.1", "vlayer 1.3.5 forward", "nnm_good_b.so"},
        {"vlayer@~1.2", "vlayer 1.2.0 forward", "nnm_good_a.so"},
        {"vlayer@~1", "vlayer 1.3.5 forward", "nnm_good_b.so"},
        {"vlayer@1.0.0", "vlayer 1.0.0 forward", "nnm_good_a.so"},
        {"vlayer@=1.0", "vlayer 1.0.0 forward", "nnm_good_a.so"},
        {"vlayer@1", "vlayer 1.3.5 forward", "nnm_good_b.so"},
        {"vlayer@>=1.3", "vlayer 2.0.0 forward", "nnm_good_b.so"},
        {"vlayer@>=1.0.1", "vlayer 2.0.0 forward", "nnm_good_b.so"},
        {"vlayer@^2", "vlayer 2.0.0 forward", "nnm_good_b.so"},
        {"zlayer", "zlayer 0.3.0 forward", "nnm_good_b.so"},
        {"zlayer@^0.2", "zlayer 0.2.5 forward", "nnm_good_b.so"},
        {"zlayer@^0.2.1", "zlayer 0.2.5 forward", "nnm_good_b.so"},
        {"zlayer@^0.0.3", "zlayer 0.0.3 forward", "nnm_good_b.so"},
        {"zlayer@^0.0", "zlayer 0.0.4 forward", "nnm_good_b.so"},
        {"zlayer@^0", "zlayer 0.3.0 forward", "nnm_good_b.so"},
        {"zlayer@~0.2", "zlayer 0.2.5 forward", "nnm_good_b.so"},
    };
    nnm__registry r;
    nnm__registry_init(&r);
    load_good(&r);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const nnm_layer_vtable *vt = NULL;
        nnm__plugin *owner = NULL;
        char err[512];
        nnm_status st = nnm__registry_find_layer(&r, t[i].req, &vt, &owner, err, sizeof err);
        if (st != NNM_OK) {
            fprintf(stderr, "\n  %s: %s\n", t[i].req, err);
            CU_FAIL("lookup failed");
            continue;
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(vt);
        CU_ASSERT_PTR_NOT_NULL_FATAL(owner);
        const char *got = call_forward(vt);
        if (strcmp(got, t[i].want) != 0) {
            fprintf(stderr, "\n  %s: got '%s', want '%s'\n", t[i].req, got, t[i].want);
            CU_FAIL("wrong version chosen");
        }
        CU_ASSERT(contains(owner->path, t[i].file));
        /* vt points into the owner's normalised copies */
        CU_ASSERT(vt >= owner->layers && vt < owner->layers + owner->n_layers);
    }
    nnm__registry_fini(&r);
}

static void test_find_errors(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[512];
    const nnm_layer_vtable *vt = (const nnm_layer_vtable *)&r;
    nnm__plugin *owner = (nnm__plugin *)&r;

    /* Empty registry. */
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer", &vt, &owner, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(vt);
    CU_ASSERT_PTR_NULL(owner);
    CU_ASSERT(contains(err, "no layer named 'vlayer'"));

    load_good(&r);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@^3", &vt, &owner, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(err, "no layer 'vlayer' matches ^3 (have 1.0.0, 1.2.0, 1.3.5, 2.0.0)");
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@1.1.0", &vt, NULL, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT(contains(err, "matches 1.1.0 (have 1.0.0, 1.2.0, 1.3.5, 2.0.0)"));
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "zlayer@^0.1", &vt, NULL, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(err,
                           "no layer 'zlayer' matches ^0.1 (have 0.0.3, 0.0.4, 0.2.0, 0.2.5, 0.3.0)");
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "linear@^1", &vt, NULL, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT_STRING_EQUAL(err, "no layer named 'linear' is loaded");

    /* A failed file is mentioned when the name is unknown. */
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, FX "nnm_abi2.so", NULL, err, sizeof err),
                    NNM_E_VERSION);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "abi2layer", &vt, NULL, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT(contains(err, "no layer named 'abi2layer'"));
    CU_ASSERT(contains(err, "1 plugin file failed to load"));

    /* Malformed requests. */
    static const char *const bad[] = {"", "@1", "x@", "x@^", "x@1.2.3.4", "x@abc", "Vlayer"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vt = (const nnm_layer_vtable *)&r;
        CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, bad[i], &vt, NULL, err, sizeof err),
                        NNM_E_INVALID);
        CU_ASSERT_PTR_NULL(vt);
        CU_ASSERT(contains(err, "malformed layer request"));
    }
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, NULL, &vt, NULL, err, sizeof err),
                    NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer", NULL, NULL, err, sizeof err),
                    NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(NULL, "vlayer", &vt, NULL, err, sizeof err),
                    NNM_E_INVALID);
    /* NULL/zero-sized error buffers are fine. */
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "nope", &vt, NULL, NULL, 0), NNM_E_NOT_FOUND);
    nnm__registry_fini(&r);
}

static void test_find_backend(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[512];
    const nnm_backend_vtable *vt = NULL;
    nnm__plugin *owner = NULL;
    CU_ASSERT_EQUAL(nnm__registry_find_backend(&r, NNM_DEVICE_CPU, &vt, &owner, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT(contains(err, "cpu"));

    /* badbackend (CPU, 9.9.9 would win) fails to load and is skipped. */
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, FX "nnm_badbackend.so", NULL, err, sizeof err),
                    NNM_E_PLUGIN);
    load_good(&r);
    CU_ASSERT_EQUAL_FATAL(
        nnm__registry_find_backend(&r, NNM_DEVICE_CPU, &vt, &owner, err, sizeof err), NNM_OK);
    CU_ASSERT_STRING_EQUAL(vt->name, "fxcpu");
    CU_ASSERT(vt->version_major == 1 && vt->version_minor == 5 && vt->version_patch == 0);
    CU_ASSERT(contains(owner->path, "nnm_good_b.so"));
    CU_ASSERT_PTR_NOT_NULL(vt->init);
    CU_ASSERT_PTR_NULL(vt->gemm); /* not implemented by the fixture */

    CU_ASSERT_EQUAL(nnm__registry_find_backend(&r, NNM_DEVICE_CUDA, &vt, &owner, err, sizeof err),
                    NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(vt);
    CU_ASSERT_PTR_NULL(owner);
    CU_ASSERT(contains(err, "device type 2 (cuda)"));
    CU_ASSERT_EQUAL(nnm__registry_find_backend(&r, NNM_DEVICE_CPU, NULL, NULL, err, sizeof err),
                    NNM_E_INVALID);
    nnm__registry_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* Broken plugins                                                            */
/* ------------------------------------------------------------------------ */

enum { ABI_NONE, ABI_RUNTIME, ABI_BOTH };

static const struct broken_case {
    const char *file;
    nnm_status status;
    int abi_check;          /* which versions the message must name */
    int plugin_major_delta; /* declared major = NNM_ABI_MAJOR + delta; -1 = unknown (0) */
    const char *needle;
} g_broken[] = {
    {"nnm_abi2.so", NNM_E_VERSION, ABI_BOTH, 1, "(major differs)"},
    {"nnm_noentry.so", NNM_E_LOAD, ABI_NONE, -1,
     "no entry symbol 'nnm_plugin_entry' (a plugin defines it with NNM_PLUGIN_DEFINE(desc)"},
    {"nnm_refuse.so", NNM_E_VERSION, ABI_RUNTIME, -1, "refused"},
    {"nnm_smalldesc.so", NNM_E_PLUGIN, ABI_BOTH, 0, "struct_size 16 is too small"},
    {"nnm_nullvt.so", NNM_E_PLUGIN, ABI_BOTH, 0, "layer #1: vtable pointer is NULL"},
    {"nnm_nullfwd.so", NNM_E_PLUGIN, ABI_BOTH, 0, "layer 'nullfwd' 1.0.0: required slot 'forward'"},
    {"nnm_smallvt.so", NNM_E_PLUGIN, ABI_BOTH, 0, "layer #0: vtable struct_size 40 is too small"},
    {"nnm_nullarr.so", NNM_E_PLUGIN, ABI_BOTH, 0, "declares 3 layers but its layer list is NULL"},
    {"nnm_badbackend.so", NNM_E_PLUGIN, ABI_BOTH, 0, "required slot 'alloc' is NULL"},
    {"nnm_noname.so", NNM_E_PLUGIN, ABI_BOTH, 0, "has no name"},
    {"nnm_text.so", NNM_E_LOAD, ABI_NONE, -1, "not a loadable shared object ("},
    {"nnm_empty.so", NNM_E_LOAD, ABI_NONE, -1, "not a loadable shared object ("},
};
#define N_BROKEN (sizeof g_broken / sizeof g_broken[0])

static void check_broken(const nnm__registry *r, const struct broken_case *c, const char *err,
                         const nnm__plugin *rec) {
    char path[4096], want[128];
    snprintf(path, sizeof path, "%s%s", FX, c->file);
    char *rp = real(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rp);
    int ok = 1;
    ok &= rec != NULL;
    if (rec) {
        ok &= rec->status == c->status;
        ok &= rec->dl == NULL && rec->desc == NULL;
        ok &= rec->n_layers == 0 && rec->layers == NULL;
        ok &= rec->n_backends == 0 && rec->backends == NULL;
        ok &= strcmp(rec->path, rp) == 0;
        ok &= rec->error && strcmp(rec->error, err) == 0;
        uint16_t want_major =
            c->plugin_major_delta < 0 ? 0 : (uint16_t)(NNM_ABI_MAJOR + c->plugin_major_delta);
        ok &= rec->abi_major == want_major;
        ok &= rec->refs == 1;
    }
    /* The message names the file, the problem and, where relevant, both ABIs. */
    ok &= strncmp(err, rp, strlen(rp)) == 0 && err[strlen(rp)] == ':';
    ok &= strstr(err + 1, rp) == NULL; /* once: dlerror's copy of the path is dropped */
    ok &= contains(err, c->needle);
    if (c->abi_check != ABI_NONE) {
        snprintf(want, sizeof want, "runtime ABI %d.%d", NNM_ABI_MAJOR, NNM_ABI_MINOR);
        ok &= contains(err, want);
    }
    if (c->abi_check == ABI_BOTH) {
        /* abi2 declares minor 0; the others this runtime's minor */
        snprintf(want, sizeof want, "plugin ABI %d.%d", NNM_ABI_MAJOR + c->plugin_major_delta,
                 c->plugin_major_delta ? 0 : NNM_ABI_MINOR);
        ok &= contains(err, want);
    }
    if (!ok) {
        fprintf(stderr, "\n  %s: status %d, message '%s'\n", c->file, rec ? rec->status : 0,
                err);
        CU_FAIL("broken plugin not reported as expected");
    }
    (void)r;
    free(rp);
}

static void test_broken_each(void) {
    for (size_t i = 0; i < N_BROKEN; i++) {
        nnm__registry r;
        nnm__registry_init(&r);
        char path[4096], err[1024];
        snprintf(path, sizeof path, "%s%s", FX, g_broken[i].file);
        nnm__plugin *out = (nnm__plugin *)&r;
        nnm_status st = nnm__registry_load_file(&r, path, &out, err, sizeof err);
        CU_ASSERT_EQUAL(st, g_broken[i].status);
        CU_ASSERT_PTR_NULL(out);
        CU_ASSERT_EQUAL_FATAL(r.count, 1);
        check_broken(&r, &g_broken[i], err, r.items[0]);

        /* Loading it again retries it: still one record, same answer. */
        st = nnm__registry_load_file(&r, path, NULL, err, sizeof err);
        CU_ASSERT_EQUAL(st, g_broken[i].status);
        CU_ASSERT_EQUAL(r.count, 1);
        nnm__registry_fini(&r);
        CU_ASSERT_EQUAL(r.count, 0);
        CU_ASSERT_PTR_NULL(r.items);
    }
}

static void test_missing_and_odd_paths(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[1024];
    nnm_status st = nnm__registry_load_file(&r, FX "nnm_does_not_exist.so", NULL, err, sizeof err);
    CU_ASSERT_EQUAL(st, NNM_E_IO);
    CU_ASSERT(contains(err, "nnm_does_not_exist.so: cannot open plugin"));
    CU_ASSERT_EQUAL_FATAL(r.count, 1);
    CU_ASSERT_EQUAL(r.items[0]->status, NNM_E_IO);
    CU_ASSERT(contains(r.items[0]->path, "nnm_does_not_exist.so"));

    st = nnm__registry_load_file(&r, FX "nnm_subdir.so", NULL, err, sizeof err);
    CU_ASSERT_EQUAL(st, NNM_E_IO);
    CU_ASSERT(contains(err, "nnm_subdir.so: not a regular file"));

    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, "", NULL, err, sizeof err), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, NULL, NULL, err, sizeof err), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm__registry_load_file(NULL, FX "nnm_good_a.so", NULL, err, sizeof err),
                    NNM_E_INVALID);
    CU_ASSERT_EQUAL(r.count, 2);

    /* A tiny error buffer truncates, never overflows; none at all is fine. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    st = nnm__registry_load_file(&r, FX "nnm_abi2.so", NULL, tiny, sizeof tiny);
    CU_ASSERT_EQUAL(st, NNM_E_VERSION);
    CU_ASSERT_EQUAL(tiny[7], '\0');
    st = nnm__registry_load_file(&r, FX "nnm_refuse.so", NULL, NULL, 0);
    CU_ASSERT_EQUAL(st, NNM_E_VERSION);
    CU_ASSERT_EQUAL(r.count, 4);
    nnm__registry_fini(&r);
}

static void test_duplicate_layer(void) {
    /* The same (name, version) in two files: both load (a duplicate is no
     * reason to lose a whole plugin), and asking for that version is refused
     * naming both files, in either load order; a pin settles it. */
    char *pa = real(FX "nnm_good_a.so"), *pd = real(FX "nnm_zdup.so");
    for (int order = 0; order < 2; order++) {
        nnm__registry r;
        nnm__registry_init(&r);
        char err[1024];
        nnm__plugin *a = NULL, *d = NULL;
        const char *first = order ? FX "nnm_zdup.so" : FX "nnm_good_a.so";
        const char *second = order ? FX "nnm_good_a.so" : FX "nnm_zdup.so";
        CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(&r, first, order ? &d : &a, err, sizeof err),
                              NNM_OK);
        CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(&r, second, order ? &a : &d, err, sizeof err),
                              NNM_OK);
        CU_ASSERT_EQUAL(r.count, 2);
        const nnm_layer_vtable *vt;
        nnm__plugin *owner;
        CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@1.2.0", &vt, &owner, err, sizeof err),
                        NNM_E_EXISTS);
        CU_ASSERT(contains(err, "'vlayer@1.2.0' is ambiguous: layer 'vlayer' 1.2.0 is provided by "));
        CU_ASSERT(contains(err, pa));
        CU_ASSERT(contains(err, pd));
        CU_ASSERT(contains(err, "pin a provider ('vlayer@1.2.0#"));
        CU_ASSERT_PTR_NULL(vt);
        /* Pinned, by file name or plugin name ("dup"). */
        CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@1.2.0#nnm_good_a.so", &vt, &owner, err,
                                                 sizeof err), NNM_OK);
        CU_ASSERT_PTR_EQUAL(owner, a);
        CU_ASSERT_STRING_EQUAL(call_forward(vt), "vlayer 1.2.0 forward");
        CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@^1#dup", &vt, &owner, err, sizeof err),
                        NNM_OK);
        CU_ASSERT_PTR_EQUAL(owner, d);
        /* A version only one file has is no ambiguity (good_a also has 1.0.0),
         * and the highest of a range wins before ties are looked at. */
        CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@1.0.0", &vt, &owner, err, sizeof err),
                        NNM_OK);
        CU_ASSERT_PTR_EQUAL(owner, a);
        nnm__registry_fini(&r);
    }
    free(pa);
    free(pd);
}

/* ------------------------------------------------------------------------ */
/* ABI minors                                                                */
/* ------------------------------------------------------------------------ */

static void test_newer_minor(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[1024];
    nnm__plugin *p = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(&r, FX "nnm_newer.so", &p, err, sizeof err),
                          NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->abi_major, NNM_ABI_MAJOR);
    CU_ASSERT_EQUAL(p->abi_minor, NNM_ABI_MINOR + 1);
    CU_ASSERT(p->desc->struct_size > sizeof(nnm_plugin_desc));
    CU_ASSERT_EQUAL_FATAL(p->n_layers, 1);
    /* The copy keeps the plugin's struct_size; slots past this runtime's
     * layout are simply not there. */
    CU_ASSERT(p->layers[0].struct_size > sizeof(nnm_layer_vtable));
    CU_ASSERT_EQUAL(p->layers[0].struct_size, sizeof(nnm_layer_vtable) + sizeof(void *));
    CU_ASSERT_PTR_NOT_NULL(p->layers[0].extra_repr);
    const nnm_layer_vtable *vt;
    CU_ASSERT_EQUAL_FATAL(nnm__registry_find_layer(&r, "newlayer@^1", &vt, NULL, err, sizeof err),
                          NNM_OK);
    CU_ASSERT_PTR_EQUAL(vt, &p->layers[0]);
    CU_ASSERT_STRING_EQUAL(call_forward(vt), "newlayer 1.0.0 forward");
    char buf[32];
    CU_ASSERT_EQUAL(vt->extra_repr(NULL, buf, sizeof buf), 7);
    CU_ASSERT_STRING_EQUAL(buf, "fixture");
    nnm__registry_fini(&r);
}

static void test_older_struct(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[1024];
    nnm__plugin *p = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(&r, FX "nnm_older.so", &p, err, sizeof err),
                          NNM_OK);
    CU_ASSERT_EQUAL_FATAL(p->n_layers, 1);
    const nnm_layer_vtable *vt = &p->layers[0];
    CU_ASSERT_EQUAL(vt->struct_size, offsetof(nnm_layer_vtable, extra_repr));
    /* Set in the plugin's memory, but past its struct_size: must read NULL. */
    CU_ASSERT_PTR_NULL(vt->extra_repr);
    CU_ASSERT_PTR_NULL(vt->destroy);
    CU_ASSERT_PTR_NOT_NULL(vt->create);
    CU_ASSERT_STRING_EQUAL(call_forward(vt), "oldlayer 1.0.0 forward");
    nnm__registry_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* Directories                                                               */
/* ------------------------------------------------------------------------ */

static const char *const g_good_files[] = {"nnm_good_a.so", "nnm_good_b.so", "nnm_newer.so",
                                           "nnm_older.so"};
#define N_GOOD (sizeof g_good_files / sizeof g_good_files[0])
/* good + broken + zdup: every regular *.so in the fixture dir */
#define N_FIXTURE_FILES (N_GOOD + N_BROKEN + 1)

static const nnm__plugin *find_record(const nnm__registry *r, const char *file) {
    for (uint32_t i = 0; i < r->count; i++) {
        const char *slash = strrchr(r->items[i]->path, '/');
        if (slash && strcmp(slash + 1, file) == 0) return r->items[i];
    }
    return NULL;
}

static void check_fixture_dir_loaded(const nnm__registry *r) {
    for (size_t i = 0; i < N_GOOD; i++) {
        const nnm__plugin *p = find_record(r, g_good_files[i]);
        CU_ASSERT_PTR_NOT_NULL(p);
        if (p) {
            CU_ASSERT_EQUAL(p->status, NNM_OK);
            CU_ASSERT_STRING_EQUAL(p->error, "");
            CU_ASSERT_PTR_NOT_NULL(p->dl);
        }
    }
    for (size_t i = 0; i < N_BROKEN; i++) {
        const nnm__plugin *p = find_record(r, g_broken[i].file);
        CU_ASSERT_PTR_NOT_NULL(p);
        if (p) check_broken(r, &g_broken[i], p->error, p);
    }
    const nnm__plugin *dup = find_record(r, "nnm_zdup.so");
    CU_ASSERT(dup && dup->status == NNM_OK); /* a duplicate loads; requests decide */
    CU_ASSERT_PTR_NULL(find_record(r, "README.txt"));
    CU_ASSERT_PTR_NULL(find_record(r, "nnm_subdir.so"));
}

static void test_load_dir_mixed(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[1024];
    uint32_t n = 99;
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_dir(&r, NNM_TEST_FIXTURE_DIR, &n, err, sizeof err),
                          NNM_OK);
    CU_ASSERT_EQUAL(n, N_GOOD + 1);
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES);
    CU_ASSERT(err[0] != '\0'); /* the first failure, for the caller's log */
    check_fixture_dir_loaded(&r);
    /* Sorted by name: the records appear in strcmp order of their file names. */
    for (uint32_t i = 1; i < r.count; i++)
        CU_ASSERT(strcmp(r.items[i - 1]->path, r.items[i]->path) < 0);

    /* Good plugins in a mixed dir work. */
    const nnm_layer_vtable *vt;
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@~1.2", &vt, NULL, err, sizeof err),
                    NNM_E_EXISTS); /* good_a's and zdup's 1.2.0 */
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@~1.2#good_a", &vt, NULL, err, sizeof err),
                    NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "oldlayer", &vt, NULL, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "newlayer", &vt, NULL, err, sizeof err), NNM_OK);
    /* nullvt's good first layer is not registered: the file failed as a whole. */
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "nullvt_ok", &vt, NULL, err, sizeof err),
                    NNM_E_NOT_FOUND);

    /* Scanning again loads nothing twice (trailing slash too). */
    CU_ASSERT_EQUAL(
        nnm__registry_load_dir(&r, NNM_TEST_FIXTURE_DIR "/", &n, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(n, N_GOOD + 1);
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES);
    check_fixture_dir_loaded(&r);

    CU_ASSERT_EQUAL(nnm__registry_load_dir(&r, FX "no_such_dir", &n, err, sizeof err), NNM_E_IO);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(contains(err, "no_such_dir: cannot open plugin directory"));
    CU_ASSERT_EQUAL(nnm__registry_load_dir(&r, NULL, &n, err, sizeof err), NNM_E_INVALID);
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES);
    nnm__registry_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* Dedupe                                                                    */
/* ------------------------------------------------------------------------ */

static char g_scratch[4096];

static int make_scratch(void) {
    snprintf(g_scratch, sizeof g_scratch, "%s/scratch.XXXXXX", NNM_TEST_SCRATCH_DIR);
    return mkdtemp(g_scratch) != NULL;
}

static void test_dedupe(void) {
    CU_ASSERT_FATAL(make_scratch());
    char sym[4200], hard[4200], dirsym[4200], via[4400], err[1024];
    snprintf(sym, sizeof sym, "%s/link.so", g_scratch);
    snprintf(hard, sizeof hard, "%s/hard.so", g_scratch);
    snprintf(dirsym, sizeof dirsym, "%s/dir", g_scratch);
    snprintf(via, sizeof via, "%s/dir/./nnm_good_a.so", g_scratch);
    char *target = real(FX "nnm_good_a.so");
    CU_ASSERT_PTR_NOT_NULL_FATAL(target);
    CU_ASSERT_EQUAL_FATAL(symlink(target, sym), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(NNM_TEST_FIXTURE_DIR, dirsym), 0);
    int have_hard = link(target, hard) == 0;

    nnm__registry r;
    nnm__registry_init(&r);
    nnm__plugin *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL, *p5 = NULL;
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, FX "nnm_good_a.so", &p1, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, FX "nnm_good_a.so", &p2, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, sym, &p3, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, via, &p4, err, sizeof err), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(p1);
    CU_ASSERT_PTR_EQUAL(p1, p2);
    CU_ASSERT_PTR_EQUAL(p1, p3);
    CU_ASSERT_PTR_EQUAL(p1, p4);
    CU_ASSERT_STRING_EQUAL(p1->path, target);
    CU_ASSERT_EQUAL(p1->refs, 1);
    if (have_hard) {
        /* A hard link has its own realpath, but the dynamic linker knows it is
         * the same file and returns the same handle. */
        CU_ASSERT_EQUAL(nnm__registry_load_file(&r, hard, &p5, err, sizeof err), NNM_OK);
        CU_ASSERT_PTR_EQUAL(p1, p5);
    }
    CU_ASSERT_EQUAL(r.count, 1);

    /* A symlinked directory scans into the same records. */
    uint32_t n = 0;
    CU_ASSERT_EQUAL(nnm__registry_load_dir(&r, dirsym, &n, err, sizeof err), NNM_OK);
    CU_ASSERT_EQUAL(n, N_GOOD + 1);
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES);
    CU_ASSERT_PTR_EQUAL(find_record(&r, "nnm_good_a.so"), p1);
    nnm__registry_fini(&r);

    unlink(sym);
    unlink(dirsym);
    if (have_hard) unlink(hard);
    rmdir(g_scratch);
    free(target);
}

/* ------------------------------------------------------------------------ */
/* Static registration                                                       */
/* ------------------------------------------------------------------------ */

static nnm_status st_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}
static nnm_status st_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)self; (void)in; (void)n_in; (void)out; (void)n_out;
    return env->host->set_error(env, NNM_E_UNSUPPORTED, "staticlayer forward");
}
static const nnm_layer_vtable g_st_layer = {sizeof(nnm_layer_vtable), 0, "staticlayer", 1, 0, 0,
                                            1, 1, st_create, NULL, st_forward, NULL};
static const nnm_layer_vtable *const g_st_layers[] = {&g_st_layer};
static const nnm_plugin_desc g_st_desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                          "static", NULL, 1, 0, g_st_layers, NULL};
static const nnm_plugin_desc g_st_bad = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR + 1, 3,
                                         "static_bad", NULL, 1, 0, g_st_layers, NULL};
static const nnm_layer_vtable g_st_vdup = {sizeof(nnm_layer_vtable), 0, "vlayer", 2, 0, 0,
                                           1, 1, st_create, NULL, st_forward, NULL};
static const nnm_layer_vtable *const g_st_vdups[] = {&g_st_vdup};
static const nnm_plugin_desc g_st_dup = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                         "static_dup", NULL, 1, 0, g_st_vdups, NULL};

static void test_register_static(void) {
    nnm__registry r;
    nnm__registry_init(&r);
    char err[1024];
    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, &g_st_desc, "myapp", err, sizeof err),
                    NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, &g_st_desc, "myapp", err, sizeof err),
                    NNM_OK);
    CU_ASSERT_EQUAL_FATAL(r.count, 1);
    nnm__plugin *p = r.items[0];
    CU_ASSERT_STRING_EQUAL(p->path, "myapp");
    CU_ASSERT_PTR_NULL(p->dl);
    CU_ASSERT_PTR_EQUAL(p->desc, &g_st_desc);
    const nnm_layer_vtable *vt;
    nnm__plugin *owner;
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "staticlayer", &vt, &owner, err, sizeof err),
                    NNM_OK);
    CU_ASSERT_PTR_EQUAL(owner, p);
    CU_ASSERT_STRING_EQUAL(call_forward(vt), "staticlayer forward");

    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, &g_st_bad, NULL, err, sizeof err),
                    NNM_E_VERSION);
    char want[128];
    snprintf(want, sizeof want, "<static>: plugin ABI %d.3 is not compatible with runtime ABI %d.%d",
             NNM_ABI_MAJOR + 1, NNM_ABI_MAJOR, NNM_ABI_MINOR);
    CU_ASSERT(contains(err, want));
    CU_ASSERT_EQUAL(r.count, 2);
    CU_ASSERT_EQUAL(r.items[1]->abi_major, NNM_ABI_MAJOR + 1);
    CU_ASSERT_EQUAL(r.items[1]->abi_minor, 3);

    load_good(&r);
    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, &g_st_dup, "app2", err, sizeof err),
                    NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@2", NULL, NULL, err, sizeof err),
                    NNM_E_INVALID); /* vt is required */
    const nnm_layer_vtable *dvt = NULL;
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@2", &dvt, NULL, err, sizeof err),
                    NNM_E_EXISTS);
    CU_ASSERT(contains(err, "app2"));
    CU_ASSERT(contains(err, "nnm_good_b.so"));
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "vlayer@2#app2", &dvt, NULL, err, sizeof err),
                    NNM_OK);
    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, NULL, "x", err, sizeof err), NNM_E_INVALID);
    nnm__registry_fini(&r);
}

/* Descriptor checks not covered by a fixture file, through static descriptors
 * (the same validation path). */
static void test_static_validation(void) {
    static const nnm_layer_vtable noname = {sizeof(nnm_layer_vtable), 0, NULL, 1, 0, 0, 1, 1,
                                            st_create, NULL, st_forward, NULL};
    static const nnm_layer_vtable badname = {sizeof(nnm_layer_vtable), 0, "Bad-Name", 1, 0, 0,
                                             1, 1, st_create, NULL, st_forward, NULL};
    static const nnm_layer_vtable nocreate = {sizeof(nnm_layer_vtable), 0, "nocreate", 1, 0, 0,
                                              1, 1, NULL, NULL, st_forward, NULL};
    static const nnm_layer_vtable huge = {(1u << 20) + 1, 0, "huge", 1, 0, 0, 1, 1,
                                          st_create, NULL, st_forward, NULL};
    static const nnm_layer_vtable twice = {sizeof(nnm_layer_vtable), 0, "twice", 1, 0, 0, 1, 1,
                                           st_create, NULL, st_forward, NULL};
    static const nnm_backend_vtable smallbe = {offsetof(nnm_backend_vtable, memcpy), 0, "smallbe",
                                               1, 0, 0, NNM_DEVICE_CPU, NULL, NULL, NULL,
                                               NULL, NULL, NULL, NULL, NULL, NULL};
    static const nnm_layer_vtable *const l_noname[] = {&noname};
    static const nnm_layer_vtable *const l_badname[] = {&badname};
    static const nnm_layer_vtable *const l_nocreate[] = {&nocreate};
    static const nnm_layer_vtable *const l_huge[] = {&huge};
    static const nnm_layer_vtable *const l_twice[] = {&twice, &twice};
    static const nnm_backend_vtable *const b_small[] = {&smallbe};
    static const nnm_backend_vtable *const b_null[] = {NULL};
#define D(nm, nl, l, nb, b) {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, nm, NULL, nl, nb, l, b}
    static const struct {
        nnm_plugin_desc d;
        nnm_status st;
        const char *needle;
    } t[] = {
        {D("p", 1, l_noname, 0, NULL), NNM_E_PLUGIN, "layer #0: name is NULL"},
        {D("p", 1, l_badname, 0, NULL), NNM_E_PLUGIN, "invalid name 'Bad-Name'"},
        {D("p", 1, l_nocreate, 0, NULL), NNM_E_PLUGIN, "required slot 'create' is NULL"},
        {D("p", 1, l_huge, 0, NULL), NNM_E_PLUGIN, "struct_size 1048577 is implausible"},
        {D("p", 2, l_twice, 0, NULL), NNM_E_EXISTS, "layer 'twice' 1.0.0 is listed twice"},
        {D("p", 0, NULL, 1, b_small), NNM_E_PLUGIN, "backend #0: vtable struct_size 64 is too small"},
        {D("p", 0, NULL, 1, b_null), NNM_E_PLUGIN, "backend #0: vtable pointer is NULL"},
        {D("p", 0, NULL, 2, NULL), NNM_E_PLUGIN, "declares 2 backends but its backend list is NULL"},
        {D("p", 100000, l_twice, 0, NULL), NNM_E_LIMIT, "lists 100000 layers"},
        {D(NULL, 0, NULL, 0, NULL), NNM_E_PLUGIN, "has no name"},
        {{(1u << 20) + 8, NNM_ABI_MAJOR, 0, "p", NULL, 0, 0, NULL, NULL}, NNM_E_PLUGIN,
         "descriptor struct_size 1048584 is implausible"},
        {{4, NNM_ABI_MAJOR, 0, "p", NULL, 0, 0, NULL, NULL}, NNM_E_PLUGIN,
         "too small to hold an ABI version"},
    };
#undef D
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        nnm__registry r;
        nnm__registry_init(&r);
        char err[1024], origin[32];
        snprintf(origin, sizeof origin, "case%zu", i);
        nnm_status st = nnm__registry_register_static(&r, &t[i].d, origin, err, sizeof err);
        if (st != t[i].st || !contains(err, t[i].needle) || strncmp(err, origin, strlen(origin)) ||
            r.count != 1 || r.items[0]->status != st || r.items[0]->layers) {
            fprintf(stderr, "\n  case %zu: status %d, '%s'\n", i, st, err);
            CU_FAIL("static descriptor not refused as expected");
        }
        nnm__registry_fini(&r);
    }
    /* An empty descriptor (no layers, no backends) is valid. */
    nnm__registry r;
    nnm__registry_init(&r);
    static const nnm_plugin_desc empty = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                          "empty", NULL, 0, 0, NULL, NULL};
    CU_ASSERT_EQUAL(nnm__registry_register_static(&r, &empty, "e", NULL, 0), NNM_OK);
    nnm__registry_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* Refcounting                                                               */
/* ------------------------------------------------------------------------ */

static int is_loaded(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!h) return 0;
    dlclose(h);
    return 1;
}

static void test_refcount(void) {
    char err[1024];
    char *path = real(FX "nnm_good_b.so");
    CU_ASSERT_PTR_NOT_NULL_FATAL(path);
    CU_ASSERT(!is_loaded(path));

    nnm__registry r;
    nnm__registry_init(&r);
    CU_ASSERT_EQUAL_FATAL(nnm__registry_load_file(&r, path, NULL, err, sizeof err), NNM_OK);
    CU_ASSERT(is_loaded(path));
    const nnm_layer_vtable *vt;
    nnm__plugin *owner;
    CU_ASSERT_EQUAL_FATAL(nnm__registry_find_layer(&r, "vlayer", &vt, &owner, err, sizeof err),
                          NNM_OK);
    nnm__plugin_retain(owner); /* as a module made from it would */
    CU_ASSERT_EQUAL(owner->refs, 2);
    nnm__registry_fini(&r);
    CU_ASSERT_EQUAL(r.count, 0);

    /* The registry is gone; the plugin is not. */
    CU_ASSERT_EQUAL(owner->refs, 1);
    CU_ASSERT(is_loaded(path));
    CU_ASSERT_PTR_NOT_NULL(dlsym(owner->dl, NNM_PLUGIN_ENTRY_SYMBOL));
    CU_ASSERT_STRING_EQUAL(call_forward(vt), "vlayer 2.0.0 forward");
    CU_ASSERT_STRING_EQUAL(owner->desc->name, "good_b");
    nnm__plugin_release(owner); /* the last reference: dlclosed and freed */
    CU_ASSERT(!is_loaded(path));

    /* Without extra references, fini unloads. */
    nnm__registry_init(&r);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, path, NULL, err, sizeof err), NNM_OK);
    CU_ASSERT(is_loaded(path));
    nnm__registry_fini(&r);
    CU_ASSERT(!is_loaded(path));

    /* Failed records are counted and freed too; NULL is a no-op. */
    nnm__registry_init(&r);
    CU_ASSERT_EQUAL(nnm__registry_load_file(&r, FX "nnm_abi2.so", NULL, err, sizeof err),
                    NNM_E_VERSION);
    nnm__plugin *failed = r.items[0];
    nnm__plugin_retain(failed);
    nnm__registry_fini(&r);
    CU_ASSERT_EQUAL(failed->status, NNM_E_VERSION);
    nnm__plugin_release(failed);
    nnm__plugin_release(NULL);
    nnm__plugin_retain(NULL);
    nnm__registry_fini(&r); /* twice is harmless */
    nnm__registry_fini(NULL);
    nnm__registry_init(NULL);
    free(path);
}

/* ------------------------------------------------------------------------ */
/* Discovery                                                                 */
/* ------------------------------------------------------------------------ */

static void test_discover(void) {
    CU_ASSERT_FATAL(make_scratch());
    char dirsym[4200], env[16384];
    snprintf(dirsym, sizeof dirsym, "%s/fixtures-again", g_scratch);
    CU_ASSERT_EQUAL_FATAL(symlink(NNM_TEST_FIXTURE_DIR, dirsym), 0);
    /* Missing dirs, empty entries, the same dir three ways, and the beside dir
     * (which the dladdr step must then skip). */
    snprintf(env, sizeof env, "/nonexistent/nnm-a::%s:%s/:%s:%s/nnm_good_a.so:%s:/nonexistent/b:",
             NNM_TEST_FIXTURE_DIR, NNM_TEST_FIXTURE_DIR, dirsym, NNM_TEST_FIXTURE_DIR,
             NNM_TEST_BESIDE_DIR);

    nnm__registry r;
    nnm__registry_init(&r);
    nnm__registry_discover(&r, env, "/nonexistent/installed");
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES + 1);
    check_fixture_dir_loaded(&r);
    const nnm__plugin *beside = find_record(&r, "nnm_beside.so");
    CU_ASSERT_PTR_NOT_NULL(beside);
    CU_ASSERT(beside && beside->status == NNM_OK);
    CU_ASSERT_PTR_EQUAL(r.items[r.count - 1], beside); /* env order: beside dir last */

    /* Again: nothing doubles. */
    nnm__registry_discover(&r, env, NULL);
    CU_ASSERT_EQUAL(r.count, N_FIXTURE_FILES + 1);
    nnm__registry_fini(&r);

    /* No env, no installed dir: the dir beside the loader (found with dladdr;
     * here that is the test binary) is still scanned. */
    nnm__registry_init(&r);
    nnm__registry_discover(&r, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(r.count, 1);
    CU_ASSERT(contains(r.items[0]->path, "/nnmod/plugins/nnm_beside.so"));
    const nnm_layer_vtable *vt;
    char err[512];
    CU_ASSERT_EQUAL(nnm__registry_find_layer(&r, "besidelayer@1.0.0", &vt, NULL, err, sizeof err),
                    NNM_OK);
    nnm__registry_fini(&r);

    /* With a plugin dir beside the loader, the installed dir is not scanned:
     * a library uses the plugins shipped with it, never another copy. */
    nnm__registry_init(&r);
    nnm__registry_discover(&r, "", NNM_TEST_FIXTURE_DIR);
    CU_ASSERT_EQUAL(r.count, 1);
    CU_ASSERT_PTR_EQUAL(r.items[0], find_record(&r, "nnm_beside.so"));
    nnm__registry_fini(&r);

    /* Nothing but missing dirs and separators. */
    nnm__registry_init(&r);
    nnm__registry_discover(&r, ":::/nonexistent:", "/nonexistent/installed");
    CU_ASSERT_EQUAL(r.count, 1); /* the beside dir */
    nnm__registry_fini(&r);
    nnm__registry_discover(NULL, env, NULL);

    unlink(dirsym);
    rmdir(g_scratch);
}

/* ------------------------------------------------------------------------ */

int main(void) {
    CU_pSuite s = tu_suite("loader", NULL, NULL);
    if (!s) return 1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"semver_parse", test_semver_parse},
        {"request_parse", test_request_parse},
        {"version_matches", test_version_matches},
        {"find_highest", test_find_highest},
        {"find_errors", test_find_errors},
        {"find_backend", test_find_backend},
        {"broken_each", test_broken_each},
        {"missing_and_odd_paths", test_missing_and_odd_paths},
        {"duplicate_layer", test_duplicate_layer},
        {"newer_minor", test_newer_minor},
        {"older_struct", test_older_struct},
        {"load_dir_mixed", test_load_dir_mixed},
        {"dedupe", test_dedupe},
        {"register_static", test_register_static},
        {"static_validation", test_static_validation},
        {"refcount", test_refcount},
        {"discover", test_discover},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!CU_add_test(s, tests[i].name, tests[i].fn)) {
            CU_cleanup_registry();
            return 1;
        }
    }
    return tu_run();
}
