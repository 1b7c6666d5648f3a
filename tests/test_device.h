/* tests/test_device.h - the device a golden suite runs its cases on, chosen
 * by the environment variable NNM_TEST_DEVICE (docs/testing.md):
 *
 *   unset, "" or "cpu"  the CPU (what every suite always did)
 *   "emu"               the test backend of tests/emu_backend.h: the cpu
 *                       kernels behind a device type (12, kDLExtDev) whose
 *                       memory host code cannot read; a layer or runtime op
 *                       touching tensor memory on the host crashes there
 *   "emu_min"           emu without the slots that have a fallback (conv,
 *                       batch_norm, index_select, embedding_bag, layer_norm,
 *                       ctc_loss, ...): the composed paths on that device
 *   "cuda"              CUDA device 0; where the cuda backend says there is
 *                       no device the suite prints "SKIPPED: no CUDA device"
 *                       and passes
 *
 * A suite builds its module on the CPU, loads the golden state there, then
 * moves it with nnm_module_to(m, td_device()) and its inputs with td_to():
 * forward, backward, outputs, gradients and buffers are compared with the
 * same goldens and tolerances as on the CPU. ctest runs each such suite
 * twice, as <suite> and <suite>_emu (NNM_TEST_DEVICE=emu);
 * scripts/gpu-check.sh runs them with NNM_TEST_DEVICE=cuda.
 *
 * Include after test_util.h. The includer defines NNM_TEST_CPU_PLUGIN (the
 * path of nnm_cpu.so, for emu). */
#ifndef NNM_TESTS_TEST_DEVICE_H
#define NNM_TESTS_TEST_DEVICE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_backend.h"
#include "nnmod/nnmod.h"

#ifndef NNM_TEST_CPU_PLUGIN
#error "NNM_TEST_CPU_PLUGIN must name the cpu plugin (nnm_cpu.so)"
#endif

/* nnm_tensor_to (t.to(device)) where this libnnmod has it (0.5); weak, so
 * the suites build and run (on cpu and emu) against a library without it. */
NNM_API nnm_status nnm_tensor_to(nnm_tensor *t, nnm_device device, nnm_tensor **out) __attribute__((weak));

static struct {
    int chosen;       /* td_init ran */
    int kind;         /* 0 cpu, 1 emu, 2 cuda */
    const char *name; /* "cpu", "emu", "cuda" */
    nnm_device dev;
} g_td;

/* The device of NNM_TEST_DEVICE (the CPU when unset). */
static inline nnm_device td_device(void) {
    return g_td.dev.type ? g_td.dev : (nnm_device){NNM_DEVICE_CPU, 0};
}

/* 1 when the suite runs off the CPU. */
static inline int td_off_cpu(void) {
    return g_td.kind != 0;
}

static inline const char *td_name(void) {
    return g_td.name ? g_td.name : "cpu";
}

/* Reads NNM_TEST_DEVICE and readies ctx for it (emu: registers the test
 * backend, which must happen before ctx makes a tensor on it). Returns 0
 * when the suite can run, 1 when it must skip (no CUDA device: the message is
 * printed), -1 on a bad value or a failure (printed). Call once per context. */
