/* tests/layers/test_conformance.c - the layer conformance suite, in the style
 * of ggml's test-backend-ops: one table of cases (every layer x configs x
 * shapes, train and eval mode), each checked the same way, driven entirely by
 * the golden files PyTorch wrote (tests/golden/make_conformance_golden.py ->
 * tests/golden/conformance/<layer>.safetensors; tests/layers/README.md).
 *
 * For each case C of each file:
 *   1. build the one-module manifest case.C (the layer's type and config, by
 *      PyTorch's argument names), check print(model) against PyTorch's repr
 *      (repr.C, where the layer has a twin) and load C.state.* by name: the
 *      module's parameters and buffers must be exactly PyTorch's state_dict
 *      keys, no more, no fewer;
 *   2. set train or eval mode, call it on C.in.* with grad on, compare every
 *      output with C.out.*;
 *   3. backward of s = sum_k sum(out_k * C.gout.k); compare the gradients of
 *      the float inputs (C.grad.in.*) and of the parameters (C.grad.state.*)
 *      and the buffers after the call (C.after.*: running statistics; also
 *      parameters a forward writes in place, embedding's max_norm);
 *   4. when opts.C says gradcheck=1, compare those analytic gradients with
 *      central finite differences of s (in double from f32 outputs);
 *   5. nothing leaks (live tensors and modules as before).
 * One CUnit test per golden file (per layer type); one line per case.
 * embedding_bag's file runs twice more, in contexts whose CPU backend is the
 * cpu plugin with its embedding_bag slots counted and with them NULL
 * (nobag_backend.h): the fused kernels and the composed fallback a backend
 * without them gets both give PyTorch's values; layer_norm's file likewise
 * with the layer_norm slots (ABI 1.5) counted and NULL.
 *
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's test_conformance_emu)
 * runs every case on that device: the module is built and loaded on the CPU,
 * moved with nnm_module_to, its inputs and output weights copied there, and
 * forward, backward, gradients and buffers compared with the same goldens.
 * Finite differences (which perturb host memory) and the CPU-backend variants
 * (embedding_bag, layer_norm) run on the CPU only.
 */
#include "test_util.h"

#include "nobag_backend.h"
#include "test_device.h"

#ifndef NNM_CONFORMANCE_DIR
#error "NNM_CONFORMANCE_DIR must name tests/golden/conformance"
#endif

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */

#define MAX_FILES 256
#define MAX_STATE 32
#define GC_EPS 1e-2
#define GC_RTOL 1e-2
#define GC_ATOL 2e-3

static char g_files[MAX_FILES][512];
static int g_n_files;
static int g_cases_run, g_cases_failed;

/* ------------------------------------------------------------------------ */
/* Golden file access                                                        */
/* ------------------------------------------------------------------------ */

static int entry(nnm_safetensors *st, const char *name, nnm_st_entry *e) {
    memset(e, 0, sizeof *e);
    e->struct_size = sizeof *e;
    return nnm_safetensors_find(st, name, e) == NNM_OK;
}

static int64_t entry_numel(const nnm_st_entry *e) {
    int64_t n = 1;
    for (int32_t i = 0; i < e->ndim; i++)
        n *= e->shape[i];
    return n;
}

/* A new CPU tensor holding a copy of e (any dtype). */
static nnm_tensor *tensor_of(const nnm_st_entry *e) {
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, e->dtype, e->ndim,
                                   e->shape, &t);
    CHECK_STATUS(st, NNM_OK);
    if (st != NNM_OK)
        return NULL;
    void *p = tu_cpu_data(t);
    if (p != NULL && e->nbytes > 0)
        memcpy(p, e->data, (size_t)e->nbytes);
    return t;
}

/* Copies e into the module tensor t (f32 or i64), converting between f32 and
 * i64 (PyTorch's num_batches_tracked is i64). 1 on success. */
