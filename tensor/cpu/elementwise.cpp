// Elementwise CPU kernels: every output element depends on one element of each input, so the loops
// are embarrassingly parallel and the results do not depend on the number of threads.
#include <cstring>
#include <stdexcept>
#include "cuda/elementwise_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

using elementwise_math::apply_binary;
using elementwise_math::apply_unary;
using elementwise_math::where_takes_a;

// Below this many elements waking the OpenMP team costs more than the loop itself.
constexpr int64_t kParallelMin = 1 << 15;

template <class F> void parallel_for(int64_t n, F&& body) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) body(i);
}

// Maps the i-th logical element to its memory position. Contiguous layouts skip the div/mod walk
// of StridedLayout::offset, which dominates the cost of a cheap op like Add.
struct Index {
    const StridedLayout& layout;
    bool flat;
    explicit Index(const StridedLayout& l) : layout(l), flat(l.is_contiguous()) {}
    int64_t operator()(int64_t i) const { return flat ? i : layout.offset(i); }
};

// ---- walking several layouts of one shape, a row at a time ------------------------------------------
// Layouts of the same sizes (an op's output shape) are walked as rows of their innermost dimension:
// the row's start costs one div/mod walk, its elements a stride each. Dimensions that every layout
// stores back to back are merged first, so a contiguous tensor is one long row, and a per-channel bias
// ([1, C, 1, 1] broadcast to [N, C, H, W]) a row of H*W with stride 0: loops the compiler vectorises.
template <int K> struct Rows {
    StridedLayout layout[K];
    int64_t length = 1, count = 1;  // elements per row, rows
    int64_t stride(int k) const { return layout[k].ndim ? layout[k].strides[layout[k].ndim - 1] : 0; }
    int64_t start(int k, int64_t row) const { return layout[k].ndim ? layout[k].offset(row * length) : 0; }
};

// Returns false when the layouts do not share their sizes (the caller then walks element by element).
template <int K> bool make_rows(Rows<K>& r, const StridedLayout* const (&ls)[K]) {
    if (!merge_dimensions<K>(ls, r.layout)) return false;
    const StridedLayout& merged = r.layout[0];
    r.length = merged.ndim ? merged.sizes[merged.ndim - 1] : 1;
    r.count = merged.numel() / r.length;
    return true;
}

// Calls body(row_index) over all rows, in parallel when the work is large.
template <class F> void for_rows(int64_t count, int64_t length, F&& body) {
#pragma omp parallel for schedule(static) if (count * length >= kParallelMin && count > 1)
    for (int64_t row = 0; row < count; ++row) body(row);
}

// out[i] = f(x[i]) over a contiguous out and any layout of x.
template <class T, class F> void map_unary(int64_t n, T* out, const T* x, const StridedLayout& lx, F f) {
    if (n == 0) return;
    Rows<1> r;
    const StridedLayout* const ls[1] = {&lx};
    make_rows(r, ls);
    if (r.count == 1 && r.stride(0) == 1) {  // contiguous: split the one row over the threads
        parallel_for(n, [&](int64_t i) { out[i] = f(x[i]); });
        return;
    }
    const int64_t sx = r.stride(0), len = r.length;
    for_rows(r.count, len, [&](int64_t row) {
        const T* xs = x + r.start(0, row);
        T* o = out + row * len;
        if (sx == 1)
            for (int64_t j = 0; j < len; ++j) o[j] = f(xs[j]);
        else
            for (int64_t j = 0; j < len; ++j) o[j] = f(xs[j * sx]);
    });
}

