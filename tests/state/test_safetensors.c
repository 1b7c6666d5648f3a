/* tests/state/test_safetensors.c - the safetensors reader and writer.
 *
 * Bad input: every malformed file is crafted byte by byte in a private temp
 * directory and must fail with a precise status and a message naming the file
 * and the field. Writer: round trips of every dtype, strided tensors, header
 * layout, argument errors, and crash safety: a child process rewriting a file
 * in a loop is SIGKILLed at chosen points of its write (it reports its
 * progress through a pipe; no timing) and the destination must always be the
 * complete last version, never a torn one; a
 * child whose writes fail (RLIMIT_FSIZE) must leave the old file and no temp
 * file behind.
 */
#include "state_test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Bad input                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct bad_case {
    const char *file;
    const char *header;
    size_t data_len;
    nnm_status want;
    const char *needle;
} bad_case;

static const bad_case bad_cases[] = {
    {"gap.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
     20, NNM_E_INVALID, "tensor 'b': gap of 4 bytes"},
    {"not_from_zero.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     NNM_E_INVALID, "tensor 'a': gap of 4 bytes"},
    {"overlap.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, NNM_E_INVALID, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"same_range.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, NNM_E_INVALID, "overlap"},
    {"trailing.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 10,
     NNM_E_INVALID, "2 trailing bytes after the last tensor"},
    {"trailing_no_tensors.st", "{}", 3, NNM_E_INVALID, "3 trailing bytes"},
    {"truncated_data.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", 12,
     NNM_E_INVALID, "tensor 'a': data_offsets [0, 24] run past the end of the data section (12"},
    {"size_mismatch.st",
     "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12,
     NNM_E_SHAPE,
     "tensor 'fc1.weight': data_offsets [0, 12] hold 12 bytes but shape [2, 3] of F32 needs 24"},
    /* 2^62 * 4 elements * 4 bytes wraps to 0 in 64 bits: must not pass as 0 bytes. */
    {"wrap_to_zero.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}", 0,
     NNM_E_LIMIT, "tensor 'a': shape [4611686018427387904, 4] of F32 overflows"},
    {"wrap_small.st",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,1,2],\"data_offsets\":[0,0]}}", 0,
     NNM_E_LIMIT, "overflows"},
    {"wrap_many_dims.st",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", 0,
     NNM_E_LIMIT, "overflows"},
    {"unknown_dtype.st", "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
     NNM_E_DTYPE, "tensor 'a': unknown dtype 'Q4_K'"},
    {"dtype_not_string.st", "{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     NNM_E_INVALID, "tensor 'a': field 'dtype' is not a string"},
    {"duplicate.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, NNM_E_INVALID, "duplicate key 'a'"},
    {"duplicate_meta_key.st", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, NNM_E_INVALID,
     "duplicate __metadata__ key 'k'"},
    {"duplicate_meta.st", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, NNM_E_INVALID,
     "duplicate key '__metadata__'"},
    {"missing_colon.st", "{\"a\" {}}", 0, NNM_E_INVALID, "expected ':' after a key"},
    {"missing_comma.st", "{\"__metadata__\":{} \"b\":{}}", 0, NNM_E_INVALID,
     "expected ',' or '}'"},
    {"unterminated.st", "{\"__metadata__\":{\"k\":\"v\"}", 0, NNM_E_INVALID,
     "header is not valid JSON"},
    {"unterminated_string.st", "{\"abc", 0, NNM_E_INVALID, "unterminated string"},
    {"bare_key.st", "{a:1}", 0, NNM_E_INVALID, "expected a string key"},
    {"duplicate_field.st",
     "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     NNM_E_INVALID, "duplicate"},
    {"meta_int.st", "{\"__metadata__\":{\"epoch\":3},\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                    "\"data_offsets\":[0,1]}}",
     1, NNM_E_TYPE, "__metadata__ key 'epoch': value is not a string"},
    {"meta_nested.st", "{\"__metadata__\":{\"x\":{\"y\":\"z\"}}}", 0, NNM_E_TYPE,
     "__metadata__ key 'x'"},
    {"meta_not_object.st", "{\"__metadata__\":\"v\"}", 0, NNM_E_INVALID,
     "__metadata__ is not a JSON object"},
    {"shape_negative.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
     NNM_E_INVALID, "tensor 'a': shape entry 0 is not a non-negative integer"},
    {"shape_float.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2, 2.0],\"data_offsets\":[0,16]}}",
     16, NNM_E_INVALID, "tensor 'a': shape entry 1 is not a non-negative integer"},
    {"shape_string.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
     NNM_E_INVALID, "shape entry 0"},
    {"shape_not_array.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
     NNM_E_INVALID, "tensor 'a': field 'shape' is not an array"},
    {"too_many_dims.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     NNM_E_LIMIT, "tensor 'a': shape has 9 dims, at most 8"},
    {"offsets_reversed.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
     NNM_E_INVALID, "tensor 'a': data_offsets [4, 0] end before they begin"},
    {"offsets_short.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1,
     NNM_E_INVALID, "field 'data_offsets' is not an array [begin, end]"},
    {"offsets_negative.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1,
     NNM_E_INVALID, "data_offsets entries are not non-negative integers"},
    {"offsets_huge.st",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,100000000000000000000]}}", 1,
     NNM_E_INVALID, "not valid JSON"},
    {"offsets_past_end.st",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904],"
     "\"data_offsets\":[0,4611686018427387904]}}",
     1, NNM_E_INVALID, "run past the end of the data section"},
    {"missing_dtype.st", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NNM_E_INVALID,
     "tensor 'a': field 'dtype' is missing"},
    {"missing_offsets.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, NNM_E_INVALID,
     "field 'data_offsets' is missing"},
    {"entry_not_object.st", "{\"a\":5}", 0, NNM_E_INVALID, "tensor 'a': entry is not a JSON object"},
    {"not_json.st", "{\"a\":}", 0, NNM_E_INVALID, "header is not valid JSON"},
    {"json_trailing_garbage.st", "{} x", 0, NNM_E_INVALID, "header is not valid JSON"},
    {"array_header.st", "[1,2]", 0, NNM_E_INVALID, "header does not start with '{'"},
    {"string_header.st", "\"{}\"", 0, NNM_E_INVALID, "does not start with '{'"},
    {"leading_space.st", " {}", 0, NNM_E_INVALID, "does not start with '{'"},
    {"nul_in_key.st", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     1, NNM_E_INVALID, "header is not valid JSON"},
    {"invalid_escape.st", "{\"a\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     1, NNM_E_INVALID, "header is not valid JSON"},
    {"nonutf8.st", "{\"caf\xe9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     NNM_E_INVALID, "header is not valid UTF-8 (byte 0xe9 at header offset 5)"},
    {"overlong.st", "{\"\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     NNM_E_INVALID, "not valid UTF-8 (byte 0xc0"},
    {"surrogate.st", "{\"\xed\xa0\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     1, NNM_E_INVALID, "not valid UTF-8"},
    {"cut_utf8.st", "{\"\xe2\x82", 0, NNM_E_INVALID, "not valid UTF-8"},
};

static void test_bad_headers(void) {
    LEAK_CHECK_BEGIN();
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        const char *p = tu_path(g_dir, c->file);
        CU_ASSERT_FATAL(craft(p, c->header, c->data_len));
        nnm_safetensors *st = (nnm_safetensors *)1;
        nnm_status got = nnm_safetensors_open(g_ctx, p, &st);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        if (got != c->want || !strstr(msg, c->needle) || !strstr(msg, c->file))
            fprintf(stderr, "\n  case %s: %s (want %s): \"%s\" (want \"%s\")\n", c->file,
                    nnm_status_name(got), nnm_status_name(c->want), msg, c->needle);
        CU_ASSERT_EQUAL(got, c->want);
        CU_ASSERT_PTR_NULL(st);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, c->needle));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, c->file)); /* names the file */
        nnm_safetensors_close(st);
    }
    LEAK_CHECK_END();
}

