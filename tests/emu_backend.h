/* tests/emu_backend.h - "emu": a TEST backend serving a second, non-CPU
 * device type (DLPack's kDLExtDev, 12) whose memory host code cannot read.
 * Tests only; never installed.
 *
 * Why: a layer or runtime op that reads or writes tensor memory on the host
 * (instead of going through host ops and backend slots) works on the CPU and
 * breaks on a GPU. No GPU is at hand, so this backend makes such a bug crash
 * on the CPU: alloc returns real host memory with EMU_TAG XORed into the
 * pointer, a non-canonical address on x86-64 and AArch64, so any stray host
 * dereference segfaults (ASan reports it). Every slot checks that each
 * tensor it is given is on the emu device and carries the tag, un-tags
 * copies of the descriptors (device set to the CPU) and calls the same slot
 * of the cpu backend plugin (dlopened, its vtable used as is). memcpy copies
 * across the boundary in every direction. So the kernels are the cpu
 * backend's, bit for bit: the CPU goldens must pass on "emu" with the CPU's
 * tolerances, and whatever fails there is host code touching device memory.
 *
 * Every slot the cpu backend fills is filled (emu_setup refuses a cpu plugin
 * with a slot emu does not know, so a new backend slot cannot be forgotten
 * here: add it to emu_fill below). The version is the cpu backend's.
 *
 * Use: emu_setup(path of nnm_cpu.so) once (0 on success; dlopens it), then
 * nnm_plugin_register_static(ctx, &emu_desc, "emu") in each context, and
 * tensors on EMU_DEVICE; emu_untag(data) is the host address of emu memory,
 * for a test harness that must place inputs without the runtime.
 * emu_teardown() at the end. */
#ifndef NNM_TESTS_EMU_BACKEND_H
#define NNM_TESTS_EMU_BACKEND_H

#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmod/plugin.h"

#define EMU_DEVICE_TYPE 12 /* DLPack kDLExtDev */
#define EMU_TAG ((uintptr_t)0x4e4d000000000000ull) /* "NM": bits 48..62, never canonical */
#define EMU_TAG_MASK ((uintptr_t)0xffff000000000000ull)

static const nnm_device EMU_DEVICE = {EMU_DEVICE_TYPE, 0};

static void *g_emu_dl;
static const nnm_backend_vtable *g_emu_cpu;
static nnm_backend_vtable g_emu_vt;

typedef struct emu_state {
    void *cpu; /* the cpu backend's state */
} emu_state;

static int emu_is_tagged(const void *p) {
    return ((uintptr_t)p & EMU_TAG_MASK) == EMU_TAG;
}

static void *emu_untag(const void *p) {
    return p ? (void *)((uintptr_t)p ^ EMU_TAG) : NULL;
}

/* ---- checking and un-tagging arguments ----------------------------------- */

/* One call's un-tagged copies of descriptors (at most 16 per args struct). */
typedef struct emu_call {
    nnm_env *env;
    const char *slot;
    nnm_status st;
    int n;
    nnm_tensor_desc d[16];
} emu_call;

/* Fails the call (once) with "emu: <slot>: <what> (<p>)". */
static nnm_status emu_bad(emu_call *c, const char *what, const void *p) {
    if (c->st == NNM_OK) {
        char msg[320];
        snprintf(msg, sizeof msg, "emu: %s: %s (%p)", c->slot, what, p);
        c->st = c->env->host->set_error_msg(c->env, NNM_E_DEVICE, msg);
    }
    return c->st;
}

/* *pd (may be NULL) replaced by an un-tagged copy on the CPU device. */
static void emu_desc_untag(emu_call *c, const nnm_tensor_desc **pd) {
    const nnm_tensor_desc *d = *pd;
    if (d == NULL || c->st != NNM_OK) return;
    if (d->device.type != EMU_DEVICE_TYPE || d->device.id != 0) {
        emu_bad(c, "a tensor of another device reached the emu backend (the runtime mixed devices)", d->data);
        return;
    }
    if (d->data != NULL && !emu_is_tagged(d->data)) {
        emu_bad(c, "a tensor whose data is not emu memory", d->data);
        return;
    }
    if (c->n >= 16) {
        emu_bad(c, "more than 16 tensors", NULL);
        return;
    }
    nnm_tensor_desc *u = &c->d[c->n++];
    *u = *d;
    u->data = emu_untag(d->data);
    u->device = (nnm_device){NNM_DEVICE_CPU, 0};
    *pd = u;
}

