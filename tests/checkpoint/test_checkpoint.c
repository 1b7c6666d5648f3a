/* tests/checkpoint/test_checkpoint.c - nnm_checkpoint_save/_load through the
 * public API.
 *
 * Bit-exact resume: training an MLP (linear 4-8, relu, linear 8-3,
 * cross-entropy) for 6 steps must give exactly (memcmp) the parameters and
 * optimizer state of training 3 steps, saving a checkpoint, rebuilding the
 * model from its manifest (nnm_manifest_from_module, written, parsed back in
 * a context of another seed, built without weights) with a new optimizer,
 * loading, and training 3 more, for SGD (momentum, nesterov, weight decay),
 * Adam (amsgrad) and AdamW, each with two parameter groups and an lr
 * schedule that changes group 0's lr before the save (the load must restore
 * it). Also: a checkpoint saved before any step (no state) resets a trained
 * optimizer to first-step semantics; user metadata round trip; manifest
 * hash; wrong optimizer kind, missing or unexpected keys, a missing state
 * tensor, mismatched groups and truncated or corrupted files are refused
 * with nothing changed.
 *
 * Every run has its own context (its seed decides the initial weights);
 * OpenBLAS runs single-threaded so sums are reduced in a fixed order. Each run
 * checks that it leaves no live tensor or module behind.
 */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp, truncate */

#include "test_util.h"

#define N_SAMPLES 16
#define N_IN 4
#define N_HIDDEN 8
#define N_CLASSES 3
#define MAX_SNAP 64

static char g_dir[64];
static nnm_ctx *g_err_ctx; /* the context whose message CHECK_* prints */
#define TU_CTX g_err_ctx

/* ------------------------------------------------------------------------ */
/* A training run: its own context, model, loss, data and optimizer          */
/* ------------------------------------------------------------------------ */

enum { K_SGD, K_ADAM, K_ADAMW };
#define F_NO_BIAS2 1u  /* the last linear has no bias */
#define F_NO_GROUPS 2u /* one parameter group only */

static const double base_lr[] = {0.1, 0.01, 0.01};

typedef struct run {
    nnm_ctx *ctx;
    nnm_module *model, *loss;
    nnm_optim *opt;
    nnm_tensor *x, *y;
    int kind;
} run;

static nnm_status make_optim(run *r, unsigned flags) {
    nnm_status st;
    if (r->kind == K_SGD) {
        nnm_sgd_options so = {sizeof so, 1, base_lr[K_SGD], 0.9, 0.0, 1e-4}; /* nesterov */
        st = nnm_optim_sgd_new(r->model, &so, &r->opt);
    } else {
        int adamw = r->kind == K_ADAMW;
        nnm_adam_options ao = {sizeof ao, adamw ? 0 : 1 /* amsgrad */, adamw, 0,
                               base_lr[r->kind], 0.9, 0.999, 1e-8, adamw ? 0.01 : 1e-3};
        st = nnm_optim_adam_new(r->model, &ao, &r->opt);
    }
    if (!st && !(flags & F_NO_GROUPS)) st = nnm_optim_add_group(r->opt, "2.", 0.005, 0.0, NULL);
    return st;
}

/* The model of a run, through the C API: Sequential(Linear(4, 8), ReLU,
 * Linear(8, 3)). */
static int model_from_api(run *r, unsigned flags) {
    nnm_module *kids[3] = {tu_linear(r->ctx, "linear", N_IN, N_HIDDEN, 1),
                           tu_module(r->ctx, "relu", NULL),
                           tu_linear(r->ctx, "linear", N_HIDDEN, N_CLASSES, !(flags & F_NO_BIAS2))};
    r->model = tu_module(r->ctx, "sequential", NULL);
    int ok = r->model != NULL;
    for (int i = 0; i < 3; i++) {
        ok = ok && kids[i] && nnm_module_add_child(r->model, NULL, kids[i]) == NNM_OK;
        nnm_module_release(kids[i]);
    }
    return ok;
}

/* The model of a run from a manifest document (nnm_manifest_write's bytes),
 * parsed in the run's context and built without weights: the layers
 * initialise their parameters from that context's seed. */
static int model_from_manifest(run *r, const void *doc, size_t len) {
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_parse(r->ctx, doc, len, NNM_MANIFEST_AUTO, NULL, NULL, &mf), NNM_OK);
    if (mf) CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &r->model), NNM_OK);
    nnm_manifest_free(mf);
    return r->model != NULL;
}

/* Builds a run, its model from `doc` (a manifest document of len bytes) when
 * not NULL (the document then decides the model: F_NO_BIAS2 is not read);
 * 0 on failure (after CUnit assertions). */
