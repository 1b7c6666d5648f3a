/* tests/module/test_module_api.c - the module API a PyTorch user reaches for
 * next (issue 9 section 6), each against the PyTorch behaviour it copies:
 *  - model.fc = head (nnm_module_set_child): in place, order kept; the new
 *    child's hooks fire in the parent's forward, the old one's do not; the
 *    new child keeps its own training flag until the parent's train()/eval()
 *    (as in PyTorch, where assignment does not change a module's mode);
 *  - del model.fc (nnm_module_del_child): the others keep their names and
 *    order (delattr), lookups by name stay right in a wide module;
 *  - model.backbone.requires_grad_(False) (nnm_module_requires_grad_): the
 *    frozen parameters get no .grad and an optimizer step leaves them as
 *    they were, while the head trains;
 *  - m2.load_state_dict(m1.state_dict()) in memory: detached tensors that
 *    share the module's storage; load_state_dict's rules, including PyTorch's
 *    "size mismatch" refusal even with strict=False;
 *  - shared modules (m.a = m.b = lin) and tied parameters (dec.weight =
 *    enc.weight): named_modules/named_parameters/optimizers see them once
 *    (remove_duplicate=True), state_dict under every name, and the gradient
 *    is the sum of both uses (checked against an untied twin whose two
 *    copies' gradients are the two terms). */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

static nnm_module *seq3(void) {
    nnm_module *s = tu_module(g_ctx, "sequential", NULL);
    nnm_module *a = tu_linear(g_ctx, "linear", 4, 8, 1), *r = tu_module(g_ctx, "relu", NULL),
               *b = tu_linear(g_ctx, "linear", 8, 3, 1);
    CU_ASSERT_FATAL(s && a && r && b);
    CHECK_STATUS(nnm_module_add_child(s, "fc1", a), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(s, "act", r), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(s, "fc2", b), NNM_OK);
    nnm_module_release(a);
    nnm_module_release(r);
    nnm_module_release(b);
    return s;
}

static nnm_status count_hook(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    (*(int *)user)++;
    return NNM_OK;
}

static void test_set_child(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *s = seq3();
    nnm_module *old = nnm_module_get(s, "fc2");
    nnm_module_retain(old); /* the caller's own reference outlives the swap */
    int old_fired = 0, new_fired = 0;
    CHECK_STATUS(nnm_module_register_forward_hook(old, count_hook, &old_fired, NULL), NNM_OK);
    nnm_module *head = tu_linear(g_ctx, "linear", 8, 5, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(head);
    CHECK_STATUS(nnm_module_register_forward_hook(head, count_hook, &new_fired, NULL), NNM_OK);
    /* model.eval(); model.fc2 = head (head is in training mode) */
    CHECK_STATUS(nnm_module_train(s, 0), NNM_OK);
    CHECK_STATUS(nnm_module_set_child(s, "fc2", head), NNM_OK);
    /* in place: third child, same name; the old one is a root now */
    CU_ASSERT_EQUAL(nnm_module_child_count(s), 3);
    CU_ASSERT_PTR_EQUAL(nnm_module_child(s, 2), head);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(s, "fc2"), head);
    CU_ASSERT_STRING_EQUAL(nnm_module_name(head), "fc2");
    CU_ASSERT_PTR_EQUAL(nnm_module_parent(head), s);
    CU_ASSERT_PTR_NULL(nnm_module_parent(old));
    CU_ASSERT_STRING_EQUAL(nnm_module_name(old), "");
    /* PyTorch: assignment keeps the new module's own mode */
    CU_ASSERT_TRUE(nnm_module_is_training(head));
    CU_ASSERT_FALSE(nnm_module_is_training(nnm_module_get(s, "fc1")));
    CHECK_STATUS(nnm_module_train(s, 0), NNM_OK);
    CU_ASSERT_FALSE(nnm_module_is_training(head));
    /* the state dict and the forward see the new head */
    tu_named p = tu_params_of(s);
    CU_ASSERT_EQUAL(p.n, 4);
    CU_ASSERT_STRING_EQUAL(p.names[2], "fc2.weight");
    const int64_t ws[2] = {5, 8};
    CU_ASSERT_TRUE(tu_shape_is(p.t[2], 2, ws));
    const int64_t xs[2] = {2, 4}, ys[2] = {2, 5};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, NULL), *y = NULL;
    CHECK_STATUS(tu_call1(s, x, &y), NNM_OK);
    CU_ASSERT_TRUE(y && tu_shape_is(y, 2, ys));
    CU_ASSERT_EQUAL(new_fired, 1);
    CU_ASSERT_EQUAL(old_fired, 0);
    nnm_tensor_release(y);
    /* refusals: a NULL name, a bad name; a new name appends */
    CHECK_ERROR(nnm_module_set_child(s, "a.b", old), NNM_E_INVALID, "invalid child name");
    CU_ASSERT_EQUAL(nnm_module_set_child(s, NULL, old), NNM_E_INVALID);
    CHECK_STATUS(nnm_module_set_child(s, "extra", old), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_child_count(s), 4);
    CU_ASSERT_PTR_EQUAL(nnm_module_child(s, 3), old);
    /* setting the same module again is a no-op */
    CHECK_STATUS(nnm_module_set_child(s, "extra", old), NNM_OK);
    nnm_module_release(old);
    nnm_module_release(head);
    nnm_tensor_release(x);
    nnm_module_release(s);
    LEAK_CHECK_END();
}

