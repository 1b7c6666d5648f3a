/* tests/cuda/test_cuda.c - the cuda backend.
 *
 * The suite first asks the runtime for a tensor on cuda:0 through the public
 * API. Where that fails with NNM_E_NO_DEVICE (no GPU or no driver) or
 * NNM_E_DEVICE (the cuda plugin was not built), it prints one line
 *     test_cuda: SKIPPED: <the runtime's message>
 * and runs only the tests of a clean failure: the status and message, nothing
 * allocated or leaked, a CPU model still working in the same context, and
 * nnm_module_to(model, cuda) failing with nothing moved; plus, when the plugin
 * was built, its descriptor and its init/argument checks driven directly.
 *
 * Where a device exists it also runs
 *  - conformance: nnm_cuda.so and nnm_cpu.so are dlopened and driven directly
 *    (as tests/layers/test_cpu_backend.c does) on the same inputs - random,
 *    broadcast, strided, transposed, offset, 8-d, empty and 0-d operands,
 *    gemm with both transpose flags and padded leading dims, every unary op
 *    (SCALE included), every binary op, fill, memcpy in every direction - and
 *    the whole output buffer (padding included) is compared;
 *  - the public API: Sequential(Linear, ReLU, Linear) moved to cuda with
 *    nnm_module_to, its forward compared with the CPU one (1e-5 relative),
 *    moved back (bit-identical CPU forward), and a steady-state forward loop
 *    on the GPU that makes no new heap allocation (nnm_ctx_stats_get).
 */
#include "test_util.h"

#include <ctype.h>
#include <dlfcn.h>

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding the plugins"
#endif
#ifndef NNM_TEST_HAVE_CUDA_PLUGIN
#define NNM_TEST_HAVE_CUDA_PLUGIN 0
#endif

