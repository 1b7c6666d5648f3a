/* tests/ddp/comm_fixture.c - comm plugins for test_comm, one per FX_* define:
 * FX_LOOP a working single-process communicator "loop" (world of 1: every
 * collective is a no-op or a copy) and broken ones the loader must refuse. */
#include <stdlib.h>
#include <string.h>

#include "nnmod/plugin.h"

struct nnm_comm_work {
    int dummy;
};

static int g_state;

static nnm_status loop_init(nnm_env *env, nnm_comm_init_args *args, void **state) {
    (void)env;
    args->rank = 0;
    args->world_size = 1;
    *state = &g_state;
    return NNM_OK;
}

static void loop_shutdown(void *state) { (void)state; }

static nnm_status new_work(nnm_env *env, nnm_comm_work **work) {
    *work = malloc(sizeof **work);
    return *work ? NNM_OK : env->host->set_error(env, NNM_E_NOMEM, "loop: out of memory");
}

/* What the loop communicator was asked to all-reduce, in order (test_comm
 * reads it through dlsym: the pieces DDP starts). */
#define FX_LOG_CAP 256
typedef struct fx_piece {
    const float *data;
    int64_t n;
} fx_piece;
#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
fx_piece nnm_comm_fx_log[FX_LOG_CAP];
#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int nnm_comm_fx_log_n;

static nnm_status loop_all_reduce(nnm_env *env, void *state, float *data, int64_t n,
                                  nnm_comm_work **work) {
    (void)state;
    if (nnm_comm_fx_log_n < FX_LOG_CAP) {
        nnm_comm_fx_log[nnm_comm_fx_log_n].data = data;
        nnm_comm_fx_log[nnm_comm_fx_log_n++].n = n;
    }
    return new_work(env, work);
}

static nnm_status loop_broadcast(nnm_env *env, void *state, void *data, uint64_t bytes,
                                 int32_t root, nnm_comm_work **work) {
    (void)state, (void)data, (void)bytes, (void)root;
    return new_work(env, work);
}

static nnm_status loop_all_gather(nnm_env *env, void *state, const void *send, void *recv,
                                  uint64_t bytes, nnm_comm_work **work) {
    (void)state;
    if (bytes) memcpy(recv, send, bytes);
    return new_work(env, work);
}

static nnm_status loop_barrier(nnm_env *env, void *state, nnm_comm_work **work) {
    (void)state;
    return new_work(env, work);
}

#if defined(__GNUC__)
__attribute__((unused))
#endif
static nnm_status loop_wait(nnm_env *env, void *state, nnm_comm_work *work) {
    (void)env, (void)state;
    free(work);
    return NNM_OK;
}

#if defined(FX_LOOP) || defined(FX_DUP)
#define FX_NAME "loop"
#elif defined(FX_BADNAME)
#define FX_NAME "Loop-Comm"
#else
#define FX_NAME "broken"
#endif

static const nnm_comm_vtable vt = {
#if defined(FX_SMALLVT)
    .struct_size = 24,
#else
    .struct_size = sizeof(nnm_comm_vtable),
#endif
    .name = FX_NAME,
    .version_major = 1,
    .device_type = NNM_DEVICE_CPU,
    .init = loop_init,
    .shutdown = loop_shutdown,
    .all_reduce_start = loop_all_reduce,
    .broadcast_start = loop_broadcast,
    .all_gather_start = loop_all_gather,
    .barrier_start = loop_barrier,
#if !defined(FX_NULLWAIT)
    .wait = loop_wait,
#endif
};

#if defined(__GNUC__)
__attribute__((unused))
#endif
static const nnm_comm_vtable *const comms[] = {&vt};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "comm_fixture_" FX_NAME,
    .n_comms = 1,
#if defined(FX_NULLLIST)
    .comms = NULL,
#else
    .comms = comms,
#endif
};

NNM_PLUGIN_DEFINE(desc)
