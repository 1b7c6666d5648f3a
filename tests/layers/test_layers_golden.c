/* tests/layers/test_layers_golden.c - every case in tests/golden/layers (made
 * by tests/golden/make_layers_golden.py with PyTorch 1.13) run through the
 * real call path: build the one-module manifest, load the state PyTorch
 * started from, set train/eval, make the warm-up calls, then check
 *   - the output against PyTorch's,
 *   - the gradients of sum(output * W) for the inputs and every parameter
 *     against PyTorch's autograd,
 *   - the buffers afterwards (running statistics) against PyTorch's,
 *   - the same gradients against central finite differences (a sample of
 *     elements per tensor, in double from the float32 outputs).
 * Cases cover the ABI 1.3 host ops (through tests/layers/op_probe.c) and the
 * layer plugins of issue 10 part A.
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's
 * test_layers_golden_emu): the same cases on that device, the module moved
 * after its state loaded; finite differences (host memory) on the CPU run
 * only. */
#include "test_util.h"

#include "golden_util.h"
#include "test_device.h"

#define FWD_RTOL 1e-4
#define FWD_ATOL 1e-5
#define GRAD_RTOL 1e-3
#define GRAD_ATOL 1e-4
#define FD_EPS 1e-2
#define FD_RTOL 2e-2
#define FD_ATOL 2e-3
#define FD_SAMPLES 12

static nnm_ctx *g_ctx;
static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */
#define TU_CTX g_ctx

/* What the run compared, for the summary (a check that compared nothing
 * cannot pass silently: each case must compare its output). */
static int64_t g_fd_points;

typedef struct gcase {
    const char *file;
    nnm_safetensors *st;
    nnm_module *m;
    const char *mode;
    int n_inputs, n_warmup;
    int grad_input[NNM_MAX_IO];
    nnm_tensor *in[NNM_MAX_IO];
} gcase;

typedef struct named_list {
    int n;
    char names[32][96];
    nnm_tensor *t[32];
} named_list;

static nnm_status collect(void *user, const char *name, nnm_tensor *t) {
    named_list *l = user;
    if (l->n < 32) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        l->t[l->n++] = t;
    }
    return NNM_OK;
}

/* Writes every state.<name> entry into the module's tensor of that name. */
static int load_state(gcase *c) {
    named_list all = {0};
    nnm_module_named_parameters(c->m, collect, &all);
    nnm_module_named_buffers(c->m, collect, &all);
    int bad = 0;
    for (uint32_t i = 0; i < nnm_safetensors_count(c->st); i++) {
        nnm_st_entry e = {sizeof e};
        if (nnm_safetensors_entry(c->st, i, &e) != NNM_OK || strncmp(e.name, "state.", 6) != 0) continue;
        int found = 0;
        for (int j = 0; j < all.n; j++)
            if (strcmp(all.names[j], e.name + 6) == 0) {
                found = 1;
                const nnm_tensor_desc *td = nnm_tensor_desc_get(all.t[j]);
                if (td->dtype.code == NNM_DTYPE_INT && td->dtype.bits == 64 && e.dtype.code == NNM_DTYPE_FLOAT &&
                    e.dtype.bits == 32 && (int64_t)(e.nbytes / 4) == nnm_tensor_numel(all.t[j])) {
                    /* num_batches_tracked: an i64 buffer (as PyTorch's), a f32 count in these files */
                    int64_t *q = tu_cpu_data(all.t[j]);
                    for (uint64_t k = 0; k < e.nbytes / 4; k++) q[k] = (int64_t)((const float *)e.data)[k];
                    continue;
                }
                if (!tu_write_f32(all.t[j], (const float *)e.data, (size_t)(e.nbytes / 4))) {
                    fprintf(stderr, "\n  %s: cannot load %s (shape?)\n", c->file, e.name);
                    bad++;
                }
            }
        if (!found) {
            fprintf(stderr, "\n  %s: the module has no tensor named %s (PyTorch's state_dict has)\n", c->file,
                    e.name + 6);
            bad++;
        }
    }
    /* and the module has nothing PyTorch lacks */
    for (int j = 0; j < all.n; j++) {
        char key[128];
        snprintf(key, sizeof key, "state.%s", all.names[j]);
        nnm_st_entry e = {sizeof e};
        if (nnm_safetensors_find(c->st, key, &e) != NNM_OK) {
            fprintf(stderr, "\n  %s: the module's %s is not in PyTorch's state_dict\n", c->file, all.names[j]);
            bad++;
        }
    }
    return bad;
}

