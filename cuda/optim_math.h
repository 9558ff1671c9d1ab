// The per-element arithmetic of the optimiser kernels, shared by the CPU twins (tensor/cpu/optim.cpp)
// and the CUDA kernels (cuda/optim.cu) so both run the same operations in the same order. optim.cu is
// compiled without fused multiply-adds, so the two agree bit for bit in float.
#pragma once
#include <math.h>
#include "cuda/layout.h"

namespace stf::optim {

// One Adam step's constants, computed once on the host in double and rounded to the element type.
template <class T> struct AdamConstants {
    T beta1, one_minus_beta1, beta2, one_minus_beta2;
    T inv_bias2;  // 1 / (1 - beta2^t)
    T step;       // -lr / (1 - beta1^t)
    T eps;
};

// torch.optim.Adam's update of one element:
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  p -= lr / bias1 * m / (sqrt(v / bias2) + eps)
template <class T> STF_HD void adam_element(const AdamConstants<T>& k, T g, T& p, T& m, T& v) {
    m = k.beta1 * m + k.one_minus_beta1 * g;
    v = k.beta2 * v + k.one_minus_beta2 * (g * g);
    T denom = sqrt(v * k.inv_bias2) + k.eps;
    p = p + k.step * (m / denom);
}

// EMA of one weight: ema = net + beta (ema - net).
template <class T> STF_HD T ema_element(T ema, T net, T beta) { return (ema - net) * beta + net; }

}  // namespace stf::optim
