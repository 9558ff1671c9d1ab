// The GroupNorm CUDA kernels with bfloat16 storage (cuda/group_norm.cu) against their CPU twins
// (tensor/cpu/group_norm.cpp) on the same stored inputs: x and dx in TX, y and dy in bf16, for TX
// bf16 and float. Both sides compute in float from the same bf16 values and round once as they store,
// so a bf16 output may differ by one bf16 ulp where the two float results fall on either side of a
// rounding boundary, plus the float kernels' own small difference near zero. The float outputs (mean,
// rstd, dgamma, dbeta, and dx when TX is float) must agree as in the float-only test (1e-5 relative).
//
// The shapes reach both the register-cached kernels (hw % 4 == 0, groups of up to 8192 values with
// 256 threads, up to 16384 with 512) and the general ones (hw % 4 != 0, a group over 16384 values, or
// a misaligned pointer). bf16 vectors need only 8-byte alignment: a pointer 4 elements into its buffer
// (8 bytes for bf16) still takes the cached path, one element in (2 bytes) the general one.
#include <doctest/doctest.h>

// A build without CUDA has no stf::cuda kernels to link against; its GPU suite is main.cpp's skip.
#if !defined(STF_WITH_CUDA) || STF_WITH_CUDA

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/bf16.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"
#include "tests/gpu/parity.h"

namespace {

using stf::bf16;
using stf::test::DeviceArray;
using stf::test::random_floats;

constexpr double kTol = 1e-5;

// The values as stored in T (bf16 rounds to nearest even), with `shift` unused elements in front.
template <class T> std::vector<T> stored(const std::vector<float>& v, int64_t shift = 0) {
    std::vector<T> out(static_cast<size_t>(shift), T(0.0f));
    for (float x : v) out.push_back(T(x));
    return out;
}

// The elements after the first `shift`, as float.
template <class T> std::vector<float> tail(const std::vector<T>& v, int64_t shift) {
    return std::vector<float>(v.begin() + shift, v.end());
}

// ||gpu - cpu|| / ||cpu||, infinite on any NaN or infinity in gpu.
double rel_error(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        if (!std::isfinite(gpu[i])) return INFINITY;
        const double d = double(gpu[i]) - double(cpu[i]);
        diff += d * d;
        norm += double(cpu[i]) * cpu[i];
    }
    return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Elements of a bf16 output further apart than one bf16 ulp (2^-7 of the larger magnitude) plus
// 1e-6 of the array's scale (its largest CPU magnitude), for the float kernels' own differences near
// zero. NaN anywhere counts.
int64_t beyond_one_ulp(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double scale = 0.0;
    for (float v : cpu) scale = std::max(scale, std::fabs(double(v)));
    int64_t bad = 0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        const double a = gpu[i], b = cpu[i];
        const double tol = std::ldexp(std::max(std::fabs(a), std::fabs(b)), -7) + 1e-6 * scale;
        if (!(std::fabs(a - b) <= tol)) ++bad;
    }
    return bad;
}

struct Shape {
    int64_t n, c, hw, g;
};