static int run_init_doc(run *r, uint64_t seed, int kind, unsigned flags, const void *doc,
                        size_t len) {
    memset(r, 0, sizeof r[0]);
    r->kind = kind;
    nnm_ctx_options o = {sizeof o, 0, seed};
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &r->ctx), NNM_OK);
    g_err_ctx = r->ctx;
    int ok = doc ? model_from_manifest(r, doc, len) : model_from_api(r, flags);
    r->loss = tu_module(r->ctx, "cross_entropy", NULL);
    float xv[N_SAMPLES * N_IN];
    int64_t yv[N_SAMPLES];
    tu_fill_uniform(xv, N_SAMPLES * N_IN, 7, -1.0, 1.0);
    for (int i = 0; i < N_SAMPLES; i++) yv[i] = i % N_CLASSES;
    ok = ok && r->loss &&
         nnm_tensor_from_f32(r->ctx, 2, (int64_t[]){N_SAMPLES, N_IN}, xv, &r->x) == NNM_OK &&
         nnm_tensor_from_i64(r->ctx, 1, (int64_t[]){N_SAMPLES}, yv, &r->y) == NNM_OK;
    if (ok) {
        nnm_status st = make_optim(r, flags);
        if (st) fprintf(stderr, "\n  optimizer: %s\n", nnm_ctx_errmsg(r->ctx));
        ok = st == NNM_OK;
    }
    CU_ASSERT_TRUE(ok);
    return ok;
}

static int run_init(run *r, uint64_t seed, int kind, unsigned flags) {
    return run_init_doc(r, seed, kind, flags, NULL, 0);
}

/* The lr schedule, applied before step i: group 0's lr halves before step 2
 * and again before step 4. */
static void schedule(run *r, int i) {
    if (i == 2 || i == 4)
        CHECK_STATUS(nnm_optim_set_lr(r->opt, 0, nnm_optim_get_lr(r->opt, 0) * 0.5), NNM_OK);
}

/* Training steps [from, to): zero_grad, forward, loss, backward, step. */
static void run_steps(run *r, int from, int to) {
    g_err_ctx = r->ctx;
    for (int i = from; i < to; i++) {
        schedule(r, i);
        nnm_tensor *logits = NULL, *loss = NULL;
        CHECK_STATUS(nnm_optim_zero_grad(r->opt), NNM_OK);
        CHECK_STATUS(nnm_module_call(r->model, &r->x, 1, &logits, 1), NNM_OK);
        nnm_tensor *in[2] = {logits, r->y};
        CHECK_STATUS(nnm_module_call(r->loss, in, 2, &loss, 1), NNM_OK);
        CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
        CHECK_STATUS(nnm_optim_step(r->opt), NNM_OK);
        nnm_tensor_release(logits);
        nnm_tensor_release(loss);
    }
}

/* Releases everything and checks that nothing of the run is left alive. */
static void run_free(run *r) {
    nnm_optim_free(r->opt);
    nnm_module_release(r->model);
    nnm_module_release(r->loss);
    nnm_tensor_release(r->x);
    nnm_tensor_release(r->y);
    if (r->ctx) {
        nnm_ctx_stats s = tu_stats(r->ctx);
        if (s.live_tensors || s.live_modules)
            fprintf(stderr, "\n  leaked: %llu tensors, %llu modules\n",
                    (unsigned long long)s.live_tensors, (unsigned long long)s.live_modules);
        CU_ASSERT_EQUAL(s.live_tensors, 0);
        CU_ASSERT_EQUAL(s.live_modules, 0);
    }
    nnm_ctx_free(r->ctx);
    memset(r, 0, sizeof r[0]);
}

/* ------------------------------------------------------------------------ */
/* Snapshots: named tensors copied out, compared bit for bit                 */
/* ------------------------------------------------------------------------ */

typedef struct snap {
    int n, failed;
    char names[MAX_SNAP][96];
    int64_t numel[MAX_SNAP];
    float *data[MAX_SNAP];
} snap;

static nnm_status snap_add(void *user, const char *name, nnm_tensor *t) {
    snap *s = user;
    if (s->n == MAX_SNAP) return NNM_E_LIMIT;
    int64_t n = nnm_tensor_numel(t);
    float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!d || nnm_tensor_to_f32(t, d, (size_t)n) != NNM_OK) {
        free(d);
        s->failed = 1;
        return NNM_E_NOMEM;
    }
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    s->numel[s->n] = n;
    s->data[s->n++] = d;
    return NNM_OK;
}

static void snap_free(snap *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
    s->n = 0;
}