static const nnm_device CUDA0 = {NNM_DEVICE_CUDA, 0};
static const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static nnm_status g_probe = NNM_OK; /* what nnm_tensor_new on cuda:0 returned */
static char g_probe_msg[1024];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int contains_ci(const char *hay, const char *needle) {
    if (hay == NULL || needle == NULL)
        return 0;
    const size_t n = strlen(needle);
    for (; *hay != '\0'; hay++) {
        size_t i = 0;
        while (i < n && hay[i] != '\0' &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static uint32_t g_rng = 12345u; /* tu_rand's state: the inputs are the same every run */

/* Models --------------------------------------------------------------------- */

/* Sequential(Linear(in, hidden), ReLU, Linear(hidden, out)) on the CPU. */
static nnm_module *make_mlp(int64_t in, int64_t hidden, int64_t out) {
    nnm_module *seq = NULL, *relu = NULL;
    if (nnm_module_create(g_ctx, "sequential@^1", NULL, &seq) != NNM_OK ||
        nnm_module_create(g_ctx, "relu@^1", NULL, &relu) != NNM_OK) {
        fprintf(stderr, "\n  create sequential/relu: %s\n", nnm_ctx_errmsg(g_ctx));
        nnm_module_release(seq);
        nnm_module_release(relu);
        return NULL;
    }
    nnm_module *l1 = tu_linear(g_ctx, "linear@^1", in, hidden, -1);
    nnm_module *l2 = tu_linear(g_ctx, "linear@^1", hidden, out, -1);
    int ok = l1 != NULL && l2 != NULL && nnm_module_add_child(seq, NULL, l1) == NNM_OK &&
             nnm_module_add_child(seq, NULL, relu) == NNM_OK &&
             nnm_module_add_child(seq, NULL, l2) == NNM_OK;
    nnm_module_release(l1); /* the parent holds its own references */
    nnm_module_release(relu);
    nnm_module_release(l2);
    if (!ok) {
        nnm_module_release(seq);
        return NULL;
    }
    return seq;
}

/* Parameters with their device and data pointer, in visiting order. */
#define MAX_PARAMS 16
typedef struct param_snap {
    int n;
    nnm_device dev[MAX_PARAMS];
    void *data[MAX_PARAMS];
} param_snap;

static nnm_status snap_param(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    param_snap *s = user;
    if (s->n < MAX_PARAMS) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
        s->dev[s->n] = d->device;
        s->data[s->n] = d->data;
    }
    s->n++;
    return NNM_OK;
}

static param_snap params_of(nnm_module *m) {
    param_snap s;
    memset(&s, 0, sizeof s);
    CU_ASSERT_EQUAL(nnm_module_named_parameters(m, snap_param, &s), NNM_OK);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Backends driven directly, through a minimal host                          */
/* ------------------------------------------------------------------------ */

static tu_fake_host g_fake; /* pass &g_fake.env; g_fake.msg holds what a backend reported */

typedef struct backend {
    void *dl;
    const nnm_plugin_desc *desc;
    const nnm_backend_vtable *vt;
    void *state;
    int started;
} backend;

static backend g_cpu, g_gpu;

/* dlopens plugins/<file> and takes its one backend (init not called). */
static int backend_open(backend *b, const char *file) {
    memset(b, 0, sizeof *b);
    tu_fake_host_init(&g_fake);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NNM_TEST_PLUGIN_DIR, file);
    b->desc = tu_plugin_open(path, &b->dl);
    if (b->desc == NULL || b->desc->n_backends != 1 || b->desc->backends == NULL)
        return 0;
    b->vt = b->desc->backends[0];
    return b->vt != NULL;
}

static void backend_close(backend *b) {
    if (b->started && b->vt->shutdown != NULL)
        b->vt->shutdown(b->state);
    if (b->dl != NULL)
        dlclose(b->dl);
    memset(b, 0, sizeof *b);
}

static int backend_start(backend *b) {
    tu_fake_host_reset(&g_fake);
    nnm_status st = b->vt->init(&g_fake.env, &b->state);
    if (st != NNM_OK) {
        fprintf(stderr, "%s init: %s: %s\n", b->vt->name, nnm_status_name(st), g_fake.msg);
        return 0;
    }
    b->started = 1;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* No device: the failure is clean                                           */
/* ------------------------------------------------------------------------ */

/* The plugin's record in the context, or -1. */
static int cuda_record(nnm_plugin_info *info) {
    for (uint32_t i = 0; i < nnm_plugin_count(g_ctx); i++) {
        memset(info, 0, sizeof *info);
        info->struct_size = sizeof *info;
        if (nnm_plugin_info_get(g_ctx, i, info) == NNM_OK && info->name != NULL &&
            strcmp(info->name, "cuda") == 0)
            return (int)i;
    }
    return -1;
}

static void test_no_device_is_clean(void) {
    CU_ASSERT_TRUE(g_probe == NNM_E_NO_DEVICE || g_probe == NNM_E_DEVICE);
    CU_ASSERT_TRUE(contains_ci(g_probe_msg, "cuda"));
    nnm_plugin_info info;
    const int rec = cuda_record(&info);
    if (NNM_TEST_HAVE_CUDA_PLUGIN) {
        /* built: it loads everywhere, and only its init says "no device" */
        CU_ASSERT_TRUE_FATAL(rec >= 0);
        CU_ASSERT_EQUAL(info.status, NNM_OK);
        CU_ASSERT_EQUAL(info.n_backends, 1);
        CU_ASSERT_STRING_EQUAL(info.error, "");
        if (g_probe == NNM_E_NO_DEVICE)
            CU_ASSERT_TRUE(strstr(g_probe_msg, "no CUDA device") != NULL);
    }

    const nnm_ctx_stats s0 = tu_stats(g_ctx);

    /* asking again gives the same answer, and *out is NULL */
    nnm_tensor *t = (nnm_tensor *)(void *)&info; /* a non-NULL sentinel */
    CHECK_STATUS(nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 2, (int64_t[]){3, 4}, &t), g_probe);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_TRUE(contains_ci(nnm_ctx_errmsg(g_ctx), "cuda"));
    t = (nnm_tensor *)(void *)&info;
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CUDA, 3}, NNM_F32, 1,
                                (int64_t[]){1}, &t),
                 g_probe);
    CU_ASSERT_PTR_NULL(t);

    /* a CPU model works in the same context, before and after */
    nnm_module *mlp = make_mlp(6, 10, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mlp);
    float xv[4 * 6];
    tu_fill_rand(&g_rng, xv, 24);
    nnm_tensor *x = NULL, *y1 = NULL, *y2 = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 2, (int64_t[]){4, 6}, xv, &x), NNM_OK);
    CHECK_STATUS(tu_call1(mlp, x, &y1), NNM_OK);

    /* nnm_module_to(cuda) fails with nothing moved and nothing allocated */
    const param_snap before = params_of(mlp);
    CU_ASSERT_EQUAL(before.n, 4);
    const nnm_ctx_stats s1 = tu_stats(g_ctx);
    CHECK_STATUS(nnm_module_to(mlp, CUDA0), g_probe);
    CU_ASSERT_TRUE(contains_ci(nnm_ctx_errmsg(g_ctx), "cuda"));
    const nnm_ctx_stats s2 = tu_stats(g_ctx);
    CU_ASSERT_EQUAL(s2.heap_allocs, s1.heap_allocs);
    CU_ASSERT_EQUAL(s2.bytes_in_use, s1.bytes_in_use);
    CU_ASSERT_EQUAL(s2.live_tensors, s1.live_tensors);
    CU_ASSERT_EQUAL(nnm_module_device(mlp).type, NNM_DEVICE_CPU);
    const param_snap after = params_of(mlp);
    CU_ASSERT_EQUAL(after.n, before.n);
    for (int i = 0; i < before.n && i < MAX_PARAMS; i++) {
        CU_ASSERT_EQUAL(after.dev[i].type, NNM_DEVICE_CPU);
        CU_ASSERT_PTR_EQUAL(after.data[i], before.data[i]);
    }
    CHECK_STATUS(tu_call1(mlp, x, &y2), NNM_OK);
    if (y1 != NULL && y2 != NULL) {
        float a[12], b[12];
        CHECK_STATUS(nnm_tensor_to_f32(y1, a, 12), NNM_OK);
        CHECK_STATUS(nnm_tensor_to_f32(y2, b, 12), NNM_OK);
        CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    }
    nnm_tensor_release(y1);
    nnm_tensor_release(y2);
    nnm_tensor_release(x);
    nnm_module_release(mlp);

    /* nothing leaked; the failed calls allocated nothing on any device */
    const nnm_ctx_stats s3 = tu_stats(g_ctx);
    CU_ASSERT_EQUAL(s3.live_tensors, s0.live_tensors);
    CU_ASSERT_EQUAL(s3.live_modules, s0.live_modules);
    CU_ASSERT_EQUAL(s3.bytes_in_use, s0.bytes_in_use);
}

/* The plugin itself: descriptor, init's answer, argument checks that need no
 * device. Runs with or without a GPU. */
