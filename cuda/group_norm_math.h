// What the GroupNorm kernels fuse around the normalisation, shared by the CPU twins
// (tensor/cpu/group_norm.cpp) and the CUDA kernels (cuda/group_norm.cu).
//
// A U-Net block normalises a convolution's output plus its bias and the noise embedding, applies SiLU
// and dropout: dropout(silu(group_norm(conv(x) + bias[c] + emb[n, c]))). Done as separate ops, that is
// six passes over the activation forward (bias add, embedding add, normalise, SiLU, mask, multiply)
// and as many backward. Fused, the kernels read x once and write y once:
//   x' = x + offset[sample, channel]                  (offset [n, c], optional)
//   a  = gamma[ch] * xhat + beta[ch],                 xhat = (x' - mean) * rstd
//   y  = silu(a) * mask                               (silu and mask optional)
// The backward pass recomputes a from x, the statistics and the offset instead of keeping the
// normalised tensor, and draws the dropout mask again from its Philox stream instead of keeping it,
// so the fused op saves only x (less than the unfused ops, which also kept the mask).
#pragma once
#include <math.h>
#include <stdint.h>
#include "cuda/elementwise_math.h"
#include "cuda/layout.h"
#include "cuda/philox.h"

namespace stf {

// Dropout's mask as ops::bernoulli(keep) followed by a scale would draw it: element i (of the whole
// [n, c, hw] output) is kept when the float uniform of its place in the Philox stream (cuda/philox.h,
// row-split as the generator's draw) is below keep, and kept values are multiplied by scale = 1 / keep.
// offset_base, when set, is a row key's word in the device's memory (tensor/random.h) that is added to
// offset when the kernel runs, so a replayed CUDA graph draws each step's mask: one broadcast load
// per element, which the L1 serves.
struct DropoutStream {
    double keep = 1.0, scale = 1.0;  // keep = 1: no dropout
    uint64_t seed = 0, offset = 0;
    int64_t row_len = 0;
    uint64_t row_stride = 0;
    const uint64_t* offset_base = nullptr;
    STF_HD bool active() const { return keep < 1.0; }
    STF_HD uint64_t stream_offset() const { return philox::stream_offset(offset, offset_base); }
};

template <class T> struct GroupNormFusion {
    const T* offset = nullptr;  // [n, c], added to x before the statistics; null: none
    bool silu = false;          // apply SiLU to the output
    DropoutStream dropout;      // applied last
};

namespace group_norm_math {

// The output for the affine value a = gamma * xhat + beta: SiLU's formula is the elementwise op's.
template <class T> STF_HD T activate(T a, bool silu) { return silu ? elementwise_math::silu(a) : a; }

// d output / d a, times the incoming gradient dy.
template <class T> STF_HD T activation_grad(T dy, T a, bool silu) {
    return silu ? elementwise_math::silu_backward(dy, a) : dy;
}

// Where output element `at` draws its mask value: its place (stream element, stream offset) in the
// op's Philox stream. `at` is element `in_sample` of sample `sample`, samples holding `sample_len`
// elements. The generator's rows are the samples (row_len == sample_len, a keyed generator) or there is
// one stream (row_len 0), so the place needs no division; other row lengths divide.
STF_HD philox::RowElement dropout_place(const DropoutStream& d, uint64_t at, uint64_t sample, uint64_t in_sample,
                                        uint64_t sample_len) {
    const uint64_t offset = d.stream_offset();
    if (d.row_len == 0) return {at, offset};
    if (static_cast<uint64_t>(d.row_len) == sample_len) return {in_sample, offset + sample * d.row_stride};
    return philox::row_element(at, offset, static_cast<uint64_t>(d.row_len), d.row_stride);
}

// Word k of a Philox block, by selects rather than an indexed load (no local-memory array on the GPU).
STF_HD uint32_t word(const philox::Words& w, unsigned k) {
    return k == 0 ? w.w[0] : k == 1 ? w.w[1] : k == 2 ? w.w[2] : w.w[3];
}

// The factor (0 or scale, in T) of one uniform draw: what the unfused ops multiply by (bernoulli's
// 1 or 0, scaled), so fused and unfused results agree bit for bit.
template <class T> STF_HD T dropout_factor_of(const DropoutStream& d, uint32_t w) {
    return static_cast<T>(philox::to_unit(w)) < static_cast<T>(d.keep) ? static_cast<T>(d.scale) : T(0);
}

// The factor of the element at place p.
template <class T> STF_HD T dropout_factor(const DropoutStream& d, philox::RowElement p) {
    const philox::Words w = philox::philox4x32_10(p.index / 4, p.offset, d.seed);
    return dropout_factor_of<T>(d, word(w, static_cast<unsigned>(p.index % 4)));
}

// The factors of the four elements at places p .. p + 3 (p.index % 4 == 0: one Philox block).
template <class T> STF_HD void dropout_factors4(const DropoutStream& d, philox::RowElement p, T (&f)[4]) {
    const philox::Words w = philox::philox4x32_10(p.index / 4, p.offset, d.seed);
    f[0] = dropout_factor_of<T>(d, w.w[0]);
    f[1] = dropout_factor_of<T>(d, w.w[1]);
    f[2] = dropout_factor_of<T>(d, w.w[2]);
    f[3] = dropout_factor_of<T>(d, w.w[3]);
}

}  // namespace group_norm_math
}  // namespace stf
