// Per-row top-k: the k smallest entries of each row of a [rows, cols] matrix, in ascending order, with
// their columns. The nearest-neighbour target (diffusion/knn_target.h) runs it on the distances from every
// noisy sample to a whole dataset (cols up to 65,536 per chunk, k up to 4,096).
//
// One block per row, in three steps:
//  1. Radix select. Each value's order key (cuda/topk_math.h) is 32 bits; four passes over the row, one
//     per byte from the top, histogram the keys that share the prefix found so far and pick the byte in
//     which the k-th smallest key lies. After the fourth pass the k-th smallest key is known exactly, and
//     how many of the keys equal to it belong to the top k.
//  2. Selection. One more pass collects the keys below it (in any order: they are sorted next) and the
//     first of the keys equal to it by column (an ordered block-wide count), k entries in all, into
//     shared memory as key << 32 | column.
//  3. A bitonic sort of those k entries (padded to a power of two) orders them by key, then column:
//     exactly the CPU twin's order. The values written are read back from the row, so they are the
//     inputs bit for bit.
// The histograms add one count per warp and bin (lanes with equal bins found by __match_any_sync):
// distances to a dataset share their top byte, and one shared-memory atomic per lane would serialise.
#include <algorithm>
#include <string>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/topk_math.h"

namespace stf::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kBins = 256;  // one byte of the key per pass

// The number of threads before this one (in thread order) whose flag is set, and the block's total.
// Every thread of the block must call it.
__device__ unsigned block_count_before(bool flag, unsigned* warp_counts, unsigned& total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    unsigned before = __popc(ballot & ((1u << lane) - 1u));
    total = 0;
    for (int w = 0; w < warps; ++w) {
        if (w < warp) before += warp_counts[w];
        total += warp_counts[w];
    }
    __syncthreads();  // warp_counts is rewritten by the next call
    return before;
}

__global__ void topk_rows_kernel(int64_t rows, int64_t cols, int k, int padded, const float* __restrict__ x,
                                 float* __restrict__ values, int64_t* __restrict__ indices) {
    extern __shared__ unsigned long long picks[];  // [padded]: key << 32 | column
    __shared__ unsigned hist[kBins];
    __shared__ unsigned warp_counts[32];
    __shared__ unsigned s_prefix, s_wanted, s_below;
    const int lane = threadIdx.x % 32;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        // 1. The k-th smallest key: `wanted` is its rank among the keys that share `prefix` under `mask`.
        unsigned prefix = 0, mask = 0, wanted = static_cast<unsigned>(k);
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = threadIdx.x; i < kBins; i += blockDim.x) hist[i] = 0;
            __syncthreads();
            // Every lane runs the same number of iterations, so whole warps reach __match_any_sync.
            for (int64_t j0 = 0; j0 < cols; j0 += blockDim.x) {
                const int64_t j = j0 + threadIdx.x;
                unsigned bin = kBins;  // no bin: out of range or not under the prefix
                if (j < cols) {
                    const unsigned key = topk::order_key(xr[j]);
                    if ((key & mask) == prefix) bin = (key >> shift) & (kBins - 1);
                }
                const unsigned peers = __match_any_sync(0xffffffffu, bin);
                if (bin < kBins && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], static_cast<unsigned>(__popc(peers)));
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                unsigned below = 0;
                int digit = 0;
                while (below + hist[digit] < wanted) below += hist[digit++];
                s_prefix = prefix | (static_cast<unsigned>(digit) << shift);
                s_wanted = wanted - below;
            }
            __syncthreads();
            prefix = s_prefix;
            wanted = s_wanted;
            mask |= static_cast<unsigned>(kBins - 1) << shift;
        }
        // 2. k - wanted keys lie below `prefix`; the first `wanted` keys equal to it by column complete the k.
        if (threadIdx.x == 0) s_below = 0;
        __syncthreads();
        const unsigned first_equal = static_cast<unsigned>(k) - wanted;
        unsigned equal_seen = 0;
        for (int64_t j0 = 0; j0 < cols; j0 += blockDim.x) {
            const int64_t j = j0 + threadIdx.x;
            const unsigned key = j < cols ? topk::order_key(xr[j]) : 0u;
            const unsigned long long entry = (static_cast<unsigned long long>(key) << 32) | static_cast<unsigned long long>(j);
            if (j < cols && key < prefix) picks[atomicAdd(&s_below, 1u)] = entry;
            unsigned total;
            const bool equal = j < cols && key == prefix;
            const unsigned before = block_count_before(equal, warp_counts, total);
            if (equal && equal_seen + before < wanted) picks[first_equal + equal_seen + before] = entry;
            equal_seen += total;
        }
        for (int i = k + threadIdx.x; i < padded; i += blockDim.x) picks[i] = ~0ull;
        __syncthreads();
        // 3. Bitonic sort, ascending.
        for (int size = 2; size <= padded; size <<= 1)
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int i = threadIdx.x; i < padded / 2; i += blockDim.x) {
                    const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                    const bool ascending = (lo & size) == 0;
                    const unsigned long long a = picks[lo], b = picks[hi];
                    if ((a > b) == ascending) picks[lo] = b, picks[hi] = a;
                }
                __syncthreads();
            }
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            const int64_t col = static_cast<int64_t>(picks[i] & 0xffffffffull);
            values[row * k + i] = xr[col];
            indices[row * k + i] = col;
        }
        __syncthreads();  // picks and the shared counters are reused by the block's next row
    }
}

}  // namespace

void topk_rows(int64_t rows, int64_t cols, int64_t k, const float* x, float* values, int64_t* indices) {
    if (rows <= 0) return;
    if (k < 1 || k > cols || k > topk::kMaxK || cols >= (int64_t{1} << 31))
        throw std::runtime_error("topk_rows: need 1 <= k <= min(cols, " + std::to_string(topk::kMaxK) +
                                 ") and cols < 2^31, got k " + std::to_string(k) + ", cols " + std::to_string(cols));
    int padded = 1;
    while (padded < k) padded <<= 1;
    topk_rows_kernel<<<static_cast<unsigned>(std::min<int64_t>(rows, 65536)), kThreads,
                       static_cast<size_t>(padded) * sizeof(unsigned long long), static_cast<cudaStream_t>(stream())>>>(
        rows, cols, static_cast<int>(k), padded, x, values, indices);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