static void test_plugin_direct(void) {
    backend b;
    CU_ASSERT_TRUE_FATAL(backend_open(&b, "nnm_cuda.so"));
    const nnm_backend_vtable *vt = b.vt;
    CU_ASSERT_EQUAL(b.desc->struct_size, sizeof(nnm_plugin_desc));
    CU_ASSERT_EQUAL(b.desc->abi_major, NNM_ABI_MAJOR);
    CU_ASSERT_STRING_EQUAL(b.desc->name, "cuda");
    CU_ASSERT_EQUAL(b.desc->n_layers, 0);
    CU_ASSERT_EQUAL(vt->struct_size, sizeof(nnm_backend_vtable));
    CU_ASSERT_STRING_EQUAL(vt->name, "cuda");
    CU_ASSERT_EQUAL(vt->device_type, NNM_DEVICE_CUDA);
    CU_ASSERT_EQUAL(vt->version_major, 1);
    CU_ASSERT_EQUAL(vt->version_minor, 1);
    CU_ASSERT_EQUAL(vt->version_patch, 0);
    CU_ASSERT_PTR_NOT_NULL(vt->init);
    CU_ASSERT_PTR_NOT_NULL(vt->shutdown);
    CU_ASSERT_PTR_NOT_NULL(vt->alloc);
    CU_ASSERT_PTR_NOT_NULL(vt->free);
    CU_ASSERT_PTR_NOT_NULL(vt->memcpy);
    CU_ASSERT_PTR_NOT_NULL(vt->fill);
    CU_ASSERT_PTR_NOT_NULL(vt->gemm);
    CU_ASSERT_PTR_NOT_NULL(vt->binary);
    CU_ASSERT_PTR_NOT_NULL(vt->unary);

    /* init: exactly one message; on failure, no state */
    tu_fake_host_reset(&g_fake);
    void *state = (void *)&b; /* a non-NULL sentinel */
    nnm_status st = vt->init(&g_fake.env, &state);
    if (g_probe == NNM_OK) {
        CU_ASSERT_EQUAL(st, NNM_OK);
        CU_ASSERT_EQUAL(g_fake.n_errors, 0);
    } else {
        CU_ASSERT_TRUE(st == NNM_E_NO_DEVICE || st == NNM_E_DEVICE);
        CU_ASSERT_PTR_NULL(state);
        CU_ASSERT_EQUAL(g_fake.n_errors, 1);
        if (st == NNM_E_NO_DEVICE)
            CU_ASSERT_EQUAL(strncmp(g_fake.msg, "no CUDA device: ", 16), 0);
        state = NULL;
    }
    CU_ASSERT_EQUAL(vt->init(&g_fake.env, NULL), NNM_E_INVALID);

    /* argument checks that fail before touching any device */
    void *p = (void *)&b;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(vt->alloc(&g_fake.env, state, 0, 64, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->alloc(&g_fake.env, state, -1, 64, &p), state ? NNM_E_DEVICE : NNM_E_STATE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(vt->gemm(&g_fake.env, state, NULL), NNM_E_INVALID);
    nnm_gemm_args g;
    memset(&g, 0, sizeof g);
    g.struct_size = 8;
    CU_ASSERT_EQUAL(vt->gemm(&g_fake.env, state, &g), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->binary(&g_fake.env, state, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->unary(&g_fake.env, state, NULL), NNM_E_INVALID);
    nnm_binary_args ba = {sizeof ba, 42, NULL, NULL, NULL};
    CU_ASSERT_EQUAL(vt->binary(&g_fake.env, state, &ba), NNM_E_UNSUPPORTED);
    nnm_unary_args ua = {sizeof ua, -1, 0.0, NULL, NULL};
    CU_ASSERT_EQUAL(vt->unary(&g_fake.env, state, &ua), NNM_E_UNSUPPORTED);
    ua.op = NNM_UNARY_COPY;
    CU_ASSERT_EQUAL(vt->unary(&g_fake.env, state, &ua), state ? NNM_E_INVALID : NNM_E_STATE);
    CU_ASSERT_EQUAL(vt->fill(&g_fake.env, state, NULL, 1.0), state ? NNM_E_INVALID : NNM_E_STATE);
    CU_ASSERT_EQUAL(vt->memcpy(&g_fake.env, state, NULL, CUDA0, NULL, CPU0, 0),
                    state ? NNM_OK : NNM_E_STATE);
    /* one message per failing call: 11 without a state, 10 with one (memcpy of 0 bytes is fine) */
    CU_ASSERT_EQUAL(g_fake.n_errors, state ? 10 : 11);
    vt->free(state, 0, NULL); /* harmless */
    if (state != NULL)
        vt->shutdown(state);
    vt->shutdown(NULL); /* harmless */
    backend_close(&b);
}

/* ------------------------------------------------------------------------ */
/* Conformance (device only): the cuda backend against the cpu backend       */
/* ------------------------------------------------------------------------ */

static int conformance_init(void) {
    if (!backend_open(&g_cpu, "nnm_cpu.so") || !backend_start(&g_cpu))
        return 1;
    if (!backend_open(&g_gpu, "nnm_cuda.so") || !backend_start(&g_gpu))
        return 1;
    return 0;
}

static int conformance_clean(void) {
    backend_close(&g_gpu);
    backend_close(&g_cpu);
    return 0;
}

/* Device memory through the cuda backend. */
static float *dev_alloc(size_t n) {
    void *p = NULL;
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, n * sizeof(float), &p);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda alloc: %s\n", g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    return p;
}
static void dev_free(void *p) {
    g_gpu.vt->free(g_gpu.state, 0, p);
}
static float *dev_upload(const float *h, size_t n) {
    float *d = dev_alloc(n);
    if (d != NULL && n > 0)
        CU_ASSERT_EQUAL(
            g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d, CUDA0, h, CPU0, n * sizeof(float)),
            NNM_OK);
    return d;
}
static void dev_download(float *h, const float *d, size_t n) {
    if (n > 0)
        CU_ASSERT_EQUAL(
            g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, h, CPU0, d, CUDA0, n * sizeof(float)),
            NNM_OK);
}

