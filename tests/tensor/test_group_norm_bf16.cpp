// The GroupNorm CPU twins with bfloat16 storage (tensor/cpu/group_norm.cpp): x and dx stored as TX,
// y and dy as bf16, arithmetic in float. Their contract is exact: the bf16 kernels give, bit for bit,
// the float kernels run on the bf16 inputs widened to float, with y and dx rounded to bf16 at the end,
// and the same mean, rstd, dgamma and dbeta.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/bf16.h"
#include "tensor/cpu/kernels.h"

using namespace stf;

namespace {

std::vector<float> random_floats(size_t n, float lo, float hi, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(gen);
    return v;
}

// The values as stored in T: bf16 rounds, float keeps them.
template <class T> std::vector<T> stored(const std::vector<float>& v) {
    std::vector<T> out;
    out.reserve(v.size());
    for (float x : v) out.push_back(T(x));
    return out;
}

template <class T> std::vector<float> widened(const std::vector<T>& v) {
    return std::vector<float>(v.begin(), v.end());
}

// Bit equality of two arrays of bf16 or float (NaN payloads included).
template <class T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

struct Shape {
    int64_t n, c, hw, g;
};
// hw not a multiple of 4 (5, 7, 33), one group and several, and one large enough (n * c * hw >= 2^14)
// for the kernels' OpenMP loop.
const Shape kShapes[] = {{2, 6, 5, 3}, {1, 8, 16, 4}, {3, 4, 7, 1}, {2, 12, 33, 6}, {2, 32, 300, 8}, {1, 1, 1, 1}};

struct Outputs {
    std::vector<float> y_float;  // the float kernel's y, before rounding to bf16
    std::vector<float> dx_float;
    int y_rounded = 0, dx_rounded = 0;  // elements that rounding to bf16 changed
};

// Runs the <float, TX, bf16> kernels and the float ones on the same (widened) values and checks the
// exact contract, for one shape and fusion. Returns the float results, for the non-triviality check.
template <class TX> Outputs check_against_float(const Shape& s, int variant, unsigned seed) {
    const bool affine = variant & 1, fused = variant & 2, drop = variant & 4;
    INFO("[", s.n, ", ", s.c, ", ", s.hw, "] in ", s.g, " groups, ", (affine ? "with" : "without"),
         " gamma and beta, ", (fused ? "with" : "without"), " offset and SiLU, ", (drop ? "with" : "without"),
         " dropout");
    const size_t numel = size_t(s.n * s.c * s.hw), stats = size_t(s.n * s.g), channels = size_t(s.c);
    const double eps = 1e-5;
    // Per-sample rows (a keyed generator) with gamma, one stream without.
    DropoutStream dropout;
    if (drop) dropout = {0.8, 1 / 0.8, 4321, 17, affine ? s.c * s.hw : 0, affine ? uint64_t(1) << 20 : 0};

    // Mean 3, spread 1, as activations after a convolution with a bias might be.
    const std::vector<TX> x = stored<TX>(random_floats(numel, 2.0f, 4.0f, seed));
    const std::vector<bf16> dy = stored<bf16>(random_floats(numel, -1.0f, 1.0f, seed + 1));
    const std::vector<float> gamma = random_floats(channels, 0.5f, 1.5f, seed + 2);
    const std::vector<float> beta = random_floats(channels, -0.5f, 0.5f, seed + 3);
    const std::vector<float> offset = random_floats(size_t(s.n * s.c), -1.0f, 1.0f, seed + 4);
    const float* gm = affine ? gamma.data() : nullptr;
    const float* bt = affine ? beta.data() : nullptr;
    const GroupNormFusion<float> fusion{fused ? offset.data() : nullptr, fused, dropout};
    const std::vector<float> x_f = widened(x), dy_f = widened(dy);

    // Forward.
    std::vector<float> y_f(numel), mean_f(stats), rstd_f(stats);
    cpu::group_norm_forward<float>(s.n, s.c, s.hw, s.g, eps, x_f.data(), gm, bt, fusion, y_f.data(), mean_f.data(),
                                   rstd_f.data());
    std::vector<bf16> y(numel, bf16(-7.0f));
    std::vector<float> mean(stats, -7.0f), rstd(stats, -7.0f);
    cpu::group_norm_forward<float, TX, bf16>(s.n, s.c, s.hw, s.g, eps, x.data(), gm, bt, fusion, y.data(),
                                             mean.data(), rstd.data());
    CHECK(same_bits(y, stored<bf16>(y_f)));
    CHECK(same_bits(mean, mean_f));
    CHECK(same_bits(rstd, rstd_f));

    // Backward, from the statistics of the forward pass.
    std::vector<float> dx_f(numel), dgamma_f(channels), dbeta_f(channels);
    cpu::group_norm_backward<float>(s.n, s.c, s.hw, s.g, x_f.data(), gm, bt, fusion, mean_f.data(), rstd_f.data(),
                                    dy_f.data(), dx_f.data(), affine ? dgamma_f.data() : nullptr,
                                    affine ? dbeta_f.data() : nullptr);
    std::vector<TX> dx(numel, TX(-7.0f));
    std::vector<float> dgamma(channels, -7.0f), dbeta(channels, -7.0f);
    cpu::group_norm_backward<float, TX, bf16>(s.n, s.c, s.hw, s.g, x.data(), gm, bt, fusion, mean.data(),
                                              rstd.data(), dy.data(), dx.data(), affine ? dgamma.data() : nullptr,
                                              affine ? dbeta.data() : nullptr);
    CHECK(same_bits(dx, stored<TX>(dx_f)));
    if (affine) {
        CHECK(same_bits(dgamma, dgamma_f));
        CHECK(same_bits(dbeta, dbeta_f));
    } else {  // null dgamma and dbeta are left alone
        CHECK(same_bits(dgamma, std::vector<float>(channels, -7.0f)));
        CHECK(same_bits(dbeta, std::vector<float>(channels, -7.0f)));
    }

    Outputs out{y_f, dx_f};
    for (size_t i = 0; i < numel; ++i) {
        out.y_rounded += float(y[i]) != y_f[i];
        out.dx_rounded += float(dx[i]) != dx_f[i];
    }
    return out;
}

template <class TX> void check_all_shapes() {
    unsigned seed = std::is_same_v<TX, bf16> ? 100 : 500;
    int y_rounded = 0, dx_rounded = 0, dropped = 0, values = 0;
    for (const Shape& s : kShapes)
        for (int variant = 0; variant < 8; ++variant) {
            const Outputs o = check_against_float<TX>(s, variant, seed);
            seed += 10;
            y_rounded += o.y_rounded;
            dx_rounded += o.dx_rounded;
            values += int(o.y_float.size());
            if (variant & 4)
                for (float v : o.y_float) dropped += v == 0.0f;
        }
    // The comparisons above are not vacuous: y (and dx where it is bf16) really were rounded, and the
    // dropout variants really dropped values.
    CHECK(y_rounded > values / 2);
    if (std::is_same_v<TX, bf16>)
        CHECK(dx_rounded > values / 2);
    else
        CHECK(dx_rounded == 0);  // float dx is stored as computed
    CHECK(dropped > 0);
}

}  // namespace

