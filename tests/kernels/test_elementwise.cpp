// Elementwise kernels: fill, unary, binary, where, copy_strided and the bf16 <-> f32 conversions
// (cuda/elementwise.cu; CPU twins in tensor/cpu/elementwise.cpp).
//
// Every elementwise kernel maps output element i, in row-major order of the output's sizes, to the
// elements of its inputs at StridedLayout::offset(i): a stride of 0 broadcasts, a permuted stride
// order transposes, a stride above the row length skips. The fast paths (merged dimensions, row
// walks, float4 loads, 32-bit index maps) must all give what that definition gives.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: each op's formula in long double, element by element through the layouts.
// =================================================================================================
namespace {

long double ref_sigmoid(long double x) { return 1.0L / (1.0L + std::exp(-x)); }

long double ref_unary(UnaryOp op, long double x, long double alpha, long double beta) {
    switch (op) {
    case UnaryOp::Identity: return x;
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return std::pow(x, -0.5L);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Abs: return x < 0 ? -x : x;
    case UnaryOp::Pow: return std::pow(x, alpha);
    case UnaryOp::Silu: return x / (1.0L + std::exp(-x));
    case UnaryOp::Sigmoid: return ref_sigmoid(x);
    case UnaryOp::Clamp: return std::min(std::max(x, alpha), beta);  // beta wins when alpha > beta
    case UnaryOp::AddScalar: return x + alpha;
    case UnaryOp::MulScalar: return x * alpha;
    case UnaryOp::RSubScalar: return alpha - x;
    case UnaryOp::RDivScalar: return alpha / x;
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
    case UnaryOp::NanToNum: return std::isnan(x) ? 0.0L : std::isinf(x) ? (x > 0 ? alpha : -alpha) : x;
    }
    return NAN;
}

long double ref_binary(BinaryOp op, long double a, long double b, long double alpha, long double beta) {
    switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return a < b ? b : a;
    case BinaryOp::Minimum: return b < a ? b : a;
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::SiluBackward: {
        // derivative of x * sigmoid(x), written out from the product rule
        const long double s = ref_sigmoid(b);
        return a * (s + b * s * (1.0L - s));
    }
    case BinaryOp::SigmoidBackward: return a * b * (1.0L - b);
    case BinaryOp::ClampBackward: return (b >= alpha && b <= beta) ? a : 0.0L;
    case BinaryOp::AddScaled: return a + alpha * b;
    }
    return NAN;
}

// out[i] = op(x[lx.offset(i)]) for the n elements of the output, as double.
template <class T>
std::vector<double> ref_unary(UnaryOp op, int64_t n, const T* x, const StridedLayout& lx, double alpha, double beta) {
    std::vector<double> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(ref_unary(op, x[lx.offset(i)], alpha, beta));
    return out;
}

template <class T>
std::vector<double> ref_binary(BinaryOp op, int64_t n, const T* a, const StridedLayout& la, const T* b,
                               const StridedLayout& lb, double alpha, double beta) {
    std::vector<double> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<double>(ref_binary(op, a[la.offset(i)], b[lb.offset(i)], alpha, beta));
    return out;
}

template <class T>
std::vector<T> ref_where(int64_t n, const T* cond, const StridedLayout& lc, const T* a, const StridedLayout& la,
                         const T* b, const StridedLayout& lb) {
    std::vector<T> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[i] = cond[lc.offset(i)] != T(0) ? a[la.offset(i)] : b[lb.offset(i)];
    return out;
}

// dst[ldst.offset(i)] = src[lsrc.offset(i)]; what the view skips is left as it was.
template <class W>
void ref_copy_strided(int64_t n, W* dst, const StridedLayout& ldst, const W* src, const StridedLayout& lsrc) {
    for (int64_t i = 0; i < n; ++i) dst[ldst.offset(i)] = src[lsrc.offset(i)];
}

// The float with these bits (stf::float_bits, cuda/bf16.h, is the other way).
float bits_float(uint32_t u) { return float_from_bits(u); }

