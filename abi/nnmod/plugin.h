/* nnmod/plugin.h - the plugin ABI. Header-only: a plugin includes this file and
 * nothing else of nnmod, and never links against libnnmod.
 *
 * A plugin is a shared object that exports ONE symbol, NNM_PLUGIN_ENTRY_SYMBOL
 * ("nnm_plugin_entry"), of type nnm_plugin_entry_fn. The runtime calls it with
 * its own ABI version; the plugin returns a const descriptor that lists what the
 * file provides (layers, backends, comms). Everything the plugin needs from the runtime
 * (errors, config, parameters, tensors, ops, children) comes through the const
 * host table reachable from every nnm_env the runtime passes in.
 *
 * Versioning rules (docs/abi.md has the long form):
 *  - every descriptor, vtable and args struct starts with `uint32_t struct_size`
 *    and only ever grows at its end; a NULL slot means "not implemented";
 *  - the runtime reads a slot only if the plugin's struct_size covers it, so a
 *    plugin of a newer minor loads in an older runtime (extra slots ignored) and
 *    a plugin of an older minor loads in a newer one (missing slots are NULL);
 *  - a different ABI major is refused at load, with a message naming both.
 *
 * Errors: every fallible function returns nnm_status, 0 for success and a
 * negative NNM_E_* code for failure, with a message set through
 * host->set_error(). Plugins never print, exit or abort.
 *
 * Ownership: whoever allocates frees. Tensors are reference counted; a function
 * that returns a tensor through `nnm_tensor **out` hands the caller one new
 * reference, to be dropped with host->tensor_release().
 */
#ifndef NNMOD_PLUGIN_H
#define NNMOD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef int32_t nnm_status;

enum nnm_status_code {
    NNM_OK = 0,
    NNM_E_INVALID = -1,     /* bad argument (NULL where one is required, ...) */
    NNM_E_NOMEM = -2,       /* out of memory */
    NNM_E_SHAPE = -3,       /* tensor shape or arity does not fit */
    NNM_E_DTYPE = -4,       /* unsupported or mismatched dtype */
    NNM_E_DEVICE = -5,      /* wrong device, or no such device */
    NNM_E_NOT_FOUND = -6,   /* no such plugin, layer, key, child, ... */
    NNM_E_TYPE = -7,        /* config value of another type */
    NNM_E_VERSION = -8,     /* ABI or semantic version mismatch */
    NNM_E_LOAD = -9,        /* shared object could not be loaded */
    NNM_E_UNSUPPORTED = -10, /* optional slot not implemented */
    NNM_E_STATE = -11,      /* object in the wrong state (freed, busy, ...) */
    NNM_E_IO = -12,         /* file system error */
    NNM_E_PLUGIN = -13,     /* a plugin failed without a more precise code */
    NNM_E_HOOK = -14,       /* a hook failed without a more precise code */
    NNM_E_NO_DEVICE = -15,  /* backend loaded, but this machine has no device */
    NNM_E_EXISTS = -16,     /* duplicate name or registration */
    NNM_E_LIMIT = -17,      /* a documented limit was exceeded */
    /* ---- codes above exist since ABI 1.0 ---- */
    NNM_E_TIMEOUT = -18     /* (1.3) a peer did not answer within the timeout */
};

/* ------------------------------------------------------------------------ */
/* Tensors: a descriptor laid out exactly like DLPack's DLTensor              */
/* ------------------------------------------------------------------------ */

/* Device types use DLPack's DLDeviceType values. */
enum nnm_device_type {
    NNM_DEVICE_CPU = 1,  /* kDLCPU */
    NNM_DEVICE_CUDA = 2  /* kDLCUDA */
};

/* Layout of DLDevice. */
typedef struct nnm_device {
    int32_t type; /* enum nnm_device_type */
    int32_t id;   /* ordinal; 0 for the CPU */
} nnm_device;

/* dtype codes use DLPack's DLDataTypeCode values. */
enum nnm_dtype_code {
    NNM_DTYPE_INT = 0,    /* kDLInt */
    NNM_DTYPE_UINT = 1,   /* kDLUInt */
    NNM_DTYPE_FLOAT = 2,  /* kDLFloat */
    NNM_DTYPE_BFLOAT = 4, /* kDLBfloat */
    NNM_DTYPE_BOOL = 6    /* kDLBool */
};

/* Layout of DLDataType. */
typedef struct nnm_dtype {
    uint8_t code;   /* enum nnm_dtype_code */
    uint8_t bits;   /* 32 for f32 */
    uint16_t lanes; /* 1 */
} nnm_dtype;

/* The f32 dtype, as a value: a compound literal in C, a temporary in C++
 * (which has no compound literals: g++ -pedantic refuses them). */
#ifdef __cplusplus
#define NNM_F32 (nnm_dtype{NNM_DTYPE_FLOAT, 32, 1})
#else
#define NNM_F32 ((nnm_dtype){NNM_DTYPE_FLOAT, 32, 1})
#endif

/* Most dimensions a tensor may have. */
#define NNM_MAX_DIMS 8

/* Most inputs, and most outputs, one module call may have (1.2 names it; the
 * runtime has always enforced it). */
#define NNM_MAX_IO 16

/* Layout of DLTensor. Read-only for plugins: obtain it with host->tensor_desc()
 * and never write through it, except to the elements `data` points to when the
 * tensor is one the plugin has just created as an output. */
typedef struct nnm_tensor_desc {
    void *data;             /* start of the allocation (add byte_offset) */
    nnm_device device;
    int32_t ndim;
    nnm_dtype dtype;
    int64_t *shape;         /* ndim entries */
    int64_t *strides;       /* ndim entries, in elements; never NULL here */
    uint64_t byte_offset;
} nnm_tensor_desc;

/* An opaque, reference counted tensor owned by the runtime. */
typedef struct nnm_tensor nnm_tensor;

/* ------------------------------------------------------------------------ */
/* The environment of one plugin invocation                                  */
/* ------------------------------------------------------------------------ */

typedef struct nnm_host nnm_host;

/* Every vtable slot receives an nnm_env. Its public part gives the host table;
 * the runtime keeps private data behind it (which module, which call, which
 * device, training flag, grad mode). An env is valid only for the duration of
 * the invocation it was passed to: never keep it. */
typedef struct nnm_env {
    uint32_t struct_size;
    uint32_t reserved;    /* the runtime's (it tells the envs it made from copies); never write it */
    const nnm_host *host; /* never NULL */
} nnm_env;

/* ------------------------------------------------------------------------ */
/* Ops the host provides (dispatched to the tensor's device backend)          */
/* ------------------------------------------------------------------------ */

enum nnm_unary_op {
    NNM_UNARY_COPY = 0,
    NNM_UNARY_NEG = 1,
    NNM_UNARY_RELU = 2,
    NNM_UNARY_EXP = 3,
    NNM_UNARY_LOG = 4,
    NNM_UNARY_TANH = 5,
    NNM_UNARY_SIGMOID = 6,
    NNM_UNARY_SQRT = 7,
    NNM_UNARY_ABS = 8,
    NNM_UNARY_SCALE = 9,  /* out = alpha * x */
    /* ---- ops above are valid for ABI 1.0; the runtime sends the ones below
     * only to backends built for 1.1 or later ---- */
    NNM_UNARY_STEP = 10,  /* out = x > 0 ? 1 : 0 */
    NNM_UNARY_SIGN = 11,  /* out = x > 0 ? 1 : x < 0 ? -1 : 0 */
    /* ---- ops above are valid for ABI 1.1; the runtime sends the ones below
     * only to backends whose flags have NNM_BACKEND_OPS_1_3 ---- */
    NNM_UNARY_ERF = 12,        /* out = erf(x) */
    NNM_UNARY_ADD_SCALAR = 13, /* out = x + alpha */
    NNM_UNARY_POW = 14,        /* out = x ^ alpha (powf) */
    NNM_UNARY_CLAMP_MIN = 15,  /* out = max(x, alpha); NaN stays NaN */
    NNM_UNARY_CLAMP_MAX = 16,  /* out = min(x, alpha); NaN stays NaN */
    NNM_UNARY_GE = 17,         /* out = x >= alpha ? 1 : 0 (no gradient) */
    /* ---- ops above are valid for ABI 1.3; the runtime sends the ones below
     * only to backends whose flags have NNM_BACKEND_OPS_1_5 ---- */
    NNM_UNARY_SIN = 18,        /* out = sin(x) */
    NNM_UNARY_COS = 19,        /* out = cos(x) */
    NNM_UNARY_FLOOR = 20,      /* out = floor(x) (zero gradient, as torch) */
    NNM_UNARY_CEIL = 21,       /* out = ceil(x) (zero gradient) */
    NNM_UNARY_ROUND = 22,      /* out = x rounded half to even, as torch.round (zero gradient) */
    NNM_UNARY_TRUNC = 23,      /* out = x rounded toward zero (zero gradient) */
    /* the activations of torch.nn as one op each (PyTorch's formulas) */
    NNM_UNARY_SILU = 24,       /* out = x * sigmoid(x) */
    NNM_UNARY_GELU = 25,       /* out = x * (1 + erf(x / sqrt(2))) / 2 */
    NNM_UNARY_GELU_TANH = 26,  /* out = x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2 */
    NNM_UNARY_HARDSWISH = 27,  /* out = x * min(max(x + 3, 0), 6) / 6 */
    NNM_UNARY_LEAKY_RELU = 28, /* out = x > 0 ? x : alpha * x */
    NNM_UNARY_ELU = 29,        /* out = x > 0 ? x : alpha * (exp(x) - 1) */
    NNM_UNARY_RELU6 = 30,      /* out = min(max(x, 0), 6); NaN stays NaN */
    NNM_UNARY_HARDSIGMOID = 31, /* out = min(max(x + 3, 0), 6) / 6; NaN stays NaN */
    /* their derivatives at x, in the same order (op + 8), PyTorch's
     * *_backward without the gradient factor (no gradient of their own):
     * silu' = s (1 + x (1 - s)); gelu' = cdf(x) + x pdf(x); hardswish' = 0
     * below -3, x / 3 + 1/2 up to 3, else 1; leaky_relu' = x > 0 ? 1 : alpha;
     * elu' = x > 0 ? 1 : alpha * exp(x); relu6' = 1 strictly inside (0, 6),
     * else 0; hardsigmoid' = 1/6 strictly inside (-3, 3), else 0 */
    NNM_UNARY_SILU_GRAD = 32,
    NNM_UNARY_GELU_GRAD = 33,
    NNM_UNARY_GELU_TANH_GRAD = 34,
    NNM_UNARY_HARDSWISH_GRAD = 35,
    NNM_UNARY_LEAKY_RELU_GRAD = 36,
    NNM_UNARY_ELU_GRAD = 37,
    NNM_UNARY_RELU6_GRAD = 38,
    NNM_UNARY_HARDSIGMOID_GRAD = 39
};

enum nnm_binary_op {
    NNM_BINARY_ADD = 0,
    NNM_BINARY_SUB = 1,
    NNM_BINARY_MUL = 2,
    NNM_BINARY_DIV = 3,
    NNM_BINARY_MAX = 4,
    NNM_BINARY_MIN = 5,
    /* ---- ops above are valid for ABI 1.0; the runtime sends the ones below
     * only to backends whose flags have NNM_BACKEND_OPS_1_5 ---- */
    NNM_BINARY_POW = 6    /* out = a ^ b (powf: a negative base takes an integral exponent) */
};

/* Reductions (ABI 1.1). */
enum nnm_reduce_op {
    NNM_REDUCE_SUM = 0,
    NNM_REDUCE_MEAN = 1,
    NNM_REDUCE_MAX = 2,
    NNM_REDUCE_MIN = 3
};

/* How a loss reduces its per-sample values (ABI 1.1), as PyTorch's `reduction`. */
enum nnm_reduction {
    NNM_REDUCTION_NONE = 0,
    NNM_REDUCTION_MEAN = 1,
    NNM_REDUCTION_SUM = 2
};

