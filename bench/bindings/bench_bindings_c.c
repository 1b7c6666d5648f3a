/* bench/bindings/bench_bindings_c.c - the C baseline of bench_bindings: one
 * small module call on a [4, 16] input with grad mode off, through
 * nnm_module_call, the output released each time. Two modules: "linear"
 * (Linear(16, 16)) and "relu" (so cheap that the call path and the binding
 * are most of the time). The Rust and Go
 * twins (bench/bindings/{rust,go}) do exactly the same through their
 * bindings; bench/bench_bindings.sh runs all of them in one run.
 *
 *   bench_bindings_c linear|relu [iters] [reps]
 *
 * Prints one JSON line: the median over reps of the mean ns per call, in
 * process CPU time ("value": what the call costs, robust to a loaded
 * machine, where the process is often descheduled) and wall time ("wall"). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "bench_bindings_c"
#include "../bench_util.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "linear";
    int iters = argc > 2 ? atoi(argv[2]) : 20000;
    int reps = argc > 3 ? atoi(argv[3]) : 15;
    int linear = strcmp(which, "linear") == 0;
    if ((!linear && strcmp(which, "relu") != 0) || iters <= 0 || reps <= 0 || reps > 1000) return 2;
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) die(ctx, "context");
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_features", 16);
    nnm_config_set_int(cfg, "out_features", 16);
    nnm_module *m = NULL;
    if (nnm_module_create(ctx, which, linear ? cfg : NULL, &m) != NNM_OK) die(ctx, which);
    nnm_config_free(cfg);
    float xv[64];
    for (int i = 0; i < 64; i++) xv[i] = 1.0f;
    int64_t shape[2] = {4, 16};
    nnm_tensor *x = NULL;
    if (nnm_tensor_from_f32(ctx, 2, shape, xv, &x) != NNM_OK) die(ctx, "input");
    nnm_grad_set_enabled(0);

    for (int i = 0; i < iters / 10 + 100; i++) { /* warm the allocator cache */
        nnm_tensor *y = NULL;
        if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "call");
        nnm_tensor_release(y);
    }
    double *ns = malloc(2 * (size_t)reps * sizeof *ns), *wall = ns + reps;
    if (!ns) return 1;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), c0 = cpu_s();
        for (int i = 0; i < iters; i++) {
            nnm_tensor *y = NULL;
            if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "call");
            nnm_tensor_release(y);
        }
        ns[r] = (cpu_s() - c0) * 1e9 / iters;
        wall[r] = (now_s() - t0) * 1e9 / iters;
    }
    printf("{\"bench\": \"bindings_call\", \"lang\": \"c\", \"module\": \"%s\", "
           "\"input\": [4, 16], \"value\": %.1f, \"unit\": \"ns\", \"clock\": \"process_cpu\", "
           "\"wall\": %.1f, \"iters\": %d, \"reps\": %d}\n",
           which, median(ns, reps), median(wall, reps), iters, reps);
    free(ns);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
    return 0;
}
