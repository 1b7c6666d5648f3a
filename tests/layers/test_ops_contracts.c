/* tests/layers/test_ops_contracts.c - what the golden table
 * (tests/golden/make_ops_golden.py) cannot show for the functional ops of
 * plugins/tensor_ops and plugins/math_ops: bad configs and inputs fail with a
 * status and a message naming the op and the argument (PyTorch's words where
 * it has some), negative dims, broadcasting, empty tensors, the dynamic
 * sizes convention at several batch sizes, comparisons with NaN and
 * infinities, and add/mul's 1.0 behaviour without the new keys. */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) {
    return tu_ctx_new(&g_ctx);
}

static int suite_clean(void) {
    return tu_ctx_free(&g_ctx);
}

static nnm_config *cfg_new(void) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    return c;
}

#define INTS(...) (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
#define SHAPE(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* nnm_module_create must fail with `want` and a message containing needle;
 * frees cfg. */
static void create_fails(const char *layer, nnm_config *cfg, nnm_status want, const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
    nnm_config_free(cfg);
}

/* The module, or NULL (printed); frees cfg. */
static nnm_module *made(const char *layer, nnm_config *cfg) {
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

static nnm_config *with_int(const char *k, int64_t v) {
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, k, v);
    return c;
}

static nnm_config *with_ints(const char *k, const int64_t *v, size_t n) {
    nnm_config *c = cfg_new();
    nnm_config_set_ints(c, k, v, n);
    return c;
}

/* 0, 1, 2, ... in a new f32 tensor. */
static nnm_tensor *iota(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)i;
    nnm_tensor *t = tu_tf32(g_ctx, ndim, shape, v);
    free(v);
    return t;
}

/* t has `shape` and, when want is not NULL, exactly those values. */
static void check_tensor(nnm_tensor *t, int32_t ndim, const int64_t *shape, const float *want) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_TRUE(tu_shape_is(t, ndim, shape));
    if (want == NULL) return;
    int64_t n = 0;
    float *got = tu_read_f32(t, &n);
    for (int64_t i = 0; got && i < n; i++) {
        int same = got[i] == want[i] || (isnan(got[i]) && isnan(want[i]));
        if (!same) fprintf(stderr, "\n  [%lld]: got %g want %g", (long long)i, got[i], want[i]);
        CU_ASSERT_TRUE(same);
    }
    free(got);
}

/* ---- configs refused at create --------------------------------------- */

static void test_bad_configs(void) {
    LEAK_CHECK_BEGIN();
    create_fails("chunk", with_int("chunks", 0), NNM_E_INVALID, "chunk: chunk expects `chunks` to be greater than 0");
    nnm_config *c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"1:3", "x"}, 2);
    create_fails("getitem", c, NNM_E_INVALID, "getitem: index[1] = \"x\" is not an integer");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"...", "0", "..."}, 3);
    create_fails("getitem", c, NNM_E_INVALID, "an index can only have a single ellipsis");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"::0"}, 1);
    create_fails("getitem", c, NNM_E_INVALID, "slice step cannot be zero");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"::-1"}, 1);
    create_fails("getitem", c, NNM_E_INVALID, "step must be greater than zero");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"1:2:3:4"}, 1);
    create_fails("getitem", c, NNM_E_INVALID, "getitem: index[0]");
    create_fails("pad", with_ints("pad", INTS(1, 2, 3)), NNM_E_SHAPE, "pad: pad: Padding length must be divisible by 2");
    c = with_ints("pad", INTS(1, 1));
    nnm_config_set_str(c, "mode", "reflect");
    create_fails("pad", c, NNM_E_UNSUPPORTED, "pad: mode \"reflect\" is not supported");
    create_fails("clamp", cfg_new(), NNM_E_INVALID, "clamp: At least one of 'min' or 'max' must not be None");
    c = cfg_new();
    nnm_config_set_float(c, "exponent", -2.0);
    nnm_config_set_bool(c, "reverse", 1);
    create_fails("pow", c, NNM_E_UNSUPPORTED, "pow: exponent: reverse");
    c = with_ints("shape", INTS(-1, 4));
    nnm_config_set_ints(c, "from_input", INTS(1, -1));
    create_fails("view", c, NNM_E_INVALID, "view: from_input and from_dim go together (from_dim is missing)");
    c = with_ints("size", INTS(-1, 4));
    nnm_config_set_ints(c, "from_input", INTS(1));
    nnm_config_set_ints(c, "from_dim", INTS(0));
    create_fails("expand", c, NNM_E_SHAPE, "expand: from_input (1 entries) and from_dim (1 entries) must have as many");
    c = with_ints("size", INTS(2, -3));
    nnm_config_set_float(c, "fill_value", 1.0);
    create_fails("full", c, NNM_E_INVALID, "full: size: Trying to create tensor with negative dimension -3");
    create_fails("repeat", with_ints("repeats", INTS(2, -1)), NNM_E_INVALID, "repeat: repeats: Trying to create");
    c = with_ints("shifts", INTS(1, 2));
    nnm_config_set_int(c, "dims", 0);
    create_fails("roll", c, NNM_E_SHAPE, "roll: shifts and dimensions must align. shifts: 2, dims:1");
    c = cfg_new(); /* the schema: unknown keys and missing required ones */
    nnm_config_set_int(c, "dimension", 1);
    create_fails("unsqueeze", c, NNM_E_INVALID, "config.dimension: unknown key");
    create_fails("transpose", with_int("dim0", 0), NNM_E_NOT_FOUND, "dim1");
    c = cfg_new();
    nnm_config_set_str(c, "value", "minus infinity");
    create_fails("masked_fill", c, NNM_E_TYPE, "masked_fill: value: expected a number or \"inf\"");
    c = with_int("dim", 0);
    nnm_config_set_ints(c, "dim", INTS(0, 1));
    create_fails("max", c, NNM_E_TYPE, "dim");
    LEAK_CHECK_END();
}

