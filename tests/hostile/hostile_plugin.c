/* tests/hostile/hostile_plugin.c - deliberately hostile and broken plugins.
 * Built once per HX_* kind (see CMakeLists.txt); includes only abi/, like any
 * third-party plugin. Each kind does one thing the host must detect and
 * refuse with a status and a message, never a crash:
 *
 *   HX_LAYERS      one plugin of misbehaving layers (see each below)
 *   HX_ALLOC_NULL  a backend (CUDA device type) whose alloc says OK and
 *                  hands out NULL
 *   HX_FIELDS_MANY, HX_FIELDS_NULL, HX_FIELD_KEY, HX_FIELD_TYPE,
 *   HX_DISPLAY_ESC, HX_NAME_ESC, HX_NAME_LONG, HX_DESC_ESC
 *                  descriptors that claim what they should not
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nnmod/plugin.h"

#define HX_UNUSED __attribute__((unused))

HX_UNUSED static int hx_state;

HX_UNUSED static nnm_status hx_create(nnm_env *env, void **self) {
    (void)env;
    *self = &hx_state;
    return NNM_OK;
}

/* out = copy of in[0] */
HX_UNUSED static nnm_status hx_copy_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                            uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    return env->host->op_unary(env, NNM_UNARY_COPY, in[0], 0, &out[0]);
}

/* A layer: name, create, forward, then any other designated slots. */
#define HX_LAYER_FN(id, nm, create_fn, forward_fn, ...)                                      \
    static const nnm_layer_vtable id = {.struct_size = sizeof(nnm_layer_vtable),            \
                                        .name = nm,                                          \
                                        .version_major = 1,                                  \
                                        .n_inputs = 1,                                       \
                                        .n_outputs = 1,                                      \
                                        .create = create_fn,                                 \
                                        .forward = forward_fn,                               \
                                        __VA_ARGS__};
#define HX_LAYER(id, nm, ...) HX_LAYER_FN(id, nm, hx_create, hx_copy_forward, __VA_ARGS__)

#define HX_DESC(nm, desc_text, layers, n_layers, backends, n_backends)                       \
    static const nnm_plugin_desc hx_desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR,         \
                                            NNM_ABI_MINOR, nm, desc_text,                   \
                                            n_layers, n_backends, layers, backends};        \
    NNM_PLUGIN_DEFINE(hx_desc)

/* ------------------------------------------------------------------------ */
#if defined(HX_LAYERS)

/* "nullargs": create and forward call every host slot with NULL (or foreign)
 * pointers. Each call must fail with NNM_E_INVALID (or answer 0); the first
 * that does not fails create/forward with a message saying which. */
#define EXPECT_INVALID(call)                                                                 \
    do {                                                                                     \
        nnm_status st_ = (call);                                                             \
        if (st_ != NNM_E_INVALID)                                                            \
            return h->set_error(env, NNM_E_STATE, "%s returned %d, not NNM_E_INVALID", #call, \
                                (int)st_);                                                   \
    } while (0)

