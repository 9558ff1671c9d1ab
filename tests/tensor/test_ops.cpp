// Raw ops against float64 references: reductions, matmul, convolution layouts, softmax, cat, pad.
#include <doctest/doctest.h>

#include <cmath>

#include "tensor/ops.h"

using namespace stf;

namespace {
Tensor seq(const Shape& shape, DType dt = DType::F64) { return ops::reshape(ops::arange(shape_numel(shape), dt), shape); }
Tensor randn(const Shape& shape, uint64_t seed, DType dt = DType::F64) {
    Generator g(seed);
    return ops::randn(shape, g, dt);
}
}  // namespace

TEST_CASE("sum, mean and max over all, one, adjacent and non-adjacent dims") {
    Tensor t = seq({2, 3, 4});
    CHECK(ops::sum(t).item() == 276);
    CHECK(ops::mean(t).item() == doctest::Approx(11.5));
    CHECK(ops::max(t).item() == 23);
    Tensor s1 = ops::sum(t, {1});
    CHECK(s1.shape() == Shape{2, 4});
    CHECK(s1.to_vector()[0] == 0 + 4 + 8);
    Tensor s12 = ops::sum(t, {1, 2}, true);
    CHECK(s12.shape() == Shape{2, 1, 1});
    CHECK(s12.to_vector()[1] == 12 * 12 + 66);
    Tensor s02 = ops::sum(t, {0, -1});  // non-adjacent
    CHECK(s02.shape() == Shape{3});
    std::vector<double> v = s02.to_vector();
    for (int j = 0; j < 3; ++j) {
        double ref = 0;
        for (int i = 0; i < 2; ++i)
            for (int k = 0; k < 4; ++k) ref += 12 * i + 4 * j + k;
        CHECK(v[j] == ref);
    }
    Tensor m0 = ops::max(ops::neg(t), {0});
    CHECK(m0.to_vector()[5] == -5);
    CHECK(ops::sum(ops::zeros({0, 3}), {0}).to_vector() == std::vector<double>{0, 0, 0});
    CHECK_THROWS_WITH_AS(ops::sum(t, {3}), doctest::Contains("dim 3 out of range"), Error);
}

TEST_CASE("sum_to_shape undoes broadcasting") {
    Tensor g = ops::ones({2, 3, 4}, DType::F64);
    CHECK(ops::sum_to_shape(g, {3, 1}).to_vector() == std::vector<double>{8, 8, 8});
    CHECK(ops::sum_to_shape(g, {}).item() == 24);
}

TEST_CASE("matmul in all transpose combinations and batched") {
    Tensor a = randn({5, 7}, 1), b = randn({7, 3}, 2);
    std::vector<double> av = a.to_vector(), bv = b.to_vector();
    std::vector<double> ref(15, 0);
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 7; ++k) ref[i * 3 + j] += av[i * 7 + k] * bv[k * 3 + j];
    auto close = [&](const Tensor& c) {
        std::vector<double> cv = c.to_vector();
        REQUIRE(cv.size() == ref.size());
        for (size_t i = 0; i < cv.size(); ++i) CHECK(cv[i] == doctest::Approx(ref[i]).epsilon(1e-12));
    };
    close(ops::matmul(a, b));
    close(ops::matmul(ops::contiguous(ops::transpose(a, 0, 1)), b, true, false));
    close(ops::matmul(a, ops::contiguous(ops::transpose(b, 0, 1)), false, true));
    close(ops::matmul(ops::contiguous(ops::transpose(a, 0, 1)), ops::contiguous(ops::transpose(b, 0, 1)), true, true));
    close(ops::matmul(ops::transpose(a, 0, 1), b, true, false));  // strided input is made contiguous
    Tensor ab = ops::matmul(ops::unsqueeze(a, 0), ops::unsqueeze(b, 0));
    CHECK(ab.shape() == Shape{1, 5, 3});
    CHECK_THROWS_WITH_AS(ops::matmul(a, a), doctest::Contains("inner sizes differ (7 vs 5)"), Error);
}