/* ---- inputs refused at forward ---------------------------------------- */

static void call_fails(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, uint32_t n_out, nnm_status want,
                       const char *needle) {
    nnm_tensor *out[NNM_MAX_IO] = {0};
    CHECK_ERROR(nnm_module_call(m, in, n_in, out, n_out), want, needle);
    for (uint32_t i = 0; i < n_out; i++) {
        CU_ASSERT_PTR_NULL(out[i]);
        nnm_tensor_release(out[i]);
    }
    nnm_module_release(m);
}

static void test_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = iota(SHAPE(2, 3)), *y = iota(SHAPE(4, 5)), *x3 = iota(SHAPE(2, 3, 4));
    nnm_tensor *in1[1] = {x}, *in2[2] = {x, y}, *in3[1] = {x3};
    call_fails(made("view", with_ints("shape", INTS(-1, -1))), in1, 1, 1, NNM_E_SHAPE, "view: shape: only one dimension can be inferred");
    call_fails(made("view", with_ints("shape", INTS(4, -1))), in1, 1, 1, NNM_E_SHAPE, "view: shape '[4, -1]' is invalid for input of size 6");
    call_fails(made("reshape", with_ints("shape", INTS(7))), in1, 1, 1, NNM_E_SHAPE, "reshape: shape '[7]' is invalid for input of size 6");
    call_fails(made("permute", with_ints("dims", INTS(0))), in1, 1, 1, NNM_E_SHAPE, "input.dim() = 2 is not equal to len(dims) = 1");
    call_fails(made("permute", with_ints("dims", INTS(0, -2))), in1, 1, 1, NNM_E_INVALID, "permute: dims: duplicate dims are not allowed");
    nnm_config *c = with_int("dim0", 0);
    nnm_config_set_int(c, "dim1", 2);
    call_fails(made("transpose", c), in1, 1, 1, NNM_E_SHAPE, "transpose: dim1: Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    call_fails(made("unsqueeze", with_int("dim", 3)), in1, 1, 1, NNM_E_SHAPE, "unsqueeze: dim: Dimension out of range (expected to be in range of [-3, 2], but got 3)");
    call_fails(made("expand", with_ints("size", INTS(3, 3))), in1, 1, 1, NNM_E_SHAPE,
               "The expanded size of the tensor (3) must match the existing size (2) at non-singleton dimension 0");
    call_fails(made("expand", with_ints("size", INTS(-1, 2, 3))), in1, 1, 1, NNM_E_SHAPE, "isn't allowed in a leading, non-existing dimension 0");
    call_fails(made("expand", with_ints("size", INTS(3))), in1, 1, 1, NNM_E_SHAPE, "the number of sizes provided (1) must be greater or equal");
    call_fails(made("repeat", with_ints("repeats", INTS(2))), in1, 1, 1, NNM_E_SHAPE, "Number of dimensions of repeat dims can not be smaller");
    c = with_ints("split_size_or_sections", INTS(1, 3));
    call_fails(made("split", c), in1, 1, 2, NNM_E_SHAPE, "split_with_sizes expects split_sizes to sum exactly to 2");
    call_fails(made("split", with_int("split_size_or_sections", 0)), in1, 1, 1, NNM_E_INVALID, "split_size can only be 0 if dimension size is 0");
    call_fails(made("chunk", with_int("chunks", 2)), in1, 1, 3, NNM_E_SHAPE, "chunk: 3 outputs asked, but the input gives 2 pieces");
    call_fails(made("unbind", with_int("dim", 5)), in1, 1, 1, NNM_E_SHAPE, "unbind: dim: Dimension out of range");
    call_fails(made("stack", with_int("dim", 0)), in2, 2, 1, NNM_E_SHAPE, "stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [4, 5] at entry 1");
    c = with_int("dim", 1);
    nnm_config_set_int(c, "start", 2);
    nnm_config_set_int(c, "length", 2);
    call_fails(made("narrow", c), in1, 1, 1, NNM_E_SHAPE, "narrow: start (2) + length (2) exceeds dimension size (3).");
    c = with_int("dim", 0);
    nnm_config_set_int(c, "index", 2);
    call_fails(made("select", c), in1, 1, 1, NNM_E_SHAPE, "select(): index 2 out of range for tensor of size [2, 3] at dimension 0");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"5"}, 1);
    call_fails(made("getitem", c), in1, 1, 1, NNM_E_SHAPE, "index 5 is out of bounds for dimension 0 with size 2");
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"0", "1", "2"}, 3);
    call_fails(made("getitem", c), in1, 1, 1, NNM_E_SHAPE, "too many indices for tensor of dimension 2");
    call_fails(made("pad", with_ints("pad", INTS(1, 1, 1, 1, 1, 1))), in1, 1, 1, NNM_E_SHAPE, "pad: pad: Padding length too large");
    call_fails(made("pad", with_ints("pad", INTS(-2, -2))), in1, 1, 1, NNM_E_SHAPE, "resulted in a negative output size");
    call_fails(made("matmul", cfg_new()), in2, 2, 1, NNM_E_SHAPE, "matmul: mat1 and mat2 shapes cannot be multiplied ([2, 3] and [4, 5])");
    call_fails(made("bmm", cfg_new()), in2, 2, 1, NNM_E_SHAPE, "bmm: batch1 must be a 3D tensor");
    call_fails(made("sum", with_ints("dim", INTS(0, -2))), in1, 1, 1, NNM_E_INVALID, "sum: dim: dim 0 appears multiple times in the list of dims");
    call_fails(made("mean", with_int("dim", -3)), in1, 1, 1, NNM_E_SHAPE, "mean: dim: Dimension out of range");
    call_fails(made("sub", cfg_new()), in1, 1, 1, NNM_E_SHAPE, "sub: one input needs the scalar `other`");
    c = cfg_new();
    nnm_config_set_float(c, "other", 1.0);
    call_fails(made("div", c), in2, 2, 1, NNM_E_SHAPE, "div: `other` is for one input");
    /* max(dim) gives (values, indices) since 1.1 (ABI 1.5 op_arg_reduce); without dim only values */
    call_fails(made("max", NULL), in1, 1, 2, NNM_E_SHAPE, "indices (a second output) need dim");
    call_fails(made("maximum", cfg_new()), in1, 1, 1, NNM_E_SHAPE, "maximum");
    c = cfg_new();
    nnm_config_set_float(c, "value", 0.0);
    nnm_tensor *idx = tu_ti64(g_ctx, SHAPE(2, 3), (int64_t[]){0, 1, 0, 1, 0, 1});
    nnm_tensor *mf[2] = {x, idx};
    /* 1.1 (ABI 1.5 host): an integer or bool mask is cast (nonzero is true);
     * a dtype op_cast does not know is refused, naming the mask */
    {
        nnm_module *m = made("masked_fill", c);
        nnm_tensor *o1[1] = {NULL};
        CHECK_STATUS(nnm_module_call(m, mf, 2, o1, 1), NNM_OK);
        nnm_tensor_release(o1[0]);
        nnm_tensor *f64 = NULL;
        CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1},
                                    SHAPE(2, 3), &f64), NNM_OK);
        nnm_tensor *mf64[2] = {x, f64};
        call_fails(m, mf64, 2, 1, NNM_E_DTYPE, "masked_fill: mask (input 1) must be bool or f32");
        nnm_tensor_release(f64);
    }
    /* an empty reduction dim for amax, as PyTorch */
    nnm_tensor *e = iota(SHAPE(0, 3));
    nnm_tensor *ein[1] = {e};
    call_fails(made("amax", with_int("dim", 0)), ein, 1, 1, NNM_E_SHAPE, "amax(): Expected reduction dim 0 to have non-zero size.");
    /* dynamic sizes: from_input naming a missing input */
    c = with_ints("shape", INTS(0, -1));
    nnm_config_set_ints(c, "from_input", INTS(1, -1));
    nnm_config_set_ints(c, "from_dim", INTS(0, -1));
    call_fails(made("view", c), in3, 1, 1, NNM_E_SHAPE, "view: from_input[0] = 1, but the op got 1 inputs");
    /* the ABI 1.5 ops */
    nnm_tensor *bad = tu_ti64(g_ctx, SHAPE(2), (int64_t[]){0, 3}), *is[2] = {x, bad};
    call_fails(made("index_select", with_int("dim", 1)), is, 2, 1, NNM_E_INVALID, "index_select");
    call_fails(made("flip", with_ints("dims", INTS(1, -1))), in1, 1, 1, NNM_E_INVALID, "flip: dims: dim 1 appears multiple times");
    nnm_tensor *v1 = iota(SHAPE(4)), *v1in[1] = {v1};
    call_fails(made("triu", cfg_new()), v1in, 1, 1, NNM_E_SHAPE, "triu: input tensor must have at least 2 dimensions");
    nnm_tensor_release(v1);
    /* gather: an index out of range (which a flat position would otherwise
     * read from another row), a wrong dtype or rank, a larger index dim */
    nnm_tensor *gbad = tu_ti64(g_ctx, SHAPE(2, 1), (int64_t[]){0, 3}), *gi[2] = {x, gbad};
    call_fails(made("gather", with_int("dim", 1)), gi, 2, 1, NNM_E_INVALID,
               "gather: index 3 is out of bounds for dimension 1 with size 3");
    nnm_tensor *gneg = tu_ti64(g_ctx, SHAPE(2, 1), (int64_t[]){-1, 0}), *gn[2] = {x, gneg};
    call_fails(made("gather", with_int("dim", 1)), gn, 2, 1, NNM_E_INVALID, "gather: index -1 is out of bounds");
    nnm_tensor *gf[2] = {x, x};
    call_fails(made("gather", with_int("dim", 0)), gf, 2, 1, NNM_E_DTYPE, "gather(): Expected dtype int64 for index");
    nnm_tensor *g1 = tu_ti64(g_ctx, SHAPE(2), (int64_t[]){0, 1}), *gr[2] = {x, g1};
    call_fails(made("gather", with_int("dim", 0)), gr, 2, 1, NNM_E_SHAPE,
               "Index tensor must have the same number of dimensions as input tensor");
    nnm_tensor *gw = tu_ti64(g_ctx, SHAPE(1, 4), (int64_t[]){0, 1, 0, 1}), *gwi[2] = {x, gw};
    call_fails(made("gather", with_int("dim", 0)), gwi, 2, 1, NNM_E_SHAPE,
               "gather: Size does not match at dimension 1 expected index [4] to be smaller than self [3]");
    call_fails(made("gather", with_int("dim", 2)), gi, 2, 1, NNM_E_SHAPE, "gather: dim: Dimension out of range");
    call_fails(made("cumsum", with_int("dim", 2)), in1, 1, 1, NNM_E_SHAPE, "cumsum: dim: Dimension out of range");
    nnm_tensor *ci[1] = {idx};
    call_fails(made("cumsum", with_int("dim", 0)), ci, 1, 1, NNM_E_DTYPE, "cumsum: x must be f32");
    create_fails("cumsum", cfg_new(), NNM_E_NOT_FOUND, "dim");
    nnm_tensor_release(gbad);
    nnm_tensor_release(gneg);
    nnm_tensor_release(g1);
    nnm_tensor_release(gw);
    nnm_tensor_release(bad);
    c = with_int("end", 0);
    nnm_config_set_int(c, "start", 3);
    call_fails(made("arange", c), in1, 0, 1, NNM_E_INVALID, "arange: upper bound and larger bound inconsistent with step sign");
    c = with_int("end", 3);
    nnm_config_set_int(c, "step", 0);
    create_fails("arange", c, NNM_E_INVALID, "arange: step must be nonzero");
    c = cfg_new();
    nnm_config_set_float(c, "p", 0.0);
    create_fails("norm", c, NNM_E_UNSUPPORTED, "norm: p: only p > 0");
    nnm_tensor_release(e);
    nnm_tensor_release(idx);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(x3);
    LEAK_CHECK_END();
}

