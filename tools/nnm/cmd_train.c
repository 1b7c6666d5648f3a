/* tools/nnm/cmd_train.c - `nnm train MANIFEST`: build the manifest's model and
 * train it on a dataset, evaluating on the test split after every epoch and
 * checkpointing (best and last) atomically. Settings come from the manifest's
 * "training" section, overridden by flags (train_common.c). Reference:
 * docs/training.md. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "trace.h"
#include "train_common.h"

void usage_train(FILE *f) {
    fputs("usage: nnm train [options] MANIFEST\n"
          "\n"
          "Builds the manifest's model and trains it: every epoch a seeded shuffle of the\n"
          "training data, then an evaluation on the test data (eval mode, gradients off)\n"
          "and, with --out, an atomic checkpoint (model, optimizer, epoch, metrics):\n"
          "DIR/last.safetensors always, DIR/best.safetensors when the test accuracy (or,\n"
          "without classes, the test loss) is the best so far. The last line printed is\n"
          "'test accuracy: NN.NN%' of the final epoch.\n"
          "\n"
          "options:\n"
          "  --out DIR             write checkpoints to DIR (created if missing)\n"
          "  --resume CHECKPOINT   continue a run from a checkpoint it wrote: the next\n"
          "                        epoch proceeds exactly as in an uninterrupted run\n"
          "  --trace FILE          write a Chrome/Perfetto trace (chrome://tracing,\n"
          "                        ui.perfetto.dev): a span per module forward and per\n"
          "                        module backward, nested, named by module path\n"
          "  --threads N           intra-op threads (nnm_ctx_set_num_threads; default:\n"
          "                        the cores, or NNM_NUM_THREADS / OMP_NUM_THREADS /\n"
          "                        OPENBLAS_NUM_THREADS; with --ddp, shared between\n"
          "                        the ranks on this host); each op decides by its\n"
          "                        size how many it uses\n"
          "  --limit N             train on the first N training samples only\n"
          "  --test-limit N        evaluate on the first N test samples only\n"
          "  -q, --quiet           print only the final line\n"
          "  --device DEV          train on cpu (default), cuda or cuda:N (also \"device\"\n"
          "                        in the training section): the model, the optimizer\n"
          "                        state and each batch live there; a machine without\n"
          "                        the device fails before anything is read or written\n"
          "  --ddp COMM            data-parallel over the comm plugin COMM (mpi, nccl):\n"
          "                        each rank trains on its shard of every epoch, the\n"
          "                        gradients are averaged (docs/distributed.md); rank 0\n"
          "                        alone prints, evaluates and writes checkpoints. The\n"
          "                        default is mpi when started by mpirun with 2+ ranks;\n"
          "                        --ddp none turns it off\n"
          "  --plugins DIR         also load the plugins in DIR (repeatable)\n"
          "  -h, --help            show this help\n"
          "\n",
          f);
    train_params_usage(f);
    fputs("\n"
          "On a terminal a progress bar shows epoch, step/steps, loss, samples/s and the\n"
          "time left; otherwise one plain line per epoch.\n"
          "\n"
          "exit status: 0 success, 1 failure, 2 usage error\n",
          f);
}

/* ---- progress -------------------------------------------------------------- */

typedef struct progress {
    int tty, quiet;
    uint64_t start, last_draw;
} progress;

/* mkdir -p: --out runs/fashion_mlp works in a fresh clone without runs/.
 * 0, or -1 with errno set (an existing non-directory is ENOTDIR). */