static int copy_into(nnm_tensor *t, const nnm_st_entry *e, const char *name) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    void *p = tu_cpu_data(t);
    const int64_t n = entry_numel(e);
    if (p == NULL || nnm_tensor_numel(t) != n || !tu_shape_is(t, e->ndim, e->shape)) {
        fprintf(stderr, "\n    state %s: shape differs from PyTorch's", name);
        return 0;
    }
    const int dst_f32 = d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32;
    const int dst_i64 = d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64;
    const int src_f32 = e->dtype.code == NNM_DTYPE_FLOAT && e->dtype.bits == 32;
    const int src_i64 = e->dtype.code == NNM_DTYPE_INT && e->dtype.bits == 64;
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (src_f32) {
            float f;
            memcpy(&f, (const char *)e->data + 4 * i, 4);
            v = f;
        } else if (src_i64) {
            int64_t q;
            memcpy(&q, (const char *)e->data + 8 * i, 8);
            v = (double)q;
        } else {
            fprintf(stderr, "\n    state %s: unexpected golden dtype %s", name, e->dtype_name);
            return 0;
        }
        if (dst_f32)
            ((float *)p)[i] = (float)v;
        else if (dst_i64)
            ((int64_t *)p)[i] = (int64_t)v;
        else {
            fprintf(stderr, "\n    state %s: module tensor of an unexpected dtype", name);
            return 0;
        }
    }
    return 1;
}

/* Reads a tensor (f32 or i64) as doubles into a new malloc'd array. */
static double *values_of(nnm_tensor *t, int64_t *n) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    *n = nnm_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(*n > 0 ? *n : 1));
    if (v == NULL)
        return NULL;
    if (d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32) {
        float *f = tu_read_f32(t, n);
        if (f == NULL) {
            free(v);
            return NULL;
        }
        for (int64_t i = 0; i < *n; i++)
            v[i] = f[i];
        free(f);
    } else if (d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64 && tu_cpu_data(t)) {
        const int64_t *q = tu_cpu_data(t);
        for (int64_t i = 0; i < *n; i++)
            v[i] = (double)q[i];
    } else if (d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64) { /* off the CPU */
        float *f = tu_read_f32(t, n); /* exact below 2^24 */
        for (int64_t i = 0; f != NULL && i < *n; i++)
            v[i] = f[i];
        if (f == NULL) {
            free(v);
            v = NULL;
        }
        free(f);
    } else {
        free(v);
        return NULL;
    }
    return v;
}

/* Compares tensor t with golden entry e (shape and values). Returns the
 * number of bad elements (-1: shape or read failure) and raises *worst to
 * the largest |got - want| / (atol + rtol |want|). */
static int compare(const char *what, nnm_tensor *t, const nnm_st_entry *e, double rtol,
                   double atol, double *worst) {
    if (t == NULL) {
        fprintf(stderr, "\n    %s: missing", what);
        return -1;
    }
    if (!tu_shape_is(t, e->ndim, e->shape)) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
        fprintf(stderr, "\n    %s: shape differs (%d dims, want %d)", what, d ? d->ndim : -1,
                e->ndim);
        return -1;
    }
    int64_t n = 0;
    double *got = values_of(t, &n);
    if (got == NULL)
        return -1;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double want;
        if (e->dtype.code == NNM_DTYPE_FLOAT) {
            float f;
            memcpy(&f, (const char *)e->data + 4 * i, 4);
            want = f;
        } else {
            int64_t q;
            memcpy(&q, (const char *)e->data + 8 * i, 8);
            want = (double)q;
        }
        const double tol = atol + rtol * fabs(want);
        /* NaN where PyTorch has NaN (attention's fully masked rows) agrees,
         * and so does the same infinity (masked_fill with -inf) */
        const int both_nan = (isnan(want) && isnan(got[i])) || (isinf(want) && got[i] == want);
        const double err = both_nan ? 0.0 : fabs(got[i] - want);
        if (!both_nan && !(err <= tol)) {
            if (bad < 3)
                fprintf(stderr, "\n    %s[%lld]: got %.9g want %.9g", what, (long long)i, got[i],
                        want);
            bad++;
        }
        if (worst != NULL && !both_nan)
            *worst = fmax(*worst, isnan(err) ? INFINITY : err / tol);
    }
    free(got);
    return bad;
}

/* ------------------------------------------------------------------------ */
/* One case                                                                  */
/* ------------------------------------------------------------------------ */

/* nnm_module_repr's text as PyTorch prints it: without the "  # N params"
 * comments and the closing "Total params" line nnmod adds. In place. */
