// Sum or max over the middle dimension of a contiguous [outer, r, inner] array, giving [outer, inner].
// Element (o, k, j) sits at x[(o * r + k) * inner + j].
//
// Which threads cooperate on one output depends on where the reduced elements lie in memory:
//   inner == 1: each output reduces a contiguous row of r floats. A warp (short rows) or a block
//     (long rows) walks the row, consecutive lanes reading consecutive floats, and the partial results
//     are combined with a tree of warp shuffles.
//   inner > 1: the r elements of one output are `inner` floats apart, but 32 neighbouring outputs
//     (j .. j+31) are neighbours in memory. So threadIdx.x runs along inner, which keeps the loads
//     coalesced, and threadIdx.y splits r; the 8 partial results per output meet in shared memory.
//
// Long reductions are cut into chunks that separate blocks reduce in parallel, writing partial
// results [outer, chunks, inner]; reducing those is the same problem again, with r = chunks. Chunking
// keeps the GPU busy when there are few outputs (a loss summed to one number), and keeps the run of
// sequential float additions in each thread short, which bounds rounding error.
#include <algorithm>
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

constexpr int kThreads = 256;             // block size of the row kernels
constexpr int64_t kWarpRowMax = 1024;     // rows up to this length get one warp each
constexpr int64_t kRowChunk = 4096;       // longer rows are cut into chunks of this many floats
constexpr int kInnerX = 32, kInnerY = 8;  // block shape of the inner > 1 kernel
constexpr int64_t kInnerChunk = 512;      // r is cut into chunks of this many rows when inner > 1
constexpr int64_t kMaxBlocks = 65536;     // grid-stride loops take over beyond this

__host__ __device__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int grid_for(int64_t tasks) { return static_cast<int>(std::min(tasks, kMaxBlocks)); }

// ---- inner == 1, short rows: one warp per row ----------------------------------------------------

template <ReduceOp op> __global__ void reduce_rows_warp_kernel(int64_t rows, int64_t r, float* out, const float* x) {
    int lane = threadIdx.x % kWarp;
    int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarp;
    int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
    // `row` is the same for all lanes of a warp, so the whole warp enters the shuffles together.
    for (int64_t row = warp; row < rows; row += warps) {
        const float* xr = x + row * r;
        float acc = identity<op>();
        for (int64_t k = lane; k < r; k += kWarp) acc = combine<op>(acc, xr[k]);
        acc = warp_reduce<op>(acc);
        if (lane == 0) out[row] = acc;
    }
}

// ---- inner == 1, long rows: one block per chunk of a row -----------------------------------------
// Task t reduces chunk (t % chunks) of row (t / chunks) and writes out[t], so `out` is [rows, chunks].

template <ReduceOp op>
__global__ void reduce_rows_block_kernel(int64_t rows, int64_t r, int64_t chunks, int64_t chunk_len, float* out,
                                         const float* x) {
    // `task` is the same for the whole block, so every thread reaches block_reduce's barriers.
    for (int64_t task = blockIdx.x; task < rows * chunks; task += gridDim.x) {
        int64_t row = task / chunks, chunk = task % chunks;
        int64_t begin = chunk * chunk_len, end = min(r, begin + chunk_len);
        const float* xr = x + row * r;
        float acc = identity<op>();
        for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) acc = combine<op>(acc, xr[k]);
        acc = block_reduce_all<op>(acc);
        if (threadIdx.x == 0) out[task] = acc;
    }
}

// ---- inner > 1: a 32 x 8 block per (outer, chunk of r, 32 consecutive inner positions) -----------
// Writes out[(o * chunks + chunk) * inner + j], i.e. out is [outer, chunks, inner].

