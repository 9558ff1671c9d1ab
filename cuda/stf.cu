// Squared distances between b noisy samples y [b, d] and n reference images x [n, d]: the one kernel
// of the STF target that is not a GEMM or elementwise. It is tiled like a GEMM (a 64 x 64 block of
// outputs, 16 features of y and x staged in shared memory per step, 4 x 4 outputs per thread) but
// accumulates (y - x)^2 instead of y * x, so distances are exact even when they are tiny. Each 16-feature
// step is summed in float and the steps in double: with d = 3072 and distances near 2000, a float running
// sum would be off by ~1e-3, which 1 / (2 sigma^2) turns into visibly different softmax weights.
#include <algorithm>

#include "cuda/block_reduce.cuh"
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {

namespace {

constexpr int kTile = 64;      // outputs per block edge
constexpr int kDepth = 16;     // features staged per step
constexpr int kThreads = 256;  // 16 x 16 threads, each 4 x 4 outputs

// Block (x, y, z) computes a 64 x 64 tile of outputs over the features of slice z (split-K), writing
// its partial sums to out + z * b * n.
__global__ void sq_distances_kernel(int64_t b, int64_t n, int64_t d, int64_t slice_len, const float* __restrict__ y,
                                    const float* __restrict__ x, float* __restrict__ out) {
    // Staged transposed ([feature][row]) so the inner loop reads rows of a thread's outputs; +1 pads banks.
    __shared__ float ys[kDepth][kTile + 1];
    __shared__ float xs[kDepth][kTile + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile, col0 = static_cast<int64_t>(blockIdx.x) * kTile;
    const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * slice_len, k_end = min(d, k_begin + slice_len);
    out += static_cast<int64_t>(blockIdx.z) * b * n;
    double acc[4][4] = {};
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kDepth) {
        // Each thread loads 4 features of y and 4 of x; consecutive threads read consecutive features.
        for (int l = threadIdx.x; l < kTile * kDepth; l += kThreads) {
            int r = l / kDepth, kk = l % kDepth;
            int64_t k = k0 + kk, yi = row0 + r, xj = col0 + r;
            // Out-of-range features load 0 into both, adding (0 - 0)^2 = 0.
            ys[kk][r] = (yi < b && k < k_end) ? y[yi * d + k] : 0.f;
            xs[kk][r] = (xj < n && k < k_end) ? x[xj * d + k] : 0.f;
        }
        __syncthreads();
        float part[4][4] = {};
#pragma unroll
        for (int kk = 0; kk < kDepth; ++kk) {
            float a[4], c[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = ys[kk][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) c[j] = xs[kk][tx * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    float diff = a[i] - c[j];
                    part[i][j] = fmaf(diff, diff, part[i][j]);
                }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] += part[i][j];
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int64_t r = row0 + ty * 4 + i, c = col0 + tx * 4 + j;
            if (r < b && c < n) out[r * n + c] = static_cast<float>(acc[i][j]);
        }
}

// Adds the slices' partial distances in double: out[i] = sum_z partial[z][i].
__global__ void sum_slices_kernel(int64_t count, int slices, const float* __restrict__ partial, float* __restrict__ out) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        double total = 0;
        for (int z = 0; z < slices; ++z) total += partial[z * count + i];
        out[i] = static_cast<float>(total);
    }
}

// One chunk of the streamed softmax, one block per row (cuda/kernels.h): the row's max, then its
// weights and their sums, then the rescale of the row's accumulator.
__global__ void stf_softmax_chunk_kernel(int64_t b, int64_t len, int64_t d, const float* __restrict__ coef,
                                         float* __restrict__ dist, float* __restrict__ row_max,
                                         float* __restrict__ weight_sum, float* __restrict__ weight_sq_sum,
                                         float* __restrict__ acc) {
    for (int64_t i = blockIdx.x; i < b; i += gridDim.x) {
        float* row = dist + i * len;
        const float scale = coef[i], old_max = row_max[i];
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            const float logit = row[j] * scale;
            row[j] = logit;
            m = fmaxf(m, logit);
        }
        m = fmaxf(block_reduce_all<ReduceOp::Max>(m), old_max);
        const float r = expf(old_max - m);
        float2 sums = make_float2(0.0f, 0.0f);  // sum of the weights, of their squares
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            const float w = expf(row[j] - m);
            row[j] = w;
            sums.x += w;
            sums.y += w * w;
        }
        sums = block_sum(sums);
        for (int64_t k = threadIdx.x; k < d; k += blockDim.x) acc[i * d + k] *= r;
        if (threadIdx.x == 0) {
            weight_sum[i] = weight_sum[i] * r + sums.x;
            weight_sq_sum[i] = weight_sq_sum[i] * (r * r) + sums.y;
            row_max[i] = m;
        }
    }
}

}  // namespace

void stf_softmax_chunk(int64_t b, int64_t len, int64_t d, const float* coef, float* dist, float* row_max,
                       float* weight_sum, float* weight_sq_sum, float* acc) {
    if (b <= 0) return;
    stf_softmax_chunk_kernel<<<static_cast<unsigned>(std::min<int64_t>(b, 65536)), kThreads, 0,
                               static_cast<cudaStream_t>(stream())>>>(b, len, d, coef, dist, row_max, weight_sum,
                                                                      weight_sq_sum, acc);
    STF_CUDA_CHECK_LAUNCH();
}

void sq_distances(int64_t b, int64_t n, int64_t d, const float* y, const float* x, float* out) {
    if (b == 0 || n == 0) return;
    cudaStream_t s = static_cast<cudaStream_t>(stream());
    static const int sms = [] {
        int device = 0, count = 0;
        STF_CUDA_CHECK(cudaGetDevice(&device));
        STF_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
        return count;
    }();
    // A training-size problem (b 64, n 1024) has only 16 output tiles: split the features over enough
    // slices to give every multiprocessor about two blocks, keeping at least 8 staging steps per slice.
    int64_t tiles = ((n + kTile - 1) / kTile) * ((b + kTile - 1) / kTile);
    int64_t slices = std::max<int64_t>(1, std::min<int64_t>((2 * sms + tiles - 1) / tiles, d / (8 * kDepth)));
    int64_t slice_len = (d + slices - 1) / slices;
    slice_len = (slice_len + kDepth - 1) / kDepth * kDepth;
    slices = (d + slice_len - 1) / slice_len;
    dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((b + kTile - 1) / kTile),
              static_cast<unsigned>(slices));
    if (slices == 1) {
        sq_distances_kernel<<<grid, kThreads, 0, s>>>(b, n, d, slice_len, y, x, out);
        STF_CUDA_CHECK_LAUNCH();
        return;
    }
    float* partial = static_cast<float*>(malloc(static_cast<size_t>(slices * b * n) * sizeof(float)));
    sq_distances_kernel<<<grid, kThreads, 0, s>>>(b, n, d, slice_len, y, x, partial);
    STF_CUDA_CHECK_LAUNCH();
    int64_t count = b * n;
    sum_slices_kernel<<<static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 65536)), 256, 0, s>>>(
        count, static_cast<int>(slices), partial, out);
    STF_CUDA_CHECK_LAUNCH();
    free(partial);  // stream-ordered: the caching allocator hands it out again only to later work
}

}  // namespace stf::cuda