static void torch_repr(char *s) {
    char *cut = strstr(s, "\nTotal params:");
    if (cut != NULL)
        *cut = '\0';
    char *w = s;
    for (const char *p = s; *p;) {
        if (strncmp(p, "  # ", 4) == 0) {
            const char *q = p + 4;
            while (*q >= '0' && *q <= '9')
                q++;
            if (q > p + 4 && strncmp(q, " params", 7) == 0) {
                p = q + 7;
                continue;
            }
        }
        *w++ = *p++;
    }
    *w = '\0';
}

typedef struct case_opts {
    int train, n_in, n_out, gradcheck;
    double rtol, atol;
} case_opts;

static int parse_opts(const char *s, case_opts *o) {
    char mode[16] = "";
    int gc = 0;
    int n = sscanf(s, "mode=%15[a-z];n_in=%d;n_out=%d;gradcheck=%d;rtol=%lf;atol=%lf", mode,
                   &o->n_in, &o->n_out, &gc, &o->rtol, &o->atol);
    o->train = strcmp(mode, "train") == 0;
    o->gradcheck = gc;
    return n == 6 && (o->train || strcmp(mode, "eval") == 0) && o->n_in >= 0 &&
           o->n_in <= NNM_MAX_IO && o->n_out >= 1 && o->n_out <= NNM_MAX_IO;
}

typedef struct run_ctx {
    nnm_module *m;
    nnm_tensor *in[NNM_MAX_IO];
    nnm_tensor *gout[NNM_MAX_IO];
    const case_opts *o;
} run_ctx;

/* s = sum_k sum(out_k * gout_k) over the f32 outputs as a tensor (grad mode
 * as it is), or NULL. */
static nnm_tensor *weighted(run_ctx *r, nnm_tensor *const *out) {
    nnm_tensor *s = NULL;
    for (int k = 0; k < r->o->n_out; k++) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(out[k]);
        if (d != NULL && d->dtype.code != NNM_DTYPE_FLOAT)
            continue; /* an i64 output (max pooling's indices) has no gradient */
        nnm_tensor *p = NULL, *sk = NULL, *acc = NULL;
        nnm_status st = nnm_op_binary(g_ctx, NNM_BINARY_MUL, out[k], r->gout[k], &p);
        if (st == NNM_OK)
            st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &sk);
        nnm_tensor_release(p);
        if (st == NNM_OK && s != NULL) {
            st = nnm_op_binary(g_ctx, NNM_BINARY_ADD, s, sk, &acc);
            nnm_tensor_release(sk);
            sk = acc;
        }
        nnm_tensor_release(s);
        s = sk;
        if (st != NNM_OK) {
            nnm_tensor_release(s);
            return NULL;
        }
    }
    return s;
}

/* The forward with grad mode off, s in double from the f32 outputs; NAN on
 * failure. */
static double eval_s(run_ctx *r) {
    int prev = nnm_grad_set_enabled(0);
    nnm_tensor *out[NNM_MAX_IO] = {0};
    nnm_status st = nnm_module_call(r->m, r->in, (uint32_t)r->o->n_in, out, (uint32_t)r->o->n_out);
    nnm_grad_set_enabled(prev);
    double s = st == NNM_OK ? 0.0 : NAN;
    for (int k = 0; k < r->o->n_out; k++) {
        const nnm_tensor_desc *d = st == NNM_OK ? nnm_tensor_desc_get(out[k]) : NULL;
        if (st == NNM_OK && d == NULL)
            s = NAN;
        if (d != NULL && d->dtype.code == NNM_DTYPE_FLOAT) { /* i64 outputs: constants */
            int64_t n = 0, ng = 0;
            float *y = tu_read_f32(out[k], &n);
            float *w = tu_read_f32(r->gout[k], &ng);
            if (y == NULL || w == NULL || n != ng)
                s = NAN;
            for (int64_t i = 0; y && w && i < n && n == ng; i++)
                s += (double)y[i] * (double)w[i];
            free(y);
            free(w);
        }
        nnm_tensor_release(out[k]);
    }
    return s;
}

/* Finite differences of s against the analytic gradient `ga` of leaf p
 * (contiguous f32, n elements), skipping the elements where `skip` (NULL:
 * none; f32, n elements) is nonzero. Returns bad elements; raises *worst. */