static snap *snap_params(const run *r) {
    snap *s = calloc(1, sizeof *s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(nnm_module_named_parameters(r->model, snap_add, s), NNM_OK);
    return s;
}

static snap *snap_state(const run *r) {
    snap *s = calloc(1, sizeof *s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(nnm_optim_state(r->opt, snap_add, s), NNM_OK);
    return s;
}

static void snap_release(snap *s) {
    if (s) snap_free(s);
    free(s);
}

/* 1 when a and b hold the same names and bit-identical data. */
static int snap_equal(const char *what, const snap *a, const snap *b) {
    if (a->failed || b->failed) return 0;
    if (a->n != b->n) {
        fprintf(stderr, "\n  %s: %d vs %d tensors\n", what, a->n, b->n);
        return 0;
    }
    for (int i = 0; i < a->n; i++) {
        if (strcmp(a->names[i], b->names[i]) || a->numel[i] != b->numel[i]) {
            fprintf(stderr, "\n  %s: '%s' vs '%s'\n", what, a->names[i], b->names[i]);
            return 0;
        }
        if (memcmp(a->data[i], b->data[i], (size_t)a->numel[i] * sizeof(float))) {
            for (int64_t k = 0; k < a->numel[i]; k++)
                if (memcmp(&a->data[i][k], &b->data[i][k], sizeof(float))) {
                    fprintf(stderr, "\n  %s: '%s'[%lld]: %.9g vs %.9g\n", what, a->names[i],
                            (long long)k, (double)a->data[i][k], (double)b->data[i][k]);
                    break;
                }
            return 0;
        }
    }
    return 1;
}

/* 1 when any parameter differs (the fresh model must really start elsewhere). */
static int snap_differs(const snap *a, const snap *b) {
    if (a->n != b->n) return 1;
    for (int i = 0; i < a->n; i++)
        if (a->numel[i] != b->numel[i] ||
            memcmp(a->data[i], b->data[i], (size_t)a->numel[i] * sizeof(float)))
            return 1;
    return 0;
}

static int has_state_named(const snap *s, const char *suffix) {
    size_t sl = strlen(suffix);
    for (int i = 0; i < s->n; i++) {
        size_t n = strlen(s->names[i]);
        if (n >= sl && strcmp(s->names[i] + n - sl, suffix) == 0) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* The value of metadata `key` in a safetensors file (copied into buf), or
 * NULL. */
static const char *meta_of(nnm_ctx *ctx, const char *path, const char *key, char *buf,
                           size_t cap) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(ctx, path, &st) != NNM_OK) return NULL;
    const char *found = NULL;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && strcmp(k, key) == 0) {
            snprintf(buf, cap, "%s", v);
            found = buf;
        }
    }
    nnm_safetensors_close(st);
    return found;
}

/* Number of entries whose name starts with `prefix` (-1 if unreadable). */
static int count_prefixed(nnm_ctx *ctx, const char *path, const char *prefix) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(ctx, path, &st) != NNM_OK) return -1;
    int n = 0;
    for (uint32_t i = 0; i < nnm_safetensors_count(st); i++) {
        nnm_st_entry e;
        e.struct_size = sizeof e;
        if (nnm_safetensors_entry(st, i, &e) == NNM_OK &&
            strncmp(e.name, prefix, strlen(prefix)) == 0)
            n++;
    }
    nnm_safetensors_close(st);
    return n;
}

/* Copies a checkpoint (all F32) without the entry `skip`, metadata kept. */
static int copy_without(nnm_ctx *ctx, const char *src, const char *dst, const char *skip) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(ctx, src, &st) != NNM_OK) return 0;
    uint32_t n = nnm_safetensors_count(st), m = nnm_safetensors_metadata_count(st), k = 0, km = 0;
    const char **names = calloc(n + 1, sizeof *names);
    nnm_tensor **ts = calloc(n + 1, sizeof *ts);
    nnm_kv *kv = calloc(m + 1, sizeof *kv);
    int ok = names && ts && kv;
    for (uint32_t i = 0; ok && i < n; i++) {
        nnm_st_entry e;
        e.struct_size = sizeof e;
        ok = nnm_safetensors_entry(st, i, &e) == NNM_OK && strcmp(e.dtype_name, "F32") == 0;
        if (!ok || strcmp(e.name, skip) == 0) continue;
        ok = nnm_tensor_from_f32(ctx, e.ndim, e.shape, e.data, &ts[k]) == NNM_OK;
        names[k++] = e.name;
    }
    for (uint32_t i = 0; ok && i < m; i++) {
        ok = nnm_safetensors_metadata(st, i, &kv[km].key, &kv[km].value) == NNM_OK;
        if (strcmp(kv[km].key, "nnmod_version") != 0) km++;
    }
    ok = ok && k == n - 1 && nnm_safetensors_write(ctx, dst, k, names, ts, km, kv) == NNM_OK;
    for (uint32_t i = 0; ts && i < n; i++) nnm_tensor_release(ts[i]);
    free(names);
    free(ts);
    free(kv);
    nnm_safetensors_close(st);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Bit-exact resume                                                          */
/* ------------------------------------------------------------------------ */

static const char *const kind_name[] = {"SGD nesterov", "Adam amsgrad", "AdamW"};

