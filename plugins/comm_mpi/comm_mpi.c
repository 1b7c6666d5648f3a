/* plugins/comm_mpi/comm_mpi.c - the "mpi" communicator: collectives over MPI
 * (OpenMPI, MPICH, ...) between the processes mpirun started.
 *
 * One worker thread per communicator makes every MPI call: it starts the
 * collectives the caller queues (MPI_Iallreduce, MPI_Ibcast, ...), drives
 * them with MPI_Test while the caller computes (the overlap DDP wants: MPI
 * progresses only inside MPI calls), and enforces the timeout. MPI is
 * initialised at MPI_THREAD_SERIALIZED by the first communicator and finalised
 * at process exit (MPI cannot be initialised twice in one process), so a
 * process may create communicators one after another.
 *
 * A dead peer never hangs us: when the oldest collective has waited longer
 * than the timeout, the worker pings every other rank on a private
 * communicator (live ranks answer from their own worker loop, whatever they
 * are waiting on) and fails every collective with NNM_E_TIMEOUT and a message
 * naming this rank and the ranks that did not answer. The communicator is then
 * broken: later collectives fail at once, and MPI is not finalised (that would
 * wait for the dead peer).
 */
#define _GNU_SOURCE /* pthread, clock_gettime, nanosleep */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "nnmod/plugin.h"

#define MSG_CAP 512
#define TAG_PING 0x6e6e
#define TAG_PONG 0x6e6f
/* Elements (or bytes) per MPI call: counts are C ints. */
#define CHUNK (1 << 30)
/* How long a timed-out rank waits for the others to answer its ping. */
#define PROBE_S 5.0

enum { K_ALLREDUCE, K_BCAST, K_ALLGATHER, K_BARRIER };
static const char *const kind_name[] = {"all-reduce", "broadcast", "all-gather", "barrier"};

struct nnm_comm_work {
    struct nnm_comm_work *next;  /* queue, then the in-flight list */
    int kind;
    void *data;                  /* all-reduce, broadcast: in place */
    const void *send;            /* all-gather */
    uint64_t count;              /* elements (all-reduce) or bytes */
    int32_t root;
    uint64_t seq;                /* collective number on this communicator */
    MPI_Request *reqs;
    int n_reqs;
    double started;              /* worker's clock when it started */
    int done;
    nnm_status status;
    char msg[MSG_CAP];
};

typedef struct mpi_state {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;         /* worker: something queued, or stop */
    pthread_cond_t done;         /* waiters: some work finished */
    nnm_comm_work *queued_head, *queued_tail; /* guarded by mu */
    int stop;                    /* guarded by mu */
    int broken;                  /* a collective failed; guarded by mu */
    char broken_msg[MSG_CAP];
    uint64_t next_seq;           /* caller side */
    int rank, world;
    double timeout_s;
    MPI_Comm comm, ping_comm;
    int init_done;               /* guarded by mu */
    nnm_status init_status;
    char init_msg[MSG_CAP];
    double waiter_seen;          /* when a caller last polled test; guarded by mu */
} mpi_state;

/* MPI is per process: initialised once, finalised at exit unless a peer died. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_initialised_by_us;
static int g_live;               /* a communicator exists */
static int g_broken;             /* a collective failed: do not finalise */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap(long ns) {
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

static void mpi_errtext(int code, char *buf, size_t cap) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", code);
    snprintf(buf, cap, "%s", s);
}

