/* bench/bench_call.c - what the central call path costs.
 *
 * Prints JSON lines:
 *   call_raw_forward      identity's forward called directly (no wrapper)
 *   call_no_hooks         identity through nnm_module_call, fast path
 *   call_wrapper_overhead the difference of the two medians
 *   call_with_hooks       one pre- and one forward hook registered
 *   seq50_linear16_relu   a 50-deep Sequential(Linear(16,16), ReLU) at batch 1,
 *                         grad mode on (every linear records its autograd node)
 *   seq50_linear16_relu_no_grad  the same under no_grad
 * Each figure is the median of REPS repetitions of ITERS calls (wall time);
 * the seq50 lines also give the median thread CPU time (cpu_us) and the
 * fastest repetition (min_us), which a loaded machine hurts less.
 * Usage: bench_call [ITERS] [seq|seq_grad|seq_no_grad]   ("seq": only the two
 * seq50 figures; "seq_grad"/"seq_no_grad": only that one, for profiling the
 * small-model path one mode at a time)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_call"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define REPS 15

/* The host table, captured from inside a real call so the raw loop can hand
 * the plugin the same table the runtime does. */
static const nnm_host *g_host;

static nnm_status nop_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)m, (void)in, (void)n_in;
    return NNM_OK;
}

static nnm_status nop_post(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    (void)user, (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    return NNM_OK;
}

/* A one-layer plugin compiled into the bench: forwards like identity and
 * remembers the host table it was given. */
static nnm_status grab_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}
static nnm_status grab_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    g_host = env->host;
    env->host->tensor_retain(in[0]);
    out[0] = in[0];
    return NNM_OK;
}
static const nnm_layer_vtable grab_vt = {sizeof(nnm_layer_vtable), 0, "grab_host", 1, 0, 0, 1, 1,
                                         grab_create, NULL, grab_forward, NULL};
static const nnm_layer_vtable *const grab_layers[] = {&grab_vt};
static const nnm_plugin_desc grab_desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                          "bench", NULL, 1, 0, grab_layers, NULL};

/* This thread's CPU time: on a loaded machine (a VM shared with others) it
 * counts only the time the bench ran, where wall time also counts waiting. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per call: wall time returned, thread CPU time in *cpu (if non-NULL). */
static double time_calls_cpu(nnm_module *m, nnm_tensor *x, long iters, double *cpu) {
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < iters; i++) {
        nnm_tensor *y;
        if (nnm_module_call(m, &x, 1, &y, 1)) die(nnm_module_ctx(m), "call");
        nnm_tensor_release(y);
    }
    if (cpu) *cpu = (cpu_s() - c0) / (double)iters;
    return (now_s() - t0) / (double)iters;
}

static double time_calls(nnm_module *m, nnm_tensor *x, long iters) {
    return time_calls_cpu(m, x, iters, NULL);
}

static double time_raw(const nnm_layer_vtable *vt, nnm_tensor *x, long iters) {
    nnm_env env = {sizeof(nnm_env), 0, g_host};
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        nnm_tensor *y;
        /* the raw slot, bypassing the call path: only a benchmark does this */
        if (vt->forward(&env, NULL, &x, 1, &y, 1)) exit(1);
        nnm_tensor_release(y);
    }
    return (now_s() - t0) / (double)iters;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    if (iters < 1) iters = 1;
    int seq_only = argc > 2 && !strncmp(argv[2], "seq", 3);
    int run_grad = !(argc > 2 && !strcmp(argv[2], "seq_no_grad"));
    int run_no_grad = !(argc > 2 && !strcmp(argv[2], "seq_grad"));
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    if (nnm_plugin_register_static(ctx, &grab_desc, "bench_call")) die(ctx, "register");

    nnm_module *id = NULL, *grab = NULL;
    if (nnm_module_create(ctx, "identity", NULL, &id)) die(ctx, "identity");
    if (nnm_module_create(ctx, "grab_host", NULL, &grab)) die(ctx, "grab_host");
    int64_t shape[2] = {1, 16};
    nnm_tensor *x, *y;
    if (nnm_tensor_from_f32(ctx, 2, shape, NULL, &x)) die(ctx, "tensor");
    if (nnm_module_call(grab, &x, 1, &y, 1)) die(ctx, "grab call");
    nnm_tensor_release(y);
    const nnm_layer_vtable *idvt;
    if (nnm_layer_find(ctx, "identity", &idvt)) die(ctx, "find identity");

    double raw[REPS], fast[REPS], hooked[REPS];
    if (seq_only) goto seq50;
    for (int r = 0; r < REPS; r++) {
        raw[r] = time_raw(idvt, x, iters);
        fast[r] = time_calls(id, x, iters);
    }
    nnm_hook_handle *h1, *h2;
    nnm_module_register_forward_pre_hook(id, nop_pre, NULL, &h1);
    nnm_module_register_forward_hook(id, nop_post, NULL, &h2);
    for (int r = 0; r < REPS; r++) hooked[r] = time_calls(id, x, iters / 4 + 1);
    nnm_hook_remove(h1);
    nnm_hook_remove(h2);
    double raw_ns = 1e9 * median(raw, REPS), fast_ns = 1e9 * median(fast, REPS);
    double hook_ns = 1e9 * median(hooked, REPS);
    printf("{\"bench\": \"call_raw_forward\", \"value\": %.2f, \"unit\": \"ns/call\", \"layer\": \"identity\", \"iters\": %ld, \"reps\": %d}\n",
           raw_ns, iters, REPS);
    printf("{\"bench\": \"call_no_hooks\", \"value\": %.2f, \"unit\": \"ns/call\", \"layer\": \"identity\"}\n", fast_ns);
    printf("{\"bench\": \"call_wrapper_overhead\", \"value\": %.2f, \"unit\": \"ns/call\", \"target\": 50}\n",
           fast_ns - raw_ns);
    printf("{\"bench\": \"call_with_hooks\", \"value\": %.2f, \"unit\": \"ns/call\", \"hooks\": \"1 pre + 1 forward\"}\n",
           hook_ns);

    /* 50-deep Sequential(Linear(16,16), ReLU) at batch 1 */
