// GroupNorm (Wu & He, 2018) over x [n, c, hw]: the c channels are split into g groups of c/g, and
// each (sample, group) block of (c/g) * hw values is normalised by its own mean and variance.
// Because x is contiguous, block ng = sample * g + group is the contiguous run x[ng * (c/g) * hw ...].
//
// Storage: x and dx are TX, y and dy TY, either T or bf16 with T = float (cuda/bf16.h). Each stored
// value is converted to T where it is loaded and each result is computed in T exactly as for T storage,
// then rounded to bf16 as it is stored, so the bf16 results are the float ones (on the same, bf16-exact
// inputs) rounded to bfloat16; the statistics and the parameter gradients are the float ones.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "cuda/group_norm_math.h"
#include "tensor/cpu/exp_poly.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/lane_sum.h"
#include "tensor/cpu/philox_blocks.h"

namespace stf::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;

struct Stats {
    double mean, rstd;
};

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
// group_norm_math::dropout_factor. Each row of the stream that the run touches has its blocks drawn
// at once (philox_blocks, eight at a time where the CPU has AVX2) into `words`, the caller's scratch.
template <class T>
void fill_mask(const DropoutStream& d, uint64_t first, int64_t count, T* out, std::vector<uint32_t>& words) {
    const bool rows = d.row_len > 0;
    const uint64_t row_len = rows ? static_cast<uint64_t>(d.row_len) : ~uint64_t(0);
    uint64_t row = rows ? first / row_len : 0, pos = rows ? first % row_len : first;
    for (int64_t i = 0; i < count;) {
        const int64_t run = static_cast<int64_t>(std::min<uint64_t>(static_cast<uint64_t>(count - i), row_len - pos));
        const uint64_t first_block = pos / 4, blocks = (pos + static_cast<uint64_t>(run) + 3) / 4 - first_block;
        words.resize(4 * blocks);
        philox_blocks(first_block, static_cast<int64_t>(blocks), d.stream_offset() + row * d.row_stride, d.seed,
                      words.data());
        const uint32_t* w = words.data() + (pos - 4 * first_block);
        for (int64_t j = 0; j < run; ++j) out[i + j] = group_norm_math::dropout_factor_of<T>(d, w[j]);
        i += run;
        pos += static_cast<uint64_t>(run);
        if (pos == row_len) ++row, pos = 0;
    }
}

// The per-element work runs in T (float for the float kernels), so the loops vectorise; the block's
// statistics and every sum stay in double. exp is exp_poly for float, a polynomial the compiler
// vectorises where expf would be a libm call per element (why and its error: exp_poly.h); the SiLU
// and its derivative are elementwise_math's formulas with that exp.
template <class T> T exp_of(T x) {
    if constexpr (std::is_same_v<T, float>)
        return exp_poly(x);
    else
        return std::exp(x);
}
template <class T> T sigmoid_of(T a) { return T(1) / (T(1) + exp_of(-a)); }

// One channel's affine map a = (x' - mean) * rstd * gamma + beta, as d * scale + shift with
// d = x' - mean = (x - centre_hi) - centre_lo: the centre (mean - offset) is split into two T, so d
// stays accurate to T when the mean is large against the spread, where x - centre rounded once would
// lose the low bits of both.
template <class T> struct ChannelAffine {
    T centre_hi, centre_lo, scale, shift;
    T d(T x) const { return (x - centre_hi) - centre_lo; }
    T a(T x) const { return d(x) * scale + shift; }
};

template <class T> ChannelAffine<T> channel_affine(double centre, double rstd, double gamma, double beta) {
    const T hi = static_cast<T>(centre);
    return {hi, static_cast<T>(centre - double(hi)), static_cast<T>(rstd * gamma), static_cast<T>(beta)};
}

// y = dropout(silu(a)) over one channel, each fusion its own loop (no branch inside).
template <bool Silu, bool Drop, class T, class TX>
void forward_channel(const TX* x, int64_t hw, const ChannelAffine<T>& f, const T* mask, T* y) {
    for (int64_t p = 0; p < hw; ++p) {
        T v = f.a(static_cast<T>(x[p]));
        if constexpr (Silu) v = elementwise_math::silu_given_sigmoid(v, sigmoid_of(v));
        if constexpr (Drop) v = v * mask[p];
        y[p] = v;
    }
}

