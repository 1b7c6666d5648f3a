/* tests/hostile/hang_comm.c - a comm plugin whose collectives never complete
 * (issue 19): the host must bound every wait on it. Built twice:
 *
 *   hx_hang.so         comm "hx_hang": `test` always says "not done", `wait`
 *                      blocks for good (the host polls test, never waits)
 *   hx_hang_notest.so  comm "hx_hang_notest": no `test` slot; `wait` blocks
 *                      for good (the host waits on a helper thread)
 *
 * A one-rank job (rank 0 of 1), so DDP and nnm train --ddp can use it without
 * a launcher. It never reads or writes the buffers it is given. */
#include <stdlib.h>
#include <unistd.h>

#include "nnmod/plugin.h"

struct nnm_comm_work {
    nnm_comm_work *next;
};

typedef struct hang_state {
    nnm_comm_work *works; /* every work handed out and not waited on */
} hang_state;

static nnm_status hang_init(nnm_env *env, nnm_comm_init_args *args, void **state) {
    hang_state *s = calloc(1, sizeof *s);
    if (!s) return env->host->set_error(env, NNM_E_NOMEM, "hx_hang: out of memory");
    args->rank = 0;
    args->world_size = 1;
    *state = s;
    return NNM_OK;
}

/* Abandons what is in flight: frees every work. */
static void hang_shutdown(void *state) {
    hang_state *s = state;
    if (!s) return;
    while (s->works) {
        nnm_comm_work *w = s->works;
        s->works = w->next;
        free(w);
    }
    free(s);
}

static nnm_status start(nnm_env *env, hang_state *s, nnm_comm_work **work) {
    nnm_comm_work *w = calloc(1, sizeof *w);
    if (!w) return env->host->set_error(env, NNM_E_NOMEM, "hx_hang: out of memory");
    w->next = s->works;
    s->works = w;
    *work = w;
    return NNM_OK;
}

static nnm_status hang_all_reduce(nnm_env *env, void *state, float *data, int64_t n,
                                  nnm_comm_work **work) {
    (void)data, (void)n;
    return start(env, state, work);
}
static nnm_status hang_broadcast(nnm_env *env, void *state, void *data, uint64_t bytes,
                                 int32_t root, nnm_comm_work **work) {
    (void)data, (void)bytes, (void)root;
    return start(env, state, work);
}
static nnm_status hang_all_gather(nnm_env *env, void *state, const void *send, void *recv,
                                  uint64_t bytes, nnm_comm_work **work) {
    (void)send, (void)recv, (void)bytes;
    return start(env, state, work);
}
static nnm_status hang_barrier(nnm_env *env, void *state, nnm_comm_work **work) {
    return start(env, state, work);
}

/* Never returns: a peer that never answers, and a plugin that does not
 * enforce the timeout it was given. */
static nnm_status hang_wait(nnm_env *env, void *state, nnm_comm_work *work) {
    (void)env, (void)state, (void)work;
    for (;;) sleep(3600);
    return NNM_OK;
}

#if HX_HANG_TEST
static int hang_test(void *state, nnm_comm_work *work) {
    (void)state, (void)work;
    return 0;
}
#endif

static const nnm_comm_vtable hang_vt = {
    .struct_size = sizeof(nnm_comm_vtable),
#if HX_HANG_TEST
    .name = "hx_hang",
#else
    .name = "hx_hang_notest",
#endif
    .version_major = 1,
    .device_type = NNM_DEVICE_CPU,
    .init = hang_init,
    .shutdown = hang_shutdown,
    .all_reduce_start = hang_all_reduce,
    .broadcast_start = hang_broadcast,
    .all_gather_start = hang_all_gather,
    .barrier_start = hang_barrier,
    .wait = hang_wait,
#if HX_HANG_TEST
    .test = hang_test,
#endif
};

static const nnm_comm_vtable *const hang_comms[] = {&hang_vt};

static const nnm_plugin_desc hang_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
#if HX_HANG_TEST
    .name = "hx_hang",
#else
    .name = "hx_hang_notest",
#endif
    .description = "a comm whose collectives never complete (tests/hostile)",
    .n_comms = 1,
    .comms = hang_comms,
};

NNM_PLUGIN_DEFINE(hang_desc)
