// The per-element formulas of the elementwise ops: every UnaryOp and BinaryOp (cuda/layout.h) and
// where. The CUDA kernels (cuda/elementwise.cu) and their CPU twins (tensor/cpu/elementwise.cpp) both
// call these, so an op's formula is written once and the two devices cannot drift apart.
//
// T is the element type: float on the GPU, float or double on the CPU. Every op computes in T, a float
// input in float (the math functions resolve to their float overloads, exp(float) being expf), so for
// float the two devices differ only where their libraries round exp, log, pow, sin and cos differently
// and where nvcc fuses a multiply and an add. The precise functions are used on the GPU, never the
// intrinsics (__expf, rsqrtf: 2 ulp).
//
// The kernels pass the op as an argument. On the GPU it is the same for every thread, so the switch
// never makes a warp diverge; on the CPU it is a template argument, so the switch folds away and each
// op's loop is compiled (and vectorised) on its own.
#pragma once
#include <math.h>
#include "cuda/layout.h"

namespace stf::elementwise_math {

template <class T> STF_HD T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }

// SiLU and its gradient given s = sigmoid(x): callers with their own exp (the CPU GroupNorm's
// vectorisable exp_poly) pass their s, so the formulas stay written once.
template <class T> STF_HD T silu_given_sigmoid(T x, T s) { return x * s; }
// grad times d/dx [x s(x)] = s + x s (1 - s) = s (1 + x (1 - s)).
template <class T> STF_HD T silu_backward_given_sigmoid(T grad, T x, T s) {
    return grad * s * (T(1) + x * (T(1) - s));
}

template <class T> STF_HD T silu(T x) { return silu_given_sigmoid(x, sigmoid(x)); }
template <class T> STF_HD T silu_backward(T grad, T x) { return silu_backward_given_sigmoid(grad, x, sigmoid(x)); }

// torch.nan_to_num's: NaN -> 0, +-inf -> +-inf_value (EDM's gradient guard uses inf_value = 1e5).
template <class T> STF_HD T nan_to_num(T x, T inf_value) {
    if (isnan(x)) return T(0);
    if (isinf(x)) return x > T(0) ? inf_value : -inf_value;
    return x;
}

// std::max's and std::min's choice: the first argument unless the second is strictly better, so a NaN
// first argument stays (fmax and fmin would drop it).
template <class T> STF_HD T maximum(T a, T b) { return a < b ? b : a; }
template <class T> STF_HD T minimum(T a, T b) { return b < a ? b : a; }

template <class T> STF_HD T apply_unary(UnaryOp op, T x, T alpha, T beta) {
    switch (op) {
        case UnaryOp::Identity: return x;
        case UnaryOp::Neg: return -x;
        case UnaryOp::Exp: return exp(x);
        case UnaryOp::Log: return log(x);
        case UnaryOp::Sqrt: return sqrt(x);
        case UnaryOp::Rsqrt: return T(1) / sqrt(x);
        case UnaryOp::Square: return x * x;
        case UnaryOp::Abs: return fabs(x);
        case UnaryOp::Pow: return pow(x, alpha);
        case UnaryOp::Silu: return silu(x);
        case UnaryOp::Sigmoid: return sigmoid(x);
        case UnaryOp::Clamp: return minimum(maximum(x, alpha), beta);  // beta wins when alpha > beta
        case UnaryOp::AddScalar: return x + alpha;
        case UnaryOp::MulScalar: return x * alpha;
        case UnaryOp::RSubScalar: return alpha - x;
        case UnaryOp::RDivScalar: return alpha / x;
        case UnaryOp::Sin: return sin(x);
        case UnaryOp::Cos: return cos(x);
        case UnaryOp::NanToNum: return nan_to_num(x, alpha);
    }
    return x;  // not reached for a valid op
}

template <class T> STF_HD T apply_binary(BinaryOp op, T a, T b, T alpha, T beta) {
    switch (op) {
        case BinaryOp::Add: return a + b;
        case BinaryOp::Sub: return a - b;
        case BinaryOp::Mul: return a * b;
        case BinaryOp::Div: return a / b;
        case BinaryOp::Maximum: return maximum(a, b);
        case BinaryOp::Minimum: return minimum(a, b);
        case BinaryOp::Eq: return a == b ? T(1) : T(0);
        case BinaryOp::Gt: return a > b ? T(1) : T(0);
        case BinaryOp::Lt: return a < b ? T(1) : T(0);
        case BinaryOp::SiluBackward: return silu_backward(a, b);
        case BinaryOp::SigmoidBackward: return a * b * (T(1) - b);
        case BinaryOp::ClampBackward: return (alpha <= b && b <= beta) ? a : T(0);
        case BinaryOp::AddScaled: return a + alpha * b;
    }
    return a;  // not reached
}

// where(cond, a, b) takes a where this is true, else b. The kernels load only the operand taken.
template <class T> STF_HD bool where_takes_a(T cond) { return cond != T(0); }

}  // namespace stf::elementwise_math