static void test_set_child_cycle(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *outer = tu_module(g_ctx, "sequential", NULL), *mid = tu_module(g_ctx, "sequential", NULL);
    nnm_module *leaf = tu_module(g_ctx, "relu", NULL);
    CHECK_STATUS(nnm_module_add_child(outer, "mid", mid), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(mid, "leaf", leaf), NNM_OK);
    /* mid.leaf = outer would put outer under itself */
    CHECK_ERROR(nnm_module_set_child(mid, "leaf", outer), NNM_E_INVALID, "cycle");
    CU_ASSERT_PTR_EQUAL(nnm_module_get(outer, "mid.leaf"), leaf);
    nnm_module_release(leaf);
    nnm_module_release(mid);
    nnm_module_release(outer);
    LEAK_CHECK_END();
}

static void test_del_child(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *s = seq3();
    nnm_module *act = nnm_module_get(s, "act");
    nnm_module_retain(act);
    CHECK_STATUS(nnm_module_del_child(s, "act"), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_child_count(s), 2);
    CU_ASSERT_STRING_EQUAL(nnm_module_name(nnm_module_child(s, 0)), "fc1");
    CU_ASSERT_STRING_EQUAL(nnm_module_name(nnm_module_child(s, 1)), "fc2");
    CU_ASSERT_PTR_NULL(nnm_module_get(s, "act"));
    CU_ASSERT_PTR_NULL(nnm_module_parent(act));
    /* deleted modules can be attached again, anywhere */
    CHECK_STATUS(nnm_module_add_child(s, "act2", act), NNM_OK);
    nnm_module_release(act);
    CHECK_ERROR(nnm_module_del_child(s, "act"), NNM_E_NOT_FOUND, "no child named 'act'");
    CU_ASSERT_EQUAL(nnm_module_del_child(NULL, "x"), NNM_E_INVALID);
    nnm_module_release(s);

    /* a wide module (past the 16 children where a name index is kept) */
    s = tu_module(g_ctx, "sequential", NULL);
    char name[16];
    for (int i = 0; i < 40; i++) {
        nnm_module *r = tu_module(g_ctx, "relu", NULL);
        snprintf(name, sizeof name, "c%d", i);
        CHECK_STATUS(nnm_module_add_child(s, name, r), NNM_OK);
        nnm_module_release(r);
    }
    for (int i = 0; i < 40; i += 3) {
        snprintf(name, sizeof name, "c%d", i);
        CHECK_STATUS(nnm_module_del_child(s, name), NNM_OK);
    }
    CU_ASSERT_EQUAL(nnm_module_child_count(s), 26);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "c%d", i);
        nnm_module *c = nnm_module_get(s, name);
        if (i % 3 == 0) {
            CU_ASSERT_PTR_NULL(c);
        } else {
            CU_ASSERT_TRUE(c && strcmp(nnm_module_name(c), name) == 0);
        }
    }
    /* a deleted name can be used again (appended last) */
    nnm_module *r = tu_module(g_ctx, "relu", NULL);
    CHECK_STATUS(nnm_module_set_child(s, "c3", r), NNM_OK);
    CU_ASSERT_PTR_EQUAL(nnm_module_child(s, 26), r);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(s, "c3"), r);
    nnm_module_release(r);
    /* and the sequential still runs over what is left */
    const int64_t xs[2] = {2, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, NULL), *y = NULL;
    CHECK_STATUS(tu_call1(s, x, &y), NNM_OK);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(s);
    LEAK_CHECK_END();
}

/* ---- freezing ----------------------------------------------------------------- */

static float first_value(nnm_tensor *t) {
    float v = 0;
    int64_t n = nnm_tensor_numel(t);
    float *all = malloc((size_t)n * sizeof *all);
    if (all && nnm_tensor_to_f32(t, all, (size_t)n) == NNM_OK) v = all[0];
    free(all);
    return v;
}

