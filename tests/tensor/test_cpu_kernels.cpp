// The CPU reference kernels (tensor/cpu/kernels.h) against naive float64 references written here.
// Each reference is the textbook formula with no cleverness, so a disagreement points at the kernel.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/philox.h"
#include "tensor/cpu/kernels.h"

using namespace stf;

namespace {

// Tolerances: a float kernel is a few ulps (~1e-7) from the float64 truth; double is near exact.
template <class T> constexpr double tol() { return std::is_same_v<T, float> ? 1e-5 : 1e-12; }

StridedLayout make_layout(std::initializer_list<int64_t> sizes, std::initializer_list<int64_t> strides) {
    StridedLayout l;
    l.ndim = static_cast<int>(sizes.size());
    int d = 0;
    for (int64_t v : sizes) l.sizes[d++] = v;
    d = 0;
    for (int64_t v : strides) l.strides[d++] = v;
    return l;
}

StridedLayout contiguous(std::initializer_list<int64_t> sizes) {
    StridedLayout l = make_layout(sizes, {});
    int64_t stride = 1;
    for (int d = l.ndim - 1; d >= 0; --d) {
        l.strides[d] = stride;
        stride *= l.sizes[d];
    }
    return l;
}

template <class T> std::vector<T> random_vector(size_t n, double lo, double hi, unsigned seed) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<T> v(n);
    for (auto& e : v) e = static_cast<T>(dist(gen));
    return v;
}

// Largest error over the elements, relative for |want| > 1 and absolute below (so zeros are fine).
template <class T> double max_err(const std::vector<T>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        double e = std::abs(double(got[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
        if (!(e <= worst)) worst = e;  // also catches NaN
    }
    return worst;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    long double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * b[i];
    return static_cast<double>(s);
}

// --- elementwise references ----------------------------------------------------------------------

double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

double ref_unary(UnaryOp op, double x, double alpha, double beta) {
    switch (op) {
    case UnaryOp::Identity: return x;
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Pow: return std::pow(x, alpha);
    case UnaryOp::Silu: return x * ref_sigmoid(x);
    case UnaryOp::Sigmoid: return ref_sigmoid(x);
    case UnaryOp::Clamp: return x < alpha ? alpha : (x > beta ? beta : x);
    case UnaryOp::AddScalar: return x + alpha;
    case UnaryOp::MulScalar: return x * alpha;
    case UnaryOp::RSubScalar: return alpha - x;
    case UnaryOp::RDivScalar: return alpha / x;
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
    case UnaryOp::NanToNum: return std::isnan(x) ? 0.0 : std::isinf(x) ? (x > 0 ? alpha : -alpha) : x;
    }
    return NAN;
}

double ref_binary(BinaryOp op, double a, double b, double alpha, double beta) {
    switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return std::max(a, b);
    case BinaryOp::Minimum: return std::min(a, b);
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::SiluBackward: {
        // derivative of x * sigmoid(x), written out from the product rule
        double s = ref_sigmoid(b);
        return a * (s + b * s * (1.0 - s));
    }
    case BinaryOp::SigmoidBackward: return a * b * (1.0 - b);
    case BinaryOp::ClampBackward: return (b >= alpha && b <= beta) ? a : 0.0;
    case BinaryOp::AddScaled: return a + alpha * b;
    }
    return NAN;
}

struct UnaryCase {
    UnaryOp op;
    bool positive_only;  // log, sqrt, ... need x > 0
};

const UnaryCase kUnaryCases[] = {
    {UnaryOp::Identity, false}, {UnaryOp::Neg, false},       {UnaryOp::Exp, false},        {UnaryOp::Log, true},
    {UnaryOp::Sqrt, true},      {UnaryOp::Rsqrt, true},      {UnaryOp::Square, false},     {UnaryOp::Abs, false},
    {UnaryOp::Pow, true},       {UnaryOp::Silu, false},      {UnaryOp::Sigmoid, false},    {UnaryOp::Clamp, false},
    {UnaryOp::AddScalar, false}, {UnaryOp::MulScalar, false}, {UnaryOp::RSubScalar, false}, {UnaryOp::RDivScalar, true},
    {UnaryOp::Sin, false},      {UnaryOp::Cos, false},       {UnaryOp::NanToNum, false},
};

const BinaryOp kBinaryOps[] = {BinaryOp::Add,          BinaryOp::Sub,          BinaryOp::Mul,
                               BinaryOp::Div,          BinaryOp::Maximum,      BinaryOp::Minimum,
                               BinaryOp::Eq,           BinaryOp::Gt,           BinaryOp::Lt,
                               BinaryOp::SiluBackward, BinaryOp::SigmoidBackward, BinaryOp::ClampBackward,
                               BinaryOp::AddScaled};

} // namespace

TEST_CASE_TEMPLATE("cpu unary: every op on contiguous and transposed input", T, float, double) {
    const double alpha = 2.5, beta = 0.7;  // Clamp uses [alpha', beta] below
    // x is a [4, 3] buffer; the transposed view reads it as [3, 4].
    const auto signed_x = random_vector<T>(12, -3.0, 3.0, 1);
    const auto positive_x = random_vector<T>(12, 0.1, 3.0, 2);
    const StridedLayout flat = contiguous({12});
    const StridedLayout transposed = make_layout({3, 4}, {1, 3});
    for (const UnaryCase& c : kUnaryCases) {
        CAPTURE(static_cast<int>(c.op));
        const auto& x = c.positive_only ? positive_x : signed_x;
        const double a = c.op == UnaryOp::Clamp ? -0.5 : alpha;
        std::vector<T> out(12);
        std::vector<double> want(12), want_t(12);
        for (int i = 0; i < 12; ++i) want[i] = ref_unary(c.op, double(x[i]), a, beta);
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 4; ++j) want_t[i * 4 + j] = ref_unary(c.op, double(x[j * 3 + i]), a, beta);

        cpu::unary<T>(c.op, 12, out.data(), x.data(), flat, a, beta);
        CHECK(max_err(out, want) <= tol<T>());
        cpu::unary<T>(c.op, 12, out.data(), x.data(), transposed, a, beta);
        CHECK(max_err(out, want_t) <= tol<T>());
    }
}

TEST_CASE_TEMPLATE("cpu unary: NanToNum and Clamp on special values", T, float, double) {
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> x = {nan, inf, -inf, T(-3), T(0.25), T(7)};
    std::vector<T> out(x.size());
    cpu::unary<T>(UnaryOp::NanToNum, 6, out.data(), x.data(), contiguous({6}), 1e5, 0.0);
    CHECK(out == std::vector<T>{T(0), T(1e5), T(-1e5), T(-3), T(0.25), T(7)});
    cpu::unary<T>(UnaryOp::Clamp, 5, out.data(), x.data() + 1, contiguous({5}), -1.0, 2.0);
    CHECK(std::vector<T>(out.begin(), out.begin() + 5) == std::vector<T>{T(2), T(-1), T(-1), T(0.25), T(2)});
}

