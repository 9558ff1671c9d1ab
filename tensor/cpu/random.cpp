// Random fills. Every element's draw is a pure function of (i, offset, seed) through Philox (see
// cuda/philox.h), so the loops parallelise freely and the CUDA kernels draw the same numbers: bit for
// bit for uniform and bernoulli, and for normal up to the last-ulp differences between the host's and
// the GPU's logf/cosf/sinf. The draw is always made in float, as on the GPU, then widened and scaled.
#include <algorithm>
#include <cmath>
#include "cuda/philox.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 12;  // Philox is ~40 integer ops per draw: parallel pays early

// Calls f(i, block, k) for the n elements of a (row-split) draw, element i being word k of its
// Philox block: each block is computed once for the four elements that share it.
template <class F>
void for_each_draw(int64_t n, uint64_t seed, uint64_t offset, const uint64_t* offset_base, int64_t row_len,
                   uint64_t row_stride, F f) {
    if (n <= 0) return;
    offset = philox::stream_offset(offset, offset_base);
    // The last row may be partial (n need not be a multiple of row_len): it takes its row's first elements.
    const int64_t len = row_len > 0 ? row_len : n, blocks_per_row = (len + 3) / 4;
    const int64_t blocks = ((n + len - 1) / len) * blocks_per_row;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t row = b / blocks_per_row, block = b % blocks_per_row;
        const int64_t first = block * 4, last = std::min({first + 4, len, n - row * len});
        if (first >= last) continue;
        const philox::Words words = philox::philox4x32_10(static_cast<uint64_t>(block),
                                                          offset + static_cast<uint64_t>(row) * row_stride, seed);
        for (int64_t j = first; j < last; ++j) f(row * len + j, words, static_cast<unsigned>(j - first));
    }
}

} // namespace

// The scaling is one fused multiply-add (a single rounding), written as the CUDA kernel writes it, so
// float results match the GPU bit for bit whether or not the compiler would contract a * b + c.
template <class T>
void uniform(int64_t n, T* out, double lo, double hi, uint64_t seed, uint64_t offset, int64_t row_len,
             uint64_t row_stride, const uint64_t* offset_base) {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
    for_each_draw(n, seed, offset, offset_base, row_len, row_stride, [&](int64_t i, const philox::Words& w, unsigned k) {
        out[i] = std::fma(h - l, static_cast<T>(philox::uniform_of(w, k)), l);
    });
}

template <class T>
void normal(int64_t n, T* out, double mean, double std, uint64_t seed, uint64_t offset, int64_t row_len,
            uint64_t row_stride, const uint64_t* offset_base) {
    const T m = static_cast<T>(mean), s = static_cast<T>(std);
    for_each_draw(n, seed, offset, offset_base, row_len, row_stride, [&](int64_t i, const philox::Words& w, unsigned k) {
        out[i] = std::fma(s, static_cast<T>(philox::normal_of(w, k)), m);
    });
}

// p is compared in T: for float that is the float p the CUDA kernel receives.
template <class T>
void bernoulli(int64_t n, T* out, double p, uint64_t seed, uint64_t offset, int64_t row_len, uint64_t row_stride,
               const uint64_t* offset_base) {
    const T pt = static_cast<T>(p);
    for_each_draw(n, seed, offset, offset_base, row_len, row_stride, [&](int64_t i, const philox::Words& w, unsigned k) {
        out[i] = static_cast<T>(philox::uniform_of(w, k)) < pt ? T(1) : T(0);
    });
}

#define STF_INSTANTIATE(T)                                                                    \
    template void uniform<T>(int64_t, T*, double, double, uint64_t, uint64_t, int64_t, uint64_t, const uint64_t*); \
    template void normal<T>(int64_t, T*, double, double, uint64_t, uint64_t, int64_t, uint64_t, const uint64_t*);  \
    template void bernoulli<T>(int64_t, T*, double, uint64_t, uint64_t, int64_t, uint64_t, const uint64_t*);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
