/* tests/data/test_data.c - runtime/data: the IDX and safetensors dataset
 * readers on good and corrupted fixtures (written here, small), the loader's
 * shuffling, batching, normalisation and rank split, and the manifest's
 * "training" section. */
#include "test_util.h"

#include <zlib.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static const nnm_dtype U8 = {NNM_DTYPE_UINT, 8, 1}, BOOL8 = {NNM_DTYPE_BOOL, 8, 1};
static const nnm_device CPU = {NNM_DEVICE_CPU, 0};
static char g_dir[256];

static int init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    return tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_data");
}
static int clean(void) {
    tu_dir_remove_all(g_dir);
    return tu_ctx_free(&g_ctx);
}

/* ---- fixtures -------------------------------------------------------------- */

/* An IDX image of `type` with dims, then `data` (already big-endian). */
static size_t idx_bytes(unsigned char *buf, int type, int ndim, const uint32_t *dims,
                        const void *data, size_t n) {
    size_t at = 0;
    buf[at++] = 0;
    buf[at++] = 0;
    buf[at++] = (unsigned char)type;
    buf[at++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++) {
        buf[at++] = (unsigned char)(dims[d] >> 24);
        buf[at++] = (unsigned char)(dims[d] >> 16);
        buf[at++] = (unsigned char)(dims[d] >> 8);
        buf[at++] = (unsigned char)dims[d];
    }
    memcpy(buf + at, data, n);
    return at + n;
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile gz = gzopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(gz);
    CU_ASSERT_EQUAL(gzwrite(gz, data, (unsigned)n), (int)n);
    gzclose(gz);
}

/* 5 images of 2x3 u8 (pixel = 10 * sample + i) and labels 0..4 % 3. */
static const char *images_path(int gz) {
    static char path[2][512];
    unsigned char px[5 * 6], buf[256];
    for (int i = 0; i < 30; i++) px[i] = (unsigned char)(10 * (i / 6) + i % 6);
    uint32_t dims[3] = {5, 2, 3};
    size_t n = idx_bytes(buf, 0x08, 3, dims, px, sizeof px);
    snprintf(path[gz], sizeof path[gz], "%s", tu_path(g_dir, gz ? "img.idx.gz" : "img.idx"));
    if (gz) write_gz(path[gz], buf, n);
    else tu_write_file(path[gz], buf, n);
    return path[gz];
}

static const char *labels_path(int gz) {
    static char path[2][512];
    unsigned char lb[5] = {0, 1, 2, 0, 1}, buf[64];
    uint32_t dims[1] = {5};
    size_t n = idx_bytes(buf, 0x08, 1, dims, lb, sizeof lb);
    snprintf(path[gz], sizeof path[gz], "%s", tu_path(g_dir, gz ? "lab.idx.gz" : "lab.idx"));
    if (gz) write_gz(path[gz], buf, n);
    else tu_write_file(path[gz], buf, n);
    return path[gz];
}

/* Opens an IDX pair and expects failure whose message names `name`. */
static void expect_idx_error(const char *inputs, const char *targets, const char *name,
                             const char *words) {
    nnm_dataset *ds = (nnm_dataset *)1;
    nnm_status s = nnm_dataset_open_idx(g_ctx, inputs, targets, &ds);
    CU_ASSERT_NOT_EQUAL(s, NNM_OK);
    CU_ASSERT_PTR_NULL(ds);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, name));
    if (words) CU_ASSERT_PTR_NOT_NULL(strstr(msg, words));
    if (!strstr(msg, name) || (words && !strstr(msg, words)))
        fprintf(stderr, "\n  message: %s (wanted '%s', '%s')\n", msg, name, words ? words : "");
}

/* Writes `bytes` to a file named `name` in the temp dir; returns its path. */
static const char *file_of(const char *name, const void *bytes, size_t n) {
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 512, "%s", tu_path(g_dir, name));
    tu_write_file(p, bytes, n);
    return p;
}

/* ---- IDX --------------------------------------------------------------------- */

