/* tests/checkpoint/test_sha256.c - the runtime's SHA-256 (runtime/sha256.c,
 * compiled into this test because libnnmod hides its nnm__ symbols).
 *
 * FIPS 180-4 / NIST CAVS vectors ("", "abc", the 448- and 896-bit messages,
 * one million 'a' fed in odd-sized chunks), padding boundaries (lengths
 * 55..128, digests from Python's hashlib), chunking independence, and file
 * digests (empty, small, larger than the read chunk, missing, a directory),
 * and nnm_manifest_hash as documented: the SHA-256 of the manifest's msgpack
 * encoding (it streams that encoding through the hash without a buffer).
 */
#include "test_util.h"

#include "internal.h"

/* sha256.c reports through nnm__error, which lives (hidden) in libnnmod:
 * this one forwards to the public setter. */
nnm_status nnm__error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...) {
    char msg[NNM__ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nnm_ctx_set_error(ctx, code, "%s", msg);
}

static nnm_ctx *g_ctx;
static char g_dir[64];

static int suite_init(void) {
    if (tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_sha_") != 0) return 1;
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    return nnm_ctx_new(&o, &g_ctx) != NNM_OK;
}

static int suite_clean(void) {
    tu_ctx_free(&g_ctx);
    tu_dir_remove_all(g_dir);
    return 0;
}

static void hex_of(const void *data, size_t n, char out[65]) {
    nnm__sha256 s;
    uint8_t d[32];
    nnm__sha256_init(&s);
    nnm__sha256_update(&s, data, n);
    nnm__sha256_final(&s, d);
    nnm__sha256_hex(d, out);
}

#define CHECK_HEX(got, want)                                                             \
    do {                                                                                 \
        if (strcmp((got), (want)) != 0)                                                  \
            fprintf(stderr, "\n  %s:%d: got %s\n  want %s\n", __FILE__, __LINE__, (got),  \
                    (want));                                                             \
        CU_ASSERT_STRING_EQUAL((got), (want));                                           \
    } while (0)

static void test_nist_vectors(void) {
    char h[65];
    hex_of("", 0, h);
    CHECK_HEX(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of(NULL, 0, h); /* NULL with length 0 is allowed */
    CHECK_HEX(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, h);
    CHECK_HEX(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CU_ASSERT_EQUAL(strlen(m448) * 8, 448);
    hex_of(m448, strlen(m448), h);
    CHECK_HEX(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CU_ASSERT_EQUAL(strlen(m896) * 8, 896);
    hex_of(m896, strlen(m896), h);
    CHECK_HEX(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* One million 'a', fed in chunks of odd, varying sizes (1, 3, 5, ..., 127). */
static void test_million_a_chunked(void) {
    static char a[128];
    memset(a, 'a', sizeof a);
    nnm__sha256 s;
    nnm__sha256_init(&s);
    size_t left = 1000000, k = 0;
    while (left) {
        size_t n = 2 * (k++ % 64) + 1;
        if (n > left) n = left;
        nnm__sha256_update(&s, a, n);
        nnm__sha256_update(&s, a, 0); /* empty updates change nothing */
        left -= n;
    }
    uint8_t d[32];
    char h[65];
    nnm__sha256_final(&s, d);
    nnm__sha256_hex(d, h);
    CHECK_HEX(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Lengths around the padding boundaries (55/56 bytes: one or two final
 * blocks). Digests from Python's hashlib.sha256(b"a" * n). */
static void test_padding_boundaries(void) {
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
    };
    char a[128], h[65];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hex_of(a, v[i].n, h);
        CHECK_HEX(h, v[i].hex);
    }
}

/* Every split of a 200-byte message into two updates gives the same digest. */
static void test_split_independence(void) {
    unsigned char msg[200];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (unsigned char)(i * 31 + 7);
    char want[65], h[65];
    hex_of(msg, sizeof msg, want);
    int bad = 0;
    for (size_t cut = 0; cut <= sizeof msg; cut++) {
        nnm__sha256 s;
        uint8_t d[32];
        nnm__sha256_init(&s);
        nnm__sha256_update(&s, msg, cut);
        nnm__sha256_update(&s, msg + cut, sizeof msg - cut);
        nnm__sha256_final(&s, d);
        nnm__sha256_hex(d, h);
        bad += strcmp(h, want) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_file_digest(void) {
    char p[128], h[65];
    snprintf(p, sizeof p, "%s/empty", g_dir);
    CU_ASSERT_TRUE_FATAL(tu_write_file(p, "", 0));
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, p, h), NNM_OK);
    CHECK_HEX(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    snprintf(p, sizeof p, "%s/abc", g_dir);
    CU_ASSERT_TRUE_FATAL(tu_write_file(p, "abc", 3));
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, p, h), NNM_OK);
    CHECK_HEX(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* Larger than the read chunk and not a multiple of it (hashlib digest). */
    size_t n = (1u << 20) | 12345u;
    unsigned char *b = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 7 + 1);
    snprintf(p, sizeof p, "%s/big", g_dir);
    CU_ASSERT_TRUE_FATAL(tu_write_file(p, b, n));
    free(b);
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, p, h), NNM_OK);
    CHECK_HEX(h, "e814302f773c141ae324977ae74762dcc0cd5848323967761f837e07cca70e48");
}

static void test_file_errors(void) {
    char p[128], h[65];
    snprintf(p, sizeof p, "%s/no_such_file", g_dir);
    memcpy(h, "x", 2);
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, p, h), NNM_E_IO);
    CU_ASSERT_EQUAL(h[0], 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "no_such_file"));
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, g_dir, h), NNM_E_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "directory"));
    CU_ASSERT_EQUAL(nnm__sha256_file(g_ctx, NULL, h), NNM_E_INVALID);
    /* A NULL context: the status alone. */
    CU_ASSERT_EQUAL(nnm__sha256_file(NULL, p, h), NNM_E_IO);
}

