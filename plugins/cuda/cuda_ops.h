/* plugins/cuda/cuda_ops.h - the cuda backend's op families beyond fill,
 * unary, binary and gemm: the checks they share (cuda_ops.c) and every slot
 * they implement (one cuda_<family>.c each, its kernels in <family>.cu
 * behind cuda_<family>_kernels.h, the per-element bodies in
 * cuda_<family>_body.h; see cuda_hd.h).
 *
 * Each slot validates its arguments as the cpu backend's slot does (same
 * checks, same messages with "cuda" for "cpu"), except for checks that read
 * tensor VALUES the runtime already checked (indices, offsets): device
 * memory is not readable from the host, so the kernels only guard their
 * accesses there (an out-of-range index reads and writes nothing). nll's
 * targets are not checked by the runtime: nll and nll_backward check them
 * on the device and wait for the answer (one synchronisation per call).
 *
 * Private to the plugin.
 */
#ifndef NNM_CUDA_OPS_H
#define NNM_CUDA_OPS_H

#include "cuda_internal.h"

#include <string.h>

/* The dtypes the ops take (cast takes all of them). */
enum {
    CUDA_DT_F32,
    CUDA_DT_I64,
    CUDA_DT_I32,
    CUDA_DT_U8,
    CUDA_DT_BOOL,
    CUDA_DT_BAD,
    CUDA_DT_ANY = -1 /* cuda_check_desc_dt: any of the above but BAD */
};
int cuda_dtype_kind(nnm_dtype dt);
/* Bytes per element of a kind (not BAD). */
size_t cuda_dtype_size(int kind);

/* cuda_check_desc with the dtype `kind` (CUDA_DT_F32, CUDA_DT_I64, ... or
 * CUDA_DT_ANY) instead of f32 only; byte_offset must be a multiple of the
 * element size. */
nnm_status cuda_check_desc_dt(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                              const nnm_tensor_desc *d, int kind, int32_t *id, int64_t *numel);
/* Row-major contiguous (the strides of size-1 dims do not matter). */
int cuda_is_contiguous(const nnm_tensor_desc *d);
/* NNM_E_INVALID "cuda <op>: <what> tensor must be contiguous". */
nnm_status cuda_err_contiguous(nnm_env *env, const char *op, const char *what);
/* The first element's byte, byte_offset applied; NULL for NULL data. */
static inline void *cuda_bytes(const nnm_tensor_desc *d) {
    return d->data != NULL ? (void *)((char *)d->data + d->byte_offset) : NULL;
}
/* The CUDA device of the device memory at p (the slots that take raw
 * pointers: sgd_step, adam_step, rnn_cell): NNM_E_DEVICE unless p is device
 * memory on one of this machine's devices. Makes that device current. */
nnm_status cuda_raw_device(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                           const void *p, int32_t *id);
/* Copies `bytes` from device memory to the host after the work queued on
 * cuda_stream(s, id) ran (waits for it). */
nnm_status cuda_read_back(nnm_env *env, cuda_state *s, int32_t id, const char *op, void *host,
                          const void *dev, size_t bytes);

/* ---- slots --------------------------------------------------------------- */

/* cuda_elementwise.c (where beside unary and binary) */
nnm_status cuda_where(nnm_env *env, void *state, const nnm_where_args *args);
/* cuda_reduce.c */
nnm_status cuda_reduce(nnm_env *env, void *state, const nnm_reduce_args *args);
/* cuda_softmax.c */
nnm_status cuda_softmax(nnm_env *env, void *state, const nnm_softmax_args *args);
nnm_status cuda_log_softmax(nnm_env *env, void *state, const nnm_log_softmax_args *args);
/* cuda_nll.c */
nnm_status cuda_nll(nnm_env *env, void *state, const nnm_nll_args *args);
nnm_status cuda_nll_backward(nnm_env *env, void *state, const nnm_nll_backward_args *args);
/* cuda_optim.c */
nnm_status cuda_sgd_step(nnm_env *env, void *state, const nnm_sgd_args *args);
nnm_status cuda_adam_step(nnm_env *env, void *state, const nnm_adam_args *args);
/* cuda_cast.c */
nnm_status cuda_cast(nnm_env *env, void *state, const nnm_cast_args *args);
nnm_status cuda_arg_reduce(nnm_env *env, void *state, const nnm_arg_reduce_args *args);
/* cuda_index.c */
nnm_status cuda_index_select(nnm_env *env, void *state, const nnm_index_args *args);
nnm_status cuda_index_add(nnm_env *env, void *state, const nnm_index_args *args);
/* cuda_im2col.c */
nnm_status cuda_im2col(nnm_env *env, void *state, const nnm_im2col_args *args);
nnm_status cuda_col2im(nnm_env *env, void *state, const nnm_im2col_args *args);
/* cuda_layer_norm.c */
nnm_status cuda_layer_norm(nnm_env *env, void *state, const nnm_layer_norm_args *args);
nnm_status cuda_layer_norm_backward(nnm_env *env, void *state, const nnm_layer_norm_args *args);
/* cuda_embedding_bag.c */
nnm_status cuda_embedding_bag(nnm_env *env, void *state, const nnm_embedding_bag_args *args);
nnm_status cuda_embedding_bag_backward(nnm_env *env, void *state,
                                       const nnm_embedding_bag_args *args);
/* cuda_rnn.c */
nnm_status cuda_rnn_cell(nnm_env *env, void *state, const nnm_rnn_cell_args *args);
nnm_status cuda_rnn_cell_backward(nnm_env *env, void *state, const nnm_rnn_cell_args *args);
/* cuda_ctc.c */
nnm_status cuda_ctc_loss(nnm_env *env, void *state, const nnm_ctc_args *args);
nnm_status cuda_ctc_loss_backward(nnm_env *env, void *state, const nnm_ctc_args *args);
/* cuda_ops.c: the kernels pick their own launch sizes; the count is noted only */
nnm_status cuda_set_num_threads(nnm_env *env, void *state, int32_t n);

#endif /* NNM_CUDA_OPS_H */
