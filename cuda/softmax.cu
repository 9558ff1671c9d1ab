// Row-wise softmax and log_softmax over a contiguous [rows, cols] array, and their backward passes.
//
//   softmax:      y = exp(x - m) / s,    with m = max(x) and s = sum(exp(x - m)) over the row
//   log_softmax:  y = x - m - log(s)
// Subtracting the row max keeps exp() from overflowing: every exponent is <= 0, and the largest is 1.
//
// One row is handled by a group of threads that cooperate through reductions: a warp when the row is
// short (up to 1024 columns, so at most 32 loads per lane), the whole block when it is long. The
// forward pass reads the row three times (max, sum, write); after the first pass it is usually in L1
// or L2. Each element is read and written by the same thread after the row's reductions are complete,
// so y may alias x (and dx may alias dy).
#include <algorithm>
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

constexpr int kWarpThreads = 256;  // block size when each warp owns a row (8 rows per block)
constexpr int kBlockThreads = 512;  // block size when the block owns a row
constexpr int64_t kWarpColsMax = 1024;
constexpr int64_t kMaxBlocks = 65536;


// The threads sharing a row: a warp (kWarpPerRow) or the block. Describes this thread's place in it.
template <bool kWarpPerRow> struct RowGroup {
    int64_t first_row, row_step;  // rows first_row, first_row + row_step, ... belong to this group
    int lane, size;               // this thread's index within the group, and the group's size

    __device__ RowGroup() {
        if constexpr (kWarpPerRow) {
            first_row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
            row_step = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
            lane = threadIdx.x % kWarp;
            size = kWarp;
        } else {
            first_row = blockIdx.x;
            row_step = gridDim.x;
            lane = threadIdx.x;
            size = blockDim.x;
        }
    }
    template <ReduceOp op> __device__ float reduce(float v) const {
        if constexpr (kWarpPerRow) return warp_reduce<op>(v);
        else return block_reduce_all<op>(v);
    }
};

// The row loop's bounds are the same for every thread of a group, so all of them reach the reductions.
template <bool kWarpPerRow>
__global__ void softmax_kernel(int64_t rows, int64_t cols, float* y, const float* x, bool log) {
    RowGroup<kWarpPerRow> g;
    for (int64_t row = g.first_row; row < rows; row += g.row_step) {
        const float* xr = x + row * cols;
        float* yr = y + row * cols;

        float m = identity<ReduceOp::Max>();
        for (int64_t k = g.lane; k < cols; k += g.size) m = combine<ReduceOp::Max>(m, xr[k]);
        m = g.template reduce<ReduceOp::Max>(m);

        float s = 0.0f;
        for (int64_t k = g.lane; k < cols; k += g.size) s += expf(xr[k] - m);
        s = g.template reduce<ReduceOp::Sum>(s);

        if (log) {
            float log_s = logf(s);
            for (int64_t k = g.lane; k < cols; k += g.size) yr[k] = xr[k] - m - log_s;
        } else {
            float inv_s = 1.0f / s;
            for (int64_t k = g.lane; k < cols; k += g.size) yr[k] = expf(xr[k] - m) * inv_s;
        }
    }
}

// softmax:      dx = y * (dy - sum(dy * y))
// log_softmax:  dx = dy - exp(y) * sum(dy)      (exp(y) is the softmax)
template <bool kWarpPerRow>
__global__ void softmax_backward_kernel(int64_t rows, int64_t cols, float* dx, const float* dy, const float* y,
                                        bool log) {
    RowGroup<kWarpPerRow> g;
    for (int64_t row = g.first_row; row < rows; row += g.row_step) {
        const float* dyr = dy + row * cols;
        const float* yr = y + row * cols;
        float* dxr = dx + row * cols;

        float acc = 0.0f;
        for (int64_t k = g.lane; k < cols; k += g.size) acc += log ? dyr[k] : dyr[k] * yr[k];
        acc = g.template reduce<ReduceOp::Sum>(acc);

        if (log)
            for (int64_t k = g.lane; k < cols; k += g.size) dxr[k] = dyr[k] - expf(yr[k]) * acc;
        else
            for (int64_t k = g.lane; k < cols; k += g.size) dxr[k] = yr[k] * (dyr[k] - acc);
    }
}

// Launches kernel<true> (a warp per row) or kernel<false> (a block per row) over `rows` rows.
template <class WarpKernel, class BlockKernel, class... Args>
void launch_rows(int64_t rows, int64_t cols, WarpKernel warp_kernel, BlockKernel block_kernel, Args... args) {
    cudaStream_t s = current_stream();
    if (cols <= kWarpColsMax) {
        constexpr int kRowsPerBlock = kWarpThreads / kWarp;
        int blocks = static_cast<int>(std::min((rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks));
        warp_kernel<<<blocks, kWarpThreads, 0, s>>>(rows, cols, args...);
    } else {
        int blocks = static_cast<int>(std::min(rows, kMaxBlocks));
        block_kernel<<<blocks, kBlockThreads, 0, s>>>(rows, cols, args...);
    }
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax_rows(int64_t rows, int64_t cols, float* y, const float* x, bool log) {
    if (rows <= 0 || cols <= 0) return;
    launch_rows(rows, cols, softmax_kernel<true>, softmax_kernel<false>, y, x, log);
}

void softmax_rows_backward(int64_t rows, int64_t cols, float* dx, const float* dy, const float* y, bool log) {
    if (rows <= 0 || cols <= 0) return;
    launch_rows(rows, cols, softmax_backward_kernel<true>, softmax_backward_kernel<false>, dx, dy, y, log);
}

}  // namespace stf::cuda