/* sum(y * W) as a graph (for backward) */
static nnm_status weighted(nnm_tensor *y, nnm_tensor *w, nnm_tensor **s) {
    nnm_tensor *p = NULL;
    nnm_status st = nnm_op_binary(g_ctx, NNM_BINARY_MUL, y, w, &p);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, s);
    nnm_tensor_release(p);
    return st;
}

/* sum(f(inputs) * W) in double from float32 outputs, grad mode off. */
static double eval_sum(gcase *c, nnm_tensor *w) {
    int prev = nnm_grad_set_enabled(0);
    nnm_tensor *y = NULL;
    double s = NAN;
    if (nnm_module_call(c->m, c->in, (uint32_t)c->n_inputs, &y, 1) == NNM_OK) {
        int64_t n = 0, nw = 0;
        float *v = tu_read_f32(y, &n), *wv = tu_read_f32(w, &nw);
        if (v && wv && n == nw) {
            s = 0;
            for (int64_t i = 0; i < n; i++) s += (double)v[i] * (double)wv[i];
        }
        free(v);
        free(wv);
    }
    nnm_tensor_release(y);
    nnm_grad_set_enabled(prev);
    return s;
}

/* Central differences for a sample of t's elements against grad g. */
static int fd_check(gcase *c, const char *what, nnm_tensor *t, nnm_tensor *g, nnm_tensor *w) {
    float *p = tu_cpu_data(t);
    int64_t n = nnm_tensor_numel(t), ng = 0;
    if (!p || n == 0) return 0;
    float *gv = g ? tu_read_f32(g, &ng) : NULL;
    if (!gv || ng != n) {
        fprintf(stderr, "\n  %s: no gradient for %s\n", c->file, what);
        free(gv);
        return 1;
    }
    int bad = 0;
    int64_t step = n > FD_SAMPLES ? n / FD_SAMPLES : 1;
    for (int64_t i = (n > 1 ? 1 : 0); i < n; i += step) {
        const float x0 = p[i];
        p[i] = x0 + (float)FD_EPS;
        const float xp = p[i];
        double sp = eval_sum(c, w);
        p[i] = x0 - (float)FD_EPS;
        const float xm = p[i];
        double sm = eval_sum(c, w);
        p[i] = x0;
        double num = (sp - sm) / ((double)xp - (double)xm);
        g_fd_points++;
        if (!tu_near(gv[i], num, FD_RTOL, FD_ATOL)) {
            if (bad < 3)
                fprintf(stderr, "\n  %s: finite differences for %s[%lld]: analytic %.6g numeric %.6g\n", c->file,
                        what, (long long)i, (double)gv[i], num);
            bad++;
        }
    }
    free(gv);
    return bad;
}

