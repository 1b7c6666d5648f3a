/* tests/ddp/test_comm.c - what needs no launcher: comm plugins go through the
 * loader's checks like every plugin (broken fixtures refused with a message
 * naming the file and the slot); the communicator API over the single-process
 * "loop" fixture (tensor checks, async start/wait, all-gather); the "mpi"
 * plugin outside mpirun says how to run it; post-accumulate-grad hooks; and a
 * DDP wrapper over a world of one trains exactly as the bare module does. The
 * multi-process checks are the mpirun tests (ddp_worker.c). */
#include "test_util.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int init(void) { return tu_ctx_new(&g_ctx); }
static int fini(void) { return tu_ctx_free(&g_ctx); }

static const char *fx(const char *stem) {
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/nnm_comm_fx_%s.so", NNM_TEST_FIXTURE_DIR, stem);
    return buf[i];
}

static void test_loader_refuses_broken_comms(void) {
    CHECK_ERROR(nnm_plugin_load(g_ctx, fx("nullwait")), NNM_E_PLUGIN, "required slot 'wait' is NULL");
    CHECK_MSG("nnm_comm_fx_nullwait.so");
    CHECK_MSG("plugin ABI 1.");
    CHECK_ERROR(nnm_plugin_load(g_ctx, fx("smallvt")), NNM_E_PLUGIN, "vtable struct_size 24 is too small");
    CHECK_ERROR(nnm_plugin_load(g_ctx, fx("badname")), NNM_E_PLUGIN, "invalid name 'Loop-Comm'");
    CHECK_ERROR(nnm_plugin_load(g_ctx, fx("nulllist")), NNM_E_PLUGIN, "comm list is NULL");
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    CHECK_ERROR(nnm_plugin_load(g_ctx, fx("dup")), NNM_E_EXISTS, "comm 'loop' 1.0.0 is already provided by");
    /* The failures are in the plugin list, the good one loaded. */
    uint32_t n = nnm_plugin_count(g_ctx), failed = 0, loop = 0;
    for (uint32_t i = 0; i < n; i++) {
        nnm_plugin_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CU_ASSERT_EQUAL_FATAL(nnm_plugin_info_get(g_ctx, i, &info), NNM_OK);
        if (strstr(info.path, "nnm_comm_fx_")) {
            if (info.status != NNM_OK) failed++;
            else loop += strcmp(info.name, "comm_fixture_loop") == 0;
        }
    }
    CU_ASSERT_EQUAL(failed, 5);
    CU_ASSERT_EQUAL(loop, 1);
}

