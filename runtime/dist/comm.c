/* runtime/dist/comm.c - communicators: the runtime's face of the comm plugins
 * (ABI 1.3). Checks tensors (contiguous, on the communicator's device, dtype),
 * keeps them alive while a collective is in flight, and turns the plugin's
 * work handles into requests. Errors land on the context like every other.
 *
 * The host bounds every wait, whatever the plugin does (issue 19): a plugin
 * is told the timeout and should fail a collective its peers do not answer
 * with a message naming them (the mpi plugin does), but one that never
 * completes must not hang the job. So nnm_comm_wait polls the plugin's `test`
 * slot (backing off from 10 us to 200 us, 2 ms once it has waited 0.1 s), and
 * calls its `wait` only once the work is done; a plugin without `test` is
 * waited on from a helper thread.
 * Past the timeout plus a grace (the plugin's own report, which can name the
 * missing ranks, comes first), the host fails the collective with
 * NNM_E_TIMEOUT naming the collective, its sequence number, the plugin and
 * the rank, and breaks the communicator: every later collective is refused
 * with that message. The abandoned work is never waited on: its tensors stay
 * retained (the plugin may still write them) until the communicator is freed,
 * after the plugin's shutdown, which abandons what is in flight; a work whose
 * helper thread is still inside the plugin's wait keeps the communicator (and
 * the plugin) alive for the rest of the process, on purpose. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct nnm_comm {
    nnm_ctx *ctx;
    nnm__plugin *plugin;          /* referenced: the vtable lives in it */
    const nnm_comm_vtable *vt;
    void *state;
    int32_t rank, world;
    nnm_device device;
    uint32_t refs;                /* the user's + one per request */
    double timeout_s;             /* the plugin's; the host waits this plus a grace */
    uint64_t seq;                 /* collectives started */
    int broken;                   /* a collective timed out: refuse the rest */
    char broken_msg[320];
    nnm_comm_request *stale;      /* works given up on, never waited on */
};

struct nnm_comm_request {
    nnm_comm *c;
    nnm_comm_work *work;
    nnm_tensor *keep[2];          /* retained until the wait */
    const char *what;             /* "all-reduce", ... */
    uint64_t seq;                 /* 1, 2, ... per communicator */
    double started;               /* CLOCK_MONOTONIC seconds */
    nnm_comm_request *next;       /* on c->stale */
};

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void request_free(nnm_comm_request *r) {
    nnm_tensor_release(r->keep[0]);
    nnm_tensor_release(r->keep[1]);
    free(r);
}

static void comm_release(nnm_comm *c) {
    if (!c || --c->refs) return;
    c->vt->shutdown(c->state); /* abandons what is in flight: the stale works too */
    while (c->stale) {
        nnm_comm_request *r = c->stale;
        c->stale = r->next;
        request_free(r);
    }
    nnm__plugin_release(c->plugin);
    nnm__ctx_release(c->ctx);
    free(c);
}

NNM_API nnm_status nnm_comm_new(nnm_ctx *ctx, const char *request, const nnm_comm_options *opts,
                                nnm_comm **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!out || !request) return nnm__error(ctx, NNM_E_INVALID, "nnm_comm_new: %s is NULL",
                                            !out ? "out" : "request");
    if (opts && opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_comm_new: options struct_size %u is too small",
                          opts->struct_size);
    double timeout = opts && opts->timeout_s > 0 ? opts->timeout_s : NNM_COMM_DEFAULT_TIMEOUT_S;
    const char *env_t = getenv("NNM_COMM_TIMEOUT");
    if (env_t && *env_t) {
        char *end;
        double v = strtod(env_t, &end);
        if (end == env_t || *end || !(v > 0))
            return nnm__error(ctx, NNM_E_INVALID,
                              "NNM_COMM_TIMEOUT='%.40s' is not a positive number of seconds", env_t);
        timeout = v;
    }
    const nnm_comm_vtable *vt;
    nnm__plugin *owner;
    char err[512];
    nnm_status st = nnm__registry_find_comm(&ctx->reg, request, &vt, &owner, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    nnm_comm *c = calloc(1, sizeof *c);
    if (!c) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (communicator)");
    nnm_comm_init_args args = {sizeof args, 0, timeout, -1, 0, 0, 0};
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    st = vt->init(&env.pub, &args, &c->state);
    if (st) {
        free(c);
        if (ctx->err_seq == seq) nnm__error(ctx, st, "comm '%s': init failed", vt->name);
        return st > 0 ? NNM_E_PLUGIN : st;
    }
    if (args.world_size < 1 || args.rank < 0 || args.rank >= args.world_size) {
        vt->shutdown(c->state);
        free(c);
        return nnm__error(ctx, NNM_E_PLUGIN, "comm '%s': init reported rank %d of %d", vt->name,
                          args.rank, args.world_size);
    }
    c->ctx = ctx;
    c->plugin = owner;
    c->vt = vt;
    c->rank = args.rank;
    c->world = args.world_size;
    c->device = (nnm_device){vt->device_type, vt->device_type == NNM_DEVICE_CPU ? 0 : args.device_id};
    c->refs = 1;
    c->timeout_s = timeout;
    nnm__plugin_retain(owner);
    nnm__ctx_retain(ctx);
    *out = c;
    return NNM_OK;
}

