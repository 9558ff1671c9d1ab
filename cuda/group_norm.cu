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
//
// Fused around it (cuda/group_norm_math.h, as EDM's blocks use it): an [n, c] offset added to x as it
// is loaded, SiLU and dropout (its mask drawn here from a Philox stream, and again in the backward
// pass) applied as y is stored. The kernels, in order below: general forward; register-cached forward
// (groups of up to 8192 or 16384 values, 256 or 512 threads); general backward dx; register-cached
// backward dx, which also leaves each (sample, channel)'s share of dgamma and dbeta; the sum of those
// shares; the general dgamma/dbeta kernel, which re-reads x and dy, for the uncached case; and the first
// version's three kernels, kept as a lesson (group_norm_*_v1).
//
// Storage (cuda/bf16.h): x and dx are TX, y and dy TY, each float or bf16 (activations stored in
// bfloat16 for mixed precision). Values are converted to float as they are loaded, four at a time by
// load4 in the register-cached kernels, and rounded once as they are stored; the arithmetic, the
// statistics, the parameters and their gradients stay float, so the bf16 results are the float ones
// of the same (bf16) inputs, rounded.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda/bf16.h"
#include "cuda/block_reduce.cuh"
#include "cuda/check.h"
#include "cuda/group_norm_math.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

// Large blocks: there is often only one block per (sample, group), e.g. 32 groups for a batch of 1.
constexpr int kThreads = 512;
constexpr int64_t kMaxBlocks = 65536;

int grid_for(int64_t tasks) { return static_cast<int>(std::min(tasks, kMaxBlocks)); }

using Fusion = GroupNormFusion<float>;
using group_norm_math::activate;
using group_norm_math::activation_grad;

// Where a group's elements sit for the dropout stream (group_norm_math::dropout_place): group ng's
// first element in the whole tensor, its sample and its place within the sample, computed once per group.
struct GroupPlace {
    uint64_t first, sample, first_in_sample, sample_len;
    __device__ philox::RowElement of(const DropoutStream& d, uint64_t i) const {  // element i of the group
        return group_norm_math::dropout_place(d, first + i, sample, first_in_sample + i, sample_len);
    }
};
__device__ __forceinline__ GroupPlace group_place(int64_t ng, int64_t g, int64_t count) {
    return {static_cast<uint64_t>(ng * count), static_cast<uint64_t>(ng / g), static_cast<uint64_t>((ng % g) * count),
            static_cast<uint64_t>(g * count)};
}

// The dropout factor of element i of a group: 0 or 1 / keep, and 1 without dropout (y * 1 is y, so
// the arithmetic below is that of the unfused ops either way).
__device__ __forceinline__ float mask_at(const Fusion& f, const GroupPlace& gp, uint64_t i) {
    return f.dropout.active() ? group_norm_math::dropout_factor<float>(f.dropout, gp.of(f.dropout, i)) : 1.0f;
}
// The same for elements i .. i + 3, one Philox draw (their place is a multiple of 4: see cached_threads).
__device__ __forceinline__ void masks4_at(const Fusion& f, const GroupPlace& gp, uint64_t i, float (&m)[4]) {
    if (f.dropout.active()) {
        group_norm_math::dropout_factors4(f.dropout, gp.of(f.dropout, i), m);
    } else {
        m[0] = m[1] = m[2] = m[3] = 1.0f;
    }
}

// The fused offset of channel `ch` (within the group) of group `ng`: row ng * per_group of the [n, c]
// offset is the group's first channel, since (sample * g + group) * per_group = sample * c + first channel.
__device__ __forceinline__ float offset_of(const Fusion& f, int64_t ng, int64_t per_group, int64_t ch) {
    return f.offset ? f.offset[ng * per_group + ch] : 0.0f;
}

// ---- forward: one block per (sample, group) ------------------------------------------------------