static nnm_status open_expect(const char *p, nnm_status want, const char *needle) {
    nnm_safetensors *st = (nnm_safetensors *)1;
    nnm_status got = nnm_safetensors_open(g_ctx, p, &st);
    CHECK_STATUS(got, want);
    if (needle) CHECK_MSG(needle);
    if (got == NNM_OK)
        nnm_safetensors_close(st);
    else
        CU_ASSERT_PTR_NULL(st);
    return got;
}

static void test_bad_lengths(void) {
    /* empty file, fewer than 8 bytes, header length past the end, huge lengths */
    const char *p = tu_path(g_dir, "len.st");
    CU_ASSERT_FATAL(tu_write_file(p, "", 0));
    open_expect(p, NNM_E_INVALID, "len.st: file is empty");
    CU_ASSERT_FATAL(tu_write_file(p, "\x02\0\0\0\0", 5));
    open_expect(p, NNM_E_INVALID, "file is 5 bytes, too short for the 8-byte header length");
    CU_ASSERT_FATAL(craft_n(p, 0, "", 0, 0));
    open_expect(p, NNM_E_INVALID, "header is empty");
    CU_ASSERT_FATAL(craft_n(p, 100, "{}", 2, 10));
    open_expect(p, NNM_E_INVALID, "header length 100 runs past the end of the file (20 bytes)");
    CU_ASSERT_FATAL(craft_n(p, 3, "{}", 2, 0)); /* one byte short */
    open_expect(p, NNM_E_INVALID, "runs past the end");
    CU_ASSERT_FATAL(craft_n(p, NNM_SAFETENSORS_MAX_HEADER + 1ull, "{}", 2, 0));
    open_expect(p, NNM_E_LIMIT, "header length 100000001 exceeds the limit of 100000000 bytes");
    CU_ASSERT_FATAL(craft_n(p, UINT64_MAX - 1, "{}", 2, 0));
    open_expect(p, NNM_E_LIMIT, "exceeds the limit");
    CU_ASSERT_FATAL(craft_n(p, 1ull << 63, "{}", 2, 0));
    open_expect(p, NNM_E_LIMIT, "exceeds the limit");
    /* a header length that covers the data too: trailing bytes become JSON garbage */
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    CU_ASSERT_FATAL(craft_n(p, strlen(h) + 2, h, strlen(h), 2));
    open_expect(p, NNM_E_INVALID, NULL);
}

