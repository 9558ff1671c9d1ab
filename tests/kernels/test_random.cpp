// Random draws: uniform, normal and Bernoulli from counter-based Philox4x32-10 streams (cuda/random.cu;
// CPU twin in tensor/cpu/random.cpp; the generator and the stream convention in cuda/philox.h).
//
// A draw with generator state (seed, offset) gives element i word i % 4 of the Philox block
// philox(counter = {i / 4, offset}, key = seed): no state is carried from element to element, so every
// thread computes its own elements and both devices draw the same bits. A row-split draw (per-sample
// streams) gives element i element i % row_len of the stream at offset offset + (i / row_len) * stride.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "cuda/philox.h"
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/philox_blocks.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: Philox4x32-10 as Salmon et al. (SC'11) define it, checked against the
// known answers published with Random123; then each distribution from its definition, in long double.
// =================================================================================================
namespace {

// Ten rounds over a 128-bit counter {c0, c1, c2, c3} with a 64-bit key {k0, k1}. A round multiplies c0
// and c2 by fixed constants, keeps each 64-bit product's halves, and mixes the high halves with the
// other two words and the key; the key is bumped by the Weyl constants between rounds.
void ref_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint64_t c[4] = {counter[0], counter[1], counter[2], counter[3]}, k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = 0xD2511F53ull * c[0], p1 = 0xCD9E8D57ull * c[2];
        const uint64_t next[4] = {((p1 >> 32) ^ c[1] ^ k[0]) & 0xFFFFFFFFu, p1 & 0xFFFFFFFFu,
                                  ((p0 >> 32) ^ c[3] ^ k[1]) & 0xFFFFFFFFu, p0 & 0xFFFFFFFFu};
        for (int w = 0; w < 4; ++w) c[w] = next[w];
        k[0] = (k[0] + 0x9E3779B9u) & 0xFFFFFFFFu;
        k[1] = (k[1] + 0xBB67AE85u) & 0xFFFFFFFFu;
    }
    for (int w = 0; w < 4; ++w) out[w] = static_cast<uint32_t>(c[w]);
}

// The 32-bit word of element `index` of the stream at `offset` with key `seed`.
uint32_t ref_word(uint64_t index, uint64_t offset, uint64_t seed) {
    const uint64_t block = index / 4;
    const uint32_t counter[4] = {uint32_t(block), uint32_t(block >> 32), uint32_t(offset), uint32_t(offset >> 32)};
    const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    uint32_t out[4];
    ref_philox4x32_10(counter, key, out);
    return out[index % 4];
}

// Uniform in [0, 1): the top 24 bits of the word, a multiple of 2^-24.
long double ref_uniform(uint64_t index, uint64_t offset, uint64_t seed) {
    return std::ldexp(static_cast<long double>(ref_word(index, offset, seed) >> 8), -24);
}

// Box-Muller on the pairs (4b, 4b + 1) and (4b + 2, 4b + 3) of a block: u1 in (0, 1] (the same 24 bits
// plus one ulp, safe under log), u2 in [0, 1); the first of a pair takes the cosine, the second the sine.
long double ref_normal(uint64_t index, uint64_t offset, uint64_t seed) {
    const uint64_t first = index - index % 2;
    const long double u1 = std::ldexp(static_cast<long double>((ref_word(first, offset, seed) >> 8) + 1), -24);
    const long double u2 = ref_uniform(first + 1, offset, seed);
    const long double radius = std::sqrt(-2 * std::log(u1)), angle = 2 * std::numbers::pi_v<long double> * u2;
    return index % 2 == 0 ? radius * std::cos(angle) : radius * std::sin(angle);
}