/* ---- values: negative dims, steps, empty tensors ---------------------- */

/* One call of a fresh module on `in`; returns output 0 (others released). */
static nnm_tensor *run(nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
    nnm_tensor *out[1] = {NULL};
    CHECK_STATUS(nnm_module_call(m, in, n_in, out, 1), NNM_OK);
    nnm_module_release(m);
    return out[0];
}

static void test_values(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = iota(SHAPE(2, 5)), *in[1] = {x}, *y;
    nnm_config *c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"-1", "::2"}, 2); /* x[-1, ::2] */
    y = run(made("getitem", c), in, 1);
    check_tensor(y, SHAPE(3), (const float[]){5, 7, 9});
    nnm_tensor_release(y);
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"...", "1::3", "None"}, 3); /* x[..., 1::3, None] */
    y = run(made("getitem", c), in, 1);
    check_tensor(y, SHAPE(2, 2, 1), (const float[]){1, 4, 6, 9});
    nnm_tensor_release(y);
    c = with_ints("shifts", INTS(-1));
    nnm_config_set_ints(c, "dims", INTS(-1));
    y = run(made("roll", c), in, 1);
    check_tensor(y, SHAPE(2, 5), (const float[]){1, 2, 3, 4, 0, 6, 7, 8, 9, 5});
    nnm_tensor_release(y);
    y = run(made("unsqueeze", with_int("dim", -1)), in, 1);
    check_tensor(y, SHAPE(2, 5, 1), NULL);
    nnm_tensor_release(y);
    y = run(made("repeat", with_ints("repeats", INTS(1, 2))), in, 1);
    check_tensor(y, SHAPE(2, 10), (const float[]){0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9});
    nnm_tensor_release(y);
    y = run(made("sum", with_int("dim", -1)), in, 1);
    check_tensor(y, SHAPE(2), (const float[]){10, 35});
    nnm_tensor_release(y);
    c = with_ints("pad", INTS(1, 0));
    nnm_config_set_str(c, "value", "-inf");
    y = run(made("pad", c), in, 1);
    check_tensor(y, SHAPE(2, 6), (const float[]){-INFINITY, 0, 1, 2, 3, 4, -INFINITY, 5, 6, 7, 8, 9});
    nnm_tensor_release(y);
    /* flip and triu of infinities: exact zeros above, no NaN from 0 * inf */
    y = run(made("flip", with_int("dims", -1)), in, 1);
    check_tensor(y, SHAPE(2, 5), (const float[]){4, 3, 2, 1, 0, 9, 8, 7, 6, 5});
    nnm_tensor_release(y);
    nnm_tensor *infs = tu_tf32(g_ctx, SHAPE(2, 2), (const float[]){INFINITY, -INFINITY, NAN, 1}), *ii[1] = {infs};
    y = run(made("tril", cfg_new()), ii, 1);
    check_tensor(y, SHAPE(2, 2), (const float[]){INFINITY, 0, NAN, 1});
    nnm_tensor_release(y);
    nnm_tensor_release(infs);
    nnm_tensor_release(x);

    /* arange: int64 by default for integer arguments, as PyTorch; its end
     * from an input's shape */
    x = iota(SHAPE(2, 4));
    in[0] = x;
    c = with_int("end", 0);
    nnm_config_set_ints(c, "from_input", INTS(0));
    nnm_config_set_ints(c, "from_dim", INTS(-1));
    nnm_config_set_int(c, "step", 3);
    y = run(made("arange", c), in, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    CU_ASSERT_TRUE(tu_shape_is(y, SHAPE(2)));
    CU_ASSERT_EQUAL(nnm_tensor_desc_get(y)->dtype.code, NNM_DTYPE_INT);
    const int64_t *iv = tu_cpu_data(y);
    CU_ASSERT_TRUE(iv != NULL && iv[0] == 0 && iv[1] == 3);
    nnm_tensor_release(y);
    /* var of one element is NaN (n - 1 = 0), unbiased=false gives 0 */
    y = run(made("var", with_int("dim", 0)), in, 1);
    check_tensor(y, SHAPE(4), (const float[]){8, 8, 8, 8});
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    x = iota(SHAPE(1));
    in[0] = x;
    y = run(made("var", cfg_new()), in, 1);
    check_tensor(y, 0, NULL, (const float[]){NAN});
    nnm_tensor_release(y);
    nnm_tensor_release(x);

    /* a 0-d tensor: squeeze of [1, 1], sum over its dim 0, select refused */
    x = iota(SHAPE(1, 1));
    in[0] = x;
    nnm_tensor *s = run(made("squeeze", cfg_new()), in, 1);
    check_tensor(s, 0, NULL, (const float[]){0});
    in[0] = s;
    y = run(made("sum", with_int("dim", -1)), in, 1);
    check_tensor(y, 0, NULL, (const float[]){0});
    nnm_tensor_release(y);
    y = run(made("unsqueeze", with_int("dim", 0)), in, 1);
    check_tensor(y, SHAPE(1), NULL);
    nnm_tensor_release(y);
    nnm_tensor_release(s);
    nnm_tensor_release(x);

    /* empty tensors go through every op that allows them */
    x = iota(SHAPE(0, 3));
    in[0] = x;
    y = run(made("view", with_ints("shape", INTS(3, -1))), in, 1);
    check_tensor(y, SHAPE(3, 0), NULL);
    nnm_tensor_release(y);
    y = run(made("sum", with_int("dim", 0)), in, 1);
    check_tensor(y, SHAPE(3), (const float[]){0, 0, 0});
    nnm_tensor_release(y);
    y = run(made("mean", with_int("dim", 0)), in, 1);
    check_tensor(y, SHAPE(3), (const float[]){NAN, NAN, NAN});
    nnm_tensor_release(y);
    y = run(made("expand", with_ints("size", INTS(2, 0, 3))), in, 1);
    check_tensor(y, SHAPE(2, 0, 3), NULL);
    nnm_tensor_release(y);
    y = run(made("pad", with_ints("pad", INTS(1, 1))), in, 1);
    check_tensor(y, SHAPE(0, 5), NULL);
    nnm_tensor_release(y);
    nnm_tensor *pieces[2] = {NULL, NULL};
    nnm_module *m = made("chunk", with_int("chunks", 2));
    CHECK_STATUS(nnm_module_call(m, in, 1, pieces, 2), NNM_OK); /* as PyTorch: 2 empty chunks */
    check_tensor(pieces[0], SHAPE(0, 3), NULL);
    check_tensor(pieces[1], SHAPE(0, 3), NULL);
    nnm_tensor_release(pieces[0]);
    nnm_tensor_release(pieces[1]);
    nnm_module_release(m);
    nnm_tensor *b = iota(SHAPE(3, 2)), *mm[2] = {x, b};
    y = run(made("matmul", cfg_new()), mm, 2);
    check_tensor(y, SHAPE(0, 2), NULL);
    nnm_tensor_release(y);
    nnm_tensor_release(b);
    nnm_tensor *st[2] = {x, x};
    y = run(made("stack", with_int("dim", -1)), st, 2);
    check_tensor(y, SHAPE(0, 3, 2), NULL);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- comparisons: NaN, infinities, broadcasting ------------------------ */

static void test_comparisons(void) {
    LEAK_CHECK_BEGIN();
    const float xv[5] = {NAN, INFINITY, -INFINITY, 0.0f, 1.0f};
    nnm_tensor *x = tu_tf32(g_ctx, SHAPE(5), xv), *in[1] = {x};
    struct {
        const char *op;
        double other;
        float want[5];
    } cases[] = {
        {"eq", INFINITY, {0, 1, 0, 0, 0}}, {"ne", 0.0, {1, 1, 1, 0, 1}}, {"ge", 0.0, {0, 1, 0, 1, 1}},
        {"gt", 0.0, {0, 1, 0, 0, 1}},      {"le", 0.0, {0, 0, 1, 1, 0}}, {"lt", 0.0, {0, 0, 1, 0, 0}},
        {"lt", INFINITY, {0, 0, 1, 1, 1}}, {"gt", -INFINITY, {0, 1, 0, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nnm_config *c = cfg_new();
        nnm_config_set_float(c, "other", cases[i].other);
        nnm_tensor *y = run(made(cases[i].op, c), in, 1);
        check_tensor(y, SHAPE(5), cases[i].want);
        nnm_tensor_release(y);
    }
    /* two tensors, broadcast: x [5] against y [2, 1] */
    nnm_tensor *yv = tu_tf32(g_ctx, SHAPE(2, 1), (const float[]){0.0f, 1.0f}), *in2[2] = {x, yv};
    nnm_tensor *y = run(made("le", cfg_new()), in2, 2);
    check_tensor(y, SHAPE(2, 5), (const float[]){0, 0, 1, 1, 0, 0, 0, 1, 1, 1});
    nnm_tensor_release(y);
    y = run(made("ne", cfg_new()), in2, 2);
    check_tensor(y, SHAPE(2, 5), (const float[]){1, 1, 1, 0, 1, 1, 1, 1, 1, 0});
    nnm_tensor_release(y);
    /* documented: two tensors are compared through their difference, so
     * equal infinities are not equal (inf - inf is NaN) */
    nnm_tensor *inf2 = tu_tf32(g_ctx, SHAPE(1), (const float[]){INFINITY}), *ii[2] = {inf2, inf2};
    y = run(made("eq", cfg_new()), ii, 2);
    check_tensor(y, SHAPE(1), (const float[]){0});
    nnm_tensor_release(y);
    nnm_tensor_release(inf2);
    /* masked_fill / where follow the f32 mask (nonzero is true), with -inf */
    nnm_tensor *mask = tu_tf32(g_ctx, SHAPE(5), (const float[]){1, 0, 0, 2, 0}), *mf[2] = {x, mask};
    nnm_config *c = cfg_new();
    nnm_config_set_str(c, "value", "-inf");
    y = run(made("masked_fill", c), mf, 2);
    check_tensor(y, SHAPE(5), (const float[]){-INFINITY, INFINITY, -INFINITY, -INFINITY, 1});
    nnm_tensor_release(y);
    nnm_tensor_release(mask);
    nnm_tensor_release(yv);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- dynamic sizes: one module, two batch sizes, no gradient to "like" -- */

static void test_dynamic_sizes(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = with_ints("size", INTS(-1, -1, -1)); /* class_token.expand(x.size(0), -1, -1) */
    nnm_config_set_ints(c, "from_input", INTS(1, -1, -1));
    nnm_config_set_ints(c, "from_dim", INTS(0, -1, -1));
    nnm_module *expand = made("expand", c);
    c = with_ints("size", INTS(0, 4)); /* torch.zeros(x.size(0), x.size(-1)) */
    nnm_config_set_float(c, "fill_value", 0.0);
    nnm_config_set_ints(c, "from_input", INTS(0, 0));
    nnm_config_set_ints(c, "from_dim", INTS(0, -1));
    nnm_module *zeros = made("full", c);
    c = with_ints("shape", INTS(0, -1)); /* x.view(x.size(0), -1) */
    nnm_config_set_ints(c, "from_input", INTS(0, -1));
    nnm_config_set_ints(c, "from_dim", INTS(0, -1));
    nnm_module *view = made("view", c);
    nnm_tensor *tok = iota(SHAPE(1, 1, 3));
    CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(tok, 1), NNM_OK);
    for (int64_t batch = 1; batch <= 5; batch += 4) {
        nnm_tensor *x = iota(3, (const int64_t[]){batch, 2, 3});
        CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
        nnm_tensor *in[2] = {tok, x}, *y = NULL, *z = NULL, *v = NULL, *s = NULL;
        nnm_tensor *xin[1] = {x};
        int prev = nnm_grad_set_enabled(1);
        CHECK_STATUS(nnm_module_call(expand, in, 2, &y, 1), NNM_OK);
        check_tensor(y, 3, (const int64_t[]){batch, 1, 3}, NULL);
        CHECK_STATUS(nnm_module_call(zeros, xin, 1, &z, 1), NNM_OK);
        check_tensor(z, 2, (const int64_t[]){batch, 3}, NULL);
        CHECK_STATUS(nnm_module_call(view, xin, 1, &v, 1), NNM_OK);
        check_tensor(v, 2, (const int64_t[]){batch, 6}, NULL);
        CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &s), NNM_OK);
        CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
        nnm_grad_set_enabled(prev);
        /* the token's gradient counts the batch; x only lent its shape */
        float g[3] = {0};
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(tok), g, 3), NNM_OK);
        CU_ASSERT_EQUAL(g[0], (float)(batch == 1 ? 1 : 6));
        CU_ASSERT_PTR_NULL(nnm_tensor_grad(x));
        nnm_tensor_release(s);
        nnm_tensor_release(y);
        nnm_tensor_release(z);
        nnm_tensor_release(v);
        nnm_tensor_release(x);
    }
    nnm_tensor_release(tok);
    nnm_module_release(expand);
    nnm_module_release(zeros);
    nnm_module_release(view);
    LEAK_CHECK_END();
}