static void test_comm_api(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    LEAK_CHECK_BEGIN();
    nnm_comm *c = NULL;
    CHECK_ERROR(nnm_comm_new(g_ctx, "nosuch", NULL, &c), NNM_E_NOT_FOUND, "nnm_comm_nosuch.so");
    CU_ASSERT_PTR_NULL(c);
    CHECK_ERROR(nnm_comm_new(g_ctx, "Bad Name!", NULL, &c), NNM_E_INVALID, "malformed comm request");
    nnm_comm_options o = {sizeof o, 0, 5.0};
    CHECK_STATUS(nnm_comm_new(g_ctx, "loop@^1", &o, &c), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(nnm_comm_rank(c), 0);
    CU_ASSERT_EQUAL(nnm_comm_world_size(c), 1);
    CU_ASSERT_EQUAL(nnm_comm_device(c).type, NNM_DEVICE_CPU);
    CU_ASSERT_EQUAL(nnm_comm_rank(NULL), -1);
    CU_ASSERT_EQUAL(nnm_comm_world_size(NULL), 0);

    const float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t s6[1] = {6}, s3[1] = {3}, s2x3[2] = {2, 3};
    nnm_tensor *a = tu_tf32(g_ctx, 1, s6, v);
    nnm_tensor *g = tu_tf32(g_ctx, 1, s6, NULL);
    nnm_tensor *wrong = tu_tf32(g_ctx, 1, s3, NULL);
    int64_t iv[3] = {1, 2, 3};
    nnm_tensor *ints = tu_ti64(g_ctx, 1, s3, iv);
    CHECK_STATUS(nnm_comm_all_reduce(c, a), NNM_OK);
    CHECK_STATUS(nnm_comm_broadcast(c, a, 0), NNM_OK);
    CHECK_STATUS(nnm_comm_broadcast(c, ints, 0), NNM_OK); /* any dtype */
    CHECK_STATUS(nnm_comm_barrier(c), NNM_OK);
    CHECK_STATUS(nnm_comm_all_gather(c, a, g), NNM_OK);
    float out[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(g, out, 6), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(out, v, sizeof v), 0);
    /* async: the request holds the tensor until the wait */
    nnm_comm_request *r = NULL;
    CHECK_STATUS(nnm_comm_all_reduce_start(c, a, &r), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(r);
    CHECK_STATUS(nnm_comm_wait(r), NNM_OK);
    CU_ASSERT_EQUAL(nnm_comm_wait(NULL), NNM_E_INVALID);
    /* what the runtime refuses before the plugin sees it */
    CHECK_ERROR(nnm_comm_all_reduce(c, ints), NNM_E_DTYPE, "only f32 tensors can be summed");
    CHECK_ERROR(nnm_comm_all_gather(c, a, wrong), NNM_E_SHAPE, "want 1 ranks x 6");
    CHECK_ERROR(nnm_comm_broadcast(c, a, 1), NNM_E_INVALID, "root 1 is not a rank");
    CHECK_ERROR(nnm_comm_all_reduce(c, NULL), NNM_E_INVALID, "tensor is NULL");
    nnm_tensor *d2 = tu_tf32(g_ctx, 2, s2x3, v), *tr = NULL;
    nnm_tensor_release(d2);
    (void)tr;
    CU_ASSERT_EQUAL(nnm_comm_all_reduce_start(NULL, a, &r), NNM_E_INVALID);
    nnm_tensor_release(a);
    nnm_tensor_release(g);
    nnm_tensor_release(wrong);
    nnm_tensor_release(ints);
    nnm_comm_free(c);
    nnm_comm_free(NULL);
    LEAK_CHECK_END();
}

/* A message set before a collective (an error the caller has not read yet)
 * is not wiped by collectives that succeed: starting and waiting write the
 * context's message only when they fail. */
static void test_wait_keeps_pending_error(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    LEAK_CHECK_BEGIN();
    nnm_comm *c = NULL;
    CHECK_STATUS(nnm_comm_new(g_ctx, "loop", NULL, &c), NNM_OK);
    int64_t s4[1] = {4};
    nnm_tensor *a = tu_tf32(g_ctx, 1, s4, NULL);
    CU_ASSERT_EQUAL(nnm_ctx_set_error(g_ctx, NNM_E_HOOK, "an earlier failure nobody read yet"), NNM_E_HOOK);
    nnm_comm_request *r = NULL;
    CU_ASSERT_EQUAL(nnm_comm_all_reduce_start(c, a, &r), NNM_OK);
    CHECK_MSG("an earlier failure nobody read yet");
    CU_ASSERT_EQUAL(nnm_comm_wait(r), NNM_OK);
    CHECK_MSG("an earlier failure nobody read yet");
    CU_ASSERT_EQUAL(nnm_comm_barrier(c), NNM_OK);
    CU_ASSERT_EQUAL(nnm_comm_broadcast(c, a, 0), NNM_OK);
    CHECK_MSG("an earlier failure nobody read yet");
    /* a failure still writes its own */
    CHECK_ERROR(nnm_comm_broadcast(c, a, 3), NNM_E_INVALID, "root 3 is not a rank");
    nnm_tensor_release(a);
    nnm_comm_free(c);
    LEAK_CHECK_END();
}

static void test_mpi_outside_launcher(void) {
#ifdef NNM_TEST_HAVE_MPI
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) return;
    nnm_comm *c = NULL;
    CHECK_ERROR(nnm_comm_new(g_ctx, "mpi", NULL, &c), NNM_E_UNSUPPORTED, "mpirun");
    CU_ASSERT_PTR_NULL(c);
    /* the plugin loaded like any other */
    uint32_t n = nnm_plugin_count(g_ctx), found = 0;
    for (uint32_t i = 0; i < n; i++) {
        nnm_plugin_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (nnm_plugin_info_get(g_ctx, i, &info) == NNM_OK && info.status == NNM_OK && info.name &&
            strcmp(info.name, "comm_mpi") == 0)
            found++;
    }
    CU_ASSERT_EQUAL(found, 1);
#else
    fprintf(stderr, "(no MPI here: the mpi plugin is not built) ");
#endif
}

/* Loads anywhere; without a GPU it says so. With one, a job of one works. */
static void test_nccl_loads(void) {
#ifdef NNM_TEST_HAVE_NCCL
    nnm_comm *c = NULL;
    unsetenv("NNM_RANK");
    unsetenv("NNM_WORLD_SIZE");
    nnm_status st = nnm_comm_new(g_ctx, "nccl", NULL, &c);
    if (st == NNM_E_NO_DEVICE) {
        CHECK_MSG("no device");
        CU_ASSERT_PTR_NULL(c);
        return;
    }
    CHECK_STATUS(st, NNM_OK);
    if (st) return;
    CU_ASSERT_EQUAL(nnm_comm_world_size(c), 1);
    CU_ASSERT_EQUAL(nnm_comm_device(c).type, NNM_DEVICE_CUDA);
    CHECK_STATUS(nnm_comm_barrier(c), NNM_OK);
    nnm_comm_free(c);
#else
    fprintf(stderr, "(no CUDA toolkit with nccl.h here: the nccl plugin is not built) ");
#endif
}

static void test_bad_timeout_env(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    setenv("NNM_COMM_TIMEOUT", "soon", 1);
    nnm_comm *c = NULL;
    CHECK_ERROR(nnm_comm_new(g_ctx, "loop", NULL, &c), NNM_E_INVALID, "NNM_COMM_TIMEOUT='soon'");
    unsetenv("NNM_COMM_TIMEOUT");
}

/* ---- post-accumulate-grad hooks ------------------------------------------ */

typedef struct seen {
    int calls;
    float grad0;
    nnm_status ret;
} seen;

static nnm_status count_hook(void *user, nnm_tensor *t) {
    seen *s = user;
    s->calls++;
    nnm_tensor *g = nnm_tensor_grad(t);
    float v[16] = {0};
    if (!g || nnm_tensor_to_f32(g, v, 16) != NNM_OK) return NNM_E_STATE;
    s->grad0 = v[0];
    if (s->ret) return nnm_ctx_set_error(g_ctx, s->ret, "hook says no");
    return NNM_OK;
}

static void test_grad_hook(void) {
    LEAK_CHECK_BEGIN();
    int64_t s3[1] = {3};
    const float wv[3] = {1, 2, 3};
    const float cv[3] = {2, 2, 2};
    nnm_tensor *w = tu_tf32(g_ctx, 1, s3, wv), *k = tu_tf32(g_ctx, 1, s3, cv), *y = NULL, *loss = NULL;
    CHECK_STATUS(nnm_tensor_set_requires_grad(w, 1), NNM_OK);
    seen a = {0, 0, NNM_OK}, b = {0, 0, NNM_OK};
    nnm_hook_handle *ha = NULL, *hb = NULL;
    CHECK_STATUS(nnm_tensor_register_post_accumulate_grad_hook(w, count_hook, &a, &ha), NNM_OK);
    CHECK_STATUS(nnm_tensor_register_post_accumulate_grad_hook(w, count_hook, &b, &hb), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(NULL, count_hook, &a, NULL), NNM_E_INVALID);
    CHECK_ERROR(nnm_tensor_register_post_accumulate_grad_hook(w, NULL, &a, NULL), NNM_E_INVALID, "NULL");
    /* loss = sum(w * k): d/dw = k = 2, one edge: ready once per backward */
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, w, k, &y), NNM_OK);
    CHECK_ERROR(nnm_tensor_register_post_accumulate_grad_hook(y, count_hook, &a, NULL), NNM_E_STATE, "leaf");
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &loss), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 1), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 1);
    CU_ASSERT_EQUAL(b.calls, 1);
    CU_ASSERT_EQUAL(a.grad0, 2.0f);
    /* a second backward accumulates: the hook sees the sum */
    nnm_hook_remove(hb);
    CHECK_STATUS(nnm_backward(loss, NULL, 1), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 2);
    CU_ASSERT_EQUAL(b.calls, 1);
    CU_ASSERT_EQUAL(a.grad0, 4.0f);
    /* a failing hook fails the backward with its message */
    a.ret = NNM_E_HOOK;
    CHECK_ERROR(nnm_backward(loss, NULL, 1), NNM_E_HOOK, "hook says no");
    nnm_hook_remove(ha);
    a.ret = NNM_OK;
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 3);
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    nnm_tensor_release(k);
    nnm_tensor_release(w); /* frees the hook list with the tensor */
    LEAK_CHECK_END();
}