TEST_CASE("cpu group_norm bf16 storage: x, dx, y and dy in bf16 give the float results rounded, bit for bit") {
    check_all_shapes<bf16>();
}

TEST_CASE("cpu group_norm bf16 storage: float x and dx with bf16 y and dy give the float results rounded") {
    check_all_shapes<float>();
}

TEST_CASE("cpu group_norm bf16 storage: the bf16 kernel's input is the rounded x, not a float copy of it") {
    // x exactly representable in bf16 except for a low bit: a kernel that read float x would see a
    // different mean. The bf16 kernel must equal the float one on the rounded values, and its output
    // must differ from the float output on the unrounded values somewhere.
    const int64_t n = 1, c = 4, hw = 6, g = 2;
    const size_t numel = size_t(n * c * hw);
    const std::vector<float> x_exact = random_floats(numel, -2.0f, 2.0f, 77);
    const std::vector<bf16> x = stored<bf16>(x_exact);
    std::vector<bf16> y(numel);
    std::vector<float> mean(size_t(n * g)), rstd(size_t(n * g));
    cpu::group_norm_forward<float, bf16, bf16>(n, c, hw, g, 1e-5, x.data(), nullptr, nullptr, {}, y.data(),
                                               mean.data(), rstd.data());
    std::vector<float> y_exact(numel), mean_exact(size_t(n * g)), rstd_exact(size_t(n * g));
    cpu::group_norm_forward<float>(n, c, hw, g, 1e-5, x_exact.data(), nullptr, nullptr, {}, y_exact.data(),
                                   mean_exact.data(), rstd_exact.data());
    CHECK_FALSE(same_bits(mean, mean_exact));
    CHECK_FALSE(same_bits(y, stored<bf16>(y_exact)));
    // Still within bf16's precision of the unrounded answer (normalised values of size ~1).
    for (size_t i = 0; i < numel; ++i) CHECK(std::abs(float(y[i]) - y_exact[i]) < 0.05f);
}