seq50:;
    nnm_module *seq = NULL;
    if (nnm_module_create(ctx, "sequential", NULL, &seq)) die(ctx, "sequential");
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_features", 16);
    nnm_config_set_int(cfg, "out_features", 16);
    for (int i = 0; i < 50; i++) {
        nnm_module *l, *r;
        if (nnm_module_create(ctx, "linear", cfg, &l) || nnm_module_create(ctx, "relu", NULL, &r))
            die(ctx, "layer");
        nnm_module_add_child(seq, NULL, l);
        nnm_module_add_child(seq, NULL, r);
        nnm_module_release(l);
        nnm_module_release(r);
    }
    nnm_config_free(cfg);
    long deep_iters = iters / 200 + 1;
    double deep[REPS], deep_cpu[REPS], deep_us, cpu_us;
    if (!run_grad) goto no_grad;
    time_calls(seq, x, deep_iters); /* warm the allocator cache */
    nnm_ctx_stats s0 = {sizeof s0}, s1 = {sizeof s1};
    nnm_ctx_stats_get(ctx, &s0);
    for (int r = 0; r < REPS; r++) deep[r] = time_calls_cpu(seq, x, deep_iters, &deep_cpu[r]);
    nnm_ctx_stats_get(ctx, &s1);
    deep_us = 1e6 * median(deep, REPS);
    cpu_us = 1e6 * median(deep_cpu, REPS);
    printf("{\"bench\": \"seq50_linear16_relu\", \"value\": %.3f, \"unit\": \"us/forward\", \"cpu_us\": %.3f, \"min_us\": %.3f, \"batch\": 1, \"modules\": 101, \"per_module_ns\": %.1f, \"heap_allocs_steady\": %llu, \"target\": 10}\n",
           deep_us, cpu_us, 1e6 * deep[0], deep_us * 1000.0 / 101.0,
           (unsigned long long)(s1.heap_allocs - s0.heap_allocs));
no_grad:
    if (!run_no_grad) goto done;
    int prev = nnm_grad_set_enabled(0);
    time_calls(seq, x, deep_iters);
    for (int r = 0; r < REPS; r++) deep[r] = time_calls_cpu(seq, x, deep_iters, &deep_cpu[r]);
    nnm_grad_set_enabled(prev);
    deep_us = 1e6 * median(deep, REPS);
    cpu_us = 1e6 * median(deep_cpu, REPS);
    printf("{\"bench\": \"seq50_linear16_relu_no_grad\", \"value\": %.3f, \"unit\": \"us/forward\", \"cpu_us\": %.3f, \"min_us\": %.3f, \"batch\": 1, \"modules\": 101, \"per_module_ns\": %.1f, \"target\": 5}\n",
           deep_us, cpu_us, 1e6 * deep[0], deep_us * 1000.0 / 101.0);

done:
    nnm_module_release(seq);
    nnm_module_release(id);
    nnm_module_release(grab);
    nnm_tensor_release(x);
    nnm_ctx_free(ctx);
    return 0;
}