template <class TX, class TY>
__global__ void group_norm_forward_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const TX* x,
                                          const float* gamma, const float* beta, Fusion fusion, TY* y,
                                          float* mean_out, float* rstd_out) {
    int64_t per_group = c / g;  // channels per group
    int64_t count = per_group * hw;
    float inv_count = 1.0f / static_cast<float>(count);
    // `ng` = sample * g + group is the same for the whole block, so every thread reaches the barriers.
    for (int64_t ng = blockIdx.x; ng < n * g; ng += gridDim.x) {
        const TX* xg = x + ng * count;
        TY* yg = y + ng * count;
        int64_t first_channel = (ng % g) * per_group;

        auto value = [&](int64_t i) { return static_cast<float>(xg[i]) + offset_of(fusion, ng, per_group, i / hw); };

        float sum = 0.0f;
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += value(i);
        float m = block_sum(sum) * inv_count;

        float2 dev = make_float2(0.0f, 0.0f);  // sum(d), sum(d * d) with d = x - m
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float d = value(i) - m;
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

        const GroupPlace gp = group_place(ng, g, count);
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            int64_t ch = first_channel + i / hw;
            float gm = gamma ? gamma[ch] : 1.0f;
            float bt = beta ? beta[ch] : 0.0f;
            // x - mean as (x - m) - shift: x - m is usually exact (x and m are close), so this keeps the
            // digits that rounding the mean to float would lose.
            yg[i] = from_float<TY>(activate(((value(i) - m) - shift) * rstd * gm + bt, fusion.silu) *
                                   mask_at(fusion, gp, i));
        }
    }
}

// ---- the same for groups that fit in registers ---------------------------------------------------
// A U-Net's groups are small (8 channels of 32x32 pixels: 8192 values, 32 KB), so a block of
// Threads threads can hold its group in registers, kCachedVecs float4s per thread (each loaded with
// load4: one float4, or four bf16 in 8 bytes): x is read from memory once instead of three times, and
// the channel of each float4 comes from a 32-bit division (hw % 4 == 0, so a float4 never straddles
// two channels). Same statistics as above.
// Blocks of 256 threads take groups of up to 8192 values; the decoder's 512-channel inputs at 32x32
// (16 channels per group, 16384 values) take blocks of 512 threads with the same registers per thread.
constexpr int kCachedVecs = 8;
constexpr int kCachedThreadsSmall = 256, kCachedThreadsLarge = 512;
constexpr int64_t cached_max_count(int threads) { return int64_t(4) * threads * kCachedVecs; }

__device__ __forceinline__ float sum4(float4 v) { return (v.x + v.y) + (v.z + v.w); }

template <class TX, class TY, int Threads>
__global__ void __launch_bounds__(Threads)
group_norm_forward_cached_kernel(int groups_total, int g, uint32_t hw, uint32_t per_group, float eps, const TX* x,
                                 const float* gamma, const float* beta, Fusion fusion, TY* y, float* mean_out,
                                 float* rstd_out) {
    const uint32_t count4 = per_group * hw / 4;
    const float inv_count = 1.0f / static_cast<float>(4 * count4);
    for (int ng = blockIdx.x; ng < groups_total; ng += gridDim.x) {
        // float4 i of the group is elements 4 * i .. 4 * i + 3 from xg and yg (64-bit element indices)
        const TX* xg = x + 4 * (static_cast<int64_t>(ng) * count4);
        TY* yg = y + 4 * (static_cast<int64_t>(ng) * count4);
        float4 v[kCachedVecs];
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < kCachedVecs; ++k) {
            const uint32_t i = threadIdx.x + k * Threads;
            v[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < count4) {
                const float off = offset_of(fusion, ng, per_group, 4 * i / hw);
                const float4 xv = load4(xg, 4 * int64_t(i));
                v[k] = make_float4(xv.x + off, xv.y + off, xv.z + off, xv.w + off);
            }
            sum += sum4(v[k]);
        }
        const float m = block_sum(sum) * inv_count;

        float2 dev = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int k = 0; k < kCachedVecs; ++k) {
            if (threadIdx.x + k * Threads >= count4) break;
            const float4 d = make_float4(v[k].x - m, v[k].y - m, v[k].z - m, v[k].w - m);
            dev.x += sum4(d);
            dev.y += (d.x * d.x + d.y * d.y) + (d.z * d.z + d.w * d.w);
        }
        dev = block_sum(dev);
        const float shift = dev.x * inv_count;
        const float var = fmaxf(dev.y * inv_count - shift * shift, 0.0f);
        const float rstd = 1.0f / sqrtf(var + eps);
        if (threadIdx.x == 0) {
            mean_out[ng] = m + shift;
            rstd_out[ng] = rstd;
        }

        const uint32_t first_channel = (ng % g) * per_group;
        const GroupPlace gp = group_place(ng, g, int64_t(4) * count4);
