/* tests/hostile/test_hostile_limits.c - session 9: sizes that come from a
 * config (arange, full, repeat, expand, view, chunk, split, narrow,
 * getitem, pad, the padding layers, upsample, pixel_shuffle) set to what no
 * machine holds or past int64, and config strings with control bytes
 * repeated in messages. Each must end in a clean status and a message:
 * never an attempt to allocate terabytes (ASan aborts on those, a kernel
 * that overcommits kills the process later), never a signed overflow
 * (the suite runs under ASan/UBSan), never a terminal escape in a message. */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) {
    return tu_ctx_new(&g_ctx);
}

static int suite_clean(void) {
    return tu_ctx_free(&g_ctx);
}

#define SHAPE(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define INTS(...) (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)

static nnm_config *cfg_new(void) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    return c;
}

/* The module, or NULL (printed); frees cfg. */
static nnm_module *made(const char *layer, nnm_config *cfg) {
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

/* nnm_module_create fails with `want` and a message containing needle; frees cfg. */
static void create_fails(const char *layer, nnm_config *cfg, nnm_status want, const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
    nnm_config_free(cfg);
}

/* The call fails with `want` and needle and leaves its output NULL. */
static void call_fails(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_status want, const char *needle) {
    nnm_tensor *out[4] = {0};
    if (m == NULL) return;
    CHECK_ERROR(nnm_module_call(m, in, n_in, out, 1), want, needle);
    CU_ASSERT_PTR_NULL(out[0]);
    nnm_tensor_release(out[0]);
}

/* The call succeeds with an output of `ndim` dims `shape`. */
static void call_shape(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, uint32_t n_out, int32_t ndim,
                       const int64_t *shape) {
    nnm_tensor *out[8] = {0};
    if (m == NULL) return;
    nnm_status st = nnm_module_call(m, in, n_in, out, n_out);
    if (st != NNM_OK) fprintf(stderr, "\n  call: %s: %s\n", nnm_status_name(st), nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st == NNM_OK) CU_ASSERT_TRUE(tu_shape_is(out[0], ndim, shape));
    for (uint32_t i = 0; i < n_out; i++) nnm_tensor_release(out[i]);
}

static nnm_tensor *zeros(int32_t ndim, const int64_t *shape) {
    return tu_tf32(g_ctx, ndim, shape, NULL);
}

/* No C0/DEL/C1 control character in the context's message (they are written \\xHH). */
static int msg_is_clean(void) {
    const unsigned char *m = (const unsigned char *)nnm_ctx_errmsg(g_ctx);
    for (size_t i = 0; m[i]; i++)
        if (m[i] < 0x20 || m[i] == 0x7f || (m[i] == 0xC2 && m[i + 1] >= 0x80 && m[i + 1] <= 0x9F)) {
            fprintf(stderr, "\n  control byte 0x%02x at %zu in \"%s\"\n", m[i], i, (const char *)m);
            return 0;
        }
    return 1;
}

/* ---- config strings repeated in messages ---------------------------------------- */

static void test_messages_escaped(void) {
    LEAK_CHECK_BEGIN();
    /* upsample's mode, conv's padding_mode, getitem's index, to's dtype:
     * each repeats the string it refuses */
    const char *evil = "\x1b]0;pwned\x07\x1b[2J\r\nnearest\xc2\x9b" "31m";
    nnm_config *c = cfg_new();
    nnm_config_set_str(c, "mode", evil);
    nnm_config_set_int(c, "size", 4);
    create_fails("upsample", c, NNM_E_INVALID, "got \"\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\x0anearest\\xc2\\x9b31m\"");
    CU_ASSERT_TRUE(msg_is_clean());
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){evil}, 1);
    create_fails("getitem", c, NNM_E_INVALID, "getitem: index[0] = \"\\x1b]0;pwned");
    CU_ASSERT_TRUE(msg_is_clean());
    c = cfg_new();
    nnm_config_set_str(c, "dtype", evil);
    create_fails("to", c, NNM_E_DTYPE, "to: dtype \"\\x1b]0;pwned");
    CU_ASSERT_TRUE(msg_is_clean());
    /* an application's own message goes the same way */
    nnm_ctx_set_error(g_ctx, NNM_E_INVALID, "file %s", "a\nb\x1b[0m");
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(g_ctx), "file a\\x0ab\\x1b[0m");
    /* a UTF-8 sequence cut by the message's length is dropped, not left half */
    char longs[1100];
    memset(longs, 'a', sizeof longs);
    memcpy(longs + 1021, "\xe2\x82\xac", 3); /* the euro sign across the 1023-byte cut */
    longs[sizeof longs - 1] = 0;
    nnm_ctx_set_error(g_ctx, NNM_E_INVALID, "%s", longs);
    const char *m = nnm_ctx_errmsg(g_ctx);
    CU_ASSERT_EQUAL(strlen(m), 1021);
    LEAK_CHECK_END();
}