static void finalize_at_exit(void) {
    pthread_mutex_lock(&g_mu);
    int fin = g_initialised_by_us && !g_broken && !g_live;
    pthread_mutex_unlock(&g_mu);
    int finalized = 0;
    if (fin && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
}

/* 1 when a launcher describes this process as part of an MPI job. */
static int launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK",
                                       "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_PMIXP_ABORT_AGENT_PORT"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

/* ---- the worker ---------------------------------------------------------- */

static void work_finish(mpi_state *s, nnm_comm_work *w, nnm_status st, const char *msg) {
    pthread_mutex_lock(&s->mu);
    w->status = st;
    if (msg) snprintf(w->msg, sizeof w->msg, "%s", msg);
    w->done = 1;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
}

/* Starts w's MPI calls (split into int-sized chunks). */
static int work_start(mpi_state *s, nnm_comm_work *w, char *why, size_t cap) {
    uint64_t chunks = w->kind == K_BARRIER || w->kind == K_ALLGATHER
                          ? 1
                          : (w->count + CHUNK - 1) / CHUNK;
    if (chunks == 0) chunks = 1;
    w->reqs = malloc((size_t)chunks * sizeof *w->reqs);
    if (!w->reqs) {
        snprintf(why, cap, "out of memory");
        return MPI_ERR_NO_MEM;
    }
    w->n_reqs = 0;
    int rc = MPI_SUCCESS;
    for (uint64_t c = 0; c < chunks && rc == MPI_SUCCESS; c++) {
        uint64_t off = c * (uint64_t)CHUNK;
        int n = (int)(w->count - off < (uint64_t)CHUNK ? w->count - off : (uint64_t)CHUNK);
        MPI_Request *r = &w->reqs[w->n_reqs];
        switch (w->kind) {
        case K_ALLREDUCE:
            rc = MPI_Iallreduce(MPI_IN_PLACE, (float *)w->data + off, n, MPI_FLOAT, MPI_SUM,
                                s->comm, r);
            break;
        case K_BCAST:
            rc = MPI_Ibcast((char *)w->data + off, n, MPI_BYTE, w->root, s->comm, r);
            break;
        case K_ALLGATHER:
            rc = MPI_Iallgather(w->send, (int)w->count, MPI_BYTE, w->data, (int)w->count,
                                MPI_BYTE, s->comm, r);
            break;
        default:
            rc = MPI_Ibarrier(s->comm, r);
            break;
        }
        if (rc == MPI_SUCCESS) w->n_reqs++;
    }
    if (rc != MPI_SUCCESS) mpi_errtext(rc, why, cap);
    return rc;
}

/* 1 when all of w's requests completed; -1 on an MPI error (text in why). */
static int work_poll(nnm_comm_work *w, char *why, size_t cap) {
    int flag = 0;
    int rc = MPI_Testall(w->n_reqs, w->reqs, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
        mpi_errtext(rc, why, cap);
        return -1;
    }
    return flag ? 1 : 0;
}

typedef struct pinger {
    int buf;
    MPI_Request req;             /* the standing receive of pings */
    int live;
} pinger;

/* Answers pings from ranks that timed out, so they can tell we are alive. */
static void pings_serve(mpi_state *s, pinger *p) {
    if (!p->live) return;
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        if (MPI_Test(&p->req, &flag, &stt) != MPI_SUCCESS || !flag) return;
        MPI_Request sr;
        static const int pong = 1;
        if (MPI_Isend(&pong, 1, MPI_INT, stt.MPI_SOURCE, TAG_PONG, s->ping_comm, &sr) ==
            MPI_SUCCESS)
            MPI_Request_free(&sr);
        if (MPI_Irecv(&p->buf, 1, MPI_INT, MPI_ANY_SOURCE, TAG_PING, s->ping_comm, &p->req) !=
            MPI_SUCCESS) {
            p->live = 0;
            return;
        }
    }
}

/* Pings every other rank and lists in out those that do not answer within
 * PROBE_S (while answering pings ourselves). */
