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

// ---- version 1 (kept as a lesson; bench_kernels --version 1) -------------------------------------
// sq_distances_v1: the same 64 x 64 tile kernel over all d features, one block per tile and no split.
// Version 2 (above) splits the features over blockIdx.z when there are few tiles: at the training size
// (b 64, n 1024) this kernel makes 16 blocks for the H100's 132 multiprocessors, and the STF target
// there went from 0.400 to 0.085 ms (H100 80GB HBM3, 2026-11-27, together with the plain row softmax
// for a one-chunk reference; docs/kernels.md).
__global__ void sq_distances_v1_kernel(int64_t b, int64_t n, int64_t d, const float* __restrict__ y,
                                       const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float ys[kDepth][kTile + 1];
    __shared__ float xs[kDepth][kTile + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile, col0 = static_cast<int64_t>(blockIdx.x) * kTile;
    double acc[4][4] = {};
    for (int64_t k0 = 0; k0 < d; k0 += kDepth) {
        for (int l = threadIdx.x; l < kTile * kDepth; l += kThreads) {
            int r = l / kDepth, kk = l % kDepth;
            int64_t k = k0 + kk, yi = row0 + r, xj = col0 + r;
            ys[kk][r] = (yi < b && k < d) ? y[yi * d + k] : 0.f;
            xs[kk][r] = (xj < n && k < d) ? x[xj * d + k] : 0.f;
        }
        __syncthreads();
        float part[4][4] = {};  // float within 16 features, double across (exact tiny distances, as above)
#pragma unroll
        for (int kk = 0; kk < kDepth; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    float diff = ys[kk][ty * 4 + i] - xs[kk][tx * 4 + j];
                    part[i][j] = fmaf(diff, diff, part[i][j]);
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

// stf_softmax_chunk_v1: the chunk's bookkeeping as the op-by-op form did it, one small kernel per
// step, each reading its [b, len] or [b, d] operand from memory again: scale the distances into logits,
// the rows' new max, the rescale factor, the weights, their sums, the running sums, the accumulator's
// rescale. Version 2 (stf_softmax_chunk_kernel above) does all of it in one kernel, one block per row,
// reading the row twice instead of five times and launching once instead of seven times per chunk
// (the op-by-op form launched about 20): at n = 50,000 in chunks of 8192 the STF target went from
// 2.91 to 2.61 ms (H100 80GB HBM3, 2026-11-27; docs/kernels.md).
__global__ void v1_scale_rows_kernel(int64_t b, int64_t len, const float* __restrict__ coef, float* __restrict__ dist) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < b * len;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dist[i] *= coef[i / len];
}

// new_max[i] = max(row_max[i], max_j logits[i, j]); rescale[i] = exp(row_max[i] - new_max[i]). One block per row.
__global__ void v1_row_max_kernel(int64_t b, int64_t len, const float* __restrict__ logits,
                                  const float* __restrict__ row_max, float* __restrict__ new_max,
                                  float* __restrict__ rescale) {
    for (int64_t i = blockIdx.x; i < b; i += gridDim.x) {
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, logits[i * len + j]);
        m = fmaxf(block_reduce_all<ReduceOp::Max>(m), row_max[i]);
        if (threadIdx.x == 0) {
            new_max[i] = m;
            rescale[i] = expf(row_max[i] - m);
        }
    }
}

__global__ void v1_exp_rows_kernel(int64_t b, int64_t len, const float* __restrict__ new_max, float* __restrict__ dist) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < b * len;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dist[i] = expf(dist[i] - new_max[i / len]);
}

// out[i] = sum_j w[i, j] (squares: of w^2). One block per row.
__global__ void v1_row_sum_kernel(int64_t b, int64_t len, bool squares, const float* __restrict__ w,
                                  float* __restrict__ out) {
    for (int64_t i = blockIdx.x; i < b; i += gridDim.x) {
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
            const float v = w[i * len + j];
            s += squares ? v * v : v;
        }
        s = block_sum(s);
        if (threadIdx.x == 0) out[i] = s;
    }
}

__global__ void v1_update_sums_kernel(int64_t b, const float* __restrict__ rescale, const float* __restrict__ new_max,
                                      const float* __restrict__ chunk_sum, const float* __restrict__ chunk_sq_sum,
                                      float* __restrict__ row_max, float* __restrict__ weight_sum,
                                      float* __restrict__ weight_sq_sum) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < b;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float r = rescale[i];
        weight_sum[i] = weight_sum[i] * r + chunk_sum[i];
        weight_sq_sum[i] = weight_sq_sum[i] * (r * r) + chunk_sq_sum[i];
        row_max[i] = new_max[i];
    }
}

__global__ void v1_rescale_acc_kernel(int64_t b, int64_t d, const float* __restrict__ rescale, float* __restrict__ acc) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < b * d;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        acc[i] *= rescale[i / d];
}

unsigned v1_blocks(int64_t n) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65536))); }

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

void sq_distances_v1(int64_t b, int64_t n, int64_t d, const float* y, const float* x, float* out) {
    if (b == 0 || n == 0) return;
    dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((b + kTile - 1) / kTile));
    sq_distances_v1_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream())>>>(b, n, d, y, x, out);
    STF_CUDA_CHECK_LAUNCH();
}

void stf_softmax_chunk_v1(int64_t b, int64_t len, int64_t d, const float* coef, float* dist, float* row_max,
                          float* weight_sum, float* weight_sq_sum, float* acc) {
    if (b <= 0) return;
    cudaStream_t s = static_cast<cudaStream_t>(stream());
    // Four [b] temporaries: the new max, the rescale factor and the chunk's two sums.
    struct Scratch {  // returned to the allocator however this function exits (stream-ordered)
        float* p;
        ~Scratch() { free(p); }
    } scratch{static_cast<float*>(malloc(static_cast<size_t>(4 * b) * sizeof(float)))};
    float *new_max = scratch.p, *rescale = scratch.p + b, *chunk_sum = scratch.p + 2 * b, *chunk_sq = scratch.p + 3 * b;
    const unsigned rows = static_cast<unsigned>(std::min<int64_t>(b, 65536));
    v1_scale_rows_kernel<<<v1_blocks(b * len), kThreads, 0, s>>>(b, len, coef, dist);
    STF_CUDA_CHECK_LAUNCH();
    v1_row_max_kernel<<<rows, kThreads, 0, s>>>(b, len, dist, row_max, new_max, rescale);
    STF_CUDA_CHECK_LAUNCH();
    v1_exp_rows_kernel<<<v1_blocks(b * len), kThreads, 0, s>>>(b, len, new_max, dist);
    STF_CUDA_CHECK_LAUNCH();
    v1_row_sum_kernel<<<rows, kThreads, 0, s>>>(b, len, false, dist, chunk_sum);
    STF_CUDA_CHECK_LAUNCH();
    v1_row_sum_kernel<<<rows, kThreads, 0, s>>>(b, len, true, dist, chunk_sq);
    STF_CUDA_CHECK_LAUNCH();
    v1_update_sums_kernel<<<v1_blocks(b), kThreads, 0, s>>>(b, rescale, new_max, chunk_sum, chunk_sq, row_max,
                                                            weight_sum, weight_sq_sum);
    STF_CUDA_CHECK_LAUNCH();
    if (d > 0) {
        v1_rescale_acc_kernel<<<v1_blocks(b * d), kThreads, 0, s>>>(b, d, rescale, acc);
        STF_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace stf::cuda