#pragma unroll
        for (int k = 0; k < kCachedVecs; ++k) {
            const uint32_t i = threadIdx.x + k * Threads;
            if (i >= count4) break;
            const uint32_t ch = first_channel + 4 * i / hw;
            const float gm = gamma ? gamma[ch] : 1.0f, b = beta ? beta[ch] : 0.0f;
            float mask[4];
            masks4_at(fusion, gp, uint64_t(4) * i, mask);
            float4 out;
            out.x = activate(((v[k].x - m) - shift) * rstd * gm + b, fusion.silu) * mask[0];
            out.y = activate(((v[k].y - m) - shift) * rstd * gm + b, fusion.silu) * mask[1];
            out.z = activate(((v[k].z - m) - shift) * rstd * gm + b, fusion.silu) * mask[2];
            out.w = activate(((v[k].w - m) - shift) * rstd * gm + b, fusion.silu) * mask[3];
            store4(yg, 4 * int64_t(i), out);
        }
    }
}

// ---- backward for x: one block per (sample, group) -----------------------------------------------
// With xhat = (x' - mean) * rstd, gy the gradient reaching the affine output (dy through the SiLU, if
// fused, recomputed from xhat) and gx = gy * gamma, differentiating through mean and rstd gives
//   dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)),   means over the group's values,
// and dx' = dx (the offset shifts x and its mean alike).

template <class TX, class TY>
__global__ void group_norm_backward_dx_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x,
                                              const float* gamma, const float* beta, Fusion fusion,
                                              const float* mean, const float* rstd, const TY* dy, TX* dx) {
    int64_t per_group = c / g;
    int64_t count = per_group * hw;
    float inv_count = 1.0f / static_cast<float>(count);
    for (int64_t ng = blockIdx.x; ng < n * g; ng += gridDim.x) {
        const TX* xg = x + ng * count;
        const TY* dyg = dy + ng * count;
        TX* dxg = dx + ng * count;
        int64_t first_channel = (ng % g) * per_group;
        float mu = mean[ng], rs = rstd[ng];

        // xhat and gx of value i
        const GroupPlace gp = group_place(ng, g, count);
        auto at = [&](int64_t i, float& xhat, float& gx) {
            const int64_t ch = i / hw;
            const float gm = gamma ? gamma[first_channel + ch] : 1.0f;
            const float bt = beta ? beta[first_channel + ch] : 0.0f;
            xhat = (static_cast<float>(xg[i]) + offset_of(fusion, ng, per_group, ch) - mu) * rs;
            gx = activation_grad(static_cast<float>(dyg[i]) * mask_at(fusion, gp, i), xhat * gm + bt, fusion.silu) * gm;
        };
        float2 sums = make_float2(0.0f, 0.0f);  // sum(gx), sum(gx * xhat)
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float xhat, gx;
            at(i, xhat, gx);
            sums.x += gx;
            sums.y += gx * xhat;
        }
        sums = block_sum(sums);
        float mean_gx = sums.x * inv_count, mean_gx_xhat = sums.y * inv_count;

        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float xhat, gx;
            at(i, xhat, gx);
            dxg[i] = from_float<TX>(rs * (gx - mean_gx - xhat * mean_gx_xhat));
        }
    }
}

