/* plugins/cpu/cpu.c - the CPU backend: host memory, OpenBLAS gemm, strided
 * f32 elementwise kernels, and (ABI 1.1) reductions, log_softmax, nll and
 * the SGD/Adam parameter updates.
 *
 * Contract (see nnm_backend_vtable in nnmod/plugin.h):
 *  - memory is 64-byte aligned host memory from aligned_alloc; alloc of 0 bytes
 *    returns a valid, unique pointer that free accepts;
 *  - only f32 tensors are supported (plus the i64 class targets of nll);
 *    other dtypes give NNM_E_DTYPE;
 *  - every op validates its descriptors and arguments before it writes
 *    anything, and reports through host->set_error;
 *  - ops never allocate and never recurse: N-d strided tensors are walked with
 *    a fixed-size index (ndim <= NNM_MAX_DIMS) after merging the dimensions
 *    that are contiguous in every operand, so the common cases (contiguous,
 *    bias broadcast along rows, scalar broadcast) reduce to 1-d or 2-d loops
 *    with unit-stride inner loops the compiler vectorises;
 *  - sums (reduce, log_softmax's normaliser, nll's smoothing term) accumulate
 *    in double; the optimizer steps follow torch's float32 operation order
 *    (see cpu_madd) so they match torch.optim bit for bit on AVX2 machines.
 */
#include <nnmod/plugin.h>

#include "strided_layout.h"

#include <cblas.h>

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/sysinfo.h>
#endif

#define CPU_ALIGN 64u

/* set_error through the host, tolerating a missing env (returns the code). */
#define CPU_ERR(env, code, ...)                                                          \
    (((env) != NULL && (env)->host != NULL && (env)->host->set_error != NULL)            \
         ? (env)->host->set_error((env), (code), __VA_ARGS__)                            \
         : (code))

/* ------------------------------------------------------------------------ */
/* Descriptor checks                                                         */
/* ------------------------------------------------------------------------ */

/* One 32-bit compare (code, bits and lanes fill the 4 bytes of nnm_dtype). */
static int cpu_is_f32(nnm_dtype dt) {
    _Static_assert(sizeof(nnm_dtype) == 4, "nnm_dtype is code, bits and lanes");
    const nnm_dtype f32 = {NNM_DTYPE_FLOAT, 32, 1};
    uint32_t a, b;
    memcpy(&a, &dt, sizeof a);
    memcpy(&b, &f32, sizeof b);
    return a == b;
}

static int cpu_is_i64(nnm_dtype dt) {
    return dt.code == NNM_DTYPE_INT && dt.bits == 64 && dt.lanes == 1;
}

/* Validates one descriptor an op reads or writes: CPU, of dtype f32 (or i64
 * when want_i64), sane ndim, shape and strides present, data present unless
 * empty, byte_offset a multiple of the element size. Sets *numel. */
static nnm_status cpu_check_desc_dt(nnm_env *env, const char *op, const char *what,
                                    const nnm_tensor_desc *d, int want_i64, int64_t *numel) {
    if (d == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor is NULL", op, what);
    if (d->device.type != NNM_DEVICE_CPU)
        return CPU_ERR(env, NNM_E_DEVICE,
                       "cpu %s: %s tensor is on device type %d, the cpu backend handles "
                       "only CPU tensors (type %d)",
                       op, what, (int)d->device.type, (int)NNM_DEVICE_CPU);
    if (want_i64 ? !cpu_is_i64(d->dtype) : !cpu_is_f32(d->dtype))
        return CPU_ERR(env, NNM_E_DTYPE,
                       "cpu %s: %s tensor has dtype (code %u, bits %u, lanes %u); %s", op, what,
                       (unsigned)d->dtype.code, (unsigned)d->dtype.bits,
                       (unsigned)d->dtype.lanes,
                       want_i64 ? "it must be i64 (code 0, bits 64, lanes 1)"
                                : "the cpu backend supports only f32 for now");
    if (d->ndim < 0 || d->ndim > NNM_MAX_DIMS)
        return CPU_ERR(env, NNM_E_LIMIT, "cpu %s: %s tensor has ndim %d (0..%d allowed)", op,
                       what, (int)d->ndim, NNM_MAX_DIMS);
    if (d->ndim > 0 && (d->shape == NULL || d->strides == NULL))
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor has NULL shape or strides", op,
                       what);
    const unsigned esize = want_i64 ? 8u : 4u;
    if (d->byte_offset % esize != 0)
        return CPU_ERR(env, NNM_E_INVALID,
                       "cpu %s: %s tensor byte_offset %llu is not a multiple of %u", op, what,
                       (unsigned long long)d->byte_offset, esize);
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        int64_t s = d->shape[i];
        if (s < 0)
            return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: %s tensor has negative size %lld in dim %d",
                           op, what, (long long)s, (int)i);
        if (s != 0 && n > INT64_MAX / s)
            return CPU_ERR(env, NNM_E_LIMIT, "cpu %s: %s tensor has too many elements", op, what);
        n *= s;
    }
    if (n > 0 && d->data == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor has NULL data", op, what);
    *numel = n;
    return NNM_OK;
}

/* cpu_check_desc_dt for an f32 tensor. */
static nnm_status cpu_check_desc(nnm_env *env, const char *op, const char *what,
                                 const nnm_tensor_desc *d, int64_t *numel) {
    return cpu_check_desc_dt(env, op, what, d, 0, numel);
}

/* Elementwise loops are built once per instruction set and picked at load
 * time (GCC/Clang ifunc): AVX2's 8 lanes against SSE2's 4. No FMA in either
 * clone, so both give the same bits. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__ELF__)
#define CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CPU_CLONES
#endif

/* Row-major contiguous (the strides of size-1 dims do not matter, as in torch). */
static int cpu_is_contiguous(const nnm_tensor_desc *d) {
    int64_t want = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != want)
            return 0;
        want *= d->shape[i];
    }
    return 1;
}

/* The error for a tensor that must be contiguous and is not. */
static nnm_status cpu_err_contiguous(nnm_env *env, const char *op, const char *what) {
    return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor must be contiguous", op, what);
}

/* The first element's byte, byte_offset applied; NULL for the NULL data an
 * empty tensor may have (NULL + 0 is undefined: clang's UBSan stops). */
static char *cpu_bytes(const nnm_tensor_desc *d) {
    return d->data != NULL ? (char *)d->data + d->byte_offset : NULL;
}

/* The first element, byte_offset applied (NULL as cpu_bytes). */
static float *cpu_base(const nnm_tensor_desc *d) {
    return (float *)(void *)cpu_bytes(d);
}

/* ------------------------------------------------------------------------ */
/* The strided walker                                                        */
/* ------------------------------------------------------------------------ */

#define CPU_MAX_OPS NNM_LAYOUT_MAX_OPS

/* Up to three operands iterated together over one shape
 * (plugins/common/strided_layout.h). */
typedef nnm_strided_layout cpu_layout;

static nnm_status cpu_layout_init(nnm_env *env, const char *op, cpu_layout *L, int32_t ndim,
                                  const int64_t *shape, int32_t nops,
                                  const nnm_tensor_desc *const *ds, const char *const *names) {
    return nnm_strided_layout_init(env, "cpu", op, L, ndim, shape, nops, ds, names);
}

/* Walks every inner row of a layout: for each combination of the outer
 * indices, calls BODY with p[k] pointing at operand k's first element of the
 * row, `n` the inner length and `s[k]` the inner strides. No recursion: a
 * fixed index array carried like an odometer. */
#define CPU_WALK(L, base, BODY)                                                          \
    do {                                                                                 \
        const cpu_layout *L_ = (L);                                                      \
        int64_t idx_[NNM_MAX_DIMS] = {0};                                                \
        float *p[CPU_MAX_OPS];                                                           \
        int64_t s[CPU_MAX_OPS];                                                          \
        int64_t n = L_->ndim > 0 ? L_->shape[L_->ndim - 1] : 1;                          \
        for (int32_t k_ = 0; k_ < L_->nops; k_++) {                                      \
            p[k_] = (base)[k_];                                                          \
            s[k_] = L_->ndim > 0 ? L_->strides[k_][L_->ndim - 1] : 0;                    \
        }                                                                                \
        for (;;) {                                                                       \
            BODY;                                                                        \
            int32_t d_ = L_->ndim - 2;                                                   \
            for (; d_ >= 0; d_--) {                                                      \
                for (int32_t k_ = 0; k_ < L_->nops; k_++)                                \
                    p[k_] += L_->strides[k_][d_];                                        \
                if (++idx_[d_] < L_->shape[d_])                                          \
                    break;                                                               \
                for (int32_t k_ = 0; k_ < L_->nops; k_++)                                \
                    p[k_] -= L_->strides[k_][d_] * L_->shape[d_];                        \
                idx_[d_] = 0;                                                            \
            }                                                                            \
            if (d_ < 0)                                                                  \
                break;                                                                   \
        }                                                                                \
    } while (0)

/* ------------------------------------------------------------------------ */
/* init / shutdown / memory                                                  */
/* ------------------------------------------------------------------------ */

/* The backend's state: the context's thread count, how ops use it, and the
 * pool of helper threads that cpu_parallel hands work to. A NULL state (a
 * caller that skipped init) or a count never set means one thread for the
 * backend's own loops and OpenBLAS's own default for gemm. */
#define CPU_MAX_WORKERS 16

/* One cpu_parallel call: [0, n) cut into `chunks` parts that the caller
 * (slot 0) and the helpers that join (slots 1..) claim one at a time. Freed
 * by the last of them to let go. */
typedef struct cpu_team {
    _Atomic int64_t next, done; /* parts claimed, parts finished */
    _Atomic int32_t refs, slots;
    int64_t n, chunks;
    void (*fn)(void *job, int64_t lo, int64_t hi, int slot);
    void *job;
} cpu_team;

struct cpu_tpool;
typedef struct cpu_helper {
    struct cpu_tpool *pool;
    int32_t index; /* joins a job that wants more than `index` helpers */
    uint64_t seen; /* the last job generation it looked at */
    FILE *sched;   /* its /proc/thread-self/schedstat, or NULL (cpu_helper_sample) */
    uint64_t sample_at, waited; /* when it was last read (cpu_now_ns), and its run-queue wait then */
} cpu_helper;

/* Helper threads made on the first call that wants them and kept until
 * shutdown: a job wakes them through `gen` (they spin on it briefly after
 * each job, then sleep on `wake`). */
typedef struct cpu_tpool {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int ok;                   /* mu and wake initialised */
    int32_t n_helpers;        /* started (the calling thread alone changes it) */
    pthread_t tid[CPU_MAX_WORKERS];
    cpu_helper helper[CPU_MAX_WORKERS];
    _Atomic uint64_t gen;     /* bumped for each job (under mu) */
    cpu_team *job;            /* under mu: the current job, or NULL */
    int32_t want;             /* under mu: helpers the job takes */
    int32_t sleepers;         /* under mu */
    int stop;                 /* under mu */
    _Atomic int busy;         /* a caller owns the pool (others run inline) */
    uint64_t posted;          /* under mu: when the current job was posted (cpu_now_ns) */
    /* Contention (cpu_pool_contended): until `solo_until` (cpu_now_ns) jobs
     * run on the caller alone and helpers sleep instead of spinning; each
     * window in a row is twice the last, up to CPU_SOLO_MAX_NS. Only with
     * `adapt` (NNM_CPU_THREADS_ADAPT=1): not on by default, see below. */
    int adapt;
    _Atomic uint64_t solo_until, solo_len, last_event;
    _Atomic int sampled; /* a helper reads its run-queue wait (cpu_helper_sample) */
    _Atomic int32_t kept_up; /* jobs in a row since the last window where the helpers kept up */
} cpu_tpool;

#include "scratch_pool.inc"