/* A view: shape, strides (elements, >= 0) and offset (elements) into a buffer. */
typedef struct view {
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
    uint64_t off;
} view;

static view vcontig(int32_t ndim, const int64_t *shape) {
    view v;
    memset(&v, 0, sizeof v);
    v.ndim = ndim;
    int64_t st = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        v.shape[i] = shape[i];
        v.strides[i] = st;
        st *= shape[i];
    }
    return v;
}

static view vstrided(int32_t ndim, const int64_t *shape, const int64_t *strides, uint64_t off) {
    view v = vcontig(ndim, shape);
    for (int32_t i = 0; i < ndim; i++)
        v.strides[i] = strides[i];
    v.off = off;
    return v;
}

/* Elements of buffer a view needs (at least 1). */
static size_t vspan(const view *v) {
    int64_t last = 0;
    for (int32_t i = 0; i < v->ndim; i++) {
        if (v->shape[i] == 0)
            return (size_t)v->off + 1;
        last += (v->shape[i] - 1) * v->strides[i];
    }
    return (size_t)(v->off + (uint64_t)last) + 1;
}

/* The descriptor of a view over `base` on `dev`. The view must outlive it. */
static nnm_tensor_desc vdesc(view *v, float *base, nnm_device dev) {
    nnm_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.data = base;
    d.device = dev;
    d.ndim = v->ndim;
    d.dtype = NNM_F32;
    d.shape = v->shape;
    d.strides = v->strides;
    d.byte_offset = v->off * sizeof(float);
    return d;
}