static nnm_status nullargs_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    nnm_env fake = *env; /* a copy: not an env the runtime made */
    int64_t i64 = 0, one = 1, buf[2];
    double f = 0;
    int b = 0;
    const char *s = NULL;
    size_t n = 0;
    nnm_tensor *t = NULL;
    EXPECT_INVALID(h->config_int(env, "k", &i64, NULL));
    EXPECT_INVALID(h->config_float(env, "k", &f, NULL));
    EXPECT_INVALID(h->config_bool(env, "k", &b, NULL));
    EXPECT_INVALID(h->config_str(env, "k", "x", NULL));
    EXPECT_INVALID(h->config_ints(env, "k", NULL, 2, &n));
    EXPECT_INVALID(h->config_ints(env, "k", buf, 2, NULL));
    EXPECT_INVALID(h->config_floats(env, "k", NULL, 2, &n));
    EXPECT_INVALID(h->config_strs(env, "k", &s, 1, NULL));
    EXPECT_INVALID(h->config_int(env, NULL, &i64, &i64));
    EXPECT_INVALID(h->config_int(NULL, "k", &i64, &i64));
    EXPECT_INVALID(h->config_int(&fake, "k", &i64, &i64));
    EXPECT_INVALID(h->param_new(env, NULL, 1, &one, NNM_INIT_ZEROS, 0, 0, &t));
    EXPECT_INVALID(h->param_new(env, "w", 1, &one, NNM_INIT_ZEROS, 0, 0, NULL));
    EXPECT_INVALID(h->param_new(NULL, "w", 1, &one, NNM_INIT_ZEROS, 0, 0, &t));
    EXPECT_INVALID(h->buffer_new(&fake, "b", 1, &one, NNM_INIT_ZEROS, 0, 1, &t));
    EXPECT_INVALID(h->input_spec(env, 0, 1, NULL, 0));
    EXPECT_INVALID(h->input_spec(NULL, 0, 1, &one, 0));
    EXPECT_INVALID(h->tensor_new(env, 1, &one, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, NULL));
    EXPECT_INVALID(h->tensor_new(env, 1, NULL, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, &t));
    int32_t type = 0;
    EXPECT_INVALID(h->config_type(NULL, "k", &type));
    EXPECT_INVALID(h->config_type(env, "k", NULL));
    EXPECT_INVALID(h->config_int_or_ints(&fake, "k", &i64, buf, 2));
    (void)h->set_error_msg(NULL, NNM_E_PLUGIN, "nobody hears this");
    (void)h->set_error_msg(&fake, NNM_E_PLUGIN, "nor this");
    if (h->is_training(NULL) || h->grad_enabled(&fake) || h->child_count(NULL) ||
        h->device(NULL).type != NNM_DEVICE_CPU || h->tensor_desc(NULL))
        return h->set_error(env, NNM_E_STATE, "a query slot answered a NULL or foreign env");
    h->tensor_retain(NULL);
    h->tensor_release(NULL);
    (void)h->set_error(NULL, NNM_E_PLUGIN, "nobody hears this");
    (void)h->set_error(env, NNM_E_PLUGIN, NULL);
    *self = &hx_state;
    return NNM_OK;
}

static nnm_status nullargs_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    const nnm_host *h = env->host;
    nnm_tensor *t = NULL;
    const int64_t shape[1] = {-1};
    const int32_t dim = 0;
    nnm_tensor *const *saved = NULL;
    uint32_t ns = 0;
    EXPECT_INVALID(h->op_unary(env, NNM_UNARY_COPY, NULL, 0, &t));
    EXPECT_INVALID(h->op_unary(env, NNM_UNARY_COPY, in[0], 0, NULL));
    EXPECT_INVALID(h->op_unary(NULL, NNM_UNARY_COPY, in[0], 0, &t));
    EXPECT_INVALID(h->op_binary(env, NNM_BINARY_ADD, NULL, in[0], &t));
    EXPECT_INVALID(h->op_binary(env, NNM_BINARY_ADD, in[0], NULL, &t));
    EXPECT_INVALID(h->op_linear(env, NULL, in[0], NULL, &t));
    EXPECT_INVALID(h->op_linear(env, in[0], NULL, NULL, &t));
    EXPECT_INVALID(h->op_matmul(env, NULL, in[0], &t));
    EXPECT_INVALID(h->op_reduce(env, NNM_REDUCE_SUM, NULL, &dim, 1, 0, &t));
    EXPECT_INVALID(h->op_reduce(env, NNM_REDUCE_SUM, in[0], NULL, 1, 0, &t));
    EXPECT_INVALID(h->op_log_softmax(env, NULL, &t));
    EXPECT_INVALID(h->op_nll(env, NULL, in[0], -100, 0, NNM_REDUCTION_MEAN, &t));
    EXPECT_INVALID(h->op_reshape(env, NULL, 1, shape, &t));
    EXPECT_INVALID(h->op_reshape(env, in[0], 1, NULL, &t));
    EXPECT_INVALID(h->save_for_backward(env, NULL, 1));
    EXPECT_INVALID(h->save_for_backward(NULL, in, 1));
    EXPECT_INVALID(h->accumulate_grad(NULL, in[0], in[0]));
    EXPECT_INVALID(h->child_call(NULL, 0, in, 1, out, 1));
    EXPECT_INVALID(h->child_info(NULL, 0, NULL, NULL, NULL));
    EXPECT_INVALID(h->descendant_call(env, NULL, in, 1, out, 1));
    EXPECT_INVALID(h->descendant_info(NULL, "x", NULL, NULL));
    float f[8];
    const int64_t two[1] = {2};
    EXPECT_INVALID(h->tensor_read_f32(NULL, in[0], f, 8));
    EXPECT_INVALID(h->tensor_read_f32(env, NULL, f, 8));
    EXPECT_INVALID(h->op_full(NULL, 1, two, 0.0, &t));
    EXPECT_INVALID(h->op_full(env, 1, two, 0.0, NULL));
    EXPECT_INVALID(h->op_bmm(NULL, in[0], in[0], &t));
    EXPECT_INVALID(h->op_update(env, NULL, in[0], 1.0, 1.0));
    EXPECT_INVALID(h->op_update(NULL, in[0], in[0], 1.0, 1.0));
    if (h->saved_tensors(env, &saved, NULL) == NNM_OK || h->saved_tensors(env, NULL, &ns) == NNM_OK)
        return h->set_error(env, NNM_E_STATE, "saved_tensors accepted NULL");
    if (t) return h->set_error(env, NNM_E_STATE, "an op that failed handed out a tensor");
    return h->op_unary(env, NNM_UNARY_COPY, in[0], 0, &out[0]);
}
HX_LAYER_FN(nullargs, "hx_nullargs", nullargs_create, nullargs_forward, .flags = 0)