typedef struct cpu_state {
    int32_t threads; /* set_num_threads; 0: never set */
    int force;       /* NNM_CPU_THREADS=all: every op that can split does, whatever
                      * its size (to measure the per-size policy, bench_threads) */
    cpu_tpool pool;
    cpu_scratch_pool scratch; /* the kernels' scratch blocks, kept between calls */
} cpu_state;

/* Scratch of at least `floats` floats from the state's pool (a plain
 * allocation where state is NULL); give it back with cpu_scratch_put. */
static float *cpu_scratch_take(void *state, size_t floats, size_t *cap) {
    return cpu_scratch_pool_take(state != NULL ? &((cpu_state *)state)->scratch : NULL, floats, cap);
}

static void cpu_scratch_put(void *state, float *blk, size_t cap) {
    cpu_scratch_pool_put(state != NULL ? &((cpu_state *)state)->scratch : NULL, blk, cap);
}

static nnm_status cpu_init(nnm_env *env, void **state) {
    if (state == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu init: state is NULL");
    cpu_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return CPU_ERR(env, NNM_E_NOMEM, "cpu init: out of memory");
    const char *pol = getenv("NNM_CPU_THREADS");
    s->force = pol != NULL && strcmp(pol, "all") == 0;
    const char *adapt = getenv("NNM_CPU_THREADS_ADAPT");
    s->pool.adapt = adapt != NULL && strcmp(adapt, "1") == 0;
    s->pool.ok = pthread_mutex_init(&s->pool.mu, NULL) == 0;
    if (s->pool.ok && pthread_cond_init(&s->pool.wake, NULL) != 0) {
        pthread_mutex_destroy(&s->pool.mu);
        s->pool.ok = 0;
    }
    cpu_scratch_pool_init(&s->scratch);
    *state = s;
    return NNM_OK;
}

static void g5_scratch_drop(void); /* gemm_avx512.inc */

static void cpu_shutdown(void *state) {
    cpu_state *s = state;
    if (s == NULL)
        return;
    cpu_tpool *pl = &s->pool;
    if (pl->ok) {
        pthread_mutex_lock(&pl->mu);
        pl->stop = 1;
        pthread_cond_broadcast(&pl->wake);
        pthread_mutex_unlock(&pl->mu);
        for (int32_t i = 0; i < pl->n_helpers; i++)
            pthread_join(pl->tid[i], NULL);
        pthread_cond_destroy(&pl->wake);
        pthread_mutex_destroy(&pl->mu);
    }
    cpu_scratch_pool_fini(&s->scratch);
    free(s);
    g5_scratch_drop();
}

static nnm_status cpu_set_num_threads(nnm_env *env, void *state, int32_t n) {
    if (n < 1)
        return CPU_ERR(env, NNM_E_INVALID, "cpu set_num_threads: n must be >= 1, got %d", (int)n);
    if (state != NULL)
        ((cpu_state *)state)->threads = n;
    return NNM_OK;
}

/* Threads for one op of `work` multiply-adds (or comparable units): 1 below
 * `min_work`, where handing half to a helper costs more than it saves, else
 * the context's count (every op splits under NNM_CPU_THREADS=all). 0 when
 * never set. Each op's cut-off is measured by bench/bench_threads.c. */
static int32_t cpu_threads_for(const void *state, int64_t work, int64_t min_work) {
    const cpu_state *s = state;
    if (s == NULL || s->threads <= 0)
        return 0;
    return work >= min_work || s->force ? s->threads : 1;
}

static void cpu_team_work(cpu_team *t, int slot) {
    for (;;) {
        const int64_t k = atomic_fetch_add(&t->next, 1);
        if (k >= t->chunks)
            return;
        t->fn(t->job, t->n * k / t->chunks, t->n * (k + 1) / t->chunks, slot);
        atomic_fetch_add(&t->done, 1);
    }
}

static void cpu_team_release(cpu_team *t) {
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

static inline void cpu_relax(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
}

/* How long a helper spins after a job before it sleeps: 100 us, by the
 * clock (a pause is 5 ns on some cores and 20 ns on others; the count of
 * 256 this replaces was 5 us on the development machine). A training
 * step's parallel ops are separated by serial stretches of tens of us
 * (small ops, the call path); a helper asleep by then needs a futex
 * wake-up, and the scheduler may place the woken thread on the caller's
 * own core. Measured on the Fashion CNN's whole step (bench_threads 2 7
 * cnn, 2 cores): 1.28-1.32x over one thread with 5 us, 1.41-1.42x with
 * 85 us, 1.41-1.51x with 1.3 ms, for the same CPU time per step. */
#define CPU_HELPER_SPIN_NS 100000

/* C11's clock (the plugin builds as strict C11, without POSIX's
 * clock_gettime): a jump of the wall clock only ends one spin early or late. */
static uint64_t cpu_now_ns(void) {
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Contention: while another process holds the core a helper runs on, the
 * scheduler gives this process about one core whatever its thread count
 * (with autogroups, one equal share per session), so a second thread only
 * adds hand-offs, and a part a helper took may wait a whole time slice for
 * its core while the caller waits for the part. Then jobs run on the
 * caller alone for a while (a window: CPU_SOLO_MIN_NS, twice the last for
 * each window in a row, up to CPU_SOLO_MAX_NS, short again once
 * CPU_SOLO_RESET_JOBS jobs in a row went well), and the helpers are tried
 * again. The split into parts does not depend on who runs them: results
 * keep their bits.
 *
 * How it is seen, on Linux: each helper reads its run-queue wait (the time
 * it was runnable but not running, /proc/thread-self/schedstat) every
 * CPU_SAMPLE_NS while it is awake; a wait over CPU_CONTENDED_SHARE of the
 * interval opens a window. A boosted process (or a quiet machine) loses a
 * millisecond now and then to a short task, a few percent, and keeps its
 * threads. Elsewhere (no schedstat): a thread of ours off the CPU
 * CPU_PREEMPT_NS (a helper's spin that skipped that long between two looks
 * at the clock, a wake-up that late, a caller left waiting that long, and
 * longer than its own share took, for a helper's part) is an event, and two
 * events within CPU_SOLO_MIN_NS open a window.
 *
 * Off unless NNM_CPU_THREADS_ADAPT=1: the premise (one core for the process
 * whatever its thread count) holds against other sessions, but within one
 * session (a build beside the training in the same shell) each thread gets
 * its own share, and there a second thread gains even on a busy machine.
 * Measured on the shared 2-core machine (docs/performance.md): at load 14-17
 * with a build in the same session, 2 threads ran 1.5-2.3x 1 thread without
 * the windows; at load 20-22 beside a busy loop in another session, 0.84x
 * with and without them. They showed no gain, so they stay opt-in until an
 * A/B on a quieter machine says otherwise. */
#define CPU_PREEMPT_NS 500000u
#define CPU_SOLO_MIN_NS 20000000u
#define CPU_SOLO_MAX_NS 640000000u
#define CPU_SOLO_RESET_JOBS 256 /* jobs in a row the helpers keep up with before the windows start short again */
#define CPU_SAMPLE_NS 10000000u
#define CPU_CONTENDED_SHARE 0.25

/* Opens a solo window at `now` unless one is open. */
static void cpu_tpool_window(cpu_tpool *pl, uint64_t now) {
    const uint64_t until = atomic_load_explicit(&pl->solo_until, memory_order_relaxed);
    if (until > now && until - now <= CPU_SOLO_MAX_NS)
        return; /* a window is open: another thread saw it first */
    uint64_t len = atomic_load_explicit(&pl->solo_len, memory_order_relaxed);
    if (len < CPU_SOLO_MIN_NS)
        len = CPU_SOLO_MIN_NS;
    atomic_store_explicit(&pl->kept_up, 0, memory_order_relaxed);
    atomic_store_explicit(&pl->solo_until, now + len, memory_order_relaxed);
    atomic_store_explicit(&pl->solo_len, len * 2 > CPU_SOLO_MAX_NS ? CPU_SOLO_MAX_NS : len * 2,
                          memory_order_relaxed);
}

/* An event (a thread of ours kept off the CPU CPU_PREEMPT_NS): the second
 * within CPU_SOLO_MIN_NS opens a window, where the helpers cannot read
 * their run-queue wait. */
static void cpu_pool_contended(cpu_tpool *pl, uint64_t now) {
    if (!pl->adapt || atomic_load_explicit(&pl->sampled, memory_order_relaxed))
        return;
    const uint64_t prev = atomic_exchange_explicit(&pl->last_event, now, memory_order_relaxed);
    if (now < prev || now - prev > CPU_SOLO_MIN_NS)
        return; /* the first in a while */
    cpu_tpool_window(pl, now);
}

/* A helper's look at its run-queue wait, at most every CPU_SAMPLE_NS. */
static void cpu_helper_sample(cpu_helper *h, uint64_t now) {
    if (h->sched == NULL || now - h->sample_at < (uint64_t)CPU_SAMPLE_NS)
        return;
    unsigned long long run = 0, wait = 0;
    rewind(h->sched);
    if (fscanf(h->sched, "%llu %llu", &run, &wait) != 2) {
        fclose(h->sched);
        h->sched = NULL;
        return;
    }
    const uint64_t dt = now - h->sample_at, dw = wait - h->waited;
    if (h->sample_at != 0 && now > h->sample_at && wait >= h->waited &&
        (double)dw > CPU_CONTENDED_SHARE * (double)dt)
        cpu_tpool_window(h->pool, now);
    h->sample_at = now;
    h->waited = wait;
}

/* Whether a solo window is open at `now` (a window further ahead than the
 * longest, after the wall clock stepped back, counts as closed). */
static int cpu_pool_solo(cpu_tpool *pl, uint64_t now) {
    const uint64_t until = atomic_load_explicit(&pl->solo_until, memory_order_relaxed);
    return until > now && until - now <= CPU_SOLO_MAX_NS;
}

static void *cpu_helper_main(void *p) {
    cpu_helper *h = p;
    cpu_tpool *pl = h->pool;
    h->sched = pl->adapt ? fopen("/proc/thread-self/schedstat", "r") : NULL;
    h->sample_at = h->waited = 0;
    if (h->sched != NULL)
        atomic_store_explicit(&pl->sampled, 1, memory_order_relaxed);
    for (;;) {
        const uint64_t t0 = cpu_now_ns();
        uint64_t last = t0;
        cpu_helper_sample(h, t0);
        for (unsigned i = 1; atomic_load_explicit(&pl->gen, memory_order_acquire) == h->seen; i++) {
            cpu_relax();
            if (i % 64 == 0) {
                const uint64_t now = cpu_now_ns();
                if (now - last > (uint64_t)CPU_PREEMPT_NS)
                    cpu_pool_contended(pl, now); /* this spin lost its core a while */
                cpu_helper_sample(h, now);
                if (now - t0 > (uint64_t)CPU_HELPER_SPIN_NS || cpu_pool_solo(pl, now))
                    break;
                last = now;
            }
        }
        pthread_mutex_lock(&pl->mu);
        while (atomic_load_explicit(&pl->gen, memory_order_relaxed) == h->seen && !pl->stop) {
            pl->sleepers++;
            pthread_cond_wait(&pl->wake, &pl->mu);
            pl->sleepers--;
        }
        if (pl->stop) {
            pthread_mutex_unlock(&pl->mu);
            if (h->sched != NULL)
                fclose(h->sched);
            return NULL;
        }
        h->seen = atomic_load_explicit(&pl->gen, memory_order_relaxed);
        cpu_team *t = pl->job != NULL && h->index < pl->want ? pl->job : NULL;
        if (t != NULL)
            atomic_fetch_add(&t->refs, 1);
        const uint64_t posted = pl->posted;
        pthread_mutex_unlock(&pl->mu);
        if (t != NULL) {
            const uint64_t now = cpu_now_ns();
            if (posted != 0 && now > posted && now - posted > (uint64_t)CPU_PREEMPT_NS &&
                atomic_load_explicit(&t->next, memory_order_relaxed) < t->chunks)
                cpu_pool_contended(pl, now); /* woken this late while the caller still had parts */
        }
        if (t != NULL) {
            cpu_team_work(t, atomic_fetch_add(&t->slots, 1));
            cpu_team_release(t);
        }
    }
}

/* Runs fn(job, lo, hi, slot) over [0, n) cut into `chunks` parts that the
 * caller (slot 0) and workers - 1 helpers of state's pool (slots 1..) claim
 * one at a time. The caller returns once every part is done; it never waits
 * for a helper that has not started: on a busy machine a helper may get the
 * CPU only after the caller has done all the work (it then finds nothing
 * left), where a fixed split would leave the caller waiting a whole time
 * slice for it. The helpers are made once and kept (made per call they cost
 * 20-40 us each, which set the old cut-offs); a pool already in use (a
 * context called from two threads at once, or an op inside a part) and a
 * helper that cannot be made leave the work to the caller. */
static void cpu_parallel(void *state, int32_t workers, int64_t n, int64_t chunks,
                         void (*fn)(void *job, int64_t lo, int64_t hi, int slot), void *job) {
    if (chunks > n)
        chunks = n;
    if (workers > chunks)
        workers = (int32_t)chunks;
    if (workers > CPU_MAX_WORKERS)
        workers = CPU_MAX_WORKERS;
    cpu_state *s = state;
    cpu_tpool *pl = s != NULL ? &s->pool : NULL;
    const uint64_t t_start = pl != NULL && pl->adapt && workers > 1 ? cpu_now_ns() : 0;
    if (workers <= 1 || pl == NULL || !pl->ok || (t_start && cpu_pool_solo(pl, t_start)) ||
        atomic_exchange(&pl->busy, 1)) {
        if (n > 0)
            fn(job, 0, n, 0);
        return;
    }
    while (pl->n_helpers < workers - 1) {
        cpu_helper *h = &pl->helper[pl->n_helpers];
        h->pool = pl;
        h->index = pl->n_helpers;
        h->seen = atomic_load(&pl->gen);
        if (pthread_create(&pl->tid[pl->n_helpers], NULL, cpu_helper_main, h) != 0)
            break;
        pl->n_helpers++;
    }
    cpu_team *t = pl->n_helpers > 0 ? malloc(sizeof *t) : NULL;
    if (t == NULL) {
        atomic_store(&pl->busy, 0);
        if (n > 0)
            fn(job, 0, n, 0);
        return;
    }
    atomic_init(&t->next, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->refs, 1);
    atomic_init(&t->slots, 1);
    t->n = n;
    t->chunks = chunks;
    t->fn = fn;
    t->job = job;
    pthread_mutex_lock(&pl->mu);
    pl->job = t;
    pl->want = workers - 1;
    pl->posted = t_start;
    atomic_fetch_add_explicit(&pl->gen, 1, memory_order_release);
    if (pl->sleepers > 0)
        pthread_cond_broadcast(&pl->wake);
    pthread_mutex_unlock(&pl->mu);
    cpu_team_work(t, 0);
    const uint64_t t_mine = t_start ? cpu_now_ns() : 0;
    while (atomic_load(&t->done) < t->chunks) /* parts a helper is still on */
        sched_yield();
    if (t_start) {
        const uint64_t t_end = cpu_now_ns();
        if (t_end > t_mine && t_mine >= t_start && t_end - t_mine > (uint64_t)CPU_PREEMPT_NS &&
            t_end - t_mine > t_mine - t_start)
            cpu_pool_contended(pl, t_end); /* a helper's part took longer than all of ours */
        else if (atomic_load_explicit(&t->slots, memory_order_relaxed) > 1 && !cpu_pool_solo(pl, t_end) &&
                 atomic_fetch_add_explicit(&pl->kept_up, 1, memory_order_relaxed) + 1 == CPU_SOLO_RESET_JOBS)
            atomic_store_explicit(&pl->solo_len, 0, memory_order_relaxed); /* the helpers keep up again */
    }
    pthread_mutex_lock(&pl->mu);
    pl->job = NULL;
    pthread_mutex_unlock(&pl->mu);
    cpu_team_release(t);
    atomic_store(&pl->busy, 0);
}

/* OpenBLAS's count for the next call: `t` threads (0: leave it alone). */
static void cpu_blas_threads(int32_t t) {
    if (t > 0 && openblas_get_num_threads() != t)
        openblas_set_num_threads(t);
}

/* The most one allocation may ask for: this machine's memory and swap. A
 * size from an untrusted file or config (a 4 TB arange) is refused here with
 * a message instead of being tried (an overcommitting kernel may say yes and
 * kill the process later; ASan aborts). 0: unknown. */
static size_t cpu_memory_bytes(void) {
    static _Atomic size_t cached;
    size_t v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v) return v;
#if defined(__linux__)
    struct sysinfo si;
    if (sysinfo(&si) == 0 && si.mem_unit > 0) {
        unsigned long long t = ((unsigned long long)si.totalram + si.totalswap) * si.mem_unit;
        v = t > SIZE_MAX ? SIZE_MAX : (size_t)t;
    }
#endif
    if (!v) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0 && (unsigned long)pages <= SIZE_MAX / (unsigned long)page)
            v = (size_t)pages * (size_t)page;
    }
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v;
}

static nnm_status cpu_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                            void **ptr) {
    (void)state;
    if (ptr == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu alloc: ptr is NULL");
    *ptr = NULL;
    if (device_id != 0)
        return CPU_ERR(env, NNM_E_DEVICE, "cpu alloc: no CPU device %d (only 0)", (int)device_id);
    if (bytes > SIZE_MAX - (CPU_ALIGN - 1))
        return CPU_ERR(env, NNM_E_NOMEM, "cpu alloc: %zu bytes is too large", bytes);
    const size_t mem = cpu_memory_bytes();
    if (mem && bytes > mem)
        return CPU_ERR(env, NNM_E_NOMEM,
                       "cpu alloc: %zu bytes is more than this machine's memory and swap (%zu bytes)", bytes, mem);
    /* aligned_alloc wants a multiple of the alignment; 0 bytes gets one line so
     * the pointer is unique and non-NULL. */
    size_t rounded = bytes == 0 ? CPU_ALIGN : (bytes + CPU_ALIGN - 1) & ~(size_t)(CPU_ALIGN - 1);
    void *p = aligned_alloc(CPU_ALIGN, rounded);
    if (p == NULL)
        return CPU_ERR(env, NNM_E_NOMEM, "cpu alloc: out of memory allocating %zu bytes", bytes);
    *ptr = p;
    return NNM_OK;
}

static void cpu_free(void *state, int32_t device_id, void *ptr) {
    (void)state;
    (void)device_id;
    free(ptr);
}

static nnm_status cpu_memcpy(nnm_env *env, void *state, void *dst, nnm_device dst_dev,
                             const void *src, nnm_device src_dev, size_t bytes) {
    (void)state;
    if (dst_dev.type != NNM_DEVICE_CPU || src_dev.type != NNM_DEVICE_CPU)
        return CPU_ERR(env, NNM_E_DEVICE,
                       "cpu memcpy: copies only between CPU memory (type %d); got dst device "
                       "type %d, src device type %d",
                       (int)NNM_DEVICE_CPU, (int)dst_dev.type, (int)src_dev.type);
    if (bytes == 0)
        return NNM_OK;
    if (dst == NULL || src == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu memcpy: NULL %s with %zu bytes to copy",
                       dst == NULL ? "dst" : "src", bytes);
    memmove(dst, src, bytes); /* tolerate overlap: callers never need to care */
    return NNM_OK;
}

static nnm_status cpu_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double value) {
    (void)state;
    int64_t numel = 0;
    nnm_status st = cpu_check_desc(env, "fill", "output", out, &numel);
    if (st != NNM_OK)
        return st;
    if (numel == 0)
        return NNM_OK;
    const float v = (float)value;
    cpu_layout L;
    const nnm_tensor_desc *ds[1] = {out};
    static const char *const names[1] = {"output"};
    st = cpu_layout_init(env, "fill", &L, out->ndim, out->shape, 1, ds, names);
    if (st != NNM_OK)
        return st;
    float *base[1] = {cpu_base(out)};
    CPU_WALK(&L, base, {
        float *o = p[0];
        if (s[0] == 1) {
            for (int64_t i = 0; i < n; i++)
                o[i] = v;
        } else {
            for (int64_t i = 0; i < n; i++)
                o[i * s[0]] = v;
        }
    });
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */
/* ------------------------------------------------------------------------ */

static int64_t cpu_max1(int64_t x) {
    return x > 1 ? x : 1;
}

#include "gemm_small.inc"
/* cpu_sgemm: the AVX-512 kernel for large single-thread products, else OpenBLAS */
#include "gemm_avx512.inc"

/* gemm's per-size thread policy: OpenBLAS splits C between its threads, and
 * below about 2^21 multiply-adds (some 40-80 us on one AVX-512 core) a second
 * thread's wake-up and the split's packing cost more than they give; above,
 * the context's count. (OpenBLAS's own cut, m * n * k < 2^18, is lower.) */
#define CPU_GEMM_PAR_MIN ((int64_t)1 << 21)

/* A threaded product on the backend's own threads: C cut into parts of
 * whole 12-row tiles (or 32-column panels, whichever repacks less: a row
 * part packs all of B again, a column part all of A), dealt out by
 * cpu_parallel, each part the one-thread AVX-512 kernel, whose sums do not
 * depend on where in C an element lies: the bits of one thread, on any
 * count. OpenBLAS's own threads are not woken: after a threaded call its
 * worker spins in sched_yield for a while (some 0.1 s) and takes the core
 * from the helpers of the next ops. 0 (the caller takes OpenBLAS's threaded
 * path) where the kernel would not take every part: no AVX-512, fewer than
 * two parts' worth of rows and columns. */
typedef struct cpu_gemm_job {
    const nnm_gemm_args *g;
    int64_t unit, parts; /* rows or columns a part; the last takes the rest */
    int by_cols;
} cpu_gemm_job;

static void cpu_gemm_part(void *job, int64_t p0, int64_t p1, int slot) {
    (void)slot;
    const cpu_gemm_job *j = job;
    const nnm_gemm_args *g = j->g;
    const int64_t a = p0 * j->unit, b = p1 == j->parts ? (j->by_cols ? g->n : g->m) : p1 * j->unit;
    if (j->by_cols) /* columns [a, b) of C: those of op(B) */
        cpu_sgemm(1, g->trans_a != 0, g->trans_b != 0, g->m, b - a, g->k, g->alpha, g->a, g->lda,
                  g->trans_b ? g->b + a * g->ldb : g->b + a, g->ldb, g->beta, g->c + a, g->ldc);
    else /* rows [a, b) of C: those of op(A) */
        cpu_sgemm(1, g->trans_a != 0, g->trans_b != 0, b - a, g->n, g->k, g->alpha,
                  g->trans_a ? g->a + a : g->a + a * g->lda, g->lda, g->b, g->ldb, g->beta, g->c + a * g->ldc,
                  g->ldc);
}

static int cpu_gemm_split(void *state, int32_t threads, const nnm_gemm_args *g) {
#ifdef CPU_HAVE_GEMM5
    if (!g5_available() || g->m < G5_MR)
        return 0;
    const int64_t want = 4 * (int64_t)threads; /* parts: enough for a late helper to be caught up on */
    cpu_gemm_job j = {g, 0, 0, g->m < g->n};
    const int64_t len = j.by_cols ? g->n : g->m, tile = j.by_cols ? G5_NR : G5_MR;
    j.unit = ((len + want - 1) / want + tile - 1) / tile * tile;
    j.parts = len / j.unit;
    if (j.parts < 2)
        return 0;
    /* every part, the last (the largest) included, must be the kernel's */
    const int64_t rows = j.by_cols ? g->m : j.unit, cols = j.by_cols ? j.unit : g->n;
    if (!cpu_gemm5_wanted(1, rows, cols, g->k))
        return 0;
    cpu_parallel(state, threads, j.parts, j.parts, cpu_gemm_part, &j);
    return 1;
#else
    (void)state;
    (void)threads;
    (void)g;
    return 0;
#endif
}

static nnm_status cpu_gemm_checked(nnm_env *env, void *state, const nnm_gemm_args *g);

/* The gemm slot. A batch-1 x @ W^T whose sizes are multiples of 8 (a small
 * MLP's Linear) is recognised here, in a frame of no registers, by the
 * checks cpu_gemm_checked would pass it with, and goes straight to its
 * kernel: the full checks' frame (their error paths format messages) cost
 * a batch-1 Linear(16, 16) a third of its arithmetic. Anything else, and
 * every failure, takes cpu_gemm_checked. */
static nnm_status cpu_gemm(nnm_env *env, void *state, const nnm_gemm_args *g) {
#ifdef CPU_HAVE_DOT8X4
    if (g != NULL && g->struct_size >= sizeof(nnm_gemm_args) && !g->trans_a && g->trans_b &&
        g->m >= 1 && g->m <= CPU_GEMM_SMALL_ROWS && g->n >= 8 && g->k >= 8 &&
        ((g->n | g->k) & 7) == 0 && g->n <= CPU_GEMM_SMALL_MAX && g->k <= CPU_GEMM_SMALL_MAX &&
        g->m * g->n * g->k <= CPU_GEMM_SMALL_MAX && g->a != NULL &&
        g->b != NULL && g->c != NULL && g->lda >= g->k && g->ldb >= g->k && g->ldc >= g->n &&
        g->lda <= INT_MAX && g->ldb <= INT_MAX && g->ldc <= INT_MAX) {
        cpu_gemm_nt8(g);
        return NNM_OK;
    }
#endif
    return cpu_gemm_checked(env, state, g);
}

static nnm_status cpu_gemm_checked(nnm_env *env, void *state, const nnm_gemm_args *g) {
    if (g == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: args is NULL");
    if (g->struct_size < sizeof(nnm_gemm_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: args struct_size %u < %zu",
                       (unsigned)g->struct_size, sizeof(nnm_gemm_args));
    if (g->m < 0 || g->n < 0 || g->k < 0)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu gemm: negative size m=%lld n=%lld k=%lld",
                       (long long)g->m, (long long)g->n, (long long)g->k);
    if (g->m == 0 || g->n == 0)
        return NNM_OK; /* C is empty */
    /* Stored shapes (row-major): A is m x k, or k x m when transposed; B is
     * k x n, or n x k when transposed; C is m x n. */
    const int64_t a_cols = g->trans_a ? g->m : g->k;
    const int64_t b_cols = g->trans_b ? g->k : g->n;
    if (g->c == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: c is NULL");
    if (g->ldc < cpu_max1(g->n))
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: ldc=%lld < n=%lld", (long long)g->ldc,
                       (long long)g->n);
    if (g->k > 0) {
        if (g->a == NULL || g->b == NULL)
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: %s is NULL", g->a == NULL ? "a" : "b");
        if (g->lda < cpu_max1(a_cols))
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: lda=%lld < %lld (trans_a=%d)",
                           (long long)g->lda, (long long)cpu_max1(a_cols), (int)(g->trans_a != 0));
        if (g->ldb < cpu_max1(b_cols))
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: ldb=%lld < %lld (trans_b=%d)",
                           (long long)g->ldb, (long long)cpu_max1(b_cols), (int)(g->trans_b != 0));
    }
    if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->lda > INT_MAX ||
        g->ldb > INT_MAX || g->ldc > INT_MAX)
        return CPU_ERR(env, NNM_E_LIMIT,
                       "cpu gemm: sizes or leading dims above %d are not supported by this "
                       "OpenBLAS build",
                       INT_MAX);
    if (g->k == 0) {
        /* op(A) @ op(B) is all zeros: C = beta * C (beta 0 overwrites, like BLAS) */
        for (int64_t i = 0; i < g->m; i++) {
            float *row = g->c + i * g->ldc;
            for (int64_t j = 0; j < g->n; j++)
                row[j] = g->beta == 0.0f ? 0.0f : g->beta * row[j];
        }
        return NNM_OK;
    }
    if (cpu_gemm_is_small(g)) {
#ifdef CPU_HAVE_DOT8X4
        if (cpu_gemm_is_nt8(g)) {
            cpu_gemm_nt8(g);
            return NNM_OK;
        }
#endif
        cpu_gemm_small(g);
        return NNM_OK;
    }
    const int32_t threads = cpu_threads_for(state, g->m * g->n * g->k, CPU_GEMM_PAR_MIN);
    if (threads > 1 && cpu_gemm_split(state, threads, g))
        return NNM_OK;
    cpu_sgemm(threads, g->trans_a != 0,
              g->trans_b != 0, g->m, g->n, g->k, g->alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
              g->ldc);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Elementwise ops on several threads                                        */