static void probe_peers(mpi_state *s, pinger *p, char *out, size_t cap) {
    int n = s->world;
    MPI_Request *rr = calloc((size_t)n, sizeof *rr);
    int *got = calloc((size_t)n, sizeof *got);
    int *bufs = calloc((size_t)n, sizeof *bufs);
    size_t len = 0;
    out[0] = '\0';
    if (!rr || !got || !bufs) {
        snprintf(out, cap, "unknown (out of memory while probing)");
        goto done;
    }
    static const int ping = 1;
    for (int r = 0; r < n; r++) {
        rr[r] = MPI_REQUEST_NULL;
        if (r == s->rank) {
            got[r] = 1;
            continue;
        }
        MPI_Request sr;
        if (MPI_Isend(&ping, 1, MPI_INT, r, TAG_PING, s->ping_comm, &sr) == MPI_SUCCESS)
            MPI_Request_free(&sr);
        if (MPI_Irecv(&bufs[r], 1, MPI_INT, r, TAG_PONG, s->ping_comm, &rr[r]) != MPI_SUCCESS)
            rr[r] = MPI_REQUEST_NULL;
    }
    double end = now_s() + (s->timeout_s < PROBE_S ? s->timeout_s : PROBE_S);
    for (;;) {
        int all = 1;
        for (int r = 0; r < n; r++) {
            if (got[r] || rr[r] == MPI_REQUEST_NULL) continue;
            int flag = 0;
            if (MPI_Test(&rr[r], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) got[r] = 1;
            else all = 0;
        }
        pings_serve(s, p);
        if (all || now_s() > end) break;
        nap(200000);
    }
    for (int r = 0; r < n; r++) {
        if (got[r]) continue;
        if (rr[r] != MPI_REQUEST_NULL) {
            MPI_Cancel(&rr[r]);
            MPI_Request_free(&rr[r]);
        }
        int w = snprintf(out + len, len < cap ? cap - len : 0, "%s%d", len ? ", " : "", r);
        if (w > 0) len += (size_t)w;
        if (len >= cap) break;
    }
done:
    free(rr);
    free(got);
    free(bufs);
}

/* Fails every collective in flight or queued, and breaks the communicator. */
static void fail_all(mpi_state *s, nnm_comm_work **active, nnm_status st, const char *msg) {
    pthread_mutex_lock(&s->mu);
    s->broken = 1;
    snprintf(s->broken_msg, sizeof s->broken_msg, "%s", msg);
    for (nnm_comm_work *w = *active; w; w = w->next) {
        w->status = st;
        snprintf(w->msg, sizeof w->msg, "%s", msg);
        w->done = 1;
    }
    for (nnm_comm_work *w = s->queued_head; w; w = w->next) {
        w->status = st;
        snprintf(w->msg, sizeof w->msg, "%s", msg);
        w->done = 1;
    }
    s->queued_head = s->queued_tail = NULL;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
    /* The requests of abandoned collectives are never freed: MPI may still
     * write into them. */
    *active = NULL;
    pthread_mutex_lock(&g_mu);
    g_broken = 1;
    pthread_mutex_unlock(&g_mu);
}

static void init_report(mpi_state *s, nnm_status st, const char *msg) {
    pthread_mutex_lock(&s->mu);
    s->init_status = st;
    snprintf(s->init_msg, sizeof s->init_msg, "%s", msg ? msg : "");
    s->init_done = 1;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->mu);
}

/* Control variables (MPI_T, the MPI standard's tool interface) set before
 * MPI_Init when the user left them at their defaults: an explicit setting
 * (mpirun --mca NAME V, OMPI_MCA_NAME=V, a parameter file) always wins, and
 * an MPI that has no such variable (MPICH has not these) is left alone.
 *
 * coll_libnbc_iallreduce_algorithm = 1 (ring). Open MPI's nonblocking
 * collectives (libnbc) choose a binomial tree for every MPI_Iallreduce on
 * fewer than 4 ranks or in place (which DDP's buckets are): the whole buffer
 * goes to one rank, which reduces all of it, and comes back, so the bytes
 * cross twice and one rank does the sums while the other waits. The ring
 * (reduce-scatter, then all-gather) moves each byte once in each phase and
 * shares the reductions: on 2 ranks and 22 MB it took 6.6 ms of CPU per rank
 * against 9.4 ms for the binomial tree (docs/distributed.md). */
static const struct { const char *name; int value; } g_tuning[] = {
    {"coll_libnbc_iallreduce_algorithm", 1},
};

/* 1 when it started an MPI_T session, which the caller ends after MPI_Init
 * (ending it before would reset the variables). */
static int tune_before_init(void) {
    int provided = 0;
    const char *off = getenv("NNM_MPI_NO_TUNING");
    if (off && *off && strcmp(off, "0") != 0) return 0;
    if (MPI_T_init_thread(MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) return 0;
    for (size_t i = 0; i < sizeof g_tuning / sizeof g_tuning[0]; i++) {
        int idx = -1, count = 0, cur = -1;
        MPI_T_cvar_handle h;
        if (MPI_T_cvar_get_index(g_tuning[i].name, &idx) != MPI_SUCCESS) continue;
        if (MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) != MPI_SUCCESS) continue;
        if (count == 1 && MPI_T_cvar_read(h, &cur) == MPI_SUCCESS && cur == 0)
            (void)MPI_T_cvar_write(h, &g_tuning[i].value);
        MPI_T_cvar_handle_free(&h);
    }
    return 1;
}