// out[i] = f(a[i], b[i]) over a contiguous out and any layouts of a and b of out's shape.
template <class T, class F>
void map_binary(int64_t n, T* out, const T* a, const StridedLayout& la, const T* b, const StridedLayout& lb, F f) {
    if (n == 0) return;
    Rows<2> r;
    const StridedLayout* const ls[2] = {&la, &lb};
    if (!make_rows(r, ls)) {
        Index ia(la), ib(lb);
        parallel_for(n, [&](int64_t i) { out[i] = f(a[ia(i)], b[ib(i)]); });
        return;
    }
    const int64_t sa = r.stride(0), sb = r.stride(1), len = r.length;
    if (r.count == 1 && sa == 1 && sb == 1) {  // both contiguous: split the one row over the threads
        parallel_for(n, [&](int64_t i) { out[i] = f(a[i], b[i]); });
        return;
    }
    for_rows(r.count, len, [&](int64_t row) {
        const T* as = a + r.start(0, row);
        const T* bs = b + r.start(1, row);
        T* o = out + row * len;
        if (sa == 1 && sb == 1)
            for (int64_t j = 0; j < len; ++j) o[j] = f(as[j], bs[j]);
        else if (sa == 1 && sb == 0)  // e.g. a per-channel or per-sample operand
            for (int64_t j = 0; j < len; ++j) o[j] = f(as[j], bs[0]);
        else if (sa == 0 && sb == 1)
            for (int64_t j = 0; j < len; ++j) o[j] = f(as[0], bs[j]);
        else
            for (int64_t j = 0; j < len; ++j) o[j] = f(as[j * sa], bs[j * sb]);
    });
}

size_t dtype_bytes(int dtype) {
    switch (dtype) {
    case 0: return 4;
    case 1: return 8;
    case 2: return 2;
    }
    throw std::invalid_argument("cpu::convert: unknown dtype code");
}

// Every storage dtype widens to double exactly, so double is a lossless meeting point.
double load(const void* p, int dtype, int64_t i) {
    switch (dtype) {
    case 0: return static_cast<const float*>(p)[i];
    case 1: return static_cast<const double*>(p)[i];
    default: return float_from_bf16_bits(static_cast<const uint16_t*>(p)[i]);  // cuda/bf16.h
    }
}

// float64 -> bf16 goes through float32; the double rounding can differ from a direct rounding only
// for values within 2^-24 relative of a bf16 tie.
void store(void* p, int dtype, int64_t i, double v) {
    switch (dtype) {
    case 0: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case 1: static_cast<double*>(p)[i] = v; break;
    default: static_cast<uint16_t*>(p)[i] = bf16_bits_from_float(static_cast<float>(v)); break;
    }
}

template <class W>
void copy_words(int64_t n, W* dst, const StridedLayout& ldst, const W* src, const StridedLayout& lsrc) {
    if (n == 0) return;
    Rows<2> r;
    const StridedLayout* const ls[2] = {&ldst, &lsrc};
    if (!make_rows(r, ls)) {
        Index id(ldst), is(lsrc);
        parallel_for(n, [&](int64_t i) { dst[id(i)] = src[is(i)]; });
        return;
    }
    const int64_t sd = r.stride(0), ss = r.stride(1), len = r.length;
    if (r.count == 1 && sd == 1 && ss == 1) {
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(W));
        return;
    }
    for_rows(r.count, len, [&](int64_t row) {
        W* d = dst + r.start(0, row);
        const W* s = src + r.start(1, row);
        if (sd == 1 && ss == 1)
            std::memcpy(d, s, static_cast<size_t>(len) * sizeof(W));
        else
            for (int64_t j = 0; j < len; ++j) d[j * sd] = s[j * ss];
    });
}

} // namespace

template <class T> void fill(int64_t n, T* out, T value) {
    parallel_for(n, [&](int64_t i) { out[i] = value; });
}

// The op is a template argument here, so the switch of the shared formulas (cuda/elementwise_math.h)
// folds away and each loop is specialised (and vectorised) for its op.
template <UnaryOp OP, class T>
void unary_as(int64_t n, T* out, const T* x, const StridedLayout& lx, T alpha, T beta) {
    map_unary(n, out, x, lx, [alpha, beta](T v) { return apply_unary(OP, v, alpha, beta); });
}

template <BinaryOp OP, class T>
void binary_as(int64_t n, T* out, const T* a, const StridedLayout& la, const T* b, const StridedLayout& lb, T alpha,
               T beta) {
    map_binary(n, out, a, la, b, lb, [alpha, beta](T u, T v) { return apply_binary(OP, u, v, alpha, beta); });
}