/* ------------------------------------------------------------------------ */

/* An elementwise op over at least this many elements splits between the
 * context's threads when every operand is contiguous over the output (or a
 * one-element broadcast): the flat range is cut into parts of whole 64-element
 * blocks (cache lines never shared between threads), each run as the same
 * op on 1-d descriptors, so the results are those of one thread. Below the
 * cut a helper's hand-off (some 5-20 us) costs more than half the loop
 * saves (bench/bench_threads.c: relu over [64, 32, 14, 14], 400 K elements,
 * gains; over [8, 16, 28, 28], 100 K, does not). */
#define CPU_ELEM_PAR_MIN ((int64_t)1 << 18)
#define CPU_ELEM_BLOCK 64

typedef struct cpu_elem_job {
    nnm_env *env;
    const void *args;
    int64_t n;
    int32_t nops;
    const nnm_tensor_desc *d[4]; /* out first */
    int scalar[4];               /* a one-element broadcast operand */
} cpu_elem_job;

/* Whether every element of d is the one at its base: all strides 0 (or
 * dims of 1), a scalar broadcast to the output's shape as the runtime hands
 * them over (relu's gradient is where(y, g, 0) with that 0). */
static int cpu_is_one_value(const nnm_tensor_desc *d) {
    for (int32_t i = 0; i < d->ndim; i++)
        if (d->shape[i] != 1 && d->strides[i] != 0)
            return 0;
    return 1;
}