static void test_bad_paths(void) {
    open_expect(g_dir, NNM_E_IO, "is a directory");
    open_expect(tu_path(g_dir, "does_not_exist.st"), NNM_E_IO,
                "does_not_exist.st: cannot open: No such file");
    open_expect("/dev/null", NNM_E_IO, "is not a regular file");
    nnm_safetensors *st = (nnm_safetensors *)1;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, NULL, &st), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT_EQUAL(nnm_safetensors_open(NULL, "x", &st), NNM_E_INVALID);
    CHECK_STATUS(nnm_safetensors_open(g_ctx, "x", NULL), NNM_E_INVALID);
    /* NULL handles are harmless */
    nnm_safetensors_close(NULL);
    CU_ASSERT_EQUAL(nnm_safetensors_count(NULL), 0);
    CU_ASSERT_EQUAL(nnm_safetensors_metadata_count(NULL), 0);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    CU_ASSERT_EQUAL(nnm_safetensors_entry(NULL, 0, &e), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_safetensors_find(NULL, "a", &e), NNM_E_INVALID);
}

/* A 100 MB-cap header full of nesting: the parser's depth limit answers. */
static void test_deep_nesting(void) {
    size_t depth = 100000;
    char *h = malloc(2 * depth + 16);
    CU_ASSERT_FATAL(h != NULL);
    size_t n = 0;
    n += (size_t)sprintf(h, "{\"a\":");
    for (size_t i = 0; i < depth; i++) h[n++] = '[';
    for (size_t i = 0; i < depth; i++) h[n++] = ']';
    h[n++] = '}';
    const char *p = tu_path(g_dir, "deep.st");
    CU_ASSERT_FATAL(craft_n(p, UINT64_MAX, h, n, 0));
    free(h);
    open_expect(p, NNM_E_INVALID, "not valid JSON");
}

/* Long hostile names are cut in messages, which stay bounded. */
static void test_long_name_message(void) {
    size_t len = 5000;
    char *h = malloc(len + 128);
    CU_ASSERT_FATAL(h != NULL);
    strcpy(h, "{\"");
    memset(h + 2, 'n', len);
    strcpy(h + 2 + len, "\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,4]}}");
    const char *p = tu_path(g_dir, "longname.st");
    CU_ASSERT_FATAL(craft(p, h, 4));
    free(h);
    open_expect(p, NNM_E_SHAPE, "nnnnnnnnnnnnnnnnnnnnnnn...': data_offsets [0, 4] hold 4 bytes");
    CU_ASSERT_TRUE(strlen(nnm_ctx_errmsg(g_ctx)) < 1024);
    /* control characters in names are not echoed raw */
    CU_ASSERT_FATAL(craft(p, "{\"a\\nb\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[3],"
                             "\"data_offsets\":[0,4]}}", 4));
    open_expect(p, NNM_E_SHAPE, "tensor 'a?b?[31m'");
}

/* ------------------------------------------------------------------------ */
/* Valid files                                                               */
/* ------------------------------------------------------------------------ */