static int gradcheck_leaf(run_ctx *r, const char *what, float *p, const float *ga, int64_t n,
                          const float *skip, double *worst) {
    int bad = 0;
    for (int64_t j = 0; j < n; j++) {
        if (skip != NULL && skip[j] != 0.0f)
            continue;
        const float orig = p[j];
        const float hi = (float)(orig + GC_EPS), lo = (float)(orig - GC_EPS);
        p[j] = hi;
        const double fp = eval_s(r);
        p[j] = lo;
        const double fm = eval_s(r);
        p[j] = orig;
        const double num = (fp - fm) / ((double)hi - (double)lo);
        const double err = fabs((double)ga[j] - num);
        const double tol = GC_ATOL + GC_RTOL * fabs(num);
        if (!(err <= tol)) {
            if (bad < 3)
                fprintf(stderr, "\n    gradcheck %s[%lld]: analytic %.7g numeric %.7g", what,
                        (long long)j, (double)ga[j], num);
            bad++;
        }
        *worst = fmax(*worst, isnan(err) ? INFINITY : err / tol);
    }
    return bad;
}

static int state_entries(nnm_safetensors *st, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (uint32_t i = 0; i < nnm_safetensors_count(st); i++) {
        nnm_st_entry e = {.struct_size = sizeof e};
        if (nnm_safetensors_entry(st, i, &e) == NNM_OK && strncmp(e.name, prefix, len) == 0)
            n++;
    }
    return n;
}

/* Runs case C; returns 1 when every check passed. want_repr (NULL: not
 * compared) is PyTorch's repr of the module. */