// bfloat16 is float32 with the low 16 bits dropped. Rounding to nearest, ties to even, by value: the
// two bf16 neighbours of |x| are its truncation and the next bf16 up (one bf16 ulp, 2^(e - 7), larger);
// take the nearer, on a tie the one with an even last bit. Past the largest bf16 the next one up is
// infinity. NaN stays a quiet NaN of the same sign.
uint16_t ref_bf16_bits(float x) {
    const uint32_t bits = float_bits(x), sign = bits & 0x80000000u;
    if (std::isnan(x)) return static_cast<uint16_t>((sign >> 16) | 0x7FC0u);
    if (std::isinf(x)) return static_cast<uint16_t>((sign >> 16) | 0x7F80u);
    const uint32_t down = (bits & 0x7FFF0000u) >> 16;  // |x| truncated, as bf16 bits
    const long double ax = std::fabs(static_cast<long double>(x)), lo = std::fabs(bits_float(down << 16));
    const int exponent = static_cast<int>(down >> 7);  // biased; 0 for zeros and subnormals
    const long double ulp = std::ldexp(1.0L, (exponent == 0 ? 1 : exponent) - 127 - 7);
    const long double below = ax - lo, above = lo + ulp - ax;
    const bool up = below > above || (below == above && (down & 1u));
    return static_cast<uint16_t>((sign >> 16) | (down + (up ? 1u : 0u)));  // a carry moves into the exponent
}

float ref_bf16_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace

// =================================================================================================
// (b) The CPU twins against the reference.
// =================================================================================================
namespace {

struct UnaryInput {
    UnaryOp op;
    bool positive_only;  // log, sqrt, ... need x > 0
};

const UnaryInput kUnaryInputs[] = {
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

}  // namespace

TEST_CASE_TEMPLATE("elementwise cpu: unary, every op on contiguous and transposed input", T, float, double) {
    const double alpha = 2.5, beta = 0.7;  // Clamp uses [alpha', beta] below
    // x is a [4, 3] buffer; the transposed view reads it as [3, 4].
    const auto signed_x = random_vector<T>(12, -3.0, 3.0, 1);
    const auto positive_x = random_vector<T>(12, 0.1, 3.0, 2);
    const StridedLayout flat = contiguous({12});
    const StridedLayout transposed = make_layout({3, 4}, {1, 3});
    for (const UnaryInput& c : kUnaryInputs) {
        CAPTURE(static_cast<int>(c.op));
        const auto& x = c.positive_only ? positive_x : signed_x;
        const double a = c.op == UnaryOp::Clamp ? -0.5 : alpha;
        std::vector<T> out(12);
        const std::vector<double> want = ref_unary(c.op, 12, x.data(), flat, a, beta);
        const std::vector<double> want_t = ref_unary(c.op, 12, x.data(), transposed, a, beta);

        cpu::unary<T>(c.op, 12, out.data(), x.data(), flat, a, beta);
        CHECK(max_err(out, want) <= tol<T>());
        cpu::unary<T>(c.op, 12, out.data(), x.data(), transposed, a, beta);
        CHECK(max_err(out, want_t) <= tol<T>());
    }
}

TEST_CASE_TEMPLATE("elementwise cpu: unary NanToNum and Clamp on special values", T, float, double) {
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> x = {nan, inf, -inf, T(-3), T(0.25), T(7)};
    std::vector<T> out(x.size());
    cpu::unary<T>(UnaryOp::NanToNum, 6, out.data(), x.data(), contiguous({6}), 1e5, 0.0);
    CHECK(out == std::vector<T>{T(0), T(1e5), T(-1e5), T(-3), T(0.25), T(7)});
    cpu::unary<T>(UnaryOp::Clamp, 5, out.data(), x.data() + 1, contiguous({5}), -1.0, 2.0);
    CHECK(std::vector<T>(out.begin(), out.begin() + 5) == std::vector<T>{T(2), T(-1), T(-1), T(0.25), T(2)});
    // An empty range (alpha > beta) clamps everything to beta, as min(max(x, alpha), beta) does.
    cpu::unary<T>(UnaryOp::Clamp, 5, out.data(), x.data() + 1, contiguous({5}), 1.0, -1.0);
    CHECK(max_err(std::vector<T>(out.begin(), out.begin() + 5),
                  ref_unary(UnaryOp::Clamp, 5, x.data() + 1, contiguous({5}), 1.0, -1.0)) == 0.0);
}

TEST_CASE_TEMPLATE("elementwise cpu: binary, every op with a broadcast operand", T, float, double) {
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
        const std::vector<double> want = ref_binary(op, 24, a.data(), la, b.data(), lb, alpha, beta);
        cpu::binary<T>(op, 24, out.data(), a.data(), la, b.data(), lb, alpha, beta);
        CHECK(max_err(out, want) <= tol<T>());
    }
}