// The (stream element, stream offset) of element i of a draw split into rows of row_len (0: one row).
struct Place {
    uint64_t index, offset;
};
Place ref_place(uint64_t i, uint64_t offset, uint64_t row_len, uint64_t row_stride) {
    if (row_len == 0) return {i, offset};
    return {i % row_len, offset + (i / row_len) * row_stride};
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE("random cpu: the reference Philox4x32-10 reproduces Random123's known answers") {
    // Random123's kat_vectors, "philox4x32 10": counter, key, expected output.
    struct Known {
        uint32_t counter[4], key[2], out[4];
    };
    const Known known[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Known& k : known) {
        uint32_t out[4];
        ref_philox4x32_10(k.counter, k.key, out);
        for (int w = 0; w < 4; ++w) CHECK(out[w] == k.out[w]);
        // cuda/philox.h's generator, which both backends use, on the same counter and key.
        const uint64_t block = uint64_t(k.counter[1]) << 32 | k.counter[0];
        const uint64_t offset = uint64_t(k.counter[3]) << 32 | k.counter[2];
        const uint64_t seed = uint64_t(k.key[1]) << 32 | k.key[0];
        const philox::Words words = philox::philox4x32_10(block, offset, seed);
        for (int w = 0; w < 4; ++w) CHECK(words.w[w] == k.out[w]);
    }
}

TEST_CASE_TEMPLATE("random cpu: uniform, normal and bernoulli against the reference, plain and row-split", T, float,
                   double) {
    // 4099 elements (a partial Philox block at the end), a 64-bit seed and offset, and rows of 7 (which
    // split blocks) at offsets 2048 apart.
    const int64_t n = 4099;
    const uint64_t seed = 0x0123456789abcdefull, offset = (1ull << 33) + 5;
    for (int64_t row_len : {int64_t(0), int64_t(7)}) {
        CAPTURE(row_len);
        const uint64_t stride = row_len ? 2048 : 0;
        std::vector<T> u(n), z(n), b(n);
        cpu::uniform<T>(n, u.data(), -2.0, 3.0, seed, offset, row_len, stride);
        cpu::normal<T>(n, z.data(), 0.5, 2.0, seed, offset, row_len, stride);
        cpu::bernoulli<T>(n, b.data(), 0.3, seed, offset, row_len, stride);
        std::vector<double> want_u(n), want_z(n), want_b(n);
        for (int64_t i = 0; i < n; ++i) {
            const Place p = ref_place(uint64_t(i), offset, uint64_t(row_len), stride);
            const long double r = ref_uniform(p.index, p.offset, seed);
            want_u[i] = static_cast<double>(-2 + 5 * r);
            want_z[i] = static_cast<double>(0.5L + 2 * ref_normal(p.index, p.offset, seed));
            want_b[i] = r < 0.3L ? 1.0 : 0.0;
        }
        CHECK(max_err(u, want_u) <= (std::is_same_v<T, float> ? 1e-6 : 1e-15));
        // The twins compute Box-Muller in float (as the GPU does), so a few float ulps of the logarithm
        // and the angle: about 1e-6 at radius 5.
        CHECK(max_err(z, want_z) <= 1e-5);
        CHECK(max_err(b, want_b) == 0.0);
    }
}

TEST_CASE_TEMPLATE("random cpu: Philox draws, their statistics and their reproducibility", T, float, double) {
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

TEST_CASE("random cpu: double draws are the float draws widened") {
    const int64_t n = 1000;
    std::vector<float> f(n);
    std::vector<double> d(n);
    cpu::normal<float>(n, f.data(), 0.0, 1.0, 5, 3);
    cpu::normal<double>(n, d.data(), 0.0, 1.0, 5, 3);
    for (int64_t i = 0; i < n; ++i) REQUIRE(d[i] == double(f[i]));
}

TEST_CASE("random cpu: row-split draws give each row the stream at its own offset") {
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

TEST_CASE("random cpu: a row-split draw may end in a partial row") {
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

// =================================================================================================
// (c) The CUDA kernels against the CPU twin. Uniform and Bernoulli draws bit for bit; normal draws to
// 1e-5 absolute, since Box-Muller's logf, sqrtf, cosf and sinf differ by an ulp or so between the CPU's
// libm and CUDA's. Outputs poisoned with NaN.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

double max_abs_diff(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double worst = 0.0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        double d = std::fabs(static_cast<double>(gpu[i]) - cpu[i]);
        if (!(d <= worst)) worst = d;  // also catches NaN
    }
    return worst;
}

}  // namespace

TEST_CASE("random cuda: uniform, normal and bernoulli reproduce the CPU's Philox streams" * needs_gpu()) {
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

#endif  // STF_WITH_CUDA

TEST_CASE("random cpu: philox_blocks, eight blocks per AVX2 register, is the scalar generator word for word") {
    // Runs that start anywhere (counters whose low word wraps past 2^32 inside the run included), of
    // lengths that leave a scalar tail, and the known-answer generator's words for one of them.
    MESSAGE("philox_blocks vectorised on this CPU: " << std::string(cpu::philox_blocks_vectorised() ? "yes" : "no"));
    struct Run {
        uint64_t first;
        int64_t count;
    };
    const uint64_t offset = 0x1234567890ull, seed = 0xFEDCBA9876543210ull;
    for (const Run run : {Run{0, 64}, Run{5, 13}, Run{0xFFFFFFFCull, 16}, Run{0x1FFFFFFF9ull, 23}, Run{77, 7}, Run{3, 0}}) {
        CAPTURE(run.first);
        CAPTURE(run.count);
        std::vector<uint32_t> fast(size_t(4 * run.count) + 1, 0xDEADBEEFu), slow(fast.size(), 0xDEADBEEFu);
        cpu::philox_blocks(run.first, run.count, offset, seed, fast.data());
        cpu::philox_blocks_scalar(run.first, run.count, offset, seed, slow.data());
        CHECK(fast == slow);
        CHECK(fast.back() == 0xDEADBEEFu);  // nothing written past the run
        for (int64_t j = 0; j < run.count; ++j) {
            const philox::Words w = philox::philox4x32_10(run.first + uint64_t(j), offset, seed);
            for (int k = 0; k < 4; ++k) REQUIRE(slow[size_t(4 * j + k)] == w.w[k]);
        }
    }
}