TEST_CASE_TEMPLATE("cpu binary: every op with a broadcast operand", T, float, double) {
    // out [2, 3, 4]; a contiguous; b holds 3 values broadcast along dims 0 and 2 (strides 0).
    // Values come from small sets so that Eq, Gt and Lt see ties, and ClampBackward sees b on its edge.
    const double a_set[] = {-1.0, 0.5, 1.0, 2.5, -0.25};
    std::vector<T> a(24);
    for (int i = 0; i < 24; ++i) a[i] = static_cast<T>(a_set[(i * 7) % 5]);
    const std::vector<T> b = {T(-1), T(0.5), T(1)};
    const StridedLayout la = contiguous({2, 3, 4}), lb = make_layout({2, 3, 4}, {0, 1, 0});
    const double alpha = -0.5, beta = 1.0;
    for (BinaryOp op : kBinaryOps) {
        CAPTURE(static_cast<int>(op));
        std::vector<T> out(24);
        std::vector<double> want(24);
        for (int i = 0; i < 24; ++i) want[i] = ref_binary(op, double(a[i]), double(b[(i / 4) % 3]), alpha, beta);
        cpu::binary<T>(op, 24, out.data(), a.data(), la, b.data(), lb, alpha, beta);
        CHECK(max_err(out, want) <= tol<T>());
    }
}

TEST_CASE_TEMPLATE("cpu binary: transposed operand against a broadcast row", T, float, double) {
    // a is a [4, 3] buffer read transposed as [3, 4]; b is one row of 4 broadcast over 3 rows.
    const auto a = random_vector<T>(12, -2.0, 2.0, 3);
    const auto b = random_vector<T>(4, 0.5, 2.0, 4);
    const StridedLayout la = make_layout({3, 4}, {1, 3}), lb = make_layout({3, 4}, {0, 1});
    for (BinaryOp op : kBinaryOps) {
        CAPTURE(static_cast<int>(op));
        std::vector<T> out(12);
        std::vector<double> want(12);
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 4; ++j) want[i * 4 + j] = ref_binary(op, double(a[j * 3 + i]), double(b[j]), 0.3, 0.8);
        cpu::binary<T>(op, 12, out.data(), a.data(), la, b.data(), lb, 0.3, 0.8);
        CHECK(max_err(out, want) <= tol<T>());
    }
}

namespace {
// A random layout of `sizes` over a buffer: each dimension either broadcast (stride 0) or stored in a
// random order of dimensions, with padding between rows so nothing is accidentally contiguous.
StridedLayout random_layout(const std::vector<int64_t>& sizes, std::mt19937& rng, bool allow_broadcast,
                            int64_t& buffer_len) {
    const int nd = static_cast<int>(sizes.size());
    std::vector<int> order(nd);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    StridedLayout l;
    l.ndim = nd;
    int64_t stride = 1 + static_cast<int64_t>(rng() % 2);  // sometimes a stride-2 innermost walk
    for (int k = nd - 1; k >= 0; --k) {
        int d = order[k];
        l.sizes[d] = sizes[d];
        if (allow_broadcast && rng() % 4 == 0) {
            l.strides[d] = 0;
            continue;
        }
        l.strides[d] = stride;
        stride *= sizes[d] + static_cast<int64_t>(rng() % 2);
    }
    buffer_len = stride * 2;
    return l;
}
} // namespace

TEST_CASE("cpu elementwise: row walks over random strided, broadcast and permuted layouts") {
    // The kernels merge dimensions and walk rows; the reference walks every element through
    // StridedLayout::offset. Shapes include one large enough for the parallel path.
    std::mt19937 rng(17);
    const std::vector<std::vector<int64_t>> shapes = {{7},       {3, 5},       {2, 1, 4},   {4, 3, 2, 5},
                                                      {1, 1, 1}, {2, 3, 1, 6}, {8, 16, 32, 32}};
    for (const auto& sizes : shapes)
        for (int trial = 0; trial < 6; ++trial) {
            CAPTURE(sizes.size());
            CAPTURE(trial);
            int64_t n = 1;
            for (int64_t v : sizes) n *= v;
            int64_t len_a = 0, len_b = 0, len_d = 0;
            StridedLayout la = random_layout(sizes, rng, true, len_a), lb = random_layout(sizes, rng, true, len_b);
            StridedLayout ld = random_layout(sizes, rng, false, len_d);
            std::vector<float> a = random_vector<float>(size_t(len_a), -2.0, 2.0, 5 + trial);
            std::vector<float> b = random_vector<float>(size_t(len_b), 0.5, 2.0, 9 + trial);

            std::vector<float> out(static_cast<size_t>(n));
            std::vector<double> want(static_cast<size_t>(n));
            cpu::binary<float>(BinaryOp::AddScaled, n, out.data(), a.data(), la, b.data(), lb, 0.75, 0.0);
            for (int64_t i = 0; i < n; ++i) want[i] = a[la.offset(i)] + 0.75 * b[lb.offset(i)];
            CHECK(max_err(out, want) <= 1e-6);

            cpu::unary<float>(UnaryOp::Exp, n, out.data(), a.data(), la, 0.0, 0.0);
            for (int64_t i = 0; i < n; ++i) want[i] = std::exp(double(a[la.offset(i)]));
            CHECK(max_err(out, want) <= 1e-6);

            // A copy into a strided destination moves every element to its place and touches nothing else.
            std::vector<uint32_t> src(static_cast<size_t>(len_a));
            std::vector<uint32_t> dst(static_cast<size_t>(len_d), 0xDEADBEEFu), expect = dst;
            for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint32_t>(i * 2654435761u);
            for (int64_t i = 0; i < n; ++i) expect[ld.offset(i)] = src[la.offset(i)];
            cpu::copy_strided(n, 4, dst.data(), ld, src.data(), la);
            CHECK(dst == expect);
        }
}

TEST_CASE_TEMPLATE("cpu binary: Maximum and Minimum treat NaN as std::max and std::min do", T, float, double) {
    // The CUDA twin makes the same choice: a is returned unless b is strictly better.
    const T nan = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> a = {nan, T(1)}, b = {T(1), nan};
    std::vector<T> out(2);
    for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum}) {
        cpu::binary<T>(op, 2, out.data(), a.data(), contiguous({2}), b.data(), contiguous({2}), 0.0, 0.0);
        CHECK(std::isnan(out[0]));
        CHECK(out[1] == T(1));
    }
}

