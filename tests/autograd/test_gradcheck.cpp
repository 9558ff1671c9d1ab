// Every differentiable op, checked against central differences in float64.
#include <doctest/doctest.h>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"

using namespace stf;
using Inputs = std::vector<Tensor>;

namespace {
Tensor randn(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g, DType::F64);
}
Tensor positive(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::add_scalar(ops::rand(shape, g, DType::F64), 0.5);
}
void check(const char* name, const std::function<Tensor(const Inputs&)>& f, const Inputs& inputs, double atol = 1e-6,
           double rtol = 1e-5) {
    CAPTURE(name);
    GradcheckResult r = gradcheck(f, inputs, 1e-6, atol, rtol);
    INFO(r.report);
    CHECK(r.ok);
}
}  // namespace

TEST_CASE("gradcheck catches a wrong gradient") {
    // A function whose recorded backward is deliberately wrong (twice the true one) must fail.
    auto wrong = [](const Inputs& x) {
        Tensor y = ops::mul_scalar(x[0], 3.0);
        return record("wrong", y, {x[0]}, [](const Tensor& g) { return std::vector<Tensor>{ops::mul_scalar(g, 6.0)}; });
    };
    CHECK_FALSE(gradcheck(wrong, {randn({3}, 1)}).ok);
}

TEST_CASE("elementwise binary ops, with broadcasting") {
    Tensor a = randn({2, 3, 4}, 1), b = randn({3, 1}, 2);
    check("add", [](const Inputs& x) { return add(x[0], x[1]); }, {a, b});
    check("sub", [](const Inputs& x) { return sub(x[0], x[1]); }, {a, b});
    check("mul", [](const Inputs& x) { return mul(x[0], x[1]); }, {a, b});
    check("div", [](const Inputs& x) { return div(x[0], x[1]); }, {a, positive({3, 1}, 3)});
    check("maximum", [](const Inputs& x) { return maximum(x[0], x[1]); }, {a, b});
    check("minimum", [](const Inputs& x) { return minimum(x[0], x[1]); }, {a, b});
    check("where", [](const Inputs& x) { return where(ops::binary(BinaryOp::Gt, x[0], x[1]), x[0] * 2.0, x[1]); },
          {a, b});
}

TEST_CASE("elementwise unary and scalar ops") {
    Tensor x = randn({3, 5}, 4), p = positive({3, 5}, 5);
    check("neg", [](const Inputs& v) { return neg(v[0]); }, {x});
    check("exp", [](const Inputs& v) { return exp(v[0]); }, {x});
    check("log", [](const Inputs& v) { return log(v[0]); }, {p});
    check("sqrt", [](const Inputs& v) { return sqrt(v[0]); }, {p});
    check("rsqrt", [](const Inputs& v) { return rsqrt(v[0]); }, {p});
    check("square", [](const Inputs& v) { return square(v[0]); }, {x});
    check("abs", [](const Inputs& v) { return abs(v[0]); }, {x});
    check("pow", [](const Inputs& v) { return pow(v[0], 2.5); }, {p});
    check("silu", [](const Inputs& v) { return silu(v[0]); }, {x});
    check("sigmoid", [](const Inputs& v) { return sigmoid(v[0]); }, {x});
    check("sin", [](const Inputs& v) { return sin(v[0]); }, {x});
    check("cos", [](const Inputs& v) { return cos(v[0]); }, {x});
    check("clamp", [](const Inputs& v) { return clamp(v[0], -0.5, 0.7); }, {x});
    check("scalars", [](const Inputs& v) { return (2.0 - v[0]) * 3.0 + 1.5 / v[1] - v[0] / 4.0 + 1.0; }, {x, p});
}

TEST_CASE("views and joins") {
    Tensor x = randn({2, 3, 4}, 6);
    check("reshape", [](const Inputs& v) { return reshape(v[0], {4, -1}) * reshape(v[0], {4, 6}); }, {x});
    check("flatten", [](const Inputs& v) { return flatten(v[0], 1); }, {x});
    check("narrow", [](const Inputs& v) { return narrow(v[0], 2, 1, 2); }, {x});
    check("permute", [](const Inputs& v) { return permute(v[0], {2, 0, 1}); }, {x});
    check("transpose", [](const Inputs& v) { return contiguous(transpose(v[0], 0, 2)); }, {x});
    check("expand", [](const Inputs& v) { return expand(narrow(v[0], 1, 0, 1), {5, 2, 3, 4}); }, {x});
    check("unsqueeze/squeeze", [](const Inputs& v) { return squeeze(unsqueeze(v[0], 1), 1) * 2.0; }, {x});
    check("cat", [](const Inputs& v) { return cat({v[0], v[1] * 2.0}, 1); }, {x, randn({2, 2, 4}, 7)});
    check("split", [](const Inputs& v) {
        std::vector<Tensor> parts = split(v[0], {1, 3}, 2);
        return parts[0] * parts[1];
    }, {x});
    check("pad", [](const Inputs& v) { return pad(v[0], {{0, 0}, {1, 0}, {2, 1}}, 0.5); }, {x});
}