static void test_requires_grad_(void) {
    LEAK_CHECK_BEGIN();
    /* model = Sequential(backbone=Linear(4, 8), head=Linear(8, 3));
     * model.backbone.requires_grad_(False) */
    nnm_module *s = tu_module(g_ctx, "sequential", NULL);
    nnm_module *bb = tu_linear(g_ctx, "linear", 4, 8, 1), *head = tu_linear(g_ctx, "linear", 8, 3, 1);
    CHECK_STATUS(nnm_module_add_child(s, "backbone", bb), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(s, "head", head), NNM_OK);
    CHECK_STATUS(nnm_module_requires_grad_(bb, 0), NNM_OK);
    tu_named p = tu_params_of(s);
    CU_ASSERT_EQUAL_FATAL(p.n, 4);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(p.t[0]));
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(p.t[1]));
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(p.t[2]));
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(p.t[3]));
    nnm_sgd_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.lr = 0.5;
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(s, &o, &opt), NNM_OK);
    float xs[8] = {1, -2, 3, 0.5f, -1, 2, 0.25f, 4};
    const int64_t shape[2] = {2, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xs), *y = NULL, *loss = NULL;
    CHECK_STATUS(tu_call1(s, x, &y), NNM_OK);
    const int32_t dims[2] = {0, 1};
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, dims, 2, 0, &loss), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(p.t[0])); /* frozen: no .grad */
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(p.t[1]));
    CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(p.t[2]));
    CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(p.t[3]));
    const float bb0 = first_value(p.t[0]), head0 = first_value(p.t[2]);
    CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
    CU_ASSERT_EQUAL(first_value(p.t[0]), bb0);   /* skipped by the optimizer */
    CU_ASSERT_NOT_EQUAL(first_value(p.t[2]), head0); /* trained */
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    /* unfrozen, it trains again */
    CHECK_STATUS(nnm_optim_zero_grad(opt), NNM_OK);
    CHECK_STATUS(nnm_module_requires_grad_(s, 1), NNM_OK);
    CHECK_STATUS(tu_call1(s, x, &y), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, dims, 2, 0, &loss), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(p.t[0]));
    CU_ASSERT_EQUAL(nnm_module_requires_grad_(NULL, 0), NNM_E_INVALID);
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_optim_free(opt);
    nnm_module_release(bb);
    nnm_module_release(head);
    nnm_module_release(s);
    LEAK_CHECK_END();
}


/* ---- in-memory state dicts ----------------------------------------------- */

static int same_params(nnm_module *a, nnm_module *b) {
    tu_named pa = tu_params_of(a), pb = tu_params_of(b);
    if (pa.n != pb.n) return 0;
    for (int i = 0; i < pa.n; i++) {
        int64_t na = 0, nb = 0;
        float *va = tu_read_f32(pa.t[i], &na), *vb = tu_read_f32(pb.t[i], &nb);
        int same = va && vb && na == nb && memcmp(va, vb, (size_t)na * sizeof *va) == 0;
        free(va);
        free(vb);
        if (!same) return 0;
    }
    return 1;
}