TEST_CASE_TEMPLATE("cpu where: broadcast condition and operands", T, float, double) {
    // out [2, 3]: cond contiguous, a a broadcast row [3], b a broadcast scalar.
    const std::vector<T> cond = {T(1), T(0), T(-2), T(0), T(0.5), T(0)};
    const std::vector<T> a = {T(10), T(20), T(30)}, b = {T(-7)};
    std::vector<T> out(6);
    cpu::where<T>(6, out.data(), cond.data(), contiguous({2, 3}), a.data(), make_layout({2, 3}, {0, 1}), b.data(),
                  make_layout({2, 3}, {0, 0}));
    CHECK(out == std::vector<T>{T(10), T(-7), T(30), T(-7), T(20), T(-7)});
}

TEST_CASE_TEMPLATE("cpu fill", T, float, double) {
    std::vector<T> out(100000, T(0));
    cpu::fill<T>(static_cast<int64_t>(out.size()), out.data(), T(3.25));
    for (T v : out) REQUIRE(v == T(3.25));
}

namespace {
template <class W> void check_copy_transposed() {
    // src is a contiguous [3, 5]; dst holds its transpose [5, 3], written through the view
    // sizes [3, 5], strides [1, 3].
    std::vector<W> src(15), dst(15, W(0));
    for (int i = 0; i < 15; ++i) src[i] = static_cast<W>(1000 + i);
    cpu::copy_strided(15, sizeof(W), dst.data(), make_layout({3, 5}, {1, 3}), src.data(), contiguous({3, 5}));
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 5; ++j) CHECK(dst[j * 3 + i] == src[i * 5 + j]);
    // And back: a strided source into a contiguous destination restores the original.
    std::vector<W> back(15, W(0));
    cpu::copy_strided(15, sizeof(W), back.data(), contiguous({3, 5}), dst.data(), make_layout({3, 5}, {1, 3}));
    CHECK(back == src);
    // Contiguous to contiguous (the memcpy path).
    std::vector<W> same(15, W(0));
    cpu::copy_strided(15, sizeof(W), same.data(), contiguous({15}), src.data(), contiguous({15}));
    CHECK(same == src);
}
} // namespace

TEST_CASE("cpu copy_strided: into a transposed destination, 2, 4 and 8 byte elements") {
    check_copy_transposed<uint16_t>();
    check_copy_transposed<uint32_t>();
    check_copy_transposed<uint64_t>();
}

TEST_CASE("cpu convert: f32 -> bf16 rounds to nearest even, and back") {
    const float one = 1.0f, ulp = std::ldexp(1.0f, -7);  // bf16 has 7 stored mantissa bits
    const float x[] = {
        one,                                         // exact
        one + ulp / 2,                               // tie between 0x3F80 (even) and 0x3F81: down
        one + 3 * ulp / 2,                           // tie between 0x3F81 and 0x3F82 (even): up
        one + ulp / 2 + std::ldexp(1.0f, -20),       // just above the tie: up
        -(one + 3 * ulp / 2),                        // sign is independent of rounding
        std::numeric_limits<float>::max(),           // rounds past the largest bf16: inf
        std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN(),
    };
    const uint16_t want[] = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xBF82, 0x7F80, 0x7F80};
    uint16_t bf[8];
    cpu::convert(8, bf, 2, x, 0);
    for (int i = 0; i < 7; ++i) {
        CAPTURE(i);
        CHECK(bf[i] == want[i]);
    }
    float back[8];
    cpu::convert(8, back, 0, bf, 2);
    CHECK(back[0] == 1.0f);
    CHECK(back[1] == 1.0f);
    CHECK(back[2] == one + 2 * ulp);
    CHECK(back[3] == one + ulp);
    CHECK(back[4] == -(one + 2 * ulp));
    CHECK(std::isinf(back[5]));
    CHECK(std::isnan(back[7]));
}

TEST_CASE("cpu convert: f32 <-> f64 and bf16 -> f64") {
    const float x[] = {0.1f, -3.5f, 1e30f};
    double d[3];
    cpu::convert(3, d, 1, x, 0);
    CHECK(d[0] == double(0.1f));
    CHECK(d[2] == double(1e30f));
    const double y[] = {0.1, -3.5};
    float f[2];
    cpu::convert(2, f, 0, y, 1);
    CHECK(f[0] == 0.1f);
    CHECK(f[1] == -3.5f);
    const uint16_t h[] = {0x3FC0, 0xC080};  // 1.5, -4
    cpu::convert(2, d, 1, h, 2);
    CHECK(d[0] == 1.5);
    CHECK(d[1] == -4.0);
}

TEST_CASE_TEMPLATE("cpu reduce: sum and max over the middle dim", T, float, double) {
    // inner = 1 (reducing the last dim), a small inner, and one spanning two of the kernel's tiles
    // (large enough, at 40 * 5 * 300 values, to take the multi-threaded path).
    for (int64_t inner : {int64_t(1), int64_t(4), int64_t(300)}) {
        CAPTURE(inner);
        const int64_t outer = inner == 300 ? 40 : 3, r = 5;
        const auto x = random_vector<T>(size_t(outer * r * inner), -2.0, 2.0, 5);
        std::vector<double> want_sum(size_t(outer * inner)), want_max(size_t(outer * inner));
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t j = 0; j < inner; ++j) {
                double s = 0, m = -INFINITY;
                for (int64_t k = 0; k < r; ++k) {
                    double v = x[size_t((o * r + k) * inner + j)];
                    s += v;
                    m = std::max(m, v);
                }
                want_sum[size_t(o * inner + j)] = s;
                want_max[size_t(o * inner + j)] = m;
            }
        std::vector<T> out(size_t(outer * inner));
        cpu::reduce<T>(ReduceOp::Sum, outer, r, inner, out.data(), x.data());
        CHECK(max_err(out, want_sum) <= tol<T>());
        cpu::reduce<T>(ReduceOp::Max, outer, r, inner, out.data(), x.data());
        CHECK(max_err(out, want_max) == 0.0);
    }
}

TEST_CASE("cpu reduce: max skips NaN, as the CUDA kernel does") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double x[] = {nan, 1.0, nan, 3.0, 2.0};
    double out = 0;
    cpu::reduce<double>(ReduceOp::Max, 1, 5, 1, &out, x);
    CHECK(out == 3.0);
}

