/* bench/bench_layers.c - conv2d 3x3, 64 -> 64 channels, 56 x 56, padding 1
 * (a ResNet stage-1 conv), batch 8 and batch 32, through the real call path
 * (conv2d plugin -> op_conv -> the cpu backend), one thread, with each of the
 * two algorithms the cpu backend has for it, chosen by NNM_CPU_WINOGRAD:
 *   "winograd_f2x2_3x3"  its conv slot (what this shape gets by default)
 *   "im2col_sgemm"       the runtime's im2col + one OpenBLAS sgemm per image
 *
 * Prints JSON lines (each conv line names its "algorithm"):
 *   conv2d_fwd_bN[_im2col]      forward (grad mode off): ms, and GFLOP/s
 *                               counted as a direct convolution's flops (for
 *                               Winograd an effective rate: it does 2.25x
 *                               fewer multiplies)
 *   conv2d_fwd_bwd_bN[_im2col]  forward + backward (grads of input and weight
 *                               and bias): ms and GFLOP/s (3x the forward's
 *                               flops, counted the same way)
 *   sgemm_conv_shape            OpenBLAS sgemm of the conv's own gemm
 *                               (64 x 3136 x 576) in the same run: GFLOP/s
 *   sgemm_1024                  OpenBLAS sgemm 1024^3 in the same run: GFLOP/s
 *   sgemm_conv_shape_bN[_im2col] the same sgemm run N times (one per image),
 *                               timed in alternation with the forward, so
 *                               both see the same machine load: GFLOP/s
 *   conv_fwd_vs_sgemm_bN[_im2col] the forward's GFLOP/s / that sgemm's: for
 *                               im2col the fraction of the sgemm rate it
 *                               keeps; for Winograd above 1 means faster than
 *                               any direct (im2col) convolution can be
 * then max_pool2d 2x2 and batch_norm2d as the Fashion-MNIST CNN runs them:
 *   max_pool2d_fwd_b64     max_pool2d 2x2 (stride 2) on [64, 16, 28, 28] (the
 *                          Fashion-MNIST CNN's first pool), forward: ms, GB/s
 *   max_pool2d_fwd_bwd_b64 the same, forward + backward (grad of input): ms
 *   batch_norm2d_fwd_b64_cC      batch_norm2d (train mode: batch statistics,
 *                                running ones updated) on the CNN's two shapes,
 *                                [64, 16, 28, 28] (C 16) and [64, 32, 14, 14]
 *                                (C 32), forward: ms, GB/s (read x, write y)
 *   batch_norm2d_fwd_bwd_b64_cC  the same, forward + backward (grads of input,
 *                                weight and bias): ms
 * Medians of REPS repetitions after a warm-up (the caching allocator full).
 * The machine may be shared: quote the ratios of one run, not absolute times.
 * bench/bench_layers_torch.py runs the same shapes in PyTorch.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#define BENCH_NAME "bench_layers"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define C_IN 64
#define C_OUT 64
#define HW 56
#define K 3

static double conv_flops(int batch) { return 2.0 * batch * C_OUT * HW * HW * (double)C_IN * K * K; }

static nnm_tensor *filled(nnm_ctx *ctx, int32_t nd, const int64_t *shape, float v) {
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf) die(ctx, "out of memory");
    for (int64_t i = 0; i < n; i++) buf[i] = v * (float)((i * 37) % 101 - 50) / 50.0f;
    nnm_tensor *t = NULL;
    if (nnm_tensor_from_f32(ctx, nd, shape, buf, &t) != NNM_OK) die(ctx, "tensor");
    free(buf);
    return t;
}

static const char *g_algo; /* the conv lines' "algorithm", or NULL */

static void emit(const char *name, double value, const char *unit, int batch, double extra, const char *extra_name) {
    printf("{\"bench\": \"%s\", \"value\": %.4g, \"unit\": \"%s\", \"batch\": %d", name, value, unit, batch);
    if (extra_name) printf(", \"%s\": %.4g", extra_name, extra);
    if (g_algo) printf(", \"algorithm\": \"%s\"", g_algo);
    printf(", \"threads\": 1}\n");
    fflush(stdout);
}