/* Fills j for ops whose operands (ds[0] the output, n elements) all allow
 * the flat split (contiguous over the output, or one value broadcast); 0
 * when one does not. */
static int cpu_elem_flat(cpu_elem_job *j, nnm_env *env, const void *args, int64_t n,
                         const nnm_tensor_desc *const *ds, const int64_t *numel, int32_t nops) {
    j->env = env;
    j->args = args;
    j->n = n;
    j->nops = nops;
    for (int32_t k = 0; k < nops; k++) {
        j->d[k] = ds[k];
        j->scalar[k] = (numel[k] == 1 || cpu_is_one_value(ds[k])) && n > 1 && k > 0;
        if (!j->scalar[k] && (numel[k] != n || !cpu_is_contiguous(ds[k])))
            return 0;
    }
    return 1;
}

/* Block range [lo, hi) of j as 1-d descriptors in d (shape/stride storage in
 * sh/st); returns its element count. */
static int64_t cpu_elem_part(const cpu_elem_job *j, int64_t lo, int64_t hi, nnm_tensor_desc *d,
                             int64_t *sh, int64_t *st) {
    const int64_t a = lo * CPU_ELEM_BLOCK, b = hi * CPU_ELEM_BLOCK < j->n ? hi * CPU_ELEM_BLOCK : j->n;
    for (int32_t k = 0; k < j->nops; k++) {
        d[k] = *j->d[k];
        d[k].ndim = 1;
        sh[k] = b - a;
        st[k] = j->scalar[k] ? 0 : 1;
        d[k].shape = &sh[k];
        d[k].strides = &st[k];
        if (!j->scalar[k])
            d[k].byte_offset += (uint64_t)a * sizeof(float);
    }
    return b - a;
}

/* Runs fn over j's blocks on `workers` threads. */
static void cpu_elem_run(void *state, int32_t workers, cpu_elem_job *j,
                         void (*fn)(void *job, int64_t lo, int64_t hi, int slot)) {
    const int64_t blocks = (j->n + CPU_ELEM_BLOCK - 1) / CPU_ELEM_BLOCK;
    cpu_parallel(state, workers, blocks, 4 * (int64_t)workers, fn, j);
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                               */
/* ------------------------------------------------------------------------ */

/* torch.maximum / torch.minimum: NaN in either input gives NaN. */
static inline float cpu_maxf(float a, float b) {
    return a != a ? a : (b != b ? b : (a > b ? a : b));
}
static inline float cpu_minf(float a, float b) {
    return a != a ? a : (b != b ? b : (a < b ? a : b));
}

#define CPU_ADD(x, y) ((x) + (y))
#define CPU_SUB(x, y) ((x) - (y))
#define CPU_MUL(x, y) ((x) * (y))
#define CPU_DIV(x, y) ((x) / (y))
#define CPU_MAX(x, y) cpu_maxf((x), (y))
#define CPU_MIN(x, y) cpu_minf((x), (y))
#define CPU_POW(x, y) powf((x), (y))

/* One inner row of a binary op; p[0]=out, p[1]=a, p[2]=b. The unit-stride
 * and broadcast-scalar cases get their own loops so they vectorise. */
#define CPU_BINARY_ROW(F)                                                                \
    do {                                                                                 \
        float *o = p[0];                                                                 \
        const float *x = p[1], *y = p[2];                                                \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i], y[i]);                                                    \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                \
            const float yv = y[0];                                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i], yv);                                                      \
        } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                \
            const float xv = x[0];                                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(xv, y[i]);                                                      \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i * s[0]] = F(x[i * s[1]], y[i * s[2]]);                               \
        }                                                                                \
    } while (0)

static void cpu_binary_part(void *job, int64_t lo, int64_t hi, int slot);

CPU_CLONES static nnm_status cpu_binary(nnm_env *env, void *state, const nnm_binary_args *args) {
    if (args == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu binary: args is NULL");
    if (args->struct_size < sizeof(nnm_binary_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu binary: args struct_size %u < %zu",
                       (unsigned)args->struct_size, sizeof(nnm_binary_args));
    if (args->op < NNM_BINARY_ADD || args->op > NNM_BINARY_POW)
        return CPU_ERR(env, NNM_E_UNSUPPORTED, "cpu binary: unknown op %d", (int)args->op);
    int64_t n_out = 0, n_a = 0, n_b = 0;
    nnm_status st = cpu_check_desc(env, "binary", "output", args->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "binary", "a", args->a, &n_a);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "binary", "b", args->b, &n_b);
    if (st != NNM_OK)
        return st;
    cpu_layout L;
    const nnm_tensor_desc *ds[3] = {args->out, args->a, args->b};
    static const char *const names[3] = {"output", "a", "b"};
    st = cpu_layout_init(env, "binary", &L, args->out->ndim, args->out->shape, 3, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    const int32_t w = cpu_threads_for(state, n_out, CPU_ELEM_PAR_MIN);
    cpu_elem_job j;
    const int64_t ns[3] = {n_out, n_a, n_b};
    if (w > 1 && cpu_elem_flat(&j, env, args, n_out, ds, ns, 3)) {
        cpu_elem_run(state, w, &j, cpu_binary_part);
        return NNM_OK;
    }
    float *base[3] = {cpu_base(args->out), cpu_base(args->a), cpu_base(args->b)};
    switch (args->op) {
    case NNM_BINARY_ADD: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_ADD)); break;
    case NNM_BINARY_SUB: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_SUB)); break;
    case NNM_BINARY_MUL: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MUL)); break;
    case NNM_BINARY_DIV: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_DIV)); break;
    case NNM_BINARY_MAX: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MAX)); break;
    case NNM_BINARY_MIN: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MIN)); break;
    case NNM_BINARY_POW: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_POW)); break;
    default: break; /* checked above */
    }
    return NNM_OK;
}