static int worker_init(mpi_state *s) {
    char why[MSG_CAP];
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int tuned = tune_before_init();
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (tuned) MPI_T_finalize();
        if (rc != MPI_SUCCESS) {
            mpi_errtext(rc, why, sizeof why);
            char m[MSG_CAP + 32];
            snprintf(m, sizeof m, "MPI_Init_thread failed: %s", why);
            init_report(s, NNM_E_UNSUPPORTED, m);
            return -1;
        }
        pthread_mutex_lock(&g_mu);
        if (!g_initialised_by_us) atexit(finalize_at_exit);
        g_initialised_by_us = 1;
        pthread_mutex_unlock(&g_mu);
        if (provided < MPI_THREAD_SERIALIZED) {
            init_report(s, NNM_E_UNSUPPORTED,
                        "this MPI library does not support MPI_THREAD_SERIALIZED");
            return -1;
        }
    } else {
        int finalized = 0, provided = 0;
        MPI_Finalized(&finalized);
        MPI_Query_thread(&provided);
        if (finalized) {
            init_report(s, NNM_E_STATE, "MPI was already finalised in this process");
            return -1;
        }
        pthread_mutex_lock(&g_mu);
        int ours = g_initialised_by_us;
        pthread_mutex_unlock(&g_mu);
        if (!ours && provided < MPI_THREAD_MULTIPLE) {
            init_report(s, NNM_E_UNSUPPORTED,
                        "MPI was initialised by the application below MPI_THREAD_MULTIPLE; "
                        "the mpi communicator calls MPI from its own thread (initialise with "
                        "MPI_THREAD_MULTIPLE, or let the communicator initialise MPI)");
            return -1;
        }
    }
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->ping_comm);
    if (rc != MPI_SUCCESS) {
        mpi_errtext(rc, why, sizeof why);
        char m[MSG_CAP + 32];
        snprintf(m, sizeof m, "MPI_Comm_dup failed: %s", why);
        init_report(s, NNM_E_PLUGIN, m);
        return -1;
    }
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(s->ping_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(s->comm, &s->rank);
    MPI_Comm_size(s->comm, &s->world);
    init_report(s, NNM_OK, NULL);
    return 0;
}

/* How long the worker naps between polls of the collectives in flight:
 * 20 us while a caller waits on one (it polls `test`, which notes the time)
 * and for the first 64 polls after a completion; else 200 us: a caller that
 * computes beside the collectives (DDP's backward) shares its core with
 * this thread, and each wake-up takes it from the computation (polling
 * every 20 or 50 us throughout cost bench_ddp's 2-rank rate 12-17% on the
 * 2-core development machine: docs/distributed.md). */
static long poll_ns(mpi_state *s, int idle_polls) {
    pthread_mutex_lock(&s->mu);
    double seen = s->waiter_seen;
    pthread_mutex_unlock(&s->mu);
    return now_s() - seen < 0.001 || idle_polls < 64 ? 20000 : 200000;
}