template <class T, class TX>
void forward_channel(bool silu, bool drop, const TX* x, int64_t hw, const ChannelAffine<T>& f, const T* mask, T* y) {
    if (silu)
        drop ? forward_channel<true, true>(x, hw, f, mask, y) : forward_channel<true, false>(x, hw, f, mask, y);
    else
        drop ? forward_channel<false, true>(x, hw, f, mask, y) : forward_channel<false, false>(x, hw, f, mask, y);
}

// gy, the gradient reaching the affine output a: dy through the mask and the SiLU.
template <bool Silu, bool Drop, class T, class TX, class TY>
void gradient_channel(const TX* x, const TY* dy, int64_t hw, const ChannelAffine<T>& f, const T* mask, T* gy) {
    for (int64_t p = 0; p < hw; ++p) {
        T g = static_cast<T>(dy[p]);
        if constexpr (Drop) g = g * mask[p];
        if constexpr (Silu) {
            const T a = f.a(static_cast<T>(x[p]));
            g = elementwise_math::silu_backward_given_sigmoid(g, a, sigmoid_of(a));
        }
        gy[p] = g;
    }
}

template <class T, class TX, class TY>
void gradient_channel(bool silu, bool drop, const TX* x, const TY* dy, int64_t hw, const ChannelAffine<T>& f,
                      const T* mask, T* gy) {
    if (silu)
        drop ? gradient_channel<true, true>(x, dy, hw, f, mask, gy) : gradient_channel<true, false>(x, dy, hw, f, mask, gy);
    else
        drop ? gradient_channel<false, true>(x, dy, hw, f, mask, gy)
             : gradient_channel<false, false>(x, dy, hw, f, mask, gy);
}

// dx for one block, and its channels' shares of dgamma and dbeta. With gy the gradient reaching the
// affine output a (dy through the dropout mask and the SiLU, if fused), xhat = (x' - mean) * rstd and
// dxhat = gy * gamma, differentiating through the block's mean and variance gives
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// and dx' = dx: the offset shifts x and its statistics alike. In T per element, with d = x' - mean:
//   dx = gy * (rstd gamma) + d * (-rstd^2 mean(dxhat xhat)) + (-rstd mean(dxhat)),
// the three coefficients formed in double once per channel. `gy` is the block's scratch and `mask` its
// dropout factors (null: no dropout).
template <class T, class TX, class TY>
void block_backward(const Block<T, TX>& b, const T* gamma, const T* beta, bool silu, const T* mask, double mean,
                    double rstd, const TY* dy, TX* dx, T* gy, double* part_gamma, double* part_beta) {
    double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const double gm = gamma ? double(gamma[ch]) : 1.0, bt = beta ? double(beta[ch]) : 0.0;
        const double centre = mean - b.off(ch);
        const TX* xc = b.x + ch * b.hw;
        T* gyc = gy + ch * b.hw;
        gradient_channel(silu, mask != nullptr, xc, dy + ch * b.hw, b.hw, channel_affine<T>(centre, rstd, gm, bt),
                         mask ? mask + ch * b.hw : nullptr, gyc);
        const double sum_gy = lane_sum(b.hw, [gyc](int64_t p) { return double(gyc[p]); });
        const double sum_gy_xhat = rstd * lane_sum(b.hw, [gyc, xc, centre](int64_t p) {
                                       return double(gyc[p]) * (double(xc[p]) - centre);
                                   });
        part_beta[ch] = sum_gy;
        part_gamma[ch] = sum_gy_xhat;
        sum_dxhat += gm * sum_gy;
        sum_dxhat_xhat += gm * sum_gy_xhat;
    }
    const double count = static_cast<double>(b.cpg * b.hw);
    const double mean_dxhat = sum_dxhat / count, mean_dxhat_xhat = sum_dxhat_xhat / count;
    for (int64_t ch = 0; ch < b.cpg; ++ch) {
        const double gm = gamma ? double(gamma[ch]) : 1.0;
        const ChannelAffine<T> f = channel_affine<T>(mean - b.off(ch), rstd, gm, 0.0);
        const T c_gy = static_cast<T>(rstd * gm), c_d = static_cast<T>(-rstd * rstd * mean_dxhat_xhat),
                c_1 = static_cast<T>(-rstd * mean_dxhat);
        const TX* xc = b.x + ch * b.hw;
        const T* gyc = gy + ch * b.hw;
        TX* dxc = dx + ch * b.hw;
        for (int64_t p = 0; p < b.hw; ++p) dxc[p] = TX(gyc[p] * c_gy + f.d(static_cast<T>(xc[p])) * c_d + c_1);
    }
}