static inline int td_init(nnm_ctx *ctx) {
    const char *v = getenv("NNM_TEST_DEVICE");
    if (v == NULL || !*v || strcmp(v, "cpu") == 0) {
        g_td.kind = 0, g_td.name = "cpu", g_td.dev = (nnm_device){NNM_DEVICE_CPU, 0};
    } else if (strcmp(v, "emu") == 0 || strcmp(v, "emu_min") == 0) {
        const int min = strcmp(v, "emu_min") == 0;
        g_td.kind = 1, g_td.name = min ? "emu_min" : "emu", g_td.dev = EMU_DEVICE;
        if (emu_setup(NNM_TEST_CPU_PLUGIN) != 0) {
            fprintf(stderr, "NNM_TEST_DEVICE=emu: cannot build the emu backend from %s\n", NNM_TEST_CPU_PLUGIN);
            return -1;
        }
        if (min) /* every slot with a fallback left out: the fallbacks run on the device */
            emu_minimal();
        if (nnm_plugin_register_static(ctx, &emu_desc, "tests/emu_backend.h") != NNM_OK) {
            fprintf(stderr, "NNM_TEST_DEVICE=emu: %s\n", nnm_ctx_errmsg(ctx));
            return -1;
        }
    } else if (strcmp(v, "cuda") == 0) {
        g_td.kind = 2, g_td.name = "cuda", g_td.dev = (nnm_device){NNM_DEVICE_CUDA, 0};
    } else {
        fprintf(stderr, "NNM_TEST_DEVICE=%s: want cpu, emu or cuda\n", v);
        return -1;
    }
    g_td.chosen = 1;
    if (g_td.kind == 0) return 0;
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_new(ctx, g_td.dev, NNM_F32, 1, (int64_t[]){1}, &t);
    nnm_tensor_release(t);
    if (st == NNM_E_NO_DEVICE || (st != NNM_OK && g_td.kind == 2)) {
        fprintf(stderr, "SKIPPED: no CUDA device (%s)\n", nnm_ctx_errmsg(ctx));
        return 1;
    }
    if (st != NNM_OK) {
        fprintf(stderr, "NNM_TEST_DEVICE=%s: %s\n", g_td.name, nnm_ctx_errmsg(ctx));
        return -1;
    }
    if (g_td.kind == 2 && nnm_tensor_to == NULL) {
        fprintf(stderr, "NNM_TEST_DEVICE=cuda needs nnm_tensor_to (libnnmod 0.5) to place inputs\n");
        return -1;
    }
    return 0;
}

/* A new reference to x on td_device(): x itself on the CPU, else a copy
 * (contiguous; any dtype; requires_grad as x has it). NULL on failure
 * (printed). */
static inline nnm_tensor *td_to(nnm_ctx *ctx, nnm_tensor *x) {
    if (x == NULL) return NULL;
    if (g_td.kind == 0) {
        nnm_tensor_retain(x);
        return x;
    }
    nnm_tensor *y = NULL;
    nnm_status st = NNM_OK;
    if (nnm_tensor_to != NULL) {
        st = nnm_tensor_to(x, g_td.dev, &y);
    } else if (g_td.kind == 1) { /* emu without nnm_tensor_to: write its memory directly */
        const nnm_tensor_desc *d = nnm_tensor_desc_get(x);
        void *src = tu_cpu_data(x);
        if (src == NULL) {
            fprintf(stderr, "td_to: a strided or non-CPU source\n");
            return NULL;
        }
        st = nnm_tensor_new(ctx, g_td.dev, d->dtype, d->ndim, d->shape, &y);
        if (st == NNM_OK) {
            const nnm_tensor_desc *e = nnm_tensor_desc_get(y);
            const size_t bytes = (size_t)nnm_tensor_numel(x) * (size_t)((d->dtype.bits * d->dtype.lanes + 7) / 8);
            if (bytes) memcpy((char *)emu_untag(e->data) + e->byte_offset, src, bytes);
        }
    } else {
        st = NNM_E_UNSUPPORTED;
    }
    if (st == NNM_OK && nnm_tensor_requires_grad(x)) st = nnm_tensor_set_requires_grad(y, 1);
    if (st != NNM_OK) {
        fprintf(stderr, "td_to(%s): %s: %s\n", td_name(), nnm_status_name(st), nnm_ctx_errmsg(ctx));
        nnm_tensor_release(y);
        return NULL;
    }
    return y;
}

/* Replaces *x (a reference the caller owns) by its copy on td_device(). 1
 * on success. */
static inline int td_move(nnm_ctx *ctx, nnm_tensor **x) {
    if (g_td.kind == 0 || *x == NULL) return 1;
    nnm_tensor *y = td_to(ctx, *x);
    nnm_tensor_release(*x);
    *x = y;
    return y != NULL;
}

/* Cleans up after the last context is freed. */
static inline void td_teardown(void) {
    if (g_td.kind == 1) emu_teardown();
}

#endif /* NNM_TESTS_TEST_DEVICE_H */