static void test_state_dict_in_memory(void) {
    LEAK_CHECK_BEGIN();
    /* m2.load_state_dict(m1.state_dict()) */
    nnm_module *m1 = seq3(), *m2 = seq3();
    CU_ASSERT_FALSE(same_params(m1, m2)); /* different random inits */
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(m1, &sd), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sd);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 4);
    const char *name = NULL;
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_state_dict_entry(sd, 0, &name, &t), NNM_OK);
    CU_ASSERT_STRING_EQUAL(name, "fc1.weight");
    CHECK_STATUS(nnm_state_dict_entry(sd, 3, &name, NULL), NNM_OK);
    CU_ASSERT_STRING_EQUAL(name, "fc2.bias");
    CU_ASSERT_EQUAL(nnm_state_dict_entry(sd, 4, &name, &t), NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(name);
    /* detached, sharing the module's storage (PyTorch: sd["fc1.weight"]
     * .requires_grad is False and .data_ptr() is the parameter's) */
    nnm_tensor *w = nnm_state_dict_get(sd, "fc1.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(w));
    tu_named p1 = tu_params_of(m1);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_desc_get(w)->data, nnm_tensor_desc_get(p1.t[0])->data);
    CU_ASSERT_PTR_NULL(nnm_state_dict_get(sd, "fc3.weight"));
    CHECK_STATUS(nnm_module_load_state_dict(m2, sd, 1, NULL), NNM_OK);
    CU_ASSERT_TRUE(same_params(m1, m2));
    /* the copies are independent: the module does not keep sd's tensors */
    tu_named p2 = tu_params_of(m2);
    CU_ASSERT_PTR_NOT_EQUAL(nnm_tensor_desc_get(p2.t[0])->data, nnm_tensor_desc_get(w)->data);
    nnm_state_dict_free(sd);
    nnm_state_dict_free(NULL);
    nnm_module_release(m2);

    /* a dict built by hand, and the rules of load_state_dict */
    CHECK_STATUS(nnm_state_dict_new(g_ctx, &sd), NNM_OK);
    const int64_t ws[2] = {3, 8}, bs[1] = {3}, ws_bad[2] = {4, 8};
    float wv[24], bv[3] = {0.5f, -1.0f, 2.0f};
    for (int i = 0; i < 24; i++) wv[i] = (float)i / 8.0f;
    nnm_tensor *tw = tu_tf32(g_ctx, 2, ws, wv), *tb = tu_tf32(g_ctx, 1, bs, bv);
    nnm_tensor *bad = tu_tf32(g_ctx, 2, ws_bad, NULL);
    CHECK_STATUS(nnm_state_dict_set(sd, "weight", bad), NNM_OK);
    CHECK_STATUS(nnm_state_dict_set(sd, "bias", tb), NNM_OK);
    CHECK_STATUS(nnm_state_dict_set(sd, "extra", tb), NNM_OK); /* one tensor, two names */
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 3);
    nnm_module *fc = tu_linear(g_ctx, "linear", 8, 3, 1);
    tu_named pf = tu_params_of(fc);
    float w0 = 0, w0_after = 0;
    nnm_tensor_to_f32(pf.t[0], &w0, 1);
    /* PyTorch: load_state_dict(sd, strict=False) still raises "size
     * mismatch for weight" and copies nothing */
    nnm_load_report *rep = NULL;
    CHECK_ERROR(nnm_module_load_state_dict(fc, sd, 0, &rep), NNM_E_SHAPE,
                "state dict: error(s) loading the state dict (not strict): 1 size mismatch(es): "
                "weight: file [4, 8] vs module [3, 8]");
    CU_ASSERT_TRUE(rep && rep->n_mismatched == 1 && rep->n_unexpected == 1);
    nnm_load_report_free(rep);
    float b_now[3];
    CHECK_STATUS(nnm_tensor_to_f32(pf.t[1], b_now, 3), NNM_OK);
    CU_ASSERT_NOT_EQUAL(b_now[0], 0.5f); /* bias fit, yet was not loaded */
    /* sd["weight"] = the right one: replaces in place */
    CHECK_STATUS(nnm_state_dict_set(sd, "weight", tw), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 3);
    CHECK_ERROR(nnm_module_load_state_dict(fc, sd, 1, NULL), NNM_E_NOT_FOUND, "1 unexpected key(s): 'extra'");
    rep = NULL;
    CHECK_STATUS(nnm_module_load_state_dict(fc, sd, 0, &rep), NNM_OK);
    CU_ASSERT_TRUE(rep && rep->n_unexpected == 1 && !strcmp(rep->unexpected[0], "extra"));
    nnm_load_report_free(rep);
    nnm_tensor_to_f32(pf.t[0], &w0_after, 1);
    CU_ASSERT_EQUAL(w0_after, 0.0f);
    int64_t n = 0;
    float *got = tu_read_f32(pf.t[0], &n);
    CU_ASSERT_TRUE(got && n == 24 && memcmp(got, wv, sizeof wv) == 0);
    free(got);
    CHECK_STATUS(nnm_tensor_to_f32(pf.t[1], b_now, 3), NNM_OK);
    CU_ASSERT_TRUE(b_now[0] == 0.5f && b_now[1] == -1.0f && b_now[2] == 2.0f);
    (void)w0;
    /* refusals: a meta entry (no data), bad keys, NULLs */
    nnm_tensor *meta = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_META, 0},
                                (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, 2, ws, &meta), NNM_OK);
    CHECK_STATUS(nnm_state_dict_set(sd, "weight", meta), NNM_OK);
    CHECK_ERROR(nnm_module_load_state_dict(fc, sd, 0, NULL), NNM_E_DEVICE, "'weight' is on the meta device");
    CHECK_ERROR(nnm_state_dict_set(sd, "", tw), NNM_E_INVALID, "a key is 1 to 1023 bytes");
    CU_ASSERT_EQUAL(nnm_state_dict_set(sd, NULL, tw), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_load_state_dict(fc, NULL, 0, NULL), NNM_E_INVALID);
    nnm_tensor_release(meta);
    nnm_state_dict_free(sd);
    nnm_state_dict *none = (nnm_state_dict *)1;
    CU_ASSERT_EQUAL(nnm_module_state_dict(NULL, &none), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(none);
    nnm_tensor_release(tw);
    nnm_tensor_release(tb);
    nnm_tensor_release(bad);
    nnm_module_release(fc);
    nnm_module_release(m1);
    LEAK_CHECK_END();
}

/* Wide dicts look names up through the name index. */
/* PyTorch's _NormBase: a state dict without num_batches_tracked (one with no
 * version metadata: a plain dict, safetensors, a checkpoint older than
 * PyTorch 0.4.1) loads strictly, the count set to 0 and not reported
 * missing; any other missing key is still refused. */
