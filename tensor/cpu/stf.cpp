// Squared distances between noisy samples and reference images: the logits of the STF target, and the
// inner loop of the target-variance tools, which run them over whole datasets on the CPU.
//
// Each distance is summed from the differences (not from norms and a dot product, which cancel when a
// distance is tiny). The loop is blocked so that a block of reference images stays in cache while every
// sample passes over it, and four distances are computed at once from one load of the sample's
// features. Within a span of kSpan features the squares are summed in kLanes interleaved partial sums
// of type T (the compiler keeps them in vector registers); the spans are added in double. In float
// that is the CUDA kernel's scheme (float within 16 features, double across); in double it is exact to
// double rounding.
#include <algorithm>
#include <cmath>

#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

constexpr int64_t kLanes = 8;
constexpr int64_t kSpan = 64;       // features per partial sum (a multiple of kLanes)
constexpr int64_t kRefs = 4;        // distances computed together
constexpr int64_t kRefBlock = 32;   // reference images per cache block (32 x 3072 floats: 384 KB)

// Adds to acc[q] the squared distance between y and x[q] over all d features.
template <class T> void four_distances(const T* __restrict y, const T* const (&x)[kRefs], int64_t d, double (&acc)[kRefs]) {
    const T* __restrict x0 = x[0];
    const T* __restrict x1 = x[1];
    const T* __restrict x2 = x[2];
    const T* __restrict x3 = x[3];
    for (int64_t k0 = 0; k0 < d; k0 += kSpan) {
        const int64_t k1 = std::min(k0 + kSpan, d);
        T p0[kLanes] = {}, p1[kLanes] = {}, p2[kLanes] = {}, p3[kLanes] = {};
        int64_t k = k0;
        for (; k + kLanes <= k1; k += kLanes)
            for (int64_t l = 0; l < kLanes; ++l) {
                const T yv = y[k + l];
                const T d0 = yv - x0[k + l], d1 = yv - x1[k + l], d2 = yv - x2[k + l], d3 = yv - x3[k + l];
                p0[l] += d0 * d0;
                p1[l] += d1 * d1;
                p2[l] += d2 * d2;
                p3[l] += d3 * d3;
            }
        for (; k < k1; ++k) {
            const T yv = y[k];
            const T d0 = yv - x0[k], d1 = yv - x1[k], d2 = yv - x2[k], d3 = yv - x3[k];
            p0[0] += d0 * d0;
            p1[0] += d1 * d1;
            p2[0] += d2 * d2;
            p3[0] += d3 * d3;
        }
        const T* parts[kRefs] = {p0, p1, p2, p3};
        for (int64_t q = 0; q < kRefs; ++q) {
            double span = 0;
            for (int64_t l = 0; l < kLanes; ++l) span += static_cast<double>(parts[q][l]);
            acc[q] += span;
        }
    }
}

}  // namespace

template <class T> void sq_distances(int64_t b, int64_t n, int64_t d, const T* y, const T* x, T* out) {
    const int64_t blocks = (n + kRefBlock - 1) / kRefBlock;
#pragma omp parallel for schedule(dynamic)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t j_end = std::min(n, (blk + 1) * kRefBlock);
        for (int64_t i = 0; i < b; ++i) {
            const T* yi = y + i * d;
            for (int64_t j = blk * kRefBlock; j < j_end; j += kRefs) {
                // A last group of fewer than four repeats its last image; only the real ones are stored.
                const int64_t real = std::min(kRefs, j_end - j);
                const T* xs[kRefs];
                for (int64_t q = 0; q < kRefs; ++q) xs[q] = x + (j + std::min(q, real - 1)) * d;
                double acc[kRefs] = {};
                four_distances(yi, xs, d, acc);
                for (int64_t q = 0; q < real; ++q) out[i * n + j + q] = static_cast<T>(acc[q]);
            }
        }
    }
}

// One chunk of the streamed softmax (cuda/kernels.h). The logits and weights are computed in T, as the
// separate ops did; the sums in double.
template <class T>
void stf_softmax_chunk(int64_t b, int64_t len, int64_t d, const T* coef, T* dist, T* row_max, T* weight_sum,
                       T* weight_sq_sum, T* acc) {
#pragma omp parallel for schedule(static) if (b * len >= (1 << 15))
    for (int64_t i = 0; i < b; ++i) {
        T* row = dist + i * len;
        T m = row_max[i];
        for (int64_t j = 0; j < len; ++j) {
            row[j] = row[j] * coef[i];
            m = std::max(m, row[j]);
        }
        const T r = std::exp(row_max[i] - m);
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < len; ++j) {
            row[j] = std::exp(row[j] - m);
            sum += row[j];
            sq += double(row[j]) * double(row[j]);
        }
        weight_sum[i] = static_cast<T>(double(weight_sum[i] * r) + sum);
        weight_sq_sum[i] = static_cast<T>(double(weight_sq_sum[i] * (r * r)) + sq);
        for (int64_t k = 0; k < d; ++k) acc[i * d + k] *= r;
        row_max[i] = m;
    }
}

template void sq_distances<float>(int64_t, int64_t, int64_t, const float*, const float*, float*);
template void sq_distances<double>(int64_t, int64_t, int64_t, const double*, const double*, double*);
template void stf_softmax_chunk<float>(int64_t, int64_t, int64_t, const float*, float*, float*, float*, float*,
                                       float*);
template void stf_softmax_chunk<double>(int64_t, int64_t, int64_t, const double*, double*, double*, double*,
                                        double*, double*);

}  // namespace stf::cpu