/* The ViT-style head of make_ops_golden.py's composite row as a manifest:
 * built once, run at three batch sizes (nothing of batch 2 is baked in). */
static const char k_vit_head[] =
    "{\"format\": \"nnmod.manifest\", \"version\": 1,"
    " \"plugins\": {\"graph\": \"^1.0\", \"view\": \"^1.0\", \"permute\": \"^1.0\", \"expand\": \"^1.0\","
    "  \"concat\": \"^1.0\", \"getitem\": \"^1.0\", \"mul\": \"^1.1\", \"mean\": \"^1.0\", \"amax\": \"^1.0\","
    "  \"add\": \"^1.0\", \"sub\": \"^1.0\"},"
    " \"root\": {\"type\": \"graph\", \"config\": {\"inputs\": [\"x\", \"cls\"],"
    "  \"nodes\": [\"flat: x\", \"tokens: flat\", \"tok: cls, x\", \"seq: tok, tokens\", \"first: seq\","
    "   \"half: first\", \"odd: seq\", \"avg: odd\", \"mx: seq\", \"sum: half, avg\", \"out: sum, mx\"],"
    "  \"outputs\": [\"out\"]},"
    "  \"children\": ["
    "   {\"name\": \"flat\", \"type\": \"view\", \"config\": {\"shape\": [0, 0, -1], \"from_input\": [0, 0, -1], \"from_dim\": [0, 1, -1]}},"
    "   {\"name\": \"tokens\", \"type\": \"permute\", \"config\": {\"dims\": [0, 2, 1]}},"
    "   {\"name\": \"tok\", \"type\": \"expand\", \"config\": {\"size\": [-1, -1, -1], \"from_input\": [1, -1, -1], \"from_dim\": [0, -1, -1]}},"
    "   {\"name\": \"seq\", \"type\": \"concat\", \"config\": {\"dim\": 1}},"
    "   {\"name\": \"first\", \"type\": \"getitem\", \"config\": {\"index\": [\":\", \"0\"]}},"
    "   {\"name\": \"half\", \"type\": \"mul\", \"config\": {\"other\": 0.5}},"
    "   {\"name\": \"odd\", \"type\": \"getitem\", \"config\": {\"index\": [\":\", \"1::2\"]}},"
    "   {\"name\": \"avg\", \"type\": \"mean\", \"config\": {\"dim\": 1}},"
    "   {\"name\": \"mx\", \"type\": \"amax\", \"config\": {\"dim\": [1]}},"
    "   {\"name\": \"sum\", \"type\": \"add\"}, {\"name\": \"out\", \"type\": \"sub\"}]}}";