static void check_five(nnm_dataset *ds) {
    nnm_dataset_info info = {sizeof info};
    CHECK_STATUS(nnm_dataset_info_get(ds, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.n_samples, 5);
    CU_ASSERT_EQUAL(info.input_ndim, 2);
    CU_ASSERT_EQUAL(info.input_shape[0], 2);
    CU_ASSERT_EQUAL(info.input_shape[1], 3);
    CU_ASSERT_EQUAL(info.input_dtype.code, NNM_DTYPE_UINT);
    CU_ASSERT_EQUAL(info.input_dtype.bits, 8);
    CU_ASSERT_EQUAL(info.target_ndim, 0);
    CU_ASSERT_EQUAL(info.target_dtype.code, NNM_DTYPE_INT);
    CU_ASSERT_EQUAL(info.n_classes, 3);
    /* in order, batch 2: [0, 1], [2, 3], [4]; u8 scaled by 1/255 */
    nnm_loader_options o = {sizeof o};
    o.batch_size = 2;
    nnm_loader *ld = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    CU_ASSERT_EQUAL(nnm_loader_batch_count(ld), 3);
    int64_t seen = 0;
    for (int b = 0; b < 3; b++) {
        nnm_tensor *x = NULL, *y = NULL;
        CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        int64_t want = b < 2 ? 2 : 1, xs[3] = {want, 2, 3}, ys[1] = {want};
        CU_ASSERT(tu_shape_is(x, 3, xs));
        CU_ASSERT(tu_shape_is(y, 1, ys));
        const float *xv = tu_cpu_data(x);
        const int64_t *yv = tu_cpu_data(y);
        for (int64_t k = 0; k < want; k++, seen++) {
            CU_ASSERT_EQUAL(yv[k], seen % 3 == 0 ? 0 : (seen == 1 || seen == 4) ? 1 : 2);
            for (int i = 0; i < 6; i++)
                CU_ASSERT_EQUAL(xv[k * 6 + i], (float)(10 * seen + i) * (float)(1.0 / 255.0));
        }
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    nnm_tensor *x = (nnm_tensor *)1, *y = (nnm_tensor *)1;
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT_PTR_NULL(y);
    nnm_loader_free(ld);
}

static void test_idx_good(void) {
    for (int gz = 0; gz < 2; gz++) {
        nnm_dataset *ds = NULL;
        CHECK_STATUS(nnm_dataset_open_idx(g_ctx, images_path(gz), labels_path(gz), &ds), NNM_OK);
        if (ds) check_five(ds);
        nnm_dataset_free(ds);
    }
    /* mixed: gzipped images, plain labels */
    nnm_dataset *ds = NULL;
    CHECK_STATUS(nnm_dataset_open_idx(g_ctx, images_path(1), labels_path(0), &ds), NNM_OK);
    if (ds) check_five(ds);
    nnm_dataset_free(ds);
}

static void test_idx_types(void) {
    /* f32 inputs (big-endian on disk), i32 labels */
    unsigned char buf[256], f[3 * 4], l[3 * 4];
    float vals[3] = {1.5f, -2.0f, 1e-3f};
    int32_t labs[3] = {7, 0, 3};
    for (int i = 0; i < 3; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        f[4 * i] = (unsigned char)(u >> 24), f[4 * i + 1] = (unsigned char)(u >> 16);
        f[4 * i + 2] = (unsigned char)(u >> 8), f[4 * i + 3] = (unsigned char)u;
        uint32_t v = (uint32_t)labs[i];
        l[4 * i] = (unsigned char)(v >> 24), l[4 * i + 1] = (unsigned char)(v >> 16);
        l[4 * i + 2] = (unsigned char)(v >> 8), l[4 * i + 3] = (unsigned char)v;
    }
    uint32_t d3[1] = {3};
    const char *fp = file_of("f32.idx", buf, idx_bytes(buf, 0x0D, 1, d3, f, sizeof f));
    const char *lp = file_of("i32.idx", buf, idx_bytes(buf, 0x0C, 1, d3, l, sizeof l));
    nnm_dataset *ds = NULL;
    CHECK_STATUS(nnm_dataset_open_idx(g_ctx, fp, lp, &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_dataset_info info = {sizeof info};
    nnm_dataset_info_get(ds, &info);
    CU_ASSERT_EQUAL(info.n_classes, 8);
    CU_ASSERT_EQUAL(info.input_ndim, 0);
    nnm_loader_options o = {sizeof o};
    o.batch_size = 3;
    nnm_loader *ld = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    const float *xv = tu_cpu_data(x);
    const int64_t *yv = tu_cpu_data(y);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(xv[i], vals[i]); /* f32 data: scale 1 */
        CU_ASSERT_EQUAL(yv[i], labs[i]);
    }
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_loader_free(ld);
    nnm_dataset_free(ds);
    /* inputs alone */
    CHECK_STATUS(nnm_dataset_open_idx(g_ctx, images_path(0), NULL, &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(x);
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_loader_free(ld);
    nnm_dataset_free(ds);
}

static void test_idx_bad(void) {
    const char *lab = labels_path(0);
    unsigned char buf[512], px[64] = {0};
    uint32_t d[3] = {5, 2, 3};
    size_t good = idx_bytes(buf, 0x08, 3, d, px, 30);

    expect_idx_error(tu_path(g_dir, "missing.idx"), lab, "missing.idx", NULL);
    expect_idx_error(g_dir, lab, g_dir, "not a regular file");
    expect_idx_error(file_of("empty.idx", "", 0), lab, "empty.idx", "truncated");
    unsigned char magic[34];
    memcpy(magic, buf, good < sizeof magic ? good : sizeof magic);
    magic[0] = 0x1f; /* not gzip either: 1f 00 */
    expect_idx_error(file_of("magic.idx", magic, sizeof magic), lab, "magic.idx", "not an IDX");
    memcpy(magic, buf, sizeof magic);
    magic[2] = 0x07;
    expect_idx_error(file_of("type.idx", magic, sizeof magic), lab, "type.idx", "not an IDX");
    memcpy(magic, buf, sizeof magic);
    magic[3] = 0;
    expect_idx_error(file_of("ndim0.idx", magic, sizeof magic), lab, "ndim0.idx", "dimensions");
    magic[3] = 9;
    expect_idx_error(file_of("ndim9.idx", magic, sizeof magic), lab, "ndim9.idx", "dimensions");
    expect_idx_error(file_of("head.idx", buf, 9), lab, "head.idx", "truncated IDX header");
    expect_idx_error(file_of("short.idx", buf, good - 1), lab, "short.idx", "truncated");
    memcpy(buf + good, "xy", 2);
    expect_idx_error(file_of("long.idx", buf, good + 2), lab, "long.idx", "trailing");
    /* a header claiming 2^32 x 2^32 x 2^32 elements: refused, nothing allocated */
    uint32_t huge[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    size_t hn = idx_bytes(buf, 0x08, 3, huge, px, 8);
    expect_idx_error(file_of("huge.idx", buf, hn), lab, "huge.idx", "more than");
    /* gzipped, claiming 4 GB with 8 bytes: truncated, memory follows the data */
    uint32_t big[3] = {1000000, 64, 64};
    hn = idx_bytes(buf, 0x08, 3, big, px, 8);
    const char *gp = tu_path(g_dir, "big.idx.gz");
    char gpath[512];
    snprintf(gpath, sizeof gpath, "%s", gp);
    write_gz(gpath, buf, hn);
    /* with 5 targets, the headers disagree: refused before anything is inflated */
    expect_idx_error(gpath, lab, "big.idx.gz", "holds 1000000 samples but");
    expect_idx_error(gpath, NULL, "big.idx.gz", "truncated");
    /* a cut gzip stream, and one with its deflate data corrupted */
    good = idx_bytes(buf, 0x08, 3, d, px, 30);
    snprintf(gpath, sizeof gpath, "%s", tu_path(g_dir, "cut.idx.gz"));
    write_gz(gpath, buf, good);
    size_t gn = 0;
    unsigned char *gzb = tu_read_file(gpath, &gn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gzb);
    expect_idx_error(file_of("cut2.idx.gz", gzb, gn - 6), lab, "cut2.idx.gz", "truncated");
    for (size_t i = 12; i < gn - 8; i++) gzb[i] ^= 0x5a;
    expect_idx_error(file_of("bad.idx.gz", gzb, gn), lab, "bad.idx.gz", NULL);
    free(gzb);
    /* counts that disagree: 5 images, 4 labels */
    unsigned char lb[4] = {0};
    uint32_t d4[1] = {4};
    const char *l4 = file_of("l4.idx", buf, idx_bytes(buf, 0x08, 1, d4, lb, 4));
    expect_idx_error(images_path(0), l4, "l4.idx", "5 samples");
    /* no samples at all */
    uint32_t d0[1] = {0};
    const char *l0 = file_of("l0.idx", buf, idx_bytes(buf, 0x08, 1, d0, lb, 0));
    expect_idx_error(l0, l0, "l0.idx", "no samples");
    CU_ASSERT_EQUAL(nnm_dataset_open_idx(NULL, l0, l0, NULL), NNM_E_INVALID);
}

/* ---- safetensors ------------------------------------------------------------ */

/* inputs u8 [4, 2, 2] (value 4 * s + i), targets of `tdtype` [4] or [4, 2]. */
static const char *st_file(const char *name, const char *in_name, const char *tg_name,
                           int64_t n_targets, int float_targets) {
    static char path[512];
    snprintf(path, sizeof path, "%s", tu_path(g_dir, name));
    nnm_tensor *x = NULL, *y = NULL;
    int64_t xs[3] = {4, 2, 2};
    CHECK_STATUS(nnm_tensor_new(g_ctx, CPU, U8, 3, xs, &x), NNM_OK);
    unsigned char *xv = tu_cpu_data(x);
    for (int i = 0; i < 16; i++) xv[i] = (unsigned char)i;
    if (float_targets) {
        int64_t ys[2] = {n_targets, 2};
        float yv[16];
        for (int i = 0; i < 16; i++) yv[i] = 0.5f * (float)i;
        CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 2, ys, yv, &y), NNM_OK);
    } else {
        int64_t ys[1] = {n_targets}, yv[8] = {3, 1, 4, 1, 5, 9, 2, 6};
        CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 1, ys, yv, &y), NNM_OK);
    }
    const char *names[2] = {in_name, tg_name};
    nnm_tensor *ts[2] = {x, y};
    CHECK_STATUS(nnm_safetensors_write(g_ctx, path, 2, names, ts, 0, NULL), NNM_OK);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    return path;
}

static void test_safetensors_dataset(void) {
    nnm_dataset *ds = NULL;
    const char *p = st_file("d.safetensors", "inputs", "targets", 4, 0);
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, p, NULL, NULL, &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_dataset_info info = {sizeof info};
    nnm_dataset_info_get(ds, &info);
    CU_ASSERT_EQUAL(info.n_samples, 4);
    CU_ASSERT_EQUAL(info.n_classes, 5);
    nnm_loader_options o = {sizeof o};
    o.batch_size = 4;
    o.scale = 1;
    o.ndim = 1;
    o.shape[0] = 4; /* viewed flat */
    nnm_loader *ld = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    int64_t xs[2] = {4, 4};
    CU_ASSERT(x && tu_shape_is(x, 2, xs));
    if (x) {
        const float *xv = tu_cpu_data(x);
        for (int i = 0; i < 16; i++) CU_ASSERT_EQUAL(xv[i], (float)i);
        const int64_t *yv = tu_cpu_data(y);
        CU_ASSERT_EQUAL(yv[0], 3);
        CU_ASSERT_EQUAL(yv[3], 1);
    }
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_loader_free(ld);
    /* a view that does not hold the sample's values */
    o.shape[0] = 5;
    CU_ASSERT_EQUAL(nnm_loader_new(ds, &o, &ld), NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "cannot be viewed as [5]"));
    nnm_dataset_free(ds);

    /* own names, f32 targets [4, 2] */
    p = st_file("r.safetensors", "x", "y", 4, 1);
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, p, "x", "y", &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_dataset_info_get(ds, &info);
    CU_ASSERT_EQUAL(info.target_ndim, 1);
    CU_ASSERT_EQUAL(info.target_shape[0], 2);
    CU_ASSERT_EQUAL(info.target_dtype.code, NNM_DTYPE_FLOAT);
    CU_ASSERT_EQUAL(info.n_classes, 0);
    nnm_dataset_free(ds);

    /* errors name the file */
    ds = (nnm_dataset *)1;
    CU_ASSERT_EQUAL(nnm_dataset_open_safetensors(g_ctx, p, NULL, "y", &ds), NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NULL(ds);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "r.safetensors: no inputs tensor named 'inputs'"));
    CU_ASSERT_EQUAL(nnm_dataset_open_safetensors(g_ctx, p, "x", NULL, &ds), NNM_E_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "no targets tensor named 'targets'"));
    p = st_file("m.safetensors", "inputs", "targets", 3, 0);
    CU_ASSERT_EQUAL(nnm_dataset_open_safetensors(g_ctx, p, NULL, NULL, &ds), NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "m.safetensors: 4 inputs ('inputs') but 3 targets"));
    /* a truncated file: the safetensors reader's message, naming it */
    size_t n = 0;
    unsigned char *bytes = tu_read_file(tu_path(g_dir, "d.safetensors"), &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    const char *cut = file_of("cut.safetensors", bytes, n - 3);
    CU_ASSERT_NOT_EQUAL(nnm_dataset_open_safetensors(g_ctx, cut, NULL, NULL, &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "cut.safetensors"));
    const char *junk = file_of("junk.safetensors", "\x10\0\0\0\0\0\0\0{\"a\":1}", 15);
    CU_ASSERT_NOT_EQUAL(nnm_dataset_open_safetensors(g_ctx, junk, NULL, NULL, &ds), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "junk.safetensors"));
    free(bytes);
    /* BOOL inputs are no dataset */
    nnm_tensor *b = NULL, *t = NULL;
    int64_t bs[2] = {2, 2}, ts[1] = {2}, tv[2] = {0, 1};
    CHECK_STATUS(nnm_tensor_new(g_ctx, CPU, BOOL8, 2, bs, &b), NNM_OK);
    memset(tu_cpu_data(b), 1, 4);
    CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 1, ts, tv, &t), NNM_OK);
    const char *names[2] = {"inputs", "targets"};
    nnm_tensor *tt[2] = {b, t};
    char bp[512];
    snprintf(bp, sizeof bp, "%s", tu_path(g_dir, "bool.safetensors"));
    CHECK_STATUS(nnm_safetensors_write(g_ctx, bp, 2, names, tt, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_dataset_open_safetensors(g_ctx, bp, NULL, NULL, &ds), NNM_E_TYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "has dtype BOOL"));
    nnm_tensor_release(b);
    nnm_tensor_release(t);
}