static void test_valid_minimal(void) {
    LEAK_CHECK_BEGIN();
    const char *p = tu_path(g_dir, "min.st");
    nnm_safetensors *st = NULL;
    /* no tensors at all; padding spaces; metadata only */
    CU_ASSERT_FATAL(craft(p, "{}      ", 0));
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    CU_ASSERT_EQUAL(nnm_safetensors_count(st), 0);
    CU_ASSERT_EQUAL(nnm_safetensors_metadata_count(st), 0);
    nnm_safetensors_close(st);

    /* zero-sized tensors share an offset; a scalar; a bool; metadata;
     * unknown fields inside a tensor are ignored, like the reference */
    CU_ASSERT_FATAL(craft(p,
                          "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9\"},"
                          "\"z1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                          "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
                          "\"z2\":{\"dtype\":\"I64\",\"shape\":[5,0],\"data_offsets\":[8,8]},"
                          "\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[8,11],"
                          "\"extra\":[1]}}",
                          11));
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT_EQUAL(nnm_safetensors_count(st), 4);
    CU_ASSERT_EQUAL(nnm_safetensors_metadata_count(st), 2);
    const char *k, *v;
    CU_ASSERT_EQUAL(nnm_safetensors_metadata(st, 1, &k, &v), NNM_OK);
    CU_ASSERT_STRING_EQUAL(k, "note");
    CU_ASSERT_STRING_EQUAL(v, "caf\xc3\xa9");
    CHECK_STATUS(nnm_safetensors_metadata(st, 2, &k, &v), NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(k);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    /* offset order; ties by end then name */
    const char *order[] = {"z1", "s", "z2", "b"};
    for (uint32_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(nnm_safetensors_entry(st, i, &e), NNM_OK);
        CU_ASSERT_STRING_EQUAL(e.name, order[i]);
    }
    CHECK_STATUS(nnm_safetensors_entry(st, 4, &e), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_safetensors_find(st, "s", &e), NNM_OK);
    CU_ASSERT_STRING_EQUAL(e.dtype_name, "F64");
    CU_ASSERT_EQUAL(e.dtype.code, NNM_DTYPE_FLOAT);
    CU_ASSERT_EQUAL(e.dtype.bits, 64);
    CU_ASSERT_EQUAL(e.ndim, 0);
    CU_ASSERT_EQUAL(e.nbytes, 8);
    CU_ASSERT_EQUAL(((const unsigned char *)e.data)[0], 1); /* craft's pattern */
    CU_ASSERT_EQUAL(nnm_safetensors_find(st, "b", &e), NNM_OK);
    CU_ASSERT_EQUAL(e.dtype.code, NNM_DTYPE_BOOL);
    CU_ASSERT_EQUAL(e.dtype.bits, 8);
    CU_ASSERT_EQUAL(e.shape[0], 3);
    CU_ASSERT_EQUAL(((const unsigned char *)e.data)[0], (unsigned char)(8 * 7 + 1));
    CU_ASSERT_EQUAL(nnm_safetensors_find(st, "z2", &e), NNM_OK);
    CU_ASSERT_EQUAL(e.nbytes, 0);
    CU_ASSERT_EQUAL(e.shape[1], 0);
    CHECK_STATUS(nnm_safetensors_find(st, "nope", &e), NNM_E_NOT_FOUND);
    CHECK_MSG("no tensor named 'nope'");
    e.struct_size = 8;
    CHECK_STATUS(nnm_safetensors_entry(st, 0, &e), NNM_E_VERSION);
    /* the handle keeps the context alive */
    nnm_safetensors_close(st);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct dt_case {
    const char *name;
    nnm_dtype dt;
} dt_case;

static const dt_case dt_cases[] = {
    {"F64", {NNM_DTYPE_FLOAT, 64, 1}}, {"F32", {NNM_DTYPE_FLOAT, 32, 1}},
    {"F16", {NNM_DTYPE_FLOAT, 16, 1}}, {"BF16", {NNM_DTYPE_BFLOAT, 16, 1}},
    {"I64", {NNM_DTYPE_INT, 64, 1}},   {"I32", {NNM_DTYPE_INT, 32, 1}},
    {"I16", {NNM_DTYPE_INT, 16, 1}},   {"I8", {NNM_DTYPE_INT, 8, 1}},
    {"U64", {NNM_DTYPE_UINT, 64, 1}},  {"U32", {NNM_DTYPE_UINT, 32, 1}},
    {"U16", {NNM_DTYPE_UINT, 16, 1}},  {"U8", {NNM_DTYPE_UINT, 8, 1}},
    {"BOOL", {NNM_DTYPE_BOOL, 8, 1}},
};
#define N_DT (sizeof dt_cases / sizeof dt_cases[0])

static void fill_bytes(nnm_tensor *t, unsigned seed) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    size_t n = (size_t)nnm_tensor_numel(t) * ((d->dtype.bits + 7u) / 8u);
    unsigned char *p = (unsigned char *)d->data + d->byte_offset;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 13);
    if (d->dtype.code == NNM_DTYPE_BOOL)
        for (size_t i = 0; i < n; i++) p[i] &= 1;
}