NNM_API void nnm_comm_free(nnm_comm *c) { comm_release(c); }

NNM_API int32_t nnm_comm_rank(const nnm_comm *c) { return c ? c->rank : -1; }
NNM_API int32_t nnm_comm_world_size(const nnm_comm *c) { return c ? c->world : 0; }
NNM_API nnm_device nnm_comm_device(const nnm_comm *c) {
    return c ? c->device : (nnm_device){NNM_DEVICE_CPU, 0};
}

/* Checks that t can be handed to the plugin as one buffer. */
static nnm_status check_tensor(nnm_comm *c, const char *what, nnm_tensor *t, int need_f32) {
    if (!t) return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor is NULL", what);
    if (t->ctx != c->ctx)
        return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor belongs to another context", what);
    if (!nnm__tensor_is_contiguous(t))
        return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor is not contiguous", what);
    if (t->desc.device.type != c->device.type) {
        char a[32], b[32];
        return nnm__error(c->ctx, NNM_E_DEVICE, "%s: tensor is on %s, comm '%s' works on %s", what,
                          nnm__device_name(t->desc.device, a, sizeof a), c->vt->name,
                          nnm__device_name(c->device, b, sizeof b));
    }
    if (need_f32 && (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32))
        return nnm__error(c->ctx, NNM_E_DTYPE, "%s: only f32 tensors can be summed", what);
    /* The communicator runs on a stream (or thread) of its own: the ops an
     * asynchronous backend queued to make this buffer, and any still reading
     * it, finish first. Its wait returns only once the collective is done on
     * the device, so what the backend queues after the wait sees the result. */
    return nnm__backend_sync(c->ctx, t->desc.device);
}

static void *tensor_data(nnm_tensor *t) { return (char *)t->desc.data + t->desc.byte_offset; }

static uint64_t tensor_bytes(nnm_tensor *t) {
    return (uint64_t)nnm_tensor_numel(t) * nnm__dtype_size(t->desc.dtype);
}

/* Wraps a started work into a request, or cleans up after a failed start. */
static nnm_status finish_start(nnm_comm *c, uint64_t seq, nnm_status st, nnm_comm_work *w,
                               nnm_tensor *a, nnm_tensor *b, const char *what,
                               nnm_comm_request **out) {
    if (st) {
        if (c->ctx->err_seq == seq) nnm__error(c->ctx, st, "comm '%s': start failed", c->vt->name);
        return st > 0 ? NNM_E_PLUGIN : st;
    }
    nnm_comm_request *r = calloc(1, sizeof *r);
    if (!r) {
        /* Started, but nobody can wait on it: wait here so the buffers stay valid. */
        nnm__env env;
        nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);
        (void)c->vt->wait(&env.pub, c->state, w);
        return nnm__error(c->ctx, NNM_E_NOMEM, "out of memory (comm request)");
    }
    r->c = c;
    r->work = w;
    r->what = what;
    r->seq = ++c->seq;
    r->started = mono_s();
    r->keep[0] = a;
    r->keep[1] = b;
    if (a) nnm_tensor_retain(a);
    if (b) nnm_tensor_retain(b);
    c->refs++;
    *out = r;
    return NNM_OK;
}

#define START_PROLOGUE(c, out)                                                              \
    if (out) *out = NULL;                                                                   \
    if (!c) return NNM_E_INVALID;                                                           \
    if (!out) return nnm__error(c->ctx, NNM_E_INVALID, "comm: request pointer is NULL");    \
    nnm__env env;                                                                           \
    nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);                                  \
    const uint64_t seq = c->ctx->err_seq;                                                   \
    if (c->broken)                                                                          \
        return nnm__error(c->ctx, NNM_E_STATE, "%s (the communicator is broken)",           \
                          c->broken_msg);                                                   \
    nnm_comm_work *w = NULL;                                                                \
    nnm_status st