/* A leaf that feeds the graph through several edges gets its hooks once per
 * backward, after its last contribution, with .grad holding the sum (as
 * PyTorch 2.x's AccumulateGrad, which runs once all its edges delivered). */
static nnm_status first_param(void *user, const char *name, nnm_tensor *t) {
    nnm_tensor **out = user;
    if (!*out && strstr(name, "weight")) *out = t;
    return NNM_OK;
}

static void test_grad_hook_once_per_backward(void) {
    LEAK_CHECK_BEGIN();
    int64_t s3[1] = {3};
    const float wv[3] = {1, 2, 3};
    const float cv[3] = {2, 2, 2};
    nnm_tensor *w = tu_tf32(g_ctx, 1, s3, wv), *k = tu_tf32(g_ctx, 1, s3, cv);
    CHECK_STATUS(nnm_tensor_set_requires_grad(w, 1), NNM_OK);
    seen a = {0, 0, NNM_OK};
    nnm_hook_handle *ha = NULL;
    CHECK_STATUS(nnm_tensor_register_post_accumulate_grad_hook(w, count_hook, &a, &ha), NNM_OK);
    /* loss = sum(w * k) + sum(w * w): three edges into w (one node has two) */
    nnm_tensor *y1 = NULL, *y2 = NULL, *y = NULL, *loss = NULL;
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, w, k, &y1), NNM_OK);
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, w, w, &y2), NNM_OK);
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_ADD, y1, y2, &y), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &loss), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 1), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 1);
    CU_ASSERT_EQUAL(a.grad0, 4.0f); /* k + 2 w at w = 1: the whole gradient */
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 2);
    CU_ASSERT_EQUAL(a.grad0, 8.0f);
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    nnm_tensor_release(y2);
    nnm_tensor_release(y1);

    /* a failed backward leaves no count behind: the next one fires once */
    a.ret = NNM_E_HOOK;
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, w, w, &y2), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y2, NULL, 0, 0, &loss), NNM_OK);
    CHECK_ERROR(nnm_backward(loss, NULL, 1), NNM_E_HOOK, "hook says no");
    CU_ASSERT_EQUAL(a.calls, 3);
    a.ret = NNM_OK;
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(a.calls, 4);
    nnm_tensor_release(loss);
    nnm_tensor_release(y2);
    nnm_hook_remove(ha);

    /* a module called twice in one forward: its weight's hook once per
     * backward, seeing the final .grad */
    nnm_module *lin = tu_linear(g_ctx, "linear", 3, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lin);
    nnm_tensor *wt = NULL;
    CHECK_STATUS(nnm_module_named_parameters(lin, first_param, &wt), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(wt);
    seen b = {0, 0, NNM_OK};
    CHECK_STATUS(nnm_tensor_register_post_accumulate_grad_hook(wt, count_hook, &b, NULL), NNM_OK);
    int64_t xs[2] = {2, 3};
    const float xv[6] = {1, -2, 3, 0.5f, 1, -1};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, xv), *h1 = NULL, *h2 = NULL;
    CHECK_STATUS(nnm_module_call(lin, &x, 1, &h1, 1), NNM_OK);
    CHECK_STATUS(nnm_module_call(lin, &h1, 1, &h2, 1), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, h2, NULL, 0, 0, &loss), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(b.calls, 1);
    float gv[9] = {0};
    CHECK_STATUS(nnm_tensor_to_f32(nnm_tensor_grad(wt), gv, 9), NNM_OK);
    CU_ASSERT_EQUAL(b.grad0, gv[0]);
    nnm_tensor_release(loss);
    nnm_tensor_release(h2);
    nnm_tensor_release(h1);
    nnm_tensor_release(x);
    nnm_module_release(lin);
    nnm_tensor_release(k);
    nnm_tensor_release(w);
    LEAK_CHECK_END();
}