TEST_CASE_TEMPLATE("elementwise cpu: binary, transposed operand against a broadcast row", T, float, double) {
    // a is a [4, 3] buffer read transposed as [3, 4]; b is one row of 4 broadcast over 3 rows.
    const auto a = random_vector<T>(12, -2.0, 2.0, 3);
    const auto b = random_vector<T>(4, 0.5, 2.0, 4);
    const StridedLayout la = make_layout({3, 4}, {1, 3}), lb = make_layout({3, 4}, {0, 1});
    for (BinaryOp op : kBinaryOps) {
        CAPTURE(static_cast<int>(op));
        std::vector<T> out(12);
        const std::vector<double> want = ref_binary(op, 12, a.data(), la, b.data(), lb, 0.3, 0.8);
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
}  // namespace

TEST_CASE("elementwise cpu: row walks over random strided, broadcast and permuted layouts") {
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
            cpu::binary<float>(BinaryOp::AddScaled, n, out.data(), a.data(), la, b.data(), lb, 0.75, 0.0);
            CHECK(max_err(out, ref_binary(BinaryOp::AddScaled, n, a.data(), la, b.data(), lb, 0.75, 0.0)) <= 1e-6);

            cpu::unary<float>(UnaryOp::Exp, n, out.data(), a.data(), la, 0.0, 0.0);
            CHECK(max_err(out, ref_unary(UnaryOp::Exp, n, a.data(), la, 0.0, 0.0)) <= 1e-6);

            // A copy into a strided destination moves every element to its place and touches nothing else.
            std::vector<uint32_t> src(static_cast<size_t>(len_a));
            std::vector<uint32_t> dst(static_cast<size_t>(len_d), 0xDEADBEEFu), expect = dst;
            for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint32_t>(i * 2654435761u);
            ref_copy_strided(n, expect.data(), ld, src.data(), la);
            cpu::copy_strided(n, 4, dst.data(), ld, src.data(), la);
            CHECK(dst == expect);
        }
}