static void cpu_binary_part(void *job, int64_t lo, int64_t hi, int slot) {
    (void)slot;
    const cpu_elem_job *j = job;
    nnm_tensor_desc d[3];
    int64_t sh[3], st[3];
    cpu_elem_part(j, lo, hi, d, sh, st);
    nnm_binary_args a = *(const nnm_binary_args *)j->args;
    a.out = &d[0];
    a.a = &d[1];
    a.b = &d[2];
    (void)cpu_binary(j->env, NULL, &a); /* checked whole by the caller */
}

static inline float cpu_relu(float x) {
    return x < 0.0f ? 0.0f : x; /* NaN stays NaN, like torch.relu */
}
/* exp(x) for x <= 0 (softmax's x - max of a row without NaN), written so
 * that -O3 vectorises a loop over it: exp(x) = 2^n * exp(r), n = round(x /
 * ln 2), r = x - n ln 2 in two parts, exp(r) by Cephes's degree-6
 * polynomial (within 2 ulp of expf). Below -87.33 (where expf goes
 * subnormal) and at -inf it gives 0; NaN gives NaN. */
static inline float cpu_exp_nonpos(float x) {
    const float lo = -87.3365447505531f;
    const float xc = x >= lo ? x : lo; /* NaN too: the integer path below stays defined */
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float n = (xc * 1.44269504088896341f + magic) - magic;
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } sc;
    sc.i = ((int32_t)n + 127) * (1 << 23); /* n in [-126, 0]: a normal power of two */
    const float y = p * sc.f;
    return x >= lo ? y : (x != x ? x : 0.0f); /* NaN stays NaN */
}

/* sigmoid branch-free (a loop over it vectorises): e = exp(-|x|), so
 * nothing overflows; 1 / (1 + e) for x >= 0, e / (1 + e) below. NaN stays
 * NaN, +-inf give 1 and 0. */
static inline float cpu_sigmoid(float x) {
    const float e = cpu_exp_nonpos(-fabsf(x)), r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;
}

/* tanh branch-free: Cephes' tanhf (an odd polynomial below |x| = 0.625,
 * else (1 - e) / (1 + e) with e = exp(-2|x|)). */
static inline float cpu_tanh_bf(float x) {
    const float ax = fabsf(x), e = cpu_exp_nonpos(-2.0f * ax);
    const float big = (1.0f - e) / (1.0f + e), z = x * x;
    const float small =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
         3.33332819422e-1f) * z * ax + ax;
    const float t = ax < 0.625f ? small : big;
    return x < 0.0f ? -t : t;
}

/* erf as PyTorch's vectorised CPU kernels compute it (Abramowitz & Stegun
 * 7.1.26, absolute error below 1.5e-7): sign(x) (1 - r(t) t exp(-x^2)) with
 * t = 1 / (1 + 0.3275911 |x|). GELU uses it, so nnmod's GELU is PyTorch's
 * to float rounding. */
static inline float cpu_erf_as(float x) {
    const float ax = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * ax);
    const float r = (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f;
    const float y = 1.0f - r * t * cpu_exp_nonpos(-x * x);
    return x < 0.0f ? -y : y;
}

#define CPU_GELU_BETA 0.7978845608028654f   /* sqrt(2 / pi) */
#define CPU_GELU_KAPPA 0.044715f
#define CPU_SQRT1_2 0.7071067811865476f
#define CPU_INV_SQRT_2PI 0.3989422804014327f /* 1 / sqrt(2 pi) */

static inline float cpu_silu(float x) { return x * cpu_sigmoid(x); }
static inline float cpu_silu_grad(float x) {
    const float s = cpu_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}
static inline float cpu_gelu(float x) { return 0.5f * x * (1.0f + cpu_erf_as(x * CPU_SQRT1_2)); }
static inline float cpu_gelu_grad(float x) {
    const float cdf = 0.5f * (1.0f + cpu_erf_as(x * CPU_SQRT1_2));
    return cdf + x * CPU_INV_SQRT_2PI * cpu_exp_nonpos(-0.5f * x * x);
}
static inline float cpu_gelu_tanh(float x) {
    const float inner = CPU_GELU_BETA * (x + CPU_GELU_KAPPA * x * x * x);
    return 0.5f * x * (1.0f + cpu_tanh_bf(inner));
}
static inline float cpu_gelu_tanh_grad(float x) {
    const float x2 = x * x, t = cpu_tanh_bf(CPU_GELU_BETA * (x + CPU_GELU_KAPPA * x2 * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * CPU_GELU_BETA * (1.0f + 3.0f * CPU_GELU_KAPPA * x2);
}
static inline float cpu_hardswish(float x) {
    const float c = x + 3.0f;
    return x * (c < 0.0f ? 0.0f : c > 6.0f ? 6.0f : c) / 6.0f;
}
/* min(max(x, 0), 6) with NaN kept (the comparisons are false for NaN) */
static inline float cpu_relu6(float x) {
    return x < 0.0f ? 0.0f : x > 6.0f ? 6.0f : x;
}
static inline float cpu_hardswish_grad(float x) { /* PyTorch's hardswish_backward */
    return x < -3.0f ? 0.0f : x <= 3.0f ? x / 3.0f + 0.5f : 1.0f;
}

#define CPU_U_COPY(x) (x)
#define CPU_U_NEG(x) (-(x))
#define CPU_U_RELU(x) cpu_relu(x)
#define CPU_U_EXP(x) expf(x)
#define CPU_U_LOG(x) logf(x)
#define CPU_U_TANH(x) tanhf(x)
#define CPU_U_SIGMOID(x) cpu_sigmoid(x)
#define CPU_U_SQRT(x) sqrtf(x)
#define CPU_U_ABS(x) fabsf(x)
#define CPU_U_SCALE(x) (alpha * (x))
#define CPU_U_STEP(x) ((x) > 0.0f ? 1.0f : 0.0f)
#define CPU_U_SIGN(x) ((x) > 0.0f ? 1.0f : ((x) < 0.0f ? -1.0f : 0.0f))
#define CPU_U_ERF(x) erff(x)
#define CPU_U_ADD_SCALAR(x) ((x) + alpha)
#define CPU_U_POW(x) powf((x), alpha)
#define CPU_U_CLAMP_MIN(x) ((x) < alpha ? alpha : (x)) /* NaN compares false: stays NaN */
#define CPU_U_CLAMP_MAX(x) ((x) > alpha ? alpha : (x))
#define CPU_U_GE(x) ((x) >= alpha ? 1.0f : 0.0f)
#define CPU_U_SIN(x) sinf(x)
#define CPU_U_COS(x) cosf(x)
#define CPU_U_FLOOR(x) floorf(x)
#define CPU_U_CEIL(x) ceilf(x)
#define CPU_U_ROUND(x) nearbyintf(x) /* half to even in the default rounding mode, as torch.round */
#define CPU_U_TRUNC(x) truncf(x)
#define CPU_U_SILU(x) cpu_silu(x)
#define CPU_U_GELU(x) cpu_gelu(x)
#define CPU_U_GELU_TANH(x) cpu_gelu_tanh(x)
#define CPU_U_HARDSWISH(x) cpu_hardswish(x)
#define CPU_U_LEAKY_RELU(x) ((x) > 0.0f ? (x) : (x) * alpha)
#define CPU_U_ELU(x) ((x) > 0.0f ? (x) : alpha * expm1f(x))
#define CPU_U_SILU_GRAD(x) cpu_silu_grad(x)
#define CPU_U_GELU_GRAD(x) cpu_gelu_grad(x)
#define CPU_U_GELU_TANH_GRAD(x) cpu_gelu_tanh_grad(x)
#define CPU_U_HARDSWISH_GRAD(x) cpu_hardswish_grad(x)
#define CPU_U_LEAKY_RELU_GRAD(x) ((x) > 0.0f ? 1.0f : alpha)
#define CPU_U_ELU_GRAD(x) ((x) > 0.0f ? 1.0f : alpha * expf(x))
#define CPU_U_RELU6(x) cpu_relu6(x)
#define CPU_U_HARDSIGMOID(x) (cpu_relu6((x) + 3.0f) / 6.0f)
#define CPU_U_RELU6_GRAD(x) ((x) > 0.0f && (x) < 6.0f ? 1.0f : 0.0f)
#define CPU_U_HARDSIGMOID_GRAD(x) ((x) > -3.0f && (x) < 3.0f ? 1.0f / 6.0f : 0.0f)

/* One inner row of a unary op; p[0]=out, p[1]=x. */
#define CPU_UNARY_ROW(F)                                                                 \
    do {                                                                                 \
        float *o = p[0];                                                                 \
        const float *x = p[1];                                                           \
        if (s[0] == 1 && s[1] == 1) {                                                    \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i]);                                                          \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i * s[0]] = F(x[i * s[1]]);                                            \
        }                                                                                \
    } while (0)

/* COPY's row: memcpy where both rows are dense (a concat or slice moves
 * whole blocks; libc's copy beats the element loop on large ones). */
#define CPU_COPY_ROW                                                                     \
    do {                                                                                 \
        if (s[0] == 1 && s[1] == 1)                                                      \
            memcpy(p[0], p[1], sizeof(float) * (size_t)n);                               \
        else                                                                             \
            CPU_UNARY_ROW(CPU_U_COPY);                                                   \
    } while (0)

static void cpu_unary_part(void *job, int64_t lo, int64_t hi, int slot);

/* The small-model case checked in one pass: out and x f32 CPU tensors of the
 * same shape, both contiguous, with data, fewer than 2^31 elements (*n).
 * Anything else (0) takes cpu_check_desc and the layout, which say what is
 * wrong; this only skips their cost (a third of a batch-1 ReLU's). */
static int cpu_unary_flat(const nnm_unary_args *a, int64_t *n) {
    const nnm_tensor_desc *o = a->out, *x = a->x;
    if (o == NULL || x == NULL || o->ndim != x->ndim || o->ndim < 1 || o->ndim > NNM_MAX_DIMS ||
        !cpu_is_f32(o->dtype) || !cpu_is_f32(x->dtype) || o->device.type != NNM_DEVICE_CPU ||
        x->device.type != NNM_DEVICE_CPU || (o->byte_offset | x->byte_offset) % 4u != 0 ||
        o->data == NULL || x->data == NULL || o->shape == NULL || o->strides == NULL ||
        x->shape == NULL || x->strides == NULL)
        return 0;
    int64_t c = 1;
    for (int32_t i = o->ndim - 1; i >= 0; i--) {
        const int64_t sz = o->shape[i];
        /* c <= 2^31 here, so c * sz cannot overflow once sz <= 2^31: no
         * division (a 64-bit divide per dim cost more than the checks) */
        if (sz != x->shape[i] || sz < 1 || sz > ((int64_t)1 << 31) || c * sz > ((int64_t)1 << 31))
            return 0;
        if (sz != 1 && (o->strides[i] != c || x->strides[i] != c))
            return 0;
        c *= sz;
    }
    *n = c;
    return 1;
}