/* ---- DDP over a world of one --------------------------------------------- */

static nnm_module *mlp(nnm_ctx *ctx) {
    nnm_module *seq = tu_module(ctx, "sequential", NULL);
    nnm_module *l1 = tu_linear(ctx, "linear", 4, 8, 1), *r = tu_module(ctx, "relu", NULL),
               *l2 = tu_linear(ctx, "linear", 8, 2, 1);
    CU_ASSERT_FATAL(seq && l1 && r && l2);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, l1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, r), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, l2), NNM_OK);
    nnm_module_release(l1);
    nnm_module_release(r);
    nnm_module_release(l2);
    return seq;
}

static int g_x_requires_grad;

static nnm_status step(nnm_ctx *ctx, nnm_module *m, nnm_ddp *d, nnm_optim *o, int k) {
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)((i * 7 + k * 3) % 11) / 5.0f - 1.0f;
    int64_t s[2] = {3, 4};
    nnm_tensor *xt = tu_tf32(ctx, 2, s, x), *y = NULL, *sq = NULL, *loss = NULL;
    if (g_x_requires_grad) nnm_tensor_set_requires_grad(xt, 1);
    nnm_status st = d ? nnm_ddp_call(d, &xt, 1, &y, 1) : nnm_module_call(m, &xt, 1, &y, 1);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, y, y, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    if (!st) st = nnm_optim_step(o);
    if (!st) st = nnm_optim_zero_grad(o);
    nnm_tensor_release(xt);
    nnm_tensor_release(y);
    nnm_tensor_release(sq);
    nnm_tensor_release(loss);
    return st;
}

static nnm_status failing_bw_hook(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                                  nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)m, (void)gin, (void)n_in, (void)gout, (void)n_out;
    return nnm_ctx_set_error(g_ctx, NNM_E_HOOK, "first layer's hook says no");
}