static int run_case(nnm_safetensors *st, const char *C, const char *manifest, const char *optstr,
                    const char *want_repr) {
    LEAK_CHECK_BEGIN();
    char name[512];
    case_opts o;
    int fails = 0;
    double w_fwd = 0.0, w_bwd = 0.0, w_gc = 0.0;
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.o = &o;
    nnm_manifest *mf = NULL;
    nnm_tensor *out[NNM_MAX_IO] = {0}, *s = NULL;
    tu_named params, buffers;
    memset(&params, 0, sizeof params);
    memset(&buffers, 0, sizeof buffers);

    if (!parse_opts(optstr, &o)) {
        fprintf(stderr, "\n    bad opts \"%s\"", optstr);
        fails++;
        goto done;
    }
    nnm_status rc = nnm_manifest_parse(g_ctx, manifest, strlen(manifest), NNM_MANIFEST_JSON, NULL,
                                       NULL, &mf);
    if (rc == NNM_OK)
        rc = nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &r.m);
    if (rc != NNM_OK) {
        fprintf(stderr, "\n    build: %s: %s", nnm_status_name(rc), nnm_ctx_errmsg(g_ctx));
        fails++;
        goto done;
    }

    /* 0. print(model) as PyTorch prints it */
    if (want_repr != NULL) {
        char got[2048];
        nnm_module_repr(r.m, got, sizeof got);
        torch_repr(got);
        if (strcmp(got, want_repr) != 0) {
            fprintf(stderr, "\n    repr \"%s\", PyTorch's \"%s\"", got, want_repr);
            fails++;
        }
    }

    /* 1. state, by PyTorch's names, strictly */
    CHECK_STATUS(nnm_module_named_parameters(r.m, tu_named_add, &params), NNM_OK);
    CHECK_STATUS(nnm_module_named_buffers(r.m, tu_named_add, &buffers), NNM_OK);
    snprintf(name, sizeof name, "%s.state.", C);
    if (state_entries(st, name) != params.n + buffers.n) {
        fprintf(stderr, "\n    %d parameters + %d buffers, PyTorch's state_dict has %d entries",
                params.n, buffers.n, state_entries(st, name));
        fails++;
    }
    for (int b = 0; b < 2; b++) {
        const tu_named *l = b ? &buffers : &params;
        for (int i = 0; i < l->n; i++) {
            nnm_st_entry e;
            snprintf(name, sizeof name, "%s.state.%s", C, l->names[i]);
            if (!entry(st, name, &e)) {
                fprintf(stderr, "\n    '%s' is not in PyTorch's state_dict", l->names[i]);
                fails++;
            } else if (!copy_into(l->t[i], &e, l->names[i])) {
                fails++;
            }
        }
    }
    if (fails)
        goto done;
    CHECK_STATUS(nnm_module_train(r.m, o.train), NNM_OK);
    if (td_off_cpu()) { /* the state was loaded on the CPU; the case runs on the test device */
        rc = nnm_module_to(r.m, td_device());
        if (rc != NNM_OK) {
            fprintf(stderr, "\n    to %s: %s: %s", td_name(), nnm_status_name(rc), nnm_ctx_errmsg(g_ctx));
            fails++;
            goto done;
        }
        o.gradcheck = 0; /* finite differences perturb host memory: the CPU run does them */
    }

    /* 2. forward */
    for (int i = 0; i < o.n_in; i++) {
        nnm_st_entry e;
        snprintf(name, sizeof name, "%s.in.%d", C, i);
        if (!entry(st, name, &e) || (r.in[i] = tensor_of(&e)) == NULL || !td_move(g_ctx, &r.in[i])) {
            fprintf(stderr, "\n    input %d missing", i);
            fails++;
            goto done;
        }
        if (e.dtype.code == NNM_DTYPE_FLOAT)
            CHECK_STATUS(nnm_tensor_set_requires_grad(r.in[i], 1), NNM_OK);
    }
    for (int k = 0; k < o.n_out; k++) {
        nnm_st_entry e;
        snprintf(name, sizeof name, "%s.gout.%d", C, k);
        if (!entry(st, name, &e) || (r.gout[k] = tensor_of(&e)) == NULL || !td_move(g_ctx, &r.gout[k])) {
            fprintf(stderr, "\n    gout %d missing", k);
            fails++;
            goto done;
        }
    }
    int prev = nnm_grad_set_enabled(1);
    rc = nnm_module_call(r.m, r.in, (uint32_t)o.n_in, out, (uint32_t)o.n_out);
    if (rc != NNM_OK) {
        nnm_grad_set_enabled(prev);
        fprintf(stderr, "\n    forward: %s: %s", nnm_status_name(rc), nnm_ctx_errmsg(g_ctx));
        fails++;
        goto done;
    }
    for (int k = 0; k < o.n_out; k++) {
        nnm_st_entry e;
        snprintf(name, sizeof name, "%s.out.%d", C, k);
        CU_ASSERT_TRUE_FATAL(entry(st, name, &e));
        fails += compare(name, out[k], &e, o.rtol, o.atol, &w_fwd) != 0;
    }

    /* 3. backward */
    s = weighted(&r, out);
    rc = s != NULL ? nnm_backward(s, NULL, 0) : NNM_E_INVALID;
    nnm_grad_set_enabled(prev);
    if (rc != NNM_OK) {
        fprintf(stderr, "\n    backward: %s: %s", nnm_status_name(rc), nnm_ctx_errmsg(g_ctx));
        fails++;
        goto done;
    }
    for (int i = 0; i < o.n_in; i++) {
        nnm_st_entry e;
        snprintf(name, sizeof name, "%s.grad.in.%d", C, i);
        if (entry(st, name, &e))
            fails += compare(name, nnm_tensor_grad(r.in[i]), &e, o.rtol, o.atol, &w_bwd) != 0;
    }
    for (int i = 0; i < params.n; i++) {
        nnm_st_entry e;
        snprintf(name, sizeof name, "%s.grad.state.%s", C, params.names[i]);
        nnm_tensor *g = nnm_tensor_grad(params.t[i]);
        if (entry(st, name, &e)) {
            fails += compare(name, g, &e, o.rtol, o.atol, &w_bwd) != 0;
        } else if (g != NULL) { /* PyTorch left .grad None: nnmod must give zeros */
            int64_t n = 0;
            float *v = tu_read_f32(g, &n);
            for (int64_t j = 0; v && j < n; j++)
                if (v[j] != 0.0f) {
                    fprintf(stderr, "\n    %s: nonzero gradient where PyTorch has none", name);
                    fails++;
                    break;
                }
            free(v);
        }
    }
    for (int b = 0; b < 2; b++) { /* buffers, and parameters a forward writes (max_norm) */
        const tu_named *l = b ? &params : &buffers;
        for (int i = 0; i < l->n; i++) {
            nnm_st_entry e;
            snprintf(name, sizeof name, "%s.after.%s", C, l->names[i]);
            if (entry(st, name, &e))
                fails += compare(name, l->t[i], &e, o.rtol, o.atol, &w_fwd) != 0;
        }
    }

    /* 4. finite differences (the analytic gradients are nnmod's own) */
    if (o.gradcheck && !fails) {
        for (int i = 0; i < o.n_in; i++) {
            nnm_tensor *g = nnm_tensor_grad(r.in[i]);
            float *p = tu_cpu_data(r.in[i]);
            const nnm_tensor_desc *d = nnm_tensor_desc_get(r.in[i]);
            if (g == NULL || p == NULL || d->dtype.code != NNM_DTYPE_FLOAT)
                continue;
            int64_t n = 0;
            float *ga = tu_read_f32(g, &n);
            snprintf(name, sizeof name, "in.%d", i);
            if (ga != NULL)
                fails += gradcheck_leaf(&r, name, p, ga, n, NULL, &w_gc) != 0;
            free(ga);
        }
        for (int i = 0; i < params.n; i++) {
            nnm_tensor *g = nnm_tensor_grad(params.t[i]);
            float *p = tu_cpu_data(params.t[i]);
            if (g == NULL || p == NULL)
                continue;
            int64_t n = 0;
            float *ga = tu_read_f32(g, &n);
            nnm_st_entry e;
            snprintf(name, sizeof name, "%s.nograd.%s", C, params.names[i]);
            const float *skip = entry(st, name, &e) && entry_numel(&e) == n ? e.data : NULL;
            for (int64_t j = 0; skip != NULL && ga != NULL && j < n; j++)
                if (skip[j] != 0.0f && ga[j] != 0.0f) {
                    fprintf(stderr, "\n    %s[%lld]: gradient %g where the layer defines none",
                            params.names[i], (long long)j, (double)ga[j]);
                    fails++;
                    break;
                }
            if (ga != NULL)
                fails += gradcheck_leaf(&r, params.names[i], p, ga, n, skip, &w_gc) != 0;
            free(ga);
        }
    }