namespace {
// Softmax of one row in long double, straight from the definition (shifted so large logits fit).
std::vector<double> ref_softmax(const std::vector<double>& x, bool log) {
    long double m = *std::max_element(x.begin(), x.end()), s = 0;
    for (double v : x) s += std::exp(static_cast<long double>(v) - m);
    std::vector<double> y;
    for (double v : x)
        y.push_back(log ? static_cast<double>(v - m - std::log(s)) : static_cast<double>(std::exp(v - m) / s));
    return y;
}
} // namespace

TEST_CASE_TEMPLATE("cpu softmax: rows match the definition, even with logits near 1000", T, float, double) {
    const int64_t rows = 3, cols = 5;
    const std::vector<T> x = {T(0.1), T(-1.2), T(2.0), T(0.0), T(0.7),   // ordinary
                              T(1000), T(1001), T(999), T(1000.5), T(998), // exp(1000) overflows unshifted
                              T(-5), T(-5), T(-5), T(-5), T(-5)};          // uniform
    for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<T> y(x.size());
        cpu::softmax_rows<T>(rows, cols, y.data(), x.data(), log);
        std::vector<double> want;
        for (int64_t i = 0; i < rows; ++i) {
            auto r = ref_softmax(std::vector<double>(x.begin() + i * cols, x.begin() + (i + 1) * cols), log);
            want.insert(want.end(), r.begin(), r.end());
        }
        CHECK(max_err(y, want) <= tol<T>());
    }
}

TEST_CASE("cpu softmax backward: exact Jacobian and finite differences (double)") {
    const int64_t rows = 2, cols = 6;
    auto x = random_vector<double>(size_t(rows * cols), -3.0, 3.0, 6);
    x[3] = 40.0;  // one dominant logit
    const auto dy = random_vector<double>(x.size(), -1.0, 1.0, 7);
    for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<double> y(x.size()), dx(x.size());
        cpu::softmax_rows<double>(rows, cols, y.data(), x.data(), log);
        cpu::softmax_rows_backward<double>(rows, cols, dx.data(), dy.data(), y.data(), log);

        // dx_j = sum_i dy_i dy_i/dx_j with the Jacobian written out entry by entry.
        std::vector<double> want(x.size());
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < cols; ++j) {
                long double acc = 0;
                for (int64_t i = 0; i < cols; ++i) {
                    const long double p_i = log ? std::exp((long double)y[r * cols + i]) : y[r * cols + i];
                    const long double p_j = log ? std::exp((long double)y[r * cols + j]) : y[r * cols + j];
                    const long double jac = log ? (i == j) - p_j : p_i * ((i == j) - p_j);
                    acc += dy[r * cols + i] * jac;
                }
                want[r * cols + j] = static_cast<double>(acc);
            }
        CHECK(max_err(dx, want) <= 1e-12);

        // Central differences of L(x) = <dy, softmax(x)>.
        auto loss = [&](const std::vector<double>& xs) {
            std::vector<double> ys(xs.size());
            cpu::softmax_rows<double>(rows, cols, ys.data(), xs.data(), log);
            return dot(dy, ys);
        };
        std::vector<double> fd(x.size());
        const double h = 1e-5;
        for (size_t i = 0; i < x.size(); ++i) {
            auto xp = x, xm = x;
            xp[i] += h;
            xm[i] -= h;
            fd[i] = (loss(xp) - loss(xm)) / (2 * h);
        }
        CHECK(max_err(dx, fd) <= 1e-8);
    }
}

namespace {
struct GroupNormRef {
    std::vector<double> y, mean, rstd;
};

// The definition: per (sample, group) mean and biased variance, then the per-channel affine.
GroupNormRef ref_group_norm(int64_t n, int64_t c, int64_t hw, int64_t g, double eps, const std::vector<double>& x,
                            const double* gamma, const double* beta) {
    GroupNormRef r{std::vector<double>(x.size()), {}, {}};
    const int64_t cpg = c / g;
    for (int64_t s = 0; s < n; ++s)
        for (int64_t gi = 0; gi < g; ++gi) {
            long double sum = 0, sq = 0;
            for (int64_t ch = gi * cpg; ch < (gi + 1) * cpg; ++ch)
                for (int64_t p = 0; p < hw; ++p) sum += x[size_t((s * c + ch) * hw + p)];
            const long double mean = sum / (cpg * hw);
            for (int64_t ch = gi * cpg; ch < (gi + 1) * cpg; ++ch)
                for (int64_t p = 0; p < hw; ++p) {
                    const long double d = x[size_t((s * c + ch) * hw + p)] - mean;
                    sq += d * d;
                }
            const long double rstd = 1 / std::sqrt(sq / (cpg * hw) + eps);
            r.mean.push_back(double(mean));
            r.rstd.push_back(double(rstd));
            for (int64_t ch = gi * cpg; ch < (gi + 1) * cpg; ++ch)
                for (int64_t p = 0; p < hw; ++p) {
                    const size_t i = size_t((s * c + ch) * hw + p);
                    r.y[i] = double((x[i] - mean) * rstd * (gamma ? gamma[ch] : 1.0) + (beta ? beta[ch] : 0.0));
                }
        }
    return r;
}
} // namespace

TEST_CASE_TEMPLATE("cpu group_norm forward: matches the definition", T, float, double) {
    const int64_t n = 2, c = 6, hw = 5, g = 3;
    const double eps = 1e-5;
    const auto x = random_vector<T>(size_t(n * c * hw), -2.0, 4.0, 8);
    const auto gamma = random_vector<T>(size_t(c), 0.5, 1.5, 9);
    const auto beta = random_vector<T>(size_t(c), -1.0, 1.0, 10);
    const auto offset = random_vector<T>(size_t(n * c), -3.0, 3.0, 15);
    const std::vector<double> xd(x.begin(), x.end()), gd(gamma.begin(), gamma.end()), bd(beta.begin(), beta.end());
    std::vector<T> y(x.size()), mean(size_t(n * g)), rstd(size_t(n * g));

    cpu::group_norm_forward<T>(n, c, hw, g, eps, x.data(), gamma.data(), beta.data(), {}, y.data(), mean.data(),
                               rstd.data());
    const auto want = ref_group_norm(n, c, hw, g, eps, xd, gd.data(), bd.data());
    CHECK(max_err(y, want.y) <= tol<T>());
    CHECK(max_err(mean, want.mean) <= tol<T>());
    CHECK(max_err(rstd, want.rstd) <= tol<T>());

    // Without the affine parameters: gamma = 1, beta = 0.
    cpu::group_norm_forward<T>(n, c, hw, g, eps, x.data(), nullptr, nullptr, {}, y.data(), mean.data(), rstd.data());
    CHECK(max_err(y, ref_group_norm(n, c, hw, g, eps, xd, nullptr, nullptr).y) <= tol<T>());

    // Fused: the offset is added to x first (the statistics are those of x + offset) and SiLU applied last.
    std::vector<double> shifted = xd;
    for (size_t i = 0; i < shifted.size(); ++i) shifted[i] += double(offset[i / size_t(hw)]);
    const auto want_fused = ref_group_norm(n, c, hw, g, eps, shifted, gd.data(), bd.data());
    for (bool silu : {false, true}) {
        CAPTURE(silu);
        cpu::group_norm_forward<T>(n, c, hw, g, eps, x.data(), gamma.data(), beta.data(), {offset.data(), silu},
                                   y.data(), mean.data(), rstd.data());
        std::vector<double> expect = want_fused.y;
        if (silu)
            for (double& v : expect) v = v / (1 + std::exp(-v));
        CHECK(max_err(y, expect) <= tol<T>());
        CHECK(max_err(mean, want_fused.mean) <= tol<T>());
        CHECK(max_err(rstd, want_fused.rstd) <= tol<T>());
    }
}

