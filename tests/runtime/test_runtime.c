/* tests/runtime/test_runtime.c - context, tensors, DLPack, config, the module
 * tree (names, walks, printing), device moves and bad-argument handling. */
#include "test_util.h"

#include "runtime/probe_layer.h"

static nnm_ctx *ctx;

static int suite_init(void) {
    if (tu_ctx_new(&ctx)) return 1;
    return nnm_plugin_register_static(ctx, &probe_desc, "test_runtime") ? 1 : 0;
}

static int suite_fini(void) { return tu_ctx_free(&ctx); }

/* encoder: sequential { fc1: linear(4,3), act: relu, layers: sequential { 0: linear(3,2,nobias) } } */
static nnm_module *tree(void) {
    nnm_module *root = tu_module(ctx, "sequential", NULL);
    nnm_module *layers = tu_module(ctx, "sequential", NULL);
    nnm_module *fc1 = tu_linear(ctx, "linear@^1", 4, 3, 1);
    nnm_module *inner = tu_linear(ctx, "linear@^1", 3, 2, 0);
    nnm_module *act = tu_module(ctx, "relu", NULL);
    CU_ASSERT_FATAL(root && layers && fc1 && inner && act);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "fc1", fc1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "act", act), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(layers, NULL, inner), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "layers", layers), NNM_OK);
    nnm_module_release(fc1);
    nnm_module_release(act);
    nnm_module_release(inner);
    nnm_module_release(layers);
    return root;
}

typedef struct names {
    int n;
    char v[16][64];
} names;

static nnm_status collect_tensor(void *user, const char *name, nnm_tensor *t) {
    (void)t;
    names *r = user;
    if (r->n < 16) snprintf(r->v[r->n++], sizeof r->v[0], "%s", name);
    return NNM_OK;
}

static nnm_status collect_module(void *user, const char *name, nnm_module *m) {
    names *r = user;
    if (r->n < 16) snprintf(r->v[r->n++], sizeof r->v[0], "%s=%s", name, nnm_module_type(m));
    return NNM_OK;
}

static nnm_status stop_at_two(void *user, const char *name, nnm_tensor *t) {
    (void)name, (void)t;
    return ++*(int *)user == 2 ? NNM_E_EXISTS : NNM_OK;
}

static void test_names_like_state_dict(void) {
    nnm_module *root = tree();
    names p = {0};
    CU_ASSERT_EQUAL(nnm_module_named_parameters(root, collect_tensor, &p), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(p.n, 3);
    CU_ASSERT_STRING_EQUAL(p.v[0], "fc1.weight");
    CU_ASSERT_STRING_EQUAL(p.v[1], "fc1.bias");
    CU_ASSERT_STRING_EQUAL(p.v[2], "layers.0.weight");
    names m = {0};
    CU_ASSERT_EQUAL(nnm_module_named_modules(root, collect_module, &m), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(m.n, 5);
    CU_ASSERT_STRING_EQUAL(m.v[0], "=sequential");
    CU_ASSERT_STRING_EQUAL(m.v[1], "fc1=linear");
    CU_ASSERT_STRING_EQUAL(m.v[2], "act=relu");
    CU_ASSERT_STRING_EQUAL(m.v[3], "layers=sequential");
    CU_ASSERT_STRING_EQUAL(m.v[4], "layers.0=linear");
    names a = {0}; /* apply: children first, like Module.apply */
    CU_ASSERT_EQUAL(nnm_module_apply(root, collect_module, &a), NNM_OK);
    CU_ASSERT_STRING_EQUAL(a.v[0], "fc1=linear");
    CU_ASSERT_STRING_EQUAL(a.v[3], "layers=sequential");
    CU_ASSERT_STRING_EQUAL(a.v[4], "=sequential");
    int count = 0; /* a visitor's status stops the walk and comes back */
    CU_ASSERT_EQUAL(nnm_module_named_parameters(root, stop_at_two, &count), NNM_E_EXISTS);
    CU_ASSERT_EQUAL(count, 2);
    CU_ASSERT_EQUAL(nnm_module_num_params(root), 4 * 3 + 3 + 3 * 2);

    nnm_module *inner = nnm_module_get(root, "layers.0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(inner);
    char path[64];
    CU_ASSERT_EQUAL(nnm_module_path(inner, path, sizeof path), 8);
    CU_ASSERT_STRING_EQUAL(path, "layers.0");
    CU_ASSERT_STRING_EQUAL(nnm_module_name(inner), "0");
    CU_ASSERT_PTR_EQUAL(nnm_module_parent(inner), nnm_module_get(root, "layers"));
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "layers.9"));
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "layers."));
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, ""), root);
    nnm_module_release(root);
}

