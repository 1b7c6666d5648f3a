/* plugins/flatten/flatten.c - torch.nn.Flatten and torch.nn.Unflatten, one
 * plugin:
 *
 *   flatten    start_dim = 1, end_dim = -1: dims start..end become one
 *   unflatten  dim (required), unflattened_size (list of ints, required; one
 *              entry may be -1): dim becomes those dims
 *
 * Stateless; forward is one host op_reshape (a view of a contiguous input),
 * so autograd and every device come from the runtime. */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flat_state {
    int unflatten;
    int64_t start_dim, end_dim;        /* flatten */
    int64_t dim;                       /* unflatten */
    int64_t sizes[NNM_MAX_DIMS];
    size_t n_sizes;
} flat_state;

static nnm_status flat_new(nnm_env *env, int unflatten, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    flat_state s;
    memset(&s, 0, sizeof s);
    s.unflatten = unflatten;
    nnm_status st;
    if (!unflatten) {
        const int64_t one = 1, minus1 = -1;
        if ((st = h->config_int(env, "start_dim", &one, &s.start_dim)) ||
            (st = h->config_int(env, "end_dim", &minus1, &s.end_dim)))
            return st;
        if (s.start_dim < -NNM_MAX_DIMS || s.start_dim >= NNM_MAX_DIMS || s.end_dim < -NNM_MAX_DIMS ||
            s.end_dim >= NNM_MAX_DIMS)
            return h->set_error(env, NNM_E_INVALID, "flatten: start_dim/end_dim out of range");
    } else {
        if ((st = h->config_int(env, "dim", NULL, &s.dim)) ||
            (st = h->config_ints(env, "unflattened_size", s.sizes, NNM_MAX_DIMS, &s.n_sizes)))
            return st;
        if (s.n_sizes == 0) return h->set_error(env, NNM_E_INVALID, "unflatten: unflattened_size is empty");
        int inferred = 0;
        for (size_t i = 0; i < s.n_sizes; i++) {
            if (s.sizes[i] == -1 && !inferred++) continue;
            if (s.sizes[i] < 0)
                return h->set_error(env, NNM_E_INVALID,
                                    "unflatten: unflattened_size entries must be >= 0, with at most one -1");
        }
    }
    flat_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "flatten: out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status flatten_create(nnm_env *env, void **self) { return flat_new(env, 0, self); }
static nnm_status unflatten_create(nnm_env *env, void **self) { return flat_new(env, 1, self); }
static void flat_destroy(void *self) { free(self); }

static nnm_status flat_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const flat_state *s = self;
    const char *who = s->unflatten ? "unflatten" : "flatten";
    if (n_in != 1 || n_out != 1 || !in[0]) return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", who);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    const int32_t nd = d->ndim;
    int64_t shape[NNM_MAX_DIMS];
    int32_t on = 0;
    if (!s->unflatten) {
        const int32_t rank = nd == 0 ? 1 : nd; /* a 0-d tensor flattens as if it were [1] */
        int64_t a = s->start_dim < 0 ? s->start_dim + rank : s->start_dim;
        int64_t b = s->end_dim < 0 ? s->end_dim + rank : s->end_dim;
        if (a < 0 || a >= rank || b < 0 || b >= rank)
            return h->set_error(env, NNM_E_SHAPE,
                                "flatten: dimension out of range (start_dim %lld, end_dim %lld for a %d-d input)",
                                (long long)s->start_dim, (long long)s->end_dim, (int)nd);
        if (a > b) return h->set_error(env, NNM_E_SHAPE, "flatten: start_dim cannot come after end_dim");
        if (nd == 0) {
            shape[on++] = 1;
        } else {
            int64_t prod = 1;
            for (int32_t i = 0; i < nd; i++) {
                if (i < a || i > b) {
                    shape[on++] = d->shape[i];
                } else {
                    prod *= d->shape[i];
                    if (i == b) shape[on++] = prod;
                }
            }
        }
    } else {
        int64_t dd = s->dim < 0 ? s->dim + nd : s->dim;
        if (dd < 0 || dd >= nd)
            return h->set_error(env, NNM_E_SHAPE, "unflatten: dim %lld out of range for a %d-d input",
                                (long long)s->dim, (int)nd);
        if (nd - 1 + (int32_t)s->n_sizes > NNM_MAX_DIMS)
            return h->set_error(env, NNM_E_LIMIT, "unflatten: more than %d dims", NNM_MAX_DIMS);
        int64_t prod = 1;
        int infer = -1, over = 0; /* over: sizes multiplying past int64 match no dim */
        for (size_t i = 0; i < s->n_sizes; i++) {
            if (s->sizes[i] == -1) infer = (int)i;
            else over |= __builtin_mul_overflow(prod, s->sizes[i], &prod);
        }
        const int64_t have = d->shape[dd];
        if (over || (infer < 0 ? prod != have : (prod == 0 || have % prod != 0)))
            return h->set_error(env, NNM_E_SHAPE,
                                "unflatten: provided sizes don't multiply up to the size of dim %lld (%lld) in the input",
                                (long long)s->dim, (long long)have);
        for (int32_t i = 0; i < nd; i++) {
            if (i != dd) {
                shape[on++] = d->shape[i];
                continue;
            }
            for (size_t j = 0; j < s->n_sizes; j++)
                shape[on++] = (int)j == infer ? have / prod : s->sizes[j];
        }
    }
    return h->op_reshape(env, in[0], on, shape, out);
}

static int flat_extra_repr(void *self, char *buf, size_t cap) {
    const flat_state *s = self;
    if (!s->unflatten)
        return snprintf(buf, cap, "start_dim=%lld, end_dim=%lld", (long long)s->start_dim, (long long)s->end_dim);
    char t[256];
    size_t n = (size_t)snprintf(t, sizeof t, "(");
    for (size_t i = 0; i < s->n_sizes && n < sizeof t; i++)
        n += (size_t)snprintf(t + n, sizeof t - n, i ? ", %lld" : "%lld", (long long)s->sizes[i]);
    if (n < sizeof t) snprintf(t + n, sizeof t - n, s->n_sizes == 1 ? ",)" : ")");
    return snprintf(buf, cap, "dim=%lld, unflattened_size=%s", (long long)s->dim, t);
}

static const nnm_config_field flatten_config[] = {
    {"start_dim", NNM_CONFIG_INT, 0, "first dim to flatten, default 1"},
    {"end_dim", NNM_CONFIG_INT, 0, "last dim to flatten, default -1"},
};
static const nnm_config_field unflatten_config[] = {
    {"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim to unflatten"},
    {"unflattened_size", NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, "new shape of that dim (one -1 allowed)"},
};

static const nnm_layer_vtable flatten_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "flatten",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = flatten_create,
    .destroy = flat_destroy,
    .forward = flat_forward,
    .extra_repr = flat_extra_repr,
    .config_fields = flatten_config,
    .n_config_fields = 2,
    .display_name = "Flatten",
};
static const nnm_layer_vtable unflatten_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "unflatten",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = unflatten_create,
    .destroy = flat_destroy,
    .forward = flat_forward,
    .extra_repr = flat_extra_repr,
    .config_fields = unflatten_config,
    .n_config_fields = 2,
    .display_name = "Unflatten",
};

static const nnm_layer_vtable *const flat_layers[] = {&flatten_layer, &unflatten_layer};

static const nnm_plugin_desc flat_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "flatten",
    .description = "torch.nn.Flatten and Unflatten (views)",
    .n_layers = 2,
    .layers = flat_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(flat_plugin)
