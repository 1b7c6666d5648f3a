/* tests/cuda/test_cuda_streams.c - streams, synchronisation and pinned
 * staging: nnm_ctx_synchronize and the cuda backend's `synchronize`,
 * `host_alloc` and `host_free` slots.
 *
 * Everywhere: nnm_ctx_synchronize on a CPU-only context, on a context whose
 * CUDA backend could not start (no device) and on NULL; the plugin's new
 * slots are present and refuse a missing state cleanly.
 *
 * Where a device exists (scripts/gpu-check.sh) also:
 *  - pinned staging is stream-ordered: 64 rounds of host_alloc, fill, async
 *    memcpy to its own device buffer, host_free, with no wait in between;
 *    every device buffer then holds its own round's values (a buffer reused
 *    before its copy ran would show a later round's);
 *  - device-to-host copies wait for the queued work, and synchronize reports
 *    OK after a burst of queued ops;
 *  - an allocation no device can hold fails with NNM_E_NOMEM and a message
 *    saying so, and the context keeps working.
 * Without a device it prints "test_cuda_streams: SKIPPED: no CUDA device: ..."
 * before the device tests (which are then not registered).
 */
#include "test_util.h"

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
static nnm_status g_probe = NNM_OK;
static tu_fake_host g_fake;

/* ---- everywhere ------------------------------------------------------------ */

static void test_synchronize_cpu(void) {
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(NULL), NNM_E_INVALID);
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_OK); /* nothing used yet */
    float v[6] = {1, 2, 3, 4, 5, 6};
    nnm_tensor *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_new(ctx, CPU0, NNM_F32, 2, (int64_t[]){2, 3}, &a), NNM_OK);
    CU_ASSERT_TRUE(tu_write_f32(a, v, 6));
    CU_ASSERT_EQUAL(nnm_tensor_new(ctx, CPU0, NNM_F32, 2, (int64_t[]){2, 3}, &b), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_OK); /* cpu: no slot, nothing to wait for */
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    /* a CUDA backend that could not start does not make synchronize fail */
    nnm_tensor *g = NULL;
    nnm_status st = nnm_tensor_new(ctx, CUDA0, NNM_F32, 1, (int64_t[]){4}, &g);
    CU_ASSERT_EQUAL(st, g_probe);
    nnm_tensor_release(g);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_OK);
    nnm_ctx_free(ctx);
}

