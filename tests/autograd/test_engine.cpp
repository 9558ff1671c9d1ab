// The reverse-mode engine: accumulation, shared subgraphs, no-grad, detach, graph reuse, errors.
#include <doctest/doctest.h>

#include "autograd/functions.h"

using namespace stf;

namespace {
Tensor leaf(std::vector<double> v, Shape s) { return ops::from_vector(v, s, DType::F64).set_requires_grad(true); }
}  // namespace

TEST_CASE("gradients of a small expression") {
    Tensor x = leaf({1, 2, 3}, {3});
    Tensor y = sum(x * x * 3.0 + x);  // dy/dx = 6x + 1
    backward(y);
    CHECK(x.grad().to_vector() == std::vector<double>{7, 13, 19});
}

TEST_CASE("a tensor used twice gets the sum of both paths, and .grad accumulates over calls") {
    Tensor x = leaf({2}, {1});
    Tensor a = x * 3.0;
    Tensor y = a * a + a;  // 9x^2 + 3x -> 18x + 3 = 39
    backward(sum(y));
    CHECK(x.grad().item() == 39);
    backward(sum(x * 2.0));
    CHECK(x.grad().item() == 41);
}

TEST_CASE("a branch that gets no gradient still lets its inputs run") {
    Tensor x = leaf({1, 2}, {2});
    Tensor a = x * 2.0;
    Tensor unused = where(ops::zeros({2}, DType::F64), a, ops::zeros({2}, DType::F64));  // grad of a through it: 0
    Tensor y = sum(a) + sum(unused);
    backward(y);
    CHECK(x.grad().to_vector() == std::vector<double>{2, 2});
}

TEST_CASE("no-grad guard and detach cut the graph") {
    Tensor x = leaf({1, 2}, {2});
    {
        NoGradGuard guard;
        Tensor y = x * 2.0;
        CHECK_FALSE(y.requires_grad());
    }
    CHECK(grad_mode_enabled());
    Tensor d = detach(x);
    CHECK_FALSE(d.requires_grad());
    CHECK(d.storage() == x.storage());
    Tensor z = sum(d * x);
    backward(z);
    CHECK(x.grad().to_vector() == std::vector<double>{1, 2});  // only the non-detached factor
}

TEST_CASE("a leaf that goes through contiguous() or to() is not itself turned into a non-leaf") {
    Tensor x = leaf({1, 2}, {2});
    Tensor c = contiguous(x);
    CHECK(x.is_leaf());
    CHECK_FALSE(c.is_leaf());
    backward(sum(c * 5.0));
    CHECK(x.grad().to_vector() == std::vector<double>{5, 5});
    Tensor f = to(x, DType::F32);
    CHECK(f.dtype() == DType::F32);
    backward(sum(f));
    CHECK(x.grad().dtype() == DType::F64);
    CHECK(x.grad().to_vector() == std::vector<double>{6, 6});
}

TEST_CASE("errors: no grad to compute, non-scalar root, a graph used twice") {
    Tensor c = ops::ones({2}, DType::F64);
    CHECK_THROWS_WITH_AS(backward(sum(c)), doctest::Contains("does not require grad"), Error);
    Tensor x = leaf({1, 2}, {2});
    CHECK_THROWS_WITH_AS(backward(x * 2.0), doctest::Contains("seed gradient is needed"), Error);
    Tensor y = sum(x * x);
    backward(y);
    CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("already used"), Error);
}

TEST_CASE("dropout keeps the expectation and routes the gradient through the same mask") {
    Generator gen(3);
    Tensor x = ops::ones({10000}, DType::F64).set_requires_grad(true);
    Tensor y = dropout(x, 0.25, true, gen);
    std::vector<double> yv = y.to_vector();
    int zeros = 0;
    for (double v : yv) {
        CHECK((v == 0 || std::abs(v - 4.0 / 3.0) < 1e-12));
        zeros += v == 0;
    }
    CHECK(zeros > 2300);
    CHECK(zeros < 2700);
    backward(sum(y));
    CHECK(x.grad().to_vector() == yv);
    CHECK(dropout(x, 0.25, false, gen).same(x));
}