static void test_tree_rules(void) {
    nnm_module *root = tree(), *extra = tu_linear(ctx, "linear@^1", 2, 2, 1);
    /* duplicate names, bad names, second parent, cycles */
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "fc1", extra), NNM_E_EXISTS);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "a.b", extra), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "", extra), NNM_E_INVALID);
    nnm_module *fc1 = nnm_module_get(root, "fc1");
    CU_ASSERT_EQUAL(nnm_module_add_child(extra, "again", fc1), NNM_E_STATE);
    nnm_module *layers = nnm_module_get(root, "layers");
    CU_ASSERT_EQUAL(nnm_module_add_child(layers, "up", root), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_add_child(NULL, NULL, extra), NNM_E_INVALID);
    /* a module outlives its parent while referenced */
    nnm_module_retain(fc1);
    nnm_module_release(root);
    CU_ASSERT_PTR_NULL(nnm_module_parent(fc1));
    CU_ASSERT_EQUAL(nnm_module_add_child(extra, "fc1", fc1), NNM_OK);
    nnm_module_release(fc1);
    nnm_module_release(extra);
}

/* Past 16 children a module looks names up through an index that grows as
 * children come: every name stays found and every duplicate refused, across
 * each growth, and lookups by path go through the same index. */
static void test_wide_module_names(void) {
    enum { N = 300 };
    nnm_module *root = tu_module(ctx, "sequential", NULL), *extra = tu_module(ctx, "relu", NULL);
    nnm_module *kids[N];
    CU_ASSERT_FATAL(root && extra);
    char name[32];
    int ok = 1;
    for (int i = 0; i < N; i++) {
        kids[i] = tu_module(ctx, "relu", NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(kids[i]);
        snprintf(name, sizeof name, "c%d", i);
        /* every third child unnamed: it is called by its index, "3", "6", ... */
        ok &= nnm_module_add_child(root, i % 3 ? name : NULL, kids[i]) == NNM_OK;
        ok &= nnm_module_get(root, nnm_module_name(kids[i])) == kids[i];
        if (i % 3 == 0) ok &= strcmp(nnm_module_name(kids[i]), name + 1) == 0;
        /* the first child's name is refused at every width */
        ok &= nnm_module_add_child(root, "0", extra) == NNM_E_EXISTS;
    }
    CU_ASSERT_TRUE(ok);
    for (int i = 0; i < N; i++) {
        if (nnm_module_get(root, nnm_module_name(kids[i])) != kids[i]) ok = 0;
        if (nnm_module_add_child(root, nnm_module_name(kids[i]), extra) != NNM_E_EXISTS) ok = 0;
    }
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "c300"));
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "c0")); /* child 0 is "0" */
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "c"));
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "c29."));
    CU_ASSERT_PTR_NULL(nnm_module_get(root, "c29.x"));
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "c2"), kids[2]);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "c29"), kids[29]);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "c299"), kids[299]);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "c300", extra), NNM_OK);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "c300"), extra);
    CU_ASSERT_EQUAL(nnm_module_child_count(root), N + 1);
    nnm_module_release(extra);
    for (int i = 0; i < N; i++) nnm_module_release(kids[i]);
    nnm_module_release(root);
}

/* Past 16 keys a config finds keys through an index that grows with it:
 * every key found, a set of an existing key replaces it in place, the
 * order stays the insertion order. */
