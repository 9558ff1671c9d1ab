// Every hand-written CUDA kernel against its CPU twin (tensor/cpu/kernels.h) on the same inputs.
//
// Sizes such as 1, 7, 1000, 4099 and 65537 are deliberately not multiples of any block or vector
// width, so the tails of grid-stride loops, float4 paths and reductions get exercised; strided,
// broadcast and misaligned views exercise the non-contiguous paths. Output buffers are filled with
// NaN bytes before each GPU run, so an element a kernel forgets to write shows up as a mismatch.
// Float results must agree to ||gpu - cpu|| / ||cpu|| < 1e-5; bit patterns (copies, conversions,
// uniform and bernoulli draws) must agree exactly.
#include <doctest/doctest.h>

// A build without CUDA has no stf::cuda kernels to link against; its GPU suite is main.cpp's skip.
#if !defined(STF_WITH_CUDA) || STF_WITH_CUDA

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/philox.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"
#include "tensor/tensor.h"  // DType, for cpu::convert
#include "tests/gpu/parity.h"

namespace {

using stf::StridedLayout;
using stf::test::DeviceArray;
using stf::test::random_floats;

constexpr double kTol = 1e-5;
const int64_t kSizes[] = {1, 7, 1000, 4099, 65537};

// ---- inputs ---------------------------------------------------------------------------------------


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

// ---- comparison -----------------------------------------------------------------------------------

// ||gpu - cpu|| / ||cpu|| (the absolute norm when cpu is all zeros). NaN is accepted only where both
// sides are NaN and infinities must match exactly; anything else returns infinity.
double rel_error(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        float g = gpu[i], c = cpu[i];
        if (std::isnan(g) || std::isnan(c)) {
            if (std::isnan(g) && std::isnan(c)) continue;
            return std::numeric_limits<double>::infinity();
        }
        if (std::isinf(g) || std::isinf(c)) {
            if (g == c) continue;
            return std::numeric_limits<double>::infinity();
        }
        double d = static_cast<double>(g) - static_cast<double>(c);
        diff += d * d;
        norm += static_cast<double>(c) * c;
    }
    return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

double max_abs_diff(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double worst = 0.0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        double d = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
        if (!(d <= worst)) worst = d;  // also catches NaN
    }
    return worst;
}

uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// ---- layouts --------------------------------------------------------------------------------------