done:
    nnm_tensor_release(s);
    for (int k = 0; k < NNM_MAX_IO; k++) {
        nnm_tensor_release(out[k]);
        nnm_tensor_release(r.gout[k]);
        nnm_tensor_release(r.in[k]);
    }
    nnm_module_release(r.m);
    nnm_manifest_free(mf);
    LEAK_CHECK_END();
    g_cases_run++;
    if (fails)
        g_cases_failed++;
    fprintf(stderr, "\n  %-4s %-40s fwd %.2g  bwd %.2g  %s%.2g", fails ? "FAIL" : "ok", C,
            w_fwd, w_bwd, o.gradcheck ? "gradcheck " : "(no gradcheck) ", w_gc);
    CU_ASSERT_EQUAL(fails, 0);
    return fails == 0;
}

/* ------------------------------------------------------------------------ */
/* One CUnit test per golden file                                            */
/* ------------------------------------------------------------------------ */

/* __metadata__[prefix + C], or NULL. */
static const char *meta_get(nnm_safetensors *st, const char *prefix, const char *C) {
    char key[512];
    snprintf(key, sizeof key, "%s%s", prefix, C);
    for (uint32_t j = 0; j < nnm_safetensors_metadata_count(st); j++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, j, &k, &v) == NNM_OK && strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

static void run_file(int index) {
    if (g_skip)
        return;
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, g_files[index], &st), NNM_OK);
    if (st == NULL)
        return;
    int cases = 0;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &v) != NNM_OK || strncmp(k, "case.", 5) != 0)
            continue;
        const char *opts = meta_get(st, "opts.", k + 5);
        CU_ASSERT_PTR_NOT_NULL(opts);
        if (opts == NULL)
            continue;
        run_case(st, k + 5, v, opts, meta_get(st, "repr.", k + 5));
        cases++;
    }
    CU_ASSERT_TRUE(cases > 0); /* a file without cases is a broken fixture */
    nnm_safetensors_close(st);
    fprintf(stderr, "\n");
}

#define FILE_TEST(i)                                                                     \
    static void file_test_##i(void) { run_file(i); }