/* "repr_full": extra_repr fills the whole buffer, no NUL, and claims more. */
static int repr_full(void *self, char *buf, size_t cap) {
    (void)self;
    memset(buf, 'A', cap);
    return (int)cap + 100;
}
HX_LAYER(repr_full_l, "hx_repr_full", .extra_repr = repr_full)

/* "repr_esc": extra_repr writes terminal control sequences. */
static int repr_esc(void *self, char *buf, size_t cap) {
    (void)self;
    return snprintf(buf, cap, "\x1b[2J\x1b]0;owned\x07x=1\rfake");
}
HX_LAYER(repr_esc_l, "hx_repr_esc", .extra_repr = repr_esc)

/* "silent": forward fails without saying why. */
static nnm_status silent_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    (void)env, (void)self, (void)in, (void)n_in, (void)out, (void)n_out;
    return NNM_E_PLUGIN;
}
HX_LAYER_FN(silent_l, "hx_silent", hx_create, silent_forward, .flags = 0)

/* "positive": forward "fails" with a positive number, not a status. */
static nnm_status positive_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out) {
    (void)env, (void)self, (void)in, (void)n_in, (void)out, (void)n_out;
    return 7;
}
HX_LAYER_FN(positive_l, "hx_positive", hx_create, positive_forward, .flags = 0)

/* "passthrough": returns its input without taking a reference. */
static nnm_status passthrough_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)env, (void)self, (void)n_in, (void)n_out;
    out[0] = in[0];
    return NNM_OK;
}
HX_LAYER_FN(passthrough_l, "hx_passthrough", hx_create, passthrough_forward, .flags = 0)

/* "identity_ok": the same, done right (the check must not refuse it). */
static nnm_status identity_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    env->host->tensor_retain(in[0]);
    out[0] = in[0];
    return NNM_OK;
}
HX_LAYER_FN(identity_l, "hx_identity_ok", hx_create, identity_forward, .flags = 0)

/* Custom-backward layers: forward is a copy; backward returns a gradient of
 * config "grad" shape (ints) and "dtype" ("f32" or "i64"), filled with 1, or
 * fails silently with "silent" = true. */
typedef struct hx_grad {
    int64_t shape[8];
    size_t ndim;
    int i64, silent;
} hx_grad;

static nnm_status grad_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    hx_grad *g = calloc(1, sizeof *g);
    if (!g) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    const char *dtype = NULL;
    int no = 0;
    nnm_status st = h->config_ints(env, "grad", g->shape, 8, &g->ndim);
    if (!st) st = h->config_str(env, "dtype", "f32", &dtype);
    if (!st) st = h->config_bool(env, "silent", &no, &g->silent);
    if (st) {
        free(g);
        return st;
    }
    g->i64 = strcmp(dtype, "i64") == 0;
    *self = g;
    return NNM_OK;
}

static void grad_destroy(void *self) { free(self); }

static nnm_status grad_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    (void)grad_out, (void)n_out, (void)n_in;
    const nnm_host *h = env->host;
    hx_grad *g = self;
    if (g->silent) return NNM_E_SHAPE;
    nnm_dtype dt = g->i64 ? (nnm_dtype){NNM_DTYPE_INT, 64, 1} : (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1};
    nnm_status st = h->tensor_new(env, (int32_t)g->ndim, g->shape, dt, &grad_in[0]);
    if (st) return st;
    const nnm_tensor_desc *d = h->tensor_desc(grad_in[0]);
    int64_t n = 1;
    for (size_t i = 0; i < g->ndim; i++) n *= g->shape[i];
    for (int64_t i = 0; i < n; i++) {
        if (g->i64)
            ((int64_t *)d->data)[i] = 1;
        else
            ((float *)d->data)[i] = 1.0f;
    }
    return NNM_OK;
}
HX_LAYER_FN(badgrad_l, "hx_badgrad", grad_create, hx_copy_forward, .destroy = grad_destroy,
            .backward = grad_backward)