static void test_ddp_world_of_one(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    LEAK_CHECK_BEGIN();
    nnm_ctx_options co = {sizeof co, 0, 42};
    nnm_ctx *ref_ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&co, &ref_ctx), NNM_OK);
    nnm_module *m = mlp(g_ctx), *ref = mlp(ref_ctx);
    /* same initial weights: copy ref's into m through a state file */
    char dir[256];
    CU_ASSERT_EQUAL_FATAL(tu_tmpdir_new(dir, sizeof dir, "nnm_ddp_"), 0);
    const char *path = tu_path(dir, "w.safetensors");
    CU_ASSERT_EQUAL(nnm_module_save(ref, path, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_load(m, path, 1, NULL), NNM_OK);
    nnm_comm *c = NULL;
    CHECK_STATUS(nnm_comm_new(g_ctx, "loop", NULL, &c), NNM_OK);
    nnm_ddp *d = NULL;
    CU_ASSERT_EQUAL(nnm_ddp_new(NULL, c, NULL, &d), NNM_E_INVALID);
    nnm_ddp_options small = {sizeof small, 0, 64, 8};
    CHECK_STATUS(nnm_ddp_new(m, c, &small, &d), NNM_OK);
    nnm_comm_free(c); /* the wrapper keeps it */
    CU_ASSERT_PTR_EQUAL(nnm_ddp_module(d), m);
    nnm_sgd_options so = {sizeof so, 0, 0.1, 0.5, 0, 0};
    nnm_optim *o = NULL, *ro = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(ref, &so, &ro), NNM_OK);
    for (int k = 0; k < 3; k++) {
        CHECK_STATUS(step(g_ctx, m, d, o, k), NNM_OK);
        CU_ASSERT_EQUAL(step(ref_ctx, ref, NULL, ro, k), NNM_OK);
    }
    nnm_ddp_stats st = {sizeof st, 0, 0, 0, 0};
    CHECK_STATUS(nnm_ddp_stats_get(d, &st), NNM_OK);
    CU_ASSERT_EQUAL(st.n_buckets, 3); /* caps 8 B then 64 B: {2.bias} {2.weight} {0.bias, 0.weight} */
    CU_ASSERT_EQUAL(st.bytes_reduced, (uint64_t)(8 * 4 + 8 + 2 * 8 + 2) * 4);
    tu_named a = tu_params_of(m), b = tu_params_of(ref);
    CU_ASSERT_EQUAL_FATAL(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        int64_t n = 0, n2 = 0;
        float *va = tu_read_f32(a.t[i], &n), *vb = tu_read_f32(b.t[i], &n2);
        CU_ASSERT_EQUAL(n, n2);
        CU_ASSERT(va && vb && memcmp(va, vb, (size_t)n * sizeof(float)) == 0);
        free(va);
        free(vb);
    }
    /* A backward that fails after every bucket started (the input requires
     * grad, so the first layer's backward hook runs with the input's
     * gradient, after its parameters' were handed over): DDP's final wait,
     * queued for the end of the backward, gives the buckets up; the backward
     * reports the hook's error, and the next step runs as usual. */
    nnm_hook_handle *fh = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(nnm_module_child(m, 0), failing_bw_hook, NULL,
                                                              NULL, &fh), NNM_OK);
    g_x_requires_grad = 1;
    CHECK_ERROR(step(g_ctx, m, d, o, 5), NNM_E_HOOK, "hook says no");
    g_x_requires_grad = 0;
    nnm_hook_remove(fh);
    nnm_hook_handle_free(fh);
    CU_ASSERT_EQUAL(nnm_optim_zero_grad(o), NNM_OK);
    CHECK_STATUS(step(g_ctx, m, d, o, 6), NNM_OK);
    /* no_sync: no hook work, gradients still accumulate */
    CU_ASSERT_EQUAL(nnm_ddp_set_sync(d, 0), 1);
    CU_ASSERT_EQUAL(nnm_ddp_set_sync(d, 1), 0);
    CU_ASSERT_EQUAL(nnm_ddp_set_sync(NULL, 1), -1);
    nnm_optim_free(o);
    nnm_optim_free(ro);
    nnm_ddp_free(d);
    nnm_ddp_free(NULL);
    /* the hooks went with the wrapper: a plain backward works */
    nnm_sgd_options so2 = {sizeof so2, 0, 0.1, 0, 0, 0};
    CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(m, &so2, &o), NNM_OK);
    CHECK_STATUS(step(g_ctx, m, NULL, o, 9), NNM_OK);
    nnm_optim_free(o);
    nnm_module_release(m);
    nnm_module_release(ref);
    nnm_ctx_free(ref_ctx);
    tu_dir_remove_all(dir);
    LEAK_CHECK_END();
}

/* A small CNN: conv(1->4, 3x3, pad 1) -> relu -> conv(4->6, 3x3, pad 1)
 * -> relu -> flatten -> linear(216, 3). The first conv's input needs no
 * gradient (its backward is the weight's alone), the second's does. */
static nnm_module *small_cnn(nnm_ctx *ctx) {
    nnm_module *seq = tu_module(ctx, "sequential", NULL);
    nnm_module *parts[6];
    const int64_t ch[2][2] = {{1, 4}, {4, 6}};
    for (int i = 0; i < 2; i++) {
        nnm_config *cfg = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_config_new(&cfg), NNM_OK);
        nnm_config_set_int(cfg, "in_channels", ch[i][0]);
        nnm_config_set_int(cfg, "out_channels", ch[i][1]);
        nnm_config_set_int(cfg, "kernel_size", 3);
        nnm_config_set_int(cfg, "padding", 1);
        parts[2 * i] = tu_module(ctx, "conv2d", cfg);
        parts[2 * i + 1] = tu_module(ctx, "relu", NULL);
        nnm_config_free(cfg);
    }
    parts[4] = tu_module(ctx, "flatten", NULL);
    parts[5] = tu_linear(ctx, "linear", 6 * 6 * 6, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(parts[i]);
        CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, parts[i]), NNM_OK);
        nnm_module_release(parts[i]);
    }
    return seq;
}

/* One step of small_cnn on a batch of 2 x 1 x 6 x 6; with `grads`, the
 * parameters' gradients after the backward are read into it (before the
 * optimizer's step), in named_parameters order. */
typedef struct cnn_grads {
    float *v[16];
    int64_t n[16];
    int k;
} cnn_grads;

static nnm_status read_grad(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    cnn_grads *g = user;
    if (g->k < 16 && nnm_tensor_grad(t)) {
        g->v[g->k] = tu_read_f32(nnm_tensor_grad(t), &g->n[g->k]);
        g->k++;
    }
    return NNM_OK;
}