/* nnm_manifest_hash == SHA-256 of nnm_manifest_write(MSGPACK), for a manifest
 * with every part the writer emits: plugins, nested and unnamed children,
 * configs with ints and bools, weights with a digest, metadata. */
static void test_manifest_hash_is_its_msgpack_digest(void) {
    static const char doc[] =
        "{\"format\": \"nnmod.manifest\", \"version\": 1,"
        " \"plugins\": {\"sequential\": \"^1.0\", \"linear\": \"^1.0\", \"relu\": \"^1\"},"
        " \"root\": {\"type\": \"sequential\", \"children\": ["
        "   {\"name\": \"fc\", \"type\": \"linear\","
        "    \"config\": {\"in_features\": 300, \"out_features\": 2, \"bias\": false}},"
        "   {\"type\": \"relu\"},"
        "   {\"name\": \"inner\", \"type\": \"sequential\", \"children\": [{\"type\": \"relu\"}]}]},"
        " \"weights\": {\"path\": \"w.safetensors\", \"sha256\": "
        "\"e814302f773c141ae324977ae74762dcc0cd5848323967761f837e07cca70e48\"},"
        " \"metadata\": {\"epoch\": \"3\", \"note\": \"caf\u00e9\"}}";
    nnm_ctx *ctx = NULL; /* this suite's context loads no plugins; a manifest needs them */
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    nnm_manifest *mf = NULL;
    CU_ASSERT_EQUAL_FATAL(
        nnm_manifest_parse(ctx, doc, sizeof doc - 1, NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_OK);
    void *bytes = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(nnm_manifest_write(mf, NNM_MANIFEST_MSGPACK, &bytes, &n), NNM_OK);
    CU_ASSERT_TRUE(n > 100 && ((unsigned char *)bytes)[0] == 0x86); /* a fixmap of 6 keys */
    char want[65], got[65];
    hex_of(bytes, n, want);
    CU_ASSERT_EQUAL(nnm_manifest_hash(mf, got), NNM_OK);
    CU_ASSERT_STRING_EQUAL(got, want);
    nnm_free(bytes);
    nnm_manifest_free(mf);
    CU_ASSERT_EQUAL(nnm_manifest_hash(NULL, got), NNM_E_INVALID);
    nnm_ctx_free(ctx);
}

int main(void) {
    CU_pSuite s = tu_suite("sha256", suite_init, suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "NIST vectors: empty, abc, 448 and 896 bits", test_nist_vectors);
    CU_add_test(s, "one million 'a' in odd-sized chunks", test_million_a_chunked);
    CU_add_test(s, "padding boundaries (55..128 bytes)", test_padding_boundaries);
    CU_add_test(s, "any split gives the same digest", test_split_independence);
    CU_add_test(s, "file digests (empty, small, > read chunk)", test_file_digest);
    CU_add_test(s, "file errors name the path", test_file_errors);
    CU_add_test(s, "a manifest's hash is the digest of its msgpack encoding",
                test_manifest_hash_is_its_msgpack_digest);
    return tu_run();
}