/* Ownership lies in backward (the docs: backward stores a NEW reference in
 * each grad_in[i]). "hx_bwpass" hands grad_out[0] back as grad_in[0] without
 * host->tensor_retain (the identity backward everybody writes first). */
static nnm_status bwpass_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                  uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    (void)env, (void)self, (void)n_out, (void)n_in;
    grad_in[0] = grad_out[0];
    return NNM_OK;
}
HX_LAYER_FN(bwpass_l, "hx_bwpass", hx_create, hx_copy_forward, .backward = bwpass_backward)

/* "hx_bwsaved": forward saves its input; backward returns the saved tensor
 * (borrowed from host->saved_tensors) as grad_in[0] without a reference. */
static nnm_status bwsaved_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                  nnm_tensor **out, uint32_t n_out) {
    nnm_status st = env->host->save_for_backward(env, in, 1);
    return st ? st : hx_copy_forward(env, self, in, n_in, out, n_out);
}
static nnm_status bwsaved_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                   uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    (void)self, (void)grad_out, (void)n_out, (void)n_in;
    nnm_tensor *const *saved = NULL;
    uint32_t n = 0;
    nnm_status st = env->host->saved_tensors(env, &saved, &n);
    if (st) return st;
    grad_in[0] = saved[0];
    return NNM_OK;
}
HX_LAYER_FN(bwsaved_l, "hx_bwsaved", hx_create, bwsaved_forward, .backward = bwsaved_backward)

/* "hx_bwdup": out = a + b; backward makes one gradient and stores it in both
 * grad_in[0] and grad_in[1] with a single reference. */
static nnm_status add2_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    return env->host->op_binary(env, NNM_BINARY_ADD, in[0], in[1], &out[0]);
}
static nnm_status bwdup_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                 uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    (void)self, (void)n_out, (void)n_in;
    nnm_tensor *g = NULL;
    nnm_status st = env->host->op_unary(env, NNM_UNARY_COPY, grad_out[0], 0, &g);
    if (st) return st;
    grad_in[0] = grad_in[1] = g;
    return NNM_OK;
}
static const nnm_layer_vtable bwdup_l = {.struct_size = sizeof(nnm_layer_vtable),
                                         .name = "hx_bwdup",
                                         .version_major = 1,
                                         .n_inputs = 2,
                                         .n_outputs = 1,
                                         .create = hx_create,
                                         .forward = add2_forward,
                                         .backward = bwdup_backward};

/* "hx_bwdup_ok": the same with a reference per slot (must pass). */
static nnm_status bwdup_ok_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                    uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    nnm_status st = bwdup_backward(env, self, grad_out, n_out, grad_in, n_in);
    if (!st) env->host->tensor_retain(grad_in[1]);
    return st;
}
static const nnm_layer_vtable bwdup_ok_l = {.struct_size = sizeof(nnm_layer_vtable),
                                            .name = "hx_bwdup_ok",
                                            .version_major = 1,
                                            .n_inputs = 2,
                                            .n_outputs = 1,
                                            .create = hx_create,
                                            .forward = add2_forward,
                                            .backward = bwdup_ok_backward};

/* "hx_fwdup": two outputs, the same new tensor in both, one reference. */
static nnm_status fwdup_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    nnm_status st = env->host->op_unary(env, NNM_UNARY_COPY, in[0], 0, &out[0]);
    if (!st) out[1] = out[0];
    return st;
}
static const nnm_layer_vtable fwdup_l = {.struct_size = sizeof(nnm_layer_vtable),
                                         .name = "hx_fwdup",
                                         .version_major = 1,
                                         .n_inputs = 1,
                                         .n_outputs = 2,
                                         .create = hx_create,
                                         .forward = fwdup_forward};

/* "hx_errok": forward sets an error, then returns OK with a good output. */
static nnm_status errok_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    (void)env->host->set_error(env, NNM_E_SHAPE, "hx_errok: a message with an OK status");
    return hx_copy_forward(env, self, in, n_in, out, n_out);
}
HX_LAYER_FN(errok_l, "hx_errok", hx_create, errok_forward, .flags = 0)

/* "hx_unterminated": fails with set_error_msg given a page of 'A' with no
 * NUL, right before a page that cannot be read. */