TEST_CASE_TEMPLATE("elementwise cpu: binary Maximum and Minimum treat NaN as std::max and std::min do", T, float,
                   double) {
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

TEST_CASE_TEMPLATE("elementwise cpu: where with a broadcast condition and operands", T, float, double) {
    // out [2, 3]: cond contiguous, a a broadcast row [3], b a broadcast scalar.
    const std::vector<T> cond = {T(1), T(0), T(-2), T(0), T(0.5), T(0)};
    const std::vector<T> a = {T(10), T(20), T(30)}, b = {T(-7)};
    const StridedLayout lc = contiguous({2, 3}), la = make_layout({2, 3}, {0, 1}), lb = make_layout({2, 3}, {0, 0});
    std::vector<T> out(6);
    cpu::where<T>(6, out.data(), cond.data(), lc, a.data(), la, b.data(), lb);
    CHECK(out == std::vector<T>{T(10), T(-7), T(30), T(-7), T(20), T(-7)});
    CHECK(out == ref_where<T>(6, cond.data(), lc, a.data(), la, b.data(), lb));
}

TEST_CASE_TEMPLATE("elementwise cpu: fill", T, float, double) {
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
}  // namespace

TEST_CASE("elementwise cpu: copy_strided into a transposed destination, 2, 4 and 8 byte elements") {
    check_copy_transposed<uint16_t>();
    check_copy_transposed<uint32_t>();
    check_copy_transposed<uint64_t>();
}

TEST_CASE("elementwise cpu: convert f32 -> bf16 rounds to nearest even, and back") {
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
        CHECK(ref_bf16_bits(x[i]) == want[i]);  // the reference agrees with the hand-worked answers
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

TEST_CASE("elementwise cpu: convert f32 -> bf16 -> f32 against the reference on random bit patterns") {
    // Every exponent (subnormals and the largest finite floats included), both signs, random mantissas:
    // the twin's bit trick against the reference's choice between the two neighbours by value.
    std::mt19937 gen(23);
    const int64_t n = 200000;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) {
        uint32_t b = static_cast<uint32_t>(gen());
        if ((b & 0x7F800000u) == 0x7F800000u) b &= 0xBFFFFFFFu;  // no NaN or infinity
        v = bits_float(b);
    }
    std::vector<uint16_t> bf(static_cast<size_t>(n));
    std::vector<float> back(static_cast<size_t>(n));
    cpu::convert(n, bf.data(), 2, x.data(), 0);
    cpu::convert(n, back.data(), 0, bf.data(), 2);
    int64_t wrong = 0, wrong_back = 0;
    for (int64_t i = 0; i < n; ++i) {
        wrong += bf[i] != ref_bf16_bits(x[i]);
        wrong_back += float_bits(back[i]) != float_bits(ref_bf16_to_float(bf[i]));
    }
    CHECK(wrong == 0);
    CHECK(wrong_back == 0);
}

TEST_CASE("elementwise cpu: convert f32 <-> f64 and bf16 -> f64") {
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

// =================================================================================================
// (c) The CUDA kernels against the CPU twins.
//
// Sizes such as 1, 7, 1000, 4099 and 65537 are deliberately not multiples of any block or vector
// width, so the tails of grid-stride loops and float4 paths get exercised; strided, broadcast and
// misaligned views exercise the non-contiguous paths. Output buffers are filled with NaN bytes before
// each GPU run, so an element a kernel forgets to write shows up as a mismatch. Float results must
// agree to ||gpu - cpu|| / ||cpu|| < 1e-5; bit patterns (copies, conversions) exactly.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

constexpr double kTol = 1e-5;

// Multiples of 0.5 in [-2, 2]: comparisons, max/min and clamp boundaries see many exact ties.
std::vector<float> random_steps(int64_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> dist(-4, 4);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = 0.5f * static_cast<float>(dist(gen));
    return v;
}

template <class T> std::vector<T> random_bits(int64_t n, uint32_t seed) {
    std::mt19937_64 gen(seed);
    std::vector<T> v(static_cast<size_t>(n));
    for (T& x : v) x = static_cast<T>(gen());
    return v;
}

// Storage elements a layout reaches past its base: one past its largest offset. A view with negative
// strides (a reversal) sets its View::offset to cover the offsets below the base.
int64_t span(const StridedLayout& l) {
    if (l.numel() == 0) return 0;
    int64_t s = 1;
    for (int d = 0; d < l.ndim; ++d) s += (l.sizes[d] - 1) * std::max<int64_t>(l.strides[d], 0);
    return s;
}

// Elements storage[offset + layout.offset(i)]. offset = 1 makes the device pointer misaligned for
// float4 access, which must send the kernels down their scalar path.
struct View {
    std::string name;
    StridedLayout layout;
    int64_t offset = 0;
    int64_t storage_size() const { return offset + span(layout); }
    int64_t numel() const { return layout.numel(); }
};

std::vector<View> single_views() {
    std::vector<View> v;
    for (int64_t n : kSizes) v.push_back({"contiguous " + std::to_string(n), make_layout({n})});
    v.push_back({"0-d scalar", make_layout({})});
    v.push_back({"contiguous 4099, misaligned", make_layout({4099}), 1});
    v.push_back({"contiguous [33, 65]", make_layout({33, 65})});
    v.push_back({"transposed [37, 29]", make_layout({37, 29}, {1, 37})});
    v.push_back({"permuted [4, 5, 6]", make_layout({4, 5, 6}, {5, 1, 20})});
    v.push_back({"every third element", make_layout({100}, {3})});
    v.push_back({"row broadcast [5, 1000]", make_layout({5, 1000}, {0, 1})});
    v.push_back({"column broadcast [1000, 3]", make_layout({1000, 3}, {1, 0})});
    return v;
}

struct ViewPair {
    std::string name;
    View a, b;
};

std::vector<ViewPair> pair_views() {
    std::vector<ViewPair> v;
    for (int64_t n : kSizes)
        v.push_back({"contiguous " + std::to_string(n), {"", make_layout({n})}, {"", make_layout({n})}});
    v.push_back({"contiguous 4099, b misaligned", {"", make_layout({4099})}, {"", make_layout({4099}), 1}});
    v.push_back({"b row broadcast [64, 33]", {"", make_layout({64, 33})}, {"", make_layout({64, 33}, {0, 1})}});
    v.push_back({"a column broadcast, b transposed [64, 33]",
                 {"", make_layout({64, 33}, {1, 0})},
                 {"", make_layout({64, 33}, {1, 64})}});
    v.push_back({"b scalar broadcast [1000]", {"", make_layout({1000})}, {"", make_layout({1000}, {0})}});
    v.push_back({"[3, 1, 5] with [1, 4, 5] to [3, 4, 5]",
                 {"", make_layout({3, 4, 5}, {5, 0, 1})},
                 {"", make_layout({3, 4, 5}, {0, 5, 1})}});
    // The shapes of the U-Net: a per-channel operand, a channel slice of a skip concatenation.
    v.push_back({"b channel broadcast [4, 6, 5, 7]", {"", make_layout({4, 6, 5, 7})},
                 {"", make_layout({4, 6, 5, 7}, {0, 1, 0, 0})}});
    v.push_back({"a channel slice of [4, 10, 5, 7], b [n, c, 1, 1] broadcast",
                 {"", make_layout({4, 6, 5, 7}, {350, 35, 7, 1}), 70},
                 {"", make_layout({4, 6, 5, 7}, {6, 1, 0, 0})}});
    // A negative stride has no 32-bit index map: the 64-bit path.
    v.push_back({"b reversed [1000]", {"", make_layout({1000})}, {"", make_layout({1000}, {-1}), 999}});
    return v;
}

}  // namespace

TEST_CASE("elementwise cuda: fill matches the CPU twin" * needs_gpu()) {
    for (int64_t n : kSizes) {
        INFO("n = ", n);
        std::vector<float> expected(static_cast<size_t>(n));
        stf::cpu::fill<float>(n, expected.data(), 2.5f);
        DeviceArray<float> out(n);
        out.poison();
        stf::cuda::fill(n, out.get(), 2.5f);
        CHECK(out.download() == expected);
    }
}

namespace {
struct UnaryCase {
    stf::UnaryOp op;
    const char* name;
    float lo, hi;  // input range
    float alpha, beta;
};
using U = stf::UnaryOp;
const UnaryCase kUnaryCases[] = {
    {U::Identity, "identity", -4, 4, 0, 0},      {U::Neg, "neg", -4, 4, 0, 0},
    {U::Exp, "exp", -4, 4, 0, 0},                {U::Log, "log", 0.1f, 3, 0, 0},
    {U::Sqrt, "sqrt", 0, 3, 0, 0},               {U::Rsqrt, "rsqrt", 0.1f, 3, 0, 0},
    {U::Square, "square", -4, 4, 0, 0},          {U::Abs, "abs", -4, 4, 0, 0},
    {U::Pow, "pow", 0.1f, 3, 1.7f, 0},           {U::Silu, "silu", -6, 6, 0, 0},
    {U::Sigmoid, "sigmoid", -6, 6, 0, 0},        {U::Clamp, "clamp", -4, 4, -1, 2},
    {U::Clamp, "clamp with alpha > beta", -4, 4, 1, -1},
    {U::AddScalar, "add_scalar", -4, 4, 0.75f, 0}, {U::MulScalar, "mul_scalar", -4, 4, -1.5f, 0},
    {U::RSubScalar, "rsub_scalar", -4, 4, 2, 0}, {U::RDivScalar, "rdiv_scalar", 0.1f, 3, 2.5f, 0},
    {U::Sin, "sin", -10, 10, 0, 0},              {U::Cos, "cos", -10, 10, 0, 0},
    {U::NanToNum, "nan_to_num", -4, 4, 1e5f, 0},
};

// Sprinkles NaN, +inf and -inf among the values, for nan_to_num.
void add_non_finite(std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
        if (i % 7 == 3) v[i] = std::numeric_limits<float>::quiet_NaN();
        else if (i % 11 == 5) v[i] = std::numeric_limits<float>::infinity();
        else if (i % 13 == 8) v[i] = -std::numeric_limits<float>::infinity();
    }
}
}  // namespace