/* Random host data, with a few NaNs and infinities when `special`. */
static float *host_rand(size_t n, int special) {
    float *h = malloc(n * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    tu_fill_rand(&g_rng, h, n);
    if (special && n > 8) {
        h[1] = NAN;
        h[n / 2] = INFINITY;
        h[n - 2] = -INFINITY;
        h[n / 3] = -0.0f;
    }
    return h;
}

/* Runs op on the cpu and on the cuda backend over the same views and data and
 * compares the whole output buffer. kind: 'u' unary, 'b' binary, 'f' fill. */
static void run_elementwise(const char *what, char kind, int32_t op, double alpha, view *vo,
                            view *va, view *vb, double rtol, double atol) {
    const size_t no = vspan(vo), na = va ? vspan(va) : 0, nb = vb ? vspan(vb) : 0;
    float *ho = host_rand(no, 0);
    float *ha = va ? host_rand(na, 1) : NULL;
    float *hb = vb ? host_rand(nb, 1) : NULL;
    float *got = malloc(no * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    float *dout = dev_upload(ho, no);
    float *da = va ? dev_upload(ha, na) : NULL;
    float *db = vb ? dev_upload(hb, nb) : NULL;

    nnm_tensor_desc co = vdesc(vo, ho, CPU0), go = vdesc(vo, dout, CUDA0);
    nnm_tensor_desc ca, ga, cb, gb;
    if (va) {
        ca = vdesc(va, ha, CPU0);
        ga = vdesc(va, da, CUDA0);
    }
    if (vb) {
        cb = vdesc(vb, hb, CPU0);
        gb = vdesc(vb, db, CUDA0);
    }
    nnm_status sc, sg;
    tu_fake_host_reset(&g_fake);
    if (kind == 'f') {
        sc = g_cpu.vt->fill(&g_fake.env, g_cpu.state, &co, alpha);
        sg = g_gpu.vt->fill(&g_fake.env, g_gpu.state, &go, alpha);
    } else if (kind == 'u') {
        nnm_unary_args c = {sizeof c, op, alpha, &ca, &co}, g = {sizeof g, op, alpha, &ga, &go};
        sc = g_cpu.vt->unary(&g_fake.env, g_cpu.state, &c);
        sg = g_gpu.vt->unary(&g_fake.env, g_gpu.state, &g);
    } else {
        nnm_binary_args c = {sizeof c, op, &ca, &cb, &co}, g = {sizeof g, op, &ga, &gb, &go};
        sc = g_cpu.vt->binary(&g_fake.env, g_cpu.state, &c);
        sg = g_gpu.vt->binary(&g_fake.env, g_gpu.state, &g);
    }
    if (sc != NNM_OK || sg != NNM_OK)
        fprintf(stderr, "\n  %s op %d: cpu %s, cuda %s: %s", what, (int)op, nnm_status_name(sc),
                nnm_status_name(sg), g_fake.msg);
    CU_ASSERT_EQUAL(sc, NNM_OK);
    CU_ASSERT_EQUAL(sg, NNM_OK);
    dev_download(got, dout, no);
    char label[128];
    snprintf(label, sizeof label, "%s op %d", what, (int)op);
    CU_ASSERT_EQUAL(tu_count_mismatch(label, got, ho, no, rtol, atol, TU_MATCH_NONFINITE), 0);
    dev_free(dout);
    dev_free(da);
    dev_free(db);
    free(ho);
    free(ha);
    free(hb);
    free(got);
}

/* Shapes every elementwise op is run over: out, a, b. */
typedef struct ecase {
    const char *name;
    view o, a, b;
} ecase;

#define NCASES 11
static void make_cases(ecase *c) {
    int n = 0;
    /* contiguous */
    c[n].name = "contiguous";
    c[n].o = c[n].a = c[n].b = vcontig(2, (int64_t[]){37, 53});
    n++;
    /* long 1-d, several blocks with a tail */
    c[n].name = "long 1-d";
    c[n].o = c[n].a = c[n].b = vcontig(1, (int64_t[]){300001});
    n++;
    /* bias broadcast along rows, the runtime's way (stride 0) */
    c[n].name = "row broadcast";
    c[n].o = c[n].a = vcontig(2, (int64_t[]){7, 9});
    c[n].b = vstrided(2, (int64_t[]){7, 9}, (int64_t[]){0, 1}, 0);
    n++;
    /* size-1 dims (column broadcast) and a scalar (all strides 0) */
    c[n].name = "size-1 and scalar broadcast";
    c[n].o = vcontig(2, (int64_t[]){7, 9});
    c[n].a = vstrided(2, (int64_t[]){7, 1}, (int64_t[]){1, 1}, 2);
    c[n].b = vstrided(2, (int64_t[]){7, 9}, (int64_t[]){0, 0}, 5);
    n++;
    /* transposed a, padded and offset b */
    c[n].name = "transposed and padded";
    c[n].o = vcontig(2, (int64_t[]){6, 5});
    c[n].a = vstrided(2, (int64_t[]){6, 5}, (int64_t[]){1, 6}, 0);
    c[n].b = vstrided(2, (int64_t[]){6, 5}, (int64_t[]){11, 2}, 3);
    n++;
    /* strided output */
    c[n].name = "strided output";
    c[n].o = vstrided(2, (int64_t[]){13, 7}, (int64_t[]){16, 2}, 5);
    c[n].a = vcontig(2, (int64_t[]){13, 7});
    c[n].b = vstrided(2, (int64_t[]){13, 7}, (int64_t[]){1, 13}, 1);
    n++;
    /* 8 dims, nothing mergeable: column-major a, broadcast dims in b */
    {
        const int64_t sh[8] = {2, 3, 1, 2, 3, 1, 2, 2};
        int64_t cm[8], bs[8];
        int64_t s = 1;
        for (int i = 0; i < 8; i++) {
            cm[i] = s;
            s *= sh[i];
        }
        view cont = vcontig(8, sh);
        for (int i = 0; i < 8; i++)
            bs[i] = (i % 3 == 1) ? 0 : cont.strides[i];
        c[n].name = "8-d";
        c[n].o = vstrided(8, sh, (int64_t[]){144, 48, 48, 24, 8, 8, 4, 2}, 1);
        c[n].a = vstrided(8, sh, cm, 0);
        c[n].b = vstrided(8, sh, bs, 0);
        n++;
    }
    /* 3-d permuted with a merged pair */
    c[n].name = "3-d permuted";
    c[n].o = vcontig(3, (int64_t[]){4, 5, 6});
    c[n].a = vstrided(3, (int64_t[]){4, 5, 6}, (int64_t[]){1, 24, 4}, 0);
    c[n].b = vstrided(3, (int64_t[]){4, 5, 6}, (int64_t[]){0, 6, 1}, 0);
    n++;
    /* empty */
    c[n].name = "empty";
    c[n].o = c[n].a = c[n].b = vcontig(2, (int64_t[]){0, 5});
    n++;
    /* 0-d */
    c[n].name = "0-d";
    c[n].o = c[n].a = c[n].b = vcontig(0, NULL);
    c[n].a.off = 3;
    n++;
    /* 1 x 1 x n */
    c[n].name = "size-1 dims";
    c[n].o = c[n].a = c[n].b = vcontig(3, (int64_t[]){1, 1, 129});
    n++;
}

static void test_conf_binary(void) {
    ecase cases[NCASES];
    make_cases(cases);
    for (int32_t op = NNM_BINARY_ADD; op <= NNM_BINARY_MIN; op++)
        for (int i = 0; i < NCASES; i++)
            run_elementwise(cases[i].name, 'b', op, 0.0, &cases[i].o, &cases[i].a, &cases[i].b,
                            1e-6, 0.0);
}

static void test_conf_unary(void) {
    ecase cases[NCASES];
    make_cases(cases);
    for (int32_t op = NNM_UNARY_COPY; op <= NNM_UNARY_SCALE; op++) {
        const double alpha = op == NNM_UNARY_SCALE ? -1.75 : 0.0;
        for (int i = 0; i < NCASES; i++) {
            /* x read through a's view, and through b's (broadcasts) */
            run_elementwise(cases[i].name, 'u', op, alpha, &cases[i].o, &cases[i].a, NULL, 1e-5,
                            1e-6);
            run_elementwise(cases[i].name, 'u', op, alpha, &cases[i].o, &cases[i].b, NULL, 1e-5,
                            1e-6);
        }
    }
}

static void test_conf_fill(void) {
    ecase cases[NCASES];
    make_cases(cases);
    for (int i = 0; i < NCASES; i++) {
        run_elementwise(cases[i].name, 'f', 0, 3.25, &cases[i].o, NULL, NULL, 0.0, 0.0);
        run_elementwise(cases[i].name, 'f', 0, -1e-3, &cases[i].o, NULL, NULL, 0.0, 0.0);
    }
}

/* One gemm on both backends with padded leading dims; C starts random (or
 * NaN when beta is 0, which must be overwritten, as BLAS does). */
static void run_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    const int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
    const size_t na = (size_t)((ta ? k : m) * lda) + 1, nb = (size_t)((tb ? n : k) * ldb) + 1;
    const size_t nc = (size_t)(m * ldc) + 1;
    float *ha = host_rand(na, 0), *hb = host_rand(nb, 0), *hc = host_rand(nc, 0);
    if (beta == 0.0f)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                hc[i * ldc + j] = NAN;
    float *got = malloc(nc * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    float *da = dev_upload(ha, na), *db = dev_upload(hb, nb), *dc = dev_upload(hc, nc);
    nnm_gemm_args c = {sizeof c, ta, tb, m, n, k, alpha, beta, ha, lda, hb, ldb, hc, ldc};
    nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, alpha, beta, da, lda, db, ldb, dc, ldc};
    tu_fake_host_reset(&g_fake);
    nnm_status sc = g_cpu.vt->gemm(&g_fake.env, g_cpu.state, &c);
    nnm_status sg = g_gpu.vt->gemm(&g_fake.env, g_gpu.state, &g);
    if (sc != NNM_OK || sg != NNM_OK)
        fprintf(stderr, "\n  gemm: cpu %s, cuda %s: %s", nnm_status_name(sc), nnm_status_name(sg),
                g_fake.msg);
    CU_ASSERT_EQUAL(sc, NNM_OK);
    CU_ASSERT_EQUAL(sg, NNM_OK);
    dev_download(got, dc, nc);
    char label[128];
    snprintf(label, sizeof label, "gemm ta=%d tb=%d m=%lld n=%lld k=%lld beta=%g", ta, tb,
             (long long)m, (long long)n, (long long)k, (double)beta);
    /* summation order differs: |error| <= k * eps * sum|a||b| (values in [-2, 2)) */
    const double atol = 1e-6 * (double)(k + 1) * 4.0 * fabs((double)alpha) + 1e-6;
    CU_ASSERT_EQUAL(tu_count_mismatch(label, got, hc, nc, 1e-5, atol, TU_MATCH_NONFINITE), 0);
    dev_free(da);
    dev_free(db);
    dev_free(dc);
    free(ha);
    free(hb);
    free(hc);
    free(got);
}

static void test_conf_gemm(void) {
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++) {
            run_gemm(ta, tb, 33, 17, 29, 1.5f, 0.5f);
            run_gemm(ta, tb, 33, 17, 29, 1.0f, 0.0f);
            run_gemm(ta, tb, 1, 40, 7, 1.0f, 1.0f);
            run_gemm(ta, tb, 40, 1, 7, -2.0f, 0.0f);
            run_gemm(ta, tb, 128, 96, 160, 1.0f, 0.0f);
        }
    /* k == 0: C = beta * C */
    run_gemm(0, 1, 5, 6, 0, 1.0f, 0.0f);
    run_gemm(0, 1, 5, 6, 0, 1.0f, 2.0f);
    /* m == 0 or n == 0: nothing to do */
    run_gemm(0, 0, 0, 6, 4, 1.0f, 0.0f);
    run_gemm(1, 1, 5, 0, 4, 1.0f, 0.0f);

    /* a host pointer is refused before cuBLAS sees it */
    float host_c[4] = {0};
    float *d = dev_alloc(4);
    nnm_gemm_args g = {sizeof g, 0, 0, 2, 2, 2, 1.0f, 0.0f, d, 2, d, 2, host_c, 2};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_gpu.vt->gemm(&g_fake.env, g_gpu.state, &g), NNM_E_DEVICE);
    CU_ASSERT_TRUE(strstr(g_fake.msg, "not CUDA device memory") != NULL);
    g.c = d;
    g.ldc = 1; /* < n */
    CU_ASSERT_EQUAL(g_gpu.vt->gemm(&g_fake.env, g_gpu.state, &g), NNM_E_INVALID);
    dev_free(d);
}