static void test_write_roundtrip_dtypes(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *t[N_DT];
    const char *names[N_DT];
    char namebuf[N_DT][16];
    const int64_t shape[3] = {3, 1, 5};
    for (size_t i = 0; i < N_DT; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "t_%s", dt_cases[i].name);
        names[i] = namebuf[i];
        CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, dt_cases[i].dt,
                                    (int32_t)(i % 4), shape, &t[i]),
                     NNM_OK);
        fill_bytes(t[i], (unsigned)i);
    }
    const nnm_kv meta[] = {{"epoch", "7"}, {"nnmod_version", "ignored"}, {"best", "0.25"}};
    const char *p = tu_path(g_dir, "dtypes.st");
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, N_DT, names, t, 3, meta), NNM_OK);
    CU_ASSERT_EQUAL(dir_count(g_dir, ".tmp."), 0);

    /* layout: header padded to 8 with spaces, __metadata__ first, largest
     * element size first then by name (every tensor aligned to its size) */
    size_t flen;
    unsigned char *raw = tu_read_file(p, &flen);
    CU_ASSERT_FATAL(raw != NULL && flen >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    CU_ASSERT_EQUAL(hlen % 8, 0);
    CU_ASSERT_TRUE(8 + hlen <= flen);
    CU_ASSERT_EQUAL(raw[8], '{');
    CU_ASSERT_EQUAL(memcmp(raw + 8, "{\"__metadata__\":{", 17), 0);
    char *hdr = calloc(1, hlen + 1);
    CU_ASSERT_FATAL(hdr != NULL);
    memcpy(hdr, raw + 8, hlen);
    const char *pos_f64 = strstr(hdr, "\"t_F64\""), *pos_i64 = strstr(hdr, "\"t_I64\""),
               *pos_f32 = strstr(hdr, "\"t_F32\""), *pos_bool = strstr(hdr, "\"t_BOOL\""),
               *pos_u8 = strstr(hdr, "\"t_U8\"");
    CU_ASSERT_TRUE(pos_f64 && pos_i64 && pos_f32 && pos_bool && pos_u8);
    CU_ASSERT_TRUE(pos_f64 < pos_i64 && pos_i64 < pos_f32 && pos_f32 < pos_bool &&
                   pos_bool < pos_u8);
    free(hdr);
    free(raw);

    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT_EQUAL(nnm_safetensors_count(st), N_DT);
    for (size_t i = 0; i < N_DT; i++) {
        nnm_st_entry e;
        e.struct_size = sizeof e;
        CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(st, names[i], &e), NNM_OK);
        const nnm_tensor_desc *d = nnm_tensor_desc_get(t[i]);
        CU_ASSERT_STRING_EQUAL(e.dtype_name, dt_cases[i].name);
        CU_ASSERT_EQUAL(e.dtype.code, d->dtype.code);
        CU_ASSERT_EQUAL(e.dtype.bits, d->dtype.bits);
        CU_ASSERT_EQUAL(e.ndim, d->ndim);
        for (int32_t k = 0; k < e.ndim; k++) CU_ASSERT_EQUAL(e.shape[k], d->shape[k]);
        CU_ASSERT_EQUAL(e.nbytes, (uint64_t)nnm_tensor_numel(t[i]) * (d->dtype.bits / 8));
        CU_ASSERT_EQUAL(memcmp(e.data, (char *)d->data + d->byte_offset, e.nbytes), 0);
        CU_ASSERT_EQUAL((uintptr_t)e.data % (d->dtype.bits / 8), 0); /* aligned */
    }
    uint32_t nm = nnm_safetensors_metadata_count(st);
    CU_ASSERT_EQUAL(nm, 3);
    int seen_version = 0, seen_epoch = 0;
    for (uint32_t i = 0; i < nm; i++) {
        const char *k, *v;
        CU_ASSERT_EQUAL(nnm_safetensors_metadata(st, i, &k, &v), NNM_OK);
        if (!strcmp(k, "nnmod_version")) seen_version = !strcmp(v, nnm_version());
        if (!strcmp(k, "epoch")) seen_epoch = !strcmp(v, "7");
    }
    CU_ASSERT_TRUE(seen_version && seen_epoch);
    nnm_safetensors_close(st);
    for (size_t i = 0; i < N_DT; i++) nnm_tensor_release(t[i]);
    LEAK_CHECK_END();
}

typedef struct ext_buf {
    nnm_dlpack_tensor dl;
    int64_t shape[2], strides[2];
    float data[6];
} ext_buf;

static void ext_delete(nnm_dlpack_tensor *self) { free(self->manager_ctx); }