TEST_CASE("matmul uses row-contiguous slices in place, with alpha, batched; other layouts are copied") {
    // q, k, v interleaved as EDM's attention holds them: [batch, ch, 3, hw], each part a strided slice.
    Tensor qkv = randn({4, 5, 3, 6}, 11);
    auto part = [&](int64_t i) { return ops::squeeze(ops::narrow(qkv, 2, i, 1), 2); };  // [4, 5, 6], row stride 18
    Tensor q = part(0), k = part(1);
    REQUIRE_FALSE(q.is_contiguous());
    Tensor want = ops::mul_scalar(ops::matmul(ops::contiguous(q), ops::contiguous(k), true, false), 0.25);
    Tensor got = ops::matmul(q, k, true, false, 0.25);
    CHECK(got.shape() == Shape{4, 6, 6});
    CHECK(got.to_vector() == want.to_vector());  // the same GEMM on the same numbers
    // A batch of one, a single row, a broadcast (stride 0) batch and a transposed view.
    Tensor row = ops::narrow(randn({3, 8}, 12), 0, 1, 1);
    Tensor w = randn({8, 2}, 13);
    CHECK(ops::matmul(row, w).to_vector() == ops::matmul(ops::contiguous(row), w).to_vector());
    Tensor one = ops::narrow(qkv, 0, 2, 1);  // [1, 5, 3, 6]
    Tensor sq = ops::reshape(one, {1, 15, 6});
    CHECK(ops::matmul(sq, sq, false, true).to_vector() ==
          ops::matmul(ops::contiguous(sq), ops::contiguous(sq), false, true).to_vector());
    Tensor bcast = ops::expand(randn({1, 5, 6}, 14), {4, 5, 6});
    CHECK(ops::matmul(bcast, q, false, true).to_vector() ==
          ops::matmul(ops::contiguous(bcast), ops::contiguous(q), false, true).to_vector());
    Tensor t = ops::transpose(randn({6, 5}, 15), 0, 1);  // [5, 6], column-contiguous: copied
    Tensor w6 = randn({6, 2}, 16);
    CHECK(ops::matmul(t, w6).to_vector() == ops::matmul(ops::contiguous(t), w6).to_vector());
}

TEST_CASE("conv2d matches a direct convolution, bias-free, with stride, padding and groups") {
    Tensor x = randn({2, 4, 7, 6}, 3), w = randn({6, 2, 3, 3}, 4);
    Tensor y = ops::conv2d(x, w, 2, 1, 2);
    CHECK(y.shape() == Shape{2, 6, 4, 3});
    std::vector<double> xv = x.to_vector(), wv = w.to_vector(), yv = y.to_vector();
    for (int n = 0; n < 2; ++n)
        for (int k = 0; k < 6; ++k)
            for (int p = 0; p < 4; ++p)
                for (int q = 0; q < 3; ++q) {
                    double ref = 0;
                    int g = k / 3;
                    for (int c = 0; c < 2; ++c)
                        for (int r = 0; r < 3; ++r)
                            for (int s = 0; s < 3; ++s) {
                                int h = p * 2 - 1 + r, ww = q * 2 - 1 + s;
                                if (h < 0 || h >= 7 || ww < 0 || ww >= 6) continue;
                                ref += xv[((n * 4 + g * 2 + c) * 7 + h) * 6 + ww] * wv[((k * 2 + c) * 3 + r) * 3 + s];
                            }
                    CHECK(yv[((n * 6 + k) * 4 + p) * 3 + q] == doctest::Approx(ref).epsilon(1e-12));
                }
    CHECK_THROWS_WITH_AS(ops::conv2d(x, randn({6, 3, 3, 3}, 5), 1, 1, 2), doctest::Contains("do not match with groups 2"),
                         Error);
}

TEST_CASE("softmax along a non-last dim equals softmax of the transpose") {
    Tensor x = randn({3, 5, 2}, 6);
    Tensor y = ops::softmax(x, 1);
    std::vector<double> xv = x.to_vector(), yv = y.to_vector();
    for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 2; ++k) {
            double z = 0;
            for (int j = 0; j < 5; ++j) z += std::exp(xv[(i * 5 + j) * 2 + k]);
            for (int j = 0; j < 5; ++j)
                CHECK(yv[(i * 5 + j) * 2 + k] == doctest::Approx(std::exp(xv[(i * 5 + j) * 2 + k]) / z).epsilon(1e-12));
        }
    Tensor ly = ops::softmax(x, 1, true);
    CHECK(ly.to_vector()[3] == doctest::Approx(std::log(yv[3])).epsilon(1e-12));
}

TEST_CASE("group_norm normalises each group to zero mean and unit variance") {
    Tensor x = ops::add_scalar(ops::mul_scalar(randn({2, 8, 3, 3}, 7), 3.0), 5.0);
    ops::GroupNormOut o = ops::group_norm(x, Tensor(), Tensor(), 4, 1e-6);
    CHECK(o.mean.shape() == Shape{2, 4});
    std::vector<double> yv = o.y.to_vector();
    for (int grp = 0; grp < 8; ++grp) {
        double m = 0, v = 0;
        for (int i = 0; i < 18; ++i) m += yv[grp * 18 + i];
        m /= 18;
        for (int i = 0; i < 18; ++i) v += (yv[grp * 18 + i] - m) * (yv[grp * 18 + i] - m);
        CHECK(std::abs(m) < 1e-12);
        CHECK(v / 18 == doctest::Approx(1.0).epsilon(1e-5));
    }
    CHECK_THROWS_WITH_AS(ops::group_norm(x, Tensor(), Tensor(), 3, 1e-6), doctest::Contains("3 groups do not divide"),
                         Error);
}