static void test_state_dict_without_nbt(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    CHECK_STATUS(nnm_config_set_int(cfg, "num_features", 2), NNM_OK);
    nnm_module *bn = tu_module(g_ctx, "batch_norm1d", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bn);
    nnm_state_dict *full = NULL, *sd = NULL, *sd2 = NULL;
    CHECK_STATUS(nnm_module_state_dict(bn, &full), NNM_OK);
    CHECK_STATUS(nnm_state_dict_new(g_ctx, &sd), NNM_OK);
    CHECK_STATUS(nnm_state_dict_new(g_ctx, &sd2), NNM_OK);
    for (uint32_t i = 0; i < nnm_state_dict_count(full); i++) {
        const char *name = NULL;
        nnm_tensor *t = NULL;
        CHECK_STATUS(nnm_state_dict_entry(full, i, &name, &t), NNM_OK);
        if (strcmp(name, "num_batches_tracked") == 0) continue;
        CHECK_STATUS(nnm_state_dict_set(sd, name, t), NNM_OK);
        if (strcmp(name, "running_mean") != 0) CHECK_STATUS(nnm_state_dict_set(sd2, name, t), NNM_OK);
    }
    const nnm_tensor_desc *d = nnm_tensor_desc_get(nnm_state_dict_get(full, "num_batches_tracked"));
    CU_ASSERT_FATAL(d != NULL && d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64);
    int64_t *count = (int64_t *)(void *)((char *)d->data + d->byte_offset);
    *count = 5;
    nnm_load_report *rep = NULL;
    CHECK_STATUS(nnm_module_load_state_dict(bn, sd, 1, &rep), NNM_OK);
    CU_ASSERT_TRUE(rep != NULL && rep->n_missing == 0 && rep->n_unexpected == 0);
    CU_ASSERT_EQUAL(*count, 0);
    nnm_load_report_free(rep);
    rep = NULL;
    *count = 5;
    CHECK_ERROR(nnm_module_load_state_dict(bn, sd2, 1, &rep), NNM_E_NOT_FOUND, "1 missing key(s): 'running_mean'");
    CU_ASSERT_PTR_NULL(strstr(nnm_ctx_errmsg(g_ctx), "num_batches_tracked"));
    CU_ASSERT_TRUE(rep != NULL && rep->n_missing == 1);
    CU_ASSERT_EQUAL(*count, 5); /* nothing changed on the refusal */
    nnm_load_report_free(rep);
    nnm_state_dict_free(full);
    nnm_state_dict_free(sd);
    nnm_state_dict_free(sd2);
    nnm_module_release(bn);
    LEAK_CHECK_END();
}

static void test_state_dict_wide(void) {
    LEAK_CHECK_BEGIN();
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_state_dict_new(g_ctx, &sd), NNM_OK);
    const int64_t s1[1] = {1};
    char name[32];
    nnm_tensor *t[300];
    for (int i = 0; i < 300; i++) {
        float v = (float)i;
        t[i] = tu_tf32(g_ctx, 1, s1, &v);
        snprintf(name, sizeof name, "layer%d.w", i);
        CHECK_STATUS(nnm_state_dict_set(sd, name, t[i]), NNM_OK);
    }
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 300);
    int ok = 1;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "layer%d.w", i);
        ok &= nnm_state_dict_get(sd, name) == t[i];
    }
    CU_ASSERT_TRUE(ok);
    CU_ASSERT_PTR_NULL(nnm_state_dict_get(sd, "layer300.w"));
    for (int i = 0; i < 300; i++) nnm_tensor_release(t[i]);
    nnm_state_dict_free(sd);
    LEAK_CHECK_END();
}

/* ---- shared modules and tied parameters ------------------------------------- */

/* sum(m(x)) backward; returns the .grad of tensor t as a new array. */
static float *grad_after_backward(nnm_module *m, nnm_tensor *x, nnm_tensor *t, int64_t *n) {
    nnm_tensor *y = NULL, *loss = NULL;
    const int32_t dims[2] = {0, 1};
    float *g = NULL;
    if (tu_call1(m, x, &y) == NNM_OK &&
        nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, dims, 2, 0, &loss) == NNM_OK &&
        nnm_backward(loss, NULL, 0) == NNM_OK && nnm_tensor_grad(t))
        g = tu_read_f32(nnm_tensor_grad(t), n);
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    return g;
}

static nnm_status keys_visit(void *user, const char *name, nnm_tensor *t) {
    (void)t;
    char *buf = user;
    size_t len = strlen(buf);
    snprintf(buf + len, 512 - len, "%s%s", len ? "," : "", name);
    return NNM_OK;
}

static nnm_status mods_visit(void *user, const char *name, nnm_module *m) {
    (void)m;
    char *buf = user;
    size_t len = strlen(buf);
    snprintf(buf + len, 512 - len, "%s[%s]", len ? "," : "", name);
    return NNM_OK;
}