TEST_CASE("elementwise cuda: unary matches the CPU twin on contiguous, strided and broadcast inputs" * needs_gpu()) {
    uint32_t seed = 100;
    for (const UnaryCase& uc : kUnaryCases) {
        for (const View& v : single_views()) {
            INFO(uc.name, " on ", v.name);
            std::vector<float> storage = random_floats(v.storage_size(), uc.lo, uc.hi, seed++);
            if (uc.op == U::NanToNum) add_non_finite(storage);
            int64_t n = v.numel();
            std::vector<float> expected(static_cast<size_t>(n));
            stf::cpu::unary<float>(uc.op, n, expected.data(), storage.data() + v.offset, v.layout, uc.alpha, uc.beta);

            DeviceArray<float> x(storage), out(n);
            out.poison();
            stf::cuda::unary(uc.op, n, out.get(), x.get() + v.offset, v.layout, uc.alpha, uc.beta);
            CHECK(rel_error(out.download(), expected) < kTol);
        }
    }
}

namespace {
enum class Inputs { Wide, PositiveB, Steps };  // a and b in [-3, 3]; b in [0.5, 2]; multiples of 0.5
struct BinaryCase {
    stf::BinaryOp op;
    const char* name;
    Inputs inputs;
    float alpha, beta;
};
using B = stf::BinaryOp;
const BinaryCase kBinaryCases[] = {
    {B::Add, "add", Inputs::Wide, 0, 0},
    {B::Sub, "sub", Inputs::Wide, 0, 0},
    {B::Mul, "mul", Inputs::Wide, 0, 0},
    {B::Div, "div", Inputs::PositiveB, 0, 0},
    {B::Maximum, "maximum", Inputs::Steps, 0, 0},
    {B::Minimum, "minimum", Inputs::Steps, 0, 0},
    {B::Eq, "eq", Inputs::Steps, 0, 0},
    {B::Gt, "gt", Inputs::Steps, 0, 0},
    {B::Lt, "lt", Inputs::Steps, 0, 0},
    {B::SiluBackward, "silu_backward", Inputs::Wide, 0, 0},
    {B::SigmoidBackward, "sigmoid_backward", Inputs::Wide, 0, 0},
    {B::ClampBackward, "clamp_backward", Inputs::Steps, -1, 1},
    {B::AddScaled, "add_scaled", Inputs::Wide, 0.3f, 0},
};
}  // namespace