static void test_conf_memory(void) {
    /* alloc: any size, 0 included (unique pointers), aligned */
    const size_t sizes[] = {0, 1, 63, 64, 65, 4096, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = NULL;
        CU_ASSERT_EQUAL(g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, sizes[i], &p), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL(p);
        CU_ASSERT_EQUAL((uintptr_t)p % 64u, 0);
        dev_free(p);
    }
    void *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, 0, &a), NNM_OK);
    CU_ASSERT_EQUAL(g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, 0, &b), NNM_OK);
    CU_ASSERT_PTR_NOT_EQUAL(a, b);
    dev_free(a);
    dev_free(b);
    dev_free(NULL);
    /* no such device; too much memory (and the backend still works after) */
    void *p = (void *)&a;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 4096, 64, &p), NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, (size_t)1 << 52, &p), NNM_E_NOMEM);
    CU_ASSERT_PTR_NULL(p);

    /* memcpy: H2D, D2D (offset), D2H, H2H; bad devices */
    enum { N = 1000 };
    float h[N], back[N];
    tu_fill_rand(&g_rng, h, N);
    float *d1 = dev_upload(h, N), *d2 = dev_alloc(N);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d2, CUDA0, d1 + 10, CUDA0,
                                     (N - 10) * sizeof(float)),
                    NNM_OK);
    memset(back, 0, sizeof back);
    dev_download(back, d2, N - 10);
    CU_ASSERT_EQUAL(memcmp(back, h + 10, (N - 10) * sizeof(float)), 0);
    float h2[N];
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, h2, CPU0, h, CPU0, sizeof h),
                    NNM_OK);
    CU_ASSERT_EQUAL(memcmp(h2, h, sizeof h), 0);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d2, CUDA0, h, CPU0, 0), NNM_OK);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d2,
                                     (nnm_device){NNM_DEVICE_CUDA, 4096}, h, CPU0, 4),
                    NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d2, CUDA0, h, (nnm_device){7, 0}, 4),
                    NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, NULL, CUDA0, h, CPU0, 4),
                    NNM_E_INVALID);
    dev_free(d1);
    dev_free(d2);
}