// The register-cached twin of the kernel above: x and dy are read once. With `part` (not null) it also
// writes each (sample, channel)'s share of dgamma and dbeta, sum(gy * xhat) and sum(gy) over the
// channel's positions, to part[0][sample * c + ch] and part[1][...], from the values it already holds:
// the affine kernel below, which reads x and dy again, is then not needed (see affine_from_parts). The
// shares are summed per channel from shared memory by one warp each, in a fixed order.
template <class TX, class TY, int Threads>
__global__ void __launch_bounds__(Threads)
group_norm_backward_dx_cached_kernel(int groups_total, int g, uint32_t hw, uint32_t per_group, const TX* x,
                                     const float* gamma, const float* beta, Fusion fusion, const float* mean,
                                     const float* rstd, const TY* dy, TX* dx, float* part) {
    __shared__ float2 shares[kCachedVecs * Threads];  // per float4: sum(gy * xhat), sum(gy)
    const uint32_t count4 = per_group * hw / 4;
    const float inv_count = 1.0f / static_cast<float>(4 * count4);
    for (int ng = blockIdx.x; ng < groups_total; ng += gridDim.x) {
        const int64_t base = static_cast<int64_t>(ng) * count4;  // the group's first float4: element 4 * base
        const uint32_t first_channel = (ng % g) * per_group;
        const float mu = mean[ng], rs = rstd[ng];
        float4 xhat[kCachedVecs], gx[kCachedVecs];
        const GroupPlace gp = group_place(ng, g, int64_t(4) * count4);
        float2 sums = make_float2(0.0f, 0.0f);  // sum(gx), sum(gx * xhat)
#pragma unroll
        for (int k = 0; k < kCachedVecs; ++k) {
            const uint32_t i = threadIdx.x + k * Threads;
            if (i < count4) {
                const uint32_t ch = 4 * i / hw;
                const float gm = gamma ? gamma[first_channel + ch] : 1.0f;
                const float bt = beta ? beta[first_channel + ch] : 0.0f;
                const float centre = mu - offset_of(fusion, ng, per_group, ch);  // x' - mu = x - (mu - offset)
                const float4 xv = load4(x, 4 * (base + i)), dv = load4(dy, 4 * (base + i));
                xhat[k] = make_float4((xv.x - centre) * rs, (xv.y - centre) * rs, (xv.z - centre) * rs,
                                      (xv.w - centre) * rs);
                float mask[4];
                masks4_at(fusion, gp, uint64_t(4) * i, mask);
                const float4 gy = make_float4(activation_grad(dv.x * mask[0], xhat[k].x * gm + bt, fusion.silu),
                                              activation_grad(dv.y * mask[1], xhat[k].y * gm + bt, fusion.silu),
                                              activation_grad(dv.z * mask[2], xhat[k].z * gm + bt, fusion.silu),
                                              activation_grad(dv.w * mask[3], xhat[k].w * gm + bt, fusion.silu));
                gx[k] = make_float4(gy.x * gm, gy.y * gm, gy.z * gm, gy.w * gm);
                if (part)
                    shares[i] = make_float2((gy.x * xhat[k].x + gy.y * xhat[k].y) + (gy.z * xhat[k].z + gy.w * xhat[k].w),
                                            sum4(gy));
            } else {
                xhat[k] = gx[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
            sums.x += sum4(gx[k]);
            sums.y += (gx[k].x * xhat[k].x + gx[k].y * xhat[k].y) + (gx[k].z * xhat[k].z + gx[k].w * xhat[k].w);
        }
        sums = block_sum(sums);
        const float mean_gx = sums.x * inv_count, mean_gx_xhat = sums.y * inv_count;
#pragma unroll
        for (int k = 0; k < kCachedVecs; ++k) {
            const uint32_t i = threadIdx.x + k * Threads;
            if (i >= count4) break;
            float4 out;
            out.x = rs * (gx[k].x - mean_gx - xhat[k].x * mean_gx_xhat);
            out.y = rs * (gx[k].y - mean_gx - xhat[k].y * mean_gx_xhat);
            out.z = rs * (gx[k].z - mean_gx - xhat[k].z * mean_gx_xhat);
            out.w = rs * (gx[k].w - mean_gx - xhat[k].w * mean_gx_xhat);
            store4(dx, 4 * (base + i), out);
        }
        if (part) {
            // block_sum's barriers made every share visible. Warp w sums channels w, w + warps, ...:
            // each lane a fixed stride of the channel's float4s, then the warp's butterfly.
            const uint32_t hw4 = hw / 4, warps = Threads / kWarp, lane = threadIdx.x % kWarp;
            const int64_t n_c = static_cast<int64_t>(groups_total) * per_group;  // part[1] starts here
            for (uint32_t ch = threadIdx.x / kWarp; ch < per_group; ch += warps) {
                float2 acc = make_float2(0.0f, 0.0f);
                for (uint32_t j = lane; j < hw4; j += kWarp) {
                    acc.x += shares[ch * hw4 + j].x;
                    acc.y += shares[ch * hw4 + j].y;
                }
                acc = warp_sum(acc);
                if (lane == 0) {
                    const int64_t row = static_cast<int64_t>(ng) * per_group + ch;  // sample * c + channel
                    part[row] = acc.x;
                    part[n_c + row] = acc.y;
                }
            }
            __syncthreads();  // the shares are read before the next group overwrites them
        }
    }
}

// Adds the samples' shares (part [2, n, c], written by the cached dx kernel) in order: dgamma[ch] =
// sum over samples of part[0][s, ch], dbeta[ch] of part[1][s, ch]. One thread per channel.
__global__ void group_norm_affine_from_parts_kernel(int64_t n, int64_t c, const float* part, float* dgamma,
                                                    float* dbeta) {
    for (int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; ch < c;
         ch += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        double acc_gamma = 0.0, acc_beta = 0.0;
        for (int64_t s = 0; s < n; ++s) {
            acc_gamma += part[s * c + ch];
            acc_beta += part[n * c + s * c + ch];
        }
        if (dgamma) dgamma[ch] = static_cast<float>(acc_gamma);
        if (dbeta) dbeta[ch] = static_cast<float>(acc_beta);
    }
}

// ---- backward for gamma and beta: one block per channel ------------------------------------------
//   dgamma[ch] = sum over samples and hw of gy * xhat,   dbeta[ch] = sum of gy,
// with gy the gradient reaching the affine output, recomputed as in the dx kernels.
// A channel's values are n runs of hw contiguous floats, hw * c apart; consecutive threads take
// consecutive positions within a run.

template <class TX, class TY>
__global__ void group_norm_backward_affine_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x,
                                                  const float* gamma, const float* beta, Fusion fusion,
                                                  const float* mean, const float* rstd, const TY* dy,
                                                  float* dgamma, float* dbeta) {
    int64_t per_group = c / g;
    for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
        int64_t group = ch / per_group;
        const float gm = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
        float2 sums = make_float2(0.0f, 0.0f);  // sum(gy * xhat), sum(gy)
        for (int64_t i = threadIdx.x; i < n * hw; i += blockDim.x) {
            int64_t sample = i / hw, pos = i % hw;
            int64_t at = (sample * c + ch) * hw + pos;
            int64_t stat = sample * g + group;
            const float off = fusion.offset ? fusion.offset[sample * c + ch] : 0.0f;
            float xhat = (static_cast<float>(x[at]) + off - mean[stat]) * rstd[stat];
            // Element ch * hw + pos of its sample: the dropout place without a division.
            const float mask = fusion.dropout.active()
                                   ? group_norm_math::dropout_factor<float>(
                                         fusion.dropout, group_norm_math::dropout_place(
                                                             fusion.dropout, uint64_t(at), uint64_t(sample),
                                                             uint64_t(ch * hw + pos), uint64_t(c * hw)))
                                   : 1.0f;
            float gy = activation_grad(static_cast<float>(dy[at]) * mask, xhat * gm + bt, fusion.silu);
            sums.x += gy * xhat;
            sums.y += gy;
        }
        sums = block_sum(sums);
        if (threadIdx.x == 0) {
            if (dgamma) dgamma[ch] = sums.x;
            if (dbeta) dbeta[ch] = sums.y;
        }
    }
}