static void test_wide_config_keys(void) {
    enum { N = 300 };
    nnm_config *cfg = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&cfg), NNM_OK);
    char key[32];
    int ok = 1;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ok &= nnm_config_set_int(cfg, key, i) == NNM_OK;
        int64_t v = -1;
        ok &= nnm_config_get_int(cfg, "k0", &v) == NNM_OK && v == 0; /* across each growth */
        ok &= nnm_config_get_int(cfg, key, &v) == NNM_OK && v == i;
    }
    CU_ASSERT_TRUE(ok);
    for (int i = 0; i < N; i += 7) { /* replace: a string now, same place */
        snprintf(key, sizeof key, "k%d", i);
        ok &= nnm_config_set_str(cfg, key, "s") == NNM_OK;
    }
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_EQUAL(nnm_config_count(cfg), N);
    for (int i = 0; i < N; i++) {
        int type = -1;
        snprintf(key, sizeof key, "k%d", i);
        const char *k = nnm_config_key(cfg, (size_t)i, &type);
        ok &= k && strcmp(k, key) == 0;
        ok &= type == (i % 7 ? NNM_CONFIG_INT : NNM_CONFIG_STR);
        int64_t v;
        ok &= nnm_config_get_int(cfg, key, &v) == (i % 7 ? NNM_OK : NNM_E_TYPE);
    }
    CU_ASSERT_TRUE(ok);
    int64_t v;
    CU_ASSERT_EQUAL(nnm_config_get_int(cfg, "k300", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_config_get_int(cfg, "k", &v), NNM_E_NOT_FOUND);
    nnm_config_free(cfg);
}

static void test_repr(void) {
    nnm_module *root = tree();
    int64_t need = nnm_module_repr(root, NULL, 0);
    CU_ASSERT_FATAL(need > 0);
    char buf[2048];
    CU_ASSERT_EQUAL(nnm_module_repr(root, buf, sizeof buf), need);
    const char *want = "Sequential(\n"
                       "  (fc1): Linear(in_features=4, out_features=3, bias=True)  # 15 params\n"
                       "  (act): ReLU()\n"
                       "  (layers): Sequential(\n"
                       "    (0): Linear(in_features=3, out_features=2, bias=False)  # 6 params\n"
                       "  )\n"
                       ")\n"
                       "Total params: 21\n";
    CU_ASSERT_STRING_EQUAL(buf, want);
    char small[8];
    CU_ASSERT_EQUAL(nnm_module_repr(root, small, sizeof small), need); /* truncates, terminates */
    CU_ASSERT_EQUAL(strlen(small), 7);
    nnm_module_release(root);
}

/* peak_bytes_in_use / peak_bytes_reserved follow the allocator, survive
 * releases, restart with nnm_ctx_reset_peak_stats; a caller built against the
 * older, shorter nnm_ctx_stats gets only the fields it knows. */
static void test_alloc_peaks(void) {
    nnm_ctx *c = NULL; /* its own context: the suite's has cached blocks */
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &c), NNM_OK);
    int64_t big[1] = {1 << 16}, small[1] = {16};
    nnm_tensor *a = NULL, *b = NULL;
    nnm_ctx_stats s = {sizeof s};
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 1, big, NULL, &a), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 1, small, NULL, &b), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_stats_get(c, &s), NNM_OK);
    CU_ASSERT_EQUAL(s.struct_size, sizeof s);
    CU_ASSERT(s.peak_bytes_in_use >= s.bytes_in_use);
    CU_ASSERT(s.bytes_in_use >= (uint64_t)(1 << 18));
    uint64_t peak = s.peak_bytes_in_use;
    nnm_tensor_release(a); /* into the cache: in use falls, reserved does not */
    CU_ASSERT_EQUAL(nnm_ctx_stats_get(c, &s), NNM_OK);
    CU_ASSERT_EQUAL(s.peak_bytes_in_use, peak);
    CU_ASSERT(s.peak_bytes_reserved >= s.bytes_in_use + s.bytes_cached);
    CU_ASSERT(s.bytes_in_use < peak);
    nnm_ctx_reset_peak_stats(c);
    CU_ASSERT_EQUAL(nnm_ctx_stats_get(c, &s), NNM_OK);
    CU_ASSERT_EQUAL(s.peak_bytes_in_use, s.bytes_in_use);
    CU_ASSERT_EQUAL(s.peak_bytes_reserved, s.bytes_in_use + s.bytes_cached);
    /* the first version's size: peaks untouched */
    nnm_ctx_stats old;
    memset(&old, 0xab, sizeof old);
    old.struct_size = (uint32_t)offsetof(nnm_ctx_stats, peak_bytes_in_use);
    CU_ASSERT_EQUAL(nnm_ctx_stats_get(c, &old), NNM_OK);
    CU_ASSERT_EQUAL(old.struct_size, offsetof(nnm_ctx_stats, peak_bytes_in_use));
    CU_ASSERT_EQUAL(old.live_tensors, s.live_tensors);
    CU_ASSERT_EQUAL(old.peak_bytes_in_use, 0xababababababababull);
    nnm_ctx_reset_peak_stats(NULL); /* no-op */
    nnm_tensor_release(b);
    nnm_ctx_free(c);
}