/* A transposed (non-contiguous) f32 view is written in row-major order. */
static void test_write_strided(void) {
    LEAK_CHECK_BEGIN();
    ext_buf *b = calloc(1, sizeof *b);
    CU_ASSERT_FATAL(b != NULL);
    for (int i = 0; i < 6; i++) b->data[i] = (float)i; /* [[0,1,2],[3,4,5]] */
    b->shape[0] = 3, b->shape[1] = 2;
    b->strides[0] = 1, b->strides[1] = 3; /* its transpose */
    b->dl.version.major = 1;
    b->dl.manager_ctx = b;
    b->dl.deleter = ext_delete;
    b->dl.dl_tensor.data = b->data;
    b->dl.dl_tensor.device = (nnm_device){NNM_DEVICE_CPU, 0};
    b->dl.dl_tensor.ndim = 2;
    b->dl.dl_tensor.dtype = NNM_F32;
    b->dl.dl_tensor.shape = b->shape;
    b->dl.dl_tensor.strides = b->strides;
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_from_dlpack(g_ctx, &b->dl, &t), NNM_OK);
    const char *name = "w.T";
    const char *p = tu_path(g_dir, "strided.st");
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, &name, &t, 0, NULL), NNM_OK);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(st, "w.T", &e), NNM_OK);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    CU_ASSERT_EQUAL(e.nbytes, sizeof want);
    CU_ASSERT_EQUAL(memcmp(e.data, want, sizeof want), 0);
    nnm_safetensors_close(st);

    /* a strided non-f32 tensor is refused, and nothing is written */
    ext_buf *b2 = calloc(1, sizeof *b2);
    CU_ASSERT_FATAL(b2 != NULL);
    *b2 = *b;
    b2->dl.manager_ctx = b2;
    b2->dl.dl_tensor.data = b2->data;
    b2->dl.dl_tensor.shape = b2->shape;
    b2->dl.dl_tensor.strides = b2->strides;
    b2->dl.dl_tensor.dtype = (nnm_dtype){NNM_DTYPE_INT, 32, 1};
    nnm_tensor *ti = NULL;
    CHECK_STATUS(nnm_tensor_from_dlpack(g_ctx, &b2->dl, &ti), NNM_OK);
    const char *p2 = tu_path(g_dir, "strided_i32.st");
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p2, 1, &name, &ti, 0, NULL), NNM_E_UNSUPPORTED);
    CHECK_MSG("non-contiguous I32");
    CU_ASSERT_EQUAL(access(p2, F_OK), -1);
    nnm_tensor_release(ti);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void test_write_errors(void) {
    LEAK_CHECK_BEGIN();
    const int64_t shape[1] = {2};
    nnm_tensor *a = NULL, *bad = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 1, shape, NULL, &a), NNM_OK);
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0},
                                (nnm_dtype){NNM_DTYPE_FLOAT, 8, 1}, 1, shape, &bad),
                 NNM_OK);
    const char *p = tu_path(g_dir, "errors.st");
    nnm_tensor *two[2] = {a, a};
    const char *dup[2] = {"x", "x"};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 2, dup, two, 0, NULL), NNM_E_EXISTS);
    CHECK_MSG("tensor name 'x' is given twice");
    const char *meta_name[1] = {"__metadata__"};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, meta_name, &a, 0, NULL), NNM_E_INVALID);
    CHECK_MSG("'__metadata__' cannot name a tensor");
    const char *bad_utf8[1] = {"caf\xe9"};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, bad_utf8, &a, 0, NULL), NNM_E_INVALID);
    CHECK_MSG("is not valid UTF-8");
    const char *name[1] = {"f8"};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, name, &bad, 0, NULL), NNM_E_DTYPE);
    CHECK_MSG("tensor 'f8': dtype (code 2, bits 8, lanes 1) has no safetensors name");
    const nnm_kv dupmeta[2] = {{"k", "1"}, {"k", "2"}};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 0, NULL, NULL, 2, dupmeta), NNM_E_EXISTS);
    CHECK_MSG("metadata key 'k' is given twice");
    const nnm_kv nullmeta[1] = {{"k", NULL}};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 0, NULL, NULL, 1, nullmeta), NNM_E_INVALID);
    const nnm_kv badmeta[1] = {{"k", "\xff"}};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 0, NULL, NULL, 1, badmeta), NNM_E_INVALID);
    CHECK_MSG("metadata 'k': value is not valid UTF-8");
    CHECK_STATUS(nnm_safetensors_write(g_ctx, NULL, 0, NULL, NULL, 0, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, NULL, &a, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_safetensors_write(NULL, p, 0, NULL, NULL, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(access(p, F_OK), -1); /* none of the above wrote anything */
    /* a directory as the destination; a missing directory */
    const char *ok_name[1] = {"a"};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, g_dir, 1, ok_name, &a, 0, NULL), NNM_E_IO);
    CHECK_MSG("is a directory");
    CHECK_STATUS(
        nnm_safetensors_write(g_ctx, tu_path(g_dir, "no/such/dir.st"), 1, ok_name, &a, 0, NULL),
        NNM_E_IO);
    CHECK_MSG("cannot create a temporary file beside it: No such file or directory");
    CU_ASSERT_EQUAL(dir_count(g_dir, ".tmp."), 0);
    /* empty state: a valid file with only metadata */
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 0, NULL, NULL, 0, NULL), NNM_OK);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    CU_ASSERT_EQUAL(nnm_safetensors_count(st), 0);
    CU_ASSERT_EQUAL(nnm_safetensors_metadata_count(st), 1);
    nnm_safetensors_close(st);
    nnm_tensor_release(a);
    nnm_tensor_release(bad);
    LEAK_CHECK_END();
}

/* Overwriting replaces the file; no temp file is left. */
static void test_write_replace(void) {
    LEAK_CHECK_BEGIN();
    const char *p = tu_path(g_dir, "replace.st");
    CU_ASSERT_FATAL(tu_write_file(p, "old contents", 12));
    const int64_t shape[1] = {3};
    const float v[3] = {1, 2, 3};
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 1, shape, v, &t), NNM_OK);
    const char *name = "v";
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 1, &name, &t, 0, NULL), NNM_OK);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &st), NNM_OK);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    CU_ASSERT_EQUAL(nnm_safetensors_find(st, "v", &e), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(e.data, v, sizeof v), 0);
    nnm_safetensors_close(st);
    CU_ASSERT_EQUAL(dir_count(g_dir, "replace.st"), 1);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Crash safety                                                              */
/* ------------------------------------------------------------------------ */

#define CRASH_ELEMS (4u << 20) /* 16 MB of f32 per version */

/* Writes version `k` of the crash file: a tensor filled with k, and k in the
 * metadata. Returns the status. */
static nnm_status write_version(nnm_ctx *ctx, const char *p, nnm_tensor *t, int k) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    float *f = (float *)d->data;
    for (size_t i = 0; i < CRASH_ELEMS; i++) f[i] = (float)k;
    char kb[16];
    snprintf(kb, sizeof kb, "%d", k);
    const nnm_kv meta[1] = {{"version", kb}};
    const char *name = "big";
    return nnm_safetensors_write(ctx, p, 1, &name, &t, 1, meta);
}

/* The file is complete and self-consistent; returns its version or -1. */
static int check_version(const char *p) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, p, &st) != NNM_OK) {
        fprintf(stderr, "\n  torn file: %s\n", nnm_ctx_errmsg(g_ctx));
        return -1;
    }
    int k = -1;
    const char *key, *val;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++)
        if (nnm_safetensors_metadata(st, i, &key, &val) == NNM_OK && !strcmp(key, "version"))
            k = atoi(val);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    if (k < 0 || nnm_safetensors_find(st, "big", &e) != NNM_OK ||
        e.nbytes != CRASH_ELEMS * sizeof(float)) {
        nnm_safetensors_close(st);
        return -1;
    }
    const unsigned char *b = e.data;
    for (size_t i = 0; i < CRASH_ELEMS; i += 4099) { /* sample the whole range */
        float f;
        memcpy(&f, b + i * 4, 4);
        if (f != (float)k) k = -1;
    }
    float last;
    memcpy(&last, b + (CRASH_ELEMS - 1) * 4, 4);
    if (last != (float)k) k = -1;
    nnm_safetensors_close(st);
    return k;
}

