// Random fills from the counter-based Philox generator in cuda/philox.h.
//
// Element i is a pure function of (i, offset, seed), so threads need no shared generator state and
// any thread may compute any element: the GPU and the CPU twin produce the same stream whatever the
// launch shape. Each thread evaluates philox::uniform / philox::normal for its own elements, the
// very functions the CPU uses. (Four neighbouring elements share one Philox block, which each of
// their threads recomputes; ten rounds of integer multiplies are cheap next to the memory write.)
#include <algorithm>

#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/philox.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

// lo + (hi - lo) * u as one fused multiply-add: a single rounding, written out so the result does not
// depend on whether the compiler contracts the expression.
__global__ void uniform_kernel(int64_t n, float* out, float lo, float hi, uint64_t seed, uint64_t offset,
                               uint64_t row_len, uint64_t row_stride, const uint64_t* offset_base) {
    offset = philox::stream_offset(offset, offset_base);
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        philox::RowElement e = philox::row_element(static_cast<uint64_t>(i), offset, row_len, row_stride);
        out[i] = fmaf(hi - lo, philox::uniform(e.index, e.offset, seed), lo);
    }
}

__global__ void normal_kernel(int64_t n, float* out, float mean, float std, uint64_t seed, uint64_t offset,
                              uint64_t row_len, uint64_t row_stride, const uint64_t* offset_base) {
    offset = philox::stream_offset(offset, offset_base);
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        philox::RowElement e = philox::row_element(static_cast<uint64_t>(i), offset, row_len, row_stride);
        out[i] = fmaf(std, philox::normal(e.index, e.offset, seed), mean);
    }
}

__global__ void bernoulli_kernel(int64_t n, float* out, float p, uint64_t seed, uint64_t offset,
                                 uint64_t row_len, uint64_t row_stride, const uint64_t* offset_base) {
    offset = philox::stream_offset(offset, offset_base);
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        philox::RowElement e = philox::row_element(static_cast<uint64_t>(i), offset, row_len, row_stride);
        out[i] = philox::uniform(e.index, e.offset, seed) < p ? 1.0f : 0.0f;
    }
}

}  // namespace

void uniform(int64_t n, float* out, float lo, float hi, uint64_t seed, uint64_t offset, int64_t row_len,
             uint64_t row_stride, const uint64_t* offset_base) {
    if (n <= 0) return;
    const auto len = static_cast<uint64_t>(row_len);
    uniform_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, lo, hi, seed, offset, len,
                                                                           row_stride, offset_base);
    STF_CUDA_CHECK_LAUNCH();
}

void normal(int64_t n, float* out, float mean, float std, uint64_t seed, uint64_t offset, int64_t row_len,
            uint64_t row_stride, const uint64_t* offset_base) {
    if (n <= 0) return;
    const auto len = static_cast<uint64_t>(row_len);
    normal_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, mean, std, seed, offset, len,
                                                                          row_stride, offset_base);
    STF_CUDA_CHECK_LAUNCH();
}

void bernoulli(int64_t n, float* out, float p, uint64_t seed, uint64_t offset, int64_t row_len,
               uint64_t row_stride, const uint64_t* offset_base) {
    if (n <= 0) return;
    const auto len = static_cast<uint64_t>(row_len);
    bernoulli_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, p, seed, offset, len,
                                                                             row_stride, offset_base);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
