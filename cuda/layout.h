// Shapes and strides passed by value to kernels, plus the op enums both backends share.
// Plain C++ so that the CPU kernels in tensor/ and the CUDA kernels in cuda/ read the same definitions.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define STF_HD __host__ __device__ __forceinline__
#else
#define STF_HD inline
#endif

namespace stf {

constexpr int kMaxDims = 8;

// A strided view of n = prod(sizes) elements. offset(i) maps the i-th element in row-major order of
// `sizes` to its position in memory. Broadcast dimensions have stride 0.
struct StridedLayout {
    int ndim = 0;
    int64_t sizes[kMaxDims] = {};
    int64_t strides[kMaxDims] = {};

    STF_HD int64_t offset(int64_t linear) const {
        int64_t off = 0;
        for (int d = ndim - 1; d >= 0; --d) {
            int64_t i = linear % sizes[d];
            linear /= sizes[d];
            off += i * strides[d];
        }
        return off;
    }
    // True when offset(i) == i for every i, so kernels can take the flat path.
    bool is_contiguous() const {
        int64_t expected = 1;
        for (int d = ndim - 1; d >= 0; --d) {
            if (sizes[d] != 1 && strides[d] != expected) return false;
            expected *= sizes[d];
        }
        return true;
    }
    int64_t numel() const {
        int64_t n = 1;
        for (int d = 0; d < ndim; ++d) n *= sizes[d];
        return n;
    }
};

// out = f(x; alpha, beta)
enum class UnaryOp {
    Identity,   // x
    Neg,        // -x
    Exp,
    Log,
    Sqrt,
    Rsqrt,      // 1/sqrt(x)
    Square,
    Abs,
    Pow,        // x^alpha
    Silu,       // x * sigmoid(x)
    Sigmoid,
    Clamp,      // min(max(x, alpha), beta)
    AddScalar,  // x + alpha
    MulScalar,  // x * alpha
    RSubScalar, // alpha - x
    RDivScalar, // alpha / x
    Sin,
    Cos,
    NanToNum,   // nan -> 0, +inf -> alpha, -inf -> -alpha (EDM's gradient guard uses alpha = 1e5)
};

// out = f(a, b; alpha, beta). Comparisons return 1 or 0.
enum class BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Eq,
    Gt,
    Lt,
    SiluBackward,    // a = grad, b = x: a * s(b) * (1 + b * (1 - s(b)))
    SigmoidBackward, // a = grad, b = y = sigmoid(x): a * b * (1 - b)
    ClampBackward,   // a = grad, b = x: a where alpha <= b <= beta, else 0
    AddScaled,       // a + alpha * b
};

enum class ReduceOp { Sum, Max };

} // namespace stf

namespace stf {

// A 2-D convolution's sizes, NCHW input x [n, c, h, w], weight [k, c / groups, r, s], output [n, k, p, q].
// Shared by the CPU (im2col + GEMM) and cuDNN implementations.
struct ConvShape {
    int64_t n = 0, c = 0, h = 0, w = 0;  // input
    int64_t k = 0, r = 0, s = 0;         // output channels, kernel height and width
    int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, groups = 1;
    STF_HD int64_t out_h() const { return (h + 2 * pad_h - r) / stride_h + 1; }
    STF_HD int64_t out_w() const { return (w + 2 * pad_w - s) / stride_w + 1; }
};

} // namespace stf