// The scratch one thread's blocks reuse: dropout factors, Philox words, and a block of T for outputs
// stored as another type.
template <class T> struct Scratch {
    std::vector<T> mask, staged;
    std::vector<uint32_t> words;
};

// Forward for block ng = sample * g + group: statistics in double, then every element in T (the affine
// value, the SiLU and the mask), as the CUDA kernels compute them in float, to within exp_poly's and
// the libraries' last bits. With TY other than T the block is formed in scratch and then rounded into y.
template <class T, class TX, class TY>
void forward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, double eps, const TX* x, const T* gamma,
                   const T* beta, const GroupNormFusion<T>& fusion, TY* y, T* mean, T* rstd, Scratch<T>& scratch) {
    constexpr bool direct = std::is_same_v<T, TY>;  // y itself holds the block's values of T
    const int64_t count = cpg * hw, first_channel = (ng % g) * cpg;
    const bool drop = fusion.dropout.active();
    // ng * cpg = sample * c + first_channel: the block's first row of the [n, c] offset
    const Block<T, TX> b{x + ng * count, cpg, hw, fusion.offset ? fusion.offset + ng * cpg : nullptr};
    T* yb;
    if constexpr (direct)
        yb = y + ng * count;
    else
        yb = (scratch.staged.resize(size_t(count)), scratch.staged.data());
    const Stats st = block_stats(b, eps);
    mean[ng] = static_cast<T>(st.mean);
    rstd[ng] = static_cast<T>(st.rstd);
    if (drop) {
        scratch.mask.resize(size_t(count));
        fill_mask(fusion.dropout, uint64_t(ng * count), count, scratch.mask.data(), scratch.words);
    }
    for (int64_t ch = 0; ch < cpg; ++ch) {
        const double scale = gamma ? double(gamma[first_channel + ch]) : 1.0;
        const double shift = beta ? double(beta[first_channel + ch]) : 0.0;
        forward_channel(fusion.silu, drop, b.x + ch * hw, hw, channel_affine<T>(st.mean - b.off(ch), st.rstd, scale, shift),
                        drop ? scratch.mask.data() + ch * hw : nullptr, yb + ch * hw);
    }
    if constexpr (!direct) {
        TY* out = y + ng * count;
        for (int64_t i = 0; i < count; ++i) out[i] = TY(yb[i]);
    }
}

// Backward for block ng: dx and the block's rows of the dgamma and dbeta shares.
template <class T, class TX, class TY>
void backward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, const TX* x, const T* gamma, const T* beta,
                    const GroupNormFusion<T>& fusion, const T* mean, const T* rstd, const TY* dy, TX* dx,
                    double* part_gamma, double* part_beta, Scratch<T>& scratch) {
    const int64_t count = cpg * hw, off = ng * count, first_channel = (ng % g) * cpg, row = ng * cpg;
    const bool drop = fusion.dropout.active();
    const Block<T, TX> b{x + off, cpg, hw, fusion.offset ? fusion.offset + row : nullptr};
    if (drop) {
        scratch.mask.resize(size_t(count));
        fill_mask(fusion.dropout, uint64_t(off), count, scratch.mask.data(), scratch.words);
    }
    scratch.staged.resize(size_t(count));  // gy
    block_backward(b, gamma ? gamma + first_channel : nullptr, beta ? beta + first_channel : nullptr, fusion.silu,
                   drop ? scratch.mask.data() : nullptr, double(mean[ng]), double(rstd[ng]), dy + off, dx + off,
                   scratch.staged.data(), part_gamma + row, part_beta + row);
}