/* The plugin's slots, driven directly, with or without a device. */
static void test_plugin_slots(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/nnm_cuda.so", NNM_TEST_PLUGIN_DIR);
    void *dl = NULL;
    const nnm_plugin_desc *d = tu_plugin_open(path, &dl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(d->n_backends, 1);
    const nnm_backend_vtable *vt = d->backends[0];
    CU_ASSERT_TRUE(vt->struct_size >= offsetof(nnm_backend_vtable, host_free) + sizeof(void *));
    CU_ASSERT_PTR_NOT_NULL(vt->synchronize);
    CU_ASSERT_PTR_NOT_NULL(vt->host_alloc);
    CU_ASSERT_PTR_NOT_NULL(vt->host_free);
    tu_fake_host_reset(&g_fake);
    void *p = &g_fake;
    CU_ASSERT_EQUAL(vt->synchronize(&g_fake.env, NULL, -1), NNM_E_STATE);
    CU_ASSERT_EQUAL(vt->host_alloc(&g_fake.env, NULL, 0, 64, &p), NNM_E_STATE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(vt->host_alloc(&g_fake.env, NULL, 0, 64, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 3);
    vt->host_free(NULL, 0, NULL); /* harmless */
    vt->host_free(NULL, 0, &g_fake);
    void *state = NULL;
    if (vt->init(&g_fake.env, &state) == NNM_OK) {
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL(vt->synchronize(&g_fake.env, state, -1), NNM_OK); /* nothing queued */
        CU_ASSERT_EQUAL(vt->synchronize(&g_fake.env, state, 0), NNM_OK);
        CU_ASSERT_EQUAL(vt->synchronize(&g_fake.env, state, 1 << 20), NNM_E_DEVICE);
        CU_ASSERT_EQUAL(vt->synchronize(&g_fake.env, state, -2), NNM_E_DEVICE);
        CU_ASSERT_EQUAL(vt->host_alloc(&g_fake.env, state, -1, 64, &p), NNM_E_DEVICE);
        CU_ASSERT_EQUAL(g_fake.n_errors, 3);
        vt->host_free(state, 0, &g_fake); /* not one of its buffers: ignored */
        vt->shutdown(state);
    } else {
        CU_ASSERT_PTR_NULL(state);
    }
    dlclose(dl);
}

/* ---- the loader's device batches ------------------------------------------------ */

static char g_dir[1024];

/* 37 u8 images of 3x5 and their 37 labels as IDX files in g_dir. */
static int write_idx(char *img, char *lab, size_t cap) {
    unsigned char buf[16 + 37 * 15];
    size_t at = 0;
    const unsigned char head[] = {0, 0, 0x08, 3, 0, 0, 0, 37, 0, 0, 0, 3, 0, 0, 0, 5};
    memcpy(buf, head, sizeof head);
    at = sizeof head;
    for (int i = 0; i < 37 * 15; i++)
        buf[at++] = (unsigned char)((i * 7 + 3) % 251);
    snprintf(img, cap, "%s", tu_path(g_dir, "img.idx"));
    if (!tu_write_file(img, buf, at))
        return 0;
    const unsigned char lhead[] = {0, 0, 0x08, 1, 0, 0, 0, 37};
    memcpy(buf, lhead, sizeof lhead);
    at = sizeof lhead;
    for (int i = 0; i < 37; i++)
        buf[at++] = (unsigned char)(i % 10);
    snprintf(lab, cap, "%s", tu_path(g_dir, "lab.idx"));
    return tu_write_file(lab, buf, at);
}

static nnm_loader *make_loader(nnm_dataset *ds) {
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = NNM_LOADER_SHUFFLE;
    o.batch_size = 8; /* 37 = 4 x 8 + 5: a partial last batch */
    o.seed = 11;
    o.mean = 0.25;
    o.std = 0.5;
    nnm_loader *l = NULL;
    return nnm_loader_new(ds, &o, &l) == NNM_OK ? l : NULL;
}

/* Batches on `dev` hold exactly the CPU loader's values, in the same order. */
static void loader_matches_cpu(nnm_device dev) {
    char img[1100], lab[1100];
    CU_ASSERT_TRUE_FATAL(write_idx(img, lab, sizeof img));
    nnm_dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_dataset_open_idx(g_ctx, img, lab, &ds), NNM_OK);
    nnm_loader *ref = make_loader(ds), *l = make_loader(ds);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(nnm_loader_set_device(l, dev), NNM_OK);
    int batches = 0, bad = 0;
    for (;;) {
        nnm_tensor *x0 = NULL, *y0 = NULL, *x1 = NULL, *y1 = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_loader_next(ref, &x0, &y0), NNM_OK);
        CU_ASSERT_EQUAL_FATAL(nnm_loader_next(l, &x1, &y1), NNM_OK);
        if (!x0) {
            CU_ASSERT_PTR_NULL(x1);
            break;
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(x1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(y1);
        batches++;
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(x1)->device.type, dev.type);
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(y1)->device.type, dev.type);
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(y1)->dtype.code, NNM_DTYPE_INT);
        CU_ASSERT_EQUAL(nnm_tensor_numel(x1), nnm_tensor_numel(x0));
        int64_t n0 = 0, n1 = 0, m0 = 0, m1 = 0;
        float *a = tu_read_f32(x0, &n0), *b = tu_read_f32(x1, &n1);
        float *c = tu_read_f32(y0, &m0), *d = tu_read_f32(y1, &m1);
        CU_ASSERT_TRUE(a && b && c && d && n0 == n1 && m0 == m1);
        for (int64_t i = 0; a && b && i < n0 && i < n1; i++)
            bad += a[i] != b[i];
        for (int64_t i = 0; c && d && i < m0 && i < m1; i++)
            bad += c[i] != d[i];
        free(a);
        free(b);
        free(c);
        free(d);
        nnm_tensor_release(x0);
        nnm_tensor_release(y0);
        nnm_tensor_release(x1);
        nnm_tensor_release(y1);
    }
    CU_ASSERT_EQUAL(batches, 5);
    CU_ASSERT_EQUAL(bad, 0);
    nnm_loader_free(ref);
    nnm_loader_free(l);
    nnm_dataset_free(ds);
}