/* ---- the loader ---------------------------------------------------------------- */

/* A dataset of n samples of one u8 value each (the index mod 256), label =
 * index mod 7, as a safetensors file. */
static nnm_dataset *counting(int64_t n) {
    nnm_tensor *x = NULL, *y = NULL;
    int64_t xs[2] = {n, 1}, ys[1] = {n};
    CHECK_STATUS(nnm_tensor_new(g_ctx, CPU, U8, 2, xs, &x), NNM_OK);
    CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 1, ys, NULL, &y), NNM_OK);
    unsigned char *xv = tu_cpu_data(x);
    int64_t *yv = tu_cpu_data(y);
    for (int64_t i = 0; i < n; i++) xv[i] = (unsigned char)(i % 256), yv[i] = i % 7;
    const char *names[2] = {"inputs", "targets"};
    nnm_tensor *ts[2] = {x, y};
    char p[512];
    snprintf(p, sizeof p, "%s", tu_path(g_dir, "count.safetensors"));
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 2, names, ts, 0, NULL), NNM_OK);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_dataset *ds = NULL;
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, p, NULL, NULL, &ds), NNM_OK);
    return ds;
}

static int64_t *epoch_order(nnm_dataset *ds, uint32_t flags, uint64_t seed, uint64_t epoch,
                            uint32_t rank, uint32_t world, int64_t *n) {
    nnm_loader_options o = {sizeof o};
    o.flags = flags;
    o.batch_size = 4;
    o.seed = seed;
    o.rank = rank;
    o.world_size = world;
    nnm_loader *ld = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    if (!ld) return NULL;
    nnm_loader_set_epoch(ld, epoch);
    *n = nnm_loader_sample_count(ld);
    int64_t *v = malloc((size_t)*n * sizeof *v);
    CHECK_STATUS(nnm_loader_indices(ld, v, (size_t)*n), NNM_OK);
    /* the batches carry exactly those samples, in that order */
    int64_t k = 0;
    for (;;) {
        nnm_tensor *x = NULL, *y = NULL;
        CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
        if (!x) break;
        const int64_t *yv = tu_cpu_data(y);
        int64_t b = nnm_tensor_desc_get(x)->shape[0];
        for (int64_t i = 0; i < b; i++, k++) CU_ASSERT_EQUAL(yv[i], v[k] % 7);
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    CU_ASSERT_EQUAL(k, *n);
    nnm_loader_free(ld);
    return v;
}

static void test_loader_shuffle(void) {
    nnm_dataset *ds = counting(103);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    int64_t n = 0, n2 = 0;
    int64_t *plain = epoch_order(ds, 0, 1, 0, 0, 1, &n);
    CU_ASSERT_EQUAL(n, 103);
    for (int64_t i = 0; i < n; i++) CU_ASSERT_EQUAL(plain[i], i);
    int64_t *a = epoch_order(ds, NNM_LOADER_SHUFFLE, 7, 0, 0, 1, &n);
    int64_t *b = epoch_order(ds, NNM_LOADER_SHUFFLE, 7, 0, 0, 1, &n2);
    int64_t *c = epoch_order(ds, NNM_LOADER_SHUFFLE, 7, 1, 0, 1, &n2);
    int64_t *d = epoch_order(ds, NNM_LOADER_SHUFFLE, 8, 0, 0, 1, &n2);
    CU_ASSERT(memcmp(a, b, (size_t)n * sizeof *a) == 0); /* same seed and epoch */
    CU_ASSERT(memcmp(a, c, (size_t)n * sizeof *a) != 0); /* another epoch */
    CU_ASSERT(memcmp(a, d, (size_t)n * sizeof *a) != 0); /* another seed */
    CU_ASSERT(memcmp(a, plain, (size_t)n * sizeof *a) != 0);
    /* a permutation */
    char seen[103] = {0};
    for (int64_t i = 0; i < n; i++) {
        CU_ASSERT(a[i] >= 0 && a[i] < 103);
        if (a[i] >= 0 && a[i] < 103) seen[a[i]]++;
    }
    for (int i = 0; i < 103; i++) CU_ASSERT_EQUAL(seen[i], 1);
    /* the documented algorithm (runtime/data/loader.c): the first elements
     * for seed 7, epoch 0, N 103, as a Python transcription of it computes
     * them (bench/train_torch.py uses the same one) */
    static const int64_t want[8] = {102, 59, 22, 55, 21, 82, 97, 80};
    for (int i = 0; i < 8; i++) CU_ASSERT_EQUAL(a[i], want[i]);
    free(plain), free(a), free(b), free(c), free(d);
    nnm_dataset_free(ds);
}

static void test_loader_batches(void) {
    nnm_dataset *ds = counting(10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_loader_options o = {sizeof o};
    o.batch_size = 4;
    nnm_loader *ld = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    CU_ASSERT_EQUAL(nnm_loader_batch_count(ld), 3);
    int64_t sizes[3] = {0};
    for (int i = 0; i < 4; i++) {
        nnm_tensor *x = NULL, *y = NULL;
        CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
        if (i < 3) sizes[i] = x ? nnm_tensor_desc_get(x)->shape[0] : -1;
        else CU_ASSERT_PTR_NULL(x);
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    CU_ASSERT(sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2); /* last partial */
    /* again after set_epoch */
    nnm_loader_set_epoch(ld, 0);
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(x);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_loader_free(ld);
    o.flags = NNM_LOADER_DROP_LAST;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    CU_ASSERT_EQUAL(nnm_loader_batch_count(ld), 2);
    int batches = 0;
    for (;;) {
        CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
        if (!x) break;
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(x)->shape[0], 4);
        batches++;
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    CU_ASSERT_EQUAL(batches, 2);
    nnm_loader_free(ld);
    /* bad options */
    o.batch_size = 0;
    CU_ASSERT_EQUAL(nnm_loader_new(ds, &o, &ld), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(ld);
    o.batch_size = 1;
    o.rank = 2;
    o.world_size = 2;
    CU_ASSERT_EQUAL(nnm_loader_new(ds, &o, &ld), NNM_E_INVALID);
    o.rank = 0;
    o.std = -1;
    CU_ASSERT_EQUAL(nnm_loader_new(ds, &o, &ld), NNM_E_INVALID);
    o.struct_size = 8;
    CU_ASSERT_EQUAL(nnm_loader_new(ds, &o, &ld), NNM_E_INVALID);
    nnm_dataset_free(ds);
}

static void test_loader_ranks(void) {
    for (int64_t total = 12; total <= 13; total++) {
        nnm_dataset *ds = counting(total);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
        const uint32_t world = 3;
        int64_t count[13] = {0}, n = 0, per = (total + world - 1) / world;
        for (uint32_t r = 0; r < world; r++) {
            int64_t *v = epoch_order(ds, NNM_LOADER_SHUFFLE, 42, 2, r, world, &n);
            CU_ASSERT_EQUAL(n, per); /* every rank the same number of samples */
            for (int64_t i = 0; v && i < n; i++) count[v[i]]++;
            free(v);
        }
        /* disjoint and complete when world divides N; padded with the
         * permutation's first (world * per - N) samples otherwise */
        int64_t twice = 0;
        for (int64_t i = 0; i < total; i++) {
            CU_ASSERT(count[i] >= 1 && count[i] <= 2);
            twice += count[i] == 2;
        }
        CU_ASSERT_EQUAL(twice, world * per - total);
        nnm_dataset_free(ds);
    }
}

static void test_loader_normalise(void) {
    nnm_dataset *ds = counting(200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    double mean = 0, std = 0;
    CHECK_STATUS(nnm_dataset_stats(ds, 1.0, &mean, &std), NNM_OK);
    double m = 0, s2 = 0;
    for (int i = 0; i < 200; i++) m += i;
    m /= 200;
    for (int i = 0; i < 200; i++) s2 += (i - m) * (i - m);
    CU_ASSERT(tu_near(mean, m, 1e-9, 1e-9));
    CU_ASSERT(tu_near(std, sqrt(s2 / 200), 1e-6, 1e-9));
    nnm_loader_options o = {sizeof o};
    o.batch_size = 200;
    o.scale = 1;
    o.mean = mean;
    o.std = std;
    nnm_loader *ld = NULL;
    nnm_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(nnm_loader_new(ds, &o, &ld), NNM_OK);
    CHECK_STATUS(nnm_loader_next(ld, &x, &y), NNM_OK);
    if (x) {
        const float *xv = tu_cpu_data(x);
        double sum = 0, sq = 0;
        for (int i = 0; i < 200; i++) {
            CU_ASSERT(tu_near(xv[i], (i - mean) / std, 1e-5, 1e-5));
            sum += xv[i];
            sq += (double)xv[i] * xv[i];
        }
        CU_ASSERT(fabs(sum / 200) < 1e-5);
        CU_ASSERT(fabs(sq / 200 - 1) < 1e-4);
    }
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_loader_free(ld);
    /* a limit hides the rest */
    CHECK_STATUS(nnm_dataset_limit(ds, 10), NNM_OK);
    nnm_dataset_info info = {sizeof info};
    nnm_dataset_info_get(ds, &info);
    CU_ASSERT_EQUAL(info.n_samples, 10);
    CU_ASSERT_EQUAL(nnm_dataset_limit(ds, 0), NNM_E_INVALID);
    nnm_dataset_free(ds);
}

/* ---- the manifest's training section ------------------------------------------ */

static void test_manifest_training(void) {
    const char *doc =
        "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"linear\": \"^1.0\"},"
        " \"root\": {\"type\": \"linear\", \"config\": {\"in_features\": 4, \"out_features\": 2}},"
        " \"metadata\": {\"class_names\": \"a,b\"},"
        " \"training\": {\"optimizer\": \"adamw\", \"lr\": 0.002, \"epochs\": 3, \"nesterov\": true,"
        "  \"betas\": [0.9, 0.99], \"input_shape\": [4], \"train_data\": [\"x.safetensors\"]}}";
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, doc, strlen(doc), NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    const nnm_config *t = nnm_manifest_training(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(nnm_config_count(t), 7);
    const char *s = NULL;
    double f = 0;
    int64_t i = 0;
    CHECK_STATUS(nnm_config_get_str(t, "optimizer", &s), NNM_OK);
    CU_ASSERT_STRING_EQUAL(s, "adamw");
    CHECK_STATUS(nnm_config_get_float(t, "lr", &f), NNM_OK);
    CU_ASSERT_EQUAL(f, 0.002);
    CHECK_STATUS(nnm_config_get_int(t, "epochs", &i), NNM_OK);
    CU_ASSERT_EQUAL(i, 3);
    CU_ASSERT_EQUAL(nnm_manifest_metadata_count(mf), 1);
    const char *k = NULL, *v = NULL;
    CHECK_STATUS(nnm_manifest_metadata(mf, 0, &k, &v), NNM_OK);
    CU_ASSERT_STRING_EQUAL(k, "class_names");
    CU_ASSERT_STRING_EQUAL(v, "a,b");
    CU_ASSERT_EQUAL(nnm_manifest_metadata(mf, 1, &k, &v), NNM_E_NOT_FOUND);
    /* both encodings write it and read it back the same */
    CU_ASSERT(tu_manifest_reads_back(g_ctx, mf));
    void *buf = NULL;
    size_t len = 0;
    CHECK_STATUS(nnm_manifest_write(mf, NNM_MANIFEST_MSGPACK, &buf, &len), NNM_OK);
    nnm_manifest *back = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, buf, len, NNM_MANIFEST_AUTO, NULL, NULL, &back), NNM_OK);
    nnm_free(buf);
    const nnm_config *t2 = nnm_manifest_training(back);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t2);
    CU_ASSERT_EQUAL(nnm_config_count(t2), 7);
    const char *const *strs = NULL;
    size_t n = 0;
    CHECK_STATUS(nnm_config_get_strs(t2, "train_data", &strs, &n), NNM_OK);
    CU_ASSERT(n == 1 && strcmp(strs[0], "x.safetensors") == 0);
    char h1[65], h2[65];
    nnm_manifest_hash(mf, h1);
    nnm_manifest_hash(back, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    nnm_manifest_free(back);
    nnm_manifest_free(mf);
    /* no section: NULL */
    const char *plain = "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"linear\": \"^1.0\"},"
                        " \"root\": {\"type\": \"linear\", \"config\": {\"in_features\": 4, \"out_features\": 2}}}";
    CHECK_STATUS(nnm_manifest_parse(g_ctx, plain, strlen(plain), NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_OK);
    CU_ASSERT_PTR_NULL(nnm_manifest_training(mf));
    nnm_manifest_free(mf);
    /* a value no section holds, by path */
    const char *bad = "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"linear\": \"^1.0\"},"
                      " \"root\": {\"type\": \"linear\", \"config\": {\"in_features\": 4, \"out_features\": 2}},"
                      " \"training\": {\"optimizer\": {\"name\": \"sgd\"}}}";
    CU_ASSERT_NOT_EQUAL(nnm_manifest_parse(g_ctx, bad, strlen(bad), NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "training.optimizer"));
}

int main(void) {
    CU_pSuite s = tu_suite("data", init, clean);
    if (!s) return 1;
    CU_add_test(s, "IDX plain and gzipped", test_idx_good);
    CU_add_test(s, "IDX element types, inputs alone", test_idx_types);
    CU_add_test(s, "IDX corrupted", test_idx_bad);
    CU_add_test(s, "safetensors datasets", test_safetensors_dataset);
    CU_add_test(s, "loader: seeded shuffle", test_loader_shuffle);
    CU_add_test(s, "loader: batches", test_loader_batches);
    CU_add_test(s, "loader: rank/world_size", test_loader_ranks);
    CU_add_test(s, "loader: normalisation", test_loader_normalise);
    CU_add_test(s, "manifest training section", test_manifest_training);
    return tu_run();
}
