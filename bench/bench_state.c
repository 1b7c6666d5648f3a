/* bench/bench_state.c - saving and loading a ~100 MB state dict.
 *
 * 25 x Linear(1024, 1024) (105 MB of f32) saved with nnm_module_save (atomic:
 * temp file, fsync, rename, fsync of the directory) and loaded back with
 * nnm_module_load (mmap, validation, one copy into the parameters). Loads run
 * after a save, so the file is in the page cache: the figure is the cost of
 * the reader, not of the disk. Prints MB/s medians of REPS runs.
 * Usage: bench_state [dir]   (default: /tmp)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_state"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define REPS 7
#define LAYERS 25
#define FEATURES 1024

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/nnm_bench_state.%ld.safetensors", dir, (long)getpid());
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    nnm_module *seq;
    if (nnm_module_create(ctx, "sequential", NULL, &seq)) die(ctx, "sequential");
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_features", FEATURES);
    nnm_config_set_int(cfg, "out_features", FEATURES);
    for (int i = 0; i < LAYERS; i++) {
        nnm_module *l;
        if (nnm_module_create(ctx, "linear", cfg, &l)) die(ctx, "linear");
        nnm_module_add_child(seq, NULL, l);
        nnm_module_release(l);
    }
    nnm_config_free(cfg);
    double mb = (double)nnm_module_num_params(seq) * 4.0 / 1e6;
    double save[REPS], load[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        if (nnm_module_save(seq, path, 0, NULL)) die(ctx, "save");
        save[r] = mb / (now_s() - t0);
        t0 = now_s();
        if (nnm_module_load(seq, path, 1, NULL)) die(ctx, "load");
        load[r] = mb / (now_s() - t0);
    }
    unlink(path);
    qsort(save, REPS, sizeof save[0], cmp_double);
    qsort(load, REPS, sizeof load[0], cmp_double);
    printf("{\"bench\": \"state_save\", \"value\": %.0f, \"unit\": \"MB/s\", \"mb\": %.1f, \"fsync\": true, \"reps\": %d}\n",
           save[REPS / 2], mb, REPS);
    printf("{\"bench\": \"state_load\", \"value\": %.0f, \"unit\": \"MB/s\", \"mb\": %.1f, \"page_cache\": true, \"target\": 1000}\n",
           load[REPS / 2], mb);
    nnm_module_release(seq);
    nnm_ctx_free(ctx);
    return 0;
}
