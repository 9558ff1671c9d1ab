// What the GroupNorm kernels fuse around the normalisation, shared by the CPU twins
// (tensor/cpu/group_norm.cpp) and the CUDA kernels (cuda/group_norm.cu).
//
// A U-Net block normalises a convolution's output plus its bias and the noise embedding, and applies
// SiLU to the result: silu(group_norm(conv(x) + bias[c] + emb[n, c])). Done as separate ops, that is
// four passes over the activation forward (bias add, embedding add, normalise, SiLU) and as many
// backward. Fused, the kernels read x once and write y once:
//   x' = x + offset[sample, channel]                  (offset [n, c], optional)
//   y  = silu(gamma[ch] * xhat + beta[ch])            (silu optional), xhat = (x' - mean) * rstd
// The backward pass recomputes gamma * xhat + beta from x, the statistics and the offset instead of
// keeping the normalised tensor, so the fused op saves only x (no larger than the unfused one).
#pragma once
#include <math.h>
#include "cuda/layout.h"

namespace stf {

template <class T> struct GroupNormFusion {
    const T* offset = nullptr;  // [n, c], added to x before the statistics; null: none
    bool silu = false;          // apply SiLU to the output
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

}  // namespace group_norm_math
}  // namespace stf