TEST_CASE("cpu group_norm backward: finite differences (double), plain and fused") {
    const int64_t n = 2, c = 4, hw = 3, g = 2;
    const double eps = 1e-5;
    const auto x = random_vector<double>(size_t(n * c * hw), -2.0, 2.0, 11);
    const auto gamma = random_vector<double>(size_t(c), 0.5, 1.5, 12);
    const auto beta = random_vector<double>(size_t(c), -1.0, 1.0, 13);
    const auto dy = random_vector<double>(x.size(), -1.0, 1.0, 14);
    const auto offset = random_vector<double>(size_t(n * c), -2.0, 2.0, 16);

    for (int variant = 0; variant < 4; ++variant) {
        const bool with_offset = variant & 1, silu = variant & 2;
        CAPTURE(with_offset);
        CAPTURE(silu);
        // L(x, gamma, beta, offset) = <dy, group_norm(x)>, so its gradients are what backward returns.
        auto loss = [&](const std::vector<double>& xs, const std::vector<double>& gs, const std::vector<double>& bs,
                        const std::vector<double>& os) {
            std::vector<double> y(xs.size()), m(size_t(n * g)), r(size_t(n * g));
            cpu::group_norm_forward<double>(n, c, hw, g, eps, xs.data(), gs.data(), bs.data(),
                                            {with_offset ? os.data() : nullptr, silu}, y.data(), m.data(), r.data());
            return dot(dy, y);
        };
        auto central = [&](auto perturb, size_t count) {
            std::vector<double> fd(count);
            const double h = 1e-5;
            for (size_t i = 0; i < count; ++i) fd[i] = (perturb(i, h) - perturb(i, -h)) / (2 * h);
            return fd;
        };
        // Loss with element i of one argument moved by h.
        auto moved = [](std::vector<double> v, size_t i, double h) {
            v[i] += h;
            return v;
        };
        const auto fd_x = central([&](size_t i, double h) { return loss(moved(x, i, h), gamma, beta, offset); },
                                  x.size());
        const auto fd_g = central([&](size_t i, double h) { return loss(x, moved(gamma, i, h), beta, offset); },
                                  gamma.size());
        const auto fd_b = central([&](size_t i, double h) { return loss(x, gamma, moved(beta, i, h), offset); },
                                  beta.size());
        const auto fd_o = central([&](size_t i, double h) { return loss(x, gamma, beta, moved(offset, i, h)); },
                                  offset.size());

        const GroupNormFusion<double> fusion{with_offset ? offset.data() : nullptr, silu};
        std::vector<double> y(x.size()), mean(size_t(n * g)), rstd(size_t(n * g));
        cpu::group_norm_forward<double>(n, c, hw, g, eps, x.data(), gamma.data(), beta.data(), fusion, y.data(),
                                        mean.data(), rstd.data());
        std::vector<double> dx(x.size()), dgamma(size_t(c), 123.0), dbeta(size_t(c), 123.0);  // overwritten
        cpu::group_norm_backward<double>(n, c, hw, g, x.data(), gamma.data(), beta.data(), fusion, mean.data(),
                                         rstd.data(), dy.data(), dx.data(), dgamma.data(), dbeta.data());
        CHECK(max_err(dx, fd_x) <= 1e-8);
        CHECK(max_err(dgamma, fd_g) <= 1e-8);
        CHECK(max_err(dbeta, fd_b) <= 1e-8);
        // The offset's gradient is dx summed over each channel's positions (the caller's sum).
        std::vector<double> d_offset(size_t(n * c), 0.0);
        for (size_t i = 0; i < dx.size(); ++i) d_offset[i / size_t(hw)] += dx[i];
        if (with_offset)
            CHECK(max_err(d_offset, fd_o) <= 1e-8);
        else
            CHECK(max_err(fd_o, std::vector<double>(size_t(n * c), 0.0)) == 0.0);

        // Without gamma the data gradient is the gamma = 1 one, and null dgamma/dbeta are skipped.
        if (!silu) {
            const std::vector<double> ones(size_t(c), 1.0);
            std::vector<double> dx_null(x.size()), dx_ones(x.size());
            cpu::group_norm_backward<double>(n, c, hw, g, x.data(), nullptr, nullptr, fusion, mean.data(),
                                             rstd.data(), dy.data(), dx_null.data(), nullptr, nullptr);
            cpu::group_norm_backward<double>(n, c, hw, g, x.data(), ones.data(), nullptr, fusion, mean.data(),
                                             rstd.data(), dy.data(), dx_ones.data(), nullptr, nullptr);
            CHECK(dx_null == dx_ones);
        }
    }
}