static int make_dirs(const char *path) {
    char p[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
        p[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static double seconds(uint64_t ns) { return (double)ns / 1e9; }

/* Below this much wall time a samples/s figure says more about the clock,
 * the first step's warm-up and the scheduler than about the training (a
 * 4-sample epoch in 0.2 ms "ran" 20,000 samples/s): no rate is shown. */
#define TRAIN_RATE_MIN_S 0.05

/* CPU time of the process (all its threads): on a loaded machine, what the
 * work cost, whatever the wall clock says. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 359999) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%d:%02d", t / 60, t % 60);
}

static void progress_draw(progress *pg, int64_t epoch, int64_t epochs, int64_t step,
                          int64_t steps, double loss, int64_t samples, int force) {
    if (pg->quiet || !pg->tty) return;
    uint64_t now = trace_now();
    if (!force && now - pg->last_draw < 100000000u) return; /* 10 redraws a second at most */
    pg->last_draw = now;
    double el = seconds(now - pg->start);
    char rate[32] = "-";
    if (el >= TRAIN_RATE_MIN_S) snprintf(rate, sizeof rate, "%.0f", (double)samples / el);
    char eta[32];
    fmt_time(eta, sizeof eta, step ? el * (double)(steps - step) / (double)step : 0);
    const int width = 24;
    int fill = steps ? (int)(width * step / steps) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stdout, "\repoch %" PRId64 "/%" PRId64 " [%s] %" PRId64 "/%" PRId64
                    " loss %.4f %s samples/s ETA %s  ",
            epoch, epochs, bar, step, steps, loss, rate, eta);
    fflush(stdout);
}

/* ---- checkpoints ------------------------------------------------------------ */

static int write_checkpoint(nnm_ctx *ctx, const char *cmd, const char *dir, const char *name,
                            nnm_module *model, nnm_optim *opt, const nnm_manifest *mf,
                            int64_t epoch, double train_loss, double test_loss, double test_acc,
                            double best, int64_t best_epoch, const train_params *tp) {
    char path[TRAIN_MAX_PATH + 32], v[9][40];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(v[0], sizeof v[0], "%" PRId64, epoch);
    snprintf(v[1], sizeof v[1], "%.9g", train_loss);
    snprintf(v[2], sizeof v[2], "%.9g", test_loss);
    snprintf(v[3], sizeof v[3], "%.9g", test_acc);
    snprintf(v[4], sizeof v[4], "%.17g", best);
    snprintf(v[5], sizeof v[5], "%" PRId64, best_epoch);
    char sv[32];
    snprintf(sv, sizeof sv, "%" PRIu64, tp->seed);
    /* the input transform, so eval and predict feed the model what it saw */
    snprintf(v[6], sizeof v[6], "%.17g", tp->scale);
    snprintf(v[7], sizeof v[7], "%.17g", tp->normalize ? tp->mean : 0.0);
    snprintf(v[8], sizeof v[8], "%.17g", tp->normalize ? tp->std : 1.0);
    nnm_kv meta[] = {{"epoch", v[0]},         {"train_loss", v[1]}, {"test_loss", v[2]},
                     {"test_accuracy", v[3]}, {"best_metric", v[4]}, {"best_epoch", v[5]},
                     {"seed", sv},            {"input_scale", v[6]}, {"input_mean", v[7]},
                     {"input_std", v[8]}};
    nnm_status s = nnm_checkpoint_save(path, model, opt, mf, sizeof meta / sizeof meta[0], meta);
    return s == NNM_OK ? 0 : cli_fail(cmd, ctx, s);
}

/* Reads the epoch count and best metric a checkpoint recorded, and refuses
 * one that another manifest or seed made: the resumed run would silently
 * train another model, or replay another data order. Every number is text
 * from a file: range-checked, and a bad one refused by its key (an epoch of
 * 2^63 would otherwise count from a negative epoch forever). */
static int read_resume_meta(nnm_ctx *ctx, const char *cmd, const char *path, const nnm_manifest *mf,
                            uint64_t seed, int64_t *epoch, double *best, int64_t *best_epoch) {
    char want[65];
    nnm_status s = nnm_manifest_hash(mf, want);
    if (s) return cli_fail(cmd, ctx, s);
    nnm_safetensors *st = NULL;
    if ((s = nnm_safetensors_open(ctx, path, &st))) return cli_fail(cmd, ctx, s);
    int have = 0, have_seed = 0, have_best = 0, have_best_epoch = 0, r = 0;
    uint64_t ck_seed = 0, u = 0;
    char ck_hash[65] = "";
    for (uint32_t i = 0; !r && i < nnm_safetensors_metadata_count(st); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &v) != NNM_OK) continue;
        if (!strcmp(k, "epoch") || !strcmp(k, "best_epoch")) {
            if (cli_parse_u64(v, &u) || u > (uint64_t)TRAIN_MAX_EPOCHS)
                r = cli_failf(cmd, "%s: metadata '%s' is '%.40s': expected an epoch count from 0 "
                              "to 2^40", path, k, v);
            else if (k[0] == 'e')
                *epoch = (int64_t)u, have = 1;
            else
                *best_epoch = (int64_t)u, have_best_epoch = 1;
        } else if (!strcmp(k, "best_metric")) {
            /* an accuracy in [0, 1], or minus a loss; -inf before any epoch */
            double x;
            char *end = NULL;
            x = strtod(v, &end);
            if (!v[0] || *end || isnan(x) || x > 1 || x == INFINITY)
                r = cli_failf(cmd, "%s: metadata 'best_metric' is '%.40s': expected an accuracy "
                              "(at most 1) or minus a loss", path, v);
            else
                *best = x, have_best = 1;
        } else if (!strcmp(k, "seed")) {
            if (cli_parse_u64(v, &ck_seed))
                r = cli_failf(cmd, "%s: metadata 'seed' is '%.40s': expected a whole number from "
                              "0 to 2^64 - 1", path, v);
            else
                have_seed = 1;
        } else if (!strcmp(k, "nnmod_manifest_sha256")) {
            snprintf(ck_hash, sizeof ck_hash, "%s", v);
        }
    }
    nnm_safetensors_close(st);
    if (r) return r;
    if (!have)
        r = cli_failf(cmd, "%s: not a checkpoint of nnm train (no 'epoch' in its metadata)", path);
    else if (have_best_epoch && *best_epoch > *epoch)
        r = cli_failf(cmd, "%s: metadata 'best_epoch' %" PRId64 " is after 'epoch' %" PRId64, path,
                      *best_epoch, *epoch);
    else if (have_best && isinf(*best) && *epoch > 0 && *best_epoch > 0)
        r = cli_failf(cmd, "%s: metadata 'best_metric' is -inf after %" PRId64 " epoch(s)", path,
                      *epoch);
    else if (ck_hash[0] && strcmp(ck_hash, want) != 0)
        r = cli_failf(cmd,
                      "%s: written by another manifest (sha256 %.12s...; this one is %.12s...): the "
                      "model or its training section changed since; resume with the manifest that "
                      "trained it",
                      path, ck_hash, want);
    else if (have_seed && ck_seed != seed)
        r = cli_failf(cmd,
                      "%s: trained with seed %" PRIu64 ", this run has seed %" PRIu64
                      ": the data order would differ (pass --seed %" PRIu64 ")",
                      path, ck_seed, seed, ck_seed);
    return r;
}

