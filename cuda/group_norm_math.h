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
#include "cuda/layout.h"
#include "cuda/philox.h"

namespace stf {

// Dropout's mask as ops::bernoulli(keep) followed by a scale would draw it: element i (of the whole
// [n, c, hw] output) is kept when the float uniform of its place in the Philox stream (cuda/philox.h,
// row-split as the generator's draw) is below keep, and kept values are multiplied by scale = 1 / keep.
struct DropoutStream {
    double keep = 1.0, scale = 1.0;  // keep = 1: no dropout
    uint64_t seed = 0, offset = 0;
    int64_t row_len = 0;
    uint64_t row_stride = 0;
    STF_HD bool active() const { return keep < 1.0; }
};

template <class T> struct GroupNormFusion {
    const T* offset = nullptr;  // [n, c], added to x before the statistics; null: none
    bool silu = false;          // apply SiLU to the output
    DropoutStream dropout;      // applied last
};

namespace group_norm_math {

template <class T> STF_HD T sigmoid(T v) { return T(1) / (T(1) + exp(-v)); }

// The output for the affine value a = gamma * xhat + beta.
template <class T> STF_HD T activate(T a, bool silu) { return silu ? a * sigmoid(a) : a; }

// d output / d a, times the incoming gradient dy: d/da [a s(a)] = s (1 + a (1 - s)).
template <class T> STF_HD T activation_grad(T dy, T a, bool silu) {
    if (!silu) return dy;
    const T s = sigmoid(a);
    return dy * s * (T(1) + a * (T(1) - s));
}

// The dropout factor (0 or scale, in T) of element i: what the unfused ops multiply by, so fused and
// unfused results agree bit for bit. Consecutive elements share a Philox block; `cache` keeps the last
// one, so a loop walking elements in order draws each block once.
struct MaskCache {
    uint64_t block = ~uint64_t(0), offset = 0;
    philox::Words words{};
};
template <class T> STF_HD T dropout_factor(const DropoutStream& d, uint64_t i, MaskCache& cache) {
    const philox::RowElement e = philox::row_element(i, d.offset, static_cast<uint64_t>(d.row_len), d.row_stride);
    const uint64_t block = e.index / 4;
    if (block != cache.block || e.offset != cache.offset) {
        cache.words = philox::philox4x32_10(block, e.offset, d.seed);
        cache.block = block;
        cache.offset = e.offset;
    }
    const T u = static_cast<T>(philox::uniform_of(cache.words, static_cast<unsigned>(e.index % 4)));
    return u < static_cast<T>(d.keep) ? static_cast<T>(d.scale) : T(0);
}

}  // namespace group_norm_math
}  // namespace stf
