/* tests/fuzz/fuzz_safetensors.c - libFuzzer harness over the safetensors
 * reader and the state-dict loader.
 *
 * Each input is written to a memfd and opened through /proc/self/fd/N with
 * nnm_safetensors_open; on success every entry and metadata pair is read
 * (each data byte touched, so a bad bound shows up under ASan), every name is
 * looked up again, and the file is loaded non-strictly into a small module
 * (Linear(4, 8) inside a Sequential, keys "0.weight" and "0.bias"), which
 * drives the dtype conversions, and into a BatchNorm1d(2) (keys "weight",
 * "bias", "running_mean", "running_var" and the i64 buffer
 * "num_batches_tracked"), which drives the conversions into i64. The same
 * file is then loaded as a checkpoint into the Sequential with an SGD
 * (momentum) and an Adam optimizer (nnmod_optim's JSON, the optim.* state
 * entries, the step counts). Every load that fails must leave the module's
 * parameters, buffers and the optimizer's state bit for bit as they were
 * (the contract: everything is checked before anything changes); the
 * harness aborts otherwise.
 *
 * Two input forms: a whole file as is; or, when the first byte is 0xA5, the
 * byte 0xA5, a 2-byte little-endian data length D, the header text and D data
 * bytes, from which the harness writes a file with the right 8-byte length
 * (so mutations explore the JSON instead of breaking the length prefix).
 * Build with clang:
 *     cmake -DCMAKE_C_COMPILER=clang -DNNM_FUZZ=ON -B build-fuzz && cmake --build build-fuzz
 *     build-fuzz/bin/fuzz_safetensors -max_total_time=60 NEW_DIR tests/fuzz/corpus_safetensors
 */
#define _GNU_SOURCE /* memfd_create */
#include <nnmod/nnmod.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nnm_ctx *g_ctx;
static nnm_module *g_model, *g_bn;
static nnm_optim *g_sgd, *g_adam;
static volatile unsigned g_sink; /* keeps the reads */

/* Every value of a module's parameters and buffers and an optimizer's state,
 * as bits (NaN compares equal to itself), to tell whether a failed load
 * changed anything. */
typedef struct snap {
    float v[4096];
    size_t n;
    int overflow;
} snap;

static nnm_status snap_add(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    snap *s = user;
    int64_t n = nnm_tensor_numel(t);
    if (n < 0 || s->n + (size_t)n > sizeof s->v / sizeof s->v[0]) {
        s->overflow = 1;
        return NNM_OK;
    }
    if (nnm_tensor_to_f32(t, s->v + s->n, (size_t)n) != NNM_OK) abort();
    s->n += (size_t)n;
    return NNM_OK;
}

static void take(snap *s, nnm_module *m, nnm_optim *opt) {
    s->n = 0;
    s->overflow = 0;
    if (nnm_module_named_parameters(m, snap_add, s) != NNM_OK ||
        nnm_module_named_buffers(m, snap_add, s) != NNM_OK ||
        (opt && nnm_optim_state(opt, snap_add, s) != NNM_OK))
        abort();
}

static void same_or_die(const snap *a, nnm_module *m, nnm_optim *opt, const char *what) {
    static snap b;
    take(&b, m, opt);
    if (a->overflow || b.overflow) return;
    if (a->n != b.n || memcmp(a->v, b.v, a->n * sizeof a->v[0]) != 0) {
        fprintf(stderr, "fuzz_safetensors: a failed %s changed the module or optimizer: %s\n", what,
                nnm_ctx_errmsg(g_ctx));
        abort();
    }
}

