// The residual tail of EDM's U-Net block, fused: y = ((a + b) + bias[ch]) * scale over a contiguous
// [n, c, inner], where a is the block's second convolution (without its bias), b the skip path and
// scale 1 / sqrt(2) (cuda/residual.cu; CPU twin in tensor/cpu/residual.cpp). Under mixed precision a
// and b are stored in bfloat16 and y, the residual stream, in float32.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "cuda/bf16.h"
#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: the formula per element in long double; bias may be null.
// =================================================================================================
namespace {

template <class T>
std::vector<double> ref_scaled_residual(int64_t n, int64_t c, int64_t inner, const std::vector<T>& a,
                                        const std::vector<T>& b, const T* bias, double scale) {
    std::vector<double> y(a.size());
    for (int64_t s = 0; s < n; ++s)
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t k = 0; k < inner; ++k) {
                const size_t i = size_t((s * c + ch) * inner + k);
                const long double sum = static_cast<long double>(a[i]) + b[i] + (bias ? bias[ch] : T(0));
                y[i] = static_cast<double>(sum * scale);
            }
    return y;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("residual cpu: scaled_residual is ((a + b) + bias[ch]) * scale", T, float, double) {
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
    CHECK(max_err(y, ref_scaled_residual(n, c, inner, a, b, bias.data(), double(scale))) <= tol<T>());
    // Without the bias, and with one row per channel (inner 1).
    cpu::scaled_residual<T>(n * c * inner, 1, 1, a.data(), b.data(), nullptr, T(2), y.data());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(y[i] == (a[i] + b[i]) * T(2));
}

TEST_CASE("residual cpu: bf16 inputs give the float result of the widened values, and match the reference") {
    const int64_t n = 2, c = 4, inner = 9;
    const auto a_f = random_vector<float>(size_t(n * c * inner), -2.0, 2.0, 24);
    const auto b_f = random_vector<float>(a_f.size(), -2.0, 2.0, 25);
    const auto bias = random_vector<float>(size_t(c), -1.0, 1.0, 26);
    std::vector<bf16> a, b;
    for (size_t i = 0; i < a_f.size(); ++i) a.push_back(bf16(a_f[i])), b.push_back(bf16(b_f[i]));
    const std::vector<float> a_wide(a.begin(), a.end()), b_wide(b.begin(), b.end());
    const float scale = 0.70710678f;
    std::vector<float> y(a.size()), y_wide(a.size()), y_mixed(a.size());
    cpu::scaled_residual<float, bf16, bf16>(n, c, inner, a.data(), b.data(), bias.data(), scale, y.data());
    cpu::scaled_residual<float>(n, c, inner, a_wide.data(), b_wide.data(), bias.data(), scale, y_wide.data());
    CHECK(y == y_wide);  // bit for bit: the conversion to float is exact, the arithmetic the same
    cpu::scaled_residual<float, bf16, float>(n, c, inner, a.data(), b_wide.data(), bias.data(), scale, y_mixed.data());
    CHECK(y_mixed == y_wide);
    CHECK(max_err(y, ref_scaled_residual(n, c, inner, a_wide, b_wide, bias.data(), scale)) <= tol<float>());
}

// =================================================================================================
// (c) The CUDA kernel against the CPU twin, bit for bit (the same additions and multiplication in the
// same order). inner % 4 == 0 takes the float4 kernel; odd inner sizes and a misaligned pointer the
// general one. Outputs poisoned with NaN.
// =================================================================================================
#if STF_WITH_CUDA

TEST_CASE("residual cuda: scaled_residual matches the CPU twin bit for bit" * needs_gpu()) {
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

#endif  // STF_WITH_CUDA