static void test_loader_set_device(void) {
    CU_ASSERT_EQUAL(nnm_loader_set_device(NULL, CPU0), NNM_E_INVALID);
    char img[1100], lab[1100];
    CU_ASSERT_TRUE_FATAL(write_idx(img, lab, sizeof img));
    nnm_dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_dataset_open_idx(g_ctx, img, lab, &ds), NNM_OK);
    nnm_loader *l = make_loader(ds);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CHECK_ERROR(nnm_loader_set_device(l, (nnm_device){NNM_DEVICE_CPU, 1}), NNM_E_DEVICE, "cpu:1");
    CU_ASSERT_EQUAL(nnm_loader_set_device(l, (nnm_device){NNM_DEVICE_META, 0}) != NNM_OK, 1);
    if (g_probe != NNM_OK) /* no device: refused, and the loader still makes CPU batches */
        CU_ASSERT_EQUAL(nnm_loader_set_device(l, CUDA0), g_probe);
    nnm_tensor *x = NULL, *y = NULL;
    CU_ASSERT_EQUAL(nnm_loader_next(l, &x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(x);
    if (x)
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(x)->device.type, NNM_DEVICE_CPU);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_loader_free(l);
    nnm_dataset_free(ds);
    loader_matches_cpu(CPU0); /* set to the CPU explicitly: the same batches */
}

static void test_loader_cuda_batches(void) {
    loader_matches_cpu(CUDA0);
}

/* ---- on a device -------------------------------------------------------------- */

typedef struct gpu {
    void *dl;
    const nnm_backend_vtable *vt;
    void *state;
} gpu;

static int gpu_open(gpu *g) {
    char path[4096];
    snprintf(path, sizeof path, "%s/nnm_cuda.so", NNM_TEST_PLUGIN_DIR);
    const nnm_plugin_desc *d = tu_plugin_open(path, &g->dl);
    if (d == NULL || d->n_backends != 1)
        return 0;
    g->vt = d->backends[0];
    tu_fake_host_reset(&g_fake);
    if (g->vt->init(&g_fake.env, &g->state) != NNM_OK) {
        fprintf(stderr, "\n  cuda init: %s\n", g_fake.msg);
        dlclose(g->dl);
        return 0;
    }
    return 1;
}

static void gpu_close(gpu *g) {
    g->vt->shutdown(g->state);
    dlclose(g->dl);
}

static void test_pinned_staging_is_stream_ordered(void) {
    gpu g;
    CU_ASSERT_TRUE_FATAL(gpu_open(&g));
    enum { ROUNDS = 64, N = 1 << 18 }; /* 1 MiB per round: long enough to be in flight */
    void *dev[ROUNDS] = {0};
    int ok = 1;
    for (int r = 0; r < ROUNDS && ok; r++) {
        ok = g.vt->alloc(&g_fake.env, g.state, 0, N * sizeof(float), &dev[r]) == NNM_OK;
        float *h = NULL;
        ok = ok && g.vt->host_alloc(&g_fake.env, g.state, 0, N * sizeof(float), (void **)&h) == NNM_OK;
        if (!ok)
            break;
        CU_ASSERT_EQUAL((uintptr_t)h % 64, 0);
        for (int i = 0; i < N; i++)
            h[i] = (float)(r * 1000 + (i % 997));
        ok = g.vt->memcpy(&g_fake.env, g.state, dev[r], CUDA0, h, CPU0, N * sizeof(float)) == NNM_OK;
        g.vt->host_free(g.state, 0, h); /* right away: the backend keeps it until the copy ran */
    }
    CU_ASSERT_TRUE(ok);
    if (!ok)
        fprintf(stderr, "\n  staging: %s\n", g_fake.msg);
    CU_ASSERT_EQUAL(g.vt->synchronize(&g_fake.env, g.state, -1), NNM_OK);
    float *back = malloc(N * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    int bad = 0;
    for (int r = 0; r < ROUNDS && ok; r++) {
        CU_ASSERT_EQUAL(g.vt->memcpy(&g_fake.env, g.state, back, CPU0, dev[r], CUDA0, N * sizeof(float)),
                        NNM_OK);
        for (int i = 0; i < N; i++)
            bad += back[i] != (float)(r * 1000 + (i % 997));
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(back);
    for (int r = 0; r < ROUNDS; r++)
        g.vt->free(g.state, 0, dev[r]);
    gpu_close(&g);
}

static void test_queued_work_and_synchronize(void) {
    /* through the public API: a burst of queued ops, then a copy to the host
     * (which waits) and nnm_ctx_synchronize */
    nnm_tensor *raw = NULL, *st = NULL, *z = NULL, *a = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 2, (int64_t[]){256, 256}, &raw), NNM_OK);
    /* ones from undefined contents with the 1.0 ops alone: exp(0 * step(raw)) */
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_STEP, raw, 0.0, &st), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, st, 0.0, &z), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_EXP, z, 0.0, &a), NNM_OK);
    nnm_tensor_release(raw);
    nnm_tensor_release(st);
    nnm_tensor_release(z);
    nnm_tensor *x = a;
    nnm_tensor_retain(x);
    for (int i = 0; i < 20; i++) {
        nnm_tensor *y = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_op_binary(g_ctx, NNM_BINARY_ADD, x, a, &y), NNM_OK);
        nnm_tensor_release(x);
        x = y;
    }
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(g_ctx), NNM_OK);
    int64_t n = 0;
    float *v = tu_read_f32(x, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += v[i] != 21.0f;
    CU_ASSERT_EQUAL(bad, 0);
    free(v);
    nnm_tensor_release(x);
    nnm_tensor_release(a);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(g_ctx), NNM_OK);
}

