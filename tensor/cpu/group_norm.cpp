// GroupNorm (Wu & He, 2018) over x [n, c, hw]: the c channels are split into g groups of c/g, and
// each (sample, group) block of (c/g) * hw values is normalised by its own mean and variance.
// Because x is contiguous, block ng = sample * g + group is the contiguous run x[ng * (c/g) * hw ...].
#include <cmath>
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;

struct Stats {
    double mean, rstd;
};

// Sums in double over kLanes interleaved partial sums, added up in a fixed order at the end: the
// compiler may then keep the lanes in vector registers (a single running sum is a serial chain it must
// not reorder), and the result still does not depend on the thread count.
constexpr int kLanes = 8;
template <class F> double lane_sum(int64_t count, F term) {
    double lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= count; i += kLanes)
        for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
    for (; i < count; ++i) lanes[0] += term(i);
    double sum = 0.0;
    for (int l = 0; l < kLanes; ++l) sum += lanes[l];
    return sum;
}

// Two passes (mean first, then squared deviations) rather than E[x^2] - E[x]^2, which cancels
// catastrophically when the mean is large compared with the spread.
template <class T> Stats block_stats(const T* x, int64_t count, double eps) {
    const double mean = lane_sum(count, [x](int64_t i) { return double(x[i]); }) / static_cast<double>(count);
    const double sq = lane_sum(count, [x, mean](int64_t i) {
        const double d = double(x[i]) - mean;
        return d * d;
    });
    const double var = sq / static_cast<double>(count);  // biased, as in the paper and PyTorch
    return {mean, 1.0 / std::sqrt(var + eps)};
}

// dx for one block. With xhat = (x - mean) * rstd and dxhat = dy * gamma, differentiating through
// the block's mean and variance gives
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
template <class T>
void block_backward(int64_t cpg, int64_t hw, int64_t first_channel, const T* x, const T* gamma, double mean,
                    double rstd, const T* dy, T* dx) {
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t ch = 0; ch < cpg; ++ch) {
        const double gm = gamma ? double(gamma[first_channel + ch]) : 1.0;
        const T* dyc = dy + ch * hw;
        const T* xc = x + ch * hw;
        sum_dxhat += gm * lane_sum(hw, [dyc](int64_t p) { return double(dyc[p]); });
        sum_dxhat_xhat += gm * rstd * lane_sum(hw, [dyc, xc, mean](int64_t p) { return double(dyc[p]) * (xc[p] - mean); });
    }
    const double count = static_cast<double>(cpg * hw);
    const double mean_dxhat = sum_dxhat / count, mean_dxhat_xhat = sum_dxhat_xhat / count;
    for (int64_t ch = 0; ch < cpg; ++ch) {
        const double gm = gamma ? double(gamma[first_channel + ch]) : 1.0;
        for (int64_t p = 0; p < hw; ++p) {
            const int64_t i = ch * hw + p;
            const double xhat = (x[i] - mean) * rstd;
            dx[i] = static_cast<T>(rstd * (dy[i] * gm - mean_dxhat - xhat * mean_dxhat_xhat));
        }
    }
}

// dgamma[ch] = sum over samples and positions of dy * xhat, dbeta[ch] = sum of dy. One channel per
// iteration, samples visited in order, so the sums are deterministic.
template <class T>
void affine_grads(int64_t n, int64_t c, int64_t hw, int64_t g, const T* x, const T* mean, const T* rstd, const T* dy,
                  T* dgamma, T* dbeta) {
    const int64_t cpg = c / g;
#pragma omp parallel for schedule(static) if (n * c * hw >= kParallelMin)
    for (int64_t ch = 0; ch < c; ++ch) {
        double acc_gamma = 0.0, acc_beta = 0.0;
        for (int64_t s = 0; s < n; ++s) {
            const int64_t ng = s * g + ch / cpg;
            const double m = mean[ng], rs = rstd[ng];
            const T* xs = x + (s * c + ch) * hw;
            const T* dys = dy + (s * c + ch) * hw;
            acc_gamma += rs * lane_sum(hw, [dys, xs, m](int64_t p) { return double(dys[p]) * (xs[p] - m); });
            acc_beta += lane_sum(hw, [dys](int64_t p) { return double(dys[p]); });
        }
        if (dgamma) dgamma[ch] = static_cast<T>(acc_gamma);
        if (dbeta) dbeta[ch] = static_cast<T>(acc_beta);
    }
}

} // namespace

template <class T>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, double eps, const T* x, const T* gamma,
                        const T* beta, T* y, T* mean, T* rstd) {
    const int64_t cpg = c / g, count = cpg * hw;
#pragma omp parallel for schedule(static) if (n * c * hw >= kParallelMin)
    for (int64_t ng = 0; ng < n * g; ++ng) {
        const T* xb = x + ng * count;
        T* yb = y + ng * count;
        const Stats st = block_stats(xb, count, eps);
        mean[ng] = static_cast<T>(st.mean);
        rstd[ng] = static_cast<T>(st.rstd);
        const int64_t first_channel = (ng % g) * cpg;
        for (int64_t ch = 0; ch < cpg; ++ch) {
            const double scale = gamma ? double(gamma[first_channel + ch]) : 1.0;
            const double shift = beta ? double(beta[first_channel + ch]) : 0.0;
            for (int64_t p = 0; p < hw; ++p) {
                const int64_t i = ch * hw + p;
                yb[i] = static_cast<T>((xb[i] - st.mean) * st.rstd * scale + shift);
            }
        }
    }
}

template <class T>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const T* x, const T* gamma, const T* mean,
                         const T* rstd, const T* dy, T* dx, T* dgamma, T* dbeta) {
    const int64_t cpg = c / g, count = cpg * hw;
#pragma omp parallel for schedule(static) if (n * c * hw >= kParallelMin)
    for (int64_t ng = 0; ng < n * g; ++ng) {
        const int64_t off = ng * count;
        block_backward(cpg, hw, (ng % g) * cpg, x + off, gamma, double(mean[ng]), double(rstd[ng]), dy + off,
                       dx + off);
    }
    if (dgamma || dbeta) affine_grads(n, c, hw, g, x, mean, rstd, dy, dgamma, dbeta);
}

#define STF_INSTANTIATE(T)                                                                                         \
    template void group_norm_forward<T>(int64_t, int64_t, int64_t, int64_t, double, const T*, const T*, const T*, \
                                        T*, T*, T*);                                                               \
    template void group_norm_backward<T>(int64_t, int64_t, int64_t, int64_t, const T*, const T*, const T*,        \
                                         const T*, const T*, T*, T*, T*);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