/* A raw device pointer (gemm, im2col, optimizers, rnn_cell) un-tagged. */
static void *emu_ptr(emu_call *c, const void *p) {
    if (p == NULL) return NULL;
    if (!emu_is_tagged(p)) {
        emu_bad(c, "a pointer that is not emu memory", p);
        return NULL;
    }
    return emu_untag(p);
}

#define EMU_CALL(name) emu_call c_ = {env, #name, NNM_OK, 0, {{0}}}
#define EMU_D(field) emu_desc_untag(&c_, &b_.field)
#define EMU_P(field) b_.field = emu_ptr(&c_, b_.field)
#define EMU_DONE(name) return c_.st != NNM_OK ? c_.st : g_emu_cpu->name(env, ((emu_state *)state)->cpu, &b_)

/* ---- lifetime and memory ------------------------------------------------- */

static nnm_status emu_init(nnm_env *env, void **state) {
    *state = NULL;
    emu_state *s = calloc(1, sizeof *s);
    if (s == NULL) return env->host->set_error_msg(env, NNM_E_NOMEM, "emu: out of memory");
    nnm_status st = g_emu_cpu->init(env, &s->cpu);
    if (st != NNM_OK) {
        free(s);
        return st;
    }
    *state = s;
    return NNM_OK;
}

static void emu_shutdown(void *state) {
    emu_state *s = state;
    if (s == NULL) return;
    if (g_emu_cpu->shutdown) g_emu_cpu->shutdown(s->cpu);
    free(s);
}

static nnm_status emu_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)state;
    *ptr = NULL;
    if (id != 0) return env->host->set_error_msg(env, NNM_E_DEVICE, "emu: there is one emu device, id 0");
    void *p = aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    if (p == NULL) return env->host->set_error_msg(env, NNM_E_NOMEM, "emu: out of memory");
    if (((uintptr_t)p & EMU_TAG_MASK) != 0) {
        free(p);
        return env->host->set_error_msg(env, NNM_E_NOMEM, "emu: a host address above 2^48 cannot be tagged");
    }
    *ptr = emu_untag(p); /* XOR: tags it */
    return NNM_OK;
}

static void emu_free(void *state, int32_t id, void *ptr) {
    (void)state, (void)id;
    if (ptr != NULL && emu_is_tagged(ptr)) free(emu_untag(ptr));
}

static nnm_status emu_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src, nnm_device sd,
                             size_t bytes) {
    (void)state;
    emu_call c_ = {env, "memcpy", NNM_OK, 0, {{0}}};
    const nnm_device devs[2] = {dd, sd};
    for (int i = 0; i < 2; i++)
        if (!(devs[i].type == NNM_DEVICE_CPU || (devs[i].type == EMU_DEVICE_TYPE && devs[i].id == 0)))
            return emu_bad(&c_, "a copy from or to a device that is neither the CPU nor emu:0", NULL);
    if (bytes == 0) return NNM_OK;
    if (dst == NULL || src == NULL) return env->host->set_error_msg(env, NNM_E_INVALID, "emu: memcpy of NULL");
    void *d = dd.type == EMU_DEVICE_TYPE ? emu_ptr(&c_, dst) : dst;
    const void *s = sd.type == EMU_DEVICE_TYPE ? emu_ptr(&c_, src) : src;
    if (c_.st != NNM_OK) return c_.st;
    if (dd.type == NNM_DEVICE_CPU && emu_is_tagged(dst))
        return emu_bad(&c_, "the host destination is emu memory", dst);
    if (sd.type == NNM_DEVICE_CPU && emu_is_tagged(src))
        return emu_bad(&c_, "the host source is emu memory", src);
    memmove(d, s, bytes);
    return NNM_OK;
}