static void setup(void) {
    if (nnm_ctx_new(NULL, &g_ctx) != NNM_OK) abort();
    nnm_config *cfg = NULL;
    nnm_module *seq = NULL, *fc = NULL;
    if (nnm_config_new(&cfg) != NNM_OK) abort();
    nnm_config_set_int(cfg, "in_features", 4);
    nnm_config_set_int(cfg, "out_features", 8);
    /* Without the plugins (not found beside libnnmod) only the reader is fuzzed. */
    if (nnm_module_create(g_ctx, "sequential", NULL, &seq) == NNM_OK &&
        nnm_module_create(g_ctx, "linear", cfg, &fc) == NNM_OK &&
        nnm_module_add_child(seq, NULL, fc) == NNM_OK) {
        g_model = seq;
        seq = NULL;
    }
    nnm_module_release(fc);
    nnm_module_release(seq);
    nnm_config_free(cfg);
    cfg = NULL;
    if (nnm_config_new(&cfg) != NNM_OK) abort();
    nnm_config_set_int(cfg, "num_features", 2);
    if (nnm_module_create(g_ctx, "batch_norm1d", cfg, &g_bn) != NNM_OK) g_bn = NULL;
    nnm_config_free(cfg);
    if (g_model) {
        nnm_sgd_options so = {sizeof so, 0, 0.1, 0.9, 0.0, 0.0};
        nnm_adam_options ao = {sizeof ao, 0, 0, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0};
        if (nnm_optim_sgd_new(g_model, &so, &g_sgd) != NNM_OK) g_sgd = NULL;
        if (nnm_optim_adam_new(g_model, &ao, &g_adam) != NNM_OK) g_adam = NULL;
    }
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx) setup();
    int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (fd < 0) return 0;
    int bad;
    if (size >= 3 && data[0] == 0xA5) {
        size_t dlen = (size_t)data[1] | (size_t)data[2] << 8;
        size_t rest = size - 3;
        if (dlen > rest) dlen = rest;
        uint64_t hlen = rest - dlen;
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hlen >> (8 * i));
        bad = write_all(fd, len8, 8) || write_all(fd, data + 3, rest);
    } else {
        bad = write_all(fd, data, size);
    }
    if (bad) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, path, &st) == NNM_OK) {
        unsigned sum = 0;
        uint32_t n = nnm_safetensors_count(st);
        for (uint32_t i = 0; i < n; i++) {
            nnm_st_entry e, f;
            e.struct_size = f.struct_size = sizeof e;
            if (nnm_safetensors_entry(st, i, &e) != NNM_OK) abort();
            const unsigned char *p = e.data;
            for (uint64_t k = 0; k < e.nbytes; k++) sum += p[k];
            for (int32_t d = 0; d < e.ndim; d++) sum += (unsigned)e.shape[d];
            sum += (unsigned)strlen(e.name) + (unsigned)strlen(e.dtype_name);
            if (nnm_safetensors_find(st, e.name, &f) != NNM_OK || f.data != e.data) abort();
        }
        for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
            const char *k, *v;
            if (nnm_safetensors_metadata(st, i, &k, &v) != NNM_OK) abort();
            sum += (unsigned)(strlen(k) + strlen(v));
        }
        g_sink += sum;
        nnm_safetensors_close(st);
        static snap before;
        if (g_model) {
            nnm_load_report *rep = NULL;
            /* the report is the caller's on success and also when keys
             * did not fit (nnmod.h): free it on every path */
            take(&before, g_model, NULL);
            nnm_status r = nnm_module_load(g_model, path, 0, &rep);
            if (r == NNM_OK && !rep) abort();
            if (r != NNM_OK) same_or_die(&before, g_model, NULL, "load");
            nnm_load_report_free(rep);
            nnm_optim *opts[3] = {NULL, g_sgd, g_adam};
            for (int k = 0; k < 3; k++) {
                if (k && !opts[k]) continue;
                take(&before, g_model, opts[k]);
                if (nnm_checkpoint_load(path, g_model, opts[k]) != NNM_OK)
                    same_or_die(&before, g_model, opts[k], "checkpoint load");
            }
        }
        if (g_bn) {
            nnm_load_report *rep = NULL;
            take(&before, g_bn, NULL);
            nnm_status r = nnm_module_load(g_bn, path, 0, &rep);
            if (r == NNM_OK && !rep) abort();
            if (r != NNM_OK) same_or_die(&before, g_bn, NULL, "load");
            nnm_load_report_free(rep);
        }
    } else if (st != NULL) {
        abort(); /* failure must leave *out NULL */
    }
    close(fd);
    return 0;
}
