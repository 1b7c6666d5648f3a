/* plugins/comm_nccl/comm_nccl.c - the "nccl" communicator: collectives between
 * GPUs over NCCL, on device buffers (device_type CUDA).
 *
 * Like the cuda backend, this file must load anywhere: the CUDA runtime is
 * linked statically and NCCL is dlopened by init (libnccl.so.2), so on a
 * machine without a GPU init says "no device" (NNM_E_NO_DEVICE) and nothing
 * else runs.
 *
 * Launch (docs/distributed.md): every process gets NNM_RANK and
 * NNM_WORLD_SIZE (or runs under mpirun, whose OMPI_COMM_WORLD_RANK/_SIZE are
 * read too) and, when there is more than one, NNM_NCCL_ID_FILE: a path every
 * rank can read (a shared file system across machines). Rank 0 writes NCCL's
 * unique id there (atomically: temp file and rename); the others wait for it,
 * at most the timeout. The device is NNM_LOCAL_RANK (or
 * OMPI_COMM_WORLD_LOCAL_RANK, else rank modulo the device count).
 *
 * Collectives run on one non-blocking stream of the communicator's own, so
 * they overlap the cuda backend's work on its own (per-context, non-blocking)
 * stream: DDP's bucket all-reduces run while backward goes on. No stream
 * handle crosses between the two plugins; the order comes from the runtime
 * (runtime/dist/comm.c, docs/distributed.md "NCCL and streams"):
 *  - before: the runtime synchronises the buffer's device (the backend's
 *    `synchronize` slot) before every *_start, so the ops that produced a
 *    bucket's gradients have finished when NCCL reads it;
 *  - after: a work is a CUDA event recorded after the collective on this
 *    stream; wait returns only once it completed, so everything the backend
 *    queues after the wait (averaging, the optimizer step) sees the result.
 * wait polls the event (and NCCL's asynchronous error) until the timeout,
 * then aborts the communicator: NNM_E_TIMEOUT naming this rank (NCCL cannot
 * tell which peer is missing). NCCL refuses two ranks on one GPU ("Duplicate
 * GPU detected"): one process per GPU.
 */
#define _GNU_SOURCE /* nanosleep, clock_gettime */

#include <nnmod/plugin.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NCCL_ERR(env, code, ...) (env)->host->set_error((env), (code), __VA_ARGS__)

