/* plugins/cuda/cuda_kernels.h - the interface between the cuda backend's C
 * side (cuda*.c: validation, memory, cuBLAS) and its elementwise kernels
 * (kernels.cu). Other kernel families declare their launchers in a header
 * of their own beside their .cu file.
 *
 * Private to the plugin: nothing here is exported from nnm_cuda.so. Plain C,
 * so both gcc and nvcc compile it.
 */
#ifndef NNM_CUDA_KERNELS_H
#define NNM_CUDA_KERNELS_H

#include <nnmod/plugin.h>

#include "strided_layout.h"

#include <cuda_runtime_api.h> /* cudaStream_t; plain C */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most operands one elementwise kernel reads or writes (out, a, b). */
#define NNM__CUDA_MAX_OPS NNM_LAYOUT_MAX_OPS

/* Up to three operands iterated together over one shape, as the cpu backend
 * does (plugins/common/strided_layout.h); operand 0 is always the output.
 * Passed to kernels by value. */
typedef nnm_strided_layout nnm__cuda_layout;

/* Each launcher runs one kernel on `stream` (of the current device) over
 * `numel` (> 0) elements of layout L and returns the launch status (a
 * cudaError_t value; 0 is success). Pointers are the first elements of each
 * operand (byte_offset applied). They never synchronise. */

/* out[i] = value. L has one operand. */
int nnm__cuda_launch_fill(cudaStream_t stream, const nnm__cuda_layout *L, int64_t numel, float *out,
                          float value);
/* out[i] = op(x[i]) for enum nnm_unary_op `op` (validated by the caller);
 * alpha is used by NNM_UNARY_SCALE. L has two operands: out, x. */
int nnm__cuda_launch_unary(cudaStream_t stream, int32_t op, const nnm__cuda_layout *L,
                           int64_t numel, float *out, const float *x, float alpha);
/* out[i] = op(a[i], b[i]) for enum nnm_binary_op `op` (validated by the
 * caller). L has three operands: out, a, b. */
int nnm__cuda_launch_binary(cudaStream_t stream, int32_t op, const nnm__cuda_layout *L,
                            int64_t numel, float *out, const float *a, const float *b);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_KERNELS_H */
