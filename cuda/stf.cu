// Squared distances between b noisy samples y [b, d] and n reference images x [n, d]: the one kernel
// of the STF target that is not a GEMM or elementwise. It is tiled like a GEMM (a 64 x 64 block of
// outputs, 16 features of y and x staged in shared memory per step, 4 x 4 outputs per thread) but
// accumulates (y - x)^2 instead of y * x, so distances are exact even when they are tiny. Each 16-feature
// step is summed in float and the steps in double: with d = 3072 and distances near 2000, a float running
// sum would be off by ~1e-3, which 1 / (2 sigma^2) turns into visibly different softmax weights.
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {

namespace {

constexpr int kTile = 64;      // outputs per block edge
constexpr int kDepth = 16;     // features staged per step
constexpr int kThreads = 256;  // 16 x 16 threads, each 4 x 4 outputs

__global__ void sq_distances_kernel(int64_t b, int64_t n, int64_t d, const float* __restrict__ y,
                                    const float* __restrict__ x, float* __restrict__ out) {
    // Staged transposed ([feature][row]) so the inner loop reads rows of a thread's outputs; +1 pads banks.
    __shared__ float ys[kDepth][kTile + 1];
    __shared__ float xs[kDepth][kTile + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile, col0 = static_cast<int64_t>(blockIdx.x) * kTile;
    double acc[4][4] = {};
    for (int64_t k0 = 0; k0 < d; k0 += kDepth) {
        // Each thread loads 4 features of y and 4 of x; consecutive threads read consecutive features.
        for (int l = threadIdx.x; l < kTile * kDepth; l += kThreads) {
            int r = l / kDepth, kk = l % kDepth;
            int64_t k = k0 + kk, yi = row0 + r, xj = col0 + r;
            // Out-of-range features load 0 into both, adding (0 - 0)^2 = 0.
            ys[kk][r] = (yi < b && k < d) ? y[yi * d + k] : 0.f;
            xs[kk][r] = (xj < n && k < d) ? x[xj * d + k] : 0.f;
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

}  // namespace

void sq_distances(int64_t b, int64_t n, int64_t d, const float* y, const float* x, float* out) {
    if (b == 0 || n == 0) return;
    dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((b + kTile - 1) / kTile));
    sq_distances_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream())>>>(b, n, d, y, x, out);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