typedef ncclResult_t (*fn_get_unique_id)(ncclUniqueId *);
typedef ncclResult_t (*fn_comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
typedef ncclResult_t (*fn_comm_destroy)(ncclComm_t);
typedef ncclResult_t (*fn_comm_abort)(ncclComm_t);
typedef const char *(*fn_error_string)(ncclResult_t);
typedef ncclResult_t (*fn_async_error)(ncclComm_t, ncclResult_t *);
typedef ncclResult_t (*fn_all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                                      ncclComm_t, cudaStream_t);
typedef ncclResult_t (*fn_broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                                     cudaStream_t);
typedef ncclResult_t (*fn_all_gather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
                                      cudaStream_t);

typedef struct nccl_api {
    void *dl;
    fn_get_unique_id get_unique_id;
    fn_comm_init_rank comm_init_rank;
    fn_comm_destroy comm_destroy;
    fn_comm_abort comm_abort;
    fn_error_string error_string;
    fn_async_error async_error;
    fn_all_reduce all_reduce;
    fn_broadcast broadcast;
    fn_all_gather all_gather;
} nccl_api;

struct nnm_comm_work {
    cudaEvent_t done;
    const char *what;
};

typedef struct nccl_state {
    nccl_api api;
    ncclComm_t comm;
    cudaStream_t stream;
    float *scratch;             /* one float: the barrier's all-reduce */
    int rank, world, device;
    double timeout_s;
    int broken;
} nccl_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static int env_int(const char *a, const char *b, int dflt) {
    const char *v = getenv(a);
    if (!v && b) v = getenv(b);
    if (!v || !*v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    return *end == '\0' && x >= 0 && x < (1L << 30) ? (int)x : -2;
}

static nnm_status load_nccl(nnm_env *env, nccl_api *api) {
    static const char *const names[] = {"libnccl.so.2", "libnccl.so"};
    for (size_t i = 0; i < 2 && !api->dl; i++) api->dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!api->dl)
        return NCCL_ERR(env, NNM_E_LOAD, "nccl: libnccl.so.2 not found (%s)", dlerror());
#define SYM(field, name)                                                                  \
    do {                                                                                  \
        void *p_ = dlsym(api->dl, name);                                                  \
        if (!p_) {                                                                        \
            dlclose(api->dl);                                                             \
            api->dl = NULL;                                                               \
            return NCCL_ERR(env, NNM_E_LOAD, "nccl: libnccl lacks %s", name);              \
        }                                                                                 \
        memcpy(&api->field, &p_, sizeof p_);                                              \
    } while (0)
    SYM(get_unique_id, "ncclGetUniqueId");
    SYM(comm_init_rank, "ncclCommInitRank");
    SYM(comm_destroy, "ncclCommDestroy");
    SYM(comm_abort, "ncclCommAbort");
    SYM(error_string, "ncclGetErrorString");
    SYM(async_error, "ncclCommGetAsyncError");
    SYM(all_reduce, "ncclAllReduce");
    SYM(broadcast, "ncclBroadcast");
    SYM(all_gather, "ncclAllGather");
#undef SYM
    return NNM_OK;
}

/* Rank 0 publishes the id; the others wait for it (at most timeout_s). */
static nnm_status exchange_id(nnm_env *env, nccl_state *s, ncclUniqueId *id) {
    if (s->world == 1) return s->api.get_unique_id(id) == ncclSuccess
                                  ? NNM_OK
                                  : NCCL_ERR(env, NNM_E_PLUGIN, "nccl: ncclGetUniqueId failed");
    const char *path = getenv("NNM_NCCL_ID_FILE");
    if (!path || !*path)
        return NCCL_ERR(env, NNM_E_UNSUPPORTED,
                        "nccl rank %d of %d: NNM_NCCL_ID_FILE is not set (a path every rank "
                        "can read, fresh for each job)", s->rank, s->world);
    if (s->rank == 0) {
        ncclResult_t r = s->api.get_unique_id(id);
        if (r != ncclSuccess)
            return NCCL_ERR(env, NNM_E_PLUGIN, "nccl: ncclGetUniqueId: %s", s->api.error_string(r));
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (!f) return NCCL_ERR(env, NNM_E_IO, "nccl rank 0: cannot write %s: %s", tmp, strerror(errno));
        int ok = fwrite(id, sizeof *id, 1, f) == 1;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            int e = errno;
            remove(tmp);
            return NCCL_ERR(env, NNM_E_IO, "nccl rank 0: cannot publish %s: %s", path, strerror(e));
        }
        return NNM_OK;
    }
    double end = now_s() + s->timeout_s;
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, sizeof *id, 1, f);
            fclose(f);
            if (got == 1) return NNM_OK;
        }
        if (now_s() > end)
            return NCCL_ERR(env, NNM_E_TIMEOUT,
                            "nccl rank %d of %d: rank 0 did not publish %s within %.0f s", s->rank,
                            s->world, path, s->timeout_s);
        nap_us(50000);
    }
}

static void state_free(nccl_state *s) {
    if (s->scratch) cudaFree(s->scratch);
    if (s->stream) cudaStreamDestroy(s->stream);
    if (s->api.dl) dlclose(s->api.dl);
    free(s);
}