static void test_tensors_and_cache(void) {
    int64_t shape[2] = {2, 3};
    float v[6] = {1, 2, 3, 4, 5, 6}, back[6];
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 2, shape, v, &t), NNM_OK);
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    CU_ASSERT_EQUAL(d->ndim, 2);
    CU_ASSERT_EQUAL(d->strides[0], 3);
    CU_ASSERT_EQUAL(d->strides[1], 1);
    CU_ASSERT_EQUAL(d->device.type, NNM_DEVICE_CPU);
    CU_ASSERT_EQUAL(((uintptr_t)d->data) % 64, 0);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(t, back, 6), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(v, back, sizeof v), 0);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(t, back, 5), NNM_E_LIMIT);
    void *data = d->data;
    nnm_tensor_release(t);
    /* the same size comes back from the cache */
    nnm_ctx_stats s0 = {sizeof s0}, s1 = {sizeof s1};
    nnm_ctx_stats_get(ctx, &s0);
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 2, shape, NULL, &t), NNM_OK);
    nnm_ctx_stats_get(ctx, &s1);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_desc_get(t)->data, data);
    CU_ASSERT_EQUAL(s1.heap_allocs, s0.heap_allocs);
    CU_ASSERT_EQUAL(s1.cache_hits, s0.cache_hits + 1);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(t, back, 6), NNM_OK);
    CU_ASSERT_EQUAL(back[0], 0.0f); /* NULL data means zeros */
    nnm_tensor_release(t);
    nnm_ctx_empty_cache(ctx);
    nnm_ctx_stats_get(ctx, &s1);
    CU_ASSERT_EQUAL(s1.bytes_cached, 0);

    /* bad shapes and dtypes */
    int64_t bad[2] = {2, -1};
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 2, bad, NULL, &t), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(t);
    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 3, huge, NULL, &t), NNM_E_LIMIT);
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, NNM_MAX_DIMS + 1, shape, NULL, &t), NNM_E_SHAPE);
    nnm_dtype odd = {NNM_DTYPE_FLOAT, 0, 1};
    CU_ASSERT_EQUAL(nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, odd, 1, shape, &t), NNM_E_DTYPE);
    /* without a GPU (or without the cuda plugin) a cuda tensor is a clear error */
    nnm_status st = nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CUDA, 0}, NNM_F32, 1, shape, &t);
    if (st == NNM_OK) {
        nnm_tensor_release(t); /* a GPU machine: tests/cuda covers the device */
    } else {
        CU_ASSERT(st == NNM_E_DEVICE || st == NNM_E_NO_DEVICE);
        CU_ASSERT_PTR_NULL(t);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "cuda"));
    }
    CU_ASSERT_EQUAL(nnm_tensor_numel(NULL), 0);
    CU_ASSERT_PTR_NULL(nnm_tensor_desc_get(NULL));
    nnm_tensor_release(NULL);
}

static int g_deleted;
static void count_delete(nnm_dlpack_tensor *self) {
    (void)self;
    g_deleted++;
}