// ---- version 1 (kept as a lesson; bench_kernels --version 1) -------------------------------------
// The first GroupNorm kernels: float only, no fusion, one block of kThreads per (sample, group) for any
// group size, and every pass reads the group from memory: the forward reads x three times (mean,
// deviations, output), the backward's dx kernel reads x and dy twice, and dgamma/dbeta come from a
// second kernel, one block per channel, that reads x and dy once more. Version 2 (the cached kernels
// above) keeps a group of up to 16,384 values in registers, so x is read once in the forward and x and
// dy once in the backward, which also leaves each (sample, channel)'s share of dgamma and dbeta. On the
// H100 (80GB HBM3, 2026-11-27) bench_kernels' forward went from 1,225 to 2,958 GB/s and the GroupNorm
// kernels of a DDPM++ step from 17.6 to 12.1 ms (docs/kernels.md).

__global__ void group_norm_forward_v1_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const float* x,
                                             const float* gamma, const float* beta, float* y, float* mean_out,
                                             float* rstd_out) {
    int64_t per_group = c / g;
    int64_t count = per_group * hw;
    float inv_count = 1.0f / static_cast<float>(count);
    for (int64_t ng = blockIdx.x; ng < n * g; ng += gridDim.x) {
        const float* xg = x + ng * count;
        float* yg = y + ng * count;
        int64_t first_channel = (ng % g) * per_group;
        float sum = 0.0f;  // pass 1: the mean
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += xg[i];
        float m = block_sum(sum) * inv_count;
        float2 dev = make_float2(0.0f, 0.0f);  // pass 2: sum(d), sum(d * d) with d = x - m
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
            float d = xg[i] - m;
            dev.x += d;
            dev.y += d * d;
        }
        dev = block_sum(dev);
        float shift = dev.x * inv_count;
        float var = fmaxf(dev.y * inv_count - shift * shift, 0.0f);
        float rstd = 1.0f / sqrtf(var + eps);
        if (threadIdx.x == 0) {
            mean_out[ng] = m + shift;
            rstd_out[ng] = rstd;
        }
        for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {  // pass 3: the output
            int64_t ch = first_channel + i / hw;
            float gm = gamma ? gamma[ch] : 1.0f;
            float bt = beta ? beta[ch] : 0.0f;
            yg[i] = ((xg[i] - m) - shift) * rstd * gm + bt;
        }
    }
}