namespace {
// binary (the tuned launcher) or binary_v1 (its first version, cuda/elementwise.cu) against the CPU twin.
void check_binary(bool first_version) {
    uint32_t seed = 200;
    for (const BinaryCase& bc : kBinaryCases) {
        for (const ViewPair& vp : pair_views()) {
            INFO(bc.name, " on ", vp.name);
            int64_t n = vp.a.numel();
            REQUIRE(vp.b.numel() == n);
            std::vector<float> a_store, b_store;
            if (bc.inputs == Inputs::Steps) {
                a_store = random_steps(vp.a.storage_size(), seed++);
                b_store = random_steps(vp.b.storage_size(), seed++);
            } else {
                a_store = random_floats(vp.a.storage_size(), -3, 3, seed++);
                b_store = bc.inputs == Inputs::PositiveB ? random_floats(vp.b.storage_size(), 0.5f, 2, seed++)
                                                         : random_floats(vp.b.storage_size(), -3, 3, seed++);
            }
            std::vector<float> expected(static_cast<size_t>(n));
            stf::cpu::binary<float>(bc.op, n, expected.data(), a_store.data() + vp.a.offset, vp.a.layout,
                                    b_store.data() + vp.b.offset, vp.b.layout, bc.alpha, bc.beta);

            DeviceArray<float> a(a_store), b(b_store), out(n);
            out.poison();
            (first_version ? stf::cuda::binary_v1 : stf::cuda::binary)(bc.op, n, out.get(), a.get() + vp.a.offset,
                                                                      vp.a.layout, b.get() + vp.b.offset, vp.b.layout,
                                                                      bc.alpha, bc.beta);
            CHECK(rel_error(out.download(), expected) < kTol);
        }
    }
}
}  // namespace

TEST_CASE("elementwise cuda: binary matches the CPU twin on contiguous, broadcast and strided inputs" * needs_gpu()) {
    check_binary(false);
}