TEST_CASE("reductions") {
    Tensor x = randn({3, 4, 5}, 8);
    check("sum all", [](const Inputs& v) { return sum(v[0]); }, {x});
    check("sum dims", [](const Inputs& v) { return sum(v[0], {0, 2}); }, {x});
    check("sum keepdim", [](const Inputs& v) { return sum(v[0], {1}, true) * v[0]; }, {x});
    check("mean", [](const Inputs& v) { return mean(v[0], {2}); }, {x});
    check("mean all", [](const Inputs& v) { return mean(v[0]); }, {x});
    check("max", [](const Inputs& v) { return max(v[0], {1}); }, {x});
}

TEST_CASE("matmul and linear, all transposes, batched") {
    Tensor a = randn({4, 3}, 9), b = randn({3, 5}, 10), at = randn({3, 4}, 11), bt = randn({5, 3}, 12);
    check("matmul", [](const Inputs& v) { return matmul(v[0], v[1]); }, {a, b});
    check("matmul ta", [](const Inputs& v) { return matmul(v[0], v[1], true, false); }, {at, b});
    check("matmul tb", [](const Inputs& v) { return matmul(v[0], v[1], false, true); }, {a, bt});
    check("matmul ta tb", [](const Inputs& v) { return matmul(v[0], v[1], true, true); }, {at, bt});
    check("bmm", [](const Inputs& v) { return matmul(v[0], v[1], false, true); }, {randn({2, 4, 3}, 13), randn({2, 5, 3}, 14)});
    check("linear", [](const Inputs& v) { return linear(v[0], v[1], v[2]); }, {randn({2, 3}, 15), bt, randn({5}, 16)});
}

TEST_CASE("self_attention: gradients, and the same function as EDM's composition of ops") {
    check("self_attention 1 head", [](const Inputs& v) { return self_attention(v[0], 1); }, {randn({2, 6, 2, 3}, 101)});
    check("self_attention 2 heads", [](const Inputs& v) { return self_attention(v[0], 2); }, {randn({1, 12, 3, 2}, 102)});
    // EDM: qkv reshaped to (n*heads, ch, 3, hw); w = softmax(q^T (k / sqrt(ch))); a = v w^T.
    Tensor qkv = randn({2, 12, 2, 2}, 103).set_requires_grad(), wgt = randn({2, 4, 2, 2}, 104);
    Tensor fused = self_attention(qkv, 2);
    backward(sum(mul(fused, wgt)));
    std::vector<double> fused_grad = qkv.grad().to_vector();
    qkv.set_grad(Tensor());
    Tensor r = reshape(qkv, {4, 2, 3, 4});
    auto part = [&](int64_t i) { return reshape(narrow(r, 2, i, 1), {4, 2, 4}); };
    Tensor w = softmax(matmul(part(0), mul(part(1), 1 / std::sqrt(2.0)), true, false), 2);
    Tensor plain = reshape(matmul(part(2), w, false, true), {2, 4, 2, 2});
    backward(sum(mul(plain, wgt)));
    std::vector<double> f = fused.to_vector(), p = plain.to_vector(), pg = qkv.grad().to_vector();
    for (size_t i = 0; i < f.size(); ++i) CHECK(f[i] == doctest::Approx(p[i]).epsilon(1e-12));
    for (size_t i = 0; i < pg.size(); ++i) CHECK(fused_grad[i] == doctest::Approx(pg[i]).epsilon(1e-12));
    CHECK_THROWS_WITH_AS(self_attention(randn({2, 12, 2, 2}, 105), 3), doctest::Contains("divisible by 3 heads"),
                         std::exception);
}

