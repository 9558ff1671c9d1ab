// GroupNorm (Wu & He, 2018) over x [n, c, hw]: the c channels are split into g groups of c/g, and
// each (sample, group) block of (c/g) * hw values is normalised by its own mean and variance.
// Because x is contiguous, block ng = sample * g + group is the contiguous run x[ng * (c/g) * hw ...].
//
// Storage: x and dx are TX, y and dy TY, either T or bf16 with T = float (cuda/bf16.h). Each stored
// value is converted to T where it is loaded and each result is computed in T exactly as for T storage,
// then rounded to bf16 as it is stored, so the bf16 results are the float ones (on the same, bf16-exact
// inputs) rounded to bfloat16; the statistics and the parameter gradients are the float ones.
#include <cmath>
#include <type_traits>
#include <vector>

#include "cuda/group_norm_math.h"
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

// A block's values with the fused offset added: channel ch of the block holds x[ch * hw + p] + off(ch).
template <class T, class TX> struct Block {
    const TX* x;
    int64_t cpg, hw;
    const T* offset;  // offset + first channel of the block, or null
    double off(int64_t ch) const { return offset ? double(offset[ch]) : 0.0; }
};

// Two passes (mean first, then squared deviations) rather than E[x^2] - E[x]^2, which cancels
// catastrophically when the mean is large compared with the spread. Sums run channel by channel so
// the offset is a constant of each inner loop.
template <class T, class TX> Stats block_stats(const Block<T, TX>& b, double eps) {
    const double count = static_cast<double>(b.cpg * b.hw);
    double sum = 0.0;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const TX* xc = b.x + ch * b.hw;
        sum += lane_sum(b.hw, [xc](int64_t p) { return double(xc[p]); }) + b.off(ch) * static_cast<double>(b.hw);
    }
    const double mean = sum / count;
    double sq = 0.0;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const TX* xc = b.x + ch * b.hw;
        const double centre = mean - b.off(ch);  // x' - mean = x - (mean - offset)
        sq += lane_sum(b.hw, [xc, centre](int64_t p) {
            const double d = double(xc[p]) - centre;
            return d * d;
        });
    }
    const double var = sq / count;  // biased, as in the paper and PyTorch
    return {mean, 1.0 / std::sqrt(var + eps)};
}

// The dropout factors (0 or scale, in T) of output elements [first, first + count): the draws of
// group_norm_math::dropout_factor, one Philox block per four elements and no division per element, so
// the loops that use them stay simple.
template <class T> void fill_mask(const DropoutStream& d, uint64_t first, int64_t count, T* out) {
    const bool rows = d.row_len > 0;
    const uint64_t row_len = rows ? static_cast<uint64_t>(d.row_len) : ~uint64_t(0);
    uint64_t row = rows ? first / row_len : 0, pos = rows ? first % row_len : first;
    for (int64_t i = 0; i < count;) {
        const philox::Words w = philox::philox4x32_10(pos / 4, d.offset + row * d.row_stride, d.seed);
        for (unsigned k = static_cast<unsigned>(pos % 4); k < 4 && i < count && pos < row_len; ++k, ++i, ++pos)
            out[i] = group_norm_math::dropout_factor_of<T>(d, w.w[k]);
        if (pos == row_len) ++row, pos = 0;
    }
}

// dx for one block, and its channels' shares of dgamma and dbeta. With gy the gradient reaching the
// affine output a (dy through the dropout mask and the SiLU, if fused), xhat = (x' - mean) * rstd and
// dxhat = gy * gamma, differentiating through the block's mean and variance gives
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// and dx' = dx: the offset shifts x and its statistics alike. gy is computed in T from a rounded to T,
// as the unfused ops (group_norm, then silu's and dropout's backward) would; `gy` is the block's
// scratch and `mask` its dropout factors (null: no dropout). dy is loaded as T, and dx computed in T
// before it is stored as TX.
template <class T, class TX, class TY>
void block_backward(const Block<T, TX>& b, const T* gamma, const T* beta, bool silu, const T* mask, double mean,
                    double rstd, const TY* dy, TX* dx, double* gy, double* part_gamma, double* part_beta) {
    using group_norm_math::activation_grad;
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const double gm = gamma ? double(gamma[ch]) : 1.0, bt = beta ? double(beta[ch]) : 0.0;
        const double centre = mean - b.off(ch);
        const TX* xc = b.x + ch * b.hw;
        const TY* dyc = dy + ch * b.hw;
        const T* mc = mask ? mask + ch * b.hw : nullptr;
        double* gyc = gy + ch * b.hw;
        for (int64_t p = 0; p < b.hw; ++p) {
            const T dy_kept = mc ? static_cast<T>(dyc[p]) * mc[p] : static_cast<T>(dyc[p]);
            const T a = static_cast<T>((double(xc[p]) - centre) * rstd * gm + bt);
            gyc[p] = double(activation_grad<T>(dy_kept, a, silu));
        }
        const double sum_gy = lane_sum(b.hw, [gyc](int64_t p) { return gyc[p]; });
        const double sum_gy_xhat =
            rstd * lane_sum(b.hw, [gyc, xc, centre](int64_t p) { return gyc[p] * (double(xc[p]) - centre); });
        part_beta[ch] = sum_gy;
        part_gamma[ch] = sum_gy_xhat;
        sum_dxhat += gm * sum_gy;
        sum_dxhat_xhat += gm * sum_gy_xhat;
    }
    const double count = static_cast<double>(b.cpg * b.hw);
    const double mean_dxhat = sum_dxhat / count, mean_dxhat_xhat = sum_dxhat_xhat / count;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const double gm = gamma ? double(gamma[ch]) : 1.0;
        const double centre = mean - b.off(ch);
        const TX* xc = b.x + ch * b.hw;
        const double* gyc = gy + ch * b.hw;
        TX* dxc = dx + ch * b.hw;
        for (int64_t p = 0; p < b.hw; ++p) {
            const double xhat = (double(xc[p]) - centre) * rstd;
            dxc[p] = TX(static_cast<T>(rstd * (gyc[p] * gm - mean_dxhat - xhat * mean_dxhat_xhat)));
        }
    }
}

} // namespace