// The float blocks are compiled twice, for x86-64-v3 (AVX2 with FMA) and for the
// baseline, and the loader picks the version the CPU runs (GCC's target_clones, resolved once by an
// ifunc); flatten inlines the whole block into each version, so its loops are vectorised eight floats
// wide where the CPU allows. With FMA, d * scale + shift rounds once instead of twice: results differ
// from the baseline build in the last bit, as oneDNN's do between CPUs. All three storage variants
// take the same version, so the bf16 kernels stay the float ones rounded. The double kernels (the
// gradient checks' reference) are compiled once, for the baseline.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define STF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), flatten))
#else
#define STF_CPU_CLONES
#endif

template <class T, class TX, class TY>
void run_forward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, double eps, const TX* x, const T* gamma,
                       const T* beta, const GroupNormFusion<T>& fusion, TY* y, T* mean, T* rstd, Scratch<T>& scratch) {
    forward_block(ng, g, cpg, hw, eps, x, gamma, beta, fusion, y, mean, rstd, scratch);
}
template <class T, class TX, class TY>
void run_backward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, const TX* x, const T* gamma, const T* beta,
                        const GroupNormFusion<T>& fusion, const T* mean, const T* rstd, const TY* dy, TX* dx,
                        double* part_gamma, double* part_beta, Scratch<T>& scratch) {
    backward_block(ng, g, cpg, hw, x, gamma, beta, fusion, mean, rstd, dy, dx, part_gamma, part_beta, scratch);
}

#define STF_FLOAT_BLOCKS(TX, TY)                                                                                       \
    STF_CPU_CLONES void run_forward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, double eps, const TX* x,     \
                                          const float* gamma, const float* beta,                                       \
                                          const GroupNormFusion<float>& fusion, TY* y, float* mean, float* rstd,       \
                                          Scratch<float>& scratch) {                                                   \
        forward_block(ng, g, cpg, hw, eps, x, gamma, beta, fusion, y, mean, rstd, scratch);                            \
    }                                                                                                                  \
    STF_CPU_CLONES void run_backward_block(int64_t ng, int64_t g, int64_t cpg, int64_t hw, const TX* x,                \
                                           const float* gamma, const float* beta,                                      \
                                           const GroupNormFusion<float>& fusion, const float* mean, const float* rstd, \
                                           const TY* dy, TX* dx, double* part_gamma, double* part_beta,                \
                                           Scratch<float>& scratch) {                                                  \
        backward_block(ng, g, cpg, hw, x, gamma, beta, fusion, mean, rstd, dy, dx, part_gamma, part_beta, scratch);   \
    }
STF_FLOAT_BLOCKS(float, float)
STF_FLOAT_BLOCKS(bf16, bf16)
STF_FLOAT_BLOCKS(float, bf16)
#undef STF_FLOAT_BLOCKS

} // namespace

template <class T, class TX, class TY>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, double eps, const TX* x, const T* gamma,
                        const T* beta, GroupNormFusion<T> fusion, TY* y, T* mean, T* rstd) {
    const int64_t cpg = c / g;
#pragma omp parallel if (n * c * hw >= kParallelMin)
    {
        Scratch<T> scratch;
#pragma omp for schedule(static)
        for (int64_t ng = 0; ng < n * g; ++ng)
            run_forward_block(ng, g, cpg, hw, eps, x, gamma, beta, fusion, y, mean, rstd, scratch);
    }
}

// One fused pass per block computes dx and each (sample, channel)'s share of dgamma and dbeta; the
// shares are then added over samples in order, so the result does not depend on the thread count.
template <class T, class TX, class TY>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x, const T* gamma, const T* beta,
                         GroupNormFusion<T> fusion, const T* mean, const T* rstd, const TY* dy, TX* dx, T* dgamma,
                         T* dbeta) {
    const int64_t cpg = c / g;
    std::vector<double> part_gamma(n * c), part_beta(n * c);
#pragma omp parallel if (n * c * hw >= kParallelMin)
    {
        Scratch<T> scratch;
#pragma omp for schedule(static)
        for (int64_t ng = 0; ng < n * g; ++ng)
            run_backward_block(ng, g, cpg, hw, x, gamma, beta, fusion, mean, rstd, dy, dx, part_gamma.data(),
                               part_beta.data(), scratch);
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