static void resume_case(int kind) {
    const char *ck = tu_path(g_dir, "resume.safetensors");
    run a, b, c;

    /* Reference: 6 uninterrupted steps. */
    if (!run_init(&a, 11, kind, 0)) return;
    snap *init_a = snap_params(&a);
    run_steps(&a, 0, 6);
    snap *pa = snap_params(&a), *sa = snap_state(&a);

    /* 3 steps, then a checkpoint. */
    if (!run_init(&b, 11, kind, 0)) return;
    run_steps(&b, 0, 3);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    snap *pb = snap_params(&b), *sb = snap_state(&b);
    double lr_b = nnm_optim_get_lr(b.opt, 0);
    CU_ASSERT_TRUE(lr_b < base_lr[kind]); /* the schedule changed it */

    /* The model rebuilt from its manifest, as a resuming program would: the
     * tree described (no weights), written (JSON for Adam, msgpack for the
     * others), parsed back and built without weights in a context of another
     * seed; a new optimizer (never stepped). */
    nnm_manifest *mf = NULL;
    void *doc = NULL;
    size_t len = 0;
    char hash_b[65] = "", hash_c[65] = "";
    CHECK_STATUS(nnm_manifest_from_module(b.model, &mf), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    CHECK_STATUS(nnm_manifest_write(mf, kind == K_ADAM ? NNM_MANIFEST_JSON : NNM_MANIFEST_MSGPACK,
                                    &doc, &len),
                 NNM_OK);
    CHECK_STATUS(nnm_manifest_hash(mf, hash_b), NNM_OK);
    nnm_manifest_free(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    int built = run_init_doc(&c, 99, kind, 0, doc, len);
    nnm_free(doc);
    if (!built) return;
    mf = NULL; /* the same tree: it describes itself as the original did */
    CHECK_STATUS(nnm_manifest_from_module(c.model, &mf), NNM_OK);
    if (mf) CHECK_STATUS(nnm_manifest_hash(mf, hash_c), NNM_OK);
    nnm_manifest_free(mf);
    CU_ASSERT_STRING_EQUAL(hash_c, hash_b);
    snap *init_c = snap_params(&c), *sc0 = snap_state(&c);
    CU_ASSERT_TRUE(snap_differs(init_a, init_c));
    CU_ASSERT_EQUAL(sc0->n, 0);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(c.opt, 0), base_lr[kind]);
    g_err_ctx = c.ctx;
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, c.opt), NNM_OK);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(c.opt, 0), lr_b);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(c.opt, 1), 0.005);
    snap *pc_loaded = snap_params(&c), *sc_loaded = snap_state(&c);
    CU_ASSERT_TRUE(snap_equal("params after load", pb, pc_loaded));
    CU_ASSERT_TRUE(snap_equal("state after load", sb, sc_loaded));
    run_steps(&c, 3, 6);
    snap *pc = snap_params(&c), *sc = snap_state(&c);
    CU_ASSERT_TRUE(snap_equal("params after 6 steps", pa, pc));
    CU_ASSERT_TRUE(snap_equal("state after 6 steps", sa, sc));
    CU_ASSERT_TRUE(sa->n > 0);
    if (kind == K_SGD) CU_ASSERT_TRUE(has_state_named(sc, ".momentum_buffer"));
    if (kind == K_ADAM) CU_ASSERT_TRUE(has_state_named(sc, ".max_exp_avg_sq"));
    if (kind != K_SGD) CU_ASSERT_TRUE(has_state_named(sc, ".step"));
    printf("\n    %s: resumed run matches the uninterrupted one (%d params, %d state tensors) ",
           kind_name[kind], pc->n, sc->n);

    snap_release(init_a);
    snap_release(pa);
    snap_release(sa);
    snap_release(pb);
    snap_release(sb);
    snap_release(init_c);
    snap_release(sc0);
    snap_release(pc_loaded);
    snap_release(sc_loaded);
    snap_release(pc);
    snap_release(sc);
    run_free(&a);
    run_free(&b);
    run_free(&c);
}

static void test_resume_sgd(void) { resume_case(K_SGD); }
static void test_resume_adam(void) { resume_case(K_ADAM); }
static void test_resume_adamw(void) { resume_case(K_ADAMW); }

/* A checkpoint taken before the first step holds no optimizer state; loading
 * it into an optimizer that has stepped brings back first-step semantics
 * (SGD's buffer = grad, Adam's step 1), so the trajectory is the fresh one. */
static void before_step_case(int kind) {
    const char *ck = tu_path(g_dir, "fresh.safetensors");
    run a, c;
    if (!run_init(&a, 11, kind, 0)) return;
    g_err_ctx = a.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, a.model, a.opt, NULL, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(count_prefixed(a.ctx, ck, "optim."), 0);
    run_steps(&a, 0, 3);
    snap *pa = snap_params(&a), *sa = snap_state(&a);

    if (!run_init(&c, 99, kind, 0)) return;
    run_steps(&c, 0, 2); /* state exists, steps taken */
    snap *s_before = snap_state(&c);
    CU_ASSERT_TRUE(s_before->n > 0);
    g_err_ctx = c.ctx;
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, c.opt), NNM_OK);
    snap *s_loaded = snap_state(&c);
    CU_ASSERT_EQUAL(s_loaded->n, 0);
    run_steps(&c, 0, 3);
    snap *pc = snap_params(&c), *sc = snap_state(&c);
    CU_ASSERT_TRUE(snap_equal("params", pa, pc));
    CU_ASSERT_TRUE(snap_equal("state", sa, sc));
    snap_release(pa);
    snap_release(sa);
    snap_release(s_before);
    snap_release(s_loaded);
    snap_release(pc);
    snap_release(sc);
    run_free(&a);
    run_free(&c);
}