// The affine value is rounded to T before the SiLU and the mask, which then run in T: the same
// numbers as the unfused ops (group_norm, silu, dropout's multiply), and as the CUDA kernels in float.
// With TY other than T a block's output is formed in a scratch block of T and then rounded into y.
template <class T, class TX, class TY>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, double eps, const TX* x, const T* gamma,
                        const T* beta, GroupNormFusion<T> fusion, TY* y, T* mean, T* rstd) {
    constexpr bool direct = std::is_same_v<T, TY>;  // y itself holds the block's values of T
    const int64_t cpg = c / g, count = cpg * hw;
    const bool drop = fusion.dropout.active();
#pragma omp parallel if (n * c * hw >= kParallelMin)
    {
        std::vector<T> mask(drop ? count : 0);
        std::vector<T> scratch(direct ? 0 : count);
#pragma omp for schedule(static)
        for (int64_t ng = 0; ng < n * g; ++ng) {
            const int64_t first_channel = (ng % g) * cpg;
            // ng * cpg = sample * c + first_channel: the block's first row of the [n, c] offset
            const Block<T, TX> b{x + ng * count, cpg, hw, fusion.offset ? fusion.offset + ng * cpg : nullptr};
            T* yb;
            if constexpr (direct)
                yb = y + ng * count;
            else
                yb = scratch.data();
            const Stats st = block_stats(b, eps);
            mean[ng] = static_cast<T>(st.mean);
            rstd[ng] = static_cast<T>(st.rstd);
            for (int64_t ch = 0; ch < cpg; ++ch) {
                const double scale = gamma ? double(gamma[first_channel + ch]) : 1.0;
                const double shift = beta ? double(beta[first_channel + ch]) : 0.0;
                const double centre = st.mean - b.off(ch);
                const TX* xc = b.x + ch * hw;
                T* yc = yb + ch * hw;
                for (int64_t p = 0; p < hw; ++p)
                    yc[p] = static_cast<T>((double(xc[p]) - centre) * st.rstd * scale + shift);
            }
            if (fusion.silu)
                for (int64_t i = 0; i < count; ++i) yb[i] = group_norm_math::activate<T>(yb[i], true);
            if (drop) {
                fill_mask(fusion.dropout, uint64_t(ng * count), count, mask.data());
                for (int64_t i = 0; i < count; ++i) yb[i] = yb[i] * mask[i];
            }
            if constexpr (!direct) {
                TY* out = y + ng * count;
                for (int64_t i = 0; i < count; ++i) out[i] = TY(yb[i]);
            }
        }
    }
}

// One fused pass per block computes dx and each (sample, channel)'s share of dgamma and dbeta; the
// shares are then added over samples in order, so the result does not depend on the thread count.
template <class T, class TX, class TY>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x, const T* gamma, const T* beta,
                         GroupNormFusion<T> fusion, const T* mean, const T* rstd, const TY* dy, TX* dx, T* dgamma,
                         T* dbeta) {
    const int64_t cpg = c / g, count = cpg * hw;
    const bool drop = fusion.dropout.active();
    std::vector<double> part_gamma(n * c), part_beta(n * c);
#pragma omp parallel if (n * c * hw >= kParallelMin)
    {
        std::vector<double> gy(count);
        std::vector<T> mask(drop ? count : 0);
#pragma omp for schedule(static)
        for (int64_t ng = 0; ng < n * g; ++ng) {
            const int64_t off = ng * count, first_channel = (ng % g) * cpg, row = ng * cpg;
            const Block<T, TX> b{x + off, cpg, hw, fusion.offset ? fusion.offset + row : nullptr};
            if (drop) fill_mask(fusion.dropout, uint64_t(off), count, mask.data());
            block_backward(b, gamma ? gamma + first_channel : nullptr, beta ? beta + first_channel : nullptr,
                           fusion.silu, drop ? mask.data() : nullptr, double(mean[ng]), double(rstd[ng]), dy + off,
                           dx + off, gy.data(), part_gamma.data() + row, part_beta.data() + row);
        }
    }
    for (int64_t ch = 0; ch < c; ++ch) {
        double acc_gamma = 0.0, acc_beta = 0.0;
        for (int64_t s = 0; s < n; ++s) {
            acc_gamma += part_gamma[s * c + ch];
            acc_beta += part_beta[s * c + ch];
        }
        if (dgamma) dgamma[ch] = static_cast<T>(acc_gamma);
        if (dbeta) dbeta[ch] = static_cast<T>(acc_beta);
    }
}

#define STF_INSTANTIATE(T, TX, TY)                                                                                     \
    template void group_norm_forward<T, TX, TY>(int64_t, int64_t, int64_t, int64_t, double, const TX*, const T*,       \
                                                const T*, GroupNormFusion<T>, TY*, T*, T*);                            \
    template void group_norm_backward<T, TX, TY>(int64_t, int64_t, int64_t, int64_t, const TX*, const T*, const T*,    \
                                                 GroupNormFusion<T>, const T*, const T*, const TY*, TX*, T*, T*);
STF_INSTANTIATE(float, float, float)
STF_INSTANTIATE(double, double, double)
STF_INSTANTIATE(float, bf16, bf16)
STF_INSTANTIATE(float, float, bf16)
#undef STF_INSTANTIATE

} // namespace stf::cpu
