/* tests/cuda/test_cuda_staging.c - the runtime's side of asynchronous
 * backends, proved on the CPU: a fake backend registered for the CUDA device
 * type (its "device memory" is plain host memory; it logs its copies and
 * staging buffers) stands in for the cuda plugin, in contexts without discovery.
 *
 * Proves: nnm_ctx_synchronize calls the `synchronize` slot (with -1) only
 * for a backend the context started, and passes its failure on; the loader's
 * device batches (nnm_loader_set_device) are gathered into ONE host_alloc
 * buffer per batch, copied from inside it to the device tensors, and given
 * back with host_free after the copies, holding exactly the CPU loader's
 * values; a backend without host_alloc gets the same batches through
 * ordinary memory; a collective on a device tensor (a fake communicator on
 * the CUDA device type) starts only after the runtime synchronised that
 * device, and not at all when that fails (the NCCL ordering rule,
 * docs/distributed.md "NCCL and streams").
 * Runs everywhere: no GPU, no CUDA.
 */
#include "test_util.h"

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding the plugins"
#endif

static const nnm_device DEV = {NNM_DEVICE_CUDA, 0};
static const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};

/* ---- the fake backend ------------------------------------------------------- */

#define MAX_HOST 64
typedef struct fake_log {
    int syncs, sync_arg, sync_fail;
    int host_allocs, host_frees, host_live;
    void *host[MAX_HOST];
    size_t host_size[MAX_HOST];
    int copies_from_host_buffer; /* H2D copies whose source lay in a live host_alloc buffer */
    int copies_from_plain_host;
    int freed_before_copy;       /* a host_free of a buffer no copy came from yet (must stay 0) */
    int copied_from[MAX_HOST];
} fake_log;

static fake_log g_log;

static nnm_status fk_init(nnm_env *env, void **state) {
    (void)env;
    *state = &g_log;
    return NNM_OK;
}
static void fk_shutdown(void *state) { (void)state; }
static nnm_status fk_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)state;
    if (id != 0) return env->host->set_error(env, NNM_E_DEVICE, "fake: no device %d", (int)id);
    *ptr = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    return *ptr ? NNM_OK : NNM_E_NOMEM;
}
static void fk_free(void *state, int32_t id, void *ptr) {
    (void)state;
    (void)id;
    free(ptr);
}
static int host_index(const void *p, size_t bytes) {
    for (int i = 0; i < MAX_HOST; i++) {
        const char *lo = g_log.host[i];
        if (lo && (const char *)p >= lo && (size_t)((const char *)p - lo) + bytes <= g_log.host_size[i]) return i;
    }
    return -1;
}
static nnm_status fk_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src,
                            nnm_device sd, size_t bytes) {
    (void)env;
    (void)state;
    if (dd.type == NNM_DEVICE_CUDA && sd.type == NNM_DEVICE_CPU) {
        int k = host_index(src, bytes);
        if (k >= 0) {
            g_log.copies_from_host_buffer++;
            g_log.copied_from[k] = 1;
        } else {
            g_log.copies_from_plain_host++;
        }
    }
    memmove(dst, src, bytes);
    return NNM_OK;
}
static nnm_status fk_synchronize(nnm_env *env, void *state, int32_t id) {
    (void)state;
    g_log.syncs++;
    g_log.sync_arg = id;
    if (g_log.sync_fail)
        return env->host->set_error(env, NNM_E_DEVICE, "fake: an asynchronous kernel fault");
    return NNM_OK;
}
static nnm_status fk_host_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)env;
    (void)state;
    (void)id;
    for (int i = 0; i < MAX_HOST; i++) {
        if (g_log.host[i]) continue;
        g_log.host[i] = *ptr = aligned_alloc(64, (bytes + 63) / 64 * 64);
        g_log.host_size[i] = bytes;
        g_log.copied_from[i] = 0;
        g_log.host_allocs++;
        g_log.host_live++;
        return *ptr ? NNM_OK : NNM_E_NOMEM;
    }
    return NNM_E_NOMEM;
}
static void fk_host_free(void *state, int32_t id, void *ptr) {
    (void)state;
    (void)id;
    for (int i = 0; i < MAX_HOST; i++) {
        if (g_log.host[i] != ptr || !ptr) continue;
        if (!g_log.copied_from[i]) g_log.freed_before_copy++;
        free(ptr);
        g_log.host[i] = NULL;
        g_log.host_frees++;
        g_log.host_live--;
        return;
    }
}