static void test_shared_module(void) {
    LEAK_CHECK_BEGIN();
    /* PyTorch: lin = nn.Linear(4, 4); m = nn.Sequential(); m.a = lin; m.b = lin */
    nnm_module *s = tu_module(g_ctx, "sequential", NULL), *lin = tu_linear(g_ctx, "linear", 4, 4, 1);
    CU_ASSERT_FATAL(s && lin);
    CHECK_STATUS(nnm_module_set_child(s, "a", lin), NNM_OK);
    CHECK_STATUS(nnm_module_set_child(s, "b", lin), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_child_count(s), 2);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(s, "a"), lin);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(s, "b"), lin);
    CU_ASSERT_STRING_EQUAL(nnm_module_name(lin), "a"); /* its first name */
    /* each slot keeps its own name (named_children's "b" for m.b) */
    CU_ASSERT_STRING_EQUAL(nnm_module_child_name(s, 0), "a");
    CU_ASSERT_STRING_EQUAL(nnm_module_child_name(s, 1), "b");
    CU_ASSERT_PTR_NULL(nnm_module_child_name(s, 2));
    CU_ASSERT_PTR_NULL(nnm_module_child_name(NULL, 0));
    /* named_modules() and named_parameters() see it once (remove_duplicate),
     * state_dict() under both names, as PyTorch's */
    char keys[512] = "";
    CHECK_STATUS(nnm_module_named_modules(s, mods_visit, keys), NNM_OK);
    CU_ASSERT_STRING_EQUAL(keys, "[],[a]");
    keys[0] = 0;
    CHECK_STATUS(nnm_module_named_parameters(s, keys_visit, keys), NNM_OK);
    CU_ASSERT_STRING_EQUAL(keys, "a.weight,a.bias");
    CU_ASSERT_EQUAL(nnm_module_num_params(s), 20);
    CU_ASSERT_EQUAL(nnm_module_nbytes(s), 80u);
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(s, &sd), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 4);
    CU_ASSERT_PTR_NOT_NULL(nnm_state_dict_get(sd, "b.weight"));
    /* the same dict loads back (both keys land in the one tensor) */
    CHECK_STATUS(nnm_module_load_state_dict(s, sd, 1, NULL), NNM_OK);
    nnm_state_dict_free(sd);
    /* the optimizer holds each parameter once */
    nnm_sgd_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.lr = 0.1;
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(s, &o, &opt), NNM_OK);
    nnm_optim_free(opt);

    /* gradients from both uses add up: compare with two unshared copies of
     * the same weights, whose grads are the two terms */
    nnm_module *u = tu_module(g_ctx, "sequential", NULL);
    nnm_module *u1 = tu_linear(g_ctx, "linear", 4, 4, 1), *u2 = tu_linear(g_ctx, "linear", 4, 4, 1);
    CHECK_STATUS(nnm_module_add_child(u, "a", u1), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(u, "b", u2), NNM_OK);
    nnm_state_dict *copy = NULL;
    CHECK_STATUS(nnm_module_state_dict(s, &copy), NNM_OK);
    CHECK_STATUS(nnm_module_load_state_dict(u, copy, 1, NULL), NNM_OK);
    nnm_state_dict_free(copy);
    const float xs[8] = {0.5f, -1, 2, 0.25f, 1, 1.5f, -0.5f, 3};
    const int64_t shape[2] = {2, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xs);
    tu_named ps = tu_params_of(s), pu = tu_params_of(u);
    int64_t n = 0, n1 = 0, n2 = 0;
    float *g = grad_after_backward(s, x, ps.t[0], &n);
    float *g1 = grad_after_backward(u, x, pu.t[0], &n1);
    float *g2 = tu_read_f32(nnm_tensor_grad(pu.t[2]), &n2);
    CU_ASSERT_FATAL(g && g1 && g2 && n == 16 && n1 == 16 && n2 == 16);
    for (int i = 0; i < 16; i++) CU_ASSERT_DOUBLE_EQUAL(g[i], g1[i] + g2[i], 1e-4 * (1 + fabs(g[i])));
    free(g);
    free(g1);
    free(g2);
    /* and one output is the other's: same forward */
    nnm_tensor *ys = NULL, *yu = NULL;
    CHECK_STATUS(tu_call1(s, x, &ys), NNM_OK);
    CHECK_STATUS(tu_call1(u, x, &yu), NNM_OK);
    int64_t na = 0, nb = 0;
    float *va = tu_read_f32(ys, &na), *vb = tu_read_f32(yu, &nb);
    CU_ASSERT_TRUE(va && vb && na == nb && memcmp(va, vb, (size_t)na * sizeof *va) == 0);
    free(va);
    free(vb);
    nnm_tensor_release(ys);
    nnm_tensor_release(yu);
    /* a device move moves it once; the manifest describes it under each name */
    CHECK_STATUS(nnm_module_to(s, (nnm_device){NNM_DEVICE_META, 0}), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_device(lin).type, NNM_DEVICE_META);
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_from_module(s, &mf), NNM_OK);
    nnm_module *rebuilt = NULL;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_META, &rebuilt), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_num_params(rebuilt), 40); /* two copies: no sharing in manifests */
    nnm_module_release(rebuilt);
    nnm_manifest_free(mf);
    /* deleting one name keeps the other */
    CHECK_STATUS(nnm_module_del_child(s, "a"), NNM_OK);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(s, "b"), lin);
    nnm_tensor_release(x);
    nnm_module_release(u1);
    nnm_module_release(u2);
    nnm_module_release(u);
    nnm_module_release(lin);
    nnm_module_release(s);
    LEAK_CHECK_END();
}

static void test_shared_cycle(void) {
    LEAK_CHECK_BEGIN();
    /* a shared module can never hold its own ancestor */
    nnm_module *outer = tu_module(g_ctx, "sequential", NULL), *inner = tu_module(g_ctx, "sequential", NULL);
    nnm_module *other = tu_module(g_ctx, "sequential", NULL);
    CHECK_STATUS(nnm_module_add_child(outer, "inner", inner), NNM_OK);
    CHECK_STATUS(nnm_module_set_child(other, "shared", inner), NNM_OK); /* inner in two trees */
    CHECK_ERROR(nnm_module_set_child(inner, "back", outer), NNM_E_INVALID, "cycle");
    CHECK_ERROR(nnm_module_set_child(inner, "self", inner), NNM_E_INVALID, "cycle");
    /* the first parent goes; the other still holds it */
    nnm_module_release(outer);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(other, "shared"), inner);
    nnm_module_release(inner);
    nnm_module_release(other);
    LEAK_CHECK_END();
}