/* ---- sizes no machine holds --------------------------------------------------------- */

static void test_arange_full_huge(void) {
    LEAK_CHECK_BEGIN();
    /* 5e11 elements: under arange's old 1e12 bound, 4 TB of int64 */
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "end", 500000000000LL);
    nnm_module *m = made("arange", c);
    call_fails(m, NULL, 0, NNM_E_NOMEM, "arange: 500000000000 elements");
    nnm_module_release(m);
    /* full: 10^12 f32 (4 TB) and a size whose product passes int64 */
    c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(1000000, 1000000));
    nnm_config_set_float(c, "fill_value", 1.0);
    m = made("full", c);
    call_fails(m, NULL, 0, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(INT64_MAX / 2, 4));
    nnm_config_set_float(c, "fill_value", 1.0);
    m = made("full", c);
    call_fails(m, NULL, 0, NNM_E_LIMIT, "tensor size overflows");
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_repeat_expand_huge(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = zeros(SHAPE(2, 3));
    nnm_config *c = cfg_new();
    nnm_config_set_ints(c, "repeats", INTS(1000000000000LL, 1));
    nnm_module *m = made("repeat", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_ints(c, "repeats", INTS(INT64_MAX, INT64_MAX));
    m = made("repeat", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_LIMIT, "tensor size overflows");
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(1000000000000LL, 2, 3));
    m = made("expand", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- int64 arithmetic on config integers ----------------------------------------- */

static void test_shape_arith_overflow(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = zeros(SHAPE(4, 6));
    /* view: the product of the given dims passes int64 */
    nnm_config *c = cfg_new();
    nnm_config_set_ints(c, "shape", INTS(1LL << 40, 1LL << 40, -1));
    nnm_module *m = made("view", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_SHAPE, "is invalid for input of size 24");
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_ints(c, "shape", INTS(1LL << 40, 1LL << 40, 0, -1));
    m = made("reshape", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_SHAPE, "is invalid for input of size 24");
    nnm_module_release(m);
    /* chunk and split with counts near int64's end: one piece each, as torch */
    c = cfg_new();
    nnm_config_set_int(c, "chunks", INT64_MAX);
    m = made("chunk", c);
    call_shape(m, (nnm_tensor *[]){x}, 1, 4, SHAPE(1, 6));
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_int(c, "split_size_or_sections", INT64_MAX);
    m = made("split", c);
    call_shape(m, (nnm_tensor *[]){x}, 1, 1, SHAPE(4, 6));
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_ints(c, "split_size_or_sections", INTS(INT64_MAX, INT64_MAX, 2));
    m = made("split", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_SHAPE, "split_with_sizes expects split_sizes to sum exactly to 4");
    nnm_module_release(m);
    /* unflatten: sizes multiplying past int64 */
    c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    nnm_config_set_ints(c, "unflattened_size", INTS(1LL << 40, 1LL << 40, -1));
    m = made("unflatten", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_SHAPE, "unflatten: provided sizes don't multiply up to the size of dim 1");
    nnm_module_release(m);
    /* narrow: start + length past int64 */
    c = cfg_new();
    nnm_config_set_int(c, "dim", 0);
    nnm_config_set_int(c, "start", 1);
    nnm_config_set_int(c, "length", INT64_MAX);
    m = made("narrow", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_SHAPE, "exceeds dimension size (4)");
    nnm_module_release(m);
    /* getitem: a step near int64's end takes the first element */
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"1:4:9223372036854775807"}, 1);
    m = made("getitem", c);
    call_shape(m, (nnm_tensor *[]){x}, 1, 1, SHAPE(1, 6));
    nnm_module_release(m);
    /* pad: amounts whose sum with the size passes int64 */
    c = cfg_new();
    nnm_config_set_ints(c, "pad", INTS(INT64_MAX, 1));
    create_fails("pad", c, NNM_E_LIMIT, "pad: pad[0] = 9223372036854775807");
    c = cfg_new();
    nnm_config_set_ints(c, "pad", INTS(-INT64_MAX, -INT64_MAX));
    create_fails("pad", c, NNM_E_LIMIT, "pad: pad[0] = -9223372036854775807");
    c = cfg_new();
    nnm_config_set_ints(c, "pad", INTS(1LL << 40, 0)); /* 2^40 * 4 rows of f32: 16 TB */
    m = made("pad", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

static void test_resample_huge(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = zeros(SHAPE(1, 1, 4));
    /* replication/reflection padding: a padding past int64 with the size,
     * and one whose index table is 8 TB */
    nnm_config *c = cfg_new();
    nnm_config_set_ints(c, "padding", INTS(INT64_MAX, INT64_MAX));
    create_fails("replication_pad1d", c, NNM_E_LIMIT, "replication_pad1d: padding[0] = 9223372036854775807");
    c = cfg_new();
    nnm_config_set_ints(c, "padding", INTS(0, 1LL << 40));
    nnm_module *m = made("replication_pad1d", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    /* upsample to 2^37 positions: 4 taps of 12 bytes each, 6 TB of tables */
    c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(1LL << 37));
    nnm_config_set_str(c, "mode", "linear");
    m = made("upsample", c);
    call_fails(m, (nnm_tensor *[]){x}, 1, NNM_E_NOMEM, "more than this machine's memory");
    nnm_module_release(m);
    /* conv3d: three kernel dims of 2^24 (each in bounds) multiply past int64 */
    c = cfg_new();
    nnm_config_set_int(c, "in_channels", 1);
    nnm_config_set_int(c, "out_channels", 1);
    nnm_config_set_ints(c, "kernel_size", INTS(1LL << 24, 1LL << 24, 1LL << 24));
    create_fails("conv3d", c, NNM_E_LIMIT, "conv3d: weight too large");
    /* lstm: 4 * hidden_size past int64 */
    c = cfg_new();
    nnm_config_set_int(c, "input_size", 2);
    nnm_config_set_int(c, "hidden_size", INT64_MAX / 2);
    create_fails("lstm", c, NNM_E_LIMIT, "lstm: input_size 2 or hidden_size 4611686018427387903 is more than 2^40");
    /* pixel_shuffle: r * r past int64 */
    c = cfg_new();
    nnm_config_set_int(c, "upscale_factor", 1LL << 32);
    create_fails("pixel_shuffle", c, NNM_E_LIMIT, "upscale_factor 4294967296 is too large");
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- DLPack imports that lie -------------------------------------------------------- */

static int g_deleted;
static void count_delete(nnm_dlpack_tensor *self) {
    (void)self;
    g_deleted++;
}

static nnm_status import(void *data, uint64_t byte_offset, const int64_t *shape, int32_t ndim, nnm_tensor **out) {
    static nnm_dlpack_tensor dl;
    memset(&dl, 0, sizeof dl);
    dl.version.major = 1;
    dl.deleter = count_delete;
    dl.dl_tensor.data = data;
    dl.dl_tensor.device = (nnm_device){NNM_DEVICE_CPU, 0};
    dl.dl_tensor.ndim = ndim;
    dl.dl_tensor.dtype = (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1};
    dl.dl_tensor.shape = (int64_t *)shape;
    dl.dl_tensor.byte_offset = byte_offset;
    return nnm_tensor_from_dlpack(g_ctx, &dl, out);
}

static void test_dlpack_lies(void) {
    LEAK_CHECK_BEGIN();
    static const int64_t four[1] = {4}, none[1] = {0};
    static float buf[8];
    nnm_tensor *t = NULL;
    g_deleted = 0;
    /* 16 bytes of elements at NULL: every op would dereference it */
    CHECK_ERROR(import(NULL, 0, four, 1, &t), NNM_E_INVALID, "16 bytes of elements at a NULL data pointer");
    CU_ASSERT_PTR_NULL(t);
    /* f32 elements 2 bytes into a float */
    CHECK_ERROR(import(buf, 2, four, 1, &t), NNM_E_INVALID, "is not aligned to its 4-byte elements");
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT_EQUAL(g_deleted, 2); /* the deleter runs on failure too */
    /* an empty tensor may have NULL data; ops on it give empty results */
    CHECK_STATUS(import(NULL, 0, none, 1, &t), NNM_OK);
    nnm_config *c = cfg_new();
    nnm_module *m = made("exp", c);
    call_shape(m, (nnm_tensor *[]){t}, 1, 1, 1, none);
    nnm_module_release(m);
    nnm_tensor_release(t);
    CU_ASSERT_EQUAL(g_deleted, 3);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("hostile_limits", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "config strings in messages: control bytes escaped", test_messages_escaped);
    CU_add_test(s, "arange and full of terabytes", test_arange_full_huge);
    CU_add_test(s, "repeat and expand of terabytes", test_repeat_expand_huge);
    CU_add_test(s, "view, chunk, split, narrow, getitem, pad past int64", test_shape_arith_overflow);
    CU_add_test(s, "padding layers, upsample, pixel_shuffle past memory", test_resample_huge);
    CU_add_test(s, "DLPack imports: NULL data, misaligned elements", test_dlpack_lies);
    return tu_run();
}