static void test_graph_any_batch(void) {
    LEAK_CHECK_BEGIN();
    nnm_manifest *mf = NULL;
    nnm_module *g = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, k_vit_head, strlen(k_vit_head), NNM_MANIFEST_JSON, NULL, NULL, &mf),
                 NNM_OK);
    if (mf) CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    nnm_tensor *cls = tu_tf32(g_ctx, SHAPE(1, 1, 4), (const float[]){1, 2, 3, 4});
    for (int64_t b = 1; b <= 7; b += 3) {
        nnm_tensor *x = iota(4, (const int64_t[]){b, 4, 3, 3}), *in[2] = {x, cls}, *y = NULL;
        CHECK_STATUS(nnm_module_call(g, in, 2, &y, 1), NNM_OK);
        CU_ASSERT_TRUE(y != NULL && tu_shape_is(y, 2, (const int64_t[]){b, 4}));
        if (y && b == 1) { /* x[0, c] is 9c .. 9c + 8: seq rows 1..9; odd rows 1, 3, 5, 7, 9 */
            float v[4];
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 4), NNM_OK);
            for (int c = 0; c < 4; c++) /* 0.5 * cls + mean(9c + {0, 2, 4, 6, 8}) - max(cls, 9c + 8) */
                CU_ASSERT_TRUE(tu_near(v[c], 0.5 * (c + 1) + (9 * c + 4) - (c == 0 ? 8 : 9 * c + 8), 1e-6, 1e-5));
        }
        nnm_tensor_release(y);
        nnm_tensor_release(x);
    }
    nnm_tensor_release(cls);
    nnm_module_release(g);
    nnm_manifest_free(mf);
    LEAK_CHECK_END();
}