static int run_case(const char *dir, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    gcase c;
    memset(&c, 0, sizeof c);
    c.file = file;
    int bad = 0;
    nnm_manifest *mf = NULL;
    nnm_tensor *y = NULL, *w = NULL, *s = NULL;
    if (nnm_safetensors_open(g_ctx, path, &c.st) != NNM_OK) {
        fprintf(stderr, "\n  %s: %s\n", file, nnm_ctx_errmsg(g_ctx));
        return 1;
    }
    const char *man = gu_meta(c.st, "manifest"), *gi = gu_meta(c.st, "grad_inputs");
    c.mode = gu_meta(c.st, "mode");
    c.n_inputs = atoi(gu_meta(c.st, "n_inputs") ? gu_meta(c.st, "n_inputs") : "0");
    c.n_warmup = atoi(gu_meta(c.st, "n_warmup") ? gu_meta(c.st, "n_warmup") : "0");
    if (!man || !c.mode || c.n_inputs < 1 || c.n_inputs > NNM_MAX_IO) {
        fprintf(stderr, "\n  %s: malformed fixture\n", file);
        bad = 1;
        goto done;
    }
    for (const char *q = gi; q && *q;) {
        int k = atoi(q);
        if (k >= 0 && k < NNM_MAX_IO) c.grad_input[k] = 1;
        q = strchr(q, ',');
        if (q) q++;
    }
    if (nnm_manifest_parse(g_ctx, man, strlen(man), NNM_MANIFEST_JSON, NULL, NULL, &mf) != NNM_OK ||
        nnm_manifest_build(mf, 0, &c.m) != NNM_OK) {
        fprintf(stderr, "\n  %s: building the layer: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    if ((bad = load_state(&c))) goto done;
    const char *want_repr = gu_meta(c.st, "repr");
    if (want_repr) {
        char got[1024];
        nnm_module_repr(c.m, got, sizeof got);
        gu_torch_repr(got);
        size_t len = strlen(got);
        while (len && got[len - 1] == '\n') got[--len] = 0;
        g_gu.tensors++; /* one more thing compared */
        if (strcmp(got, want_repr) != 0) {
            fprintf(stderr, "\n  %s: repr\n    got  %s\n    want %s\n", file, got, want_repr);
            bad++;
        }
    }
    nnm_module_train(c.m, strcmp(c.mode, "train") == 0);
    if (nnm_module_to(c.m, td_device()) != NNM_OK) {
        fprintf(stderr, "\n  %s: to %s: %s\n", file, td_name(), nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    for (int k = 0; k < c.n_warmup && !bad; k++) {
        nnm_tensor *win[NNM_MAX_IO] = {0}, *wy = NULL;
        for (int i = 0; i < c.n_inputs; i++) {
            char name[64];
            snprintf(name, sizeof name, "warmup%d_input_%d", k, i);
            win[i] = gu_entry_f32(g_ctx, c.st, name);
            td_move(g_ctx, &win[i]);
        }
        int prev = nnm_grad_set_enabled(0);
        if (nnm_module_call(c.m, win, (uint32_t)c.n_inputs, &wy, 1) != NNM_OK) {
            fprintf(stderr, "\n  %s: warm-up call %d: %s\n", file, k, nnm_ctx_errmsg(g_ctx));
            bad = 1;
        }
        nnm_grad_set_enabled(prev);
        nnm_tensor_release(wy);
        for (int i = 0; i < c.n_inputs; i++) nnm_tensor_release(win[i]);
    }
    if (bad) goto done;
    for (int i = 0; i < c.n_inputs; i++) {
        char name[32];
        snprintf(name, sizeof name, "input_%d", i);
        c.in[i] = gu_entry_f32(g_ctx, c.st, name);
        if (!c.in[i] || !td_move(g_ctx, &c.in[i])) {
            fprintf(stderr, "\n  %s: no %s\n", file, name);
            bad = 1;
            goto done;
        }
        if (c.grad_input[i]) nnm_tensor_set_requires_grad(c.in[i], 1);
    }
    if (nnm_module_call(c.m, c.in, (uint32_t)c.n_inputs, &y, 1) != NNM_OK) {
        fprintf(stderr, "\n  %s: call: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    bad += gu_compare(file, "output", y, c.st, "output_0", FWD_RTOL, FWD_ATOL);
    /* buffers after every call, before any finite-difference call moves them */
    named_list bufs = {0};
    nnm_module_named_buffers(c.m, collect, &bufs);
    for (int j = 0; j < bufs.n; j++) {
        char key[128];
        snprintf(key, sizeof key, "state_after.%s", bufs.names[j]);
        bad += gu_compare(file, key, bufs.t[j], c.st, key, FWD_RTOL, FWD_ATOL);
    }
    w = gu_entry_f32(g_ctx, c.st, "upstream_0");
    if (w != NULL && !td_move(g_ctx, &w)) bad++;
    nnm_st_entry e = {sizeof e};
    int has_grads = 0;
    for (uint32_t i = 0; i < nnm_safetensors_count(c.st); i++)
        if (nnm_safetensors_entry(c.st, i, &e) == NNM_OK &&
            (!strncmp(e.name, "grad_input_", 11) || !strncmp(e.name, "grad.", 5)))
            has_grads = 1;
    if (!has_grads || !w) goto done;
    if (weighted(y, w, &s) != NNM_OK || nnm_backward(s, NULL, 0) != NNM_OK) {
        fprintf(stderr, "\n  %s: backward: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad++;
        goto done;
    }
    for (int i = 0; i < c.n_inputs; i++) {
        char name[32];
        snprintf(name, sizeof name, "grad_input_%d", i);
        if (nnm_safetensors_find(c.st, name, &e) == NNM_OK)
            bad += gu_compare(file, name, nnm_tensor_grad(c.in[i]), c.st, name, GRAD_RTOL, GRAD_ATOL);
    }
    named_list ps = {0};
    nnm_module_named_parameters(c.m, collect, &ps);
    for (int j = 0; j < ps.n; j++) {
        char key[128];
        snprintf(key, sizeof key, "grad.%s", ps.names[j]);
        bad += gu_compare(file, key, nnm_tensor_grad(ps.t[j]), c.st, key, GRAD_RTOL, GRAD_ATOL);
    }
    /* finite differences (eval-mode or train-mode alike: f is what the call computes) */
    for (int i = 0; i < c.n_inputs; i++)
        if (c.grad_input[i]) {
            char name[32];
            snprintf(name, sizeof name, "input_%d", i);
            bad += fd_check(&c, name, c.in[i], nnm_tensor_grad(c.in[i]), w) != 0;
        }
    for (int j = 0; j < ps.n; j++) bad += fd_check(&c, ps.names[j], ps.t[j], nnm_tensor_grad(ps.t[j]), w) != 0;
done:
    nnm_tensor_release(s);
    nnm_tensor_release(w);
    nnm_tensor_release(y);
    for (int i = 0; i < c.n_inputs; i++) nnm_tensor_release(c.in[i]);
    nnm_module_release(c.m);
    nnm_manifest_free(mf);
    nnm_safetensors_close(c.st);
    return bad;
}

static void test_golden_cases(void) {
    if (g_skip) return;
    char *names[512];
    int n = gu_list_fixtures(NNM_TEST_GOLDEN_DIR, names, 512);
    CU_ASSERT_TRUE(n >= 20); /* the fixtures are there */
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int bad = run_case(NNM_TEST_GOLDEN_DIR, names[i]);
        if (bad) {
            fprintf(stderr, "\n  FAILED: %s\n", names[i]);
            failed++;
        }
        free(names[i]);
    }
    printf("\n    layers golden on %s: %d cases, %d failed; %lld tensors (%lld values) compared with PyTorch, "
           "%lld finite-difference points\n",
           td_name(), n, failed, (long long)g_gu.tensors, (long long)g_gu.values, (long long)g_fd_points);
    CU_ASSERT_TRUE(g_gu.tensors >= 2 * n);
    if (!td_off_cpu()) CU_ASSERT_TRUE(g_fd_points >= 10 * n); /* finite differences: on the CPU */
    CU_ASSERT_EQUAL(failed, 0);
}

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, 0, 42};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    if (nnm_plugin_load(g_ctx, NNM_TEST_OP_PROBE) != NNM_OK) return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    return r < 0;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    td_teardown();
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("layers_golden", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "every PyTorch golden case: forward, backward, buffers, finite differences",
                test_golden_cases);
    return tu_run();
}