CPU_CLONES static nnm_status cpu_unary_any(nnm_env *env, void *state, const nnm_unary_args *args) {
    if (args == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu unary: args is NULL");
    if (args->struct_size < sizeof(nnm_unary_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu unary: args struct_size %u < %zu",
                       (unsigned)args->struct_size, sizeof(nnm_unary_args));
    if (args->op < NNM_UNARY_COPY || args->op > NNM_UNARY_HARDSIGMOID_GRAD)
        return CPU_ERR(env, NNM_E_UNSUPPORTED, "cpu unary: unknown op %d", (int)args->op);
    int64_t n_out = 0, n_x = 0;
    cpu_layout L;
    const nnm_tensor_desc *ds[2] = {args->out, args->x};
    if (cpu_unary_flat(args, &n_out) &&
        cpu_threads_for(state, n_out, CPU_ELEM_PAR_MIN) <= 1) { /* one flat row */
        L.ndim = 1;
        L.nops = 2;
        L.shape[0] = n_out;
        L.strides[0][0] = L.strides[1][0] = 1;
        goto run;
    }
    nnm_status st = cpu_check_desc(env, "unary", "output", args->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "unary", "x", args->x, &n_x);
    if (st != NNM_OK)
        return st;
    static const char *const names[2] = {"output", "x"};
    st = cpu_layout_init(env, "unary", &L, args->out->ndim, args->out->shape, 2, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    const int32_t w = cpu_threads_for(state, n_out, CPU_ELEM_PAR_MIN);
    cpu_elem_job j;
    const int64_t ns[2] = {n_out, n_x};
    if (w > 1 && cpu_elem_flat(&j, env, args, n_out, ds, ns, 2)) {
        cpu_elem_run(state, w, &j, cpu_unary_part);
        return NNM_OK;
    }
run:;
    float *base[2] = {cpu_base(args->out), cpu_base(args->x)};
    const float alpha = (float)args->alpha;
    switch (args->op) {
    case NNM_UNARY_COPY: CPU_WALK(&L, base, CPU_COPY_ROW); break;
    case NNM_UNARY_NEG: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_NEG)); break;
    case NNM_UNARY_RELU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_RELU)); break;
    case NNM_UNARY_EXP: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_EXP)); break;
    case NNM_UNARY_LOG: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_LOG)); break;
    case NNM_UNARY_TANH: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_TANH)); break;
    case NNM_UNARY_SIGMOID: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SIGMOID)); break;
    case NNM_UNARY_SQRT: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SQRT)); break;
    case NNM_UNARY_ABS: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ABS)); break;
    case NNM_UNARY_SCALE: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SCALE)); break;
    case NNM_UNARY_STEP: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_STEP)); break;
    case NNM_UNARY_SIGN: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SIGN)); break;
    case NNM_UNARY_ERF: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ERF)); break;
    case NNM_UNARY_ADD_SCALAR: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ADD_SCALAR)); break;
    case NNM_UNARY_POW: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_POW)); break;
    case NNM_UNARY_CLAMP_MIN: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_CLAMP_MIN)); break;
    case NNM_UNARY_CLAMP_MAX: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_CLAMP_MAX)); break;
    case NNM_UNARY_GE: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_GE)); break;
    case NNM_UNARY_SIN: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SIN)); break;
    case NNM_UNARY_COS: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_COS)); break;
    case NNM_UNARY_FLOOR: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_FLOOR)); break;
    case NNM_UNARY_CEIL: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_CEIL)); break;
    case NNM_UNARY_ROUND: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ROUND)); break;
    case NNM_UNARY_TRUNC: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_TRUNC)); break;
    case NNM_UNARY_SILU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SILU)); break;
    case NNM_UNARY_GELU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_GELU)); break;
    case NNM_UNARY_GELU_TANH: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_GELU_TANH)); break;
    case NNM_UNARY_HARDSWISH: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_HARDSWISH)); break;
    case NNM_UNARY_LEAKY_RELU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_LEAKY_RELU)); break;
    case NNM_UNARY_ELU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ELU)); break;
    case NNM_UNARY_SILU_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SILU_GRAD)); break;
    case NNM_UNARY_GELU_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_GELU_GRAD)); break;
    case NNM_UNARY_GELU_TANH_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_GELU_TANH_GRAD)); break;
    case NNM_UNARY_HARDSWISH_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_HARDSWISH_GRAD)); break;
    case NNM_UNARY_LEAKY_RELU_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_LEAKY_RELU_GRAD)); break;
    case NNM_UNARY_ELU_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ELU_GRAD)); break;
    case NNM_UNARY_RELU6: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_RELU6)); break;
    case NNM_UNARY_HARDSIGMOID: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_HARDSIGMOID)); break;
    case NNM_UNARY_RELU6_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_RELU6_GRAD)); break;
    case NNM_UNARY_HARDSIGMOID_GRAD: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_HARDSIGMOID_GRAD)); break;
    default: break; /* checked above */
    }
    return NNM_OK;
}

/* ReLU over n floats that do not overlap (restrict: vectorised without the
 * run-time alias checks and scalar fallback the compiler adds otherwise). */
static inline void cpu_relu_disjoint(float *restrict o, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        o[i] = cpu_relu(x[i]);
}

/* The unary slot. A ReLU over one small contiguous row (every small MLP's
 * activation) runs here, in a frame of a few registers: cpu_unary_any's
 * 1.5 KB frame and its walk cost a batch-1 ReLU(16) more than the loop. */
CPU_CLONES static nnm_status cpu_unary(nnm_env *env, void *state, const nnm_unary_args *args) {
    int64_t n = 0;
    if (args != NULL && args->struct_size >= sizeof(nnm_unary_args) && args->op == NNM_UNARY_RELU &&
        cpu_unary_flat(args, &n) && cpu_threads_for(state, n, CPU_ELEM_PAR_MIN) <= 1) {
        float *o = cpu_base(args->out);
        const float *x = cpu_base(args->x);
        if (o + n <= x || x + n <= o) {
            cpu_relu_disjoint(o, x, n);
        } else { /* in place (or overlapping): element by element, in order */
            for (int64_t i = 0; i < n; i++)
                o[i] = cpu_relu(x[i]);
        }
        return NNM_OK;
    }
    return cpu_unary_any(env, state, args);
}

static void cpu_unary_part(void *job, int64_t lo, int64_t hi, int slot) {
    (void)slot;
    const cpu_elem_job *j = job;
    nnm_tensor_desc d[2];
    int64_t sh[2], st[2];
    cpu_elem_part(j, lo, hi, d, sh, st);
    nnm_unary_args a = *(const nnm_unary_args *)j->args;
    a.out = &d[0];
    a.x = &d[1];
    (void)cpu_unary(j->env, NULL, &a); /* checked whole by the caller */
}

/* ------------------------------------------------------------------------ */
/* Reductions (1.1)                                                          */
/* ------------------------------------------------------------------------ */

/* Output elements reduced together in the kept-inner walk (doubles on the stack). */
#define CPU_RED_TILE 128

/* x's dims split into those kept (out has x's size) and those reduced (out has
 * size 1), each group in order with size-1 dims dropped and neighbours merged
 * where x is contiguous across them. A group that ends up empty holds one dim
 * of size 1 and stride 0, so the walks below never special-case it. */
typedef struct cpu_red_plan {
    int32_t nk, nr;
    int64_t kshape[NNM_MAX_DIMS], kstride[NNM_MAX_DIMS];
    int64_t rshape[NNM_MAX_DIMS], rstride[NNM_MAX_DIMS];
    int64_t count; /* elements reduced into each output element */
} cpu_red_plan;

static void cpu_red_push(int32_t *nd, int64_t *shape, int64_t *stride, int64_t sz, int64_t st) {
    if (*nd > 0 && stride[*nd - 1] == st * sz) {
        shape[*nd - 1] *= sz;
        stride[*nd - 1] = st;
        return;
    }
    shape[*nd] = sz;
    stride[*nd] = st;
    (*nd)++;
}

/* Sum of one strided row in double. The unit-stride path keeps eight
 * accumulators: four chains of two-double vector adds, where four
 * accumulators (two chains) left the loop waiting on the add's latency
 * (1.25x slower on conv bias gradients, rows of 784). */
static double cpu_sum_row(const float *p, int64_t n, int64_t s) {
    double acc = 0.0;
    if (s == 1) {
        double a[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                a[k] += (double)p[i + k];
        for (; i < n; i++)
            acc += (double)p[i];
        return acc + (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])));
    }
    for (int64_t i = 0; i < n; i++)
        acc += (double)p[i * s];
    return acc;
}

/* Max (is_max) or min of one strided row, NaN-propagating like torch.amax. */
static float cpu_ext_row(const float *p, int64_t n, int64_t s, int is_max, float acc) {
    if (is_max) {
        for (int64_t i = 0; i < n; i++)
            acc = cpu_maxf(acc, p[i * s]);
    } else {
        for (int64_t i = 0; i < n; i++)
            acc = cpu_minf(acc, p[i * s]);
    }
    return acc;
}

/* Advances an odometer over dims [0, nd) of shape/stride, moving *off; returns
 * 0 once every index has wrapped (the walk is over). */
static int cpu_odo_next(int32_t nd, const int64_t *shape, const int64_t *stride, int64_t *idx,
                        int64_t *off) {
    for (int32_t d = nd - 1; d >= 0; d--) {
        *off += stride[d];
        if (++idx[d] < shape[d])
            return 1;
        *off -= stride[d] * shape[d];
        idx[d] = 0;
    }
    return 0;
}

/* The final value of one output element from its accumulator. */
static float cpu_red_finish(int32_t op, double alpha, double acc, int64_t count) {
    if (op == NNM_REDUCE_MEAN)
        return (float)(acc / (double)count * alpha);
    return (float)(alpha * acc);
}

/* Threads: in the reduce-inner walk with one kept dim (a conv's bias
 * gradient, [N, C, L] -> C sums of N rows), the output elements are
 * independent, each summed whole by one thread in the one-thread order, so
 * with a thread count set they are split between the threads once x has
 * CPU_ELEM_PAR_MIN elements: the same bits on any count. */
typedef struct cpu_red_job {
    const cpu_red_plan *P;
    const float *xb;
    float *o;
    int32_t op;
    double alpha;
} cpu_red_job;

static void cpu_red_rows_part(void *job, int64_t lo, int64_t hi, int slot) {
    (void)slot;
    const cpu_red_job *j = job;
    const cpu_red_plan *P = j->P;
    const int32_t rl = P->nr - 1;
    const int64_t ks = P->kstride[0], rn = P->rshape[rl], rs = P->rstride[rl];
    for (int64_t k = lo; k < hi; k++) {
        int64_t ridx[NNM_MAX_DIMS] = {0}, roff = 0;
        double acc = 0.0;
        do
            acc += cpu_sum_row(j->xb + k * ks + roff, rn, rs);
        while (cpu_odo_next(rl, P->rshape, P->rstride, ridx, &roff));
        j->o[k] = cpu_red_finish(j->op, j->alpha, acc, P->count);
    }
}

