/* bench/bench_conv_slot.c - the cpu backend's `conv` slot alone, one thread,
 * on the 2-d geometries where bench_zoo's models spend their time; its twin
 * bench_conv_slot_torch.py times F.conv2d on the same list (one thread), so
 * the two give per-geometry ratios against PyTorch's oneDNN.
 *
 *   bench_conv_slot [REPS] [n,cin,cout,h,w,k,stride,pad,groups ...]
 *
 * Without geometries, the built-in list (bench_conv_slot_torch.py holds the
 * same). One JSON line a geometry: the median of REPS calls (process CPU
 * time, ms) and GFLOP/s (2 flops a multiply-add). A slot that declines
 * (NNM_E_UNSUPPORTED: the runtime's im2col path would run) prints
 * "declined". OPENBLAS_NUM_THREADS defaults to 1 here; NNM_BENCH_CPU_SO
 * names another build of the cpu plugin to time instead. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnmod/plugin.h"

static const char *const k_default[] = {
    "1,3,64,224,224,7,2,3,1",     /* resnet conv1 */
    "1,3,64,224,224,11,4,2,1",    /* alexnet features.0 */
    "1,64,192,27,27,5,1,2,1",     /* alexnet features.3 */
    "1,192,384,13,13,3,1,1,1",    /* alexnet features.6 */
    "1,256,256,13,13,3,1,1,1",    /* alexnet features.10 */
    "1,64,64,56,56,3,1,1,1",      /* resnet layer1 */
    "1,128,128,28,28,3,1,1,1",    /* resnet layer2 */
    "1,256,256,14,14,3,1,1,1",    /* resnet50 layer3 */
    "1,512,512,14,14,3,1,1,1",    /* wide_resnet layer3 */
    "1,512,512,7,7,3,1,1,1",      /* resnet layer4 */
    "1,1024,1024,7,7,3,1,1,1",    /* wide_resnet layer4 */
    "1,1024,1024,14,14,3,2,1,1",  /* wide_resnet layer4.0 (stride 2) */
    "1,2048,512,7,7,1,1,0,1",     /* resnet50 layer4 1x1 */
    "1,64,64,56,56,3,1,1,4",      /* regnet_x_400mf stage 1: groups 4 (width 16) */
    "1,160,160,14,14,3,1,1,10",   /* regnet_x_400mf stage 3 */
    "1,400,400,7,7,3,1,1,25",     /* regnet_x_400mf stage 4 */
    "1,208,208,14,14,3,1,1,13",   /* regnet_y_400mf stage 3 */
    "1,440,440,7,7,3,1,1,55",     /* regnet_y_400mf stage 4 */
    "1,128,128,28,28,3,1,1,32",   /* resnext50 layer2 */
    "1,1024,1024,7,7,3,1,1,32",   /* resnext50 layer4 */
    "8,512,512,7,7,3,1,1,1",      /* batch 8 */
    "8,256,256,14,14,3,1,1,1",
    "8,160,160,14,14,3,1,1,10",
    "8,400,400,7,7,3,1,1,25",
    "8,64,64,56,56,3,1,1,4",
};

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static nnm_status fake_set_error(nnm_env *env, nnm_status code, const char *fmt, ...) {
    (void)env;
    (void)fmt;
    return code;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1)
        reps = 1;
    setenv("OPENBLAS_NUM_THREADS", "1", 0); /* before OpenBLAS loads with the plugin */
    const char *so = getenv("NNM_BENCH_CPU_SO"); /* another build of the plugin, to compare */
    void *dl = dlopen(so != NULL && *so ? so : CPU_SO, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "bench_conv_slot: %s\n", dlerror());
        return 1;
    }
    nnm_plugin_entry_fn entry;
    void *sym = dlsym(dl, NNM_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry);
    const nnm_plugin_desc *d = entry(NNM_ABI_MAJOR, NNM_ABI_MINOR);
    const nnm_backend_vtable *be = d->backends[0];
    nnm_host host;
    memset(&host, 0, sizeof host);
    host.struct_size = sizeof host;
    host.abi_major = NNM_ABI_MAJOR;
    host.abi_minor = NNM_ABI_MINOR;
    host.set_error = fake_set_error;
    nnm_env env = {sizeof env, 0, &host};
    void *state = NULL;
    if (be->init(&env, &state) != NNM_OK || be->set_num_threads(&env, state, 1) != NNM_OK)
        return 1;
    const int ng = argc > 2 ? argc - 2 : (int)(sizeof k_default / sizeof k_default[0]);
    for (int gi = 0; gi < ng; gi++) {
        const char *spec = argc > 2 ? argv[2 + gi] : k_default[gi];
        long long n, ci, co, h, w, k, s, p, g;
        if (sscanf(spec, "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld", &n, &ci, &co, &h, &w, &k, &s, &p, &g) != 9) {
            fprintf(stderr, "bench_conv_slot: bad geometry %s\n", spec);
            return 2;
        }
        const int64_t oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
        int64_t xs[4] = {n, ci, h, w}, ws[4] = {co, ci / g, k, k}, ys[4] = {n, co, oh, ow}, bs[1] = {co};
        int64_t xst[4] = {ci * h * w, h * w, w, 1}, wst[4] = {ci / g * k * k, k * k, k, 1};
        int64_t yst[4] = {co * oh * ow, oh * ow, ow, 1}, bst[1] = {1};
        const size_t nx = (size_t)(n * ci * h * w), nw = (size_t)(co * ci / g * k * k), ny = (size_t)(n * co * oh * ow);
        float *x = aligned_alloc(64, (nx + 16) * 4), *wt = aligned_alloc(64, (nw + 16) * 4);
        float *y = aligned_alloc(64, (ny + 16) * 4), *b = aligned_alloc(64, (size_t)(co + 16) * 4);
        uint32_t r = 12345u;
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (size_t i = 0; i < nw; i++)
            wt[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
        for (long long i = 0; i < co; i++)
            b[i] = 0.1f;
        nnm_tensor_desc xd = {x, {NNM_DEVICE_CPU, 0}, 4, {NNM_DTYPE_FLOAT, 32, 1}, xs, xst, 0};
        nnm_tensor_desc wd = {wt, {NNM_DEVICE_CPU, 0}, 4, {NNM_DTYPE_FLOAT, 32, 1}, ws, wst, 0};
        nnm_tensor_desc yd = {y, {NNM_DEVICE_CPU, 0}, 4, {NNM_DTYPE_FLOAT, 32, 1}, ys, yst, 0};
        nnm_tensor_desc bd = {b, {NNM_DEVICE_CPU, 0}, 1, {NNM_DTYPE_FLOAT, 32, 1}, bs, bst, 0};
        nnm_conv_params cp;
        memset(&cp, 0, sizeof cp);
        cp.struct_size = sizeof cp;
        cp.n_spatial = 2;
        cp.groups = (int32_t)g;
        for (int i = 0; i < 2; i++) {
            cp.stride[i] = s;
            cp.padding[i] = p;
            cp.padding_end[i] = p;
            cp.dilation[i] = 1;
        }
        nnm_conv_args a = {sizeof a, 0, &cp, &xd, &wd, &bd, &yd, NULL, NULL, NULL};
        nnm_status st = be->conv(&env, state, &a);
        for (int i = 0; i < 2 && st == NNM_OK; i++) /* warm: caches, the heap's mmap threshold */
            be->conv(&env, state, &a);
        double *t = malloc((size_t)reps * sizeof *t);
        for (int i = 0; i < reps && st == NNM_OK; i++) {
            const double c0 = cpu_s();
            be->conv(&env, state, &a);
            t[i] = cpu_s() - c0;
        }
        const double macs = (double)n * co * oh * ow * (double)(ci / g) * k * k;
        if (st == NNM_OK) {
            qsort(t, (size_t)reps, sizeof *t, cmp_d);
            printf("{\"bench\": \"conv_slot\", \"geometry\": \"%s\", \"value\": %.4f, \"unit\": \"ms\", "
                   "\"gflops\": %.1f}\n",
                   spec, t[reps / 2] * 1e3, 2 * macs / t[reps / 2] * 1e-9);
        } else {
            printf("{\"bench\": \"conv_slot\", \"geometry\": \"%s\", \"value\": 0, \"unit\": \"declined\", "
                   "\"status\": %d}\n",
                   spec, (int)st);
        }
        fflush(stdout);
        free(t), free(x), free(wt), free(y), free(b);
    }
    be->shutdown(state);
    dlclose(dl);
    return 0;
}