static void test_before_step_sgd(void) { before_step_case(K_SGD); }
static void test_before_step_adam(void) { before_step_case(K_ADAM); }

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

static void test_metadata(void) {
    const char *ck = tu_path(g_dir, "meta.safetensors");
    run b;
    if (!run_init(&b, 11, K_ADAMW, 0)) return;
    run_steps(&b, 0, 1);
    g_err_ctx = b.ctx;
    const nnm_kv meta[] = {{"run", "exp-42"}, {"epoch", "3"}, {"note", "caf\xc3\xa9"}};
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 3, meta), NNM_OK);
    char buf[4096];
    const char *v;
    CU_ASSERT_PTR_NOT_NULL(v = meta_of(b.ctx, ck, "run", buf, sizeof buf));
    if (v) CU_ASSERT_STRING_EQUAL(v, "exp-42");
    CU_ASSERT_PTR_NOT_NULL(v = meta_of(b.ctx, ck, "epoch", buf, sizeof buf));
    if (v) CU_ASSERT_STRING_EQUAL(v, "3");
    CU_ASSERT_PTR_NOT_NULL(v = meta_of(b.ctx, ck, "note", buf, sizeof buf));
    if (v) CU_ASSERT_STRING_EQUAL(v, "caf\xc3\xa9");
    CU_ASSERT_PTR_NOT_NULL(v = meta_of(b.ctx, ck, "nnmod_checkpoint", buf, sizeof buf));
    if (v) CU_ASSERT_STRING_EQUAL(v, "1");
    CU_ASSERT_PTR_NOT_NULL(meta_of(b.ctx, ck, "nnmod_version", buf, sizeof buf));
    CU_ASSERT_PTR_NULL(meta_of(b.ctx, ck, "nnmod_manifest_sha256", buf, sizeof buf));
    CU_ASSERT_PTR_NOT_NULL(v = meta_of(b.ctx, ck, "nnmod_optim", buf, sizeof buf));
    if (v) {
        printf("\n    nnmod_optim: %s ", v);
        CU_ASSERT_PTR_NOT_NULL(strstr(v, "\"kind\":\"adamw\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(v, "\"0.weight\""));
        CU_ASSERT_PTR_NOT_NULL(strstr(v, "\"steps\""));
    }
    /* 4 params x (exp_avg, exp_avg_sq, step) after a step; no amsgrad. */
    CU_ASSERT_EQUAL(count_prefixed(b.ctx, ck, "optim."), 12);

    /* Keys starting with "nnmod" are the library's: refused, nothing written. */
    const char *ck2 = tu_path(g_dir, "reserved.safetensors");
    const nnm_kv bad[] = {{"run", "x"}, {"nnmod_optim", "{}"}};
    CHECK_ERROR(nnm_checkpoint_save(ck2, b.model, b.opt, NULL, 2, bad), NNM_E_INVALID,
                "reserved");
    const nnm_kv bad2[] = {{"nnmodfoo", "x"}};
    CHECK_ERROR(nnm_checkpoint_save(ck2, b.model, b.opt, NULL, 1, bad2), NNM_E_INVALID,
                "nnmodfoo");
    const nnm_kv null_value[] = {{"run", NULL}};
    CHECK_STATUS(nnm_checkpoint_save(ck2, b.model, b.opt, NULL, 1, null_value), NNM_E_INVALID);
    CU_ASSERT_EQUAL(file_size(ck2), -1);
    CHECK_STATUS(nnm_checkpoint_save(NULL, b.model, b.opt, NULL, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_checkpoint_save(ck2, NULL, NULL, NULL, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_checkpoint_load(ck, NULL, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_checkpoint_load(NULL, b.model, b.opt), NNM_E_INVALID);
    run_free(&b);
}

/* The manifest's hash is recorded as nnmod_manifest_sha256. */
static void test_manifest_hash(void) {
    const char *ck = tu_path(g_dir, "manifest.safetensors");
    run b;
    if (!run_init(&b, 11, K_SGD, 0)) return;
    g_err_ctx = b.ctx;
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_from_module(b.model, &mf), NNM_OK);
    if (mf) {
        char want[65], buf[128];
        CHECK_STATUS(nnm_manifest_hash(mf, want), NNM_OK);
        CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, mf, 0, NULL), NNM_OK);
        const char *v = meta_of(b.ctx, ck, "nnmod_manifest_sha256", buf, sizeof buf);
        CU_ASSERT_PTR_NOT_NULL(v);
        if (v) CU_ASSERT_STRING_EQUAL(v, want);
        CU_ASSERT_EQUAL(strlen(want), 64);
        /* A model built from the manifest records it without being told. */
        nnm_module *built = NULL;
        CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &built), NNM_OK);
        if (built) {
            CHECK_STATUS(nnm_checkpoint_save(ck, built, NULL, NULL, 0, NULL), NNM_OK);
            v = meta_of(b.ctx, ck, "nnmod_manifest_sha256", buf, sizeof buf);
            CU_ASSERT_PTR_NOT_NULL(v);
            if (v) CU_ASSERT_STRING_EQUAL(v, want);
        }
        nnm_module_release(built);
    }
    nnm_manifest_free(mf);
    run_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Refusals leave model and optimizer unchanged                              */