static nnm_status cpu_reduce(nnm_env *env, void *state, const nnm_reduce_args *a) {
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu reduce: args is NULL");
    if (a->struct_size < sizeof(nnm_reduce_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu reduce: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_reduce_args));
    if (a->op < NNM_REDUCE_SUM || a->op > NNM_REDUCE_MIN)
        return CPU_ERR(env, NNM_E_UNSUPPORTED, "cpu reduce: unknown op %d", (int)a->op);
    static const char *const op_names[] = {"sum", "mean", "max", "min"};
    int64_t n_out = 0, n_x = 0;
    nnm_status st = cpu_check_desc(env, "reduce", "output", a->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "reduce", "x", a->x, &n_x);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *x = a->x, *out = a->out;
    if (x->ndim != out->ndim)
        return CPU_ERR(env, NNM_E_SHAPE,
                       "cpu reduce: output has %d dims, x has %d (reduced dims stay as size 1)",
                       (int)out->ndim, (int)x->ndim);
    if (!cpu_is_contiguous(out))
        return cpu_err_contiguous(env, "reduce", "output");

    cpu_red_plan P;
    P.nk = P.nr = 0;
    P.count = 1;
    for (int32_t i = 0; i < x->ndim; i++) {
        const int64_t xs = x->shape[i], os = out->shape[i];
        if (os == xs) {
            if (xs != 1)
                cpu_red_push(&P.nk, P.kshape, P.kstride, xs, x->strides[i]);
        } else if (os == 1) {
            cpu_red_push(&P.nr, P.rshape, P.rstride, xs, x->strides[i]);
            P.count *= xs;
        } else {
            return CPU_ERR(env, NNM_E_SHAPE,
                           "cpu reduce: output has size %lld in dim %d where x has %lld (it "
                           "must be %lld, or 1 to reduce the dim)",
                           (long long)os, (int)i, (long long)xs, (long long)xs);
        }
    }
    if (n_out == 0)
        return NNM_OK;
    float *o = cpu_base(out);
    if (P.count == 0) {
        /* torch: sum() of nothing is 0, mean() NaN, amax()/amin() an error */
        if (a->op == NNM_REDUCE_MAX || a->op == NNM_REDUCE_MIN)
            return CPU_ERR(env, NNM_E_SHAPE,
                           "cpu reduce: %s over zero elements (a reduced dim of x has size "
                           "0) has no identity",
                           op_names[a->op]);
        const float v = a->op == NNM_REDUCE_SUM ? 0.0f : NAN;
        for (int64_t i = 0; i < n_out; i++)
            o[i] = v;
        return NNM_OK;
    }
    if (P.nk == 0) {
        P.nk = 1;
        P.kshape[0] = 1;
        P.kstride[0] = 0;
    }
    if (P.nr == 0) {
        P.nr = 1;
        P.rshape[0] = 1;
        P.rstride[0] = 0;
    }

    const float *xb = cpu_base(x);
    const int is_ext = a->op == NNM_REDUCE_MAX || a->op == NNM_REDUCE_MIN;
    const int is_max = a->op == NNM_REDUCE_MAX;
    const float ext_init = is_max ? -INFINITY : INFINITY;
    const int32_t kl = P.nk - 1, rl = P.nr - 1;
    const int64_t kn = P.kshape[kl], ks = P.kstride[kl];
    const int64_t rn = P.rshape[rl], rs = P.rstride[rl];
    int64_t kidx[NNM_MAX_DIMS] = {0}, ridx[NNM_MAX_DIMS] = {0};
    int64_t koff = 0;

    /* Two walks, picked by which inner dim is closer to unit stride in x:
     *  - reduce-inner (row sums, [N, C] -> [N, 1]): per output element, the
     *    reduced dims, innermost reduced dim as the tight loop;
     *  - kept-inner (column sums, [N, C] -> [1, C]): per tile of up to
     *    CPU_RED_TILE outputs along the innermost kept dim, the reduced dims,
     *    each step adding a strip of x into a row of accumulators. */
    const int64_t aks = ks < 0 ? -ks : ks, ars = rs < 0 ? -rs : rs;
    if (kn == 1 || (rn > 1 && ars <= aks) || (rn == 1 && P.nr == 1)) {
        const int32_t w = P.nk == 1 && !is_ext && kn > 1 ? cpu_threads_for(state, n_x, CPU_ELEM_PAR_MIN) : 0;
        if (w > 1) {
            cpu_red_job j = {&P, xb, o, a->op, a->alpha};
            cpu_parallel(state, w, kn, kn < 4 * (int64_t)w ? kn : 4 * (int64_t)w, cpu_red_rows_part, &j);
            return NNM_OK;
        }
        int64_t oi = 0;
        do {
            for (int64_t j = 0; j < kn; j++) {
                const float *pk = xb + koff + j * ks;
                double acc = 0.0;
                float ext = ext_init;
                int64_t roff = 0;
                do {
                    if (is_ext)
                        ext = cpu_ext_row(pk + roff, rn, rs, is_max, ext);
                    else
                        acc += cpu_sum_row(pk + roff, rn, rs);
                } while (cpu_odo_next(rl, P.rshape, P.rstride, ridx, &roff));
                o[oi++] = cpu_red_finish(a->op, a->alpha, is_ext ? (double)ext : acc, P.count);
            }
        } while (cpu_odo_next(kl, P.kshape, P.kstride, kidx, &koff));
        return NNM_OK;
    }
    double acc[CPU_RED_TILE];
    float ext[CPU_RED_TILE];
    int64_t oi = 0;
    do {
        for (int64_t t0 = 0; t0 < kn; t0 += CPU_RED_TILE) {
            const int64_t tn = kn - t0 < CPU_RED_TILE ? kn - t0 : CPU_RED_TILE;
            for (int64_t j = 0; j < tn; j++) {
                acc[j] = 0.0;
                ext[j] = ext_init;
            }
            const float *pk = xb + koff + t0 * ks;
            int64_t roff = 0;
            do {
                const float *q = pk + roff;
                if (is_max) {
                    for (int64_t j = 0; j < tn; j++)
                        ext[j] = cpu_maxf(ext[j], q[j * ks]);
                } else if (is_ext) {
                    for (int64_t j = 0; j < tn; j++)
                        ext[j] = cpu_minf(ext[j], q[j * ks]);
                } else if (ks == 1) {
                    for (int64_t j = 0; j < tn; j++)
                        acc[j] += (double)q[j];
                } else {
                    for (int64_t j = 0; j < tn; j++)
                        acc[j] += (double)q[j * ks];
                }
            } while (cpu_odo_next(P.nr, P.rshape, P.rstride, ridx, &roff));
            for (int64_t j = 0; j < tn; j++)
                o[oi + j] = cpu_red_finish(a->op, a->alpha, is_ext ? (double)ext[j] : acc[j],
                                           P.count);
            oi += tn;
        }
    } while (cpu_odo_next(kl, P.kshape, P.kstride, kidx, &koff));
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* log_softmax, nll (1.1)                                                    */
/* ------------------------------------------------------------------------ */

static nnm_status cpu_log_softmax(nnm_env *env, void *state, const nnm_log_softmax_args *a) {
    (void)state;
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu log_softmax: args is NULL");
    if (a->struct_size < sizeof(nnm_log_softmax_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu log_softmax: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_log_softmax_args));
    int64_t n_out = 0, n_x = 0;
    nnm_status st = cpu_check_desc(env, "log_softmax", "output", a->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "log_softmax", "x", a->x, &n_x);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *x = a->x, *out = a->out;
    int same = x->ndim == out->ndim;
    for (int32_t i = 0; same && i < x->ndim; i++)
        same = x->shape[i] == out->shape[i];
    if (!same)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu log_softmax: output and x differ in shape");
    if (!cpu_is_contiguous(x))
        return cpu_err_contiguous(env, "log_softmax", "x");
    if (!cpu_is_contiguous(out))
        return cpu_err_contiguous(env, "log_softmax", "output");
    const int64_t c = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    if (n_x == 0 || c == 0)
        return NNM_OK;
    const int64_t rows = n_x / c;
    const float *xb = cpu_base(x);
    float *ob = cpu_base(out);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xb + r * c;
        float *orow = ob + r * c; /* may alias xr: each element is read before written */
        float m = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            m = cpu_maxf(m, xr[j]);
        /* exp of x - max <= 0 never overflows; the sum is kept in double. A
         * row of all -inf (or holding +inf or NaN) gives NaN, as in torch. */
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += (double)expf(xr[j] - m);
        const double shift = (double)m + log(sum);
        for (int64_t j = 0; j < c; j++)
            orow[j] = (float)((double)xr[j] - shift);
    }
    return NNM_OK;
}

/* Checks logp [N, C] (contiguous), target [N] (i64, any stride) and the
 * targets' range for nll and nll_backward. */
static nnm_status cpu_check_nll(nnm_env *env, const char *op, const nnm_tensor_desc *logp,
                                const char *logp_name, const nnm_tensor_desc *target,
                                int64_t ignore_index, int64_t *n, int64_t *c) {
    int64_t n_l = 0, n_t = 0;
    nnm_status st = cpu_check_desc(env, op, logp_name, logp, &n_l);
    if (st == NNM_OK)
        st = cpu_check_desc_dt(env, op, "target", target, 1, &n_t);
    if (st != NNM_OK)
        return st;
    if (logp->ndim != 2)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: %s must be [N, C], it has %d dims", op,
                       logp_name, (int)logp->ndim);
    if (!cpu_is_contiguous(logp))
        return cpu_err_contiguous(env, op, logp_name);
    *n = logp->shape[0];
    *c = logp->shape[1];
    if (target->ndim != 1 || target->shape[0] != *n)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: target must be [%lld] to match %s [%lld, %lld]",
                       op, (long long)*n, logp_name, (long long)*n, (long long)*c);
    const int64_t *t = (const int64_t *)(const void *)cpu_bytes(target);
    const int64_t ts = target->strides[0];
    for (int64_t i = 0; i < *n; i++) {
        const int64_t ti = t[i * ts];
        if (ti != ignore_index && (ti < 0 || ti >= *c))
            return CPU_ERR(env, NNM_E_INVALID,
                           "cpu %s: target %lld at row %lld is outside [0, %lld) (and is not "
                           "ignore_index %lld)",
                           op, (long long)ti, (long long)i, (long long)*c,
                           (long long)ignore_index);
    }
    return NNM_OK;
}

/* A [N] f32 vector: ndim 1, size n. */
static nnm_status cpu_check_vec(nnm_env *env, const char *op, const char *what,
                                const nnm_tensor_desc *d, int64_t n) {
    int64_t numel = 0;
    nnm_status st = cpu_check_desc(env, op, what, d, &numel);
    if (st != NNM_OK)
        return st;
    if (d->ndim != 1 || d->shape[0] != n)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: %s must be [%lld] (one value per row)", op,
                       what, (long long)n);
    return NNM_OK;
}

static nnm_status cpu_nll(nnm_env *env, void *state, const nnm_nll_args *a) {
    (void)state;
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu nll: args is NULL");
    if (a->struct_size < sizeof(nnm_nll_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu nll: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_nll_args));
    const double e = a->label_smoothing;
    if (!(e >= 0.0 && e <= 1.0))
        return CPU_ERR(env, NNM_E_INVALID, "cpu nll: label_smoothing %g is outside [0, 1]", e);
    int64_t n = 0, c = 0;
    nnm_status st = cpu_check_nll(env, "nll", a->logp, "logp", a->target, a->ignore_index, &n, &c);
    if (st == NNM_OK)
        st = cpu_check_vec(env, "nll", "output", a->out, n);
    if (st != NNM_OK)
        return st;
    if (n > 1 && a->out->strides[0] != 1)
        return cpu_err_contiguous(env, "nll", "output");
    if (a->count != NULL) {
        int64_t n_c = 0;
        st = cpu_check_desc(env, "nll", "count", a->count, &n_c);
        if (st != NNM_OK)
            return st;
        if (n_c != 1)
            return CPU_ERR(env, NNM_E_SHAPE, "cpu nll: count must hold one element, it has %lld",
                           (long long)n_c);
    }
    const float *lp = cpu_base(a->logp);
    const int64_t *t = (const int64_t *)(const void *)cpu_bytes(a->target);
    const int64_t ts = a->target->strides[0];
    float *o = cpu_base(a->out);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t ti = t[i * ts];
        if (ti == a->ignore_index) {
            o[i] = 0.0f;
            continue;
        }
        kept++;
        const float *row = lp + i * c;
        double v = -(double)row[ti];
        if (e != 0.0) { /* skipped at e = 0 so a -inf elsewhere in the row is harmless */
            const double smooth = -cpu_sum_row(row, c, 1) / (double)c;
            v = (1.0 - e) * v + e * smooth;
        }
        o[i] = (float)v;
    }
    if (a->count != NULL)
        *cpu_base(a->count) = (float)kept;
    return NNM_OK;
}