/* ---- compute slots: un-tag, then the cpu backend's own slot -------------- */

static nnm_status emu_fill_slot(nnm_env *env, void *state, const nnm_tensor_desc *out, double v) {
    emu_call c_ = {env, "fill", NNM_OK, 0, {{0}}};
    emu_desc_untag(&c_, &out);
    return c_.st != NNM_OK ? c_.st : g_emu_cpu->fill(env, ((emu_state *)state)->cpu, out, v);
}

static nnm_status emu_gemm(nnm_env *env, void *state, const nnm_gemm_args *a) {
    EMU_CALL(gemm);
    nnm_gemm_args b_ = *a;
    EMU_P(a);
    EMU_P(b);
    EMU_P(c);
    EMU_DONE(gemm);
}

#define EMU_SLOT2(name, type, f1, f2)                                                                                  \
    static nnm_status emu_##name(nnm_env *env, void *state, const type *a) {                                           \
        EMU_CALL(name);                                                                                                \
        type b_ = *a;                                                                                                  \
        EMU_D(f1);                                                                                                     \
        EMU_D(f2);                                                                                                     \
        EMU_DONE(name);                                                                                                \
    }

EMU_SLOT2(unary, nnm_unary_args, x, out)
EMU_SLOT2(reduce, nnm_reduce_args, x, out)
EMU_SLOT2(log_softmax, nnm_log_softmax_args, x, out)
EMU_SLOT2(softmax, nnm_softmax_args, x, out)
EMU_SLOT2(cast, nnm_cast_args, x, out)
EMU_SLOT2(arg_reduce, nnm_arg_reduce_args, x, out)

static nnm_status emu_binary(nnm_env *env, void *state, const nnm_binary_args *a) {
    EMU_CALL(binary);
    nnm_binary_args b_ = *a;
    EMU_D(a);
    EMU_D(b);
    EMU_D(out);
    EMU_DONE(binary);
}

static nnm_status emu_nll(nnm_env *env, void *state, const nnm_nll_args *a) {
    EMU_CALL(nll);
    nnm_nll_args b_ = *a;
    EMU_D(logp);
    EMU_D(target);
    EMU_D(out);
    EMU_D(count);
    EMU_DONE(nll);
}

static nnm_status emu_nll_backward(nnm_env *env, void *state, const nnm_nll_backward_args *a) {
    EMU_CALL(nll_backward);
    nnm_nll_backward_args b_ = *a;
    EMU_D(grad);
    EMU_D(target);
    EMU_D(grad_logp);
    EMU_DONE(nll_backward);
}

static nnm_status emu_sgd_step(nnm_env *env, void *state, const nnm_sgd_args *a) {
    EMU_CALL(sgd_step);
    nnm_sgd_args b_ = *a;
    EMU_P(param);
    EMU_P(grad);
    EMU_P(momentum_buf);
    EMU_DONE(sgd_step);
}

static nnm_status emu_adam_step(nnm_env *env, void *state, const nnm_adam_args *a) {
    EMU_CALL(adam_step);
    nnm_adam_args b_ = *a;
    EMU_P(param);
    EMU_P(grad);
    EMU_P(exp_avg);
    EMU_P(exp_avg_sq);
    EMU_P(max_exp_avg_sq);
    EMU_DONE(adam_step);
}

#define EMU_IM2COL(name)                                                                                               \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_im2col_args *a) {                                \
        EMU_CALL(name);                                                                                                \
        nnm_im2col_args b_ = *a;                                                                                       \
        EMU_P(im);                                                                                                     \
        EMU_P(col);                                                                                                    \
        EMU_DONE(name);                                                                                                \
    }
EMU_IM2COL(im2col)
EMU_IM2COL(col2im)