TEST_CASE("cat, pad and where") {
    Tensor a = seq({2, 2}), b = ops::add_scalar(seq({2, 3}), 100);
    Tensor c = ops::cat({a, b}, 1);
    CHECK(c.shape() == Shape{2, 5});
    CHECK(c.to_vector() == std::vector<double>{0, 1, 100, 101, 102, 2, 3, 103, 104, 105});
    CHECK_THROWS_WITH_AS(ops::cat({a, b}, 0), doctest::Contains("does not match"), Error);
    Tensor p = ops::pad(seq({1, 2}), {{0, 0}, {1, 2}}, -1);
    CHECK(p.to_vector() == std::vector<double>{-1, 0, 1, -1, -1});
    Tensor cond = ops::from_vector({1, 0, 1}, {3}, DType::F64);
    CHECK(ops::where(cond, seq({3}), ops::full({}, 9, DType::F64)).to_vector() == std::vector<double>{0, 9, 2});
}

TEST_CASE("in-place ops need contiguous tensors and matching broadcast") {
    Tensor a = seq({2, 3});
    ops::binary_(BinaryOp::AddScaled, a, ops::ones({3}, DType::F64), 2.0);
    CHECK(a.to_vector() == std::vector<double>{2, 3, 4, 5, 6, 7});
    Tensor t = ops::transpose(a, 0, 1);
    CHECK_THROWS_WITH_AS(ops::unary_(UnaryOp::Neg, t), doctest::Contains("contiguous"), Error);
    CHECK_THROWS_WITH_AS(ops::binary_(BinaryOp::Add, a, seq({2, 1, 3})), doctest::Contains("does not broadcast"), Error);
}

TEST_CASE("the fused Adam step equals the elementwise ops it replaces, bit for bit in float") {
    // The composed form nn::Adam used before (scale, scaled add, square, sqrt, divide), one op at a
    // time in float: the fused kernel rounds the same operations in the same order.
    const ops::AdamStep step{3e-3, 0.9, 0.999, 1e-8, 7};
    Tensor p = randn({3, 50}, 1, DType::F32), g = ops::mul_scalar(randn({3, 50}, 2, DType::F32), 1e-3);
    Tensor m = ops::mul_scalar(randn({3, 50}, 3, DType::F32), 1e-3);
    Tensor v = ops::unary(UnaryOp::Square, ops::mul_scalar(randn({3, 50}, 4, DType::F32), 1e-3));
    Tensor p2 = ops::clone(p), m2 = ops::clone(m), v2 = ops::clone(v);
    ops::adam_update_(p, g, m, v, step);

    const double bias1 = 1 - std::pow(step.beta1, 7.0), bias2 = 1 - std::pow(step.beta2, 7.0);
    ops::unary_(UnaryOp::MulScalar, m2, step.beta1);
    ops::binary_(BinaryOp::AddScaled, m2, g, 1 - step.beta1);
    ops::unary_(UnaryOp::MulScalar, v2, step.beta2);
    ops::binary_(BinaryOp::AddScaled, v2, ops::unary(UnaryOp::Square, g), 1 - step.beta2);
    Tensor denom = ops::unary(UnaryOp::MulScalar, v2, 1 / bias2);
    ops::unary_(UnaryOp::Sqrt, denom);
    ops::unary_(UnaryOp::AddScalar, denom, step.eps);
    ops::binary_(BinaryOp::AddScaled, p2, ops::div(m2, denom), -step.lr / bias1);
    CHECK(p.to_vector() == p2.to_vector());
    CHECK(m.to_vector() == m2.to_vector());
    CHECK(v.to_vector() == v2.to_vector());

    // The EMA: net + beta (ema - net), as three ops before.
    Tensor ema = randn({3, 50}, 5, DType::F32), ema2 = ops::clone(ema);
    ops::ema_update_(ema, p, 0.97);
    ops::binary_(BinaryOp::Sub, ema2, p);
    ops::unary_(UnaryOp::MulScalar, ema2, 0.97);
    ops::binary_(BinaryOp::Add, ema2, p);
    CHECK(ema.to_vector() == ema2.to_vector());
}

TEST_CASE("the fused optimiser ops name a mismatched operand") {
    Tensor p = ops::zeros({4}), g = ops::zeros({5}), m = ops::zeros({4}), v = ops::zeros({4});
    CHECK_THROWS_WITH_AS(ops::adam_update_(p, g, m, v, ops::AdamStep{1e-3, 0.9, 0.999, 1e-8, 1}),
                         doctest::Contains("gradient"), Error);
    CHECK_THROWS_WITH_AS(ops::adam_update_(p, m, m, v, ops::AdamStep{1e-3, 0.9, 0.999, 1e-8, 0}),
                         doctest::Contains("step number 0"), Error);
    Tensor d = ops::zeros({4}, DType::F64);
    CHECK_THROWS_AS(ops::ema_update_(p, d, 0.5), Error);
}