TEST_CASE_TEMPLATE("cpu group_norm fused dropout: the mask of bernoulli(1 - p) times 1 / (1 - p), bit for bit", T,
                   float, double) {
    const int64_t n = 3, c = 8, hw = 6, g = 2;
    const double p = 0.3;
    const auto x = random_vector<T>(size_t(n * c * hw), -2.0, 2.0, 31);
    const auto gamma = random_vector<T>(size_t(c), 0.5, 1.5, 32);
    const auto beta = random_vector<T>(size_t(c), -1.0, 1.0, 33);
    const auto offset = random_vector<T>(size_t(n * c), -1.0, 1.0, 34);
    const auto dy = random_vector<T>(x.size(), -1.0, 1.0, 35);
    // One plain stream and one split into per-sample rows, as a keyed generator draws.
    for (int64_t row_len : {int64_t(0), c * hw}) {
        CAPTURE(row_len);
        const DropoutStream d{1 - p, 1 / (1 - p), 77, 5, row_len, row_len ? uint64_t(1) << 20 : 0};
        std::vector<T> mask(x.size());
        cpu::bernoulli<T>(int64_t(x.size()), mask.data(), 1 - p, d.seed, d.offset, d.row_len, d.row_stride);
        int kept = 0;
        for (T& m : mask) kept += m == T(1), m = m * static_cast<T>(1 / (1 - p));  // as dropout() scales it
        CHECK(kept > 0);
        CHECK(kept < int(mask.size()));

        std::vector<T> plain(x.size()), y(x.size()), mean(size_t(n * g)), rstd(size_t(n * g));
        cpu::group_norm_forward<T>(n, c, hw, g, 1e-5, x.data(), gamma.data(), beta.data(), {offset.data(), true},
                                   plain.data(), mean.data(), rstd.data());
        const GroupNormFusion<T> fusion{offset.data(), true, d};
        cpu::group_norm_forward<T>(n, c, hw, g, 1e-5, x.data(), gamma.data(), beta.data(), fusion, y.data(),
                                   mean.data(), rstd.data());
        bool same = true;
        for (size_t i = 0; i < y.size(); ++i) same = same && y[i] == plain[i] * mask[i];
        CHECK(same);

        // Backward: the fused kernel equals the unfused one fed dy * mask.
        std::vector<T> dy_masked(dy.size());
        for (size_t i = 0; i < dy.size(); ++i) dy_masked[i] = dy[i] * mask[i];
        const size_t channels = static_cast<size_t>(c);
        std::vector<T> dx(x.size()), dx_plain(x.size()), dg(channels), dg_plain(channels), db(channels),
            db_plain(channels);
        cpu::group_norm_backward<T>(n, c, hw, g, x.data(), gamma.data(), beta.data(), fusion, mean.data(),
                                    rstd.data(), dy.data(), dx.data(), dg.data(), db.data());
        cpu::group_norm_backward<T>(n, c, hw, g, x.data(), gamma.data(), beta.data(), {offset.data(), true},
                                    mean.data(), rstd.data(), dy_masked.data(), dx_plain.data(), dg_plain.data(),
                                    db_plain.data());
        CHECK(dx == dx_plain);
        CHECK(dg == dg_plain);
        CHECK(db == db_plain);
    }
}

TEST_CASE_TEMPLATE("cpu scaled_residual: ((a + b) + bias[ch]) * scale", T, float, double) {
    const int64_t n = 3, c = 5, inner = 7;
    const auto a = random_vector<T>(size_t(n * c * inner), -2.0, 2.0, 21);
    const auto b = random_vector<T>(a.size(), -2.0, 2.0, 22);
    const auto bias = random_vector<T>(size_t(c), -1.0, 1.0, 23);
    const T scale = T(0.7071067811865476);
    std::vector<T> y(a.size());
    cpu::scaled_residual<T>(n, c, inner, a.data(), b.data(), bias.data(), scale, y.data());
    for (size_t i = 0; i < a.size(); ++i) {
        const size_t ch = (i / size_t(inner)) % size_t(c);
        REQUIRE(y[i] == ((a[i] + b[i]) + bias[ch]) * scale);
    }
    // Without the bias, and with one row per channel (inner 1).
    cpu::scaled_residual<T>(n * c * inner, 1, 1, a.data(), b.data(), nullptr, T(2), y.data());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(y[i] == (a[i] + b[i]) * T(2));
}

TEST_CASE_TEMPLATE("cpu random: Philox draws, their statistics and their reproducibility", T, float, double) {
    const int64_t n = 100000;
    const uint64_t seed = 42, offset = 7;
    std::vector<T> u(n), again(n), other(n);

    SUBCASE("uniform") {
        cpu::uniform<T>(n, u.data(), 0.0, 1.0, seed, offset);
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) {
            REQUIRE(u[i] >= T(0));
            REQUIRE(u[i] < T(1));
            REQUIRE(u[i] == static_cast<T>(philox::uniform(uint64_t(i), offset, seed)));
            sum += u[i];
        }
        CHECK(std::abs(sum / n - 0.5) < 0.005);  // standard error ~0.0009
        // Scaled draws are lo + (hi - lo) * u in T, with one rounding (an fma) as on the GPU.
        cpu::uniform<T>(n, other.data(), -2.0, 3.0, seed, offset);
        for (int64_t i = 0; i < 1000; ++i) REQUIRE(other[i] == std::fma(T(5), u[i], T(-2)));
    }
    SUBCASE("normal") {
        cpu::normal<T>(n, u.data(), 0.0, 1.0, seed, offset);
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < n; ++i) {
            REQUIRE(u[i] == static_cast<T>(philox::normal(uint64_t(i), offset, seed)));
            sum += u[i];
            sq += double(u[i]) * u[i];
        }
        const double mean = sum / n, var = sq / n - mean * mean;
        CHECK(std::abs(mean) < 0.015);       // standard error ~0.003
        CHECK(std::abs(var - 1.0) < 0.025);  // standard error ~0.0045
        cpu::normal<T>(n, other.data(), 3.0, 2.0, seed, offset);
        for (int64_t i = 0; i < 1000; ++i) REQUIRE(other[i] == std::fma(T(2), u[i], T(3)));
    }
    SUBCASE("bernoulli") {
        cpu::bernoulli<T>(n, u.data(), 0.3, seed, offset);
        double ones = 0;
        for (int64_t i = 0; i < n; ++i) {
            REQUIRE((u[i] == T(0) || u[i] == T(1)));
            REQUIRE(u[i] == (T(philox::uniform(uint64_t(i), offset, seed)) < T(0.3) ? T(1) : T(0)));
            ones += u[i];
        }
        CHECK(std::abs(ones / n - 0.3) < 0.007);  // standard error ~0.0015
    }

    // Same (seed, offset): the same numbers. Another offset: a different stream.
    cpu::uniform<T>(n, again.data(), 0.0, 1.0, seed, offset);
    cpu::uniform<T>(n, u.data(), 0.0, 1.0, seed, offset);
    CHECK(again == u);
    cpu::uniform<T>(n, other.data(), 0.0, 1.0, seed, offset + 1);
    int64_t equal = 0;
    for (int64_t i = 0; i < n; ++i) equal += other[i] == u[i];
    CHECK(equal < 100);  // 24-bit draws: ~0.006 coincidences expected
}

TEST_CASE("cpu random: double draws are the float draws widened") {
    const int64_t n = 1000;
    std::vector<float> f(n);
    std::vector<double> d(n);
    cpu::normal<float>(n, f.data(), 0.0, 1.0, 5, 3);
    cpu::normal<double>(n, d.data(), 0.0, 1.0, 5, 3);
    for (int64_t i = 0; i < n; ++i) REQUIRE(d[i] == double(f[i]));
}