static void test_dlpack(void) {
    int64_t shape[2] = {2, 2};
    float v[4] = {1, 2, 3, 4};
    nnm_tensor *t = NULL, *u = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 2, shape, v, &t), NNM_OK);
    nnm_dlpack_tensor *dl = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_to_dlpack(t, &dl), NNM_OK);
    CU_ASSERT_EQUAL(dl->version.major, 1);
    CU_ASSERT_PTR_EQUAL(dl->dl_tensor.data, nnm_tensor_desc_get(t)->data); /* zero copy */
    CU_ASSERT_EQUAL(dl->dl_tensor.shape[1], 2);
    nnm_tensor_release(t); /* the export keeps the memory alive */
    CU_ASSERT_EQUAL(((float *)dl->dl_tensor.data)[3], 4.0f);
    /* and back in: still the same memory */
    void *data = dl->dl_tensor.data;
    CU_ASSERT_EQUAL(nnm_tensor_from_dlpack(ctx, dl, &u), NNM_OK);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_desc_get(u)->data, data);
    nnm_tensor_release(u); /* calls the export's deleter: ASan sees no leak */

    /* a foreign tensor with strides (a transposed view) */
    float m[6] = {1, 2, 3, 4, 5, 6};
    int64_t fshape[2] = {3, 2}, fstrides[2] = {1, 3};
    nnm_dlpack_tensor foreign = {{1, 0}, NULL, count_delete, 0,
                                 {m, {NNM_DEVICE_CPU, 0}, 2, {NNM_DTYPE_FLOAT, 32, 1}, fshape, fstrides, 0}};
    g_deleted = 0;
    CU_ASSERT_EQUAL(nnm_tensor_from_dlpack(ctx, &foreign, &u), NNM_OK);
    float back[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(u, back, 6), NNM_OK);
    float want[6] = {1, 4, 2, 5, 3, 6};
    CU_ASSERT_EQUAL(memcmp(back, want, sizeof want), 0);
    CU_ASSERT_EQUAL(g_deleted, 0);
    nnm_tensor_release(u);
    CU_ASSERT_EQUAL(g_deleted, 1);
    /* refused imports still call the deleter (ownership was passed) */
    foreign.version.major = 2;
    CU_ASSERT_EQUAL(nnm_tensor_from_dlpack(ctx, &foreign, &u), NNM_E_VERSION);
    CU_ASSERT_EQUAL(g_deleted, 2);
    foreign.version.major = 1;
    foreign.dl_tensor.device.type = NNM_DEVICE_CUDA;
    CU_ASSERT_NOT_EQUAL(nnm_tensor_from_dlpack(ctx, &foreign, &u), NNM_OK);
    CU_ASSERT_EQUAL(g_deleted, 3);

    /* an empty import is contiguous whatever its strides (NumPy hands out
     * empty arrays with strides 0, and PyTorch's is_contiguous() is true
     * for every empty tensor): reshaping an empty i64 tensor is a view, not
     * a copy refused for its dtype (an empty class-index target broke
     * cross_entropy, an empty index tensor embedding) */
    int64_t eshape[2] = {0, 3}, estrides[2] = {0, 0};
    nnm_dlpack_tensor empty = {{1, 0}, NULL, count_delete, 0,
                               {NULL, {NNM_DEVICE_CPU, 0}, 2, {NNM_DTYPE_INT, 64, 1}, eshape, estrides, 0}};
    CU_ASSERT_EQUAL(nnm_tensor_from_dlpack(ctx, &empty, &u), NNM_OK);
    nnm_tensor *r = NULL;
    const int64_t flat[1] = {0};
    CU_ASSERT_EQUAL(nnm_op_reshape(ctx, u, 1, flat, &r), NNM_OK);
    CU_ASSERT_TRUE(r != NULL && nnm_tensor_numel(r) == 0);
    nnm_tensor_release(r);
    nnm_tensor_release(u);
    CU_ASSERT_EQUAL(g_deleted, 4);
}

static void test_config_errors(void) {
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_module *m = NULL;
    nnm_config_set_str(cfg, "scale", "big");
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "probe", cfg, &m), NNM_E_TYPE);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "probe: config.scale: expected float, got string");
    nnm_config_set_int(cfg, "scale", 2); /* an integer is a fine float; replaces the key */
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "probe", cfg, &m), NNM_OK);
    nnm_module_release(m);
    /* a key the layer never reads is refused, like an unexpected kwarg */
    nnm_config_set_bool(cfg, "sacle", 1);
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "probe", cfg, &m), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "probe: config.sacle: unknown key (not read by the layer)");
    nnm_config_free(cfg);
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "linear", NULL, &m), NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "in_features"));
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "no_such_layer", NULL, &m), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "linear@^9", NULL, &m), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "linear@^x", NULL, &m), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_create(NULL, "linear", NULL, &m), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_config_set_int(NULL, "a", 1), NNM_E_INVALID);
    nnm_config_free(NULL);
}