__global__ void group_norm_backward_dx_v1_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x,
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

__global__ void group_norm_backward_affine_v1_kernel(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x,
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

// Whether load4 and store4 may access p: aligned to four elements of T (16 bytes for float, 8 for bf16).
template <class T> bool is_vec4_aligned(const T* p) {
    return reinterpret_cast<uintptr_t>(p) % vec4_alignment<T>() == 0;
}

// The block size of the register-cached kernels for these arguments, or 0 where they do not apply:
// whole float4s per channel, a group within a block's registers, aligned pointers, and counts that fit
// their int and 32-bit indices.
// With dropout, a float4's four elements must share one Philox block: the stream's rows (if any) are
// whole float4s. `n * g` leaves room for the grid stride in the kernels' int group counter.
template <class TIn, class TOut>
int cached_threads(int64_t n, int64_t c, int64_t hw, int64_t g, const Fusion& fusion, const TIn* in,
                   const TOut* out) {
    if (hw % 4 != 0 || n * g > INT32_MAX - kMaxBlocks || !is_vec4_aligned(in) || !is_vec4_aligned(out)) return 0;
    if (fusion.dropout.active() && fusion.dropout.row_len % 4 != 0) return 0;
    const int64_t count = (c / g) * hw;
    if (count <= cached_max_count(kCachedThreadsSmall)) return kCachedThreadsSmall;
    if (count <= cached_max_count(kCachedThreadsLarge)) return kCachedThreadsLarge;
    return 0;
}

}  // namespace

template <class TX, class TY>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const TX* x, const float* gamma,
                        const float* beta, GroupNormFusion<float> fusion, TY* y, float* mean, float* rstd) {
    if (n <= 0 || c <= 0 || g <= 0) return;
    if (hw <= 0) return;  // no values: nothing to normalise (the statistics would be 0/0)
    const int threads = cached_threads(n, c, hw, g, fusion, x, y);
    auto cached = [&](auto kernel) {
        kernel<<<grid_for(n * g), threads, 0, current_stream()>>>(
            static_cast<int>(n * g), static_cast<int>(g), static_cast<uint32_t>(hw), static_cast<uint32_t>(c / g), eps,
            x, gamma, beta, fusion, y, mean, rstd);
    };
    if (threads == kCachedThreadsSmall)
        cached(group_norm_forward_cached_kernel<TX, TY, kCachedThreadsSmall>);
    else if (threads == kCachedThreadsLarge)
        cached(group_norm_forward_cached_kernel<TX, TY, kCachedThreadsLarge>);
    else
        group_norm_forward_kernel<TX, TY><<<grid_for(n * g), kThreads, 0, current_stream()>>>(
            n, c, hw, g, eps, x, gamma, beta, fusion, y, mean, rstd);
    STF_CUDA_CHECK_LAUNCH();
}