#define EMU_POOL(name)                                                                                                 \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_pool_args *a) {                                  \
        EMU_CALL(name);                                                                                                \
        nnm_pool_args b_ = *a;                                                                                         \
        EMU_D(x);                                                                                                      \
        EMU_D(out);                                                                                                    \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_x);                                                                                                 \
        EMU_DONE(name);                                                                                                \
    }
EMU_POOL(pool)
EMU_POOL(pool_backward)

static nnm_status emu_where(nnm_env *env, void *state, const nnm_where_args *a) {
    EMU_CALL(where);
    nnm_where_args b_ = *a;
    EMU_D(cond);
    EMU_D(a);
    EMU_D(b);
    EMU_D(out);
    EMU_DONE(where);
}

#define EMU_CONV(name)                                                                                                 \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_conv_args *a) {                                  \
        EMU_CALL(name);                                                                                                \
        nnm_conv_args b_ = *a;                                                                                         \
        EMU_D(x);                                                                                                      \
        EMU_D(w);                                                                                                      \
        EMU_D(b);                                                                                                      \
        EMU_D(y);                                                                                                      \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_x);                                                                                                 \
        EMU_D(grad_w);                                                                                                 \
        EMU_DONE(name);                                                                                                \
    }
EMU_CONV(conv)
EMU_CONV(conv_backward)

#define EMU_BN(name)                                                                                                   \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_batch_norm_args *a) {                            \
        EMU_CALL(name);                                                                                                \
        nnm_batch_norm_args b_ = *a;                                                                                   \
        EMU_D(x);                                                                                                      \
        EMU_D(weight);                                                                                                 \
        EMU_D(bias);                                                                                                   \
        EMU_D(running_mean);                                                                                           \
        EMU_D(running_var);                                                                                            \
        EMU_D(save_mean);                                                                                              \
        EMU_D(save_invstd);                                                                                            \
        EMU_D(y);                                                                                                      \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_x);                                                                                                 \
        EMU_D(grad_weight);                                                                                            \
        EMU_D(grad_bias);                                                                                              \
        EMU_DONE(name);                                                                                                \
    }
EMU_BN(batch_norm)
EMU_BN(batch_norm_backward)

#define EMU_INDEX(name)                                                                                                \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_index_args *a) {                                 \
        EMU_CALL(name);                                                                                                \
        nnm_index_args b_ = *a;                                                                                        \
        EMU_D(index);                                                                                                  \
        EMU_D(src);                                                                                                    \
        EMU_D(dst);                                                                                                    \
        EMU_DONE(name);                                                                                                \
    }
EMU_INDEX(index_select)
EMU_INDEX(index_add)

#define EMU_RNN(name)                                                                                                  \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_rnn_cell_args *a) {                              \
        EMU_CALL(name);                                                                                                \
        nnm_rnn_cell_args b_ = *a;                                                                                     \
        EMU_P(gx);                                                                                                     \
        EMU_P(gh);                                                                                                     \
        EMU_P(b_hh);                                                                                                   \
        EMU_P(h_prev);                                                                                                 \
        EMU_P(c_prev);                                                                                                 \
        EMU_P(h);                                                                                                      \
        EMU_P(c);                                                                                                      \
        EMU_P(act);                                                                                                    \
        EMU_P(dh);                                                                                                     \
        EMU_P(dc);                                                                                                     \
        EMU_P(dgx);                                                                                                    \
        EMU_P(dgh);                                                                                                    \
        EMU_P(dh_prev);                                                                                                \
        EMU_DONE(name);                                                                                                \
    }
EMU_RNN(rnn_cell)
EMU_RNN(rnn_cell_backward)

#define EMU_CTC(name)                                                                                                  \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_ctc_args *a) {                                   \
        EMU_CALL(name);                                                                                                \
        nnm_ctc_args b_ = *a;                                                                                          \
        EMU_D(log_probs);                                                                                              \
        EMU_D(targets);                                                                                                \
        EMU_D(input_lengths);                                                                                          \
        EMU_D(target_lengths);                                                                                         \
        EMU_D(nll);                                                                                                    \
        EMU_D(alpha);                                                                                                  \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_log_probs);                                                                                         \
        EMU_DONE(name);                                                                                                \
    }