static void test_out_of_memory_is_clean(void) {
    nnm_tensor *t = NULL;
    /* 2^46 floats = 256 TiB: no device holds it */
    CHECK_ERROR(nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 2, (int64_t[]){1 << 23, 1 << 23}, &t),
                NNM_E_NOMEM, "out of memory");
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_EQUAL(nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 1, (int64_t[]){1024}, &t), NNM_OK);
    nnm_tensor *u = NULL;
    CU_ASSERT_EQUAL(nnm_op_unary(g_ctx, NNM_UNARY_STEP, t, 0.0, &u), NNM_OK);
    nnm_tensor_release(u);
    nnm_tensor_release(t);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(g_ctx), NNM_OK);
}

int main(void) {
    tu_fake_host_init(&g_fake);
    if (tu_tmpdir_new(g_dir, sizeof g_dir, "cuda_streams") != 0) {
        fprintf(stderr, "test_cuda_streams: no temporary directory\n");
        return 1;
    }
    if (nnm_ctx_new(NULL, &g_ctx) != NNM_OK) {
        fprintf(stderr, "test_cuda_streams: nnm_ctx_new failed\n");
        return 1;
    }
    nnm_tensor *t = NULL;
    g_probe = nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 1, (int64_t[]){4}, &t);
    const int have_device = g_probe == NNM_OK;
    if (!have_device)
        printf("test_cuda_streams: SKIPPED: %s\n", nnm_ctx_errmsg(g_ctx));
    nnm_tensor_release(t);
    CU_pSuite s = tu_suite("cuda streams", NULL, NULL);
    if (s == NULL) {
        nnm_ctx_free(g_ctx);
        return 1;
    }
    CU_add_test(s, "nnm_ctx_synchronize without a device", test_synchronize_cpu);
    CU_add_test(s, "nnm_loader_set_device", test_loader_set_device);
    if (NNM_TEST_HAVE_CUDA_PLUGIN)
        CU_add_test(s, "plugin: synchronize, host_alloc, host_free", test_plugin_slots);
    if (have_device) {
        CU_add_test(s, "pinned staging is stream-ordered", test_pinned_staging_is_stream_ordered);
        CU_add_test(s, "queued work, copies to the host, synchronize", test_queued_work_and_synchronize);
        CU_add_test(s, "out of memory: a clean failure", test_out_of_memory_is_clean);
        CU_add_test(s, "loader batches on cuda (pinned, async)", test_loader_cuda_batches);
    }
    const int rc = tu_run();
    nnm_ctx_free(g_ctx);
    tu_dir_remove_all(g_dir);
    return rc;
}