/* Parameter initialisers for host->param_new(). */
enum nnm_init {
    NNM_INIT_ZEROS = 0,
    NNM_INIT_ONES = 1,
    NNM_INIT_CONSTANT = 2, /* every element = a */
    NNM_INIT_UNIFORM = 3,  /* U(a, b) from the context's seeded generator */
    NNM_INIT_NORMAL = 4    /* N(mean a, std b) */
};

/* Distributions for host->op_rand() (ABI 1.3). */
enum nnm_rand {
    NNM_RAND_UNIFORM = 0,   /* U[a, b) */
    NNM_RAND_NORMAL = 1,    /* N(mean a, std b) */
    NNM_RAND_BERNOULLI = 2  /* b with probability a, else 0 (dropout: a = 1 - p, b = 1 / (1 - p)) */
};

/* Most spatial dims a convolution or pooling takes (ABI 1.3). */
#define NNM_MAX_SPATIAL 3

/* A convolution for host->op_conv() (ABI 1.3), as F.conv{1,2,3}d and, with
 * `transposed`, F.conv_transpose{1,2,3}d. x is [N, C_in, *spatial]; w is
 * [C_out, C_in / groups, *kernel], or [C_in, C_out / groups, *kernel] when
 * transposed (PyTorch's layouts). Entries past n_spatial are ignored. */
typedef struct nnm_conv_params {
    uint32_t struct_size;
    int32_t n_spatial;                       /* 1..NNM_MAX_SPATIAL */
    int32_t groups;                          /* >= 1, divides C_in and C_out */
    int32_t transposed;                      /* nonzero: the transposed convolution */
    int64_t stride[NNM_MAX_SPATIAL];         /* >= 1 */
    int64_t padding[NNM_MAX_SPATIAL];        /* zeros before each spatial dim */
    int64_t padding_end[NNM_MAX_SPATIAL];    /* zeros after it (differs from padding only for an uneven "same") */
    int64_t dilation[NNM_MAX_SPATIAL];       /* >= 1 */
    int64_t output_padding[NNM_MAX_SPATIAL]; /* transposed only: size added at the end */
} nnm_conv_params;

/* Pooling kinds (ABI 1.3). */
enum nnm_pool_op {
    NNM_POOL_MAX = 0,          /* F.max_pool*d; the gradient goes to the first maximum */
    NNM_POOL_AVG = 1,          /* F.avg_pool*d */
    NNM_POOL_ADAPTIVE_AVG = 2  /* F.adaptive_avg_pool*d: windows from output_size only */
};

/* A pooling for host->op_pool() (ABI 1.3); x is [N, C, *spatial] (or
 * [C, *spatial]: any leading dims). Entries past n_spatial are ignored. */
typedef struct nnm_pool_params {
    uint32_t struct_size;
    int32_t op;                              /* enum nnm_pool_op */
    int32_t n_spatial;                       /* 1..NNM_MAX_SPATIAL */
    int32_t ceil_mode;                       /* output size rounds up, as PyTorch */
    int32_t count_include_pad;               /* avg: padded zeros count in the divisor */
    int32_t reserved;
    int64_t divisor_override;                /* avg: > 0 replaces the divisor; 0: none */
    int64_t kernel[NNM_MAX_SPATIAL];
    int64_t stride[NNM_MAX_SPATIAL];         /* >= 1 */
    int64_t padding[NNM_MAX_SPATIAL];        /* <= kernel / 2, as PyTorch */
    int64_t dilation[NNM_MAX_SPATIAL];       /* max only; avg takes 1 */
    int64_t output_size[NNM_MAX_SPATIAL];    /* adaptive only */
} nnm_pool_params;

/* A batch normalisation for host->op_batch_norm() (ABI 1.4), as
 * F.batch_norm(x, running_mean, running_var, weight, bias, training,
 * momentum, eps). */
typedef struct nnm_batch_norm_params {
    uint32_t struct_size;
    int32_t training;   /* nonzero: normalise with the batch's statistics (and update the running ones) */
    double momentum;    /* running = (1 - momentum) * running + momentum * batch (unbiased variance) */
    double eps;         /* added to the variance */
} nnm_batch_norm_params;

/* Recurrent cells (ABI 1.5), for host->op_rnn and the backend's rnn_cell
 * slots. G, the number of gate blocks of `hidden` units, is 1 for TANH and
 * RELU, 4 for LSTM (PyTorch's order i, f, g, o) and 3 for GRU (r, z, n). */
enum nnm_rnn_mode {
    NNM_RNN_TANH = 0,  /* h = tanh(gx + gh + b_hh) */
    NNM_RNN_RELU = 1,  /* h = relu(gx + gh + b_hh) */
    NNM_RNN_LSTM = 2,  /* c = f * c_prev + i * g, h = o * tanh(c) */
    NNM_RNN_GRU = 3    /* n = tanh(gx_n + r * (gh_n + b_hn)), h = (1 - z) * n + z * h_prev */
};

/* One recurrent layer in one direction for host->op_rnn() (ABI 1.5). */
typedef struct nnm_rnn_params {
    uint32_t struct_size;
    int32_t mode;       /* enum nnm_rnn_mode */
    int32_t reverse;    /* nonzero: run from the last time step to the first */
    int32_t reserved;
} nnm_rnn_params;

/* A connectionist temporal classification loss for host->op_ctc_loss()
 * (ABI 1.5), as F.ctc_loss. */
typedef struct nnm_ctc_params {
    uint32_t struct_size;
    int32_t zero_infinity;  /* nonzero: an impossible alignment (inf) counts 0, gradient 0 */
    int64_t blank;          /* the blank class, in [0, C) */
} nnm_ctc_params;

/* A bag reduction for host->op_embedding_bag() (ABI 1.5), as
 * F.embedding_bag(input, weight, offsets, mode=..., per_sample_weights,
 * include_last_offset, padding_idx). */
typedef struct nnm_embedding_bag_params {
    uint32_t struct_size;
    int32_t mode;                /* enum nnm_reduce_op: NNM_REDUCE_SUM, _MEAN or _MAX */
    int32_t include_last_offset; /* nonzero: offsets has B + 1 entries, the last the input's length */
    int32_t has_padding_idx;     /* nonzero: entries equal to padding_idx count nothing */
    int64_t padding_idx;         /* in [0, num_embeddings) when has_padding_idx */
} nnm_embedding_bag_params;

/* Multi-head scaled dot-product attention over packed heads for
 * host->op_attention() (ABI 1.5): q [L, N, Cq], k [S, N, Ck], v [S, N, Cv]
 * when seq_first, else [N, L, Cq], [N, S, Ck], [N, S, Cv]. Head h of q is
 * the columns q_offset + h * D .. + D of q's last dim (D = qk_dim /
 * num_heads), of k likewise from k_offset, of v from v_offset with Dv =
 * v_dim / num_heads: one packed in-projection [L, N, 3E] serves as q, k and
 * v with offsets 0, E and 2E. */
typedef struct nnm_attention_params {
    uint32_t struct_size;
    int32_t num_heads;        /* H >= 1, divides qk_dim and v_dim */
    int32_t seq_first;        /* nonzero: [T, N, C] layouts, else [N, T, C] */
    int32_t is_causal;        /* nonzero: key j > query i is masked (triu(ones(L, S), 1)) */
    int64_t q_offset, k_offset, v_offset;
    int64_t qk_dim, v_dim;    /* H * D and H * Dv */
    double scale;             /* scores = scale * q_h k_h^T; 0: 1 / sqrt(D) */
} nnm_attention_params;

/* A layer normalisation for host->op_layer_norm() (ABI 1.5), as
 * F.layer_norm(x, normalized_shape, weight, bias, eps) with normalized_shape
 * the last normalized_ndim dims of x. */
typedef struct nnm_layer_norm_params {
    uint32_t struct_size;
    int32_t normalized_ndim; /* >= 1 and <= x's dims: the statistics run over the last normalized_ndim dims */
    double eps;              /* added to the (biased) variance; >= 0 */
} nnm_layer_norm_params;

/* Flags for host->input_spec(). */
#define NNM_SPEC_LEADING_ANY 1u /* any number (>= 0) of leading dims before dims[] */

/* ------------------------------------------------------------------------ */
/* The host table                                                            */
/* ------------------------------------------------------------------------ */

/* Which slots exist in which ABI minor is marked below; a plugin built against a
 * newer minor checks NNM_HOST_HAS(host, slot) before using a newer slot. */