template <class TX, class TY>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x, const float* gamma,
                         const float* beta, GroupNormFusion<float> fusion, const float* mean, const float* rstd,
                         const TY* dy, TX* dx, float* dgamma, float* dbeta) {
    if (c <= 0 || g <= 0) return;
    cudaStream_t s = current_stream();
    const int threads = n > 0 && hw > 0 && is_vec4_aligned(dy) ? cached_threads(n, c, hw, g, fusion, x, dx) : 0;
    if (threads) {
        // The cached dx kernel also leaves each (sample, channel)'s share of dgamma and dbeta in `part`.
        const bool affine = dgamma || dbeta;
        struct Scratch {  // returned to the allocator however this function exits
            float* p;
            ~Scratch() {
                if (p) free(p);  // stream-ordered: handed out again only to later work
            }
        } scratch{affine ? static_cast<float*>(malloc(static_cast<size_t>(2 * n * c) * sizeof(float))) : nullptr};
        float* part = scratch.p;
        auto cached = [&](auto kernel) {
            kernel<<<grid_for(n * g), threads, 0, s>>>(
                static_cast<int>(n * g), static_cast<int>(g), static_cast<uint32_t>(hw), static_cast<uint32_t>(c / g),
                x, gamma, beta, fusion, mean, rstd, dy, dx, part);
        };
        if (threads == kCachedThreadsSmall)
            cached(group_norm_backward_dx_cached_kernel<TX, TY, kCachedThreadsSmall>);
        else
            cached(group_norm_backward_dx_cached_kernel<TX, TY, kCachedThreadsLarge>);
        STF_CUDA_CHECK_LAUNCH();
        if (affine) {
            group_norm_affine_from_parts_kernel<<<static_cast<unsigned>((c + 255) / 256), 256, 0, s>>>(n, c, part,
                                                                                                    dgamma, dbeta);
            STF_CUDA_CHECK_LAUNCH();
        }
        return;
    }
    if (n > 0 && hw > 0) {
        group_norm_backward_dx_kernel<TX, TY><<<grid_for(n * g), kThreads, 0, s>>>(n, c, hw, g, x, gamma, beta, fusion,
                                                                                   mean, rstd, dy, dx);
        STF_CUDA_CHECK_LAUNCH();
    }
    if (dgamma || dbeta) {  // with no samples or no positions the sums are empty and come out 0
        group_norm_backward_affine_kernel<TX, TY><<<grid_for(c), kThreads, 0, s>>>(n, c, hw, g, x, gamma, beta, fusion,
                                                                                   mean, rstd, dy, dgamma, dbeta);
        STF_CUDA_CHECK_LAUNCH();
    }
}

void group_norm_forward_v1(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const float* x,
                           const float* gamma, const float* beta, float* y, float* mean, float* rstd) {
    if (n <= 0 || c <= 0 || g <= 0 || hw <= 0) return;
    group_norm_forward_v1_kernel<<<grid_for(n * g), kThreads, 0, current_stream()>>>(n, c, hw, g, eps, x, gamma, beta,
                                                                                     y, mean, rstd);
    STF_CUDA_CHECK_LAUNCH();
}

void group_norm_backward_v1(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x, const float* gamma,
                            const float* mean, const float* rstd, const float* dy, float* dx, float* dgamma,
                            float* dbeta) {
    if (c <= 0 || g <= 0) return;
    cudaStream_t s = current_stream();
    if (n > 0 && hw > 0) {
        group_norm_backward_dx_v1_kernel<<<grid_for(n * g), kThreads, 0, s>>>(n, c, hw, g, x, gamma, mean, rstd, dy,
                                                                              dx);
        STF_CUDA_CHECK_LAUNCH();
    }
    if (dgamma || dbeta) {
        group_norm_backward_affine_v1_kernel<<<grid_for(c), kThreads, 0, s>>>(n, c, hw, g, x, mean, rstd, dy, dgamma,
                                                                              dbeta);
        STF_CUDA_CHECK_LAUNCH();
    }
}

#define STF_INSTANTIATE(TX, TY)                                                                                        \
    template void group_norm_forward<TX, TY>(int64_t, int64_t, int64_t, int64_t, float, const TX*, const float*,       \
                                             const float*, GroupNormFusion<float>, TY*, float*, float*);               \
    template void group_norm_backward<TX, TY>(int64_t, int64_t, int64_t, int64_t, const TX*, const float*,             \
                                              const float*, GroupNormFusion<float>, const float*, const float*,        \
                                              const TY*, TX*, float*, float*);
STF_INSTANTIATE(float, float)
STF_INSTANTIATE(bf16, bf16)
STF_INSTANTIATE(float, bf16)
#undef STF_INSTANTIATE

}  // namespace stf::cuda