static nnm_status cnn_step(nnm_ctx *ctx, nnm_module *m, nnm_ddp *d, nnm_optim *o, int k, cnn_grads *grads) {
    float x[72];
    for (int i = 0; i < 72; i++) x[i] = (float)((i * 7 + k * 3) % 11) / 5.0f - 1.0f;
    int64_t s[4] = {2, 1, 6, 6};
    nnm_tensor *xt = tu_tf32(ctx, 4, s, x), *y = NULL, *sq = NULL, *loss = NULL;
    nnm_status st = d ? nnm_ddp_call(d, &xt, 1, &y, 1) : nnm_module_call(m, &xt, 1, &y, 1);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, y, y, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    if (!st && grads) st = nnm_module_named_parameters(m, read_grad, grads);
    if (!st) st = nnm_optim_step(o);
    if (!st) st = nnm_optim_zero_grad(o);
    nnm_tensor_release(xt);
    nnm_tensor_release(y);
    nnm_tensor_release(sq);
    nnm_tensor_release(loss);
    return st;
}

/* DDP of a CNN over a world of one: a conv's weight gradient is written
 * straight into its bucket view and handed over before its input's
 * gradient (conv_backward in runtime/autograd/derivatives_nn.c); the
 * gradients and the trained parameters are those of the bare module, bit
 * for bit, with buckets small enough that each conv's weight has its own
 * (the bucket holds the gradient DDP reduces: a conv gradient written
 * elsewhere, or not at all, would show). */
static void test_ddp_cnn_world_of_one(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    LEAK_CHECK_BEGIN();
    nnm_ctx_options co = {sizeof co, 0, 42};
    nnm_ctx *ref_ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&co, &ref_ctx), NNM_OK);
    nnm_module *m = small_cnn(g_ctx), *ref = small_cnn(ref_ctx);
    char dir[256];
    CU_ASSERT_EQUAL_FATAL(tu_tmpdir_new(dir, sizeof dir, "nnm_ddp_"), 0);
    const char *path = tu_path(dir, "w.safetensors");
    CU_ASSERT_EQUAL(nnm_module_save(ref, path, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_load(m, path, 1, NULL), NNM_OK);
    nnm_comm *c = NULL;
    CHECK_STATUS(nnm_comm_new(g_ctx, "loop", NULL, &c), NNM_OK);
    nnm_ddp *d = NULL;
    nnm_ddp_options small = {sizeof small, 0, 256, 64};
    CHECK_STATUS(nnm_ddp_new(m, c, &small, &d), NNM_OK);
    nnm_comm_free(c);
    nnm_sgd_options so = {sizeof so, 0, 0.1, 0.5, 0, 0};
    nnm_optim *o = NULL, *ro = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(ref, &so, &ro), NNM_OK);
    for (int k = 0; k < 3; k++) {
        cnn_grads ga = {{0}, {0}, 0}, gb = {{0}, {0}, 0};
        CHECK_STATUS(cnn_step(g_ctx, m, d, o, k, &ga), NNM_OK);
        CU_ASSERT_EQUAL(cnn_step(ref_ctx, ref, NULL, ro, k, &gb), NNM_OK);
        CU_ASSERT_EQUAL(ga.k, 6); /* two conv weights and biases, the linear's */
        CU_ASSERT_EQUAL(ga.k, gb.k);
        for (int i = 0; i < ga.k && i < gb.k; i++) {
            CU_ASSERT_EQUAL(ga.n[i], gb.n[i]);
            CU_ASSERT(ga.v[i] && gb.v[i] && ga.n[i] == gb.n[i] &&
                      memcmp(ga.v[i], gb.v[i], (size_t)ga.n[i] * sizeof(float)) == 0);
        }
        for (int i = 0; i < ga.k; i++) free(ga.v[i]);
        for (int i = 0; i < gb.k; i++) free(gb.v[i]);
    }
    nnm_ddp_stats st = {sizeof st, 0, 0, 0, 0};
    CHECK_STATUS(nnm_ddp_stats_get(d, &st), NNM_OK);
    CU_ASSERT(st.n_buckets >= 3);
    /* every parameter's gradient goes through a bucket: 40 + 222 + 651 floats a step */
    CU_ASSERT_EQUAL(st.bytes_reduced, (uint64_t)(36 + 4 + 216 + 6 + 648 + 3) * 4);
    tu_named a = tu_params_of(m), b = tu_params_of(ref);
    CU_ASSERT_EQUAL_FATAL(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        int64_t n = 0, n2 = 0;
        float *va = tu_read_f32(a.t[i], &n), *vb = tu_read_f32(b.t[i], &n2);
        CU_ASSERT_EQUAL(n, n2);
        CU_ASSERT(va && vb && memcmp(va, vb, (size_t)n * sizeof(float)) == 0);
        free(va);
        free(vb);
    }
    nnm_optim_free(o);
    nnm_optim_free(ro);
    nnm_ddp_free(d);
    nnm_module_release(m);
    nnm_module_release(ref);
    nnm_ctx_free(ref_ctx);
    tu_dir_remove_all(dir);
    LEAK_CHECK_END();
}

/* ---- a large weight's gradient in parts ------------------------------------ */

typedef struct fx_piece {
    const float *data;
    int64_t n;
} fx_piece;

/* The loop fixture's log of all-reduces (tests/ddp/comm_fixture.c). */
static fx_piece *g_log;
static int *g_log_n;