static void test_tied_parameter(void) {
    LEAK_CHECK_BEGIN();
    /* PyTorch: enc = nn.Linear(4, 4); dec = nn.Linear(4, 4);
     * dec.weight = enc.weight; m = nn.Sequential(enc, dec) */
    nnm_module *s = tu_module(g_ctx, "sequential", NULL);
    nnm_module *enc = tu_linear(g_ctx, "linear", 4, 4, 1), *dec = tu_linear(g_ctx, "linear", 4, 4, 1);
    CHECK_STATUS(nnm_module_add_child(s, "enc", enc), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(s, "dec", dec), NNM_OK);
    tu_named pe = tu_params_of(enc), pd0 = tu_params_of(dec);
    nnm_tensor *w = pe.t[0], *dec_w_before = pd0.t[0];
    CHECK_STATUS(nnm_module_set_parameter(dec, "weight", w), NNM_OK);
    /* named_parameters once, state_dict under both names */
    char keys[512] = "";
    CHECK_STATUS(nnm_module_named_parameters(s, keys_visit, keys), NNM_OK);
    CU_ASSERT_STRING_EQUAL(keys, "enc.weight,enc.bias,dec.bias");
    CU_ASSERT_EQUAL(nnm_module_num_params(s), 16 + 4 + 4);
    tu_named pd = tu_params_of(dec);
    CU_ASSERT_PTR_EQUAL(pd.t[0], w); /* dec.weight is enc.weight */
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(s, &sd), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 4);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_desc_get(nnm_state_dict_get(sd, "dec.weight"))->data,
                        nnm_tensor_desc_get(w)->data);
    nnm_state_dict_free(sd);
    /* refusals: another shape, a tensor that is no parameter, a wrong name */
    nnm_module *wide = tu_linear(g_ctx, "linear", 4, 5, 1);
    tu_named pw = tu_params_of(wide);
    CHECK_ERROR(nnm_module_set_parameter(dec, "weight", pw.t[0]), NNM_E_SHAPE, "[5, 4]");
    const int64_t s44[2] = {4, 4};
    nnm_tensor *plain = tu_tf32(g_ctx, 2, s44, NULL);
    CHECK_ERROR(nnm_module_set_parameter(dec, "weight", plain), NNM_E_INVALID, "not a parameter");
    CHECK_ERROR(nnm_module_set_parameter(dec, "nope", w), NNM_E_NOT_FOUND, "no parameter 'nope'");
    nnm_tensor_release(plain);
    nnm_module_release(wide);

    /* the gradient of the tied weight is the sum of both uses: compare with
     * an untied twin holding the same values */
    nnm_module *u = tu_module(g_ctx, "sequential", NULL);
    nnm_module *ue = tu_linear(g_ctx, "linear", 4, 4, 1), *ud = tu_linear(g_ctx, "linear", 4, 4, 1);
    CHECK_STATUS(nnm_module_add_child(u, "enc", ue), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(u, "dec", ud), NNM_OK);
    CHECK_STATUS(nnm_module_state_dict(s, &sd), NNM_OK);
    CHECK_STATUS(nnm_module_load_state_dict(u, sd, 1, NULL), NNM_OK);
    nnm_state_dict_free(sd);
    const float xs[8] = {0.5f, -1, 2, 0.25f, 1, 1.5f, -0.5f, 3};
    const int64_t shape[2] = {2, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xs);
    tu_named pu = tu_params_of(u);
    int64_t n = 0, n1 = 0, n2 = 0;
    float *g = grad_after_backward(s, x, w, &n);
    float *g1 = grad_after_backward(u, x, pu.t[0], &n1);
    float *g2 = tu_read_f32(nnm_tensor_grad(pu.t[2]), &n2);
    CU_ASSERT_FATAL(g && g1 && g2 && n == 16 && n1 == 16 && n2 == 16);
    for (int i = 0; i < 16; i++) CU_ASSERT_DOUBLE_EQUAL(g[i], g1[i] + g2[i], 1e-4 * (1 + fabs(g[i])));
    free(g);
    free(g1);
    free(g2);
    /* the object dec's plugin holds got no .grad of its own */
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(dec_w_before));
    /* an optimizer step updates the one weight; both layers use it */
    nnm_sgd_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.lr = 0.1;
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(s, &o, &opt), NNM_OK);
    CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
    nnm_optim_free(opt);
    CHECK_STATUS(nnm_module_state_dict(s, &sd), NNM_OK);
    CHECK_STATUS(nnm_module_load_state_dict(u, sd, 1, NULL), NNM_OK); /* the twin takes the new values */
    nnm_state_dict_free(sd);
    nnm_tensor *ys = NULL, *yu = NULL;
    CHECK_STATUS(tu_call1(s, x, &ys), NNM_OK);
    CHECK_STATUS(tu_call1(u, x, &yu), NNM_OK);
    int64_t na = 0, nb = 0;
    float *va = tu_read_f32(ys, &na), *vb = tu_read_f32(yu, &nb);
    CU_ASSERT_TRUE(va && vb && na == nb && memcmp(va, vb, (size_t)na * sizeof *va) == 0);
    free(va);
    free(vb);
    nnm_tensor_release(ys);
    nnm_tensor_release(yu);
    /* freezing the tied weight through the module freezes both uses */
    CHECK_STATUS(nnm_module_zero_grad(s), NNM_OK);
    CHECK_STATUS(nnm_module_requires_grad_(s, 0), NNM_OK);
    CHECK_STATUS(nnm_module_requires_grad_(enc, 1), NNM_OK);
    CHECK_STATUS(nnm_module_requires_grad_(dec, 0), NNM_OK); /* dec.weight IS enc.weight: frozen */
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(w));
    /* a device move keeps dec's view of the weight */
    CHECK_STATUS(nnm_module_to(s, (nnm_device){NNM_DEVICE_META, 0}), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_desc_get(dec_w_before)->device.type, NNM_DEVICE_META);
    nnm_tensor_release(x);
    nnm_module_release(ue);
    nnm_module_release(ud);
    nnm_module_release(u);
    nnm_module_release(enc);
    nnm_module_release(dec);
    nnm_module_release(s);
    LEAK_CHECK_END();
}