EMU_CTC(ctc_loss)
EMU_CTC(ctc_loss_backward)

static nnm_status emu_set_num_threads(nnm_env *env, void *state, int32_t n) {
    return g_emu_cpu->set_num_threads(env, ((emu_state *)state)->cpu, n);
}

#define EMU_BAG(name)                                                                                                  \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_embedding_bag_args *a) {                         \
        EMU_CALL(name);                                                                                                \
        nnm_embedding_bag_args b_ = *a;                                                                                \
        EMU_D(weight);                                                                                                 \
        EMU_D(indices);                                                                                                \
        EMU_D(offsets);                                                                                                \
        EMU_D(per_sample_weights);                                                                                     \
        EMU_D(out);                                                                                                    \
        EMU_D(arg);                                                                                                    \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_weight);                                                                                            \
        EMU_D(grad_per_sample_weights);                                                                                \
        EMU_DONE(name);                                                                                                \
    }
EMU_BAG(embedding_bag)
EMU_BAG(embedding_bag_backward)

#define EMU_LN(name)                                                                                                   \
    static nnm_status emu_##name(nnm_env *env, void *state, const nnm_layer_norm_args *a) {                            \
        EMU_CALL(name);                                                                                                \
        nnm_layer_norm_args b_ = *a;                                                                                   \
        EMU_D(x);                                                                                                      \
        EMU_D(residual);                                                                                               \
        EMU_D(weight);                                                                                                 \
        EMU_D(bias);                                                                                                   \
        EMU_D(y);                                                                                                      \
        EMU_D(mean);                                                                                                   \
        EMU_D(rstd);                                                                                                   \
        EMU_D(grad_out);                                                                                               \
        EMU_D(grad_x);                                                                                                 \
        EMU_D(grad_weight);                                                                                            \
        EMU_D(grad_bias);                                                                                              \
        EMU_DONE(name);                                                                                                \
    }
EMU_LN(layer_norm)
EMU_LN(layer_norm_backward)

static const nnm_backend_vtable *const emu_backends[] = {&g_emu_vt};
static const nnm_plugin_desc emu_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "emu",
    .description = "test backend: the cpu kernels on a device whose memory the host cannot read",
    .n_backends = 1,
    .backends = emu_backends,
};

/* g_emu_vt: every slot the cpu backend fills, wrapped. 1 when the cpu
 * backend fills a slot this file does not wrap (it is out of date). */