/* ---- data parallel ------------------------------------------------------------ */

/* The comm to use: --ddp, else "mpi" when an MPI launcher started 2+ ranks. */
static const char *ddp_choice(const char *flag) {
    if (flag) return strcmp(flag, "none") ? flag : NULL;
    const char *w = getenv("OMPI_COMM_WORLD_SIZE");
    if (!w) w = getenv("PMI_SIZE");
    return w && atoi(w) > 1 ? "mpi" : NULL;
}

/* Sums n doubles over the ranks (as f32: for the printed train loss). */
static nnm_status ddp_sum(nnm_ctx *ctx, nnm_comm *comm, double *v, int n) {
    float f[4];
    int64_t shape[1] = {n};
    for (int i = 0; i < n; i++) f[i] = (float)v[i];
    nnm_tensor *t = NULL;
    nnm_status s = nnm_tensor_from_f32(ctx, 1, shape, f, &t);
    if (!s) s = nnm_comm_all_reduce(comm, t);
    if (!s) s = nnm_tensor_to_f32(t, f, (size_t)n);
    nnm_tensor_release(t);
    for (int i = 0; !s && i < n; i++) v[i] = f[i];
    return s;
}

/* ---- the command ------------------------------------------------------------- */

static double epoch_lr(const train_params *p, double base, int64_t epoch) {
    if (!strcmp(p->schedule, "step"))
        return base * pow(p->gamma, (double)(epoch / p->step_size));
    if (!strcmp(p->schedule, "cosine"))
        return p->min_lr +
               (base - p->min_lr) * (1 + cos(3.14159265358979323846 * (double)epoch /
                                             (double)p->epochs)) / 2;
    return base;
}