static void test_conf_errors(void) {
    float *d = dev_alloc(16);
    view v = vcontig(2, (int64_t[]){4, 4});
    nnm_tensor_desc good = vdesc(&v, d, CUDA0);
    nnm_tensor_desc on_cpu = vdesc(&v, d, CPU0);
    nnm_tensor_desc f64 = good;
    f64.dtype = (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1};
    nnm_tensor_desc other = vdesc(&v, d, (nnm_device){NNM_DEVICE_CUDA, 4096});
    nnm_tensor_desc odd = good;
    odd.byte_offset = 2;
    view w = vcontig(2, (int64_t[]){4, 3});
    nnm_tensor_desc narrow = vdesc(&w, d, CUDA0);
    struct {
        const nnm_tensor_desc *x;
        nnm_status want;
    } bad[] = {{&on_cpu, NNM_E_DEVICE}, {&f64, NNM_E_DTYPE}, {&other, NNM_E_DEVICE},
               {&odd, NNM_E_INVALID},   {&narrow, NNM_E_SHAPE}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_fake_host_reset(&g_fake);
        nnm_unary_args u = {sizeof u, NNM_UNARY_EXP, 0.0, bad[i].x, &good};
        CU_ASSERT_EQUAL(g_gpu.vt->unary(&g_fake.env, g_gpu.state, &u), bad[i].want);
        nnm_binary_args b = {sizeof b, NNM_BINARY_ADD, &good, bad[i].x, &good};
        CU_ASSERT_EQUAL(g_gpu.vt->binary(&g_fake.env, g_gpu.state, &b), bad[i].want);
        CU_ASSERT_EQUAL(g_fake.n_errors, 2);
        CU_ASSERT_TRUE(strncmp(g_fake.msg, "cuda ", 5) == 0);
    }
    CU_ASSERT_EQUAL(g_gpu.vt->fill(&g_fake.env, g_gpu.state, &f64, 0.0), NNM_E_DTYPE);
    CU_ASSERT_EQUAL(g_gpu.vt->fill(&g_fake.env, g_gpu.state, &on_cpu, 0.0), NNM_E_DEVICE);
    dev_free(d);
}

/* ------------------------------------------------------------------------ */
/* The public API on a device                                                */
/* ------------------------------------------------------------------------ */

/* A cuda:0 tensor holding `data`, written through the cuda backend's memcpy
 * (the public API has no host-to-device upload of its own). */
static nnm_tensor *cuda_tensor(int32_t ndim, const int64_t *shape, const float *data, size_t n) {
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, CUDA0, NNM_F32, ndim, shape, &t), NNM_OK);
    if (t == NULL)
        return NULL;
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    CU_ASSERT_EQUAL(d->device.type, NNM_DEVICE_CUDA);
    CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, (char *)d->data + d->byte_offset,
                                     CUDA0, data, CPU0, n * sizeof(float)),
                    NNM_OK);
    return t;
}

enum { B = 5, IN = 16, HID = 32, OUT = 8 };