template <class T>
void unary(UnaryOp op, int64_t n, T* out, const T* x, const StridedLayout& lx, double alpha, double beta) {
    const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
    switch (op) {
#define STF_UNARY(OP) \
    case UnaryOp::OP: return unary_as<UnaryOp::OP>(n, out, x, lx, a, b);
        STF_UNARY(Identity) STF_UNARY(Neg) STF_UNARY(Exp) STF_UNARY(Log) STF_UNARY(Sqrt) STF_UNARY(Rsqrt)
        STF_UNARY(Square) STF_UNARY(Abs) STF_UNARY(Pow) STF_UNARY(Silu) STF_UNARY(Sigmoid) STF_UNARY(Clamp)
        STF_UNARY(AddScalar) STF_UNARY(MulScalar) STF_UNARY(RSubScalar) STF_UNARY(RDivScalar) STF_UNARY(Sin)
        STF_UNARY(Cos) STF_UNARY(NanToNum)
#undef STF_UNARY
    }
    throw std::invalid_argument("cpu::unary: unknown op");
}

template <class T>
void binary(BinaryOp op, int64_t n, T* out, const T* a, const StridedLayout& la, const T* b, const StridedLayout& lb,
            double alpha, double beta) {
    const T al = static_cast<T>(alpha), be = static_cast<T>(beta);
    switch (op) {
#define STF_BINARY(OP) \
    case BinaryOp::OP: return binary_as<BinaryOp::OP>(n, out, a, la, b, lb, al, be);
        STF_BINARY(Add) STF_BINARY(Sub) STF_BINARY(Mul) STF_BINARY(Div) STF_BINARY(Maximum) STF_BINARY(Minimum)
        STF_BINARY(Eq) STF_BINARY(Gt) STF_BINARY(Lt) STF_BINARY(SiluBackward) STF_BINARY(SigmoidBackward)
        STF_BINARY(ClampBackward) STF_BINARY(AddScaled)
#undef STF_BINARY
    }
    throw std::invalid_argument("cpu::binary: unknown op");
}

template <class T>
void where(int64_t n, T* out, const T* cond, const StridedLayout& lc, const T* a, const StridedLayout& la, const T* b,
           const StridedLayout& lb) {
    Index ic(lc), ia(la), ib(lb);
    parallel_for(n, [&](int64_t i) { out[i] = where_takes_a(cond[ic(i)]) ? a[ia(i)] : b[ib(i)]; });
}

// The copy only moves bits, so it is written once per element width rather than per dtype.
void copy_strided(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                  const StridedLayout& lsrc) {
    switch (elem_size) {
    case 2:
        copy_words(n, static_cast<uint16_t*>(dst), ldst, static_cast<const uint16_t*>(src), lsrc);
        break;
    case 4:
        copy_words(n, static_cast<uint32_t*>(dst), ldst, static_cast<const uint32_t*>(src), lsrc);
        break;
    case 8:
        copy_words(n, static_cast<uint64_t*>(dst), ldst, static_cast<const uint64_t*>(src), lsrc);
        break;
    default: throw std::invalid_argument("cpu::copy_strided: element size must be 2, 4 or 8");
    }
}

void convert(int64_t n, void* dst, int dst_dtype, const void* src, int src_dtype) {
    const size_t dst_bytes = dtype_bytes(dst_dtype);
    dtype_bytes(src_dtype);  // validates the code
    if (dst_dtype == src_dtype) {
        std::memcpy(dst, src, static_cast<size_t>(n) * dst_bytes);
        return;
    }
    parallel_for(n, [&](int64_t i) { store(dst, dst_dtype, i, load(src, src_dtype, i)); });
}

#define STF_INSTANTIATE(T)                                                                                        \
    template void fill<T>(int64_t, T*, T);                                                                        \
    template void unary<T>(UnaryOp, int64_t, T*, const T*, const StridedLayout&, double, double);                \
    template void binary<T>(BinaryOp, int64_t, T*, const T*, const StridedLayout&, const T*, const StridedLayout&, \
                            double, double);                                                                      \
    template void where<T>(int64_t, T*, const T*, const StridedLayout&, const T*, const StridedLayout&, const T*, \
                           const StridedLayout&);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
