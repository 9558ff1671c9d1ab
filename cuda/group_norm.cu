// Group normalisation over x [n, c, hw]: the c channels form g groups of c/g consecutive channels, and
// each (sample, group) is normalised over its (c/g) * hw values:
//   y = (x - mean) * rstd * gamma[ch] + beta[ch],    rstd = 1 / sqrt(var + eps), var biased.
//
// The values of one (sample, group) are contiguous in memory, at x + (sample * g + group) * count with
// count = (c/g) * hw, so one block per (sample, group) reads them with coalesced loads.
//
// Statistics use two passes over the group (the "corrected two-pass" algorithm of Chan, Golub and
// LeVeque): first a float mean m, then the sums of d = x - m and of d^2. The one-pass formula
// var = E[x^2] - E[x]^2 subtracts two large, nearly equal numbers when |mean| >> std and loses most of
// its digits in float; the deviations d are small, and their sum, which would be 0 if m were exact,
// measures m's rounding error and corrects both the mean and the variance.
#include <algorithm>
#include <cmath>

#include "cuda/block_reduce.cuh"
#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

// Large blocks: there is often only one block per (sample, group), e.g. 32 groups for a batch of 1.
constexpr int kThreads = 512;
constexpr int64_t kMaxBlocks = 65536;

int grid_for(int64_t tasks) { return static_cast<int>(std::min(tasks, kMaxBlocks)); }

// ---- forward: one block per (sample, group) ------------------------------------------------------

__global__ void group_norm_forward_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const float* x,
                                          const float* gamma, const float* beta, float* y, float* mean_out,
                                          float* rstd_out) {
    int64_t per_group = c / g;  // channels per group
    int64_t count = per_group * hw;
    float inv_count = 1.0f / static_cast<float>(count);
    // `ng` = sample * g + group is the same for the whole block, so every thread reaches the barriers.
    for (int64_t ng = blockIdx.x; ng < n * g; ng += gridDim.x) {
        const float* xg = x + ng * count;
        float* yg = y + ng * count;
        int64_t first_channel = (ng % g) * per_group;

        float sum = 0.0f;
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += xg[i];
        float m = block_sum(sum) * inv_count;

        float2 dev = make_float2(0.0f, 0.0f);  // sum(d), sum(d * d) with d = x - m
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float d = xg[i] - m;
            dev.x += d;
            dev.y += d * d;
        }
        dev = block_sum(dev);
        float shift = dev.x * inv_count;  // true mean - m, up to rounding
        float var = fmaxf(dev.y * inv_count - shift * shift, 0.0f);
        float rstd = 1.0f / sqrtf(var + eps);
        if (threadIdx.x == 0) {
            mean_out[ng] = m + shift;
            rstd_out[ng] = rstd;
        }

        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            int64_t ch = first_channel + i / hw;
            float gm = gamma ? gamma[ch] : 1.0f;
            float bt = beta ? beta[ch] : 0.0f;
            // x - mean as (x - m) - shift: x - m is usually exact (x and m are close), so this keeps the
            // digits that rounding the mean to float would lose.
            yg[i] = ((xg[i] - m) - shift) * rstd * gm + bt;
        }
    }
}

// ---- backward for x: one block per (sample, group) -----------------------------------------------
// With xhat = (x - mean) * rstd and gx = dy * gamma, differentiating through mean and rstd gives
//   dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)),   means over the group's values.

__global__ void group_norm_backward_dx_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x,
                                              const float* gamma, const float* mean, const float* rstd,
                                              const float* dy, float* dx) {
    int64_t per_group = c / g;
    int64_t count = per_group * hw;
    float inv_count = 1.0f / static_cast<float>(count);
    for (int64_t ng = blockIdx.x; ng < n * g; ng += gridDim.x) {
        const float* xg = x + ng * count;
        const float* dyg = dy + ng * count;
        float* dxg = dx + ng * count;
        int64_t first_channel = (ng % g) * per_group;
        float mu = mean[ng], rs = rstd[ng];

        float2 sums = make_float2(0.0f, 0.0f);  // sum(gx), sum(gx * xhat)
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float gm = gamma ? gamma[first_channel + i / hw] : 1.0f;
            float xhat = (xg[i] - mu) * rs;
            float gx = dyg[i] * gm;
            sums.x += gx;
            sums.y += gx * xhat;
        }
        sums = block_sum(sums);
        float mean_gx = sums.x * inv_count, mean_gx_xhat = sums.y * inv_count;

        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float gm = gamma ? gamma[first_channel + i / hw] : 1.0f;
            float xhat = (xg[i] - mu) * rs;
            float gx = dyg[i] * gm;
            dxg[i] = rs * (gx - mean_gx - xhat * mean_gx_xhat);
        }
    }
}

// ---- backward for gamma and beta: one block per channel ------------------------------------------
//   dgamma[ch] = sum over samples and hw of dy * xhat,   dbeta[ch] = sum of dy.
// A channel's values are n runs of hw contiguous floats, hw * c apart; consecutive threads take
// consecutive positions within a run.

__global__ void group_norm_backward_affine_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x,
                                                  const float* mean, const float* rstd, const float* dy,
                                                  float* dgamma, float* dbeta) {
    int64_t per_group = c / g;
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        int64_t group = ch / per_group;
        float2 sums = make_float2(0.0f, 0.0f);  // sum(dy * xhat), sum(dy)
        for (int64_t i = threadIdx.x; i < n * hw; i += blockDim.x) {
            int64_t sample = i / hw, pos = i % hw;
            int64_t at = (sample * c + ch) * hw + pos;
            int64_t stat = sample * g + group;
            float xhat = (x[at] - mean[stat]) * rstd[stat];
            sums.x += dy[at] * xhat;
            sums.y += dy[at];
        }
        sums = block_sum(sums);
        if (threadIdx.x == 0) {
            if (dgamma) dgamma[ch] = sums.x;
            if (dbeta) dbeta[ch] = sums.y;
        }
    }
}

}  // namespace

void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const float* x, const float* gamma,
                        const float* beta, float* y, float* mean, float* rstd) {
    if (n <= 0 || c <= 0 || g <= 0) return;
    if (hw <= 0) return;  // no values: nothing to normalise (the statistics would be 0/0)
    group_norm_forward_kernel<<<grid_for(n * g), kThreads, 0, current_stream()>>>(n, c, hw, g, eps, x, gamma, beta, y,
                                                                                  mean, rstd);
    STF_CUDA_CHECK_LAUNCH();
}

void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x, const float* gamma,
                         const float* mean, const float* rstd, const float* dy, float* dx, float* dgamma,
                         float* dbeta) {
    if (c <= 0 || g <= 0) return;
    cudaStream_t s = current_stream();
    if (n > 0 && hw > 0) {
        group_norm_backward_dx_kernel<<<grid_for(n * g), kThreads, 0, s>>>(n, c, hw, g, x, gamma, mean, rstd, dy, dx);
        STF_CUDA_CHECK_LAUNCH();
    }
    if (dgamma || dbeta) {  // with no samples or no positions the sums are empty and come out 0
        group_norm_backward_affine_kernel<<<grid_for(c), kThreads, 0, s>>>(n, c, hw, g, x, mean, rstd, dy, dgamma,
                                                                           dbeta);
        STF_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace stf::cuda