/* ---- add / mul: 1.0 manifests unchanged, 1.1 keys -------------------- */

static void test_add_mul_scalars(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *a = tu_tf32(g_ctx, SHAPE(3), (const float[]){1, 2, 3});
    nnm_tensor *b = tu_tf32(g_ctx, SHAPE(3), (const float[]){10, 20, 30});
    nnm_tensor *c3 = tu_tf32(g_ctx, SHAPE(1), (const float[]){100});
    nnm_tensor *in3[3] = {a, b, c3}, *in1[1] = {a}, *in2[2] = {a, b};
    nnm_tensor *y = run(made("add", NULL), in3, 3); /* 1.0: any number of inputs */
    check_tensor(y, SHAPE(3), (const float[]){111, 122, 133});
    nnm_tensor_release(y);
    y = run(made("mul", NULL), in1, 1); /* 1.0: one input is itself */
    CU_ASSERT_PTR_EQUAL(y, a);
    nnm_tensor_release(y);
    nnm_config *c = cfg_new();
    nnm_config_set_float(c, "other", 0.5);
    y = run(made("mul", c), in1, 1);
    check_tensor(y, SHAPE(3), (const float[]){0.5f, 1, 1.5f});
    nnm_tensor_release(y);
    c = cfg_new();
    nnm_config_set_float(c, "alpha", -2);
    y = run(made("add", c), in2, 2);
    check_tensor(y, SHAPE(3), (const float[]){-19, -38, -57});
    nnm_tensor_release(y);
    c = cfg_new();
    nnm_config_set_float(c, "other", 4);
    call_fails(made("add", c), in2, 2, 1, NNM_E_SHAPE, "add: with other, add takes 1 input");
    c = cfg_new();
    nnm_config_set_float(c, "alpha", 2);
    call_fails(made("add", c), in3, 3, 1, NNM_E_SHAPE, "add: with alpha, add takes 2 inputs");
    nnm_module *m = tu_module(g_ctx, "add@^1.1", NULL); /* the new minor is what a manifest can ask */
    CU_ASSERT_PTR_NOT_NULL(m);
    nnm_module_release(m);
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_tensor_release(c3);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("functional ops", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "bad configs name the op and the key", test_bad_configs);
    CU_add_test(s, "bad inputs name the op and the argument", test_bad_inputs);
    CU_add_test(s, "negative dims, steps, 0-d and empty tensors", test_values);
    CU_add_test(s, "comparisons with NaN, infinities, broadcasting", test_comparisons);
    CU_add_test(s, "dynamic sizes at two batch sizes", test_dynamic_sizes);
    CU_add_test(s, "add/mul: 1.0 unchanged, other and alpha", test_add_mul_scalars);
    CU_add_test(s, "a graph of ops runs at any batch size", test_graph_any_batch);
    return tu_run();
}