NNM_API nnm_status nnm_comm_all_reduce_start(nnm_comm *c, nnm_tensor *t, nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    if ((st = check_tensor(c, "all-reduce", t, 1))) return st;
    st = c->vt->all_reduce_start(&env.pub, c->state, tensor_data(t), nnm_tensor_numel(t), &w);
    return finish_start(c, seq, st, w, t, NULL, "all-reduce", out);
}

NNM_API nnm_status nnm_comm_broadcast_start(nnm_comm *c, nnm_tensor *t, int32_t root,
                                            nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    if ((st = check_tensor(c, "broadcast", t, 0))) return st;
    if (root < 0 || root >= c->world)
        return nnm__error(c->ctx, NNM_E_INVALID, "broadcast: root %d is not a rank (0..%d)", root,
                          c->world - 1);
    st = c->vt->broadcast_start(&env.pub, c->state, tensor_data(t), tensor_bytes(t), root, &w);
    return finish_start(c, seq, st, w, t, NULL, "broadcast", out);
}

NNM_API nnm_status nnm_comm_all_gather_start(nnm_comm *c, nnm_tensor *in, nnm_tensor *out,
                                             nnm_comm_request **req) {
    START_PROLOGUE(c, req);
    if ((st = check_tensor(c, "all-gather (in)", in, 0)) ||
        (st = check_tensor(c, "all-gather (out)", out, 0)))
        return st;
    if (in->desc.dtype.code != out->desc.dtype.code || in->desc.dtype.bits != out->desc.dtype.bits)
        return nnm__error(c->ctx, NNM_E_DTYPE, "all-gather: in and out differ in dtype");
    if (nnm_tensor_numel(out) != (int64_t)c->world * nnm_tensor_numel(in))
        return nnm__error(c->ctx, NNM_E_SHAPE,
                          "all-gather: out holds %lld elements, want %d ranks x %lld",
                          (long long)nnm_tensor_numel(out), c->world,
                          (long long)nnm_tensor_numel(in));
    st = c->vt->all_gather_start(&env.pub, c->state, tensor_data(in), tensor_data(out),
                                 tensor_bytes(in), &w);
    return finish_start(c, seq, st, w, in, out, "all-gather", req);
}

NNM_API nnm_status nnm_comm_barrier_start(nnm_comm *c, nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    st = c->vt->barrier_start(&env.pub, c->state, &w);
    return finish_start(c, seq, st, w, NULL, NULL, "barrier", out);
}

/* The host's bound on one wait: the plugin's timeout plus a grace in which
 * the plugin reports first (the mpi plugin probes its peers for up to 5 s to
 * name the missing ones): min(timeout, 10 s), at least 1 s. */
static double host_deadline(const nnm_comm_request *r) {
    double t = r->c->timeout_s, grace = t < 1 ? 1 : t > 10 ? 10 : t;
    return r->started + t + grace;
}

/* Gives r up: NNM_E_TIMEOUT with the message, the communicator broken, and
 * the request kept (tensors retained) until the communicator goes. */
static nnm_status give_up(nnm_comm_request *r) {
    nnm_comm *c = r->c;
    if (!c->broken) {
        c->broken = 1;
        snprintf(c->broken_msg, sizeof c->broken_msg,
                 "comm '%s' rank %d of %d: %s #%llu timed out after %.0f s: the plugin did not "
                 "complete it within the timeout (NNM_COMM_TIMEOUT or nnm_comm_options) and a "
                 "grace of %.0f s",
                 c->vt->name, c->rank, c->world, r->what, (unsigned long long)r->seq,
                 c->timeout_s, host_deadline(r) - r->started - c->timeout_s);
    }
    nnm_status st = nnm__error(c->ctx, NNM_E_TIMEOUT, "%s", c->broken_msg);
    r->next = c->stale;
    c->stale = r;
    c->refs--; /* the user's reference (>= 1) keeps c; comm_release frees r */
    return st;
}

/* ---- a plugin without `test`: its wait runs on a helper thread ------------ */

typedef struct waiter {
    nnm_comm *c;                  /* kept alive (and reachable) while the thread is inside */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, abandoned;
    nnm_status st;
    const nnm_comm_vtable *vt;
    void *state;
    nnm_comm_work *work;
    nnm__env env;                 /* messages are dropped: magic 0 (another thread) */
} waiter;