static void test_device_moves(void) {
    nnm_module *root = tree();
    nnm_device cpu = {NNM_DEVICE_CPU, 0}, cuda = {NNM_DEVICE_CUDA, 0};
    CU_ASSERT_EQUAL(nnm_module_to(root, cpu), NNM_OK); /* no-op */
    nnm_status st = nnm_module_to(root, cuda);
    if (st == NNM_OK) { /* a GPU machine: tests/cuda checks the values */
        CU_ASSERT_EQUAL(nnm_module_device(root).type, NNM_DEVICE_CUDA);
        CU_ASSERT_EQUAL(nnm_module_to(root, cpu), NNM_OK);
    } else { /* no usable cuda backend: a clear error and nothing moved */
        CU_ASSERT(st == NNM_E_DEVICE || st == NNM_E_NO_DEVICE);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "cuda"));
    }
    CU_ASSERT_EQUAL(nnm_module_device(root).type, NNM_DEVICE_CPU);
    CU_ASSERT_EQUAL(nnm_module_to(nnm_module_get(root, "fc1"), cpu), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_to(nnm_module_get(root, "fc1"), cuda), NNM_E_STATE);
    nnm_module_release(root);
}

static void test_plugin_stays_loaded(void) {
    nnm_ctx *c2 = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &c2), NNM_OK);
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_features", 2);
    nnm_config_set_int(cfg, "out_features", 2);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(c2, "linear", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    uint32_t live = 0;
    for (uint32_t i = 0; i < nnm_plugin_count(c2); i++) {
        nnm_plugin_info info = {sizeof info};
        CU_ASSERT_EQUAL(nnm_plugin_info_get(c2, i, &info), NNM_OK);
        if (info.name && strcmp(info.name, "linear") == 0) live = info.live_modules;
    }
    CU_ASSERT_EQUAL(live, 1);
    /* the context goes first; the module keeps its plugin and backend */
    nnm_ctx_free(c2);
    int64_t shape[2] = {1, 2};
    float v[2] = {1, 1};
    nnm_tensor *x = NULL, *y = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(nnm_module_ctx(m), 2, shape, v, &x), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m); /* frees the context too: LSan checks */
}

static void test_null_arguments(void) {
    CU_ASSERT_EQUAL(nnm_ctx_new(NULL, NULL), NNM_E_INVALID);
    nnm_ctx_options bad = {2};
    nnm_ctx *c = (nnm_ctx *)&bad;
    CU_ASSERT_EQUAL(nnm_ctx_new(&bad, &c), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(c);
    nnm_ctx_free(NULL);
    CU_ASSERT_PTR_NOT_NULL(nnm_ctx_errmsg(NULL));
    CU_ASSERT_EQUAL(nnm_plugin_load(NULL, "x"), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_plugin_load(ctx, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_plugin_count(NULL), 0);
    nnm_module_release(NULL);
    nnm_module_retain(NULL);
    CU_ASSERT_EQUAL(nnm_module_train(NULL, 1), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_repr(NULL, NULL, 0), -1);
    CU_ASSERT_STRING_EQUAL(nnm_module_name(NULL), "");
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(NULL, NULL, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook(ctx, NULL, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_STRING_EQUAL(nnm_status_name(NNM_E_SHAPE), "NNM_E_SHAPE");
    CU_ASSERT_STRING_EQUAL(nnm_status_name(12345), "unknown");
    CU_ASSERT_STRING_EQUAL(nnm_version(), NNM_VERSION_STRING);
    uint16_t ma = 0, mi = 0;
    nnm_abi_version(&ma, &mi);
    CU_ASSERT_EQUAL(ma, NNM_ABI_MAJOR);
    CU_ASSERT_EQUAL(mi, NNM_ABI_MINOR);
}

int main(void) {
    CU_pSuite s = tu_suite("runtime", suite_init, suite_fini);
    if (s == NULL)
        return 1;
    CU_add_test(s, "parameter and module names like state_dict", test_names_like_state_dict);
    CU_add_test(s, "tree rules: names, one parent, no cycles", test_tree_rules);
    CU_add_test(s, "wide modules: names found and refused at any width", test_wide_module_names);
    CU_add_test(s, "wide configs: keys found, replaced in place, in order", test_wide_config_keys);
    CU_add_test(s, "printed tree like print(model)", test_repr);
    CU_add_test(s, "tensors and the caching allocator", test_tensors_and_cache);
    CU_add_test(s, "the allocator's high-water marks", test_alloc_peaks);
    CU_add_test(s, "DLPack export and import", test_dlpack);
    CU_add_test(s, "config errors name the key", test_config_errors);
    CU_add_test(s, "device moves", test_device_moves);
    CU_add_test(s, "plugin stays loaded while a module lives", test_plugin_stays_loaded);
    CU_add_test(s, "NULL arguments", test_null_arguments);
    return tu_run();
}