static nnm_status cpu_nll_backward(nnm_env *env, void *state, const nnm_nll_backward_args *a) {
    (void)state;
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu nll_backward: args is NULL");
    if (a->struct_size < sizeof(nnm_nll_backward_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu nll_backward: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_nll_backward_args));
    const double e = a->label_smoothing;
    if (!(e >= 0.0 && e <= 1.0))
        return CPU_ERR(env, NNM_E_INVALID,
                       "cpu nll_backward: label_smoothing %g is outside [0, 1]", e);
    int64_t n = 0, c = 0;
    nnm_status st = cpu_check_nll(env, "nll_backward", a->grad_logp, "grad_logp", a->target,
                                  a->ignore_index, &n, &c);
    if (st == NNM_OK)
        st = cpu_check_vec(env, "nll_backward", "grad", a->grad, n);
    if (st != NNM_OK)
        return st;
    const float *g = cpu_base(a->grad);
    const int64_t gs = a->grad->strides[0];
    const int64_t *t = (const int64_t *)(const void *)cpu_bytes(a->target);
    const int64_t ts = a->target->strides[0];
    float *gl = cpu_base(a->grad_logp);
    const double off = c > 0 ? -e / (double)c : 0.0; /* d out[i] / d logp[i, c != t] */
    const double on = -(1.0 - e) + off;               /* d out[i] / d logp[i, t] */
    for (int64_t i = 0; i < n; i++) {
        const int64_t ti = t[i * ts];
        float *row = gl + i * c;
        if (ti == a->ignore_index) {
            for (int64_t j = 0; j < c; j++)
                row[j] = 0.0f;
            continue;
        }
        const double gi = (double)g[i * gs];
        const float v = e != 0.0 ? (float)(gi * off) : 0.0f;
        for (int64_t j = 0; j < c; j++)
            row[j] = v;
        row[ti] = (float)(gi * on);
    }
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Optimizer steps (1.1)                                                     */
/* ------------------------------------------------------------------------ */

/* a * b + c rounded once to float, as torch's AVX2 kernels compute
 * `add(x, alpha=)` and `addcmul` (vec::fmadd): the product of two floats is
 * exact in double, so only the final sum rounds (twice, double then float,
 * which differs from one fused rounding in vanishingly rare ties). Plain
 * C, so it vectorises without -mfma and no libm fmaf call per element. */
static inline float cpu_madd(float a, float b, float c) {
    return (float)((double)a * (double)b + (double)c);
}

/* Checks n and that each of the k pointers is non-NULL when n > 0. */
static nnm_status cpu_check_buffers(nnm_env *env, const char *op, int64_t n, int k,
                                    const void *const *ptrs, const char *const *names) {
    if (n < 0)
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: n is %lld (must be >= 0)", op, (long long)n);
    for (int i = 0; n > 0 && i < k; i++)
        if (ptrs[i] == NULL)
            return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s is NULL with n = %lld", op, names[i],
                           (long long)n);
    return NNM_OK;
}

/* torch.optim.SGD, _single_tensor_sgd (maximize=False), in torch's order of
 * float operations:
 *   d_p = grad.add(param, alpha=wd)                 (only when wd != 0)
 *   buf = clone(d_p) | buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
 *   d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
 *   param.add_(d_p, alpha=-lr) */
/* The SGD loops twice: with cpu_madd (any CPU) and, where the CPU has FMA,
 * with the fused instruction, which is what torch's AVX2 kernel runs and
 * about twice as fast as the double-precision detour. */
#define CPU_SGD_NAME cpu_sgd_loops
#define CPU_SGD_MADD cpu_madd
#define CPU_SGD_ATTR
#include "sgd_loops.inc"
#undef CPU_SGD_NAME
#undef CPU_SGD_MADD
#undef CPU_SGD_ATTR
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CPU_HAVE_FMA_CLONE 1
#define CPU_SGD_NAME cpu_sgd_loops_fma
#define CPU_SGD_MADD __builtin_fmaf
#define CPU_SGD_ATTR __attribute__((target("fma")))
#include "sgd_loops.inc"
#undef CPU_SGD_NAME
#undef CPU_SGD_MADD
#undef CPU_SGD_ATTR
#endif

static nnm_status cpu_sgd_step(nnm_env *env, void *state, const nnm_sgd_args *a) {
    (void)state;
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu sgd_step: args is NULL");
    if (a->struct_size < sizeof(nnm_sgd_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu sgd_step: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_sgd_args));
    const int use_mom = a->momentum != 0.0f;
    const void *const ptrs[3] = {a->param, a->grad, a->momentum_buf};
    static const char *const names[3] = {"param", "grad", "momentum_buf (momentum != 0)"};
    nnm_status st = cpu_check_buffers(env, "sgd_step", a->n, use_mom ? 3 : 2, ptrs, names);
    if (st != NNM_OK)
        return st;
#ifdef CPU_HAVE_FMA_CLONE
    if (__builtin_cpu_supports("fma")) {
        cpu_sgd_loops_fma(a, use_mom);
        return NNM_OK;
    }
#endif
    cpu_sgd_loops(a, use_mom);
    return NNM_OK;
}

/* torch.optim.Adam / AdamW, _single_tensor_adam(w) (capturable=False,
 * maximize=False), in torch's order of float operations; the scalars Python
 * computes in double are computed in double here and cast where torch casts:
 *   AdamW: param.mul_(1 - lr * wd)     Adam: grad = grad.add(param, alpha=wd)
 *   exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
 *   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   step_size = lr / (1 - beta1 ** step); bc2_sqrt = sqrt(1 - beta2 ** step)
 *   denom = (max_exp_avg_sq or exp_avg_sq).sqrt() / bc2_sqrt + eps
 *   param.addcdiv_(exp_avg, denom, value=-step_size) */
/* The loop, per instruction set like SGD's (adam_loops.inc). */
#define CPU_ADAM_NAME cpu_adam_loops
#define CPU_ADAM_MADD cpu_madd
#define CPU_ADAM_ATTR
#include "adam_loops.inc"
#undef CPU_ADAM_NAME
#undef CPU_ADAM_MADD
#undef CPU_ADAM_ATTR
#ifdef CPU_HAVE_FMA_CLONE
#define CPU_ADAM_NAME cpu_adam_loops_fma
#define CPU_ADAM_MADD __builtin_fmaf
#define CPU_ADAM_ATTR __attribute__((target("fma")))
#include "adam_loops.inc"
#undef CPU_ADAM_NAME
#undef CPU_ADAM_MADD
#undef CPU_ADAM_ATTR
#endif

static nnm_status cpu_adam_step(nnm_env *env, void *state, const nnm_adam_args *a) {
    (void)state;
    if (a == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu adam_step: args is NULL");
    if (a->struct_size < sizeof(nnm_adam_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu adam_step: args struct_size %u < %zu",
                       (unsigned)a->struct_size, sizeof(nnm_adam_args));
    if (a->step < 1)
        return CPU_ERR(env, NNM_E_INVALID, "cpu adam_step: step is %lld (the first step is 1)",
                       (long long)a->step);
    const void *const ptrs[4] = {a->param, a->grad, a->exp_avg, a->exp_avg_sq};
    static const char *const names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
    nnm_status st = cpu_check_buffers(env, "adam_step", a->n, 4, ptrs, names);
    if (st != NNM_OK)
        return st;
    const double step = (double)a->step;
    const double bc1 = 1.0 - pow(a->beta1, step);
    const double bc2 = 1.0 - pow(a->beta2, step);
    const float neg_step_size = (float)-(a->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
#ifdef CPU_HAVE_FMA_CLONE
    if (__builtin_cpu_supports("fma")) {
        cpu_adam_loops_fma(a, neg_step_size, bc2_sqrt);
        return NNM_OK;
    }
#endif
    cpu_adam_loops(a, neg_step_size, bc2_sqrt);
    return NNM_OK;
}

/* im2col/col2im, pooling, softmax over any dim, where (1.3) */
#include "nn_kernels.inc"
/* fused batch normalisation forward and backward (1.4) */
#include "bn_kernels.inc"

/* whole convolutions (1.4): depthwise ones directly, 3x3 ones as Winograd
 * F(2x2, 3x3); the rest are declined (the runtime's im2col + gemm) */
#include "conv_depthwise.inc"
/* im2col + the AVX-512 gemm with the weights packed once (1.4 conv slot) */
#include "conv_gemm5.inc"
#include "conv_winograd.inc"

/* index_select and index_add (1.5) */
#include "index_kernels.inc"
/* cast and arg_reduce (1.5) */
#include "cast_kernels.inc"

/* recurrent cells: rnn_cell and rnn_cell_backward (1.5) */
#include "rnn_kernels.inc"
/* connectionist temporal classification: ctc_loss and ctc_loss_backward (1.5) */
#include "ctc_kernels.inc"
/* segment reductions of weight rows: embedding_bag and embedding_bag_backward (1.5) */
#include "embedding_bag_kernels.inc"
/* layer normalisation with an optional residual: layer_norm and layer_norm_backward (1.5) */
#include "ln_kernels.inc"

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const nnm_backend_vtable cpu_backend = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5,
    .name = "cpu",
    .version_major = 1,
    .version_minor = 10, /* 1.3: the ABI 1.4 slots (Winograd conv, fused batch norm); 1.4: index_select/index_add (ABI 1.5);
                         * 1.5: rnn_cell/rnn_cell_backward (ABI 1.5); 1.6: cast, arg_reduce, the 1.5 unary ops and binary pow;
                         * 1.7: ctc_loss/ctc_loss_backward; 1.8: set_num_threads (per-op thread counts), small
                         * gemms without OpenBLAS, the activation unary ops (RELU6 .. HARDSIGMOID_GRAD);
                         * 1.9: embedding_bag/embedding_bag_backward; 1.10: layer_norm/layer_norm_backward */
    .version_patch = 0,
    .device_type = NNM_DEVICE_CPU,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy = cpu_memcpy,
    .fill = cpu_fill,
    .gemm = cpu_gemm,
    .binary = cpu_binary,
    .unary = cpu_unary,
    .reduce = cpu_reduce,
    .log_softmax = cpu_log_softmax,
    .nll = cpu_nll,
    .nll_backward = cpu_nll_backward,
    .sgd_step = cpu_sgd_step,
    .adam_step = cpu_adam_step,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .pool = cpu_pool,
    .pool_backward = cpu_pool_backward,
    .softmax = cpu_softmax,
    .where = cpu_where,
    .conv = cpu_conv,
    .conv_backward = cpu_conv_backward,
    .batch_norm = cpu_batch_norm,
    .batch_norm_backward = cpu_batch_norm_backward,
    .index_select = cpu_index_select,
    .index_add = cpu_index_add,
    .rnn_cell = cpu_rnn_cell,
    .rnn_cell_backward = cpu_rnn_cell_backward,
    .cast = cpu_cast,
    .arg_reduce = cpu_arg_reduce,
    .ctc_loss = cpu_ctc_loss,
    .ctc_loss_backward = cpu_ctc_loss_backward,
    .set_num_threads = cpu_set_num_threads,
    .embedding_bag = cpu_embedding_bag,
    .embedding_bag_backward = cpu_embedding_bag_backward,
    .layer_norm = cpu_layer_norm,
    .layer_norm_backward = cpu_layer_norm_backward,
};

static const nnm_backend_vtable *const cpu_backends[] = {&cpu_backend};

static const nnm_plugin_desc cpu_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpu",
    .description = "CPU backend: host memory, OpenBLAS gemm, strided f32 elementwise ops, "
                   "reductions, log_softmax/nll, SGD/Adam steps, im2col and Winograd "
                   "convolution, pooling, fused batch and layer norm, fused recurrent cells",
    .n_layers = 0,
    .n_backends = 1,
    .layers = NULL,
    .backends = cpu_backends,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(cpu_plugin)