TEST_CASE("elementwise cuda: where matches the CPU twin" * needs_gpu()) {
    struct Case {
        std::string name;
        View cond, a, b;
    };
    std::vector<Case> cases;
    for (int64_t n : kSizes)
        cases.push_back({"contiguous " + std::to_string(n), {"", make_layout({n})}, {"", make_layout({n})},
                         {"", make_layout({n})}});
    cases.push_back({"cond row broadcast, a transposed, b scalar [64, 33]",
                     {"", make_layout({64, 33}, {0, 1})},
                     {"", make_layout({64, 33}, {1, 64})},
                     {"", make_layout({64, 33}, {0, 0})}});
    uint32_t seed = 300;
    for (const Case& c : cases) {
        INFO(c.name);
        int64_t n = c.a.numel();
        std::vector<float> cond = random_steps(c.cond.storage_size(), seed++);
        for (float& x : cond) x = x > 0.0f ? 1.0f : 0.0f;
        std::vector<float> a_store = random_floats(c.a.storage_size(), -3, 3, seed++);
        std::vector<float> b_store = random_floats(c.b.storage_size(), -3, 3, seed++);
        std::vector<float> expected(static_cast<size_t>(n));
        stf::cpu::where<float>(n, expected.data(), cond.data(), c.cond.layout, a_store.data(), c.a.layout,
                               b_store.data(), c.b.layout);

        DeviceArray<float> dc(cond), da(a_store), db(b_store), out(n);
        out.poison();
        stf::cuda::where(n, out.get(), dc.get(), c.cond.layout, da.get(), c.a.layout, db.get(), c.b.layout);
        CHECK(out.download() == expected);
    }
}

namespace {
// Copies random bit patterns of elements of type T (2, 4 or 8 bytes) between views; the whole
// destination storage, including elements the view skips, must equal the CPU's.
// With first_version, copy_strided_v1 (cuda/elementwise.cu) instead of the tuned launcher.
template <class T> void check_copy_strided(bool first_version = false) {
    struct Case {
        std::string name;
        View dst, src;
    };
    std::vector<Case> cases;
    for (int64_t n : kSizes)
        cases.push_back({"contiguous " + std::to_string(n), {"", make_layout({n})}, {"", make_layout({n})}});
    cases.push_back({"transposed source [37, 29]", {"", make_layout({37, 29})}, {"", make_layout({37, 29}, {1, 37})}});
    cases.push_back({"transposed destination [37, 29]", {"", make_layout({37, 29}, {1, 37})}, {"", make_layout({37, 29})}});
    cases.push_back({"broadcast source [5, 1000]", {"", make_layout({5, 1000})}, {"", make_layout({5, 1000}, {0, 1})}});
    cases.push_back({"into a channel slice of [4, 10, 5, 7]", {"", make_layout({4, 6, 5, 7}, {350, 35, 7, 1}), 140},
                     {"", make_layout({4, 6, 5, 7})}});
    cases.push_back({"reversed source [1000] (the 64-bit path)", {"", make_layout({1000})},
                     {"", make_layout({1000}, {-1}), 999}});
    cases.push_back({"permuted destination, stepped source [4, 5, 6]",
                     {"", make_layout({4, 5, 6}, {5, 1, 20})},
                     {"", make_layout({4, 5, 6}, {60, 12, 2}), 1}});
    uint32_t seed = 400 + sizeof(T);
    for (const Case& c : cases) {
        INFO(sizeof(T), "-byte elements, ", c.name);
        int64_t n = c.src.numel();
        std::vector<T> src = random_bits<T>(c.src.storage_size(), seed++);
        std::vector<T> expected(static_cast<size_t>(c.dst.storage_size()), static_cast<T>(~T(0)));  // = poison
        stf::cpu::copy_strided(n, sizeof(T), expected.data() + c.dst.offset, c.dst.layout, src.data() + c.src.offset,
                               c.src.layout);

        DeviceArray<T> dsrc(src), ddst(c.dst.storage_size());
        ddst.poison();
        (first_version ? stf::cuda::copy_strided_v1 : stf::cuda::copy_strided)(
            n, sizeof(T), ddst.get() + c.dst.offset, c.dst.layout, dsrc.get() + c.src.offset, c.src.layout);
        CHECK(ddst.download() == expected);
    }
}
}  // namespace

TEST_CASE("elementwise cuda: copy_strided matches the CPU twin for 2-, 4- and 8-byte elements" * needs_gpu()) {
    check_copy_strided<uint16_t>();
    check_copy_strided<uint32_t>();
    check_copy_strided<uint64_t>();
}