static nnm_status nccl_init(nnm_env *env, nnm_comm_init_args *args, void **state) {
    *state = NULL;
    if (!args || args->struct_size < sizeof(nnm_comm_init_args))
        return NCCL_ERR(env, NNM_E_INVALID, "nccl: init args missing or too small");
    int n_dev = 0;
    cudaError_t ce = cudaGetDeviceCount(&n_dev);
    if (ce != cudaSuccess || n_dev <= 0) {
        (void)cudaGetLastError();
        return NCCL_ERR(env, NNM_E_NO_DEVICE, "nccl: no device: %s",
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "cudaGetDeviceCount found none");
    }
    int rank = env_int("NNM_RANK", "OMPI_COMM_WORLD_RANK", -1);
    int world = env_int("NNM_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", -1);
    if (rank == -1 && world == -1) rank = 0, world = 1; /* a job of one */
    if (rank < 0 || world < 1 || rank >= world)
        return NCCL_ERR(env, NNM_E_UNSUPPORTED,
                        "nccl: NNM_RANK / NNM_WORLD_SIZE missing or invalid (rank %d of %d)", rank,
                        world);
    int local = env_int("NNM_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", -1);
    nccl_state *s = calloc(1, sizeof *s);
    if (!s) return NCCL_ERR(env, NNM_E_NOMEM, "nccl: out of memory");
    s->rank = rank;
    s->world = world;
    s->device = local >= 0 ? local % n_dev : rank % n_dev;
    s->timeout_s = args->timeout_s > 0 ? args->timeout_s : 300.0;
    nnm_status st = load_nccl(env, &s->api);
    if (st) {
        state_free(s);
        return st;
    }
    if ((ce = cudaSetDevice(s->device)) != cudaSuccess ||
        (ce = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (ce = cudaMalloc((void **)&s->scratch, sizeof(float))) != cudaSuccess) {
        int dev = s->device;
        state_free(s);
        return NCCL_ERR(env, NNM_E_DEVICE, "nccl rank %d: device %d: %s", rank, dev,
                        cudaGetErrorString(ce));
    }
    ncclUniqueId id;
    if ((st = exchange_id(env, s, &id))) {
        state_free(s);
        return st;
    }
    ncclResult_t r = s->api.comm_init_rank(&s->comm, world, id, rank);
    if (r != ncclSuccess) {
        nnm_status e = NCCL_ERR(env, NNM_E_PLUGIN, "nccl rank %d of %d: ncclCommInitRank: %s", rank,
                                world, s->api.error_string(r));
        state_free(s);
        return e;
    }
    args->rank = rank;
    args->world_size = world;
    args->device_id = s->device;
    *state = s;
    return NNM_OK;
}

static void nccl_shutdown(void *state) {
    nccl_state *s = state;
    if (!s) return;
    if (s->comm) {
        if (s->broken) s->api.comm_abort(s->comm);
        else s->api.comm_destroy(s->comm);
    }
    state_free(s);
}

/* Records the event that marks the end of the op just queued. */
static nnm_status finish(nnm_env *env, nccl_state *s, ncclResult_t r, const char *what,
                         nnm_comm_work **work) {
    if (r != ncclSuccess)
        return NCCL_ERR(env, NNM_E_PLUGIN, "nccl rank %d of %d: %s: %s", s->rank, s->world, what,
                        s->api.error_string(r));
    nnm_comm_work *w = calloc(1, sizeof *w);
    if (!w) return NCCL_ERR(env, NNM_E_NOMEM, "nccl: out of memory");
    cudaError_t ce = cudaEventCreateWithFlags(&w->done, cudaEventDisableTiming);
    if (ce == cudaSuccess) ce = cudaEventRecord(w->done, s->stream);
    if (ce != cudaSuccess) {
        free(w);
        return NCCL_ERR(env, NNM_E_DEVICE, "nccl rank %d: %s: %s", s->rank, what, cudaGetErrorString(ce));
    }
    w->what = what;
    *work = w;
    return NNM_OK;
}

#define NCCL_PROLOGUE(s, env, work)                                                      \
    *work = NULL;                                                                         \
    if (s->broken)                                                                        \
        return NCCL_ERR(env, NNM_E_STATE, "nccl rank %d: the communicator failed earlier", \
                        s->rank);                                                         \
    cudaSetDevice(s->device)

static nnm_status nccl_all_reduce(nnm_env *env, void *state, float *data, int64_t n,
                                  nnm_comm_work **work) {
    nccl_state *s = state;
    NCCL_PROLOGUE(s, env, work);
    ncclResult_t r = s->api.all_reduce(data, data, (size_t)n, ncclFloat32, ncclSum, s->comm, s->stream);
    return finish(env, s, r, "all-reduce", work);
}

static nnm_status nccl_broadcast(nnm_env *env, void *state, void *data, uint64_t bytes, int32_t root,
                                 nnm_comm_work **work) {
    nccl_state *s = state;
    NCCL_PROLOGUE(s, env, work);
    ncclResult_t r = s->api.broadcast(data, data, (size_t)bytes, ncclUint8, root, s->comm, s->stream);
    return finish(env, s, r, "broadcast", work);
}

static nnm_status nccl_all_gather(nnm_env *env, void *state, const void *send, void *recv,
                                  uint64_t bytes, nnm_comm_work **work) {
    nccl_state *s = state;
    NCCL_PROLOGUE(s, env, work);
    ncclResult_t r = s->api.all_gather(send, recv, (size_t)bytes, ncclUint8, s->comm, s->stream);
    return finish(env, s, r, "all-gather", work);
}

static nnm_status nccl_barrier(nnm_env *env, void *state, nnm_comm_work **work) {
    nccl_state *s = state;
    NCCL_PROLOGUE(s, env, work);
    ncclResult_t r = s->api.all_reduce(s->scratch, s->scratch, 1, ncclFloat32, ncclSum, s->comm, s->stream);
    return finish(env, s, r, "barrier", work);
}

static nnm_status nccl_wait(nnm_env *env, void *state, nnm_comm_work *w) {
    nccl_state *s = state;
    if (!w) return NCCL_ERR(env, NNM_E_INVALID, "nccl: wait on NULL work");
    double end = now_s() + s->timeout_s;
    nnm_status st = NNM_OK;
    long us = 20;
    for (;;) {
        cudaError_t ce = cudaEventQuery(w->done);
        if (ce == cudaSuccess) break;
        if (ce != cudaErrorNotReady) {
            st = NCCL_ERR(env, NNM_E_DEVICE, "nccl rank %d of %d: %s: %s", s->rank, s->world,
                          w->what, cudaGetErrorString(ce));
            break;
        }
        ncclResult_t ae = ncclSuccess;
        if (s->api.async_error(s->comm, &ae) == ncclSuccess && ae != ncclSuccess && ae != ncclInProgress) {
            s->broken = 1;
            st = NCCL_ERR(env, NNM_E_PLUGIN, "nccl rank %d of %d: %s failed: %s", s->rank, s->world,
                          w->what, s->api.error_string(ae));
            break;
        }
        if (now_s() > end) {
            s->broken = 1; /* shutdown aborts the communicator instead of waiting */
            st = NCCL_ERR(env, NNM_E_TIMEOUT,
                          "nccl rank %d of %d: %s timed out after %.0f s (a peer died or hangs; "
                          "NCCL cannot tell which)",
                          s->rank, s->world, w->what, s->timeout_s);
            break;
        }
        nap_us(us);
        if (us < 2000) us *= 2;
    }
    cudaEventDestroy(w->done);
    free(w);
    return st;
}

static int nccl_test(void *state, nnm_comm_work *w) {
    (void)state;
    cudaError_t ce = cudaEventQuery(w->done);
    return ce == cudaSuccess ? 1 : ce == cudaErrorNotReady ? 0 : -1;
}

static const nnm_comm_vtable nccl_vt = {
    .struct_size = sizeof(nnm_comm_vtable),
    .name = "nccl",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .device_type = NNM_DEVICE_CUDA,
    .init = nccl_init,
    .shutdown = nccl_shutdown,
    .all_reduce_start = nccl_all_reduce,
    .broadcast_start = nccl_broadcast,
    .all_gather_start = nccl_all_gather,
    .barrier_start = nccl_barrier,
    .wait = nccl_wait,
    .test = nccl_test,
};

static const nnm_comm_vtable *const comms[] = {&nccl_vt};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "comm_nccl",
    .description = "collectives between GPUs over NCCL (all-reduce, broadcast, all-gather, barrier)",
    .n_comms = 1,
    .comms = comms,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(desc)
