/* plugins/cuda/cuda_launch.cuh - what the op families' .cu files share: the
 * block size, the grid for n items, and the grid-stride loop every kernel is
 * (the body it calls comes from a plain-C cuda_<family>_body.h). 64-bit
 * indices throughout. Private to the plugin; CUDA C++ only. */
#ifndef NNM_CUDA_LAUNCH_CUH
#define NNM_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include <stdint.h>

namespace nnm_cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover the rest */

/* Blocks of kThreads for n > 0 items (at least 1). */
inline unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    if (b < 1)
        b = 1;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

} // namespace nnm_cuda

/* for (i = this thread's first item; i < n; i += all threads) */
#define NNM_CUDA_GRID_LOOP(i, n)                                                         \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);            \
         i += (int64_t)blockDim.x * gridDim.x)

/* Launches kernel K over n items on stream st and returns the launch status
 * as int (0 = success); nothing for n <= 0. */
#define NNM_CUDA_LAUNCH(K, n, st, ...)                                                   \
    (((n) <= 0) ? 0                                                                      \
                : ((K)<<<nnm_cuda::blocks_for(n), nnm_cuda::kThreads, 0, (st)>>>(__VA_ARGS__), \
                   (int)cudaGetLastError()))

#endif /* NNM_CUDA_LAUNCH_CUH */