// Sizes with explicit strides, or row-major contiguous strides when none are given.
StridedLayout make_layout(const std::vector<int64_t>& sizes, std::vector<int64_t> strides = {}) {
    StridedLayout l;
    l.ndim = static_cast<int>(sizes.size());
    if (strides.empty()) {
        strides.assign(sizes.size(), 1);
        for (int d = l.ndim - 2; d >= 0; --d) strides[d] = strides[d + 1] * sizes[d + 1];
    }
    for (int d = 0; d < l.ndim; ++d) {
        l.sizes[d] = sizes[d];
        l.strides[d] = strides[d];
    }
    return l;
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

// ---- runtime and allocator ------------------------------------------------------------------------

TEST_CASE("runtime: device queries, handles, copies and memset") {
    CHECK(stf::cuda::built_with_cuda());
    CHECK(stf::cuda::device_count() >= 1);
    CHECK(!stf::cuda::device_name().empty());
    CHECK(stf::cuda::stream() != nullptr);
    CHECK(stf::cuda::cublas_handle() != nullptr);
    CHECK(stf::cuda::cudnn_handle() != nullptr);

    std::vector<float> host = random_floats(4099, -1.0f, 1.0f, 11);
    DeviceArray<float> a(host), b(4099);
    CHECK(a.download() == host);
    b.poison();
    stf::cuda::copy_device_to_device(b.get(), a.get(), a.bytes());
    CHECK(b.download() == host);
    stf::cuda::memset_zero(b.get(), b.bytes());
    CHECK(b.download() == std::vector<float>(4099, 0.0f));
    stf::cuda::synchronize();
}

TEST_CASE("allocator: a freed block is served again from the cache, not from cudaMalloc") {
    const size_t bytes = 123457;  // rounded up to a multiple of 512
    void* first = stf::cuda::malloc(bytes);
    stf::cuda::free(first);
    stf::AllocatorStats before = stf::cuda::allocator_stats();
    void* second = stf::cuda::malloc(bytes);
    stf::AllocatorStats after = stf::cuda::allocator_stats();
    CHECK(second == first);
    CHECK(after.cache_hits == before.cache_hits + 1);
    CHECK(after.backend_allocs == before.backend_allocs);
    CHECK(after.reserved == before.reserved);
    CHECK(after.allocated == before.allocated + stf::CachingAllocator::round_size(bytes));
    stf::cuda::free(second);
}

TEST_CASE("allocator: peak_allocated keeps the high-water mark until reset_peak; empty_cache releases") {
    stf::cuda::reset_peak();
    stf::AllocatorStats base = stf::cuda::allocator_stats();
    CHECK(base.peak_allocated == base.allocated);

    const size_t big = 3u << 20, small = 1000;
    void* p = stf::cuda::malloc(big);
    void* q = stf::cuda::malloc(small);
    stf::AllocatorStats during = stf::cuda::allocator_stats();
    size_t expected = stf::CachingAllocator::round_size(big) + stf::CachingAllocator::round_size(small);
    CHECK(during.allocated == base.allocated + expected);
    CHECK(during.peak_allocated == during.allocated);
    stf::cuda::free(p);
    stf::cuda::free(q);

    stf::AllocatorStats freed = stf::cuda::allocator_stats();
    CHECK(freed.allocated == base.allocated);
    CHECK(freed.peak_allocated == during.peak_allocated);
    stf::cuda::reset_peak();
    CHECK(stf::cuda::allocator_stats().peak_allocated == base.allocated);

    stf::cuda::empty_cache();
    stf::AllocatorStats emptied = stf::cuda::allocator_stats();
    CHECK(emptied.reserved == emptied.allocated);  // nothing cached any more
    void* r = stf::cuda::malloc(big);
    CHECK(stf::cuda::allocator_stats().backend_allocs == emptied.backend_allocs + 1);
    stf::cuda::free(r);
}

// ---- elementwise ----------------------------------------------------------------------------------

TEST_CASE("fill matches the CPU twin") {
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

TEST_CASE("unary matches the CPU twin on contiguous, strided and broadcast inputs") {
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

TEST_CASE("binary matches the CPU twin on contiguous, broadcast and strided inputs") {
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
            stf::cuda::binary(bc.op, n, out.get(), a.get() + vp.a.offset, vp.a.layout, b.get() + vp.b.offset,
                              vp.b.layout, bc.alpha, bc.beta);
            CHECK(rel_error(out.download(), expected) < kTol);
        }
    }
}

TEST_CASE("where matches the CPU twin") {
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
template <class T> void check_copy_strided() {
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
        stf::cuda::copy_strided(n, sizeof(T), ddst.get() + c.dst.offset, c.dst.layout, dsrc.get() + c.src.offset,
                                c.src.layout);
        CHECK(ddst.download() == expected);
    }
}
}  // namespace

TEST_CASE("copy_strided matches the CPU twin for 2-, 4- and 8-byte elements") {
    check_copy_strided<uint16_t>();
    check_copy_strided<uint32_t>();
    check_copy_strided<uint64_t>();
}