/* Weight tying as language models do it, through a layer with its own
 * backward: the embedding (custom backward, accumulate_grad) takes the
 * decoder's weight: emb.weight = dec.weight, both [5, 3]. The gradient of
 * the one weight is the embedding's plus the decoder's (an untied twin gives
 * the two terms). */
static void test_tied_custom_backward(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    nnm_config_set_int(cfg, "num_embeddings", 5);
    nnm_config_set_int(cfg, "embedding_dim", 3);
    nnm_module *lm = tu_module(g_ctx, "sequential", NULL), *twin = tu_module(g_ctx, "sequential", NULL);
    nnm_module *emb = tu_module(g_ctx, "embedding", cfg), *dec = tu_linear(g_ctx, "linear", 3, 5, 0);
    nnm_module *temb = tu_module(g_ctx, "embedding", cfg), *tdec = tu_linear(g_ctx, "linear", 3, 5, 0);
    nnm_config_free(cfg);
    CU_ASSERT_FATAL(lm && twin && emb && dec && temb && tdec);
    CHECK_STATUS(nnm_module_add_child(lm, "emb", emb), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(lm, "dec", dec), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(twin, "emb", temb), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(twin, "dec", tdec), NNM_OK);
    tu_named pd = tu_params_of(dec);
    nnm_tensor *w = pd.t[0];
    CHECK_STATUS(nnm_module_set_parameter(emb, "weight", w), NNM_OK);
    char keys[512] = "";
    CHECK_STATUS(nnm_module_named_parameters(lm, keys_visit, keys), NNM_OK);
    CU_ASSERT_STRING_EQUAL(keys, "emb.weight"); /* one tensor, under its first name */
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(lm, &sd), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 2);
    CHECK_STATUS(nnm_module_load_state_dict(twin, sd, 1, NULL), NNM_OK);
    nnm_state_dict_free(sd);
    const int64_t idx[4] = {0, 3, 3, 4}, is[1] = {4};
    nnm_tensor *x = tu_ti64(g_ctx, 1, is, idx);
    tu_named pt = tu_params_of(twin);
    int64_t n = 0, n1 = 0, n2 = 0;
    float *g = grad_after_backward(lm, x, w, &n);
    float *g1 = grad_after_backward(twin, x, pt.t[0], &n1);
    float *g2 = tu_read_f32(nnm_tensor_grad(pt.t[1]), &n2);
    CU_ASSERT_FATAL(g && g1 && g2 && n == 15 && n1 == 15 && n2 == 15);
    for (int i = 0; i < 15; i++) CU_ASSERT_DOUBLE_EQUAL(g[i], g1[i] + g2[i], 1e-4 * (1 + fabs(g[i])));
    free(g);
    free(g1);
    free(g2);
    nnm_tensor_release(x);
    nnm_module_release(emb);
    nnm_module_release(dec);
    nnm_module_release(temb);
    nnm_module_release(tdec);
    nnm_module_release(lm);
    nnm_module_release(twin);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("module_api", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "model.fc = head: in place, hooks and modes as PyTorch", test_set_child);
    CU_add_test(s, "set_child refuses a cycle", test_set_child_cycle);
    CU_add_test(s, "del model.fc: names and order kept, wide modules", test_del_child);
    CU_add_test(s, "requires_grad_(False) freezes a backbone", test_requires_grad_);
    CU_add_test(s, "state_dict() / load_state_dict() in memory", test_state_dict_in_memory);
    CU_add_test(s, "a wide in-memory state dict", test_state_dict_wide);
    CU_add_test(s, "batch norm: a state dict without num_batches_tracked sets it to 0 (PyTorch)",
                test_state_dict_without_nbt);
    CU_add_test(s, "a shared module: seen once, gradients add up", test_shared_module);
    CU_add_test(s, "a shared module never makes a cycle", test_shared_cycle);
    CU_add_test(s, "tied parameters: dec.weight = enc.weight", test_tied_parameter);
    CU_add_test(s, "tied through a custom backward (embedding)", test_tied_custom_backward);
    return tu_run();
}