static void *worker_main(void *arg) {
    mpi_state *s = arg;
    if (worker_init(s) != 0) return NULL;
    pinger p = {0, MPI_REQUEST_NULL, 0};
    p.live = MPI_Irecv(&p.buf, 1, MPI_INT, MPI_ANY_SOURCE, TAG_PING, s->ping_comm, &p.req) ==
             MPI_SUCCESS;
    nnm_comm_work *active = NULL, *active_tail = NULL;
    int idle_polls = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->queued_head && !active) pthread_cond_wait(&s->wake, &s->mu);
        int stop = s->stop;
        nnm_comm_work *fresh = s->queued_head;
        s->queued_head = s->queued_tail = NULL;
        int broken = s->broken;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        /* Start what was queued, in order. */
        while (fresh) {
            nnm_comm_work *w = fresh;
            fresh = w->next;
            w->next = NULL;
            char why[MSG_CAP], m[MSG_CAP];
            if (broken) {
                work_finish(s, w, NNM_E_STATE, s->broken_msg);
                continue;
            }
            if (work_start(s, w, why, sizeof why) != MPI_SUCCESS) {
                snprintf(m, sizeof m, "mpi rank %d of %d: %s #%llu failed to start: %.400s",
                         s->rank, s->world, kind_name[w->kind], (unsigned long long)w->seq, why);
                w->next = active;
                active = w;
                fail_all(s, &active, NNM_E_PLUGIN, m);
                active_tail = NULL;
                broken = 1;
                continue;
            }
            w->started = now_s();
            if (active_tail) active_tail->next = w;
            else active = w;
            active_tail = w;
        }
        /* Drive what is in flight; finish the ones done. */
        int progressed = 0;
        nnm_comm_work **link = &active;
        active_tail = NULL;
        while (*link) {
            nnm_comm_work *w = *link;
            char why[MSG_CAP];
            int r = work_poll(w, why, sizeof why);
            if (r < 0) {
                char m[MSG_CAP];
                snprintf(m, sizeof m, "mpi rank %d of %d: %s #%llu failed: %.400s", s->rank,
                         s->world, kind_name[w->kind], (unsigned long long)w->seq, why);
                fail_all(s, &active, NNM_E_PLUGIN, m);
                link = &active;
                break;
            }
            if (r == 1) {
                *link = w->next;
                free(w->reqs);
                w->reqs = NULL;
                work_finish(s, w, NNM_OK, NULL);
                progressed = 1;
                continue;
            }
            active_tail = w;
            link = &w->next;
        }
        pthread_mutex_lock(&s->mu);
        broken = s->broken;
        pthread_mutex_unlock(&s->mu);
        /* A broken communicator makes no MPI call again: progress could
         * write into buffers its callers have freed since. */
        if (broken) {
            p.live = 0;
            continue;
        }
        pings_serve(s, &p);
        /* The oldest collective waited too long: find out who is missing. */
        if (active && now_s() - active->started > s->timeout_s) {
            char missing[256], m[MSG_CAP];
            probe_peers(s, &p, missing, sizeof missing);
            if (missing[0])
                snprintf(m, sizeof m,
                         "mpi rank %d of %d: %s #%llu timed out after %.0f s; rank(s) %s did "
                         "not answer (dead or hung)",
                         s->rank, s->world, kind_name[active->kind],
                         (unsigned long long)active->seq, s->timeout_s, missing);
            else
                snprintf(m, sizeof m,
                         "mpi rank %d of %d: %s #%llu timed out after %.0f s; every rank "
                         "answers, so one is stuck elsewhere or the ranks started different "
                         "collectives",
                         s->rank, s->world, kind_name[active->kind],
                         (unsigned long long)active->seq, s->timeout_s);
            fail_all(s, &active, NNM_E_TIMEOUT, m);
            active_tail = NULL;
        }
        /* Poll fast while collectives move, then back off so the worker
         * does not take a core from the computation beside it. */
        if (progressed) idle_polls = 0;
        else if (active) nap(poll_ns(s, ++idle_polls));
    }
    pthread_mutex_lock(&s->mu);
    if (s->broken) p.live = 0;
    pthread_mutex_unlock(&s->mu);
    if (p.live) {
        MPI_Cancel(&p.req);
        MPI_Wait(&p.req, MPI_STATUS_IGNORE);
    }
    pthread_mutex_lock(&s->mu);
    int broken = s->broken;
    pthread_mutex_unlock(&s->mu);
    if (!broken) { /* freeing is collective in spirit: not with a dead peer */
        MPI_Comm_free(&s->ping_comm);
        MPI_Comm_free(&s->comm);
    }
    return NULL;
}

/* ---- the vtable ------------------------------------------------------------ */

static double env_timeout(double dflt) {
    const char *t = getenv("NNM_COMM_TIMEOUT");
    if (!t || !*t) return dflt;
    char *end;
    double v = strtod(t, &end);
    return end != t && *end == '\0' && v > 0 ? v : dflt;
}