#define FT10(d)                                                                          \
    FILE_TEST(d##0) FILE_TEST(d##1) FILE_TEST(d##2) FILE_TEST(d##3) FILE_TEST(d##4)      \
    FILE_TEST(d##5) FILE_TEST(d##6) FILE_TEST(d##7) FILE_TEST(d##8) FILE_TEST(d##9)
FILE_TEST(0) FILE_TEST(1) FILE_TEST(2) FILE_TEST(3) FILE_TEST(4)
FILE_TEST(5) FILE_TEST(6) FILE_TEST(7) FILE_TEST(8) FILE_TEST(9)
FT10(1) FT10(2) FT10(3) FT10(4) FT10(5) FT10(6) FT10(7) FT10(8)
FT10(9) FT10(10) FT10(11) FT10(12) FT10(13) FT10(14) FT10(15)
#define FT_REF(d)                                                                        \
    file_test_##d##0, file_test_##d##1, file_test_##d##2, file_test_##d##3,              \
        file_test_##d##4, file_test_##d##5, file_test_##d##6, file_test_##d##7,          \
        file_test_##d##8, file_test_##d##9
static void (*const g_file_tests[])(void) = {
    file_test_0, file_test_1, file_test_2, file_test_3, file_test_4,
    file_test_5, file_test_6, file_test_7, file_test_8, file_test_9,
    FT_REF(1), FT_REF(2), FT_REF(3), FT_REF(4), FT_REF(5), FT_REF(6), FT_REF(7), FT_REF(8),
    FT_REF(9), FT_REF(10), FT_REF(11), FT_REF(12), FT_REF(13), FT_REF(14), FT_REF(15)};

static int cmp_str(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

/* Lists tests/golden/conformance/ *.safetensors, sorted. */
static int list_files(void) {
    DIR *d = opendir(NNM_CONFORMANCE_DIR);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && g_n_files < MAX_FILES) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0)
            snprintf(g_files[g_n_files++], sizeof g_files[0], "%s/%s", NNM_CONFORMANCE_DIR,
                     e->d_name);
    }
    closedir(d);
    qsort(g_files, (size_t)g_n_files, sizeof g_files[0], cmp_str);
    return g_n_files;
}

/* embedding_bag.safetensors again, on "cpubagcount" (the fused slots,
 * counted) and on "cpunobag" (the slots NULL: the layer's composed path). */
static void test_embedding_bag_both_paths(void) {
    if (td_off_cpu() || g_skip)
        return; /* CPU-backend variants: the CPU run covers them */
    int file = -1;
    for (int i = 0; i < g_n_files; i++) {
        const char *base = strrchr(g_files[i], '/');
        if (base != NULL && strcmp(base, "/embedding_bag.safetensors") == 0) file = i;
    }
    CU_ASSERT_TRUE_FATAL(file >= 0);
    CU_ASSERT_EQUAL_FATAL(nobag_setup(NNM_TEST_CPU_PLUGIN), 0);
    const nnm_plugin_desc *const descs[2] = {&bagcount_desc, &nobag_desc};
    nnm_ctx *main_ctx = g_ctx;
    for (int k = 0; k < 2; k++) {
        nnm_ctx *ctx = NULL;
        CU_ASSERT_EQUAL_FATAL(tu_ctx_new(&ctx), 0);
        CHECK_STATUS(nnm_plugin_register_static(ctx, descs[k], "test_conformance"), NNM_OK);
        g_nobag_index_selects = g_bagcount_calls = 0;
        const int failed = g_cases_failed;
        fprintf(stderr, "\n  on %s:", descs[k]->name);
        g_ctx = ctx;
        run_file(file);
        g_ctx = main_ctx;
        CU_ASSERT_EQUAL(g_cases_failed, failed);
        if (k == 0) { /* the fused kernels ran (scale_grad_by_freq's rows still compose) */
            CU_ASSERT_TRUE(g_bagcount_calls > 0);
        } else { /* the composed path gathered the rows */
            CU_ASSERT_TRUE(g_nobag_index_selects > 0);
        }
        tu_ctx_free(&ctx);
    }
    /* a slot failing with a status outside the ABI is blamed on the backend */
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(tu_ctx_new(&ctx), 0);
    CHECK_STATUS(nnm_plugin_register_static(ctx, &baglies_desc, "test_conformance"), NNM_OK);
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_int(c, "num_embeddings", 4);
    nnm_config_set_int(c, "embedding_dim", 2);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(ctx, "embedding_bag", c, &m), NNM_OK);
    nnm_config_free(c);
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_tensor_from_i64(ctx, 2, (int64_t[]){2, 2}, (int64_t[]){0, 1, 2, 3}, &x), NNM_OK);
    if (m != NULL && x != NULL) {
        CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_E_PLUGIN);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "cpubaglies"));
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "embedding_bag failed with status 4242"));
        CU_ASSERT_PTR_NULL(y);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    tu_ctx_free(&ctx);
    nobag_teardown();
}