/* The kill test synchronises on the writer's progress, never on time, so it
 * proves the same thing on a fast idle machine and a slow loaded one. The
 * writer's tensors live on "stepdev", a device (registered for the CUDA
 * device type in a context of the test's own) whose memory is plain host
 * memory and whose memcpy, which the writer calls to copy each tensor to the
 * host just before writing it, tells the parent through a pipe where the
 * writer is and waits for the parent's word. The parent answers "go on" or
 * kills the writer right there, so each kill lands at a chosen point: before
 * a write begins (no temp file), or before tensor i's bytes, with the temp
 * file holding the header and i tensors. */
#define STEP_TENSORS 4
#define STEP_ELEMS (CRASH_ELEMS / STEP_TENSORS)

static int g_report_fd = -1, g_go_fd = -1; /* set in the writer (child) only */

static void step_wait(char what) {
    char go;
    if (g_report_fd < 0) return;
    if (write(g_report_fd, &what, 1) != 1 || read(g_go_fd, &go, 1) != 1) _exit(6);
}

static nnm_status sd_init(nnm_env *env, void **state) {
    (void)env;
    *state = NULL;
    return NNM_OK;
}
static void sd_shutdown(void *state) { (void)state; }
static nnm_status sd_alloc(nnm_env *env, void *state, int32_t dev, size_t bytes, void **ptr) {
    (void)state, (void)dev;
    *ptr = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return *ptr ? NNM_OK : env->host->set_error(env, NNM_E_NOMEM, "stepdev: out of memory");
}
static void sd_free(void *state, int32_t dev, void *ptr) {
    (void)state, (void)dev;
    free(ptr);
}
static nnm_status sd_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src,
                            nnm_device sdev, size_t bytes) {
    (void)env, (void)state, (void)dd, (void)sdev;
    step_wait('t');
    memcpy(dst, src, bytes);
    return NNM_OK;
}
static const nnm_backend_vtable sd_vt = {
    .struct_size = sizeof(nnm_backend_vtable),
    .name = "stepdev",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = sd_init,
    .shutdown = sd_shutdown,
    .alloc = sd_alloc,
    .free = sd_free,
    .memcpy = sd_memcpy,
};
static const nnm_backend_vtable *const sd_backends[] = {&sd_vt};
static const nnm_plugin_desc sd_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "stepdev",
    .n_backends = 1,
    .backends = sd_backends,
};

/* Version k: STEP_TENSORS tensors t0.. filled with k + i / 8, k in metadata. */
static nnm_status step_write(nnm_ctx *ctx, const char *p, nnm_tensor *const *ts, int k) {
    static const char *const names[STEP_TENSORS] = {"t0", "t1", "t2", "t3"};
    for (int i = 0; i < STEP_TENSORS; i++) {
        float *f = (float *)nnm_tensor_desc_get(ts[i])->data;
        for (size_t j = 0; j < STEP_ELEMS; j++) f[j] = (float)k + (float)i / 8;
    }
    char kb[16];
    snprintf(kb, sizeof kb, "%d", k);
    const nnm_kv meta[1] = {{"version", kb}};
    return nnm_safetensors_write(ctx, p, STEP_TENSORS, names, ts, 1, meta);
}

/* The file is complete and self-consistent; returns its version or -1. */
static int step_check(const char *p) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, p, &st) != NNM_OK) {
        fprintf(stderr, "\n  torn file: %s\n", nnm_ctx_errmsg(g_ctx));
        return -1;
    }
    int k = -1;
    const char *key, *val;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++)
        if (nnm_safetensors_metadata(st, i, &key, &val) == NNM_OK && !strcmp(key, "version"))
            k = atoi(val);
    for (int i = 0; i < STEP_TENSORS && k >= 0; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        nnm_st_entry e;
        e.struct_size = sizeof e;
        if (nnm_safetensors_find(st, name, &e) != NNM_OK || e.nbytes != STEP_ELEMS * sizeof(float)) {
            k = -1;
            break;
        }
        const unsigned char *b = e.data;
        float want = (float)k + (float)i / 8, f;
        for (size_t j = 0; j < STEP_ELEMS && k >= 0; j += 4099) { /* the whole range */
            memcpy(&f, b + j * 4, 4);
            if (f != want) k = -1;
        }
        memcpy(&f, b + (STEP_ELEMS - 1) * 4, 4);
        if (f != want) k = -1;
    }
    nnm_safetensors_close(st);
    return k;
}