TEST_CASE("convolutions: stride, padding, groups, bias, transposed") {
    Tensor x = randn({2, 4, 5, 6}, 17);
    check("conv2d 3x3 pad 1", [](const Inputs& v) { return conv2d(v[0], v[1], v[2], 1, 1); },
          {x, randn({3, 4, 3, 3}, 18), randn({3}, 19)});
    check("conv2d stride 2 groups 2", [](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), 2, 1, 2); },
          {x, randn({6, 2, 3, 3}, 20)});
    check("conv2d depthwise 2x2 stride 2", [](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), 2, 0, 4); },
          {randn({1, 4, 4, 6}, 21), randn({4, 1, 2, 2}, 22)});
    check("conv_transpose2d", [](const Inputs& v) { return conv_transpose2d(v[0], v[1], v[2], 2, 1, 1); },
          {randn({2, 3, 3, 4}, 23), randn({3, 5, 4, 4}, 24), randn({5}, 25)});
    check("conv_transpose2d depthwise", [](const Inputs& v) { return conv_transpose2d(v[0], v[1], Tensor(), 2, 0, 3); },
          {randn({1, 3, 3, 3}, 26), randn({3, 1, 2, 2}, 27)});
}

TEST_CASE("conv_transpose2d is the adjoint of conv2d") {
    Tensor x = randn({2, 3, 8, 8}, 28), w = randn({5, 3, 4, 4}, 29), y = randn({2, 5, 4, 4}, 30);
    double lhs = ops::sum(ops::mul(ops::conv2d(x, w, 2, 1, 1), y)).item();
    double rhs = ops::sum(ops::mul(x, conv_transpose2d(y, w, Tensor(), 2, 1, 1))).item();
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-12));
}

