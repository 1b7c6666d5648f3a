/* tests/hostile/test_hostile_files.c - state dicts saved over what is
 * already there and loaded from what a stranger hands over (session 11).
 *
 * Saving: a failed save leaves the old file byte for byte and no temporary
 * beside it; a save keeps the permission bits of the file it replaces (a
 * private checkpoint stays private) and writes through a symbolic link, as
 * torch.save does. Loading: every hostile safetensors file is refused with a
 * status and a printable message naming the file, and the module keeps its
 * values; paths that are not regular files are refused at once. */
#define _GNU_SOURCE /* mkfifo, symlink, setrlimit */
#include "test_util.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static char g_dir[256];

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    return tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_hxfiles_");
}

static int suite_clean(void) {
    tu_dir_remove_all(g_dir);
    return tu_ctx_free(&g_ctx);
}

static int printable(const char *s) {
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\n') || *s == 0x7f) return 0;
    return 1;
}

/* linear(3, 2) with weight and bias set to v. */
static nnm_module *lin(float v) {
    nnm_module *m = tu_linear(g_ctx, "linear", 3, 2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named p = tu_params_of(m);
    float w[6];
    for (int i = 0; i < 6; i++) w[i] = v;
    for (int i = 0; i < p.n; i++) CU_ASSERT_TRUE(tu_write_f32(p.t[i], w, (size_t)nnm_tensor_numel(p.t[i])));
    return m;
}

/* Sum of m's parameter values (weight and bias). */
static double param_sum(nnm_module *m) {
    tu_named p = tu_params_of(m);
    double s = 0;
    for (int i = 0; i < p.n; i++) {
        float v[6];
        int64_t n = nnm_tensor_numel(p.t[i]);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(p.t[i], v, (size_t)n), NNM_OK);
        for (int64_t k = 0; k < n; k++) s += v[k];
    }
    return s;
}

/* No "<name>.tmp.*" file is left in g_dir. */
static int no_temp_left(void) {
    DIR *d = opendir(g_dir);
    if (!d) return 0;
    int ok = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) ok = 0;
    closedir(d);
    return ok;
}

/* ---- saving -------------------------------------------------------------- */