/* ---- a communicator on the CUDA device type -------------------------------------- */

struct nnm_comm_work {
    int syncs_at_start; /* how many synchronize calls the backend had seen when it started */
};
static int g_comm_state, g_syncs_seen_by_start = -1, g_sync_arg_at_start = -9;

static nnm_status cm_init(nnm_env *env, nnm_comm_init_args *args, void **state) {
    (void)env;
    args->rank = 0;
    args->world_size = 1;
    args->device_id = 0;
    *state = &g_comm_state;
    return NNM_OK;
}
static void cm_shutdown(void *state) { (void)state; }
static nnm_status cm_work(nnm_env *env, nnm_comm_work **work) {
    *work = malloc(sizeof **work);
    if (!*work) return env->host->set_error(env, NNM_E_NOMEM, "fakecomm: out of memory");
    (*work)->syncs_at_start = g_syncs_seen_by_start = g_log.syncs;
    g_sync_arg_at_start = g_log.sync_arg;
    return NNM_OK;
}
static nnm_status cm_all_reduce(nnm_env *env, void *state, float *data, int64_t n, nnm_comm_work **work) {
    (void)state, (void)data, (void)n;
    return cm_work(env, work);
}
static nnm_status cm_broadcast(nnm_env *env, void *state, void *data, uint64_t bytes, int32_t root,
                               nnm_comm_work **work) {
    (void)state, (void)data, (void)bytes, (void)root;
    return cm_work(env, work);
}
static nnm_status cm_all_gather(nnm_env *env, void *state, const void *send, void *recv, uint64_t bytes,
                                nnm_comm_work **work) {
    (void)state;
    memcpy(recv, send, bytes);
    return cm_work(env, work);
}
static nnm_status cm_barrier(nnm_env *env, void *state, nnm_comm_work **work) {
    (void)state;
    return cm_work(env, work);
}
static nnm_status cm_wait(nnm_env *env, void *state, nnm_comm_work *work) {
    (void)env, (void)state;
    free(work);
    return NNM_OK;
}
static int cm_test(void *state, nnm_comm_work *work) {
    (void)state, (void)work;
    return 1;
}
static const nnm_comm_vtable g_cvt = {
    .struct_size = sizeof(nnm_comm_vtable),
    .name = "fakecomm",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = cm_init,
    .shutdown = cm_shutdown,
    .all_reduce_start = cm_all_reduce,
    .broadcast_start = cm_broadcast,
    .all_gather_start = cm_all_gather,
    .barrier_start = cm_barrier,
    .wait = cm_wait,
    .test = cm_test,
};
static const nnm_comm_vtable *const g_cvts[] = {&g_cvt};

static nnm_backend_vtable g_vt = {
    .struct_size = sizeof(nnm_backend_vtable),
    .name = "fakegpu",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = fk_init,
    .shutdown = fk_shutdown,
    .alloc = fk_alloc,
    .free = fk_free,
    .memcpy = fk_memcpy,
    .synchronize = fk_synchronize,
    .host_alloc = fk_host_alloc,
    .host_free = fk_host_free,
};
static const nnm_backend_vtable *const g_vts[] = {&g_vt};
static const nnm_plugin_desc g_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "fakegpu",
    .n_backends = 1,
    .backends = g_vts,
    .n_comms = 1,
    .comms = g_cvts,
};

/* A context with the cpu backend and the fake one for "cuda". */
static nnm_ctx *fake_ctx(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/nnm_cpu.so", NNM_TEST_PLUGIN_DIR);
    if (nnm_ctx_new(&o, &ctx) || nnm_plugin_load(ctx, path) ||
        nnm_plugin_register_static(ctx, &g_desc, "test_cuda_staging")) {
        fprintf(stderr, "\n  fake context: %s\n", ctx ? nnm_ctx_errmsg(ctx) : "nnm_ctx_new failed");
        nnm_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_synchronize_slot(void) {
    memset(&g_log, 0, sizeof g_log);
    nnm_ctx *ctx = fake_ctx();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_OK);
    CU_ASSERT_EQUAL(g_log.syncs, 0); /* never started: not started for this */
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_new(ctx, DEV, NNM_F32, 1, (int64_t[]){8}, &t), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_OK);
    CU_ASSERT_EQUAL(g_log.syncs, 1);
    CU_ASSERT_EQUAL(g_log.sync_arg, -1);
    g_log.sync_fail = 1;
    CU_ASSERT_EQUAL(nnm_ctx_synchronize(ctx), NNM_E_DEVICE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "kernel fault"));
    g_log.sync_fail = 0;
    nnm_tensor_release(t);
    nnm_ctx_free(ctx);
}