/* ------------------------------------------------------------------------ */

typedef struct frozen {
    snap *p, *s;
    double lr0;
} frozen;

static frozen freeze(const run *r) {
    frozen f = {snap_params(r), snap_state(r), nnm_optim_get_lr(r->opt, 0)};
    return f;
}

/* Checks that r still holds what `f` recorded, then frees f. */
static void check_unchanged(const run *r, frozen *f) {
    snap *p = snap_params(r), *s = snap_state(r);
    CU_ASSERT_TRUE(snap_equal("params unchanged", f->p, p));
    CU_ASSERT_TRUE(snap_equal("state unchanged", f->s, s));
    CU_ASSERT_EQUAL(nnm_optim_get_lr(r->opt, 0), f->lr0);
    snap_release(p);
    snap_release(s);
    snap_release(f->p);
    snap_release(f->s);
}

static void test_wrong_kind(void) {
    const char *ck_adam = tu_path(g_dir, "adam.safetensors");
    const char *ck_adamw = tu_path(g_dir, "adamw.safetensors");
    run b, w, c;
    if (!run_init(&b, 11, K_ADAM, 0) || !run_init(&w, 11, K_ADAMW, 0)) return;
    run_steps(&b, 0, 3);
    run_steps(&w, 0, 3);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck_adam, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    g_err_ctx = w.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck_adamw, w.model, w.opt, NULL, 0, NULL), NNM_OK);

    if (!run_init(&c, 99, K_SGD, 0)) return;
    run_steps(&c, 0, 3);
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck_adam, c.model, c.opt), NNM_E_INVALID,
                "the optimizer in the file is adam, this one is sgd");
    check_unchanged(&c, &f);
    run_free(&c);

    /* AdamW is not Adam. */
    if (!run_init(&c, 99, K_ADAM, 0)) return;
    run_steps(&c, 0, 1);
    f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck_adamw, c.model, c.opt), NNM_E_INVALID,
                "the optimizer in the file is adamw, this one is adam");
    check_unchanged(&c, &f);
    run_free(&c);
    run_free(&b);
    run_free(&w);
}

static void test_missing_and_unexpected_keys(void) {
    const char *ck_full = tu_path(g_dir, "full.safetensors");
    const char *ck_nob = tu_path(g_dir, "nobias.safetensors");
    run full, nob, c;
    if (!run_init(&full, 11, K_SGD, 0) || !run_init(&nob, 11, K_SGD, F_NO_BIAS2)) return;
    run_steps(&full, 0, 3);
    run_steps(&nob, 0, 3);
    g_err_ctx = full.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck_full, full.model, full.opt, NULL, 0, NULL), NNM_OK);
    g_err_ctx = nob.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck_nob, nob.model, nob.opt, NULL, 0, NULL), NNM_OK);

    /* The file lacks "2.bias" (module and optimizer): refused. */
    if (!run_init(&c, 99, K_SGD, 0)) return;
    run_steps(&c, 0, 2);
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck_nob, c.model, c.opt), NNM_E_NOT_FOUND,
                "1 missing key(s): '2.bias'");
    check_unchanged(&c, &f);
    /* Weights alone (no optimizer): still strict on the module's keys. */
    f = freeze(&c);
    CHECK_ERROR(nnm_checkpoint_load(ck_nob, c.model, NULL), NNM_E_NOT_FOUND,
                "1 missing key(s): '2.bias'");
    check_unchanged(&c, &f);
    run_free(&c);

    /* The file has a key the module lacks. */
    if (!run_init(&c, 99, K_SGD, F_NO_BIAS2)) return;
    f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck_full, c.model, NULL), NNM_E_NOT_FOUND,
                "unexpected key(s): '2.bias'");
    check_unchanged(&c, &f);
    run_free(&c);
    run_free(&full);
    run_free(&nob);
}

/* An optimizer state tensor removed from the file: refused (the parameter
 * has stepped, so it must have one). */