// The first version of the strided path (every strided operand through the 64-bit StridedLayout::offset),
// kept as a lesson: the same cases as the tuned launchers.
TEST_CASE("elementwise cuda: the first versions, binary_v1 and copy_strided_v1, match the CPU twin" * needs_gpu()) {
    check_binary(true);
    check_copy_strided<uint16_t>(true);
    check_copy_strided<uint32_t>(true);
    check_copy_strided<uint64_t>(true);
}

TEST_CASE("elementwise cuda: f32_to_bf16 rounds to nearest even like the CPU conversion; NaN stays NaN" * needs_gpu()) {
    // Hand-picked patterns first: ties rounding down (even) and up (odd), just above a tie, the
    // largest float (rounds to infinity), infinities, zeros and subnormals. Then random bit patterns.
    std::vector<uint32_t> bits = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x7f7fffffu, 0xff7fffffu,
                                  0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu,
                                  0x3f800000u, 0xbf800000u};
    std::vector<uint32_t> random = random_bits<uint32_t>(65537, 500);
    for (uint32_t b : random) bits.push_back((b & 0x7f800000u) == 0x7f800000u ? b & 0xbfffffffu : b);  // no NaN/inf
    std::vector<float> x(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) x[i] = bits_float(bits[i]);
    int64_t n = static_cast<int64_t>(x.size());

    std::vector<uint16_t> expected(x.size());
    stf::cpu::convert(n, expected.data(), static_cast<int>(stf::DType::BF16), x.data(),
                      static_cast<int>(stf::DType::F32));
    DeviceArray<float> dx(x);
    DeviceArray<uint16_t> out(n);
    out.poison();
    stf::cuda::f32_to_bf16(n, out.get(), dx.get());
    std::vector<uint16_t> got = out.download();
    CHECK(got == expected);
    // The first patterns' correct answers, independently of the CPU twin.
    CHECK(got[0] == 0x3f80u);  // tie, even: down
    CHECK(got[1] == 0x3f82u);  // tie, odd: up
    CHECK(got[2] == 0x3f81u);  // above the tie: up
    CHECK(got[3] == 0x3f80u);  // below the tie: down
    CHECK(got[4] == 0x7f80u);  // FLT_MAX rounds to +inf
    CHECK(got[5] == 0xff80u);

    // NaNs, including a signalling one whose payload lies only in the bits that are dropped.
    std::vector<float> nans = {bits_float(0x7fc00000u), bits_float(0xffc00000u), bits_float(0x7f800001u),
                               bits_float(0xff800001u)};
    DeviceArray<float> dn(nans);
    DeviceArray<uint16_t> nan_out(static_cast<int64_t>(nans.size()));
    nan_out.poison();
    stf::cuda::f32_to_bf16(static_cast<int64_t>(nans.size()), nan_out.get(), dn.get());
    std::vector<uint16_t> nan_bits = nan_out.download();
    for (size_t i = 0; i < nans.size(); ++i) {
        INFO("NaN input ", i);
        CHECK((nan_bits[i] & 0x7f80u) == 0x7f80u);  // exponent all ones
        CHECK((nan_bits[i] & 0x007fu) != 0u);       // mantissa non-zero: NaN, not infinity
        CHECK((nan_bits[i] & 0x8000u) == ((float_bits(nans[i]) >> 16) & 0x8000u));  // sign kept
    }
}

TEST_CASE("elementwise cuda: bf16_to_f32 matches the CPU conversion on all 65536 bit patterns" * needs_gpu()) {
    std::vector<uint16_t> x(65536);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint16_t>(i);
    int64_t n = static_cast<int64_t>(x.size());
    std::vector<float> expected(x.size());
    stf::cpu::convert(n, expected.data(), static_cast<int>(stf::DType::F32), x.data(),
                      static_cast<int>(stf::DType::BF16));
    DeviceArray<uint16_t> dx(x);
    DeviceArray<float> out(n);
    out.poison();
    stf::cuda::bf16_to_f32(n, out.get(), dx.get());
    std::vector<float> got = out.download();
    int mismatches = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        bool same = float_bits(got[i]) == float_bits(expected[i]) || (std::isnan(got[i]) && std::isnan(expected[i]));
        if (!same) ++mismatches;
        if (float_bits(got[i]) != static_cast<uint32_t>(x[i]) << 16) ++mismatches;  // the definition itself
    }
    CHECK(mismatches == 0);
}

#endif  // STF_WITH_CUDA