static void remove_temps(const char *needle) {
    DIR *d = opendir(g_dir);
    struct dirent *de;
    char q[512];
    while (d && (de = readdir(d)) != NULL)
        if (strstr(de->d_name, needle)) {
            snprintf(q, sizeof q, "%s/%s", g_dir, de->d_name);
            unlink(q);
        }
    if (d) closedir(d);
}

static void test_crash_safety_kill(void) {
    const char *p = tu_path(g_dir, "crash.st");
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_register_static(ctx, &sd_desc, "test_safetensors"), NNM_OK);
    nnm_tensor *ts[STEP_TENSORS] = {0};
    const int64_t shape[1] = {STEP_ELEMS};
    for (int i = 0; i < STEP_TENSORS; i++)
        CU_ASSERT_EQUAL_FATAL(nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CUDA, 0}, NNM_F32, 1,
                                             shape, &ts[i]), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(step_write(ctx, p, ts, 0), NNM_OK);
    CU_ASSERT_EQUAL(step_check(p), 0);
    /* Each round lets the writer finish one version, then kills it at point
     * `target` of the next: 0 = before the write starts, i = before tensor
     * i - 1's bytes. Every point, twice. */
    int last = 0, killed_mid = 0, rounds = 2 * (STEP_TENSORS + 1);
    for (int r = 0; r < rounds; r++) {
        int target = r % (STEP_TENSORS + 1);
        int report[2], go[2];
        CU_ASSERT_FATAL(pipe(report) == 0 && pipe(go) == 0);
        fflush(NULL);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(report[0]);
            close(go[1]);
            g_report_fd = report[1];
            g_go_fd = go[0];
            for (int k = last + 1;; k++) { /* rewrite forever, rising versions */
                step_wait('v');
                if (step_write(ctx, p, ts, k) != NNM_OK) _exit(3);
            }
        }
        close(report[1]);
        close(go[0]);
        int version = 0, point = 0, killed = 0; /* version: 1 = last + 1, ... */
        char what;
        while (!killed && read(report[0], &what, 1) == 1) {
            if (what == 'v') {
                version++;
                point = 0;
            } else {
                point++;
            }
            if (version == 2 && point == target) {
                kill(pid, SIGKILL);
                killed = 1;
            } else if (write(go[1], "g", 1) != 1) {
                break;
            }
        }
        close(report[0]);
        close(go[1]);
        if (!killed) kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CU_ASSERT_TRUE(killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* exactly the version that completed: never torn, never older */
        int k = step_check(p);
        if (k != last + 1)
            fprintf(stderr, "\n  round %d (point %d): version %d, want %d\n", r, target, k,
                    last + 1);
        CU_ASSERT_EQUAL(k, last + 1);
        /* killed mid-write: its temp file is there (never the destination) */
        int temps = dir_count(g_dir, "crash.st.tmp.");
        CU_ASSERT_EQUAL(temps, target > 0 ? 1 : 0);
        if (target > 0 && temps > 0) killed_mid++;
        remove_temps("crash.st.tmp.");
        if (k > last) last = k;
    }
    CU_ASSERT_EQUAL(killed_mid, 2 * STEP_TENSORS);
    for (int i = 0; i < STEP_TENSORS; i++) nnm_tensor_release(ts[i]);
    nnm_ctx_free(ctx);
}

/* A writer whose writes fail (file size limit) leaves the old file intact
 * and removes its temp file. */
static void test_crash_safety_write_error(void) {
    const char *p = tu_path(g_dir, "efbig.st");
    const int64_t shape[1] = {CRASH_ELEMS};
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 1, shape, NULL, &t), NNM_OK);
    CU_ASSERT_FATAL(t != NULL);
    CHECK_STATUS(write_version(g_ctx, p, t, 5), NNM_OK);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1u << 20, 1u << 20};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(4);
        nnm_status st = write_version(g_ctx, p, t, 6);
        const char *m = nnm_ctx_errmsg(g_ctx);
        _exit(st == NNM_E_IO && strstr(m, "efbig.st: writing tensor 'big': File too large") ? 0
                                                                                           : 5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(check_version(p), 5);
    CU_ASSERT_EQUAL(dir_count(g_dir, "efbig.st.tmp."), 0);
    nnm_tensor_release(t);
}

static CU_pSuite add_suite(void) {
    CU_pSuite s = tu_suite("safetensors", state_suite_init, state_suite_clean);
    if (!s) return NULL;
    CU_add_test(s, "bad headers", test_bad_headers);
    CU_add_test(s, "bad lengths", test_bad_lengths);
    CU_add_test(s, "bad paths", test_bad_paths);
    CU_add_test(s, "deep nesting", test_deep_nesting);
    CU_add_test(s, "long names in messages", test_long_name_message);
    CU_add_test(s, "valid minimal files", test_valid_minimal);
    CU_add_test(s, "write/read every dtype", test_write_roundtrip_dtypes);
    CU_add_test(s, "write strided", test_write_strided);
    CU_add_test(s, "write errors", test_write_errors);
    CU_add_test(s, "write replaces", test_write_replace);
    CU_add_test(s, "crash safety: SIGKILL mid-write", test_crash_safety_kill);
    CU_add_test(s, "crash safety: write error", test_crash_safety_write_error);
    return s;
}

int main(void) { return add_suite() != NULL ? tu_run() : 1; }