static int emu_fill(void) {
    const nnm_backend_vtable *cpu = g_emu_cpu;
    nnm_backend_vtable v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    v.flags = cpu->flags;
    v.name = "emu";
    v.version_major = cpu->version_major;
    v.version_minor = cpu->version_minor;
    v.version_patch = cpu->version_patch;
    v.device_type = EMU_DEVICE_TYPE;
    v.init = emu_init;
    v.shutdown = emu_shutdown;
    v.alloc = emu_alloc;
    v.free = emu_free;
    v.memcpy = emu_memcpy;
#define EMU_SET(slot, fn) v.slot = cpu->slot ? fn : NULL
    EMU_SET(fill, emu_fill_slot);
    EMU_SET(gemm, emu_gemm);
    EMU_SET(binary, emu_binary);
    EMU_SET(unary, emu_unary);
    EMU_SET(reduce, emu_reduce);
    EMU_SET(log_softmax, emu_log_softmax);
    EMU_SET(nll, emu_nll);
    EMU_SET(nll_backward, emu_nll_backward);
    EMU_SET(sgd_step, emu_sgd_step);
    EMU_SET(adam_step, emu_adam_step);
    EMU_SET(im2col, emu_im2col);
    EMU_SET(col2im, emu_col2im);
    EMU_SET(pool, emu_pool);
    EMU_SET(pool_backward, emu_pool_backward);
    EMU_SET(softmax, emu_softmax);
    EMU_SET(where, emu_where);
    EMU_SET(conv, emu_conv);
    EMU_SET(conv_backward, emu_conv_backward);
    EMU_SET(batch_norm, emu_batch_norm);
    EMU_SET(batch_norm_backward, emu_batch_norm_backward);
    EMU_SET(index_select, emu_index_select);
    EMU_SET(index_add, emu_index_add);
    EMU_SET(rnn_cell, emu_rnn_cell);
    EMU_SET(rnn_cell_backward, emu_rnn_cell_backward);
    EMU_SET(cast, emu_cast);
    EMU_SET(arg_reduce, emu_arg_reduce);
    EMU_SET(ctc_loss, emu_ctc_loss);
    EMU_SET(ctc_loss_backward, emu_ctc_loss_backward);
    EMU_SET(set_num_threads, emu_set_num_threads);
    EMU_SET(embedding_bag, emu_embedding_bag);
    EMU_SET(embedding_bag_backward, emu_embedding_bag_backward);
    EMU_SET(layer_norm, emu_layer_norm);
    EMU_SET(layer_norm_backward, emu_layer_norm_backward);
#undef EMU_SET
    g_emu_vt = v;
    /* every function slot after the header: filled here iff the cpu fills it */
    const size_t first = offsetof(nnm_backend_vtable, init);
    for (size_t off = first; off + sizeof(void *) <= sizeof v; off += sizeof(void *)) {
        void *mine = NULL, *theirs = NULL;
        memcpy(&mine, (const char *)&v + off, sizeof mine);
        if (off + sizeof theirs <= cpu->struct_size) memcpy(&theirs, (const char *)cpu + off, sizeof theirs);
        if ((mine == NULL) != (theirs == NULL)) return 1;
    }
    return 0;
}

/* emu as a backend with only the slots nothing falls back for (after
 * emu_setup, before a context registers it): the fused kernels the runtime
 * or the layers can compose (conv, batch_norm, index_select/index_add,
 * ctc_loss, embedding_bag, layer_norm) are NULL, so the composed paths run
 * on a device the host cannot read. docs/abi.md section 10 lists them. */
static inline void emu_minimal(void) {
    g_emu_vt.name = "emu_min";
    g_emu_vt.conv = NULL;
    g_emu_vt.conv_backward = NULL;
    g_emu_vt.batch_norm = NULL;
    g_emu_vt.batch_norm_backward = NULL;
    g_emu_vt.index_select = NULL;
    g_emu_vt.index_add = NULL;
    g_emu_vt.ctc_loss = NULL;
    g_emu_vt.ctc_loss_backward = NULL;
    g_emu_vt.set_num_threads = NULL;
    g_emu_vt.embedding_bag = NULL;
    g_emu_vt.embedding_bag_backward = NULL;
    g_emu_vt.layer_norm = NULL;
    g_emu_vt.layer_norm_backward = NULL;
}

/* 0 on success: dlopens the cpu plugin and builds the emu vtable. */
static inline int emu_setup(const char *cpu_plugin) {
    if (g_emu_cpu != NULL) return 0;
    g_emu_dl = dlopen(cpu_plugin, RTLD_NOW | RTLD_LOCAL);
    void *sym = g_emu_dl ? dlsym(g_emu_dl, NNM_PLUGIN_ENTRY_SYMBOL) : NULL;
    nnm_plugin_entry_fn entry = NULL;
    if (sym != NULL) memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer */
    const nnm_plugin_desc *d = entry ? entry(NNM_ABI_MAJOR, NNM_ABI_MINOR) : NULL;
    if (d == NULL || d->n_backends < 1 || d->backends[0]->device_type != NNM_DEVICE_CPU) return 1;
    g_emu_cpu = d->backends[0];
    if (g_emu_cpu->struct_size > sizeof(nnm_backend_vtable) || emu_fill() != 0) {
        g_emu_cpu = NULL;
        return 2;
    }
    return 0;
}

static inline void emu_teardown(void) {
    if (g_emu_dl) dlclose(g_emu_dl);
    g_emu_dl = NULL;
    g_emu_cpu = NULL;
}

#endif /* NNM_TESTS_EMU_BACKEND_H */