TEST_CASE("cpu random: row-split draws give each row the stream at its own offset") {
    // Rows of 6 at offsets 100 + r * 8: row r must be the plain draw of 6 at offset 100 + 8 r.
    const int64_t rows = 5, len = 6;
    const uint64_t seed = 9, offset = 100, stride = 8;
    std::vector<float> u(rows * len), n(rows * len), b(rows * len), one(len);
    cpu::uniform<float>(rows * len, u.data(), 0.0, 1.0, seed, offset, len, stride);
    cpu::normal<float>(rows * len, n.data(), 0.0, 1.0, seed, offset, len, stride);
    cpu::bernoulli<float>(rows * len, b.data(), 0.5, seed, offset, len, stride);
    for (int64_t r = 0; r < rows; ++r) {
        CAPTURE(r);
        cpu::uniform<float>(len, one.data(), 0.0, 1.0, seed, offset + r * stride);
        CHECK(std::equal(one.begin(), one.end(), u.begin() + r * len));
        cpu::normal<float>(len, one.data(), 0.0, 1.0, seed, offset + r * stride);
        CHECK(std::equal(one.begin(), one.end(), n.begin() + r * len));
        cpu::bernoulli<float>(len, one.data(), 0.5, seed, offset + r * stride);
        CHECK(std::equal(one.begin(), one.end(), b.begin() + r * len));
    }
}

TEST_CASE("cpu random: a row-split draw may end in a partial row") {
    // 17 elements in rows of 7: rows 0 and 1 whole, row 2 the first 3 elements of its stream. Each
    // element is philox::row_element's definition, the one the CUDA kernels evaluate per thread.
    const int64_t n = 17, len = 7;
    const uint64_t seed = 5, offset = 40, stride = 2048;
    std::vector<float> u(n, -1.0f), b(n, -1.0f);
    cpu::uniform<float>(n, u.data(), 0.0, 1.0, seed, offset, len, stride);
    cpu::bernoulli<float>(n, b.data(), 0.3, seed, offset, len, stride);
    for (int64_t i = 0; i < n; ++i) {
        CAPTURE(i);
        const philox::RowElement e = philox::row_element(uint64_t(i), offset, len, stride);
        const float want = philox::uniform(e.index, e.offset, seed);
        CHECK(u[i] == want);
        CHECK(b[i] == (want < 0.3f ? 1.0f : 0.0f));
    }
    std::vector<float> single(1, -1.0f);
    cpu::normal<float>(1, single.data(), 0.0, 1.0, seed, offset, len, stride);
    CHECK(single[0] == philox::normal(0, offset, seed));
}

TEST_CASE_TEMPLATE("cpu gemm: all transpose combinations, padded leading dims, batched", T, float, double) {
    const int64_t m = 3, n = 4, k = 5, batch = 3;
    const T alpha = T(1.5), beta = T(-0.5);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            CAPTURE(ta);
            CAPTURE(tb);
            // Stored A is [m, k] (or [k, m] when transposed) with two padding columns; same for B.
            const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, lda = a_cols + 2;
            const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_cols + 1, ldc = n + 3;
            const int64_t sa = a_rows * lda + 1, sb = b_rows * ldb, sc = m * ldc + 2;
            const auto a = random_vector<T>(size_t(batch * sa), -1.0, 1.0, 15);
            const auto b = random_vector<T>(size_t(batch * sb), -1.0, 1.0, 16);
            auto c = random_vector<T>(size_t(batch * sc), -1.0, 1.0, 17);

            std::vector<double> want(c.begin(), c.end());
            for (int64_t bi = 0; bi < batch; ++bi)
                for (int64_t i = 0; i < m; ++i)
                    for (int64_t j = 0; j < n; ++j) {
                        double acc = 0;
                        for (int64_t l = 0; l < k; ++l) {
                            double av = ta ? a[bi * sa + l * lda + i] : a[bi * sa + i * lda + l];
                            double bv = tb ? b[bi * sb + j * ldb + l] : b[bi * sb + l * ldb + j];
                            acc += av * bv;
                        }
                        double& cv = want[size_t(bi * sc + i * ldc + j)];
                        cv = double(alpha) * acc + double(beta) * cv;
                    }
            cpu::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc, batch, sa, sb, sc);
            CHECK(max_err(c, want) <= tol<T>());  // padding entries must be untouched too
        }
}

TEST_CASE("cpu gemm: beta = 0 ignores NaN in C, k = 0 scales C") {
    const double a[] = {1, 2}, b[] = {3, 4};
    double c[] = {NAN, NAN, NAN, NAN};
    cpu::gemm<double>(false, false, 2, 2, 1, 1.0, a, 1, b, 2, 0.0, c, 2);
    CHECK(c[0] == 3.0);
    CHECK(c[3] == 8.0);
    cpu::gemm<double>(false, false, 2, 2, 0, 1.0, a, 0, b, 2, 2.0, c, 2);
    CHECK(c[3] == 16.0);
}

namespace {
// All three convolution products from one direct 7-loop nest: y = conv(x, w), and the adjoints
// dx = sum over taps of dy * w, dw = sum over taps of dy * x.
struct DirectConv {
    std::vector<double> y, dx, dw;
};

template <class T>
DirectConv direct_conv(const ConvShape& s, const std::vector<T>& x, const std::vector<T>& w, const std::vector<T>& dy) {
    const int64_t p = s.out_h(), q = s.out_w(), cpg = s.c / s.groups, kpg = s.k / s.groups;
    DirectConv r{std::vector<double>(size_t(s.n * s.k * p * q)), std::vector<double>(x.size()),
                 std::vector<double>(w.size())};
    for (int64_t b = 0; b < s.n; ++b)
        for (int64_t ko = 0; ko < s.k; ++ko)
            for (int64_t oh = 0; oh < p; ++oh)
                for (int64_t ow = 0; ow < q; ++ow) {
                    const size_t yi = size_t(((b * s.k + ko) * p + oh) * q + ow);
                    long double acc = 0;
                    for (int64_t cl = 0; cl < cpg; ++cl)
                        for (int64_t kr = 0; kr < s.r; ++kr)
                            for (int64_t ks = 0; ks < s.s; ++ks) {
                                const int64_t ih = oh * s.stride_h - s.pad_h + kr, iw = ow * s.stride_w - s.pad_w + ks;
                                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                                const int64_t ci = (ko / kpg) * cpg + cl;
                                const size_t xi = size_t(((b * s.c + ci) * s.h + ih) * s.w + iw);
                                const size_t wi = size_t(((ko * cpg + cl) * s.r + kr) * s.s + ks);
                                acc += static_cast<long double>(x[xi]) * w[wi];
                                r.dx[xi] += double(dy[yi]) * double(w[wi]);
                                r.dw[wi] += double(dy[yi]) * double(x[xi]);
                            }
                    r.y[yi] = static_cast<double>(acc);
                }
    return r;
}

ConvShape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw, int64_t groups) {
    ConvShape cs;
    cs.n = n, cs.c = c, cs.h = h, cs.w = w, cs.k = k, cs.r = r, cs.s = s;
    cs.stride_h = sh, cs.stride_w = sw, cs.pad_h = ph, cs.pad_w = pw, cs.groups = groups;
    return cs;
}