static char g_dir[1024];

static int write_dataset(char *img, char *lab, size_t cap) {
    unsigned char buf[16 + 29 * 12];
    const unsigned char head[] = {0, 0, 0x08, 3, 0, 0, 0, 29, 0, 0, 0, 3, 0, 0, 0, 4};
    memcpy(buf, head, sizeof head);
    size_t at = sizeof head;
    for (int i = 0; i < 29 * 12; i++) buf[at++] = (unsigned char)((i * 13 + 5) % 253);
    snprintf(img, cap, "%s", tu_path(g_dir, "img.idx"));
    if (!tu_write_file(img, buf, at)) return 0;
    const unsigned char lhead[] = {0, 0, 0x08, 1, 0, 0, 0, 29};
    memcpy(buf, lhead, sizeof lhead);
    at = sizeof lhead;
    for (int i = 0; i < 29; i++) buf[at++] = (unsigned char)((i * 3) % 10);
    snprintf(lab, cap, "%s", tu_path(g_dir, "lab.idx"));
    return tu_write_file(lab, buf, at);
}

static nnm_loader *loader_on(nnm_dataset *ds, nnm_device dev) {
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = NNM_LOADER_SHUFFLE;
    o.batch_size = 6; /* 29 = 4 x 6 + 5 */
    o.seed = 5;
    o.mean = 0.5;
    o.std = 0.25;
    nnm_loader *l = NULL;
    if (nnm_loader_new(ds, &o, &l)) return NULL;
    if (nnm_loader_set_device(l, dev)) {
        nnm_loader_free(l);
        return NULL;
    }
    return l;
}

/* The device loader's batches equal the CPU loader's; returns the count. */
static int compare_batches(nnm_ctx *ctx) {
    char img[1100], lab[1100];
    if (!write_dataset(img, lab, sizeof img)) return -1;
    nnm_dataset *ds = NULL;
    if (nnm_dataset_open_idx(ctx, img, lab, &ds)) return -1;
    nnm_loader *ref = loader_on(ds, CPU0), *l = loader_on(ds, DEV);
    int batches = 0, bad = 0;
    while (ref && l) {
        nnm_tensor *x0 = NULL, *y0 = NULL, *x1 = NULL, *y1 = NULL;
        if (nnm_loader_next(ref, &x0, &y0) || nnm_loader_next(l, &x1, &y1)) {
            bad++;
            break;
        }
        if (!x0 || !x1) {
            bad += x0 != x1;
            break;
        }
        batches++;
        bad += nnm_tensor_desc_get(x1)->device.type != NNM_DEVICE_CUDA;
        bad += nnm_tensor_desc_get(y1)->device.type != NNM_DEVICE_CUDA;
        bad += nnm_tensor_desc_get(y1)->dtype.code != NNM_DTYPE_INT;
        int64_t n0, n1, m0, m1;
        float *a = tu_read_f32(x0, &n0), *b = tu_read_f32(x1, &n1);
        float *c = tu_read_f32(y0, &m0), *d = tu_read_f32(y1, &m1);
        if (!a || !b || !c || !d || n0 != n1 || m0 != m1) bad++;
        for (int64_t i = 0; a && b && i < n0 && i < n1; i++) bad += a[i] != b[i];
        for (int64_t i = 0; c && d && i < m0 && i < m1; i++) bad += c[i] != d[i];
        free(a);
        free(b);
        free(c);
        free(d);
        nnm_tensor_release(x0);
        nnm_tensor_release(y0);
        nnm_tensor_release(x1);
        nnm_tensor_release(y1);
    }
    nnm_loader_free(ref);
    nnm_loader_free(l);
    nnm_dataset_free(ds);
    return bad ? -1 : batches;
}