// One shape, fusion variant and pointer shift: CPU twin <float, TX, bf16> against the CUDA kernels.
template <class TX> void check_case(const Shape& s, int variant, int64_t shift, uint32_t seed) {
    const bool affine = variant & 1, fused = variant & 2, drop = variant & 4;
    INFO((std::is_same_v<TX, bf16> ? "bf16" : "float"), " x, bf16 y: [", s.n, ", ", s.c, ", ", s.hw, "] in ", s.g,
         " groups, ", (affine ? "with" : "without"), " gamma and beta, ", (fused ? "with" : "without"),
         " offset and SiLU, ", (drop ? "with" : "without"), " dropout, pointers ", shift, " elements in");
    // Per-sample rows (a keyed generator) with gamma, one stream (row_len 0) without.
    stf::DropoutStream dropout;
    if (drop) dropout = {0.87, 1 / 0.87, 1234, 99, affine ? s.c * s.hw : 0, affine ? uint64_t(1) << 20 : 0};
    const int64_t numel = s.n * s.c * s.hw, stats = s.n * s.g;
    const float eps = 1e-5f;
    // Mean 3, spread 1: |mean| > std.
    const std::vector<TX> x = stored<TX>(random_floats(numel, 2, 4, seed), shift);
    const std::vector<bf16> dy = stored<bf16>(random_floats(numel, -1, 1, seed + 1), shift);
    const std::vector<float> gamma = random_floats(s.c, 0.5f, 1.5f, seed + 2);
    const std::vector<float> beta = random_floats(s.c, -0.5f, 0.5f, seed + 3);
    const std::vector<float> offset = random_floats(s.n * s.c, -1.0f, 1.0f, seed + 4);
    const float* gamma_cpu = affine ? gamma.data() : nullptr;
    const float* beta_cpu = affine ? beta.data() : nullptr;
    const stf::GroupNormFusion<float> fusion_cpu{fused ? offset.data() : nullptr, fused, dropout};

    // Forward.
    std::vector<bf16> y(static_cast<size_t>(numel + shift), bf16(0.0f));
    std::vector<float> mean(static_cast<size_t>(stats)), rstd(static_cast<size_t>(stats));
    stf::cpu::group_norm_forward<float, TX, bf16>(s.n, s.c, s.hw, s.g, eps, x.data() + shift, gamma_cpu, beta_cpu,
                                                  fusion_cpu, y.data() + shift, mean.data(), rstd.data());

    DeviceArray<TX> d_x(x);
    DeviceArray<float> d_gamma(gamma), d_beta(beta), d_offset(offset), d_mean(stats), d_rstd(stats);
    DeviceArray<bf16> d_y(numel + shift);
    const float* gamma_gpu = affine ? d_gamma.get() : nullptr;
    const float* beta_gpu = affine ? d_beta.get() : nullptr;
    const stf::GroupNormFusion<float> fusion_gpu{fused ? d_offset.get() : nullptr, fused, dropout};
    d_y.poison();
    d_mean.poison();
    d_rstd.poison();
    stf::cuda::group_norm_forward(s.n, s.c, s.hw, s.g, eps, d_x.get() + shift, gamma_gpu, beta_gpu, fusion_gpu,
                                  d_y.get() + shift, d_mean.get(), d_rstd.get());
    CHECK(beyond_one_ulp(tail(d_y.download(), shift), tail(y, shift)) == 0);
    CHECK(rel_error(d_mean.download(), mean) < kTol);
    CHECK(rel_error(d_rstd.download(), rstd) < kTol);

    // Backward from the CPU's statistics. dgamma and dbeta only with gamma (the header's contract).
    std::vector<TX> dx(static_cast<size_t>(numel + shift), TX(0.0f));
    std::vector<float> dgamma(static_cast<size_t>(s.c)), dbeta(static_cast<size_t>(s.c));
    stf::cpu::group_norm_backward<float, TX, bf16>(s.n, s.c, s.hw, s.g, x.data() + shift, gamma_cpu, beta_cpu,
                                                   fusion_cpu, mean.data(), rstd.data(), dy.data() + shift,
                                                   dx.data() + shift, affine ? dgamma.data() : nullptr,
                                                   affine ? dbeta.data() : nullptr);

    DeviceArray<float> d_mean_cpu(mean), d_rstd_cpu(rstd), d_dgamma(s.c), d_dbeta(s.c);
    DeviceArray<bf16> d_dy(dy);
    DeviceArray<TX> d_dx(numel + shift);
    d_dx.poison();
    d_dgamma.poison();  // NaN also catches accumulating into dgamma instead of overwriting it
    d_dbeta.poison();
    stf::cuda::group_norm_backward(s.n, s.c, s.hw, s.g, d_x.get() + shift, gamma_gpu, beta_gpu, fusion_gpu,
                                   d_mean_cpu.get(), d_rstd_cpu.get(), d_dy.get() + shift, d_dx.get() + shift,
                                   affine ? d_dgamma.get() : nullptr, affine ? d_dbeta.get() : nullptr);
    if constexpr (std::is_same_v<TX, bf16>)
        CHECK(beyond_one_ulp(tail(d_dx.download(), shift), tail(dx, shift)) == 0);
    else
        CHECK(rel_error(tail(d_dx.download(), shift), tail(dx, shift)) < kTol);
    if (affine) {
        CHECK(rel_error(d_dgamma.download(), dgamma) < kTol);
        CHECK(rel_error(d_dbeta.download(), dbeta) < kTol);
    }
}

// Cached: {2, 64, 256, 32} (512 values a group), {3, 256, 1024, 32} (exactly 8192: 256 threads),
// {1, 16, 2048, 2} and {2, 512, 1024, 32} (16384: 512 threads), {2, 12, 16, 4} and {2, 3, 1000, 3}
// (3 channels or 3 groups). General: {2, 4, 7, 2} and {3, 32, 99, 8} (hw % 4 != 0), {1, 8, 4100, 2}
// (just over 16384), {2, 8, 6, 2} (whole float4s per group but not per channel).
const Shape kShapes[] = {{2, 64, 256, 32}, {3, 256, 1024, 32}, {1, 16, 2048, 2}, {2, 512, 1024, 32},
                         {2, 12, 16, 4},   {2, 4, 7, 2},       {3, 32, 99, 8},   {1, 8, 4100, 2},
                         {2, 8, 6, 2},     {2, 3, 1000, 3}};

template <class TX> void check_all(uint32_t seed) {
    for (const Shape& s : kShapes)
        for (int variant = 0; variant < 8; ++variant) {
            check_case<TX>(s, variant, 0, seed);
            seed += 10;
        }
    // Pointers 4 elements in (cached for bf16's 8-byte vectors and float's 16-byte ones) and 1 element
    // in (misaligned: the general kernels), on shapes that would otherwise take the cached kernels.
    for (const Shape& s : {Shape{2, 64, 256, 32}, Shape{1, 16, 2048, 2}})
        for (int64_t shift : {4, 1})
            for (int variant : {0, 7}) {
                check_case<TX>(s, variant, shift, seed);
                seed += 10;
            }
}

}  // namespace

TEST_CASE("group_norm with bf16 x, dx, y and dy matches the CPU twin to one bf16 ulp") { check_all<bf16>(1800); }

TEST_CASE("group_norm with float x and dx, bf16 y and dy matches the CPU twin to one bf16 ulp") {
    check_all<float>(2800);
}

#endif  // STF_WITH_CUDA
