// The ops that take bf16 storage for mixed precision (conv2d and its gradients, group_norm with a bf16
// output, scaled_residual with bf16 inputs) on the CPU: each against the float32 op on the same
// (widened) values, and the errors for dtype combinations they do not take.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/ops.h"

using namespace stf;

namespace {
Tensor randn(const Shape& shape, uint64_t seed, DType dt = DType::F32) {
    Generator g(seed);
    return ops::to(ops::randn(shape, g), dt);
}
Tensor bf16(const Tensor& t) { return ops::to(t, DType::BF16); }
Tensor f32(const Tensor& t) { return ops::to(t, DType::F32); }

// Bit-for-bit equality of two tensors of one dtype.
bool same_bits(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    Tensor ca = ops::contiguous(a), cb = ops::contiguous(b);
    return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

// Largest |got - want| / max(|want|, floor) over the elements.
double worst_relative(const Tensor& got, const Tensor& want, double floor) {
    std::vector<double> g = got.to_vector(), w = want.to_vector();
    REQUIRE(g.size() == w.size());
    double worst = 0;
    for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - w[i]) / std::max(std::abs(w[i]), floor));
    return worst;
}
}  // namespace

TEST_CASE("conv2d in bf16: the float convolution of the same values, rounded once") {
    // Operands that are exactly bf16, so only the output's rounding separates the two.
    Tensor x = bf16(randn({2, 6, 7, 7}, 1)), w = bf16(randn({4, 3, 3, 3}, 2));
    for (int groups : {1, 2}) {
        CAPTURE(groups);
        Tensor wg = groups == 1 ? bf16(randn({4, 6, 3, 3}, 3)) : w;
        Tensor y = ops::conv2d(x, wg, 1, 1, groups);
        CHECK(y.dtype() == DType::BF16);
        Tensor ref = ops::conv2d(ops::to(x, DType::F64), ops::to(wg, DType::F64), 1, 1, groups);
        // Rounding to bf16 moves a value by at most half a unit in its last place (8 significant bits):
        // 2^-8 of it at worst, just above a power of two.
        CHECK(worst_relative(y, ref, 1e-3) <= std::ldexp(1.0, -8) * 1.01);
        CHECK(same_bits(y, bf16(ops::conv2d(f32(x), f32(wg), 1, 1, groups))));

        Tensor dy = bf16(randn(y.shape(), 4));
        Tensor dx = ops::conv2d_backward_data(dy, wg, x.shape(), 1, 1, groups);
        Tensor dw = ops::conv2d_backward_weight(x, dy, wg.shape(), 1, 1, groups);
        CHECK(dx.dtype() == DType::BF16);
        CHECK(dw.dtype() == DType::BF16);
        CHECK(same_bits(dx, bf16(ops::conv2d_backward_data(f32(dy), f32(wg), x.shape(), 1, 1, groups))));
        CHECK(same_bits(dw, bf16(ops::conv2d_backward_weight(f32(x), f32(dy), wg.shape(), 1, 1, groups))));
    }
    // Strided (the FIR down-sampling's form) and an output that differs from float32 somewhere, so the
    // rounding really happened.
    Tensor y = ops::conv2d(x, bf16(randn({6, 1, 2, 2}, 5)), 2, 0, 6);
    CHECK(y.shape() == Shape{2, 6, 3, 3});
    Tensor y32 = ops::conv2d(f32(x), f32(bf16(randn({6, 1, 2, 2}, 5))), 2, 0, 6);
    CHECK_FALSE(same_bits(f32(y), y32));
    CHECK_THROWS_WITH_AS(ops::conv2d(x, f32(w), 1, 1, 2), doctest::Contains("dtype mismatch"), Error);
}