TEST_CASE("f32_to_bf16 rounds to nearest even like the CPU conversion; NaN stays NaN") {
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

TEST_CASE("bf16_to_f32 matches the CPU conversion on all 65536 bit patterns") {
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

// ---- reduce ---------------------------------------------------------------------------------------

TEST_CASE("reduce (sum and max over the middle dim) matches the CPU twin") {
    struct Shape {
        int64_t outer, r, inner;
    };
    const Shape shapes[] = {
        // inner == 1: rows; warp per row up to 1024, block per row, chunked rows (two and more stages)
        {1, 1, 1}, {1000, 1, 1}, {1, 7, 1}, {7, 1000, 1}, {5, 1025, 1}, {3, 4099, 1}, {1, 65537, 1},
        {2, 300000, 1}, {1, 5000000, 1},
        // inner > 1: coalesced along inner; chunked along r above 512 rows
        {5, 7, 13}, {2, 1000, 33}, {1, 3, 65537}, {4099, 1, 7}, {1, 65537, 2}, {3, 4099, 40}, {1, 300000, 3},
    };
    uint32_t seed = 600;
    for (const Shape& s : shapes) {
        for (stf::ReduceOp op : {stf::ReduceOp::Sum, stf::ReduceOp::Max}) {
            INFO((op == stf::ReduceOp::Sum ? "sum" : "max"), " over [", s.outer, ", ", s.r, ", ", s.inner, "]");
            std::vector<float> x = random_floats(s.outer * s.r * s.inner, -1, 2, seed++);
            std::vector<float> expected(static_cast<size_t>(s.outer * s.inner));
            stf::cpu::reduce<float>(op, s.outer, s.r, s.inner, expected.data(), x.data());

            DeviceArray<float> dx(x), out(s.outer * s.inner);
            out.poison();
            stf::cuda::reduce(op, s.outer, s.r, s.inner, out.get(), dx.get());
            CHECK(rel_error(out.download(), expected) < kTol);
        }
    }
}

// ---- softmax --------------------------------------------------------------------------------------

TEST_CASE("softmax and log_softmax, forward and backward, match the CPU twins") {
    struct Shape {
        int64_t rows, cols;
    };
    // Warp per row up to 1024 columns, block per row above.
    const Shape shapes[] = {{1, 1}, {4099, 1}, {7, 7}, {1000, 33}, {3, 1000}, {5, 1024}, {5, 1025}, {2, 4099},
                            {1, 65537}};
    uint32_t seed = 700;
    for (const Shape& s : shapes) {
        for (bool log : {false, true}) {
            INFO((log ? "log_softmax" : "softmax"), " over [", s.rows, ", ", s.cols, "]");
            int64_t n = s.rows * s.cols;
            // Values near 90: exp(x) would overflow float without the row max subtracted.
            std::vector<float> x = random_floats(n, 80, 100, seed++);
            std::vector<float> y(static_cast<size_t>(n));
            stf::cpu::softmax_rows<float>(s.rows, s.cols, y.data(), x.data(), log);

            DeviceArray<float> dx_in(x), dy_out(n);
            dy_out.poison();
            stf::cuda::softmax_rows(s.rows, s.cols, dy_out.get(), dx_in.get(), log);
            CHECK(rel_error(dy_out.download(), y) < kTol);

            // Backward from the CPU's y, so both sides differentiate the same forward output.
            std::vector<float> grad_y = random_floats(n, -1, 1, seed++);
            std::vector<float> expected(static_cast<size_t>(n));
            stf::cpu::softmax_rows_backward<float>(s.rows, s.cols, expected.data(), grad_y.data(), y.data(), log);

            DeviceArray<float> d_grad_y(grad_y), d_y(y), d_grad_x(n);
            d_grad_x.poison();
            stf::cuda::softmax_rows_backward(s.rows, s.cols, d_grad_x.get(), d_grad_y.get(), d_y.get(), log);
            CHECK(rel_error(d_grad_x.download(), expected) < kTol);
        }
    }
}

// ---- group norm -----------------------------------------------------------------------------------

TEST_CASE("group_norm forward and backward match the CPU twins") {
    struct Shape {
        int64_t n, c, hw, g;
    };
    // Groups of 2 or 3 values are left out: their dx is nearly 0 by cancellation (y is +-1 whatever x
    // is), so float and double answers differ in relative terms although both are right.
    // The register-cached kernels take hw % 4 == 0 and groups of up to 8192 values (256 threads) or
    // 16384 (512 threads): the U-Net's [n, 256, 32x32] in 32 groups is exactly 8192, {1, 16, 2048, 2}
    // just over (512 threads), the decoder's [n, 512, 32x32] exactly 16384; {1, 8, 4100, 2} is just
    // over that and {2, 8, 6, 2} has whole float4s per group but not per channel: both go to the
    // general kernels.
    const Shape shapes[] = {{1, 1, 1, 1},     {2, 16, 1, 2},   {2, 4, 7, 2},     {3, 32, 99, 8},
                            {2, 8, 4099, 4},  {1, 4, 65537, 1}, {4, 64, 64, 32}, {2, 3, 1000, 3},
                            {3, 256, 1024, 32}, {2, 64, 256, 32}, {2, 12, 16, 4}, {1, 16, 2048, 2},
                            {2, 512, 1024, 32}, {1, 8, 4100, 2}, {2, 8, 6, 2}};
    const float eps = 1e-5f;
    uint32_t seed = 800;
    for (const Shape& s : shapes) {
        for (int variant = 0; variant < 8; ++variant) {
            // Fused (cuda/group_norm_math.h): an [n, c] offset added to x and SiLU on the output; dropout
            // with its mask drawn in the kernels from per-sample Philox rows.
            const bool affine = variant & 1, fused = variant & 2, drop = variant & 4;
            const std::string with_affine = affine ? "with" : "without", with_fused = fused ? "with" : "without",
                              with_drop = drop ? "with" : "without";
            INFO("[", s.n, ", ", s.c, ", ", s.hw, "] in ", s.g, " groups, ", with_affine, " gamma and beta, ",
                 with_fused, " offset and SiLU, ", with_drop, " dropout");
            // Per-sample rows (a keyed generator) with gamma, one stream (row_len 0) without.
            stf::DropoutStream dropout;
            if (drop) dropout = {0.87, 1 / 0.87, 1234, 99, affine ? s.c * s.hw : 0, affine ? uint64_t(1) << 20 : 0};
            int64_t numel = s.n * s.c * s.hw, stats = s.n * s.g;
            // Mean 3, spread 1: |mean| > std, where a one-pass variance would lose digits.
            std::vector<float> x = random_floats(numel, 2, 4, seed++);
            std::vector<float> gamma = random_floats(s.c, 0.5f, 1.5f, seed++);
            std::vector<float> beta = random_floats(s.c, -0.5f, 0.5f, seed++);
            std::vector<float> offset = random_floats(s.n * s.c, -1.0f, 1.0f, seed++);
            const float* gamma_cpu = affine ? gamma.data() : nullptr;
            const float* beta_cpu = affine ? beta.data() : nullptr;
            const stf::GroupNormFusion<float> fusion_cpu{fused ? offset.data() : nullptr, fused, dropout};

            std::vector<float> y(static_cast<size_t>(numel)), mean(static_cast<size_t>(stats)),
                rstd(static_cast<size_t>(stats));
            stf::cpu::group_norm_forward<float>(s.n, s.c, s.hw, s.g, eps, x.data(), gamma_cpu, beta_cpu, fusion_cpu,
                                                y.data(), mean.data(), rstd.data());

            DeviceArray<float> d_x(x), d_gamma(gamma), d_beta(beta), d_offset(offset), d_y(numel), d_mean(stats),
                d_rstd(stats);
            const float* gamma_gpu = affine ? d_gamma.get() : nullptr;
            const float* beta_gpu = affine ? d_beta.get() : nullptr;
            const stf::GroupNormFusion<float> fusion_gpu{fused ? d_offset.get() : nullptr, fused, dropout};
            d_y.poison();
            d_mean.poison();
            d_rstd.poison();
            stf::cuda::group_norm_forward(s.n, s.c, s.hw, s.g, eps, d_x.get(), gamma_gpu, beta_gpu, fusion_gpu,
                                          d_y.get(), d_mean.get(), d_rstd.get());
            CHECK(rel_error(d_y.download(), y) < kTol);
            CHECK(rel_error(d_mean.download(), mean) < kTol);
            CHECK(rel_error(d_rstd.download(), rstd) < kTol);

            // Backward from the CPU's statistics. dgamma and dbeta only with gamma (the header's contract).
            std::vector<float> dy = random_floats(numel, -1, 1, seed++);
            std::vector<float> dx(static_cast<size_t>(numel)), dgamma(static_cast<size_t>(s.c)),
                dbeta(static_cast<size_t>(s.c));
            stf::cpu::group_norm_backward<float>(s.n, s.c, s.hw, s.g, x.data(), gamma_cpu, beta_cpu, fusion_cpu,
                                                 mean.data(), rstd.data(), dy.data(), dx.data(),
                                                 affine ? dgamma.data() : nullptr, affine ? dbeta.data() : nullptr);

            DeviceArray<float> d_mean_cpu(mean), d_rstd_cpu(rstd), d_dy(dy), d_dx(numel), d_dgamma(s.c), d_dbeta(s.c);
            d_dx.poison();
            d_dgamma.poison();  // NaN also catches accumulating into dgamma instead of overwriting it
            d_dbeta.poison();
            stf::cuda::group_norm_backward(s.n, s.c, s.hw, s.g, d_x.get(), gamma_gpu, beta_gpu, fusion_gpu,
                                           d_mean_cpu.get(), d_rstd_cpu.get(), d_dy.get(), d_dx.get(),
                                           affine ? d_dgamma.get() : nullptr, affine ? d_dbeta.get() : nullptr);
            if ((s.c / s.g) * s.hw == 1) {
                // A group of one value: y is beta whatever x is, so dx and dgamma are 0 up to rounding, and
                // each side's rounding (the offset added before or after the mean) is all there is to
                // compare; the H100 gave relative errors of 1 to 20 on these zeros. Absolute bounds instead.
                for (float v : d_dx.download()) CHECK(std::abs(v) < 1e-3f);
                if (affine) {
                    for (float v : d_dgamma.download()) CHECK(std::abs(v) < 1e-3f);
                    CHECK(rel_error(d_dbeta.download(), dbeta) < 1e-3);
                }
                continue;
            }
            CHECK(rel_error(d_dx.download(), dx) < kTol);
            if (affine) {
                CHECK(rel_error(d_dgamma.download(), dgamma) < kTol);
                CHECK(rel_error(d_dbeta.download(), dbeta) < kTol);
            }
        }
    }
}

// ---- fused residual --------------------------------------------------------------------------------

TEST_CASE("scaled_residual matches the CPU twin bit for bit") {
    struct Shape {
        int64_t n, c, inner;
    };
    // inner % 4 == 0 takes the float4 kernel; odd inner sizes and a misaligned pointer the general one.
    const Shape shapes[] = {{2, 64, 1024}, {3, 5, 7}, {1, 1, 1}, {4, 128, 64}, {2, 3, 4099}, {64, 256, 256}};
    uint32_t seed = 900;
    for (const Shape& s : shapes) {
        for (int variant = 0; variant < 3; ++variant) {  // with bias, without, misaligned with bias
            INFO("[", s.n, ", ", s.c, ", ", s.inner, "], variant ", variant);
            const int64_t numel = s.n * s.c * s.inner, shift = variant == 2 ? 1 : 0;
            std::vector<float> a = random_floats(numel + shift, -2, 2, seed++);
            std::vector<float> b = random_floats(numel + shift, -2, 2, seed++);
            std::vector<float> bias = random_floats(s.c, -1, 1, seed++);
            const float* bias_cpu = variant == 1 ? nullptr : bias.data();
            std::vector<float> expected(static_cast<size_t>(numel));
            stf::cpu::scaled_residual<float>(s.n, s.c, s.inner, a.data() + shift, b.data() + shift, bias_cpu,
                                             0.70710678f, expected.data());
            DeviceArray<float> d_a(a), d_b(b), d_bias(bias), d_y(numel + shift);
            d_y.poison();
            stf::cuda::scaled_residual(s.n, s.c, s.inner, d_a.get() + shift, d_b.get() + shift,
                                       variant == 1 ? nullptr : d_bias.get(), 0.70710678f, d_y.get() + shift);
            std::vector<float> got = d_y.download();
            CHECK(std::vector<float>(got.begin() + shift, got.end()) == expected);
        }
    }
}

// ---- random ---------------------------------------------------------------------------------------

TEST_CASE("uniform, normal and bernoulli reproduce the CPU's Philox streams") {
    struct Stream {
        uint64_t seed, offset;
    };
    // The last one sets the high 32 bits of both the key and the counter.
    const Stream streams[] = {{0, 0}, {42, 7}, {0x0123456789abcdefull, (1ull << 33) + 5}};
    for (const Stream& st : streams) {
        for (int64_t n : kSizes) {
            INFO("seed ", st.seed, ", offset ", st.offset, ", n = ", n);
            DeviceArray<float> out(n);
            std::vector<float> expected(static_cast<size_t>(n));

            // Both sides scale with one fused multiply-add (a single, correctly rounded operation), so
            // the bits must match for any range.
            out.poison();
            stf::cuda::uniform(n, out.get(), 0.0f, 1.0f, st.seed, st.offset);
            stf::cpu::uniform<float>(n, expected.data(), 0.0, 1.0, st.seed, st.offset);
            std::vector<float> got = out.download();
            CHECK(got == expected);
            bool matches_philox = true;  // the definition itself, independently of the CPU twin
            for (int64_t i = 0; i < n; ++i)
                if (got[i] != stf::philox::uniform(static_cast<uint64_t>(i), st.offset, st.seed)) matches_philox = false;
            CHECK(matches_philox);

            out.poison();
            stf::cuda::uniform(n, out.get(), -1.0f, 1.0f, st.seed, st.offset);
            stf::cpu::uniform<float>(n, expected.data(), -1.0, 1.0, st.seed, st.offset);
            CHECK(out.download() == expected);

            out.poison();
            stf::cuda::uniform(n, out.get(), -2.5f, 4.0f, st.seed, st.offset);
            stf::cpu::uniform<float>(n, expected.data(), -2.5, 4.0, st.seed, st.offset);
            CHECK(out.download() == expected);

            // Box-Muller goes through logf, sqrtf, cosf and sinf, which differ by an ulp or so between
            // the CPU's libm and CUDA's.
            for (float mean : {0.0f, 0.5f}) {
                float std_dev = mean == 0.0f ? 1.0f : 2.0f;
                out.poison();
                stf::cuda::normal(n, out.get(), mean, std_dev, st.seed, st.offset);
                stf::cpu::normal<float>(n, expected.data(), mean, std_dev, st.seed, st.offset);
                CHECK(max_abs_diff(out.download(), expected) < 1e-5);
            }

            for (float p : {0.3f, 0.5f}) {
                out.poison();
                stf::cuda::bernoulli(n, out.get(), p, st.seed, st.offset);
                stf::cpu::bernoulli<float>(n, expected.data(), p, st.seed, st.offset);
                CHECK(out.download() == expected);
            }

            // Row-split draws (per-sample streams for data-parallel training): rows of 7 at offsets
            // st.offset + r * 2048.
            const int64_t row_len = 7;
            const uint64_t row_stride = 2048;
            out.poison();
            stf::cuda::uniform(n, out.get(), 0.0f, 1.0f, st.seed, st.offset, row_len, row_stride);
            stf::cpu::uniform<float>(n, expected.data(), 0.0, 1.0, st.seed, st.offset, row_len, row_stride);
            CHECK(out.download() == expected);
            out.poison();
            stf::cuda::bernoulli(n, out.get(), 0.3f, st.seed, st.offset, row_len, row_stride);
            stf::cpu::bernoulli<float>(n, expected.data(), 0.3, st.seed, st.offset, row_len, row_stride);
            CHECK(out.download() == expected);
            out.poison();
            stf::cuda::normal(n, out.get(), 0.0f, 1.0f, st.seed, st.offset, row_len, row_stride);
            stf::cpu::normal<float>(n, expected.data(), 0.0, 1.0, st.seed, st.offset, row_len, row_stride);
            CHECK(max_abs_diff(out.download(), expected) < 1e-5);
        }
    }
}

TEST_CASE("optim: fused Adam and EMA steps match their CPU twins") {
    // Both sides run cuda/optim_math.h (optim.cu without fused multiply-adds): expected bit for bit.
    for (int64_t n : kSizes) {
        INFO("n = ", n);
        std::vector<float> p = random_floats(n, -1, 1, 1), g = random_floats(n, -1e-3f, 1e-3f, 2);
        std::vector<float> m = random_floats(n, -1e-3f, 1e-3f, 3), v = random_floats(n, 0, 1e-6f, 4);
        const stf::optim::AdamConstants<float> k{0.9f, 0.1f, 0.999f, 0.001f, 1.0f / 0.00698f, -2e-3f / 0.5217f, 1e-8f};
        DeviceArray<float> dp(p), dg(g), dm(m), dv(v);
        stf::cuda::adam_update(n, dp.get(), dg.get(), dm.get(), dv.get(), k);
        stf::cpu::adam_update<float>(n, p.data(), g.data(), m.data(), v.data(), k);
        CHECK(rel_error(dp.download(), p) < kTol);
        CHECK(rel_error(dm.download(), m) < kTol);
        CHECK(rel_error(dv.download(), v) < kTol);
        CHECK(dp.download() == p);

        std::vector<float> ema = random_floats(n, -1, 1, 5);
        DeviceArray<float> de(ema);
        stf::cuda::ema_update(n, de.get(), dp.get(), 0.999f);
        stf::cpu::ema_update<float>(n, ema.data(), p.data(), 0.999f);
        CHECK(de.download() == ema);
    }
}

TEST_CASE("optim: Adam, EMA and the gradient guard over many tensors match the per-tensor CPU twins") {
    // 45 tensors (more than a launch's 32 slots), sizes 0 and 1 to 9.1 M (more than a launch's 512 blocks
    // of 16384), so the plan spans several launches and splits a tensor between two.
    std::vector<int64_t> sizes{0, 1, 4099, 32768, 32769, 9100000, 3};
    for (int i = 0; sizes.size() < 45; ++i) sizes.push_back(1 + 37 * i);
    const stf::optim::AdamConstants<float> k{0.9f, 0.1f, 0.999f, 0.001f, 1.0f / 0.00698f, -2e-3f / 0.5217f, 1e-8f};
    std::vector<std::vector<float>> p, g, m, v, ema;
    std::vector<std::unique_ptr<DeviceArray<float>>> dp, dg, dm, dv, de;
    std::vector<stf::cuda::AdamOperands> adam;
    std::vector<stf::cuda::EmaOperands> emas;
    std::vector<stf::cuda::GuardOperands> guards;
    uint32_t seed = 1000;
    for (int64_t n : sizes) {
        p.push_back(random_floats(n, -1, 1, seed++));
        g.push_back(random_floats(n, -1e-3f, 1e-3f, seed++));
        m.push_back(random_floats(n, -1e-3f, 1e-3f, seed++));
        v.push_back(random_floats(n, 0, 1e-6f, seed++));
        ema.push_back(random_floats(n, -1, 1, seed++));
        dp.push_back(std::make_unique<DeviceArray<float>>(p.back()));
        dg.push_back(std::make_unique<DeviceArray<float>>(g.back()));
        dm.push_back(std::make_unique<DeviceArray<float>>(m.back()));
        dv.push_back(std::make_unique<DeviceArray<float>>(v.back()));
        de.push_back(std::make_unique<DeviceArray<float>>(ema.back()));
        adam.push_back({dp.back()->get(), dg.back()->get(), dm.back()->get(), dv.back()->get(), n});
        emas.push_back({de.back()->get(), dp.back()->get(), n});
        guards.push_back({dg.back()->get(), n});
    }
    stf::cuda::adam_update_many(adam.data(), static_cast<int64_t>(adam.size()), k);
    stf::cuda::ema_update_many(emas.data(), static_cast<int64_t>(emas.size()), 0.999f);
    for (size_t t = 0; t < sizes.size(); ++t) {
        const int64_t n = sizes[t];
        stf::cpu::adam_update<float>(n, p[t].data(), g[t].data(), m[t].data(), v[t].data(), k);
        stf::cpu::ema_update<float>(n, ema[t].data(), p[t].data(), 0.999f);
        INFO("tensor ", t, " of ", n, " elements");
        CHECK(dp[t]->download() == p[t]);
        CHECK(dm[t]->download() == m[t]);
        CHECK(dv[t]->download() == v[t]);
        CHECK(de[t]->download() == ema[t]);
    }
    // The guard: NaN -> 0, +-inf -> +-1e5, everything else untouched.
    for (size_t t = 0; t < sizes.size(); ++t)
        if (sizes[t] >= 3) {
            g[t][0] = NAN;
            g[t][1] = INFINITY;
            g[t][2] = -INFINITY;
            dg[t]->upload(g[t]);
        }
    stf::cuda::nan_to_num_many(guards.data(), static_cast<int64_t>(guards.size()), 1e5f);
    for (size_t t = 0; t < sizes.size(); ++t) {
        if (sizes[t] >= 3) g[t][0] = 0, g[t][1] = 1e5f, g[t][2] = -1e5f;
        CHECK(dg[t]->download() == g[t]);
    }
}

#endif  // STF_WITH_CUDA