/* layer_norm.safetensors again, on "cpulncount" (the fused layer_norm
 * slots, counted) and on "cpunoln" (the slots NULL: the layer's composed
 * path), then a slot that lies is blamed on the backend. */
static void test_layer_norm_both_paths(void) {
    if (td_off_cpu() || g_skip)
        return; /* CPU-backend variants: the CPU run covers them */
    int file = -1;
    for (int i = 0; i < g_n_files; i++) {
        const char *base = strrchr(g_files[i], '/');
        if (base != NULL && strcmp(base, "/layer_norm.safetensors") == 0) file = i;
    }
    CU_ASSERT_TRUE_FATAL(file >= 0);
    CU_ASSERT_EQUAL_FATAL(nobag_setup(NNM_TEST_CPU_PLUGIN), 0);
    const nnm_plugin_desc *const descs[2] = {&lncount_desc, &noln_desc};
    nnm_ctx *main_ctx = g_ctx;
    for (int k = 0; k < 2; k++) {
        nnm_ctx *ctx = NULL;
        CU_ASSERT_EQUAL_FATAL(tu_ctx_new(&ctx), 0);
        CHECK_STATUS(nnm_plugin_register_static(ctx, descs[k], "test_conformance"), NNM_OK);
        g_lncount_calls = 0;
        const int failed = g_cases_failed;
        fprintf(stderr, "\n  on %s:", descs[k]->name);
        g_ctx = ctx;
        run_file(file);
        g_ctx = main_ctx;
        CU_ASSERT_EQUAL(g_cases_failed, failed);
        if (k == 0) CU_ASSERT_TRUE(g_lncount_calls > 0); /* forward and backward kernels ran */
        tu_ctx_free(&ctx);
    }
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(tu_ctx_new(&ctx), 0);
    CHECK_STATUS(nnm_plugin_register_static(ctx, &lnlies_desc, "test_conformance"), NNM_OK);
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_int(c, "normalized_shape", 3);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(ctx, "layer_norm", c, &m), NNM_OK);
    nnm_config_free(c);
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(ctx, 2, (int64_t[]){2, 3}, (float[]){0, 1, 2, 3, 4, 6}, &x), NNM_OK);
    if (m != NULL && x != NULL) {
        CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_E_PLUGIN);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "cpulnlies"));
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "layer_norm failed with status 4242"));
        CU_ASSERT_PTR_NULL(y);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    tu_ctx_free(&ctx);
    nobag_teardown();
}

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx) != 0)
        return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    return r < 0;
}

static int suite_clean(void) {
    fprintf(stderr, "\nconformance on %s: %d cases, %d failed\n", td_name(), g_cases_run, g_cases_failed);
    const int r = tu_ctx_free(&g_ctx);
    td_teardown();
    return r;
}

static void test_all_files_listed(void) {
    /* more golden files than test slots would silently skip layers */
    CU_ASSERT_TRUE(g_n_files > 0);
    CU_ASSERT_TRUE(g_n_files <= (int)(sizeof g_file_tests / sizeof g_file_tests[0]));
}

int main(void) {
    CU_pSuite s = tu_suite("layer conformance", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    list_files();
    CU_add_test(s, "golden files found", test_all_files_listed);
    const int slots = (int)(sizeof g_file_tests / sizeof g_file_tests[0]);
    for (int i = 0; i < g_n_files && i < slots; i++) {
        const char *base = strrchr(g_files[i], '/');
        CU_add_test(s, base != NULL ? base + 1 : g_files[i], g_file_tests[i]);
    }
    CU_add_test(s, "embedding_bag: fused slots and composed fallback", test_embedding_bag_both_paths);
    CU_add_test(s, "layer_norm: fused slots and composed fallback", test_layer_norm_both_paths);
    return tu_run();
}