static void test_save_keeps_mode(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = lin(1.0f);
    const char *p = tu_path(g_dir, "private.safetensors");
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(chmod(p, 0600), 0);
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(p, &sb), 0);
    if ((sb.st_mode & 07777) != 0600) fprintf(stderr, "\n  mode after save: %o\n", sb.st_mode & 07777);
    CU_ASSERT_EQUAL(sb.st_mode & 07777, 0600);
    CU_ASSERT_EQUAL(chmod(p, 0640), 0);
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(stat(p, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 07777, 0640);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_save_through_symlink(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *a = lin(1.0f), *b = lin(2.0f);
    char target[512], link[512];
    snprintf(target, sizeof target, "%s", tu_path(g_dir, "target.safetensors"));
    snprintf(link, sizeof link, "%s", tu_path(g_dir, "link.safetensors"));
    CHECK_STATUS(nnm_module_save(a, target, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(symlink("target.safetensors", link), 0);
    CHECK_STATUS(nnm_module_save(b, link, 0, NULL), NNM_OK);
    struct stat sb;
    CU_ASSERT_EQUAL(lstat(link, &sb), 0);
    CU_ASSERT_TRUE(S_ISLNK(sb.st_mode)); /* still a link ... */
    CHECK_STATUS(nnm_module_load(a, target, 1, NULL), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(param_sum(a), 16.0, 1e-6); /* ... to the file that got b */
    CU_ASSERT_TRUE(no_temp_left());
    unlink(link);
    unlink(target);
    nnm_module_release(a);
    nnm_module_release(b);
    LEAK_CHECK_END();
}

/* A save that fails halfway (the file size limit: write fails with EFBIG)
 * leaves the old file as it was and no temporary file. */
static void test_failed_save_keeps_old_file(void) {
    LEAK_CHECK_BEGIN();
    const char *p = tu_path(g_dir, "old.safetensors");
    nnm_module *small = lin(3.0f);
    CHECK_STATUS(nnm_module_save(small, p, 0, NULL), NNM_OK);
    size_t n_old = 0;
    unsigned char *old = tu_read_file(p, &n_old);
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    nnm_module *big = tu_linear(g_ctx, "linear", 512, 512, 1); /* 1 MiB of weights */
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    struct rlimit was, lim;
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &was), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = was;
    lim.rlim_cur = 64 * 1024;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
    nnm_status st = nnm_module_save(big, p, 0, NULL);
    setrlimit(RLIMIT_FSIZE, &was);
    signal(SIGXFSZ, prev);
    CHECK_ERROR(st, NNM_E_IO, "old.safetensors");
    CU_ASSERT_TRUE(printable(nnm_ctx_errmsg(g_ctx)));
    size_t n_now = 0;
    unsigned char *now = tu_read_file(p, &n_now);
    CU_ASSERT_PTR_NOT_NULL_FATAL(now);
    CU_ASSERT_TRUE(n_now == n_old && memcmp(now, old, n_old) == 0);
    CU_ASSERT_TRUE(no_temp_left());
    free(old);
    free(now);
    nnm_module_release(small);
    nnm_module_release(big);
    LEAK_CHECK_END();
}

/* ---- loading -------------------------------------------------------------- */

/* Writes a safetensors file: the 8-byte length of `header` (or `hlen` when
 * it is not ~0), the header, then `data` (n bytes). */
static const char *st_file(const char *name, uint64_t hlen, const char *header, const void *data, size_t n) {
    const char *p = tu_path(g_dir, name);
    size_t hl = strlen(header);
    if (hlen == ~(uint64_t)0) hlen = hl;
    unsigned char *buf = malloc(8 + hl + n + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (n) memcpy(buf + 8 + hl, data, n);
    CU_ASSERT_TRUE(tu_write_file(p, buf, 8 + hl + n));
    free(buf);
    return p;
}

#define W6 "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"
#define B2 "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}"

static void test_hostile_safetensors_leave_module_unchanged(void) {
    LEAK_CHECK_BEGIN();
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = 5.0f;
    static const struct {
        const char *name;
        uint64_t hlen; /* ~0: the header's own length */
        const char *header;
        size_t n_data;
        nnm_status want;
        const char *needle;
    } cases[] = {
        {"zero_hlen", 0, "", 32, NNM_E_INVALID, "header is empty"},
        {"huge_hlen", (uint64_t)1 << 62, "{}", 0, NNM_E_LIMIT, "exceeds the limit"},
        {"hlen_past_eof", 4096, "{" W6 "," B2 "}", 32, NNM_E_INVALID, "runs past the end of the file"},
        {"not_utf8", ~(uint64_t)0, "{\"w\xff\":{}}", 0, NNM_E_INVALID, "not valid UTF-8"},
        {"dup_key", ~(uint64_t)0, "{" W6 "," W6 "," B2 "}", 32, NNM_E_INVALID, "duplicate key 'weight'"},
        {"dup_escaped", ~(uint64_t)0,
         "{" W6 ",\"\\u0077eight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," B2 "}", 32,
         NNM_E_INVALID, "duplicate key 'weight'"},
        {"overlap", ~(uint64_t)0,
         "{" W6 ",\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24, NNM_E_INVALID,
         "overlap"},
        {"gap", ~(uint64_t)0,
         "{" W6 ",\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[28,36]}}", 36, NNM_E_INVALID,
         "gap of 4 bytes"},
        {"past_eof", ~(uint64_t)0, "{" W6 "," B2 "}", 20, NNM_E_INVALID, "run past the end of the data"},
        {"truncated_after_header", ~(uint64_t)0, "{" W6 "," B2 "}", 0, NNM_E_INVALID, "run past the end"},
        {"bytes_vs_shape", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, NNM_E_SHAPE,
         "hold 20 bytes but shape [2, 3] of F32 needs 24"},
        {"shape_overflow", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
         NNM_E_LIMIT, "overflows 64 bits"},
        {"negative_dim", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F32\",\"shape\":[-2,-3],\"data_offsets\":[0,24]}}", 24, NNM_E_INVALID,
         "not a non-negative integer"},
        {"float_dim", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2.0,3],\"data_offsets\":[0,24]}}", 24, NNM_E_INVALID,
         "not a non-negative integer"},
        {"huge_offset", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[18446744073709551592,"
         "18446744073709551615]}}",
         0, NNM_E_INVALID, "header is not valid JSON"},
        {"meta_not_object", ~(uint64_t)0, "{\"__metadata__\":[1,2]," W6 "," B2 "}", 32, NNM_E_INVALID,
         "__metadata__ is not a JSON object"},
        {"meta_value_int", ~(uint64_t)0, "{\"__metadata__\":{\"a\":1}," W6 "," B2 "}", 32, NNM_E_TYPE,
         "value is not a string"},
        {"meta_twice", ~(uint64_t)0, "{\"__metadata__\":{},\"__metadata__\":{}," W6 "," B2 "}", 32,
         NNM_E_INVALID, "duplicate key '__metadata__'"},
        {"deep", ~(uint64_t)0,
         "{\"weight\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
         0, NNM_E_INVALID, "nested too deeply"},
        {"dtype_mismatch", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"I32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," B2 "}", 32, NNM_E_SHAPE,
         "dtype not convertible"},
        {"shape_mismatch", ~(uint64_t)0,
         "{\"weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}," B2 "}", 32, NNM_E_SHAPE,
         "weight: file [3, 2] vs module [2, 3]"},
        {"ctl_name", ~(uint64_t)0,
         "{" W6 "," B2 ",\"\\u001b[2Jx\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[32,32]}}", 32,
         NNM_E_NOT_FOUND, "unexpected key"},
    };
    nnm_module *m = lin(1.0f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char fname[64];
        snprintf(fname, sizeof fname, "%s.safetensors", cases[i].name);
        const char *p = st_file(fname, cases[i].hlen, cases[i].header, data, cases[i].n_data);
        nnm_load_report *r = NULL;
        nnm_status st = nnm_module_load(m, p, 1, &r);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        int ok = st == cases[i].want && strstr(msg, cases[i].needle) && strstr(msg, fname) && printable(msg);
        if (!ok) fprintf(stderr, "\n  %s: %s: %s\n", cases[i].name, nnm_status_name(st), msg);
        CU_ASSERT_TRUE(ok);
        nnm_load_report_free(r);
        CU_ASSERT_DOUBLE_EQUAL(param_sum(m), 8.0, 0); /* nothing was loaded */
    }
    /* NaN and infinities load as they are (torch.load does) */
    float nan[8] = {NAN, INFINITY, -INFINITY, 0, 0, 0, NAN, 1};
    const char *p = st_file("nonfinite.safetensors", ~(uint64_t)0, "{" W6 "," B2 "}", nan, sizeof nan);
    CHECK_STATUS(nnm_module_load(m, p, 1, NULL), NNM_OK);
    tu_named prm = tu_params_of(m);
    float v[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(tu_named_get(&prm, "weight"), v, 6), NNM_OK);
    CU_ASSERT_TRUE(isnan(v[0]) && isinf(v[1]) && v[2] < 0);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* What is not a regular file is refused at open, without blocking. */
static void test_not_regular_files(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = lin(1.0f);
    char fifo[512], loop[512], dangling[512];
    snprintf(fifo, sizeof fifo, "%s", tu_path(g_dir, "fifo.safetensors"));
    snprintf(loop, sizeof loop, "%s", tu_path(g_dir, "loop.safetensors"));
    snprintf(dangling, sizeof dangling, "%s", tu_path(g_dir, "dangling.safetensors"));
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
    CU_ASSERT_EQUAL_FATAL(symlink("loop.safetensors", loop), 0);
    CU_ASSERT_EQUAL_FATAL(symlink("nowhere.safetensors", dangling), 0);
    const char *paths[] = {fifo, g_dir, loop, dangling, "/dev/zero", "/dev/null", ""};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        nnm_status st = nnm_module_load(m, paths[i], 1, NULL);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        if (st == NNM_OK || !*msg || !printable(msg))
            fprintf(stderr, "\n  %s: %s: %s\n", paths[i], nnm_status_name(st), msg);
        CU_ASSERT_NOT_EQUAL(st, NNM_OK);
        CU_ASSERT_TRUE(*msg && printable(msg));
        nnm_safetensors *f = NULL;
        CU_ASSERT_NOT_EQUAL(nnm_safetensors_open(g_ctx, paths[i], &f), NNM_OK);
        CU_ASSERT_PTR_NULL(f);
    }
    CU_ASSERT_DOUBLE_EQUAL(param_sum(m), 8.0, 0);
    unlink(fifo);
    unlink(loop);
    unlink(dangling);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("hostile_files", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "a save keeps the replaced file's permission bits", test_save_keeps_mode);
    CU_add_test(s, "a save writes through a symbolic link", test_save_through_symlink);
    CU_add_test(s, "a save that fails halfway keeps the old file", test_failed_save_keeps_old_file);
    CU_add_test(s, "hostile safetensors: refused, module unchanged",
                test_hostile_safetensors_leave_module_unchanged);
    CU_add_test(s, "FIFOs, directories, loops, devices: refused", test_not_regular_files);
    return tu_run();
}