static void test_missing_state_tensor(void) {
    const char *ck = tu_path(g_dir, "adam3.safetensors");
    const char *cut = tu_path(g_dir, "adam3_cut.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_ADAM, 0)) return;
    run_steps(&b, 0, 3);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    CU_ASSERT_TRUE(copy_without(b.ctx, ck, cut, "optim.0.weight.exp_avg"));
    if (!run_init(&c, 99, K_ADAM, 0)) return;
    run_steps(&c, 0, 1);
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(cut, c.model, c.opt), NNM_E_NOT_FOUND,
                "'optim.0.weight.exp_avg' is missing");
    check_unchanged(&c, &f);
    /* The intact file loads. */
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, c.opt), NNM_OK);
    run_free(&c);
    run_free(&b);
}

/* The optimizer's groups must match the file's. */
static void test_group_mismatch(void) {
    const char *ck = tu_path(g_dir, "groups.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_SGD, 0)) return;
    run_steps(&b, 0, 3);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    if (!run_init(&c, 99, K_SGD, F_NO_GROUPS)) return;
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck, c.model, c.opt), NNM_E_INVALID,
                "2 parameter group(s), this one 1");
    check_unchanged(&c, &f);
    run_free(&c);
    run_free(&b);
}

/* Without an optimizer in the file, an optimizer cannot be restored; the
 * weights alone can. */
static void test_no_optimizer_in_file(void) {
    const char *ck = tu_path(g_dir, "weights_only.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_SGD, 0)) return;
    run_steps(&b, 0, 3);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, NULL, NULL, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(count_prefixed(b.ctx, ck, "optim."), 0);
    snap *pb = snap_params(&b);
    if (!run_init(&c, 99, K_SGD, 0)) return;
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CHECK_ERROR(nnm_checkpoint_load(ck, c.model, c.opt), NNM_E_NOT_FOUND, "no optimizer state");
    check_unchanged(&c, &f);
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, NULL), NNM_OK);
    snap *pc = snap_params(&c);
    CU_ASSERT_TRUE(snap_equal("weights", pb, pc));
    snap_release(pc);
    /* A weights-only checkpoint is a plain state dict too. */
    CHECK_STATUS(nnm_module_load(c.model, ck, 1, NULL), NNM_OK);
    snap_release(pb);
    run_free(&c);
    run_free(&b);
}

/* A checkpoint with an optimizer loads into a model alone (optimizer
 * entries skipped). */
static void test_weights_from_full_checkpoint(void) {
    const char *ck = tu_path(g_dir, "full2.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_ADAM, 0)) return;
    run_steps(&b, 0, 2);
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    snap *pb = snap_params(&b);
    if (!run_init(&c, 99, K_ADAM, 0)) return;
    g_err_ctx = c.ctx;
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, NULL), NNM_OK);
    snap *pc = snap_params(&c), *sc = snap_state(&c);
    CU_ASSERT_TRUE(snap_equal("weights", pb, pc));
    CU_ASSERT_EQUAL(sc->n, 0); /* the optimizer was not touched */
    snap_release(pb);
    snap_release(pc);
    snap_release(sc);
    run_free(&c);
    run_free(&b);
}

/* An optimizer over part of the model: its state is keyed by the model's
 * state dict keys ("optim.2.weight.*"); one over another model is refused. */