TEST_CASE("scaled_residual with bf16 inputs: float32 output, the float op on the widened values") {
    Tensor a = bf16(randn({2, 3, 5}, 6)), b32 = randn({2, 3, 5}, 7), bb = bf16(randn({2, 3, 5}, 8));
    Tensor bias = randn({3}, 9);
    const double scale = std::sqrt(0.5);
    Tensor y = ops::scaled_residual(a, b32, bias, scale);
    CHECK(y.dtype() == DType::F32);
    CHECK(same_bits(y, ops::scaled_residual(f32(a), b32, bias, scale)));
    CHECK(same_bits(ops::scaled_residual(b32, a, bias, scale), y));  // either order
    Tensor y2 = ops::scaled_residual(a, bb, Tensor(), scale);
    CHECK(y2.dtype() == DType::F32);
    CHECK(same_bits(y2, ops::scaled_residual(f32(a), f32(bb), Tensor(), scale)));
    // inner % 4 == 0 (the CUDA kernel's vector path) gives the same arithmetic
    Tensor a4 = bf16(randn({2, 3, 8}, 10)), b4 = randn({2, 3, 8}, 11);
    CHECK(same_bits(ops::scaled_residual(a4, b4, bias, 2.0), ops::scaled_residual(f32(a4), b4, bias, 2.0)));

    CHECK_THROWS_WITH_AS(ops::scaled_residual(a, b32, bf16(bias), scale), doctest::Contains("should be f32"), Error);
    CHECK_THROWS_WITH_AS(ops::scaled_residual(a, ops::to(b32, DType::F64), bias, scale),
                         doctest::Contains("bf16 with float32"), Error);
}

TEST_CASE("group_norm stores a bf16 output from a float32 or bf16 input; statistics stay float32") {
    const Shape shape{2, 8, 3, 5};
    Tensor x = randn(shape, 12), gamma = randn({8}, 13), beta = randn({8}, 14), offset = randn({2, 8}, 15);
    ops::FusedGroupNorm fused{offset, true, DropoutStream{}, DType::BF16};
    ops::GroupNormOut o = ops::group_norm(x, gamma, beta, 4, 1e-5, fused);
    ops::FusedGroupNorm plain{offset, true, DropoutStream{}, std::nullopt};
    ops::GroupNormOut o32 = ops::group_norm(x, gamma, beta, 4, 1e-5, plain);
    CHECK(o.y.dtype() == DType::BF16);
    CHECK(o.mean.dtype() == DType::F32);
    CHECK(same_bits(o.y, bf16(o32.y)));
    CHECK(same_bits(o.mean, o32.mean));
    CHECK(same_bits(o.rstd, o32.rstd));

    Tensor dy = bf16(randn(shape, 16));
    ops::GroupNormGrads g = ops::group_norm_backward(dy, x, gamma, beta, o.mean, o.rstd, 4, fused);
    ops::GroupNormGrads g32 = ops::group_norm_backward(f32(dy), x, gamma, beta, o.mean, o.rstd, 4, plain);
    CHECK(g.dx.dtype() == DType::F32);  // like x
    CHECK(same_bits(g.dx, g32.dx));
    CHECK(same_bits(g.dgamma, g32.dgamma));
    CHECK(same_bits(g.dbeta, g32.dbeta));

    // A bf16 input: y and dx bf16, the rest float32.
    Tensor xb = bf16(x);
    ops::FusedGroupNorm same{offset, true, DropoutStream{}, std::nullopt};
    ops::GroupNormOut ob = ops::group_norm(xb, gamma, beta, 4, 1e-5, same);
    CHECK(ob.y.dtype() == DType::BF16);
    CHECK(same_bits(ob.y, bf16(ops::group_norm(f32(xb), gamma, beta, 4, 1e-5, same).y)));
    ops::GroupNormGrads gb = ops::group_norm_backward(dy, xb, gamma, beta, ob.mean, ob.rstd, 4, same);
    CHECK(gb.dx.dtype() == DType::BF16);
    CHECK(gb.dgamma.dtype() == DType::F32);

    CHECK_THROWS_WITH_AS(ops::group_norm(xb, bf16(gamma), beta, 4, 1e-5, same), doctest::Contains("should be f32"),
                         Error);
    ops::FusedGroupNorm to64{Tensor(), false, DropoutStream{}, DType::F64};
    CHECK_THROWS_WITH_AS(ops::group_norm(x, gamma, beta, 4, 1e-5, to64), doctest::Contains("output dtype f64"), Error);
    CHECK_THROWS_WITH_AS(ops::group_norm_backward(f32(dy), x, gamma, beta, o.mean, o.rstd, 4, fused),
                         doctest::Contains("expected the forward output's shape, device and dtype bf16"), Error);
}