static nnm_status mpi_init(nnm_env *env, nnm_comm_init_args *args, void **state) {
    const nnm_host *h = env->host;
    *state = NULL;
    if (!args || args->struct_size < sizeof(nnm_comm_init_args))
        return h->set_error(env, NNM_E_INVALID, "mpi: init args missing or too small");
    if (!launched_by_mpi())
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "mpi: this process was not started by an MPI launcher (no "
                            "OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the environment): "
                            "run it under mpirun -np N");
    pthread_mutex_lock(&g_mu);
    if (g_live || g_broken) {
        int broken = g_broken;
        pthread_mutex_unlock(&g_mu);
        return h->set_error(env, NNM_E_STATE,
                            broken ? "mpi: an earlier communicator of this process failed; MPI "
                                     "cannot be used again in it"
                                   : "mpi: this process already has a live mpi communicator "
                                     "(one at a time)");
    }
    g_live = 1;
    pthread_mutex_unlock(&g_mu);

    mpi_state *s = calloc(1, sizeof *s);
    if (!s) {
        pthread_mutex_lock(&g_mu);
        g_live = 0;
        pthread_mutex_unlock(&g_mu);
        return h->set_error(env, NNM_E_NOMEM, "mpi: out of memory");
    }
    s->timeout_s = env_timeout(args->timeout_s > 0 ? args->timeout_s : 300.0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->done, NULL);
    if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
        pthread_cond_destroy(&s->done);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        pthread_mutex_lock(&g_mu);
        g_live = 0;
        pthread_mutex_unlock(&g_mu);
        return h->set_error(env, NNM_E_PLUGIN, "mpi: cannot start the communicator thread");
    }
    pthread_mutex_lock(&s->mu);
    while (!s->init_done) pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->init_status != NNM_OK) {
        nnm_status st = s->init_status;
        pthread_join(s->thread, NULL);
        char msg[MSG_CAP];
        snprintf(msg, sizeof msg, "%s", s->init_msg);
        pthread_cond_destroy(&s->done);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        pthread_mutex_lock(&g_mu);
        g_live = 0;
        pthread_mutex_unlock(&g_mu);
        return h->set_error(env, st, "mpi: %s", msg);
    }
    args->rank = s->rank;
    args->world_size = s->world;
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    args->device_id = lr ? atoi(lr) : 0;
    *state = s;
    return NNM_OK;
}

static void mpi_shutdown(void *state) {
    mpi_state *s = state;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
    pthread_mutex_lock(&g_mu);
    g_live = 0;
    pthread_mutex_unlock(&g_mu);
}

static nnm_status enqueue(nnm_env *env, mpi_state *s, nnm_comm_work *w, nnm_comm_work **out) {
    pthread_mutex_lock(&s->mu);
    if (s->broken) {
        char msg[MSG_CAP];
        snprintf(msg, sizeof msg, "%s", s->broken_msg);
        pthread_mutex_unlock(&s->mu);
        free(w);
        return env->host->set_error(env, NNM_E_STATE, "communicator failed earlier: %s", msg);
    }
    w->seq = ++s->next_seq;
    if (s->queued_tail) s->queued_tail->next = w;
    else s->queued_head = w;
    s->queued_tail = w;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    *out = w;
    return NNM_OK;
}

static nnm_comm_work *work_new(nnm_env *env, int kind) {
    nnm_comm_work *w = calloc(1, sizeof *w);
    if (!w) env->host->set_error(env, NNM_E_NOMEM, "mpi: out of memory");
    else w->kind = kind;
    return w;
}

static nnm_status mpi_all_reduce_start(nnm_env *env, void *state, float *data, int64_t n,
                                       nnm_comm_work **work) {
    *work = NULL;
    if (n < 0 || (n > 0 && !data))
        return env->host->set_error(env, NNM_E_INVALID, "mpi: all-reduce of %lld floats at %p",
                                    (long long)n, (void *)data);
    nnm_comm_work *w = work_new(env, K_ALLREDUCE);
    if (!w) return NNM_E_NOMEM;
    w->data = data;
    w->count = (uint64_t)n;
    mpi_state *s = state;
    if (s->world == 1) { /* the sum over one rank, in place: nothing to do */
        pthread_mutex_lock(&s->mu);
        int broken = s->broken;
        pthread_mutex_unlock(&s->mu);
        if (!broken) {
            w->seq = ++s->next_seq;
            w->done = 1;
            *work = w;
            return NNM_OK;
        }
    }
    return enqueue(env, state, w, work);
}