template <class T> void check_conv(const ConvShape& s, double tolerance) {
    const int64_t p = s.out_h(), q = s.out_w();
    const auto x = random_vector<T>(size_t(s.n * s.c * s.h * s.w), -1.0, 1.0, 18);
    const auto w = random_vector<T>(size_t(s.k * (s.c / s.groups) * s.r * s.s), -1.0, 1.0, 19);
    const auto dy = random_vector<T>(size_t(s.n * s.k * p * q), -1.0, 1.0, 20);
    const DirectConv want = direct_conv(s, x, w, dy);

    // Outputs start as garbage: every kernel must overwrite, not accumulate.
    std::vector<T> y(want.y.size(), T(77)), dx(x.size(), T(77)), dw(w.size(), T(77));
    cpu::conv2d_forward<T>(s, x.data(), w.data(), y.data());
    cpu::conv2d_backward_data<T>(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_weight<T>(s, x.data(), dy.data(), dw.data());
    CHECK(max_err(y, want.y) <= tolerance);
    CHECK(max_err(dx, want.dx) <= tolerance);
    CHECK(max_err(dw, want.dw) <= tolerance);

    if constexpr (std::is_same_v<T, double>) {
        // The adjoint identity <conv(x, w), dy> = <x, bwd_data(dy, w)> = <w, bwd_weight(x, dy)>.
        const double lhs = dot(y, dy);
        CHECK(std::abs(dot(x, dx) - lhs) <= 1e-12 * std::abs(lhs));
        CHECK(std::abs(dot(w, dw) - lhs) <= 1e-12 * std::abs(lhs));
    }
}
} // namespace

TEST_CASE_TEMPLATE("cpu conv2d: stride 2, padding 1, groups 2, non-square input", T, float, double) {
    check_conv<T>(conv_shape(2, 4, 7, 6, 6, 3, 3, 2, 2, 1, 1, 2), tol<T>());
}

TEST_CASE_TEMPLATE("cpu conv2d: unequal strides and padding, 2x3 kernel", T, float, double) {
    check_conv<T>(conv_shape(3, 3, 5, 8, 2, 2, 3, 1, 2, 0, 1, 1), tol<T>());
}

TEST_CASE_TEMPLATE("cpu conv2d: stride 1 with padding wider than the image, and pointwise", T, float, double) {
    // Stride-1 rows are unrolled as blocks: 3x3 taps with padding 2 on a 2-wide image leave runs that
    // are empty or one pixel long.
    check_conv<T>(conv_shape(2, 3, 4, 2, 5, 3, 3, 1, 1, 2, 2, 1), tol<T>());
    // 1x1, stride 1, no padding: no unrolling at all, with and without groups.
    check_conv<T>(conv_shape(3, 6, 5, 4, 4, 1, 1, 1, 1, 0, 0, 1), tol<T>());
    check_conv<T>(conv_shape(3, 6, 5, 4, 4, 1, 1, 1, 1, 0, 0, 2), tol<T>());
    // 1x1 with padding still unrolls (the padding ring is zeros).
    check_conv<T>(conv_shape(2, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1), tol<T>());
}

TEST_CASE_TEMPLATE("cpu conv2d: stride-1 data gradients computed as a flipped forward convolution", T, float,
                   double) {
    // backward_data_as_forward: a 3x2 kernel with unequal padding (1, 0), more outputs than inputs,
    // a non-square image; no padding; 5x5 with padding 2 (the U-Net's are 3x3 with padding 1).
    check_conv<T>(conv_shape(2, 3, 6, 5, 4, 3, 2, 1, 1, 1, 0, 1), tol<T>());
    check_conv<T>(conv_shape(2, 4, 5, 7, 3, 3, 3, 1, 1, 0, 0, 1), tol<T>());
    check_conv<T>(conv_shape(1, 2, 6, 6, 5, 5, 5, 1, 1, 2, 2, 1), tol<T>());
}

TEST_CASE("cpu conv2d: a batch unrolled in several chunks (double)") {
    // 32 channels * 3 * 3 taps * 85 * 85 outputs = 2.08M column entries per image, so conv.cpp
    // (budget 2^22) unrolls these 5 images as 2 + 2 + 1.
    check_conv<double>(conv_shape(5, 32, 85, 85, 2, 3, 3, 1, 1, 1, 1, 1), 1e-12);
}

TEST_CASE_TEMPLATE("cpu sq_distances: the definition, ragged blocks, and tiny distances without cancellation", T,
                   float, double) {
    // n = 37 leaves a partial cache block and a partial group of four; d = 203 a partial span and lane.
    const int64_t b = 5, n = 37, d = 203;
    auto y = random_vector<T>(size_t(b * d), -1.0, 1.0, 41);
    const auto x = random_vector<T>(size_t(n * d), -1.0, 1.0, 42);
    // Sample 3 sits 1e-3 from reference 30 in every feature: distance 203e-6 beside |x|^2 ~ 68, which a
    // norms-and-dot-product formula would lose in float.
    for (int64_t k = 0; k < d; ++k) y[size_t(3 * d + k)] = x[size_t(30 * d + k)] + T(1e-3);
    std::vector<T> out(size_t(b * n), T(-7));
    cpu::sq_distances<T>(b, n, d, y.data(), x.data(), out.data());
    double worst = 0;
    for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < n; ++j) {
            long double want = 0;
            for (int64_t k = 0; k < d; ++k) {
                const long double diff = (long double)y[size_t(i * d + k)] - (long double)x[size_t(j * d + k)];
                want += diff * diff;
            }
            worst = std::max(worst, double(std::abs(out[size_t(i * n + j)] - want) / want));
        }
    CHECK(worst <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    // The tiny one, on its own: each difference is 1e-3 up to the rounding of x + 1e-3 in T.
    CHECK(double(out[size_t(3 * n + 30)]) == doctest::Approx(203e-6).epsilon(std::is_same_v<T, float> ? 1e-3 : 1e-9));
}