/* Seconds for `times` sgemms of m x n x k (buffers made once by the caller). */
static double sgemm_time(int m, int n, int k, int times, const float *a, const float *b, float *c) {
    double t0 = now_s();
    for (int i = 0; i < times; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    return now_s() - t0;
}

static double sgemm_rate(int m, int n, int k, int reps) {
    float *a = malloc((size_t)m * k * sizeof *a), *b = malloc((size_t)k * n * sizeof *b),
          *c = malloc((size_t)m * n * sizeof *c);
    if (!a || !b || !c) exit(1);
    for (long i = 0; i < (long)m * k; i++) a[i] = (float)(i % 13) * 0.01f;
    for (long i = 0; i < (long)k * n; i++) b[i] = (float)(i % 7) * 0.01f;
    double t[32];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        t[r] = now_s() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * m * n * (double)k / median(t, reps) / 1e9;
}

/* max_pool2d 2x2 on [64, 16, 28, 28] through the max_pool2d plugin (op_pool ->
 * the backend's pool and pool_backward slots). */
static void bench_max_pool(nnm_ctx *ctx, int reps) {
    enum { B = 64, C = 16, S = 28 };
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "kernel_size", 2);
    nnm_module *pool = NULL;
    if (nnm_module_create(ctx, "max_pool2d", cfg, &pool) != NNM_OK) die(ctx, "max_pool2d");
    nnm_config_free(cfg);
    int64_t shape[4] = {B, C, S, S}, oshape[4] = {B, C, S / 2, S / 2};
    nnm_tensor *x = filled(ctx, 4, shape, 1.0f), *y = NULL;
    nnm_tensor *g = filled(ctx, 4, oshape, 0.01f);
    double t[64];
    const int r = 2 * reps;
    int prev = nnm_grad_set_enabled(0);
    for (int i = -1; i < r; i++) {
        double t0 = now_s();
        if (nnm_module_call(pool, &x, 1, &y, 1) != NNM_OK) die(ctx, "max_pool2d forward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    nnm_grad_set_enabled(prev);
    const double fwd = median(t, r), bytes = 4.0 * B * C * S * S * 1.25; /* read x, write y */
    emit("max_pool2d_fwd_b64", fwd * 1e3, "ms", B, bytes / fwd / 1e9, "gbs");
    nnm_tensor_set_requires_grad(x, 1);
    for (int i = -1; i < r; i++) {
        nnm_tensor_set_grad(x, NULL);
        double t0 = now_s();
        if (nnm_module_call(pool, &x, 1, &y, 1) != NNM_OK) die(ctx, "max_pool2d forward (grad)");
        if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "max_pool2d backward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    emit("max_pool2d_fwd_bwd_b64", median(t, r) * 1e3, "ms", B, 0, NULL);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    nnm_module_release(pool);
}

/* batch_norm2d in train mode on [64, C, S, S] through the normalization
 * plugin (op_batch_norm -> the backend's batch_norm slots). */
static void bench_batch_norm(nnm_ctx *ctx, int reps, int C, int S) {
    enum { B = 64 };
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "num_features", C);
    nnm_module *bn = NULL;
    if (nnm_module_create(ctx, "batch_norm2d", cfg, &bn) != NNM_OK) die(ctx, "batch_norm2d");
    nnm_config_free(cfg);
    int64_t shape[4] = {B, C, S, S};
    nnm_tensor *x = filled(ctx, 4, shape, 1.0f), *y = NULL;
    nnm_tensor *g = filled(ctx, 4, shape, 0.01f);
    double t[64];
    char name[64];
    const int r = 2 * reps;
    int prev = nnm_grad_set_enabled(0);
    for (int i = -1; i < r; i++) {
        double t0 = now_s();
        if (nnm_module_call(bn, &x, 1, &y, 1) != NNM_OK) die(ctx, "batch_norm2d forward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    nnm_grad_set_enabled(prev);
    const double fwd = median(t, r), bytes = 4.0 * B * C * S * S * 2; /* read x, write y */
    snprintf(name, sizeof name, "batch_norm2d_fwd_b64_c%d", C);
    emit(name, fwd * 1e3, "ms", B, bytes / fwd / 1e9, "gbs");
    nnm_tensor_set_requires_grad(x, 1);
    for (int i = -1; i < r; i++) {
        nnm_module_zero_grad(bn);
        nnm_tensor_set_grad(x, NULL);
        double t0 = now_s();
        if (nnm_module_call(bn, &x, 1, &y, 1) != NNM_OK) die(ctx, "batch_norm2d forward (grad)");
        if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "batch_norm2d backward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    snprintf(name, sizeof name, "batch_norm2d_fwd_bwd_b64_c%d", C);
    emit(name, median(t, r) * 1e3, "ms", B, 0, NULL);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    nnm_module_release(bn);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 32) reps = 5;
    openblas_set_num_threads(1);
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;
    nnm_ctx_set_num_threads(ctx, 1); /* one thread, as PyTorch's side (contexts default to the cores) */
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_channels", C_IN);
    nnm_config_set_int(cfg, "out_channels", C_OUT);
    nnm_config_set_int(cfg, "kernel_size", K);
    nnm_config_set_int(cfg, "padding", 1);
    nnm_module *conv = NULL;
    if (nnm_module_create(ctx, "conv2d", cfg, &conv) != NNM_OK) die(ctx, "conv2d");
    nnm_config_free(cfg);

    emit("sgemm_conv_shape", sgemm_rate(C_OUT, HW * HW, C_IN * K * K, 2 * reps), "GFLOP/s", 1, 0, NULL);
    emit("sgemm_1024", sgemm_rate(1024, 1024, 1024, reps), "GFLOP/s", 1, 0, NULL);

    const int gm = C_OUT, gn = HW * HW, gk = C_IN * K * K;
    float *ga = calloc((size_t)gm * gk, sizeof(float)), *gb = calloc((size_t)gk * gn, sizeof(float)),
          *gc = calloc((size_t)gm * gn, sizeof(float));
    if (!ga || !gb || !gc) die(ctx, "out of memory");
    for (long i = 0; i < (long)gk * gn; i++) gb[i] = (float)(i % 7) * 0.01f;
    const int batches[2] = {8, 32};
    static const char *const algos[2][3] = {{"winograd_f2x2_3x3", "1", ""}, {"im2col_sgemm", "0", "_im2col"}};
    for (int bi = 0; bi < 4; bi++) {
        const int batch = batches[bi / 2];
        const char *sfx = algos[bi % 2][2];
        g_algo = algos[bi % 2][0];
        setenv("NNM_CPU_WINOGRAD", algos[bi % 2][1], 1); /* read by the cpu backend at each call */
        const int r = batch == 32 ? (reps + 1) / 2 : reps;
        int64_t shape[4] = {batch, C_IN, HW, HW};
        nnm_tensor *x = filled(ctx, 4, shape, 1.0f), *y = NULL;
        double t[32], tg[32];
        char name[64];
        /* forward, grad mode off, alternating with the same flops of plain sgemm */
        int prev = nnm_grad_set_enabled(0);
        for (int i = -1; i < r; i++) {
            const double ts = sgemm_time(gm, gn, gk, batch, ga, gb, gc);
            if (i >= 0) tg[i] = ts;
            double t0 = now_s();
            if (nnm_module_call(conv, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward");
            if (i >= 0) t[i] = now_s() - t0;
            nnm_tensor_release(y);
            y = NULL;
        }
        nnm_grad_set_enabled(prev);
        const double fwd = median(t, r), sg = conv_flops(batch) / median(tg, r) / 1e9;
        snprintf(name, sizeof name, "conv2d_fwd_b%d%s", batch, sfx);
        emit(name, fwd * 1e3, "ms", batch, conv_flops(batch) / fwd / 1e9, "gflops");
        snprintf(name, sizeof name, "sgemm_conv_shape_b%d%s", batch, sfx);
        emit(name, sg, "GFLOP/s", batch, 0, NULL);
        snprintf(name, sizeof name, "conv_fwd_vs_sgemm_b%d%s", batch, sfx);
        emit(name, conv_flops(batch) / fwd / 1e9 / sg, "ratio", batch, 0, NULL);
        /* forward + backward: d input, d weight, d bias */
        nnm_tensor_set_requires_grad(x, 1);
        int64_t oshape[4] = {batch, C_OUT, HW, HW};
        nnm_tensor *g = filled(ctx, 4, oshape, 0.01f);
        for (int i = -1; i < r; i++) {
            nnm_module_zero_grad(conv);
            nnm_tensor_set_grad(x, NULL);
            double t0 = now_s();
            if (nnm_module_call(conv, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward (grad)");
            if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "backward");
            if (i >= 0) t[i] = now_s() - t0;
            nnm_tensor_release(y);
            y = NULL;
        }
        const double fb = median(t, r);
        snprintf(name, sizeof name, "conv2d_fwd_bwd_b%d%s", batch, sfx);
        emit(name, fb * 1e3, "ms", batch, 3 * conv_flops(batch) / fb / 1e9, "gflops");
        nnm_tensor_release(g);
        nnm_tensor_release(x);
    }
    unsetenv("NNM_CPU_WINOGRAD");
    g_algo = NULL;
    free(ga), free(gb), free(gc);
    nnm_module_release(conv);
    bench_max_pool(ctx, reps);
    bench_batch_norm(ctx, reps, 16, 28);
    bench_batch_norm(ctx, reps, 32, 14);
    nnm_ctx_free(ctx);
    return 0;
}