/* The dropout stream of epoch e: a function of (seed, e) alone, so a resumed
 * run replays it. */
static uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
    return (seed ^ 0x7472616e6e6d6f64ull) + 0x9e3779b97f4a7c15ull * (uint64_t)(epoch + 1);
}

int cmd_train(cli_env *env, int argc, char **argv) {
    static const char *cmd = "train";
    enum { OPT_OUT, OPT_RESUME, OPT_TRACE, OPT_THREADS, OPT_LIMIT, OPT_TEST_LIMIT, OPT_QUIET,
           OPT_DDP, OPT_PARAMS };
    cli_opt opts[64];
    static const cli_opt own[] = {{"out", 0, 1, OPT_OUT},         {"resume", 0, 1, OPT_RESUME},
                                  {"trace", 0, 1, OPT_TRACE},     {"threads", 0, 1, OPT_THREADS},
                                  {"limit", 0, 1, OPT_LIMIT},     {"test-limit", 0, 1, OPT_TEST_LIMIT},
                                  {"quiet", 'q', 0, OPT_QUIET},   {"ddp", 0, 1, OPT_DDP}};
    size_t n_own = sizeof own / sizeof own[0], n_par = 0;
    const cli_opt *par = train_params_opts(OPT_PARAMS, &n_par);
    memcpy(opts, own, sizeof own);
    memcpy(opts + n_own, par, (n_par + 1) * sizeof *par);

    /* Flags are applied after the manifest's section: keep them aside. */
    const char *path = NULL, *out_dir = NULL, *resume = NULL, *trace_path = NULL, *ddp_flag = NULL;
    uint64_t threads = 0, limit = 0, test_limit = 0;
    int quiet = 0, r;
    int flag_ids[256];
    const char *flag_vals[256];
    int n_flags = 0;
    cli_parser p;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_train(stdout); return CLI_EXIT_OK;
        case OPT_OUT: out_dir = p.arg; break;
        case OPT_RESUME: resume = p.arg; break;
        case OPT_TRACE: trace_path = p.arg; break;
        case OPT_THREADS:
            if (cli_parse_u64(p.arg, &threads) || threads < 1 || threads > 1024)
                return cli_usage(cmd, "--threads: expected 1 to 1024, got '%s'", p.arg);
            break;
        case OPT_LIMIT:
        case OPT_TEST_LIMIT:
            if (cli_parse_u64(p.arg, r == OPT_LIMIT ? &limit : &test_limit) ||
                (r == OPT_LIMIT ? limit : test_limit) < 1)
                return cli_usage(cmd, "--%s: expected a number >= 1, got '%s'",
                                 r == OPT_LIMIT ? "limit" : "test-limit", p.arg);
            break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_DDP: ddp_flag = p.arg; break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default:
            if (r >= OPT_PARAMS && n_flags < 256) {
                flag_ids[n_flags] = r;
                flag_vals[n_flags++] = p.arg;
                break;
            }
            return cli_usage(cmd, "too many options");
        }
    }
    if (!path) return cli_usage(cmd, "missing MANIFEST");

    /* OpenBLAS reads its thread count when the cpu backend loads it, which
     * happens when the context discovers the plugins: set it first. */
    if (threads) {
        char tv[16];
        snprintf(tv, sizeof tv, "%" PRIu64, threads);
        setenv("OPENBLAS_NUM_THREADS", tv, 1);
        setenv("OMP_NUM_THREADS", tv, 1);
    }

    /* The seed comes from the settings, which come from the manifest: read
     * it once to learn them, then build with the seed. */
    train_params tp;
    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    /* ... and the context's count, which the cpu backend applies per op and
     * size (small gemms on one thread, Winograd's chunks on N) */
    nnm_status tst = threads ? nnm_ctx_set_num_threads(ctx, (int32_t)threads) : NNM_OK;
    if (tst) {
        int rc = cli_fail(cmd, ctx, tst);
        nnm_ctx_free(ctx);
        return rc;
    }
    nnm_manifest *mf = NULL;
    nnm_module *model = NULL, *loss = NULL;
    nnm_dataset *train_ds = NULL, *test_ds = NULL;
    nnm_loader *train_ld = NULL, *test_ld = NULL;
    nnm_optim *opt = NULL;
    trace *tr = NULL;
    nnm_comm *comm = NULL;
    nnm_ddp *ddp = NULL;
    int rank = 0, world = 1;
    const char *ddp_comm = ddp_choice(ddp_flag);
    r = CLI_EXIT_FAIL;
    if (cli_manifest_open(ctx, cmd, path, 0, &mf, NULL)) goto done;
    if (train_params_init(&tp, cmd, path, mf)) goto done;
    for (int i = 0; i < n_flags; i++) {
        int fr = train_params_flag(&tp, cmd, par[flag_ids[i] - OPT_PARAMS].name, flag_vals[i]);
        if (fr) {
            r = CLI_EXIT_USAGE;
            goto done;
        }
    }
    nnm_status s;
    if (ddp_comm) {
        /* Join first: every rank reads its shard of each epoch. */
        if ((s = nnm_comm_new(ctx, ddp_comm, NULL, &comm))) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        rank = nnm_comm_rank(comm);
        world = nnm_comm_world_size(comm);
        if (!threads) {
            /* the default (the cores) shared between this host's ranks */
            const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
            long local = ls ? strtol(ls, NULL, 10) : world;
            if (local < 1) local = world;
            int32_t share = nnm_ctx_num_threads(ctx) / (int32_t)local;
            (void)nnm_ctx_set_num_threads(ctx, share < 1 ? 1 : share);
        }
        if (rank != 0) quiet = 1; /* rank 0 alone prints */
    }
    if (comm && nnm_comm_device(comm).type != NNM_DEVICE_CPU)
        tp.device = nnm_comm_device(comm); /* nccl: the GPU this rank was given */
    nnm_ctx_manual_seed(ctx, tp.seed);
    s = nnm_manifest_build(mf, 0, &model);
    if (s) {
        r = cli_fail_file(cmd, path, ctx, s);
        goto done;
    }
    /* Before the data is read or anything written: a machine without the
     * device fails here with the backend's message. The optimizer is made
     * after, so its state lives there too. */
    if (train_model_to_device(ctx, cmd, &tp, model)) goto done;

    /* Data, normalisation from the training split, loaders. */
    if (train_open_data(ctx, cmd, &tp, &tp.train, &train_ds)) goto done;
    if (train_open_data(ctx, cmd, &tp, &tp.test, &test_ds)) goto done;
    if (limit) nnm_dataset_limit(train_ds, (int64_t)limit);
    if (test_limit) nnm_dataset_limit(test_ds, (int64_t)test_limit);
    if (train_fill_stats(ctx, cmd, &tp, train_ds)) goto done;
    nnm_loader_options lo = train_loader_options(&tp, 1);
    lo.rank = (uint32_t)rank;
    lo.world_size = (uint32_t)world;
    if ((s = nnm_loader_new(train_ds, &lo, &train_ld))) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    lo = train_loader_options(&tp, 0);
    if ((s = nnm_loader_new(test_ds, &lo, &test_ld))) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }

    /* Fit: before the first step, so a wrong manifest costs nothing. */
    if (train_make_loss(ctx, cmd, &tp, &loss)) goto done;
    int64_t classes = 0, test_classes = 0;
    if (train_check_fit(ctx, cmd, &tp, model, loss, train_ds, "training", &classes)) goto done;
    if (train_check_fit(ctx, cmd, &tp, model, loss, test_ds, "test", &test_classes)) goto done;

    /* The optimizer. */
    int adam = strcmp(tp.optimizer, "sgd") != 0, adamw = !strcmp(tp.optimizer, "adamw");
    double base_lr = tp.lr >= 0 ? tp.lr : adam ? 0.001 : 0.01;
    double wd = tp.weight_decay >= 0 ? tp.weight_decay : adamw ? 0.01 : 0.0;
    if (adam) {
        nnm_adam_options o = {sizeof o, tp.amsgrad, adamw, 0, base_lr, tp.beta1, tp.beta2, tp.eps, wd};
        s = nnm_optim_adam_new(model, &o, &opt);
    } else {
        nnm_sgd_options o = {sizeof o, tp.nesterov, base_lr, tp.momentum, tp.dampening, wd};
        s = nnm_optim_sgd_new(model, &o, &opt);
    }
    if (s) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }

    int64_t first_epoch = 0, best_epoch = 0;
    double best = -INFINITY; /* accuracy, or minus the loss without classes */
    if (resume) {
        if (read_resume_meta(ctx, cmd, resume, mf, tp.seed, &first_epoch, &best, &best_epoch)) goto done;
        if ((s = nnm_checkpoint_load(resume, model, opt))) {
            r = cli_fail_file(cmd, resume, ctx, s);
            goto done;
        }
        if (first_epoch > tp.epochs) {
            r = cli_failf(cmd, "%s: metadata 'epoch': the checkpoint is after epoch %" PRId64
                          ", past --epochs %" PRId64,
                          resume, first_epoch, tp.epochs);
            goto done;
        }
    }
    if (ddp_comm && (s = nnm_ddp_new(model, comm, NULL, &ddp))) { /* after a resume: rank 0's weights */
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    if (rank != 0) out_dir = NULL, trace_path = NULL; /* rank 0 alone writes */
    if (out_dir && make_dirs(out_dir) != 0) {
        r = cli_failf(cmd, "%s: cannot create the directory: %s", out_dir, strerror(errno));
        goto done;
    }
    if (trace_path) {
        if (!(tr = trace_open(ctx, cmd, trace_path))) goto done;
        if (trace_watch_backward(tr, model)) goto done;
    }

    progress pg = {isatty(STDOUT_FILENO) && !ddp, quiet, 0, 0}; /* mpirun gives ranks a pty */
    const int64_t steps = nnm_loader_batch_count(train_ld);
    eval_result ev = {0, -1, 0, 0};
    int64_t n_skipped = 0; /* batches whose every target is ignored */
    if (!quiet) {
        nnm_dataset_info ti = {sizeof ti}, si = {sizeof si};
        nnm_dataset_info_get(train_ds, &ti);
        nnm_dataset_info_get(test_ds, &si);
        char shown[CLI_TEXT_CAP];
        printf("model: %s (%" PRId64 " parameters)\n", cli_text(path, shown, sizeof shown, 0),
               nnm_module_num_params(model));
        printf("data: %" PRId64 " training samples, %" PRId64 " test samples", ti.n_samples,
               si.n_samples);
        if (classes) printf(", %" PRId64 " classes", ti.n_classes);
        printf("\n");
        if (ti.n_ignored || si.n_ignored)
            printf("ignored: %" PRId64 " training and %" PRId64 " test samples have target %d "
                   "(ignore_index): in neither the loss nor the accuracy\n",
                   ti.n_ignored, si.n_ignored, TRAIN_IGNORE_INDEX);
        char dv[32];
        printf("settings: %s lr %g, batch %" PRId64 ", %" PRId64 " epochs, %s, seed %" PRIu64
               "%s%s%s\n",
               tp.optimizer, base_lr, tp.batch_size, tp.epochs, tp.loss, tp.seed,
               resume ? ", resumed" : "", tp.device.type != NNM_DEVICE_CPU ? ", device " : "",
               tp.device.type != NNM_DEVICE_CPU ? cli_device_str(tp.device, dv, sizeof dv) : "");
        if (ddp)
            printf("data parallel: %d ranks over %s, global batch %d x %" PRId64 " = %" PRId64
                   " (batch %" PRId64 " per rank)\n",
                   world, cli_text(ddp_comm, shown, sizeof shown, 0), world, tp.batch_size, (int64_t)world * tp.batch_size,
                   tp.batch_size);
        if (tp.normalize) printf("normalisation: mean %.6g, std %.6g\n", tp.mean, tp.std);
        fflush(stdout);
    }
    for (int64_t epoch = first_epoch; epoch < tp.epochs; epoch++) {
        double lr = epoch_lr(&tp, base_lr, epoch);
        for (uint32_t g = 0; g < nnm_optim_group_count(opt); g++) nnm_optim_set_lr(opt, g, lr);
        nnm_ctx_manual_seed(ctx, epoch_seed(tp.seed, epoch));
        nnm_loader_set_epoch(train_ld, (uint64_t)epoch);
        nnm_module_train(model, 1);
        pg.start = pg.last_draw = trace_now();
        const double cpu0 = cpu_seconds();
        double loss_sum = 0;
        int64_t seen = 0, seen_counted = 0, step = 0;
        for (;;) {
            nnm_tensor *x = NULL, *y = NULL, *yd = NULL, *out = NULL, *l = NULL;
            uint64_t t0 = tr ? trace_now() : 0;
            s = nnm_loader_next(train_ld, &x, &y);
            if (!s && !x) break;
            if (!s && tp.device.type != NNM_DEVICE_CPU) { /* x to the model's device */
                nnm_tensor *xd = NULL;
                s = train_to_device(tp.device, x, &xd);
                nnm_tensor_release(x);
                x = xd;
            }
            uint64_t t1 = tr ? trace_now() : 0, t2 = 0, t3 = 0;
            if (tr) {
                trace_span(tr, "data", "loop", t0, t1);
                /* so the first layer's backward span has an end (its input's
                 * gradient); only when tracing */
                if (!s) s = nnm_tensor_set_requires_grad(x, 1);
            }
            int64_t counted = 0;
            if (!s && classes > 0) { /* class targets: are any left once ignored ones go? */
                const nnm_tensor_desc *ydesc = nnm_tensor_desc_get(y);
                const int64_t *t = ydesc->data;
                for (int64_t i = 0; i < ydesc->shape[0]; i++) counted += t[i] != TRAIN_IGNORE_INDEX;
                if (!counted && !ddp) { /* the mean loss is 0/0: nothing to learn from */
                    n_skipped++;
                    nnm_tensor_release(x);
                    nnm_tensor_release(y);
                    step++;
                    continue;
                }
            }
            /* y stays on the host (counted above); the loss gets yd */
            if (!s) s = train_to_device(tp.device, y, &yd);
            if (!s) s = nnm_optim_zero_grad(opt);
            if (!s) s = ddp ? nnm_ddp_call(ddp, &x, 1, &out, 1) : nnm_module_call(model, &x, 1, &out, 1);
            nnm_tensor *in2[2] = {out, yd};
            if (!s) s = nnm_module_call(loss, in2, 2, &l, 1);
            if (tr) t2 = trace_now();
            if (!s) s = nnm_backward(l, NULL, 0);
            if (tr) {
                t3 = trace_now();
                trace_span(tr, "backward", "loop", t2, t3);
            }
            if (!s) s = nnm_optim_step(opt);
            float lv = 0;
            if (!s) s = nnm_tensor_to_f32(l, &lv, 1);
            int64_t b = s ? 0 : nnm_tensor_desc_get(x)->shape[0];
            nnm_tensor_release(x);
            nnm_tensor_release(y);
            nnm_tensor_release(yd);
            nnm_tensor_release(out);
            nnm_tensor_release(l);
            if (tr) {
                uint64_t t4 = trace_now();
                trace_span(tr, "optimizer.step", "loop", t3, t4);
                trace_span(tr, "step", "loop", t0, t4);
            }
            if (s) {
                if (pg.tty && !quiet) fputc('\n', stdout);
                /* where it failed: a layer that needs more than one sample
                 * (batch norm in training) fails on a last batch of 1 */
                const char *msg = nnm_ctx_errmsg(ctx);
                int64_t left = nnm_loader_sample_count(train_ld) - seen;
                int64_t bs = left < tp.batch_size ? left : tp.batch_size;
                r = cli_failf(cmd, "epoch %" PRId64 ", step %" PRId64 "/%" PRId64 " (a batch of %" PRId64
                              "%s): %s",
                              epoch + 1, step + 1, steps, bs,
                              bs < tp.batch_size ? ", the last partial one; --drop-last skips it" : "",
                              msg && msg[0] ? msg : nnm_status_str(s));
                goto done;
            }
            if (!isfinite(lv)) {
                if (pg.tty && !quiet) fputc('\n', stdout);
                if (classes > 0 && !counted)
                    r = cli_failf(cmd, "epoch %" PRId64 ", step %" PRId64 ": every target of the "
                                  "batch is %d (ignored), so its loss is %g; with --ddp every rank "
                                  "must take a step (shuffle with another --seed, or drop those "
                                  "samples)", epoch + 1, step + 1, TRAIN_IGNORE_INDEX, (double)lv);
                else
                    r = cli_failf(cmd, "epoch %" PRId64 ", step %" PRId64 ": the loss is %g "
                                  "(the data was checked to be finite): the training diverged; "
                                  "try a smaller --lr", epoch + 1, step + 1, (double)lv);
                goto done;
            }
            if (classes <= 0) counted = b;
            loss_sum += (double)lv * (double)counted;
            seen += b;
            seen_counted += counted;
            step++;
            progress_draw(&pg, epoch + 1, tp.epochs, step, steps,
                          seen_counted ? loss_sum / (double)seen_counted : 0, seen, step == steps);
        }
        double train_time = seconds(trace_now() - pg.start), train_cpu = cpu_seconds() - cpu0;
        if (pg.tty && !quiet) fputc('\n', stdout);
        if (ddp) { /* the loss and sample counts over every rank */
            double v[3] = {loss_sum, (double)seen, (double)seen_counted};
            if ((s = ddp_sum(ctx, comm, v, 3))) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
            loss_sum = v[0];
            seen = (int64_t)v[1];
            seen_counted = (int64_t)v[2];
        }
        if (rank != 0) continue; /* rank 0 alone evaluates and checkpoints */
        uint64_t e0 = tr ? trace_now() : 0;
        if (train_evaluate(ctx, cmd, model, loss, test_ld, classes, NULL, &ev)) goto done;
        if (tr) trace_span(tr, "evaluate", "loop", e0, trace_now());
        double train_loss = seen_counted ? loss_sum / (double)seen_counted : 0;
        double metric = ev.accuracy >= 0 ? ev.accuracy : -ev.loss;
        int improved = metric > best;
        if (improved) {
            best = metric;
            best_epoch = epoch + 1;
        }
        if (!quiet) {
            printf("epoch %" PRId64 "/%" PRId64 ": train loss %.4f, test loss %.4f", epoch + 1,
                   tp.epochs, train_loss, ev.loss);
            if (ev.accuracy >= 0) printf(", test accuracy %.2f%%", 100 * ev.accuracy);
            if (train_time >= TRAIN_RATE_MIN_S)
                printf(", %.0f samples/s", (double)seen / train_time);
            else
                printf(", %" PRId64 " samples (too few to time)", seen);
            printf(", %.1f s (cpu %.2f s), lr %.3g\n", train_time, train_cpu, lr);
            fflush(stdout);
        }
        if (out_dir) {
            if (write_checkpoint(ctx, cmd, out_dir, "last.safetensors", model, opt, mf, epoch + 1,
                                 train_loss, ev.loss, ev.accuracy, best, best_epoch, &tp))
                goto done;
            if (improved &&
                write_checkpoint(ctx, cmd, out_dir, "best.safetensors", model, opt, mf, epoch + 1,
                                 train_loss, ev.loss, ev.accuracy, best, best_epoch, &tp))
                goto done;
        }
    }
    if (rank != 0) {
        r = CLI_EXIT_OK;
        goto done;
    }
    if (first_epoch >= tp.epochs || !ev.samples) {
        /* nothing trained (resumed at the end): evaluate what we have */
        if (train_evaluate(ctx, cmd, model, loss, test_ld, classes, NULL, &ev)) goto done;
    }
    if (tr) {
        int bad = trace_close(tr, ctx);
        tr = NULL;
        if (bad) goto done;
    }
    if (n_skipped && !quiet)
        printf("skipped %" PRId64 " training batch(es) whose every target is %d (ignored)\n",
               n_skipped, TRAIN_IGNORE_INDEX);
    if (ev.accuracy >= 0)
        printf("test accuracy: %.2f%%\n", 100 * ev.accuracy);
    else
        printf("test loss: %.6g\n", ev.loss);
    r = CLI_EXIT_OK;
done:
    if (tr) trace_close(tr, ctx);
    nnm_ddp_free(ddp);
    nnm_comm_free(comm);
    nnm_optim_free(opt);
    nnm_loader_free(train_ld);
    nnm_loader_free(test_ld);
    nnm_dataset_free(train_ds);
    nnm_dataset_free(test_ds);
    nnm_module_release(loss);
    nnm_module_release(model);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