static nnm_status mpi_broadcast_start(nnm_env *env, void *state, void *data, uint64_t bytes,
                                      int32_t root, nnm_comm_work **work) {
    mpi_state *s = state;
    *work = NULL;
    if (root < 0 || root >= s->world)
        return env->host->set_error(env, NNM_E_INVALID, "mpi: broadcast root %d is not a rank (0..%d)",
                                    root, s->world - 1);
    if (bytes > 0 && !data) return env->host->set_error(env, NNM_E_INVALID, "mpi: broadcast of NULL");
    nnm_comm_work *w = work_new(env, K_BCAST);
    if (!w) return NNM_E_NOMEM;
    w->data = data;
    w->count = bytes;
    w->root = root;
    return enqueue(env, s, w, work);
}

static nnm_status mpi_all_gather_start(nnm_env *env, void *state, const void *send, void *recv,
                                       uint64_t bytes, nnm_comm_work **work) {
    *work = NULL;
    if (bytes > INT_MAX)
        return env->host->set_error(env, NNM_E_LIMIT, "mpi: all-gather of %llu bytes per rank (at most %d)",
                                    (unsigned long long)bytes, INT_MAX);
    if (bytes > 0 && (!send || !recv))
        return env->host->set_error(env, NNM_E_INVALID, "mpi: all-gather with a NULL buffer");
    nnm_comm_work *w = work_new(env, K_ALLGATHER);
    if (!w) return NNM_E_NOMEM;
    w->send = send;
    w->data = recv;
    w->count = bytes;
    return enqueue(env, state, w, work);
}

static nnm_status mpi_barrier_start(nnm_env *env, void *state, nnm_comm_work **work) {
    *work = NULL;
    nnm_comm_work *w = work_new(env, K_BARRIER);
    if (!w) return NNM_E_NOMEM;
    return enqueue(env, state, w, work);
}

static nnm_status mpi_wait(nnm_env *env, void *state, nnm_comm_work *w) {
    mpi_state *s = state;
    if (!w) return env->host->set_error(env, NNM_E_INVALID, "mpi: wait on NULL work");
    /* The worker enforces the timeout; this deadline only guards against a
     * worker stuck inside an MPI call that never returns. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(s->timeout_s + 2 * PROBE_S + 30);
    int stuck = 0;
    pthread_mutex_lock(&s->mu);
    while (!w->done && !stuck)
        if (pthread_cond_timedwait(&s->done, &s->mu, &dl) == ETIMEDOUT) stuck = 1;
    if (stuck && !w->done) {
        s->broken = 1;
        snprintf(s->broken_msg, sizeof s->broken_msg,
                 "mpi rank %d of %d: the communicator thread did not return from MPI", s->rank,
                 s->world);
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&g_mu);
        g_broken = 1;
        pthread_mutex_unlock(&g_mu);
        return env->host->set_error(env, NNM_E_TIMEOUT,
                                    "mpi rank %d of %d: %s #%llu: no answer from MPI after %.0f s",
                                    s->rank, s->world, kind_name[w->kind],
                                    (unsigned long long)w->seq, s->timeout_s);
        /* w stays with the worker, which may still finish it: leaked on purpose */
    }
    pthread_mutex_unlock(&s->mu);
    nnm_status st = w->status;
    if (st != NNM_OK) env->host->set_error(env, st, "%s", w->msg);
    free(w->reqs);
    free(w);
    return st;
}

static int mpi_test(void *state, nnm_comm_work *w) {
    mpi_state *s = state;
    double now = now_s();
    pthread_mutex_lock(&s->mu);
    s->waiter_seen = now;
    int d = w->done;
    pthread_mutex_unlock(&s->mu);
    return d;
}

static const nnm_comm_vtable mpi_vt = {
    .struct_size = sizeof(nnm_comm_vtable),
    .name = "mpi",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .device_type = NNM_DEVICE_CPU,
    .init = mpi_init,
    .shutdown = mpi_shutdown,
    .all_reduce_start = mpi_all_reduce_start,
    .broadcast_start = mpi_broadcast_start,
    .all_gather_start = mpi_all_gather_start,
    .barrier_start = mpi_barrier_start,
    .wait = mpi_wait,
    .test = mpi_test,
};

static const nnm_comm_vtable *const comms[] = {&mpi_vt};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "comm_mpi",
    .description = "collectives over MPI (all-reduce, broadcast, all-gather, barrier)",
    .n_comms = 1,
    .comms = comms,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(desc)