static nnm_status unterminated_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                       uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)in, (void)n_in, (void)out, (void)n_out;
    long pg = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return env->host->set_error(env, NNM_E_NOMEM, "mmap failed");
    memset(p, 'A', (size_t)pg);
    mprotect(p + pg, (size_t)pg, PROT_NONE);
    nnm_status st = env->host->set_error_msg(env, NNM_E_PLUGIN, p);
    munmap(p, (size_t)pg * 2);
    return st;
}
HX_LAYER_FN(unterminated_l, "hx_unterminated", hx_create, unterminated_forward, .flags = 0)

static const nnm_layer_vtable *const hx_layers[] = {
    &nullargs,  &repr_full_l, &repr_esc_l, &silent_l,   &positive_l, &passthrough_l, &identity_l,
    &badgrad_l, &bwpass_l,    &bwsaved_l,  &bwdup_l,    &bwdup_ok_l, &fwdup_l,       &errok_l,
    &unterminated_l};
HX_DESC("hostile", "layers that misbehave on purpose", hx_layers,
        (uint32_t)(sizeof hx_layers / sizeof hx_layers[0]), NULL, 0)

/* ------------------------------------------------------------------------ */
#elif defined(HX_ALLOC_NULL)
static nnm_status an_init(nnm_env *env, void **state) {
    (void)env;
    *state = NULL;
    return NNM_OK;
}
static void an_shutdown(void *state) { (void)state; }
static nnm_status an_alloc(nnm_env *env, void *state, int32_t dev, size_t bytes, void **ptr) {
    (void)env, (void)state, (void)dev, (void)bytes;
    *ptr = NULL;
    return NNM_OK; /* the lie */
}
static void an_free(void *state, int32_t dev, void *ptr) { (void)state, (void)dev, (void)ptr; }
static nnm_status an_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src,
                            nnm_device sd, size_t bytes) {
    (void)env, (void)state, (void)dd, (void)sd;
    memcpy(dst, src, bytes);
    return NNM_OK;
}
static const nnm_backend_vtable an_vt = {.struct_size = sizeof(nnm_backend_vtable),
                                         .name = "allocnull",
                                         .version_major = 1,
                                         .device_type = NNM_DEVICE_CUDA,
                                         .init = an_init,
                                         .shutdown = an_shutdown,
                                         .alloc = an_alloc,
                                         .free = an_free,
                                         .memcpy = an_memcpy};
static const nnm_backend_vtable *const hx_backends[] = {&an_vt};
HX_DESC("allocnull", NULL, NULL, 0, hx_backends, 1)

/* ------------------------------------------------------------------------ */
#elif defined(HX_FIELDS_MANY)
static const nnm_config_field one_field[] = {{"a", NNM_CONFIG_INT, 0, NULL}};
/* claims a million fields behind a one-entry array */
HX_LAYER(l, "hx_fields_many", .config_fields = one_field, .n_config_fields = 1000000)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("fields_many", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_FIELDS_NULL)
HX_LAYER(l, "hx_fields_null", .config_fields = NULL, .n_config_fields = 3)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("fields_null", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_FIELD_KEY)
static const nnm_config_field fields[] = {{"ok", NNM_CONFIG_INT, 0, NULL},
                                          {"bad\x1b[31mkey", NNM_CONFIG_INT, 0, NULL}};
HX_LAYER(l, "hx_field_key", .config_fields = fields, .n_config_fields = 2)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("field_key", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_FIELD_TYPE)
static const nnm_config_field fields[] = {{"k", 99, 0, NULL}};
HX_LAYER(l, "hx_field_type", .config_fields = fields, .n_config_fields = 1)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("field_type", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_DISPLAY_ESC)
HX_LAYER(l, "hx_display_esc", .display_name = "Evil\x1b[2J")
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("display_esc", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_NAME_ESC)
HX_LAYER(l, "hx_name_esc", .flags = 0)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("name\x1b]0;owned\x07", NULL, hx_layers, 1, NULL, 0)

#elif defined(HX_NAME_LONG)
HX_LAYER(l, "hx_name_long", .flags = 0)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("a_plugin_name_that_goes_on_and_on_and_on_well_past_sixty_three_characters", NULL,
        hx_layers, 1, NULL, 0)

#elif defined(HX_DESC_ESC)
HX_LAYER(l, "hx_desc_esc", .flags = 0)
static const nnm_layer_vtable *const hx_layers[] = {&l};
HX_DESC("desc_esc", "looks fine\r\x1b[1Aoverwrites the line above", hx_layers, 1, NULL, 0)

#else
#error "build with one HX_* kind defined"
#endif