TEST_CASE("group norm, softmax, log-softmax, losses") {
    check("group_norm", [](const Inputs& v) { return group_norm(v[0], 2, v[1], v[2], 1e-5); },
          {randn({2, 4, 3, 3}, 31), randn({4}, 32), randn({4}, 33)});
    check("group_norm no affine", [](const Inputs& v) { return group_norm(v[0], 4, Tensor(), Tensor(), 1e-6); },
          {randn({2, 4, 2, 3}, 34)});
    check("group_norm_silu", [](const Inputs& v) { return group_norm_silu(v[0], 2, v[1], v[2], 1e-5); },
          {randn({2, 4, 3, 3}, 61), randn({4}, 62), randn({4}, 63)});
    {
        // The same function as silu(group_norm(x)), value and gradients.
        Tensor x = randn({2, 4, 3, 3}, 64).set_requires_grad(), gamma = randn({4}, 65).set_requires_grad();
        Tensor beta = randn({4}, 66).set_requires_grad(), w = randn({2, 4, 3, 3}, 67);
        Tensor fused = group_norm_silu(x, 2, gamma, beta, 1e-5);
        backward(sum(mul(fused, w)));
        std::vector<double> fx = x.grad().to_vector(), fg = gamma.grad().to_vector(), fb = beta.grad().to_vector();
        x.set_grad(Tensor()), gamma.set_grad(Tensor()), beta.set_grad(Tensor());
        Tensor plain = silu(group_norm(x, 2, gamma, beta, 1e-5));
        backward(sum(mul(plain, w)));
        CHECK(fused.to_vector() == plain.to_vector());
        CHECK(fx == x.grad().to_vector());
        CHECK(fg == gamma.grad().to_vector());
        CHECK(fb == beta.grad().to_vector());
    }
    check("group_norm_silu with offset", [](const Inputs& v) { return group_norm_silu(v[0], 2, v[1], v[2], 1e-5, v[3]); },
          {randn({2, 4, 3, 3}, 68), randn({4}, 69), randn({4}, 70), randn({2, 4}, 71)});
    {
        // The same function as silu(group_norm(x + offset[:, :, None, None])), value and gradients.
        Tensor x = randn({2, 4, 3, 3}, 72).set_requires_grad(), offset = randn({2, 4}, 73).set_requires_grad();
        Tensor gamma = randn({4}, 74), beta = randn({4}, 75), w = randn({2, 4, 3, 3}, 76);
        Tensor fused = group_norm_silu(x, 2, gamma, beta, 1e-5, offset);
        backward(sum(mul(fused, w)));
        std::vector<double> fx = x.grad().to_vector(), fo = offset.grad().to_vector();
        x.set_grad(Tensor()), offset.set_grad(Tensor());
        Tensor plain = silu(group_norm(add(x, reshape(offset, {2, 4, 1, 1})), 2, gamma, beta, 1e-5));
        backward(sum(mul(plain, w)));
        auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
            REQUIRE(a.size() == b.size());
            for (size_t i = 0; i < a.size(); ++i)
                if (std::abs(a[i] - b[i]) > 1e-12 * (1 + std::abs(b[i]))) return false;
            return true;
        };
        CHECK(close(fused.to_vector(), plain.to_vector()));
        CHECK(close(fx, x.grad().to_vector()));
        CHECK(close(fo, offset.grad().to_vector()));
    }
    check("group_norm_silu_dropout (fixed mask)", [](const Inputs& v) {
        Generator g(11);  // the same mask for every evaluation
        return group_norm_silu_dropout(v[0], 2, v[1], v[2], 1e-5, v[3], 0.4, true, g);
    }, {randn({2, 4, 3, 3}, 91), randn({4}, 92), randn({4}, 93), randn({2, 4}, 94)});
    for (bool keyed : {false, true}) {
        // The same values and gradients as dropout(group_norm_silu(...)) from the same generator state, bit
        // for bit in float, and the generator left in the same state.
        CAPTURE(keyed);
        Generator wg(95);
        Tensor x = ops::randn({3, 8, 4, 4}, wg).set_requires_grad(), offset = ops::randn({3, 8}, wg).set_requires_grad();
        Tensor gamma = ops::randn({8}, wg).set_requires_grad(), beta = ops::randn({8}, wg).set_requires_grad();
        Tensor w = ops::randn({3, 8, 4, 4}, wg);
        Generator g1(96), g2(96);
        if (keyed) g1.key_rows(4, 10), g2.key_rows(4, 10);
        Tensor fused = group_norm_silu_dropout(x, 2, gamma, beta, 1e-5, offset, 0.25, true, g1);
        backward(sum(mul(fused, w)));
        std::vector<std::vector<double>> fused_grads;
        for (Tensor* t : {&x, &offset, &gamma, &beta}) fused_grads.push_back(t->grad().to_vector()), t->set_grad(Tensor());
        Tensor plain = dropout(group_norm_silu(x, 2, gamma, beta, 1e-5, offset), 0.25, true, g2);
        backward(sum(mul(plain, w)));
        CHECK(fused.to_vector() == plain.to_vector());
        int i = 0;
        for (Tensor* t : {&x, &offset, &gamma, &beta}) CHECK(fused_grads[i++] == t->grad().to_vector());
        CHECK(ops::rand({5}, g1).to_vector() == ops::rand({5}, g2).to_vector());
        // Not training: no dropout and no draw.
        Generator g3(97), g4(97);
        CHECK(group_norm_silu_dropout(x, 2, gamma, beta, 1e-5, offset, 0.25, false, g3).to_vector() ==
              group_norm_silu(x, 2, gamma, beta, 1e-5, offset).to_vector());
        CHECK(ops::rand({5}, g3).to_vector() == ops::rand({5}, g4).to_vector());
    }
    check("scaled_residual", [](const Inputs& v) { return scaled_residual(v[0], v[1], v[2], 0.7); },
          {randn({2, 3, 2, 2}, 77), randn({2, 3, 2, 2}, 78), randn({3}, 79)});
    check("scaled_residual no bias", [](const Inputs& v) { return scaled_residual(v[0], v[1], Tensor(), -1.5); },
          {randn({3, 2, 5}, 80), randn({3, 2, 5}, 81)});
    check("scaled_residual one input twice", [](const Inputs& v) { return scaled_residual(v[0], v[0], v[1], 0.5); },
          {randn({2, 3, 2}, 82), randn({3}, 83)});
    CHECK_THROWS_WITH_AS(scaled_residual(randn({2, 3, 2}, 84), randn({2, 3, 3}, 85), Tensor(), 1.0),
                         doctest::Contains("one shape"), std::exception);
    CHECK_THROWS_WITH_AS(scaled_residual(randn({2, 3, 2}, 86), randn({2, 3, 2}, 87), randn({2}, 88), 1.0),
                         doctest::Contains("should be [3]"), std::exception);
    CHECK_THROWS_WITH_AS(group_norm_silu(randn({2, 4, 3}, 89), 2, Tensor(), Tensor(), 1e-5, randn({4}, 90)),
                         doctest::Contains("should be [2, 4]"), std::exception);
    check("softmax", [](const Inputs& v) { return softmax(v[0], 1); }, {randn({3, 4, 2}, 35)});
    check("log_softmax", [](const Inputs& v) { return log_softmax(v[0], -1); }, {randn({3, 6}, 36)});
    check("squared_error_per_sample", [](const Inputs& v) { return squared_error_per_sample(v[0], v[1]); },
          {randn({3, 2, 2}, 37), randn({3, 2, 2}, 38)});
    check("mse_loss", [](const Inputs& v) { return mse_loss(v[0], v[1]); }, {randn({4, 3}, 39), randn({4, 3}, 40)});
    Generator gen(41);
    Tensor mask_src = randn({5, 4}, 42);
    check("dropout (fixed mask)", [&](const Inputs& v) {
        Generator g(7);  // the same mask for every evaluation
        return dropout(v[0], 0.3, true, g);
    }, {mask_src});
}