template <ReduceOp op>
__global__ void reduce_inner_kernel(int64_t outer, int64_t r, int64_t inner, int64_t chunks, int64_t chunk_len,
                                    float* out, const float* x) {
    __shared__ float partial[kInnerY][kInnerX];
    int64_t tiles = ceil_div(inner, kInnerX);  // groups of 32 inner positions
    int64_t tasks = outer * chunks * tiles;
    for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
        int64_t tile = task % tiles, oc = task / tiles;  // oc = o * chunks + chunk
        int64_t o = oc / chunks, chunk = oc % chunks;
        int64_t j = tile * kInnerX + threadIdx.x;
        int64_t begin = chunk * chunk_len, end = min(r, begin + chunk_len);
        float acc = identity<op>();
        if (j < inner) {
            const float* xo = x + o * r * inner + j;
            for (int64_t k = begin + threadIdx.y; k < end; k += kInnerY) acc = combine<op>(acc, xo[k * inner]);
        }
        partial[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && j < inner) {
            // Lanes read consecutive words of each row of `partial`: no bank conflicts.
            for (int t = 1; t < kInnerY; ++t) acc = combine<op>(acc, partial[t][threadIdx.x]);
            out[oc * inner + j] = acc;
        }
        __syncthreads();  // `partial` is rewritten by the next task
    }
}

// Frees a temporary device buffer when the launcher returns (or throws). Freeing right after queueing
// the kernels that use it is safe: the allocator's next user is queued behind them on the same stream.
struct TempBuffer {
    float* ptr;
    explicit TempBuffer(int64_t n) : ptr(static_cast<float*>(stf::cuda::malloc(static_cast<size_t>(n) * sizeof(float)))) {}
    ~TempBuffer() { stf::cuda::free(ptr); }
    TempBuffer(const TempBuffer&) = delete;
    TempBuffer& operator=(const TempBuffer&) = delete;
};

template <ReduceOp op> void reduce_impl(int64_t outer, int64_t r, int64_t inner, float* out, const float* x) {
    cudaStream_t s = current_stream();
    if (inner == 1) {
        if (r <= kWarpRowMax) {
            constexpr int kRowsPerBlock = kThreads / kWarp;
            reduce_rows_warp_kernel<op><<<grid_for(ceil_div(outer, kRowsPerBlock)), kThreads, 0, s>>>(outer, r, out, x);
            STF_CUDA_CHECK_LAUNCH();
            return;
        }
        int64_t chunks = ceil_div(r, kRowChunk);
        if (chunks == 1) {
            reduce_rows_block_kernel<op><<<grid_for(outer), kThreads, 0, s>>>(outer, r, 1, r, out, x);
            STF_CUDA_CHECK_LAUNCH();
            return;
        }
        TempBuffer partial(outer * chunks);
        reduce_rows_block_kernel<op><<<grid_for(outer * chunks), kThreads, 0, s>>>(outer, r, chunks, kRowChunk,
                                                                                    partial.ptr, x);
        STF_CUDA_CHECK_LAUNCH();
        reduce_impl<op>(outer, chunks, 1, out, partial.ptr);
        return;
    }
    dim3 block(kInnerX, kInnerY);
    int64_t tiles = ceil_div(inner, kInnerX);
    int64_t chunks = ceil_div(r, kInnerChunk);
    if (chunks <= 1) {  // also r == 0: every output gets the identity
        reduce_inner_kernel<op><<<grid_for(outer * tiles), block, 0, s>>>(outer, r, inner, 1, r, out, x);
        STF_CUDA_CHECK_LAUNCH();
        return;
    }
    TempBuffer partial(outer * chunks * inner);
    reduce_inner_kernel<op><<<grid_for(outer * chunks * tiles), block, 0, s>>>(outer, r, inner, chunks, kInnerChunk,
                                                                                partial.ptr, x);
    STF_CUDA_CHECK_LAUNCH();
    reduce_impl<op>(outer, chunks, inner, out, partial.ptr);
}

}  // namespace

void reduce(ReduceOp op, int64_t outer, int64_t r, int64_t inner, float* out, const float* x) {
    if (outer <= 0 || inner <= 0) return;  // no outputs
    if (op == ReduceOp::Sum)
        reduce_impl<ReduceOp::Sum>(outer, r, inner, out, x);
    else
        reduce_impl<ReduceOp::Max>(outer, r, inner, out, x);
}

}  // namespace stf::cuda