struct nnm_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* --- errors --------------------------------------------------------- */
    /* Sets the error message of this invocation (printf-style) and returns
     * `code`, so a plugin can write `return h->set_error(env, NNM_E_SHAPE, ...)`. */
    nnm_status (*set_error)(nnm_env *env, nnm_status code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;

    /* --- config (valid in create only) ---------------------------------- */
    /* Typed getters. `dflt` NULL means the key is required: a missing key gives
     * NNM_E_NOT_FOUND and a value of another type NNM_E_TYPE, each with a
     * message naming the module and the key. */
    nnm_status (*config_int)(nnm_env *env, const char *key, const int64_t *dflt, int64_t *out);
    nnm_status (*config_float)(nnm_env *env, const char *key, const double *dflt, double *out);
    nnm_status (*config_bool)(nnm_env *env, const char *key, const int *dflt, int *out);
    /* *out is borrowed and valid until create returns (copy it to keep it). */
    nnm_status (*config_str)(nnm_env *env, const char *key, const char *dflt, const char **out);
    /* Copies up to `cap` ints of a list into buf and their count into *n; a list
     * longer than cap gives NNM_E_LIMIT. */
    nnm_status (*config_ints)(nnm_env *env, const char *key, int64_t *buf, size_t cap, size_t *n);

    /* --- state (valid in create only) ----------------------------------- */
    /* Declares a parameter named `name` (no dots) of dtype f32 on the module's
     * device, initialised as `init` says. *out is BORROWED: the module owns the
     * tensor for its whole life and keeps the same handle when it moves
     * between devices, so the plugin may keep it in its state. */
    nnm_status (*param_new)(nnm_env *env, const char *name, int32_t ndim, const int64_t *shape,
                            int32_t init, double a, double b, nnm_tensor **out);
    /* Declares a buffer (like register_buffer). persistent=0 keeps it out of the
     * state dict. *out is borrowed, as for param_new. */
    nnm_status (*buffer_new)(nnm_env *env, const char *name, int32_t ndim, const int64_t *shape,
                             int32_t init, double a, int persistent, nnm_tensor **out);
    /* Declares what input `index` must look like; the call path checks it before
     * forward and names the module path in its error. dims[i] < 0 matches any
     * size. flags: NNM_SPEC_LEADING_ANY. */
    nnm_status (*input_spec)(nnm_env *env, uint32_t index, int32_t ndim, const int64_t *dims,
                             uint32_t flags);

    /* --- call context (valid in forward) -------------------------------- */
    int (*is_training)(nnm_env *env);
    int (*grad_enabled)(nnm_env *env);
    nnm_device (*device)(nnm_env *env);

    /* --- children (containers) ------------------------------------------ */
    uint32_t (*child_count)(nnm_env *env);
    /* Calls child `index` through the central call path (its hooks fire). The
     * inputs are borrowed; each out[i] receives a new reference. */
    nnm_status (*child_call)(nnm_env *env, uint32_t index, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out);

    /* --- tensors -------------------------------------------------------- */
    /* The descriptor lives as long as the tensor. */
    const nnm_tensor_desc *(*tensor_desc)(const nnm_tensor *t);
    void (*tensor_retain)(nnm_tensor *t);
    void (*tensor_release)(nnm_tensor *t); /* NULL is a no-op */
    /* A new contiguous tensor on the invocation's device, contents undefined. */
    nnm_status (*tensor_new)(nnm_env *env, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                             nnm_tensor **out);

    /* --- ops (each *out is a new reference) ----------------------------- */
    /* y = x @ w^T + b over the last dim of x; b may be NULL. */
    nnm_status (*op_linear)(nnm_env *env, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                            nnm_tensor **out);
    /* 2-D matrix product a @ b. */
    nnm_status (*op_matmul)(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
    /* Elementwise with NumPy broadcasting. */
    nnm_status (*op_binary)(nnm_env *env, int32_t op, nnm_tensor *a, nnm_tensor *b,
                            nnm_tensor **out);
    /* Elementwise; alpha is used by NNM_UNARY_SCALE. */
    nnm_status (*op_unary)(nnm_env *env, int32_t op, nnm_tensor *x, double alpha,
                           nnm_tensor **out);
    /* ---- slots above are valid for ABI 1.0 ---- */

    /* Reduces x over dims[0..n_dims) (negative dims count from the end;
     * n_dims 0 means all dims). keepdim keeps reduced dims as size 1. */
    nnm_status (*op_reduce)(nnm_env *env, int32_t op, nnm_tensor *x, const int32_t *dims,
                            uint32_t n_dims, int keepdim, nnm_tensor **out);
    /* log_softmax over the last dim. */
    nnm_status (*op_log_softmax)(nnm_env *env, nnm_tensor *x, nnm_tensor **out);
    /* Negative log likelihood of class-index targets, as F.nll_loss: logp is
     * [N, C] f32, target [N] i64. Samples whose target == ignore_index count
     * nothing. label_smoothing e mixes in e * mean_c(-logp[i, c]). reduction:
     * enum nnm_reduction (mean divides by the number of samples not ignored). */
    nnm_status (*op_nll)(nnm_env *env, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                         double label_smoothing, int32_t reduction, nnm_tensor **out);
    /* The same elements in another shape (a view when x is contiguous); one
     * dim may be -1. */
    nnm_status (*op_reshape)(nnm_env *env, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                             nnm_tensor **out);
    /* Custom backward (layers with a `backward` slot). In forward: keeps
     * tensors for backward (references are taken; a no-op when no graph is
     * being recorded, e.g. under no_grad). In backward: the kept tensors,
     * borrowed, valid during the call. */
    nnm_status (*save_for_backward)(nnm_env *env, nnm_tensor *const *t, uint32_t n);
    nnm_status (*saved_tensors)(nnm_env *env, nnm_tensor *const **t, uint32_t *n);
    /* In backward: adds grad into param's .grad (param is one of the module's
     * parameters). */
    nnm_status (*accumulate_grad)(nnm_env *env, nnm_tensor *param, nnm_tensor *grad);
    /* ---- slots above are valid for ABI 1.1 ---- */

    /* (1.2, create only) Lists, like config_ints: copy up to `cap` entries into
     * buf and the count into *n; a longer list gives NNM_E_LIMIT. An integer
     * list is a fine float list. The strings are borrowed, valid until create
     * returns. */
    nnm_status (*config_floats)(nnm_env *env, const char *key, double *buf, size_t cap, size_t *n);
    nnm_status (*config_strs)(nnm_env *env, const char *key, const char **buf, size_t cap,
                              size_t *n);
    /* (1.2) Describes child `index`: its name (borrowed, valid while the child
     * lives) and its layer's arity (n_inputs/n_outputs of its vtable, or
     * NNM_ARITY_ANY). Any pointer may be NULL to skip that answer. Valid in
     * forward, backward and finalize. */
    nnm_status (*child_info)(nnm_env *env, uint32_t index, const char **name, int32_t *n_inputs,
                             int32_t *n_outputs);
    /* (1.2) child_info and child_call for a descendant named by a dotted path
     * relative to this module ("blocks.0", "heads.cls"; a name without dots
     * is a child), so a container can call into module_list/module_dict
     * children as a PyTorch forward calls self.heads["cls"](x). The call goes
     * through the central call path, as child_call. NNM_E_NOT_FOUND when no
     * such descendant exists. */
    nnm_status (*descendant_info)(nnm_env *env, const char *path, int32_t *n_inputs,
                                  int32_t *n_outputs);
    nnm_status (*descendant_call)(nnm_env *env, const char *path, nnm_tensor *const *in,
                                  uint32_t n_in, nnm_tensor **out, uint32_t n_out);
    /* ---- slots above are valid for ABI 1.2 ---- */

    /* (1.3) set_error without varargs, for plugins in languages that cannot call
     * a C variadic function: copies msg (NULL: no message) and returns code. */
    nnm_status (*set_error_msg)(nnm_env *env, nnm_status code, const char *msg);
    /* (1.3, create only) The enum nnm_config_type of config value `key` in
     * *type; NNM_E_NOT_FOUND, with no message set, when the key is absent. */
    nnm_status (*config_type)(nnm_env *env, const char *key, int32_t *type);
    /* (1.3, create only) PyTorch's "int or tuple" (kernel_size, stride, ...):
     * an integer fills all n entries of out, a list must have exactly n
     * (else NNM_E_SHAPE); a missing key gives *dflt in every entry, or
     * NNM_E_NOT_FOUND when dflt is NULL. */
    nnm_status (*config_int_or_ints)(nnm_env *env, const char *key, const int64_t *dflt,
                                     int64_t *out, size_t n);
    /* (1.3) Copies the n elements of f32 tensor t (any device, any strides) to
     * host memory dst in row-major order; n must be t's numel. A 1.5 host
     * also converts an i64 tensor (exact below 2^24). */
    nnm_status (*tensor_read_f32)(nnm_env *env, nnm_tensor *t, float *dst, size_t n);
    /* (1.3) A new contiguous f32 tensor on the invocation's device, each
     * element `value`; no gradient. */
    nnm_status (*op_full)(nnm_env *env, int32_t ndim, const int64_t *shape, double value,
                          nnm_tensor **out);
    /* (1.3) A new contiguous f32 tensor on the invocation's device drawn from
     * the call context's seeded generator (enum nnm_rand), so a context
     * seeded alike reproduces it; no gradient. */
    nnm_status (*op_rand)(nnm_env *env, int32_t dist, double a, double b, int32_t ndim,
                          const int64_t *shape, nnm_tensor **out);
    /* (1.3) torch.matmul for a, b of >= 2 dims: [..., m, k] @ [..., k, n] ->
     * [..., m, n], the batch dims broadcast (NumPy rules). */
    nnm_status (*op_bmm)(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
    /* (1.3) x.permute(perm) as a new contiguous tensor (perm: ndim entries, a
     * permutation of 0..ndim-1; negative entries count from the end). */
    nnm_status (*op_permute)(nnm_env *env, nnm_tensor *x, const int32_t *perm, int32_t ndim,
                             nnm_tensor **out);
    /* (1.3) torch.cat of n >= 1 tensors along dim (negative counts from the end);
     * the other dims must agree. The inputs are borrowed. */
    nnm_status (*op_concat)(nnm_env *env, nnm_tensor *const *xs, uint32_t n, int32_t dim,
                            nnm_tensor **out);
    /* (1.3) x.narrow(dim, start, length) as a new contiguous tensor (split and
     * head splitting are slices). */
    nnm_status (*op_slice)(nnm_env *env, nnm_tensor *x, int32_t dim, int64_t start,
                           int64_t length, nnm_tensor **out);
    /* (1.3) softmax (log 0) or log_softmax (log 1) over dim (negative counts
     * from the end). */
    nnm_status (*op_softmax)(nnm_env *env, nnm_tensor *x, int32_t dim, int log, nnm_tensor **out);
    /* (1.3) torch.where(cond != 0, a, b), all three f32 and broadcast together;
     * the gradient flows to a where cond != 0 and to b elsewhere, none to cond.
     * masked_fill(x, mask, v) is where(mask, op_full([1], v), x). */
    nnm_status (*op_where)(nnm_env *env, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b,
                           nnm_tensor **out);
    /* (1.3) Convolution (see nnm_conv_params); b [C_out] may be NULL. */
    nnm_status (*op_conv)(nnm_env *env, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                          const nnm_conv_params *p, nnm_tensor **out);
    /* (1.3) Pooling over the last p->n_spatial dims (see nnm_pool_params). */
    nnm_status (*op_pool)(nnm_env *env, nnm_tensor *x, const nnm_pool_params *p,
                          nnm_tensor **out);
    /* (1.3) In place, never recorded: dst = alpha * dst + beta * src (src
     * broadcast to dst's shape; NULL src: dst = alpha * dst). For running
     * statistics: dst is a buffer of this module, and a tensor that requires
     * grad is refused with NNM_E_STATE. A 1.5 host also takes an i64 dst (a
     * counter such as num_batches_tracked): src f32 or i64 of one element
     * or dst's count, the result truncated toward zero, exact for alpha 1
     * and an integral beta * src however large the count. */
    nnm_status (*op_update)(nnm_env *env, nnm_tensor *dst, nnm_tensor *src, double alpha,
                            double beta);
    /* ---- slots above are valid for ABI 1.3 ---- */

    /* (1.4) Batch normalisation of x [N, C, *] per channel, one fused op
     * (see nnm_batch_norm_params). running_mean and running_var ([C], f32,
     * buffers of this module, or both NULL) are read in eval mode and, in
     * training mode, updated in place without being recorded; eval mode
     * without them is refused. weight and bias ([C]) may be NULL (no affine).
     * The result is recorded for autograd (x, weight, bias). Returns
     * NNM_E_UNSUPPORTED, naming the backend, where the device's backend lacks
     * the batch_norm slots: a plugin then composes it from the ops above. */
    nnm_status (*op_batch_norm)(nnm_env *env, nnm_tensor *x, nnm_tensor *running_mean,
                                nnm_tensor *running_var, nnm_tensor *weight, nnm_tensor *bias,
                                const nnm_batch_norm_params *p, nnm_tensor **out);
    /* ---- slots above are valid for ABI 1.4 ---- */

    /* (1.5) A new contiguous tensor on the invocation's device holding a copy
     * of the numel(shape) elements of `dtype` at `data` (host memory,
     * row-major; NULL only for 0 elements). No gradient. For constants a
     * plugin computes on the host (interpolation weights, gather indices):
     * on the meta device the data is dropped. */
    nnm_status (*tensor_from_host)(nnm_env *env, int32_t ndim, const int64_t *shape,
                                   nnm_dtype dtype, const void *data, nnm_tensor **out);
    /* (1.5) torch.index_select(x, dim, index): index is an i64 tensor of 0 or
     * 1 dims on x's device, each entry in [0, x.shape[dim]) (else
     * NNM_E_INVALID naming it); the result has x's shape with dim of size
     * numel(index) (negative dim counts from the end). x of any dtype where
     * the backend has the index_select slot; without it, f32 through the
     * backend's gemm (a one-hot matrix product: an inf or NaN in x then
     * spreads to the whole slice along dim), other dtypes NNM_E_UNSUPPORTED
     * naming op and backend. Recorded for autograd (f32 x): the gradient is
     * index_add (repeated indices sum). */
    nnm_status (*op_index_select)(nnm_env *env, nnm_tensor *x, int32_t dim, nnm_tensor *index,
                                  nnm_tensor **out);
    /* -- (1.5) module state: typed buffers and output names (graph) -- */
    /* (1.5, create only) buffer_new with a dtype and both init arguments:
     * dtype NNM_F32 takes every enum nnm_init (a, b as for param_new); an i64
     * buffer ({NNM_DTYPE_INT, 64, 1}, PyTorch's torch.long, such as a
     * relative position index) takes NNM_INIT_ZEROS, NNM_INIT_ONES or
     * NNM_INIT_CONSTANT (a, rounded toward zero); other dtypes and inits give
     * NNM_E_DTYPE / NNM_E_INVALID. *out is borrowed, as for param_new. */
    nnm_status (*buffer_new_v2)(nnm_env *env, const char *name, int32_t ndim, const int64_t *shape,
                                nnm_dtype dtype, int32_t init, double a, double b, int persistent,
                                nnm_tensor **out);
    /* (1.5, create only) Names the module's outputs, one name per output, as
     * a PyTorch model that returns a dict ({"out": ..., "aux": ...}): n <=
     * NNM_MAX_IO names, each non-empty UTF-8 without control characters and
     * unique (else NNM_E_INVALID naming it); copied, so they may be freed
     * after the call. A second call replaces the first; n 0 removes them.
     * Applications read them with nnm_module_output_names. */
    nnm_status (*set_output_names)(nnm_env *env, const char *const *names, uint32_t n);
    /* (1.5) One recurrent layer in one direction over a whole sequence (see
     * nnm_rnn_params), as one op and ONE autograd node whose backward is
     * back-propagation through time: per step, one gemm h_prev @ w_hh^T
     * and the backend's fused rnn_cell gate math (and, for an LSTM with a
     * projection, one gemm with w_hr). gx [T, B, G*H] is the input
     * projection of every step, computed beforehand in one op_linear
     * (x @ W_ih^T + b_ih); w_hh [G*H, P]; b_hh [G*H] or NULL; w_hr [P, H]
     * (LSTM with proj_size P) or NULL (then P = H); h0 [B, P] and c0 [B, H]
     * (LSTM) or NULL for zeros. T >= 1. *y receives [T, B, P], the h of
     * every step in time order (h_n is its last step, or its first when
     * reverse); *c_n receives c of the last step run [B, H] (LSTM; NULL
     * otherwise). All f32 on one device. Recorded for autograd (gx, w_hh,
     * b_hh, w_hr, h0, c0). NNM_E_UNSUPPORTED naming the op and the backend
     * where the device's backend lacks the rnn_cell slots. */
    nnm_status (*op_rnn)(nnm_env *env, const nnm_rnn_params *p, nnm_tensor *gx, nnm_tensor *w_hh,
                         nnm_tensor *b_hh, nnm_tensor *w_hr, nnm_tensor *h0, nnm_tensor *c0,
                         nnm_tensor **y, nnm_tensor **c_n);

    /* -- (1.5) children a layer makes itself (composite layers) -- */
    /* (1.5, create only) Makes a module of layer `layer_type` and attaches it
     * to this module under `name`, as a PyTorch __init__ does
     * `self.linear1 = Linear(...)`. `name` is a child name ([A-Za-z0-9_]), or
     * a dotted path whose leading part names a module this create already
     * made ("self_attn.out_proj", "layers.0": a container child filled in).
     * `version_range` is a manifest's range ("^1.1"; NULL or "" = any loaded
     * version, the highest wins). `config_json` is the child's config as a
     * JSON object text, the map a manifest's "config" holds (integers,
     * floats, bools, strings, lists of numbers or of strings; at most 64 KiB;
     * NULL or "" = {}), copied: the caller keeps its buffer. The child is
     * created on this module's device, its schema checked and its create
     * run (which may make children of its own); once this create returns
     * NNM_OK the runtime finalizes every module it made, children first. On
     * failure nothing is attached and the message names the child.
     * Made children are real children: state dict names ("self_attn.
     * in_proj_weight"), hooks, train/eval, device moves and printing as any
     * other; call them with descendant_call (by name) or child_call. They
     * are implied by this module's config: nnm_manifest_from_module writes
     * none of them, and a manifest that lists children for a module that
     * makes its own is refused. If this create fails, they go with it. */
    nnm_status (*child_new)(nnm_env *env, const char *name, const char *layer_type,
                            const char *version_range, const char *config_json);
    /* -- (1.5) dtypes, detach, arg reductions -- */
    /* (1.5) x.to(dtype) (torch's .float(), .long(), .int(), .bool(), .byte()):
     * a new contiguous tensor of x's shape on x's device. dtype and x's dtype
     * are each one of f32, i64, i32, u8 and bool ({NNM_DTYPE_BOOL, 8, 1});
     * others give NNM_E_DTYPE naming both. Floats become integers rounded
     * toward zero (NaN and values out of range: the type's minimum, as torch
     * on x86; u8 wraps as torch does); anything becomes bool as x != 0 (NaN:
     * true); bool becomes 0 or 1. A cast to x's own dtype returns a new
     * reference to x itself (as torch's .to returns self), so f32 -> f32
     * keeps the gradient; every other cast has none (its result is not
     * f32, or its input is not). NNM_E_UNSUPPORTED naming op and backend
     * where the device's backend lacks the cast slot. */
    nnm_status (*op_cast)(nnm_env *env, nnm_tensor *x, nnm_dtype dtype, nnm_tensor **out);
    /* (1.5) x.detach(): a tensor sharing x's storage and shape, outside any
     * autograd graph (no gradient flows through it to x), as torch's detach
     * and a torch.no_grad() block's results. Any dtype, any device. */
    nnm_status (*op_detach)(nnm_env *env, nnm_tensor *x, nnm_tensor **out);
    /* (1.5) torch.argmax (op NNM_REDUCE_MAX) or torch.argmin (NNM_REDUCE_MIN)
     * of f32 x over dim (negative counts from the end), as a new i64 tensor:
     * x's shape without dim (keepdim: dim of size 1). The first extreme
     * wins; NaN counts as the extreme (the first NaN), as torch. A dim of
     * size 0 is NNM_E_SHAPE. No gradient. (torch.argmax(x) over all dims is
     * this op on x reshaped to [-1].) NNM_E_UNSUPPORTED naming op and
     * backend where the device's backend lacks the arg_reduce slot. */
    nnm_status (*op_arg_reduce)(nnm_env *env, int32_t op, nnm_tensor *x, int32_t dim, int keepdim,
                                nnm_tensor **out);
    /* (1.5) F.ctc_loss(reduction="none") (see nnm_ctc_params): log_probs
     * [T, N, C] f32 (log-probabilities, e.g. log_softmax's), targets i64
     * [N, S] (padded; sample n's first target_lengths[n] entries) or [sum of
     * target_lengths] (concatenated), input_lengths and target_lengths i64
     * [N], each input length in [0, T], each target in [0, C) (else
     * NNM_E_INVALID naming the entry). *out [N]: each sample's negative log
     * likelihood over its first input_lengths[n] steps (inf where no
     * alignment exists, 0 with zero_infinity; an input length of 0 gives 0
     * for an empty target). Recorded for autograd (log_probs) as ONE node:
     * the gradient is the derivative with respect to log_probs, 0 past each
     * sample's input length. Runs the backend's ctc_loss slots, else
     * NNM_E_UNSUPPORTED naming op and backend before anything is computed
     * (a layer then composes the recursion from the ops above). */
    nnm_status (*op_ctc_loss)(nnm_env *env, nnm_tensor *log_probs, nnm_tensor *targets,
                              nnm_tensor *input_lengths, nnm_tensor *target_lengths,
                              const nnm_ctc_params *p, nnm_tensor **out);
    /* (1.5) F.embedding_bag (see nnm_embedding_bag_params): weight [V, D]
     * f32; indices i64 [n] with offsets i64 [B] (B + 1 with
     * include_last_offset, whose last entry must then be n), or indices
     * [B, N] with offsets NULL (B bags of N); per_sample_weights f32 of the
     * indices' shape or NULL (mode sum only). Bag b holds the entries from
     * offsets[b] up to the next offset (the last bag: to n); offsets[0] must
     * be 0 and the offsets non-decreasing and at most n, each index in
     * [0, V) (else NNM_E_INVALID naming the entry; checked on the host).
     * *out [B, D]: per bag the sum (of rows times their per-sample weight),
     * the mean or the per-column maximum (the first maximum wins) of the
     * weight rows its indices pick, entries equal to padding_idx left out;
     * an empty bag is 0 (mean: divided by its count of entries that are
     * not padding). Recorded for autograd (weight, per_sample_weights) as
     * ONE node: the weight's gradient is dense (a scatter-add of the
     * output's gradient rows, divided by the count for mean, routed to each
     * maximum's row for max), per_sample_weights' is the dot product of the
     * output gradient with the row (0 for padding). Runs the backend's
     * embedding_bag slots, else NNM_E_UNSUPPORTED naming op and backend
     * before anything is computed (a layer then composes the bags from the
     * ops above, as the embedding_bag layer does). */
    nnm_status (*op_embedding_bag)(nnm_env *env, nnm_tensor *weight, nnm_tensor *indices,
                                   nnm_tensor *offsets, nnm_tensor *per_sample_weights,
                                   const nnm_embedding_bag_params *p, nnm_tensor **out);
    /* (1.5) Multi-head attention's core over packed heads (see
     * nnm_attention_params), for inference: per batch entry n and head h,
     * softmax(scale * q_h k_h^T + mask + causal) v_h, written as head h's
     * columns of *out [L, N, v_dim] (seq_first) or [N, L, v_dim], so the
     * heads are never split into or merged from copies: the backend's gemm
     * reads and writes them in place through its leading dimensions, and
     * the backend's softmax runs over the scores. q, k, v f32 of 3 dims
     * (they may be one tensor); mask NULL or f32 added to the scores,
     * broadcast to [N, H, L, S] (-inf masks; a row masked everywhere gives
     * NaN, as torch). No gradient and no dropout: with grad mode on and an
     * input that requires grad, NNM_E_UNSUPPORTED before anything is
     * computed (a layer then composes attention from op_bmm and op_softmax,
     * as multihead_attention does in training); also NNM_E_UNSUPPORTED
     * naming the backend where it lacks the softmax slot. */
    nnm_status (*op_attention)(nnm_env *env, nnm_tensor *q, nnm_tensor *k, nnm_tensor *v,
                               nnm_tensor *mask, const nnm_attention_params *p, nnm_tensor **out);
    /* (1.5) A parameter or buffer of a descendant, by its state-dict name
     * relative to this module ("block.conv.weight": the tensor `weight` of
     * descendant "block.conv"), as a PyTorch forward reads
     * self.block.conv.weight: *out is BORROWED (the owner keeps it; a tie
     * or a replaced child may change which tensor the name gives, so look it
     * up again at each forward rather than keeping it). Used in an op, it is
     * recorded for autograd as the parameter it is: the gradient reaches
     * its owner. NNM_E_NOT_FOUND when the path names no such tensor (a name
     * without a dot, this module's own tensors, included). Valid in forward,
     * backward and finalize. */
    nnm_status (*descendant_tensor)(nnm_env *env, const char *path, nnm_tensor **out);
    /* (1.5) F.layer_norm(x + residual, normalized_shape, weight, bias, eps)
     * (see nnm_layer_norm_params) as ONE op and ONE autograd node: x f32;
     * residual NULL (then plain F.layer_norm(x)) or f32 of x's shape, added
     * before the statistics (a post-norm block's norm(x + f(x)) without the
     * sum as a separate pass); weight and bias NULL or f32 of the shape of
     * x's last normalized_ndim dims. *out has x's shape: per row (the
     * normalized dims flattened) (v - mean) / sqrt(var + eps) * weight +
     * bias with v = x + residual and var biased, as torch. Recorded for
     * autograd (x, residual, weight, bias); x and residual receive the same
     * gradient. Runs the backend's layer_norm slots, else NNM_E_UNSUPPORTED
     * naming op and backend before anything is computed (a layer then
     * composes it from op_reduce, op_binary and op_unary, as the layer_norm
     * layer does). */
    nnm_status (*op_layer_norm)(nnm_env *env, nnm_tensor *x, nnm_tensor *residual, nnm_tensor *weight,
                                nnm_tensor *bias, const nnm_layer_norm_params *p, nnm_tensor **out);
    /* ---- slots above are valid for ABI 1.5 ---- */
};

/* True when `host` has slot `field` (it was built with a minor that has it). */
#define NNM_HOST_HAS(host, field)                                                        \
    ((host)->struct_size >= offsetof(nnm_host, field) + sizeof((host)->field) &&        \
     (host)->field != NULL)

/* ------------------------------------------------------------------------ */
/* Layers                                                                    */
/* ------------------------------------------------------------------------ */

/* Config value types, for a layer's declared config schema (ABI 1.2). */
enum nnm_config_type {
    NNM_CONFIG_INT = 0,
    NNM_CONFIG_FLOAT = 1,   /* an integer is accepted too */
    NNM_CONFIG_BOOL = 2,
    NNM_CONFIG_STR = 3,
    NNM_CONFIG_INTS = 4,    /* list of integers */
    NNM_CONFIG_FLOATS = 5,  /* list of floats (integers accepted) */
    NNM_CONFIG_STRS = 6,    /* list of strings */
    /* ---- types above are valid for ABI 1.2 ---- */
    NNM_CONFIG_INT_OR_INTS = 7, /* (1.3) an integer or a list of integers ("int or tuple") */
    NNM_CONFIG_ANY = 8          /* (1.3) any type: create checks it (padding=1 | [1, 2] | "same") */
};

/* Config field flags. */
#define NNM_CONFIG_REQUIRED 1u

/* One key a layer's create reads. With a schema, the runtime checks a config
 * before create: unknown keys, missing required keys and wrong types are
 * refused with a message naming the key (and, from a manifest, its path in
 * the document). */
typedef struct nnm_config_field {
    const char *key;
    int32_t type;               /* enum nnm_config_type */
    uint32_t flags;             /* NNM_CONFIG_* */
    const char *doc;            /* (optional) one line, shown by tools */
} nnm_config_field;

/* Layer flags. */
#define NNM_LAYER_CONTAINER 1u /* has children it calls through child_call */
/* (1.5) makes its children itself in create (host->child_new): a manifest
 * lists none for it (the schema pass refuses them, naming the layer) */
#define NNM_LAYER_OWNS_CHILDREN 2u

/* Arity value meaning "any number". */
#define NNM_ARITY_ANY (-1)

typedef struct nnm_layer_vtable {
    uint32_t struct_size;
    uint32_t flags;             /* NNM_LAYER_* */
    const char *name;           /* type name, e.g. "linear"; [a-z0-9_] */
    uint32_t version_major;     /* the layer's maths version, separate from the ABI */
    uint32_t version_minor;
    uint32_t version_patch;
    int32_t n_inputs;           /* or NNM_ARITY_ANY */
    int32_t n_outputs;          /* or NNM_ARITY_ANY (then the caller's count) */

    /* Parses the config once, declares parameters, buffers and input specs
     * through the host, and returns the layer's private state in *self (may be
     * NULL for stateless layers). On failure the runtime calls nothing else. */
    nnm_status (*create)(nnm_env *env, void **self);
    /* (optional) Frees what create allocated. Called once, when the module dies. */
    void (*destroy)(void *self);
    /* Computes outputs from inputs. Inputs are borrowed; the plugin stores one
     * new reference in each out[i] (an input passed through needs
     * host->tensor_retain: the runtime refuses one without). A failure without
     * set_error is reported as "forward failed with NNM_E_... and no message".
     * Only ever called by the runtime's call path. */
    nnm_status (*forward)(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                          nnm_tensor **out, uint32_t n_out);
    /* (optional) Writes the text shown between the parentheses when the module
     * is printed, like PyTorch's extra_repr ("in_features=4, ..."). Returns the
     * length it wanted to write, like snprintf. */
    int (*extra_repr)(void *self, char *buf, size_t cap);
    /* ---- slots above are valid for ABI 1.0 ---- */

    /* (optional, ABI 1.1) A backward of the layer's own, like
     * torch.autograd.Function: forward then runs with grad recording off and
     * the runtime records the call as one node. backward receives the
     * gradients of the outputs (grad_out[i] NULL: that output got none) and
     * stores a new reference in grad_in[i] for each input that needs one
     * (NULL: no gradient). Saved tensors: host->saved_tensors; parameter
     * gradients: host->accumulate_grad. As PyTorch's engine, the runtime
     * checks grad_in[i] against input i: f32 on the input's device, of the
     * input's shape or one it broadcasts to (then summed down to it); else
     * the backward fails, naming the module. */
    nnm_status (*backward)(nnm_env *env, void *self, nnm_tensor *const *grad_out, uint32_t n_out,
                           nnm_tensor **grad_in, uint32_t n_in);
    /* ---- slots above are valid for ABI 1.1 ---- */

    /* (optional, 1.2) Called once the module's children are attached (the
     * manifest assembler calls it after building the module's subtree), so a
     * container can check its children against its config and fail early
     * with a message instead of at the first forward. It may cache what it
     * finds in self. A container must still work when this was never called
     * (modules assembled through the C API). */
    nnm_status (*finalize)(nnm_env *env, void *self);
    /* (optional, 1.2) The config schema: n_config_fields entries, static. NULL
     * means create checks its config itself through the typed getters; a
     * non-NULL pointer with n_config_fields 0 declares "takes no config". */
    const nnm_config_field *config_fields;
    uint32_t n_config_fields;
    uint32_t reserved;
    /* (optional, 1.2) The class name print(model) shows, PyTorch's ("ReLU",
     * "MSELoss"); NULL: the type name in CamelCase ("batch_norm" ->
     * "BatchNorm"). */
    const char *display_name;
    /* ---- slots above are valid for ABI 1.2 ---- */
} nnm_layer_vtable;

/* ------------------------------------------------------------------------ */
/* Backends: the op table of one device type                                 */
/* ------------------------------------------------------------------------ */

/* C = alpha * op(A) @ op(B) + beta * C, all row-major f32 matrices. */
typedef struct nnm_gemm_args {
    uint32_t struct_size;
    int32_t trans_a, trans_b;   /* nonzero: use the transpose */
    int64_t m, n, k;            /* C is m x n; op(A) is m x k; op(B) is k x n */
    float alpha, beta;
    const float *a; int64_t lda;
    const float *b; int64_t ldb;
    float *c; int64_t ldc;
} nnm_gemm_args;

/* out = op(a, b) elementwise over out's shape. a and b come with strides
 * already broadcast to out's shape (0 on broadcast dims). */
typedef struct nnm_binary_args {
    uint32_t struct_size;
    int32_t op;                 /* enum nnm_binary_op */
    const nnm_tensor_desc *a;
    const nnm_tensor_desc *b;
    const nnm_tensor_desc *out; /* contiguous */
} nnm_binary_args;

/* out = op(x) elementwise; x's strides may be anything (0 for broadcast). */
typedef struct nnm_unary_args {
    uint32_t struct_size;
    int32_t op;                 /* enum nnm_unary_op */
    double alpha;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out; /* contiguous */
} nnm_unary_args;

/* out = alpha * reduce(x) over the dims where out has size 1 and x does not
 * (out has x's ndim). MEAN divides by the number of elements reduced. (1.1) */
typedef struct nnm_reduce_args {
    uint32_t struct_size;
    int32_t op;                 /* enum nnm_reduce_op */
    double alpha;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out; /* contiguous */
} nnm_reduce_args;

/* out = log_softmax(x) over the last dim; both contiguous, same shape. (1.1) */
typedef struct nnm_log_softmax_args {
    uint32_t struct_size;
    uint32_t reserved;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out;
} nnm_log_softmax_args;

/* Per-sample NLL (1.1): for each row i of logp [N, C] (contiguous) with
 * target t = target[i] (i64, [N]):
 *   out[i] = (1 - e) * -logp[i, t] + e * mean_c(-logp[i, c]),  0 if t == ignore_index
 * and, when count is not NULL, count[0] = number of rows not ignored (f32).
 * A target outside [0, C) that is not ignore_index is an error. */
typedef struct nnm_nll_args {
    uint32_t struct_size;
    uint32_t reserved;
    int64_t ignore_index;
    double label_smoothing;     /* e */
    const nnm_tensor_desc *logp;
    const nnm_tensor_desc *target;
    const nnm_tensor_desc *out;   /* [N] f32 contiguous */
    const nnm_tensor_desc *count; /* [1] f32, or NULL */
} nnm_nll_args;

/* The gradient of nnm_nll_args' out with respect to logp (1.1):
 *   grad_logp[i, c] = grad[i] * (-(1 - e) * [c == t] - e / C),  0 if t == ignore_index */
typedef struct nnm_nll_backward_args {
    uint32_t struct_size;
    uint32_t reserved;
    int64_t ignore_index;
    double label_smoothing;
    const nnm_tensor_desc *grad;      /* [N] f32 */
    const nnm_tensor_desc *target;    /* [N] i64 */
    const nnm_tensor_desc *grad_logp; /* [N, C] f32 contiguous, written in full */
} nnm_nll_backward_args;

/* One SGD step over n contiguous f32 elements, exactly torch.optim.SGD (1.1):
 *   g = grad + weight_decay * param
 *   if momentum != 0: buf = first_step ? g : momentum * buf + (1 - dampening) * g
 *                     g = nesterov ? g + momentum * buf : buf
 *   param -= lr * g */
typedef struct nnm_sgd_args {
    uint32_t struct_size;
    int32_t nesterov;
    int32_t first_step;         /* the momentum buffer starts as a copy of g */
    int32_t reserved;
    int64_t n;
    float *param;
    const float *grad;
    float *momentum_buf;        /* NULL when momentum == 0 */
    /* double, as Python holds them: 1 - dampening is computed in double and
     * rounded once, as torch does */
    double lr, momentum, dampening, weight_decay;
} nnm_sgd_args;

/* One Adam/AdamW step over n contiguous f32 elements, exactly torch.optim.Adam
 * (decoupled = 0: weight decay added to the gradient) or AdamW (decoupled = 1:
 * param *= 1 - lr * weight_decay first), with bias correction for `step`
 * (1 on the first call) and amsgrad when max_exp_avg_sq is not NULL. (1.1) */
typedef struct nnm_adam_args {
    uint32_t struct_size;
    int32_t decoupled;
    int64_t step;
    int64_t n;
    float *param;
    const float *grad;
    float *exp_avg;
    float *exp_avg_sq;
    float *max_exp_avg_sq;      /* NULL unless amsgrad */
    double lr, beta1, beta2, eps, weight_decay; /* double, as for SGD */
} nnm_adam_args;

/* ---- args of the ABI 1.3 slots ---- */

/* im2col / col2im over one image of `channels` planes (1.3). im is
 * [channels, *im_size] and col is [channels * prod(kernel), prod(col_size)],
 * both contiguous f32 in device memory. Column (c, k..., o...) holds
 * im[c, o * stride - padding + k * dilation] per spatial dim, 0 outside the
 * image. im2col writes col in full; col2im overwrites im with the sum of
 * every column entry that maps onto each element (its adjoint). */
typedef struct nnm_im2col_args {
    uint32_t struct_size;
    int32_t n_spatial;                    /* 1..NNM_MAX_SPATIAL */
    int64_t channels;
    int64_t im_size[NNM_MAX_SPATIAL];
    int64_t col_size[NNM_MAX_SPATIAL];    /* output positions per spatial dim */
    int64_t kernel[NNM_MAX_SPATIAL];
    int64_t stride[NNM_MAX_SPATIAL];
    int64_t padding[NNM_MAX_SPATIAL];
    int64_t dilation[NNM_MAX_SPATIAL];
    float *im;
    float *col;
} nnm_im2col_args;

/* Pooling (1.3). x is [outer, *in] and out [outer, *out] over the last
 * n_spatial dims, both contiguous; pool writes out. pool_backward writes
 * grad_x (x's shape) in full from grad_out (out's shape); max pooling
 * recomputes its argmax from x (the first maximum in window order wins, NaN
 * counts as the maximum, as PyTorch). Adaptive windows of output i span
 * [floor(i * in / out), ceil((i + 1) * in / out)). */
typedef struct nnm_pool_args {
    uint32_t struct_size;
    int32_t op;                           /* enum nnm_pool_op */
    int32_t n_spatial;
    int32_t count_include_pad;
    int64_t divisor_override;             /* > 0 replaces the avg divisor */
    int64_t kernel[NNM_MAX_SPATIAL];
    int64_t stride[NNM_MAX_SPATIAL];
    int64_t padding[NNM_MAX_SPATIAL];
    int64_t dilation[NNM_MAX_SPATIAL];
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out;           /* pool: written; pool_backward: unused (may be NULL) */
    const nnm_tensor_desc *grad_out;      /* pool_backward only */
    const nnm_tensor_desc *grad_x;        /* pool_backward only */
} nnm_pool_args;

/* softmax (log 0) or log_softmax (log 1) of x viewed as [outer, dim, inner]
 * along the middle dim (1.3); x and out contiguous, same shape. */
typedef struct nnm_softmax_args {
    uint32_t struct_size;
    int32_t log;
    int64_t outer, dim, inner;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out;
} nnm_softmax_args;

/* out = cond != 0 ? a : b elementwise over out's shape (1.3); cond, a and b
 * come with strides broadcast to out's shape (0 on broadcast dims). */
typedef struct nnm_where_args {
    uint32_t struct_size;
    uint32_t reserved;
    const nnm_tensor_desc *cond;
    const nnm_tensor_desc *a;
    const nnm_tensor_desc *b;
    const nnm_tensor_desc *out;           /* contiguous */
} nnm_where_args;

/* ---- args of the ABI 1.4 slots ---- */

/* A whole convolution (1.4): the backend's own kernel for the geometries it
 * has one for. Tensors are f32 and contiguous; x [N, C_in, *in], w and y as
 * in nnm_conv_params (not transposed). conv writes y in full (adding b when
 * b is not NULL). conv_backward writes grad_x and/or grad_w (either may be
 * NULL, not both) in full from grad_out (y's shape); the bias's gradient is
 * the runtime's. A backend that has no kernel for this geometry returns
 * NNM_E_UNSUPPORTED without setting an error: the runtime then runs the
 * convolution as im2col + gemm, which writes every output element (a
 * message set with the decline is dropped). Any other status fails the op
 * with the backend's message. */
typedef struct nnm_conv_args {
    uint32_t struct_size;
    uint32_t reserved;
    const nnm_conv_params *params;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *w;
    const nnm_tensor_desc *b;             /* conv only; may be NULL */
    const nnm_tensor_desc *y;             /* conv: written */
    const nnm_tensor_desc *grad_out;      /* conv_backward only */
    const nnm_tensor_desc *grad_x;        /* conv_backward: written, or NULL */
    const nnm_tensor_desc *grad_w;        /* conv_backward: written, or NULL */
} nnm_conv_args;

/* Batch normalisation (1.4) of x viewed as [n, c, l] (contiguous) per
 * channel. batch_norm writes y and save_mean / save_invstd [c] (the
 * statistics it normalised with: the batch's in training, else the running
 * ones, invstd = 1 / sqrt(var + eps)); in training it updates running_mean /
 * running_var when they are not NULL (unbiased variance, momentum as in
 * nnm_batch_norm_params). batch_norm_backward writes grad_x, grad_weight and
 * grad_bias (each may be NULL) from grad_out, x and the saved statistics;
 * in training the statistics depend on x, in eval they are constants.
 * weight and bias may be NULL (taken as ones and zeros). */
typedef struct nnm_batch_norm_args {
    uint32_t struct_size;
    int32_t training;
    double momentum;
    double eps;
    int64_t n, c, l;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *weight;        /* [c] or NULL */
    const nnm_tensor_desc *bias;          /* [c] or NULL; forward only */
    const nnm_tensor_desc *running_mean;  /* [c] or NULL; forward only */
    const nnm_tensor_desc *running_var;   /* [c] or NULL; forward only */
    const nnm_tensor_desc *save_mean;     /* [c]: forward writes, backward reads */
    const nnm_tensor_desc *save_invstd;   /* [c]: forward writes, backward reads */
    const nnm_tensor_desc *y;             /* forward: written */
    const nnm_tensor_desc *grad_out;      /* backward only */
    const nnm_tensor_desc *grad_x;        /* backward: written, or NULL */
    const nnm_tensor_desc *grad_weight;   /* backward: written, or NULL */
    const nnm_tensor_desc *grad_bias;     /* backward: written, or NULL */
} nnm_batch_norm_args;

/* ---- args of the ABI 1.5 slots ---- */

/* index_select and its adjoint index_add (1.5) along the middle dim of
 * [outer, *, inner] views; every tensor is contiguous and on the backend's
 * device, index is [m] i64 with each entry in [0, n) (the runtime checked).
 *   index_select: dst[o, j, i] = src[o, index[j], i]; src [outer, n, inner],
 *                 dst [outer, m, inner] written in full; elements are
 *                 elem_size bytes of any dtype (copied, not interpreted).
 *   index_add:    dst[o, index[j], i] += src[o, j, i]; src [outer, m, inner],
 *                 dst [outer, n, inner] (f32, elem_size 4) accumulated into:
 *                 repeated indices sum, rows never indexed keep their value. */
typedef struct nnm_index_args {
    uint32_t struct_size;
    uint32_t elem_size;                   /* bytes per element */
    int64_t outer, n, inner;
    int64_t m;                            /* number of indices */
    const nnm_tensor_desc *index;
    const nnm_tensor_desc *src;
    const nnm_tensor_desc *dst;
} nnm_index_args;

/* The fused gate math of one time step of a recurrent layer (1.5) over
 * `batch` rows of `hidden` units (G gate blocks, see enum nnm_rnn_mode).
 * Every pointer is contiguous row-major f32 device memory; a [B, H] row
 * block is batch x hidden.
 *   rnn_cell writes h (and, LSTM, c; act when not NULL) from gx, gh, b_hh
 *   and the previous state: with a = gx + gh + b_hh per gate block,
 *     TANH / RELU: h = tanh(a) / relu(a)
 *     LSTM: i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g),
 *           c = f * c_prev + i * g, h = o * tanh(c)
 *     GRU:  r, z = sigmoid(a_r, a_z), hn = gh_n + b_hn,
 *           n = tanh(gx_n + r * hn) (gx_n holds b_in),
 *           h = (1 - z) * n + z * h_prev
 *   rnn_cell_backward writes dgx (and dgh, GRU) from dh and what forward
 *   kept; LSTM updates dc in place (the gradient of c becomes that of
 *   c_prev); GRU adds its direct path dh * z into dh_prev. */
typedef struct nnm_rnn_cell_args {
    uint32_t struct_size;
    int32_t mode;                         /* enum nnm_rnn_mode */
    int64_t batch, hidden;                /* B, H */
    const float *gx;                      /* [B, G*H] x @ W_ih^T + b_ih (forward) */
    const float *gh;                      /* [B, G*H] h_prev @ W_hh^T, no bias (forward) */
    const float *b_hh;                    /* [G*H] or NULL (forward) */
    const float *h_prev;                  /* [B, H] GRU: forward and backward */
    const float *c_prev;                  /* [B, H] LSTM: forward and backward */
    float *h;                             /* [B, H] forward writes; backward reads (TANH, RELU) */
    float *c;                             /* [B, H] LSTM: forward writes (may alias c_prev); backward reads */
    float *act;                           /* [B, 4*H] LSTM (i, f, g, o) and GRU (r, z, n, hn): forward
                                           * writes unless NULL; backward reads. TANH, RELU: unused */
    const float *dh;                      /* [B, H] backward: the gradient of h */
    float *dc;                            /* [B, H] LSTM backward: in dL/dc, out dL/dc_prev */
    float *dgx;                           /* [B, G*H] backward writes: dL/dgx */
    float *dgh;                           /* [B, G*H] GRU backward writes: dL/d(gh + b_hh) (the
                                           * others: equal to dgx; ignored, may be NULL) */
    float *dh_prev;                       /* [B, H] GRU backward: dh * z is added into it */
} nnm_rnn_cell_args;
/* out = x converted to out's dtype (1.5; see nnm_host.op_cast for the
 * rules), elementwise over out's shape; x's strides may be anything, out is
 * contiguous. Each dtype is one of f32, i64, i32, u8, bool. */
typedef struct nnm_cast_args {
    uint32_t struct_size;
    uint32_t reserved;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out;
} nnm_cast_args;

/* argmax (op NNM_REDUCE_MAX) or argmin (NNM_REDUCE_MIN) of x viewed as
 * [outer, n, inner] along the middle dim (1.5): out[o, i] = the first j
 * where x[o, j, i] is the extreme (NaN counting as the extreme). x is
 * contiguous f32, out contiguous i64 of outer * inner elements; n >= 1. */
typedef struct nnm_arg_reduce_args {
    uint32_t struct_size;
    int32_t op;                           /* enum nnm_reduce_op: MAX or MIN */
    int64_t outer, n, inner;
    const nnm_tensor_desc *x;
    const nnm_tensor_desc *out;
} nnm_arg_reduce_args;

/* CTC (1.5) of samples b < n, every tensor contiguous on the backend's
 * device and checked by the runtime: log_probs [t, n, c] f32; targets [n, s]
 * i64 (sample b's first target_lengths[b] entries, each in [0, c));
 * input_lengths [n] i64 in [0, t], target_lengths [n] i64 in [0, s].
 * With l' = the target with blanks around and between its labels (2 tl + 1
 * states), ctc_loss writes alpha[b, i, k] = log of the summed probability
 * of the alignments of l'[0..k] over steps 0..i (-inf where none; rows past
 * the input length are not read) and nll[b] = -log(alpha[b, il-1, 2tl] +
 * alpha[b, il-1, 2tl-1]) (il 0: 0 for tl 0, else inf; zero_infinity turns
 * inf into 0). ctc_loss_backward writes all of grad_log_probs: grad_out[b]
 * times d nll[b] / d log_probs[i, b, :] (0 for i >= il and, with
 * zero_infinity, for samples whose nll was inf). */
typedef struct nnm_ctc_args {
    uint32_t struct_size;
    int32_t zero_infinity;
    int64_t blank;
    int64_t t, n, c, s;                    /* steps, batch, classes, max target length */
    const nnm_tensor_desc *log_probs;      /* [t, n, c] */
    const nnm_tensor_desc *targets;        /* [n, s] i64 (s may be 0) */
    const nnm_tensor_desc *input_lengths;  /* [n] i64 */
    const nnm_tensor_desc *target_lengths; /* [n] i64 */
    const nnm_tensor_desc *nll;            /* [n] f32: forward writes, backward reads */
    const nnm_tensor_desc *alpha;          /* [n, t, 2 s + 1] f32: forward writes, backward reads */
    const nnm_tensor_desc *grad_out;       /* [n] f32: backward only */
    const nnm_tensor_desc *grad_log_probs; /* [t, n, c] f32: backward writes */
} nnm_ctc_args;

/* Bag reductions of weight rows (1.5), the kernels of host->op_embedding_bag
 * (see there for the maths). Every tensor is contiguous on the backend's
 * device; the runtime checked every value the kernel indexes with: offsets
 * has bags + 1 entries, offsets[0] = 0, non-decreasing, offsets[bags] = n,
 * and bag b is indices[offsets[b] .. offsets[b + 1]); each index is in
 * [0, num_embeddings). Entries equal to padding_idx (when >= 0) count
 * nothing: no row, no count, no gradient.
 *   embedding_bag writes out [bags, dim] in full (an empty bag: 0) and, for
 *   max, arg [bags, dim] i64: the weight row each maximum came from (the
 *   first maximum in bag order; -1 for an empty bag).
 *   embedding_bag_backward, from grad_out [bags, dim]: adds into
 *   grad_weight [num_embeddings, dim] (when not NULL) each entry's share
 *   (sum: grad_out row times its per-sample weight; mean: divided by the
 *   bag's count; max: grad_out[b, d] into row arg[b, d]), repeated indices
 *   summing; writes grad_per_sample_weights [n] in full (when not NULL,
 *   sum only): the dot product of grad_out's row with the entry's weight
 *   row (0 for padding). */
typedef struct nnm_embedding_bag_args {
    uint32_t struct_size;
    int32_t mode;                                   /* enum nnm_reduce_op: SUM, MEAN or MAX */
    int64_t padding_idx;                            /* -1: none */
    int64_t num_embeddings, dim, n, bags;
    const nnm_tensor_desc *weight;                  /* [num_embeddings, dim] f32 */
    const nnm_tensor_desc *indices;                 /* [n] i64 */
    const nnm_tensor_desc *offsets;                 /* [bags + 1] i64 */
    const nnm_tensor_desc *per_sample_weights;      /* [n] f32 or NULL (sum only) */
    const nnm_tensor_desc *out;                     /* [bags, dim] f32: forward writes */
    const nnm_tensor_desc *arg;                     /* [bags, dim] i64, max only: forward writes, backward reads */
    const nnm_tensor_desc *grad_out;                /* [bags, dim] f32: backward only */
    const nnm_tensor_desc *grad_weight;             /* [num_embeddings, dim] f32: backward adds into, or NULL */
    const nnm_tensor_desc *grad_per_sample_weights; /* [n] f32: backward writes, or NULL */
} nnm_embedding_bag_args;

/* Layer normalisation (1.5), the kernels of host->op_layer_norm: x viewed
 * as [rows, cols] (the normalized dims flattened into cols >= 1), every
 * tensor contiguous f32 on the backend's device (the runtime checked).
 *   layer_norm writes y [rows, cols], mean [rows] and rstd [rows] =
 *   1 / sqrt(var + eps) with v = x (+ residual) and var biased:
 *   y = (v - mean) * rstd * weight + bias (weight, bias: 1 and 0 when NULL).
 *   layer_norm_backward, from grad_out and the saved mean and rstd (x and
 *   residual as forward had them), writes in full each of grad_x
 *   ([rows, cols], the gradient of v: x's and residual's alike),
 *   grad_weight and grad_bias ([cols]) that is not NULL. */
typedef struct nnm_layer_norm_args {
    uint32_t struct_size;
    uint32_t reserved;
    int64_t rows, cols;
    double eps;
    const nnm_tensor_desc *x;           /* [rows, cols] */
    const nnm_tensor_desc *residual;    /* [rows, cols] or NULL */
    const nnm_tensor_desc *weight;      /* [cols] or NULL */
    const nnm_tensor_desc *bias;        /* [cols] or NULL; forward only */
    const nnm_tensor_desc *y;           /* [rows, cols]: forward writes */
    const nnm_tensor_desc *mean;        /* [rows]: forward writes, backward reads */
    const nnm_tensor_desc *rstd;        /* [rows]: forward writes, backward reads */
    const nnm_tensor_desc *grad_out;    /* [rows, cols]: backward only */
    const nnm_tensor_desc *grad_x;      /* [rows, cols]: backward writes, or NULL */
    const nnm_tensor_desc *grad_weight; /* [cols]: backward writes, or NULL */
    const nnm_tensor_desc *grad_bias;   /* [cols]: backward writes, or NULL */
} nnm_layer_norm_args;

/* Backend flags. */
#define NNM_BACKEND_OPS_1_3 1u /* unary implements the ops ABI 1.3 added (NNM_UNARY_ERF...) */
#define NNM_BACKEND_OPS_1_5 2u /* (1.5) unary and binary implement the ops ABI 1.5 added
                                * (NNM_UNARY_SIN..NNM_UNARY_HARDSIGMOID_GRAD, NNM_BINARY_POW) */

typedef struct nnm_backend_vtable {
    uint32_t struct_size;
    uint32_t flags;
    const char *name;           /* "cpu", "cuda" */
    uint32_t version_major;
    uint32_t version_minor;
    uint32_t version_patch;
    int32_t device_type;        /* enum nnm_device_type */

    /* Creates the backend's state. Returns NNM_E_NO_DEVICE (with a message) on a
     * machine without the device; the runtime then never calls the rest. */
    nnm_status (*init)(nnm_env *env, void **state);
    void (*shutdown)(void *state);
    /* Memory for `bytes` bytes on device `device_id`, aligned to 64 bytes. */
    nnm_status (*alloc)(nnm_env *env, void *state, int32_t device_id, size_t bytes, void **ptr);
    void (*free)(void *state, int32_t device_id, void *ptr);
    /* Copies `bytes` bytes; either side may be host memory (device type CPU). */
    nnm_status (*memcpy)(nnm_env *env, void *state, void *dst, nnm_device dst_dev,
                         const void *src, nnm_device src_dev, size_t bytes);
    nnm_status (*fill)(nnm_env *env, void *state, const nnm_tensor_desc *out, double value);
    nnm_status (*gemm)(nnm_env *env, void *state, const nnm_gemm_args *args);
    nnm_status (*binary)(nnm_env *env, void *state, const nnm_binary_args *args);
    nnm_status (*unary)(nnm_env *env, void *state, const nnm_unary_args *args);
    /* ---- slots above are valid for ABI 1.0 ---- */

    /* (optional, 1.1) each: NULL means the runtime reports the op as
     * unsupported on this device. */
    nnm_status (*reduce)(nnm_env *env, void *state, const nnm_reduce_args *args);
    nnm_status (*log_softmax)(nnm_env *env, void *state, const nnm_log_softmax_args *args);
    nnm_status (*nll)(nnm_env *env, void *state, const nnm_nll_args *args);
    nnm_status (*nll_backward)(nnm_env *env, void *state, const nnm_nll_backward_args *args);
    nnm_status (*sgd_step)(nnm_env *env, void *state, const nnm_sgd_args *args);
    nnm_status (*adam_step)(nnm_env *env, void *state, const nnm_adam_args *args);
    /* ---- slots above are valid for ABI 1.1 ---- */

    /* (optional, 1.3) each: NULL means the runtime reports the op, naming it
     * and the backend, as NNM_E_UNSUPPORTED on this device. */
    /* unfolds one image into columns (convolution as a gemm) */
    nnm_status (*im2col)(nnm_env *env, void *state, const nnm_im2col_args *args);
    /* folds columns back into one image, summing overlaps (conv backward, conv_transpose) */
    nnm_status (*col2im)(nnm_env *env, void *state, const nnm_im2col_args *args);
    /* max / avg / adaptive-avg pooling forward */
    nnm_status (*pool)(nnm_env *env, void *state, const nnm_pool_args *args);
    /* its gradient with respect to x */
    nnm_status (*pool_backward)(nnm_env *env, void *state, const nnm_pool_args *args);
    /* softmax or log_softmax along any dim */
    nnm_status (*softmax)(nnm_env *env, void *state, const nnm_softmax_args *args);
    /* select between two broadcast operands */
    nnm_status (*where)(nnm_env *env, void *state, const nnm_where_args *args);
    /* ---- slots above are valid for ABI 1.3 ---- */

    /* (optional, 1.4) each: NULL means the runtime takes its generic path
     * (conv: im2col + gemm; batch_norm: host->op_batch_norm reports
     * NNM_E_UNSUPPORTED and the layer composes it). */
    /* a whole convolution; NNM_E_UNSUPPORTED (no message) declines a geometry */
    nnm_status (*conv)(nnm_env *env, void *state, const nnm_conv_args *args);
    /* its gradients with respect to x and w; declines as conv does */
    nnm_status (*conv_backward)(nnm_env *env, void *state, const nnm_conv_args *args);
    /* fused batch normalisation forward (training or eval) */
    nnm_status (*batch_norm)(nnm_env *env, void *state, const nnm_batch_norm_args *args);
    /* its gradients */
    nnm_status (*batch_norm_backward)(nnm_env *env, void *state, const nnm_batch_norm_args *args);
    /* ---- slots above are valid for ABI 1.4 ---- */

    /* (optional, 1.5) each: NULL means the runtime runs host->op_index_select
     * (f32) as a one-hot matrix product through gemm, and reports other dtypes
     * as NNM_E_UNSUPPORTED naming the op and the backend. */
    /* rows of src picked by index (any dtype: elem_size bytes per element) */
    nnm_status (*index_select)(nnm_env *env, void *state, const nnm_index_args *args);
    /* its adjoint: rows of src added into dst at index (f32) */
    nnm_status (*index_add)(nnm_env *env, void *state, const nnm_index_args *args);
    /* (optional, 1.5) each: NULL means host->op_rnn reports
     * NNM_E_UNSUPPORTED naming the op and the backend. */
    /* one time step of a recurrent layer's gate math (nnm_rnn_cell_args) */
    nnm_status (*rnn_cell)(nnm_env *env, void *state, const nnm_rnn_cell_args *args);
    /* its gradients: one step of back-propagation through time */
    nnm_status (*rnn_cell_backward)(nnm_env *env, void *state, const nnm_rnn_cell_args *args);
    /* (optional, 1.5) each: NULL means the runtime reports host->op_cast
     * (between different dtypes) or host->op_arg_reduce as NNM_E_UNSUPPORTED
     * naming the op and the backend. */
    /* elementwise dtype conversion (nnm_cast_args) */
    nnm_status (*cast)(nnm_env *env, void *state, const nnm_cast_args *args);
    /* argmax / argmin along one dim (nnm_arg_reduce_args) */
    nnm_status (*arg_reduce)(nnm_env *env, void *state, const nnm_arg_reduce_args *args);
    /* (optional, 1.5) each: NULL means host->op_ctc_loss reports
     * NNM_E_UNSUPPORTED naming the op and the backend (the ctc_loss layer
     * then composes the recursion from host ops). */
    /* the CTC forward variables and negative log likelihoods (nnm_ctc_args) */
    nnm_status (*ctc_loss)(nnm_env *env, void *state, const nnm_ctc_args *args);
    /* its gradient with respect to log_probs */
    nnm_status (*ctc_loss_backward)(nnm_env *env, void *state, const nnm_ctc_args *args);
    /* (optional, 1.5) NULL: the backend's ops pick their own thread counts. */
    /* the most threads one op of this context may use (nnm_ctx_set_num_threads,
     * n >= 1); the backend decides per op and size how many it does use. The
     * runtime calls it after init and whenever the count changes. */
    nnm_status (*set_num_threads)(nnm_env *env, void *state, int32_t n);
    /* (optional, 1.5) each: NULL means host->op_embedding_bag reports
     * NNM_E_UNSUPPORTED naming the op and the backend (the embedding_bag
     * layer then composes the bags from host ops). */
    /* segment reduction of weight rows: sum / mean / max per bag (nnm_embedding_bag_args) */
    nnm_status (*embedding_bag)(nnm_env *env, void *state, const nnm_embedding_bag_args *args);
    /* its gradients: scatter-add into the weight's rows, max's argmax routing */
    nnm_status (*embedding_bag_backward)(nnm_env *env, void *state, const nnm_embedding_bag_args *args);
    /* (optional, 1.5) each: NULL means host->op_layer_norm reports
     * NNM_E_UNSUPPORTED naming the op and the backend (the layer_norm layer
     * then composes it from host ops). */
    /* layer normalisation of rows, with an optional residual added first (nnm_layer_norm_args) */
    nnm_status (*layer_norm)(nnm_env *env, void *state, const nnm_layer_norm_args *args);
    /* its gradients: x (and residual), weight, bias */
    nnm_status (*layer_norm_backward)(nnm_env *env, void *state, const nnm_layer_norm_args *args);
    /* (optional, 1.5) NULL: the backend's ops are synchronous (the cpu
     * backend), so there is nothing to wait for.
     * Streams: a backend whose ops are asynchronous (cuda) queues every op,
     * and every copy between its devices, on one stream per device per
     * context, in call order; memcpy to host memory returns once the data is
     * there (so it waits for the work queued before it), as does memcpy
     * from host memory unless the source came from host_alloc. */
    /* waits until every op and copy this context queued on device
     * `device_id` (-1: on every device it used) has finished; reports an
     * asynchronous failure of that work (nnm_ctx_synchronize) */
    nnm_status (*synchronize)(nnm_env *env, void *state, int32_t device_id);
    /* (optional, 1.5, a pair) NULL: the runtime stages copies to this
     * backend's devices in ordinary host memory. */
    /* `bytes` bytes of page-locked host memory (64-byte aligned) to stage
     * copies to device `device_id` in: the host reads and writes it, and a
     * memcpy from it to that device may return before the copy ran (the
     * caller writes it no more and hands it to host_free) */
    nnm_status (*host_alloc)(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                             void **ptr);
    /* gives it back, stream-ordered: the backend reuses or frees it only once
     * the copies already queued from it have run. NULL ptr: no-op */
    void (*host_free)(void *state, int32_t device_id, void *ptr);
    /* ---- slots above are valid for ABI 1.5 ---- */
} nnm_backend_vtable;

/* ------------------------------------------------------------------------ */
/* Communicators: collectives between the processes of one job (ABI 1.3)      */
/* ------------------------------------------------------------------------ */

/* What a communicator's init receives and fills. */
typedef struct nnm_comm_init_args {
    uint32_t struct_size;
    uint32_t reserved;
    /* in: how long one collective may wait for its peers before it fails
     * with NNM_E_TIMEOUT (the message names the ranks that did not answer);
     * > 0 */
    double timeout_s;
    /* out: this process's rank and the number of processes, from the
     * launcher's environment (MPI's own, or NNM_RANK / NNM_WORLD_SIZE) */
    int32_t rank;
    int32_t world_size;
    /* out (optional, may stay 0): the device ordinal this rank should use,
     * e.g. the local rank on a multi-GPU node */
    int32_t device_id;
    int32_t reserved2;
} nnm_comm_init_args;

/* One collective in flight, owned by the plugin until `wait` frees it. */
typedef struct nnm_comm_work nnm_comm_work;

/* A communicator's vtable. Buffers live on `device_type` (host memory for
 * NNM_DEVICE_CPU, device memory for CUDA) and must stay valid and untouched
 * until the collective's `wait` returns. Every *_start either fails (and
 * *work stays NULL: nothing is in flight) or hands out a work that must be
 * waited on exactly once. Collectives must be started in the same order on
 * every rank. `state` may be used by one thread at a time (the plugin may run
 * threads of its own behind it). */
typedef struct nnm_comm_vtable {
    uint32_t struct_size;
    uint32_t flags;
    const char *name;           /* "mpi", "nccl"; [a-z0-9_] */
    uint32_t version_major;
    uint32_t version_minor;
    uint32_t version_patch;
    int32_t device_type;        /* enum nnm_device_type of the buffers */

    /* Joins the job the launcher started and fills args' out fields. Returns
     * NNM_E_NO_DEVICE or NNM_E_UNSUPPORTED (with a message) when this process
     * cannot take part (no GPU, no launcher environment); the runtime then
     * calls nothing else. One communicator per process at a time. */
    nnm_status (*init)(nnm_env *env, nnm_comm_init_args *args, void **state);
    /* Leaves the job and frees state. Collectives still in flight are
     * abandoned; after a failed collective it must not wait for peers. */
    void (*shutdown)(void *state);
    /* In place: data[0..n) = the sum over ranks of data[0..n) (f32). */
    nnm_status (*all_reduce_start)(nnm_env *env, void *state, float *data, int64_t n,
                                   nnm_comm_work **work);
    /* In place: `bytes` bytes of data copied from rank `root` to every rank. */
    nnm_status (*broadcast_start)(nnm_env *env, void *state, void *data, uint64_t bytes,
                                  int32_t root, nnm_comm_work **work);
    /* recv[r * bytes .. (r + 1) * bytes) = rank r's send[0 .. bytes). */
    nnm_status (*all_gather_start)(nnm_env *env, void *state, const void *send, void *recv,
                                   uint64_t bytes, nnm_comm_work **work);
    nnm_status (*barrier_start)(nnm_env *env, void *state, nnm_comm_work **work);
    /* Waits until `work` is done or the timeout passes, and frees it (always,
     * also on failure). A failure names the rank reporting it, and the ranks
     * that did not answer when it can tell. */
    nnm_status (*wait)(nnm_env *env, void *state, nnm_comm_work *work);
    /* (optional) 1 when `work` is done (wait will not block), 0 if not;
     * negative on failure. Never frees work. */
    int (*test)(void *state, nnm_comm_work *work);
    /* ---- slots above are valid for ABI 1.3 ---- */
} nnm_comm_vtable;

/* ------------------------------------------------------------------------ */
/* The plugin descriptor and its entry point                                 */
/* ------------------------------------------------------------------------ */

typedef struct nnm_plugin_desc {
    uint32_t struct_size;
    uint16_t abi_major;         /* NNM_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    const char *name;           /* the plugin's name, e.g. "linear" */
    const char *description;    /* (optional) one line */
    uint32_t n_layers;
    uint32_t n_backends;
    const nnm_layer_vtable *const *layers;      /* n_layers entries */
    const nnm_backend_vtable *const *backends;  /* n_backends entries */
    /* ---- fields above are valid for ABI 1.0 ---- */

    /* (1.3) Communicators (comm plugins: "mpi", "nccl"). A descriptor whose
     * struct_size stops before these lists none. */
    uint32_t n_comms;
    uint32_t reserved_13;
    const nnm_comm_vtable *const *comms;        /* n_comms entries */
    /* ---- fields above are valid for ABI 1.3 ---- */

    /* ---- 1.5 (names): layer domains ---- */
    /* (optional, 1.5) The domain that qualifies the names of this file's
     * layers, as ONNX custom-op domains and Python packages do: "acme" or
     * "com.acme" (1 to 63 bytes: segments of [a-z0-9_] joined by single dots).
     * Its layers are then requested by qualified name ("acme.gelu") and never
     * collide with another provider's "gelu". NULL or "" declares none, as
     * every plugin built for ABI 1.0-1.4: such a plugin's layers are reached
     * by "<plugin name>.<layer>" and, where nnmod's own library has no layer
     * of that name, by the plain name (docs/abi.md, "Names"). The domain
     * NNM_DOMAIN_NNMOD is reserved for the plugins shipped with nnmod, whose
     * plain names ("gelu", "conv2d") are theirs alone. */
    const char *domain;
    /* ---- fields above are valid for ABI 1.5 ---- */
} nnm_plugin_desc;

/* (1.5) The domain of nnmod's own layer library: a plain layer name ("gelu")
 * means this domain's layer whenever one of its plugins provides that name. */
#define NNM_DOMAIN_NNMOD "nnmod"

/* The one exported symbol. The runtime passes its own ABI version so the plugin
 * can refuse (return NULL) or describe itself for that host. The descriptor
 * and everything it points to must stay valid until the file is unloaded. */
typedef const nnm_plugin_desc *(*nnm_plugin_entry_fn)(uint16_t host_abi_major,
                                                       uint16_t host_abi_minor);

#define NNM_PLUGIN_ENTRY_SYMBOL "nnm_plugin_entry"

#if defined(_WIN32)
#define NNM_PLUGIN_EXPORT __declspec(dllexport)
#else
#define NNM_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define NNM_PLUGIN_EXTERN_C extern "C"
#else
#define NNM_PLUGIN_EXTERN_C
#endif

/* Defines the entry point of a plugin whose descriptor is `desc`:
 *     NNM_PLUGIN_DEFINE(my_desc)
 * returns &desc for any host of the same ABI major, NULL otherwise. */
#define NNM_PLUGIN_DEFINE(desc)                                                          \
    NNM_PLUGIN_EXTERN_C NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(      \
        uint16_t host_abi_major, uint16_t host_abi_minor);                               \
    NNM_PLUGIN_EXTERN_C NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(      \
        uint16_t host_abi_major, uint16_t host_abi_minor) {                              \
        (void)host_abi_minor;                                                            \
        return host_abi_major == NNM_ABI_MAJOR ? &(desc) : NULL;                         \
    }

/* ------------------------------------------------------------------------ */
/* Frozen layout (LP64). Offsets never change; sizes grow with each minor.   */
/* ------------------------------------------------------------------------ */

#if (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L) || defined(__cplusplus)
#if UINTPTR_MAX == 0xffffffffffffffffu
#ifdef __cplusplus
#define NNM__STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define NNM__STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif
NNM__STATIC_ASSERT(sizeof(nnm_device) == 8, "nnm_device layout");
NNM__STATIC_ASSERT(sizeof(nnm_dtype) == 4, "nnm_dtype layout");
NNM__STATIC_ASSERT(sizeof(nnm_tensor_desc) == 48, "nnm_tensor_desc layout (DLTensor)");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, device) == 8, "DLTensor.device");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, ndim) == 16, "DLTensor.ndim");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, dtype) == 20, "DLTensor.dtype");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, shape) == 24, "DLTensor.shape");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, strides) == 32, "DLTensor.strides");
NNM__STATIC_ASSERT(offsetof(nnm_tensor_desc, byte_offset) == 40, "DLTensor.byte_offset");
NNM__STATIC_ASSERT(sizeof(nnm_env) == 16, "nnm_env layout");
NNM__STATIC_ASSERT(offsetof(nnm_plugin_desc, layers) == 32, "nnm_plugin_desc layout");
NNM__STATIC_ASSERT(offsetof(nnm_plugin_desc, n_comms) == 48, "nnm_plugin_desc 1.0 size");
NNM__STATIC_ASSERT(offsetof(nnm_plugin_desc, domain) == 64, "nnm_plugin_desc 1.3 size");
NNM__STATIC_ASSERT(sizeof(nnm_plugin_desc) == 72, "nnm_plugin_desc 1.5 size");
NNM__STATIC_ASSERT(offsetof(nnm_comm_vtable, init) == 32, "nnm_comm_vtable layout");
NNM__STATIC_ASSERT(sizeof(nnm_comm_vtable) == 96, "nnm_comm_vtable 1.3 size");
NNM__STATIC_ASSERT(sizeof(nnm_comm_init_args) == 32, "nnm_comm_init_args 1.3 size");
NNM__STATIC_ASSERT(offsetof(nnm_layer_vtable, create) == 40, "nnm_layer_vtable layout");
NNM__STATIC_ASSERT(offsetof(nnm_layer_vtable, extra_repr) == 64, "nnm_layer_vtable 1.0 layout");
NNM__STATIC_ASSERT(offsetof(nnm_layer_vtable, backward) == 72, "nnm_layer_vtable 1.1 layout");
NNM__STATIC_ASSERT(sizeof(nnm_layer_vtable) == 112, "nnm_layer_vtable 1.2 size");
NNM__STATIC_ASSERT(offsetof(nnm_backend_vtable, init) == 32, "nnm_backend_vtable layout");
NNM__STATIC_ASSERT(offsetof(nnm_backend_vtable, unary) == 96, "nnm_backend_vtable 1.0 layout");
NNM__STATIC_ASSERT(offsetof(nnm_backend_vtable, adam_step) == 144, "nnm_backend_vtable 1.1 layout");
NNM__STATIC_ASSERT(offsetof(nnm_backend_vtable, where) == 152 + 5 * 8, "nnm_backend_vtable 1.3 layout");
NNM__STATIC_ASSERT(offsetof(nnm_backend_vtable, batch_norm_backward) == 152 + 9 * 8, "nnm_backend_vtable 1.4 layout");
NNM__STATIC_ASSERT(sizeof(nnm_backend_vtable) == 152 + 26 * 8, "nnm_backend_vtable 1.5 size");
NNM__STATIC_ASSERT(offsetof(nnm_host, set_error) == 8, "nnm_host layout");
NNM__STATIC_ASSERT(offsetof(nnm_host, op_unary) == 8 + 21 * 8, "nnm_host 1.0 layout");
NNM__STATIC_ASSERT(offsetof(nnm_host, accumulate_grad) == 8 + 28 * 8, "nnm_host 1.1 layout");
NNM__STATIC_ASSERT(offsetof(nnm_host, descendant_call) == 8 + 33 * 8, "nnm_host 1.2 layout");
NNM__STATIC_ASSERT(offsetof(nnm_host, op_update) == 8 + 48 * 8, "nnm_host 1.3 layout");
NNM__STATIC_ASSERT(offsetof(nnm_host, op_batch_norm) == 8 + 49 * 8, "nnm_host 1.4 layout");
NNM__STATIC_ASSERT(sizeof(nnm_host) == 8 + 64 * 8, "nnm_host 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_index_args) == 64, "nnm_index_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_rnn_params) == 16, "nnm_rnn_params 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_rnn_cell_args) == 128, "nnm_rnn_cell_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_cast_args) == 24, "nnm_cast_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_arg_reduce_args) == 48, "nnm_arg_reduce_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_ctc_params) == 16, "nnm_ctc_params 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_ctc_args) == 112, "nnm_ctc_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_embedding_bag_params) == 24, "nnm_embedding_bag_params 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_embedding_bag_args) == 120, "nnm_embedding_bag_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_attention_params) == 64, "nnm_attention_params 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_layer_norm_params) == 16, "nnm_layer_norm_params 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_layer_norm_args) == 120, "nnm_layer_norm_args 1.5 size");
NNM__STATIC_ASSERT(sizeof(nnm_config_field) == 24, "nnm_config_field layout");
NNM__STATIC_ASSERT(sizeof(nnm_gemm_args) == 96, "nnm_gemm_args 1.0 size");
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif /* NNMOD_PLUGIN_H */
