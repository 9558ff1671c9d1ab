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

// The same K layouts (of the same sizes) with size-1 dimensions dropped and neighbours merged where
// every layout stores them back to back (the outer stride is the inner one times the inner size). A
// contiguous tensor becomes one dimension, a per-channel operand over [n, c, h, w] three. Offsets are
// unchanged: element i lands where it did. Returns false when the layouts' sizes differ.
template <int K>
bool merge_dimensions(const StridedLayout* const (&in)[K], StridedLayout (&out)[K]) {
    const StridedLayout& first = *in[0];
    for (int k = 1; k < K; ++k) {
        if (in[k]->ndim != first.ndim) return false;
        for (int d = 0; d < first.ndim; ++d)
            if (in[k]->sizes[d] != first.sizes[d]) return false;
    }
    for (int k = 0; k < K; ++k) out[k].ndim = 0;
    for (int d = 0; d < first.ndim; ++d) {
        if (first.sizes[d] == 1) continue;  // size-1 dimensions move nothing
        bool merge = out[0].ndim > 0;
        for (int k = 0; k < K && merge; ++k) {
            const StridedLayout& l = out[k];
            merge = l.strides[l.ndim - 1] == in[k]->strides[d] * in[k]->sizes[d];
        }
        for (int k = 0; k < K; ++k) {
            StridedLayout& l = out[k];
            if (merge) {
                l.sizes[l.ndim - 1] *= in[k]->sizes[d];
                l.strides[l.ndim - 1] = in[k]->strides[d];
            } else {
                l.sizes[l.ndim] = in[k]->sizes[d];
                l.strides[l.ndim] = in[k]->strides[d];
                ++l.ndim;
            }
        }
    }
    return true;
}

// Division by a divisor fixed before a kernel starts, as one multiply-high, an add and a shift instead
// of the dozens of instructions of an integer division (Granlund & Montgomery, "Division by invariant
// integers using multiplication", PLDI 1994). Exact for dividends and divisors below 2^31.
struct FastDivider {
    uint32_t divisor = 1, magic = 1, shift = 0;

    FastDivider() = default;
    explicit FastDivider(uint32_t d) : divisor(d) {
        while (shift < 31 && (uint32_t(1) << shift) < d) ++shift;  // shift = ceil(log2 d)
        const uint64_t one = 1;
        magic = static_cast<uint32_t>(((one << 32) * ((one << shift) - d)) / d + 1);
    }
    STF_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
        const uint32_t t = __umulhi(n, magic);
#else
        const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> 32);
#endif
        return (t + n) >> shift;
    }
};

// The element offsets of N operands that walk the same index space (an output and its inputs), in
// 32-bit arithmetic. Built from StridedLayouts by make_index_map over merge_dimensions: a [n, c, h, w]
// add of a per-channel [c] bias becomes three dimensions, a slice copy of a concatenation two.
// Dimension 0 is the innermost, so a kernel's unrolled loop over kMaxDims indexes the arrays with
// constants.
template <int N>
struct IndexMap {
    int ndim = 0;
    FastDivider sizes[kMaxDims];
    uint32_t strides[kMaxDims][N] = {};

    STF_HD void offsets(uint32_t linear, uint32_t (&off)[N]) const {
        for (int k = 0; k < N; ++k) off[k] = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int d = 0; d < kMaxDims; ++d) {
            if (d == ndim) break;
            const uint32_t q = sizes[d].div(linear), i = linear - q * sizes[d].divisor;
            linear = q;
            for (int k = 0; k < N; ++k) off[k] += i * strides[d][k];
        }
    }
};

// Fills `map` for N layouts of the same sizes. Returns false, leaving the caller to its 64-bit path,
// when the sizes differ, a stride is negative, or an index or offset would not fit in 31 bits.
template <int N>
bool make_index_map(const StridedLayout* const (&layouts)[N], IndexMap<N>& map) {
    constexpr int64_t kLimit = int64_t(1) << 31;
    if (layouts[0]->numel() >= kLimit) return false;
    for (int k = 0; k < N; ++k)
        for (int d = 0; d < layouts[k]->ndim; ++d)
            if (layouts[k]->strides[d] < 0) return false;
    StridedLayout merged[N];
    if (!merge_dimensions<N>(layouts, merged)) return false;
    for (int k = 0; k < N; ++k) {
        int64_t extent = 0;  // the largest offset: merging keeps it
        for (int d = 0; d < merged[k].ndim; ++d) extent += (merged[k].sizes[d] - 1) * merged[k].strides[d];
        if (extent >= kLimit) return false;
    }
    const int ndim = merged[0].ndim;
    map = IndexMap<N>{};
    map.ndim = ndim;
    for (int d = 0; d < ndim; ++d) {  // innermost first
        const int from = ndim - 1 - d;
        map.sizes[d] = FastDivider(static_cast<uint32_t>(merged[0].sizes[from]));
        for (int k = 0; k < N; ++k) map.strides[d][k] = static_cast<uint32_t>(merged[k].strides[from]);
    }
    return true;
}

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