static void test_loader_stages_in_host_alloc_memory(void) {
    memset(&g_log, 0, sizeof g_log);
    nnm_ctx *ctx = fake_ctx();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(compare_batches(ctx), 5);
    CU_ASSERT_EQUAL(g_log.host_allocs, 5);             /* one staging buffer per batch */
    CU_ASSERT_EQUAL(g_log.host_frees, 5);              /* all given back */
    CU_ASSERT_EQUAL(g_log.host_live, 0);
    CU_ASSERT_EQUAL(g_log.copies_from_host_buffer, 10); /* inputs and targets, from inside it */
    CU_ASSERT_EQUAL(g_log.copies_from_plain_host, 0);
    CU_ASSERT_EQUAL(g_log.freed_before_copy, 0);       /* given back after the copies */
    nnm_ctx_free(ctx);
}

static void test_loader_without_host_alloc(void) {
    memset(&g_log, 0, sizeof g_log);
    g_vt.host_alloc = NULL;
    g_vt.host_free = NULL;
    nnm_ctx *ctx = fake_ctx();
    CU_ASSERT_PTR_NOT_NULL(ctx);
    if (ctx) {
        CU_ASSERT_EQUAL(compare_batches(ctx), 5);
        CU_ASSERT_EQUAL(g_log.host_allocs, 0);
        CU_ASSERT_EQUAL(g_log.copies_from_plain_host, 10);
        nnm_ctx_free(ctx);
    }
    g_vt.host_alloc = fk_host_alloc;
    g_vt.host_free = fk_host_free;
}

/* A collective on a device tensor starts only after the runtime synchronised
 * that device: the communicator's own stream then reads finished data. */
static void test_collectives_synchronise_first(void) {
    memset(&g_log, 0, sizeof g_log);
    nnm_ctx *ctx = fake_ctx();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    nnm_comm *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_comm_new(ctx, "fakecomm", NULL, &c), NNM_OK);
    nnm_tensor *t = NULL, *all = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_new(ctx, DEV, NNM_F32, 1, (int64_t[]){16}, &t), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_new(ctx, DEV, NNM_F32, 1, (int64_t[]){16}, &all), NNM_OK);
    CU_ASSERT_EQUAL(nnm_comm_all_reduce(c, t), NNM_OK);
    CU_ASSERT_EQUAL(g_syncs_seen_by_start, 1);
    CU_ASSERT_EQUAL(g_sync_arg_at_start, 0); /* the tensor's device, not every device */
    CU_ASSERT_EQUAL(nnm_comm_broadcast(c, t, 0), NNM_OK);
    CU_ASSERT_EQUAL(g_syncs_seen_by_start, 2);
    CU_ASSERT_EQUAL(nnm_comm_all_gather(c, t, all), NNM_OK);
    CU_ASSERT_EQUAL(g_syncs_seen_by_start, 4); /* both buffers' device */
    /* a failed synchronize (a fault in the work that made the buffer) stops
     * the collective before it starts, with the backend's message */
    g_log.sync_fail = 1;
    g_syncs_seen_by_start = -1;
    CU_ASSERT_EQUAL(nnm_comm_all_reduce(c, t), NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_syncs_seen_by_start, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "kernel fault"));
    g_log.sync_fail = 0;
    nnm_tensor_release(t);
    nnm_tensor_release(all);
    nnm_comm_free(c);
    nnm_ctx_free(ctx);
}

int main(void) {
    if (tu_tmpdir_new(g_dir, sizeof g_dir, "cuda_staging") != 0) return 1;
    CU_pSuite s = tu_suite("cuda staging (fake backend)", NULL, NULL);
    if (s == NULL) return 1;
    CU_add_test(s, "nnm_ctx_synchronize calls the slot", test_synchronize_slot);
    CU_add_test(s, "loader: batches staged in host_alloc memory", test_loader_stages_in_host_alloc_memory);
    CU_add_test(s, "loader: a backend without host_alloc", test_loader_without_host_alloc);
    CU_add_test(s, "collectives synchronise the device first", test_collectives_synchronise_first);
    const int rc = tu_run();
    tu_dir_remove_all(g_dir);
    return rc;
}