static void waiter_free(waiter *w) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void *waiter_main(void *p) {
    waiter *w = p;
    nnm_status st = w->vt->wait(&w->env.pub, w->state, w->work);
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->st = st;
    int abandoned = w->abandoned;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (abandoned) waiter_free(w); /* its communicator stays, on purpose */
    return NULL;
}

/* 1: done with *st; 0: past the deadline (the waiter is abandoned); -1: no thread. */
static int wait_on_thread(nnm_comm_request *r, nnm_status *st) {
    nnm_comm *c = r->c;
    waiter *w = calloc(1, sizeof *w);
    if (!w) return -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->c = c;
    w->vt = c->vt;
    w->state = c->state;
    w->work = r->work;
    nnm__env_init(&w->env, NULL, NULL, NNM__PHASE_BACKEND);
    w->env.magic = 0; /* set_error from this thread must not touch the context */
    pthread_t th;
    if (pthread_create(&th, NULL, waiter_main, w) != 0) {
        waiter_free(w);
        return -1;
    }
    pthread_detach(th);
    double dl = host_deadline(r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = dl - mono_s();
    if (left < 0) left = 0;
    ts.tv_sec += (time_t)left;
    ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT) break;
    int done = w->done;
    if (!done) w->abandoned = 1;
    *st = w->st;
    pthread_mutex_unlock(&w->mu);
    if (done) {
        waiter_free(w);
        return 1;
    }
    c->refs++; /* the thread is inside the plugin: c and the plugin never go */
    return 0;
}

NNM_API nnm_status nnm_comm_wait(nnm_comm_request *r) {
    if (!r) return NNM_E_INVALID;
    nnm_comm *c = r->c;
    /* A message set before (a pending error the caller has not read yet)
     * stays: only a failure of this wait writes one. */
    const uint64_t seq = c->ctx->err_seq;
    nnm_status st = NNM_OK;
    int ready = 0; /* 1: the plugin's wait will not block */
    if (c->vt->test) {
        /* Naps grow from 10 us to 200 us, so a collective that ends while
         * we wait costs little more than it took (DDP's last bucket); past
         * 0.1 s of waiting (a peer evaluating, say) up to 2 ms. */
        long nap_ns = 10000;
        const double t0 = mono_s();
        for (;;) {
            int t = c->vt->test(c->state, r->work);
            if (t != 0) { /* done, or failed: wait reports it */
                ready = 1;
                break;
            }
            const double now = mono_s();
            if (c->broken || now > host_deadline(r)) break;
            struct timespec ts = {0, nap_ns};
            nanosleep(&ts, NULL);
            if (nap_ns < (now - t0 < 0.1 ? 200000 : 2000000)) nap_ns *= 2;
        }
        if (!ready) return give_up(r);
    } else if (c->broken) {
        return give_up(r); /* never block on a broken communicator */
    } else {
        int w = wait_on_thread(r, &st);
        if (w == 0) return give_up(r);
        if (w < 0) ready = 1; /* no thread to spare: the plugin's own wait, unbounded */
        else if (st && c->ctx->err_seq == seq)
            nnm__error(c->ctx, st, "comm '%s' rank %d: %s #%llu failed", c->vt->name, c->rank,
                       r->what, (unsigned long long)r->seq);
    }
    if (ready) {
        nnm__env env;
        nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);
        st = c->vt->wait(&env.pub, c->state, r->work);
        if (st && c->ctx->err_seq == seq)
            nnm__error(c->ctx, st, "comm '%s' rank %d: %s #%llu failed", c->vt->name, c->rank,
                       r->what, (unsigned long long)r->seq);
    }
    if (st > 0) st = NNM_E_PLUGIN;
    request_free(r);
    comm_release(c);
    return st;
}

NNM_API nnm_status nnm_comm_all_reduce(nnm_comm *c, nnm_tensor *t) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_all_reduce_start(c, t, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_broadcast(nnm_comm *c, nnm_tensor *t, int32_t root) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_broadcast_start(c, t, root, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_all_gather(nnm_comm *c, nnm_tensor *in, nnm_tensor *out) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_all_gather_start(c, in, out, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_barrier(nnm_comm *c) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_barrier_start(c, &r);
    return st ? st : nnm_comm_wait(r);
}

/* For the DDP reducer. */
nnm_ctx *nnm__comm_ctx(const nnm_comm *c) { return c->ctx; }
void nnm__comm_retain(nnm_comm *c) { c->refs++; }