static int open_log(void) {
    void *h = dlopen(fx("loop"), RTLD_NOW | RTLD_NOLOAD);
    if (!h) return 0;
    g_log = (fx_piece *)dlsym(h, "nnm_comm_fx_log");
    g_log_n = (int *)dlsym(h, "nnm_comm_fx_log_n");
    dlclose(h); /* the context keeps it loaded */
    return g_log && g_log_n;
}

/* linear(256, 4096) -> relu -> linear(4096, 4): the first weight (4 MiB) has
 * its gradient computed in 4 row blocks of 1024 rows (nnm__grad_block_rows). */
static nnm_module *wide(nnm_ctx *ctx) {
    nnm_module *seq = tu_module(ctx, "sequential", NULL);
    nnm_module *l1 = tu_linear(ctx, "linear", 256, 4096, 1), *r = tu_module(ctx, "relu", NULL),
               *l2 = tu_linear(ctx, "linear", 4096, 4, 1);
    CU_ASSERT_FATAL(seq && l1 && r && l2);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, l1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, r), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, l2), NNM_OK);
    nnm_module_release(l1);
    nnm_module_release(r);
    nnm_module_release(l2);
    return seq;
}

/* forward + backward of mean(y^2) on batch k, 16 rows (no optimizer step). */
static nnm_status wide_fwd_bwd(nnm_ctx *ctx, nnm_module *m, nnm_ddp *d, int k) {
    float x[16 * 256];
    uint32_t state = 1234u + 77u * (uint32_t)k;
    tu_fill_rand(&state, x, 16 * 256);
    int64_t s[2] = {16, 256};
    nnm_tensor *xt = tu_tf32(ctx, 2, s, x), *y = NULL, *sq = NULL, *loss = NULL;
    nnm_status st = d ? nnm_ddp_call(d, &xt, 1, &y, 1) : nnm_module_call(m, &xt, 1, &y, 1);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, y, y, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    nnm_tensor_release(xt);
    nnm_tensor_release(y);
    nnm_tensor_release(sq);
    nnm_tensor_release(loss);
    return st;
}

/* Every parameter (grads: every .grad) of a bitwise equal to b's. */
static int same_bits(nnm_module *a, nnm_module *b, int grads) {
    tu_named pa = tu_params_of(a), pb = tu_params_of(b);
    int same = pa.n == pb.n;
    for (int i = 0; same && i < pa.n; i++) {
        nnm_tensor *ta = grads ? nnm_tensor_grad(pa.t[i]) : pa.t[i];
        nnm_tensor *tb = grads ? nnm_tensor_grad(pb.t[i]) : pb.t[i];
        int64_t n = 0, n2 = 0;
        float *va = ta ? tu_read_f32(ta, &n) : NULL, *vb = tb ? tu_read_f32(tb, &n2) : NULL;
        same = va && vb && n == n2 && memcmp(va, vb, (size_t)n * sizeof(float)) == 0;
        if (!same) fprintf(stderr, "\n  %s of %s differs\n", grads ? ".grad" : "value", pa.names[i]);
        free(va);
        free(vb);
    }
    return same;
}

/* How many all-reduces had started when the weight's gradient was complete. */
static int g_started_at_weight;
static nnm_status note_started(void *user, nnm_tensor *t) {
    (void)user, (void)t;
    g_started_at_weight = *g_log_n;
    return NNM_OK;
}

/* The first linear's weight gradient is computed in 4 blocks of 1024 rows,
 * and its bucket (all four parameters) all-reduced in 5 pieces: the
 * blocks, each started as soon as it is written (before the weight's own
 * post-accumulate-grad hook runs), then the run of the other parameters.
 * With NNM_DDP_EARLY_PARTS=0 the same pieces start together, with the
 * bucket. Either way, training and an accumulating (no_sync) backward give
 * the bare module's bits (which computes the same blocks), whatever the
 * gemm's threads. */