static void test_module_to_cuda_and_back(void) {
    const nnm_ctx_stats s0 = tu_stats(g_ctx);
    nnm_module *mlp = make_mlp(IN, HID, OUT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mlp);
    float xv[B * IN];
    tu_fill_rand(&g_rng, xv, B * IN);
    const int64_t xs[2] = {B, IN};
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 2, xs, xv, &x), NNM_OK);
    CHECK_STATUS(tu_call1(mlp, x, &y), NNM_OK);
    float want[B * OUT], got[B * OUT];
    CHECK_STATUS(nnm_tensor_to_f32(y, want, B * OUT), NNM_OK);
    nnm_tensor_release(y);

    CHECK_STATUS(nnm_module_to(mlp, CUDA0), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_device(mlp).type, NNM_DEVICE_CUDA);
    param_snap ps = params_of(mlp);
    CU_ASSERT_EQUAL(ps.n, 4);
    for (int i = 0; i < ps.n && i < MAX_PARAMS; i++)
        CU_ASSERT_EQUAL(ps.dev[i].type, NNM_DEVICE_CUDA);

    /* a CPU input is refused cleanly */
    CU_ASSERT_NOT_EQUAL(tu_call1(mlp, x, &y), NNM_OK);
    CU_ASSERT_PTR_NULL(y);

    nnm_tensor *xg = cuda_tensor(2, xs, xv, B * IN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    CHECK_STATUS(tu_call1(mlp, xg, &y), NNM_OK);
    if (y != NULL) {
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(y)->device.type, NNM_DEVICE_CUDA);
        CHECK_STATUS(nnm_tensor_to_f32(y, got, B * OUT), NNM_OK);
        double scale = 1.0;
        for (int i = 0; i < B * OUT; i++)
            scale = fmax(scale, fabs(want[i]));
        CU_ASSERT_EQUAL(tu_count_mismatch("mlp on cuda", got, want, B * OUT, 1e-5, 1e-5 * scale,
                                          TU_MATCH_NONFINITE),
                        0);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(xg);

    /* and back: the same bits as before the round trip */
    CHECK_STATUS(nnm_module_to(mlp, CPU0), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_device(mlp).type, NNM_DEVICE_CPU);
    ps = params_of(mlp);
    for (int i = 0; i < ps.n && i < MAX_PARAMS; i++)
        CU_ASSERT_EQUAL(ps.dev[i].type, NNM_DEVICE_CPU);
    CHECK_STATUS(tu_call1(mlp, x, &y), NNM_OK);
    CHECK_STATUS(nnm_tensor_to_f32(y, got, B * OUT), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(got, want, sizeof got), 0);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(mlp);
    const nnm_ctx_stats s1 = tu_stats(g_ctx);
    CU_ASSERT_EQUAL(s1.live_tensors, s0.live_tensors);
    CU_ASSERT_EQUAL(s1.live_modules, s0.live_modules);
    CU_ASSERT_EQUAL(s1.bytes_in_use, s0.bytes_in_use);
}

static void test_steady_state_no_allocs(void) {
    const nnm_ctx_stats s0 = tu_stats(g_ctx);
    nnm_module *mlp = make_mlp(IN, HID, OUT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mlp);
    CHECK_STATUS(nnm_module_to(mlp, CUDA0), NNM_OK);
    float xv[B * IN];
    tu_fill_rand(&g_rng, xv, B * IN);
    nnm_tensor *xg = cuda_tensor(2, (int64_t[]){B, IN}, xv, B * IN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    nnm_tensor *y = NULL;
    for (int i = 0; i < 3; i++) { /* warm the cache */
        CHECK_STATUS(tu_call1(mlp, xg, &y), NNM_OK);
        nnm_tensor_release(y);
    }
    const nnm_ctx_stats w = tu_stats(g_ctx);
    for (int i = 0; i < 50; i++) {
        CHECK_STATUS(tu_call1(mlp, xg, &y), NNM_OK);
        nnm_tensor_release(y);
    }
    const nnm_ctx_stats s = tu_stats(g_ctx);
    CU_ASSERT_EQUAL(s.heap_allocs, w.heap_allocs);
    CU_ASSERT_TRUE(s.cache_hits > w.cache_hits);
    CU_ASSERT_EQUAL(s.bytes_in_use, w.bytes_in_use);
    nnm_tensor_release(xg);
    nnm_module_release(mlp);
    const nnm_ctx_stats e = tu_stats(g_ctx);
    CU_ASSERT_EQUAL(e.live_tensors, s0.live_tensors);
    CU_ASSERT_EQUAL(e.live_modules, s0.live_modules);
    nnm_ctx_empty_cache(g_ctx); /* gives the cached device memory back */
    CU_ASSERT_EQUAL(tu_stats(g_ctx).bytes_cached, 0);
}

/* ------------------------------------------------------------------------ */

int main(void) {
    if (nnm_ctx_new(NULL, &g_ctx) != NNM_OK) {
        fprintf(stderr, "test_cuda: nnm_ctx_new failed\n");
        return 1;
    }
    nnm_tensor *t = NULL;
    g_probe = nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 1, (int64_t[]){4}, &t);
    snprintf(g_probe_msg, sizeof g_probe_msg, "%s", g_probe ? nnm_ctx_errmsg(g_ctx) : "");
    nnm_tensor_release(t);
    const int have_device = g_probe == NNM_OK;
    if (!have_device)
        printf("test_cuda: SKIPPED: %s\n", g_probe_msg);

    CU_pSuite s = tu_suite("cuda", NULL, NULL);
    if (s == NULL) {
        tu_ctx_free(&g_ctx);
        return 1;
    }
    if (!have_device)
        CU_add_test(s, "no device: a clean failure", test_no_device_is_clean);
    if (NNM_TEST_HAVE_CUDA_PLUGIN)
        CU_add_test(s, "plugin descriptor, init and argument checks", test_plugin_direct);
    if (have_device) {
        CU_pSuite c = tu_suite("cuda conformance", conformance_init, conformance_clean);
        if (c == NULL) {
            tu_ctx_free(&g_ctx);
            return 1;
        }
        CU_add_test(c, "memory: alloc, free, memcpy", test_conf_memory);
        CU_add_test(c, "fill vs cpu", test_conf_fill);
        CU_add_test(c, "unary vs cpu", test_conf_unary);
        CU_add_test(c, "binary vs cpu", test_conf_binary);
        CU_add_test(c, "gemm vs cpu", test_conf_gemm);
        CU_add_test(c, "argument errors", test_conf_errors);
        /* the public API uses g_gpu for uploads, so it lives in this suite */
        CU_add_test(c, "module_to cuda and back", test_module_to_cuda_and_back);
        CU_add_test(c, "steady state: no heap allocs", test_steady_state_no_allocs);
    }
    const int rc = tu_run();
    tu_ctx_free(&g_ctx);
    return rc;
}