static void test_optimizer_over_submodule(void) {
    const char *ck = tu_path(g_dir, "sub.safetensors"), *ck2 = tu_path(g_dir, "sub2.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_SGD, 0) || !run_init(&c, 99, K_SGD, 0)) return;
    g_err_ctx = b.ctx;
    nnm_optim *head = NULL;
    nnm_sgd_options so = {sizeof so, 0, 0.05, 0.5, 0.1, 0.0};
    CHECK_STATUS(nnm_optim_sgd_new(nnm_module_get(b.model, "2"), &so, &head), NNM_OK);
    nnm_optim_free(b.opt);
    b.opt = head;
    run_steps(&b, 0, 2);
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(count_prefixed(b.ctx, ck, "optim.2.weight."), 1);
    CU_ASSERT_EQUAL(count_prefixed(b.ctx, ck, "optim."), 2);
    snap *pb = snap_params(&b), *sb = snap_state(&b);

    g_err_ctx = c.ctx;
    CHECK_STATUS(nnm_optim_sgd_new(nnm_module_get(c.model, "2"), &so, &head), NNM_OK);
    nnm_optim_free(c.opt);
    c.opt = head;
    CHECK_STATUS(nnm_checkpoint_load(ck, c.model, c.opt), NNM_OK);
    snap *pc = snap_params(&c), *sc = snap_state(&c);
    CU_ASSERT_TRUE(snap_equal("params", pb, pc));
    /* (state names are relative to "2": "weight.momentum_buffer") */
    CU_ASSERT_TRUE(snap_equal("state", sb, sc));

    /* b's optimizer is not over c's model. */
    CHECK_ERROR(nnm_checkpoint_save(ck2, c.model, b.opt, NULL, 0, NULL), NNM_E_INVALID,
                "another context");
    CU_ASSERT_EQUAL(file_size(ck2), -1);
    nnm_optim *other = NULL;
    nnm_module *lone = tu_linear(c.ctx, "linear", 2, 2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lone);
    CHECK_STATUS(nnm_optim_sgd_new(lone, &so, &other), NNM_OK);
    CHECK_ERROR(nnm_checkpoint_save(ck2, c.model, other, NULL, 0, NULL), NNM_E_INVALID,
                "is not in the module's state dict");
    CU_ASSERT_EQUAL(file_size(ck2), -1);
    CHECK_ERROR(nnm_checkpoint_load(ck, c.model, other), NNM_E_INVALID,
                "is not in the module's state dict");
    nnm_optim_free(other);
    nnm_module_release(lone);
    snap_release(pb);
    snap_release(sb);
    snap_release(pc);
    snap_release(sc);
    run_free(&c);
    run_free(&b);
}

static void test_corrupted_file(void) {
    const char *ck = tu_path(g_dir, "corrupt.safetensors");
    run b, c;
    if (!run_init(&b, 11, K_SGD, 0)) return;
    run_steps(&b, 0, 3);
    if (!run_init(&c, 99, K_SGD, 0)) return;
    run_steps(&c, 0, 2);

    long cuts[3];
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    long size = file_size(ck);
    CU_ASSERT_TRUE_FATAL(size > 64);
    cuts[0] = size / 2; /* inside the data (or the header) */
    cuts[1] = size - 4; /* the last tensor cut short */
    cuts[2] = 5;        /* not even the header length */
    for (int i = 0; i < 3; i++) {
        g_err_ctx = b.ctx;
        CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
        CU_ASSERT_EQUAL_FATAL(truncate(ck, cuts[i]), 0);
        frozen f = freeze(&c);
        g_err_ctx = c.ctx;
        nnm_status st = nnm_checkpoint_load(ck, c.model, c.opt);
        CU_ASSERT_NOT_EQUAL(st, NNM_OK);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(c.ctx), "corrupt.safetensors"));
        check_unchanged(&c, &f);
    }
    /* A damaged header byte. */
    g_err_ctx = b.ctx;
    CHECK_STATUS(nnm_checkpoint_save(ck, b.model, b.opt, NULL, 0, NULL), NNM_OK);
    FILE *fp = fopen(ck, "r+b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fseek(fp, 8, SEEK_SET);
    fputc('x', fp);
    fclose(fp);
    frozen f = freeze(&c);
    g_err_ctx = c.ctx;
    CU_ASSERT_NOT_EQUAL(nnm_checkpoint_load(ck, c.model, c.opt), NNM_OK);
    check_unchanged(&c, &f);
    /* A missing file. */
    f = freeze(&c);
    CHECK_ERROR(nnm_checkpoint_load(tu_path(g_dir, "nope.safetensors"), c.model, c.opt), NNM_E_IO,
                "nope.safetensors");
    check_unchanged(&c, &f);
    run_free(&c);
    run_free(&b);
}

/* ------------------------------------------------------------------------ */

static int suite_init(void) { return tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_ckpt_") != 0; }

static int suite_clean(void) {
    if (tu_dir_remove_all(g_dir) != 0) fprintf(stderr, "\n  %s: not removed\n", g_dir);
    return 0;
}

int main(void) {
    /* One BLAS thread: reductions in a fixed order, so runs are comparable
     * bit for bit. Before any context (and OpenBLAS) starts. */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    CU_pSuite s = tu_suite("checkpoint", suite_init, suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "resume bit-exact: SGD momentum nesterov", test_resume_sgd);
    CU_add_test(s, "resume bit-exact: Adam amsgrad", test_resume_adam);
    CU_add_test(s, "resume bit-exact: AdamW", test_resume_adamw);
    CU_add_test(s, "saved before any step: SGD", test_before_step_sgd);
    CU_add_test(s, "saved before any step: Adam", test_before_step_adam);
    CU_add_test(s, "user metadata round trip; reserved keys refused", test_metadata);
    CU_add_test(s, "manifest hash recorded", test_manifest_hash);
    CU_add_test(s, "wrong optimizer kind refused, nothing changed", test_wrong_kind);
    CU_add_test(s, "missing/unexpected keys refused, nothing changed",
                test_missing_and_unexpected_keys);
    CU_add_test(s, "missing optimizer state tensor refused", test_missing_state_tensor);
    CU_add_test(s, "parameter groups must match", test_group_mismatch);
    CU_add_test(s, "file without optimizer state", test_no_optimizer_in_file);
    CU_add_test(s, "weights alone from a full checkpoint", test_weights_from_full_checkpoint);
    CU_add_test(s, "optimizer over a submodule; over another module refused",
                test_optimizer_over_submodule);
    CU_add_test(s, "truncated or corrupted file refused, nothing changed", test_corrupted_file);
    return tu_run();
}