static void test_ddp_gradient_in_blocks(void) {
    CHECK_STATUS(nnm_plugin_load(g_ctx, fx("loop")), NNM_OK);
    CU_ASSERT_FATAL(open_log());
    LEAK_CHECK_BEGIN();
    nnm_ctx_options co = {sizeof co, 0, 42};
    nnm_ctx *ref_ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&co, &ref_ctx), NNM_OK);
    nnm_module *m = wide(g_ctx), *ref = wide(ref_ctx);
    char dir[256];
    CU_ASSERT_EQUAL_FATAL(tu_tmpdir_new(dir, sizeof dir, "nnm_ddp_blocks_"), 0);
    const char *path = tu_path(dir, "w.safetensors");
    CU_ASSERT_EQUAL(nnm_module_save(ref, path, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_load(m, path, 1, NULL), NNM_OK);
    tu_named pm = tu_params_of(m);
    nnm_tensor *w = tu_named_get(&pm, "0.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    const int64_t blk = 1024 * 256, rest = 4 + 4 * 4096 + 4096;
    for (int early = 1; early >= 0; early--) {
        if (!early) setenv("NNM_DDP_EARLY_PARTS", "0", 1);
        nnm_comm *c = NULL;
        CHECK_STATUS(nnm_comm_new(g_ctx, "loop", NULL, &c), NNM_OK);
        nnm_ddp *d = NULL;
        CHECK_STATUS(nnm_ddp_new(m, c, NULL, &d), NNM_OK);
        nnm_comm_free(c);
        unsetenv("NNM_DDP_EARLY_PARTS");
        nnm_hook_handle *h = NULL;
        CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(w, note_started, NULL, &h), NNM_OK);
        nnm_sgd_options so = {sizeof so, 0, 0.05, 0.5, 0, 0};
        nnm_optim *o = NULL, *ro = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
        CU_ASSERT_EQUAL_FATAL(nnm_optim_sgd_new(ref, &so, &ro), NNM_OK);
        for (int k = 0; k < 3; k++) {
            *g_log_n = 0;
            g_started_at_weight = -1;
            CHECK_STATUS(wide_fwd_bwd(g_ctx, m, d, k), NNM_OK);
            CU_ASSERT_EQUAL(wide_fwd_bwd(ref_ctx, ref, NULL, k), NNM_OK);
            CU_ASSERT(same_bits(m, ref, 1));
            CU_ASSERT_EQUAL(g_started_at_weight, early ? 4 : 0);
            nnm_tensor *gw = nnm_tensor_grad(w);
            CU_ASSERT_PTR_NOT_NULL_FATAL(gw);
            const nnm_tensor_desc *dw = nnm_tensor_desc_get(gw);
            const float *w0 = (const float *)((const char *)dw->data + dw->byte_offset);
            CU_ASSERT_EQUAL(*g_log_n, 5);
            for (int j = 0; j < 4 && j < *g_log_n; j++) {
                CU_ASSERT_PTR_EQUAL(g_log[j].data, w0 + j * blk);
                CU_ASSERT_EQUAL(g_log[j].n, blk);
            }
            if (*g_log_n == 5) { /* 2.bias, 2.weight, 0.bias lie before the weight */
                CU_ASSERT_PTR_EQUAL(g_log[4].data, w0 - rest);
                CU_ASSERT_EQUAL(g_log[4].n, rest);
            }
            CU_ASSERT_EQUAL(nnm_optim_step(o), NNM_OK);
            CU_ASSERT_EQUAL(nnm_optim_step(ro), NNM_OK);
            CU_ASSERT_EQUAL(nnm_optim_zero_grad(o), NNM_OK);
            CU_ASSERT_EQUAL(nnm_optim_zero_grad(ro), NNM_OK);
            CU_ASSERT(same_bits(m, ref, 0));
        }
        /* no_sync, then a synchronised backward that adds into the same
         * .grad (the blocks accumulate into the bucket view) */
        nnm_ddp_set_sync(d, 0);
        *g_log_n = 0;
        CHECK_STATUS(wide_fwd_bwd(g_ctx, m, d, 7), NNM_OK);
        CU_ASSERT_EQUAL(*g_log_n, 0);
        nnm_ddp_set_sync(d, 1);
        g_started_at_weight = -1;
        CHECK_STATUS(wide_fwd_bwd(g_ctx, m, d, 8), NNM_OK);
        CU_ASSERT_EQUAL(*g_log_n, 5);
        CU_ASSERT_EQUAL(g_started_at_weight, early ? 4 : 0);
        CU_ASSERT_EQUAL(wide_fwd_bwd(ref_ctx, ref, NULL, 7), NNM_OK);
        CU_ASSERT_EQUAL(wide_fwd_bwd(ref_ctx, ref, NULL, 8), NNM_OK);
        CU_ASSERT(same_bits(m, ref, 1));
        CU_ASSERT_EQUAL(nnm_optim_zero_grad(o), NNM_OK);
        CU_ASSERT_EQUAL(nnm_optim_zero_grad(ro), NNM_OK);
        nnm_hook_remove(h);
        nnm_hook_handle_free(h);
        nnm_optim_free(o);
        nnm_optim_free(ro);
        nnm_ddp_free(d);
    }
    nnm_module_release(m);
    nnm_module_release(ref);
    nnm_ctx_free(ref_ctx);
    tu_dir_remove_all(dir);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("comm", init, fini);
    if (!s) return 1;
    CU_add_test(s, "comm plugins go through the loader's checks", test_loader_refuses_broken_comms);
    CU_add_test(s, "communicator API (single-process loop fixture)", test_comm_api);
    CU_add_test(s, "a collective that succeeds keeps a pending error message", test_wait_keeps_pending_error);
    CU_add_test(s, "mpi outside a launcher says how to run it", test_mpi_outside_launcher);
    CU_add_test(s, "nccl loads anywhere and says 'no device' without a GPU", test_nccl_loads);
    CU_add_test(s, "a bad NNM_COMM_TIMEOUT is refused", test_bad_timeout_env);
    CU_add_test(s, "post-accumulate-grad hooks", test_grad_hook);
    CU_add_test(s, "post-accumulate-grad hooks run once per backward", test_grad_hook_once_per_backward);
    CU_add_test(s, "DDP over a world of one equals the bare module", test_ddp_world_of_one);
    CU_add_test(s, "DDP of a CNN over a world of one: conv gradients in the buckets, the bare module's bits",
                test_ddp_cnn_world_of_one);
    CU_add_test(s, "DDP all-reduces a large weight gradient block by block as it is written: the pieces, "
                "the bare module's bits", test_ddp_gradient_in_blocks);
    return tu_run();
}
