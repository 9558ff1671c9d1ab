// The STF target against a direct float64 evaluation of its definition, and its limits in sigma.
#include <doctest/doctest.h>

#include <cmath>

#include "diffusion/stf_target.h"

using namespace stf;
using diffusion::stf_target;

namespace {

// Direct evaluation: weights from explicit distances, softmax with the row max subtracted, in double.
void reference(const std::vector<double>& y, const std::vector<double>& sigma, const std::vector<double>& x, int64_t b,
               int64_t n, int64_t d, std::vector<double>& target, std::vector<double>& ess) {
    target.assign(b * d, 0);
    ess.assign(b, 0);
    for (int64_t i = 0; i < b; ++i) {
        std::vector<double> logit(n);
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
            double dist = 0;
            for (int64_t k = 0; k < d; ++k) dist += (y[i * d + k] - x[j * d + k]) * (y[i * d + k] - x[j * d + k]);
            logit[j] = -dist / (2 * sigma[i] * sigma[i]);
            mx = std::max(mx, logit[j]);
        }
        double z = 0, z2 = 0;
        for (int64_t j = 0; j < n; ++j) z += std::exp(logit[j] - mx);
        for (int64_t j = 0; j < n; ++j) {
            double w = std::exp(logit[j] - mx) / z;
            z2 += w * w;
            for (int64_t k = 0; k < d; ++k) target[i * d + k] += w * x[j * d + k];
        }
        ess[i] = 1 / z2;
    }
}

struct Case {
    int64_t b, n, d;
};

}  // namespace

TEST_CASE("STF target matches a direct float64 evaluation across sigma, chunk sizes and dtypes") {
    for (Case c : {Case{3, 5, 7}, Case{8, 300, 48}, Case{4, 4096, 12}}) {
        Generator gen(c.n);
        Tensor x = ops::rand({c.n, c.d}, gen, DType::F64);
        ops::unary_(UnaryOp::MulScalar, x, 2.0);
        ops::unary_(UnaryOp::AddScalar, x, -1.0);  // images in [-1, 1]
        // Noisy samples around the first b reference images, as in training (the batch leads the reference).
        std::vector<double> sig{0.002, 0.05, 0.3, 1.0, 2.5, 10.0, 80.0, 0.5};
        sig.resize(c.b);
        Tensor sigma = ops::from_vector(sig, {c.b}, DType::F64);
        Tensor noise = ops::mul(ops::randn({c.b, c.d}, gen, DType::F64), ops::reshape(sigma, {c.b, 1}));
        Tensor y = ops::add(ops::narrow(x, 0, 0, c.b), noise);
        std::vector<double> want, want_ess;
        reference(y.to_vector(), sig, x.to_vector(), c.b, c.n, c.d, want, want_ess);
        for (int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{8192}}) {
            CAPTURE(c.n);
            CAPTURE(chunk);
            auto got = stf_target(y, sigma, x, chunk);
            std::vector<double> t = got.target.to_vector(), e = got.ess.to_vector();
            for (size_t i = 0; i < t.size(); ++i) CHECK(t[i] == doctest::Approx(want[i]).epsilon(1e-9).scale(1));
            for (size_t i = 0; i < e.size(); ++i) CHECK(e[i] == doctest::Approx(want_ess[i]).epsilon(1e-9));
        }
        // float32: the same within float rounding
        auto got32 = stf_target(ops::to(y, DType::F32), ops::to(sigma, DType::F32), ops::to(x, DType::F32), 100);
        std::vector<double> t32 = got32.target.to_vector();
        double num = 0, den = 0;
        for (size_t i = 0; i < t32.size(); ++i) num += (t32[i] - want[i]) * (t32[i] - want[i]), den += want[i] * want[i];
        CHECK(std::sqrt(num / den) < 1e-5);
    }
}

TEST_CASE("at tiny sigma the target is the sample's own clean image; at huge sigma the reference mean") {
    Generator gen(9);
    int64_t n = 64, d = 3 * 8 * 8;
    Tensor x = ops::add_scalar(ops::mul_scalar(ops::rand({n, 3, 8, 8}, gen), 2.0), -1.0);
    Tensor batch = ops::narrow(x, 0, 0, 4);
    Tensor small = ops::full({4}, 0.002);
    Tensor y = ops::add(batch, ops::mul_scalar(ops::randn({4, 3, 8, 8}, gen), 0.002));
    auto near = stf_target(y, small, x);
    std::vector<double> t = near.target.to_vector(), own = ops::contiguous(batch).to_vector();
    for (size_t i = 0; i < t.size(); ++i) CHECK(t[i] == doctest::Approx(own[i]).epsilon(1e-6));
    for (double e : near.ess.to_vector()) CHECK(e == doctest::Approx(1.0));

    Tensor huge = ops::full({4}, 1e4);
    auto far = stf_target(ops::add(batch, ops::mul_scalar(ops::randn({4, 3, 8, 8}, gen), 1e4)), huge, x);
    std::vector<double> mean = ops::mean(ops::reshape(x, {n, d}), {0}).to_vector(), tf = far.target.to_vector();
    for (int64_t i = 0; i < 4; ++i)
        for (int64_t k = 0; k < d; ++k) CHECK(tf[i * d + k] == doctest::Approx(mean[k]).epsilon(1e-3).scale(1));
    for (double e : far.ess.to_vector()) CHECK(e > n * 0.99);
}

TEST_CASE("bad input names the shapes") {
    Tensor y = ops::zeros({2, 3}), x = ops::zeros({5, 4});
    CHECK_THROWS_WITH_AS(stf_target(y, ops::ones({2}), x), doctest::Contains("does not hold images shaped like"), Error);
    CHECK_THROWS_WITH_AS(stf_target(y, ops::ones({3}), ops::zeros({5, 3})), doctest::Contains("3 sigmas for 2 samples"),
                         Error);
}

TEST_CASE("grouped STF target: each sample's softmax runs over its own block only, rows back in order") {
    // 5 samples in two classes: rows {0, 3, 4} use references 0..5, rows {1, 2} references 6..9.
    const int64_t b = 5, n = 10, d = 6;
    Generator gen(11);
    Tensor x = ops::rand({n, d}, gen, DType::F64);
    Tensor y = ops::randn({b, d}, gen, DType::F64);
    std::vector<double> sig{0.3, 2.0, 0.7, 15.0, 1.2};
    Tensor sigma = ops::from_vector(sig, {b}, DType::F64);
    std::vector<diffusion::ReferenceGroup> groups{{{0, 3, 4}, 0, 6}, {{1, 2}, 6, 4}};
    diffusion::StfTarget got = diffusion::stf_target_grouped(y, sigma, x, groups, /*chunk=*/3);
    REQUIRE(got.target.shape() == (Shape{b, d}));
    std::vector<double> yv = y.to_vector(), xv = x.to_vector(), t = got.target.to_vector(), e = got.ess.to_vector();
    for (const auto& g : groups) {
        std::vector<double> gy, gs, gx(xv.begin() + g.start * d, xv.begin() + (g.start + g.length) * d), want, want_ess;
        for (int64_t r : g.rows) {
            gy.insert(gy.end(), yv.begin() + r * d, yv.begin() + (r + 1) * d);
            gs.push_back(sig[r]);
        }
        reference(gy, gs, gx, static_cast<int64_t>(g.rows.size()), g.length, d, want, want_ess);
        for (size_t k = 0; k < g.rows.size(); ++k) {
            const int64_t r = g.rows[k];
            CHECK(e[r] == doctest::Approx(want_ess[k]).epsilon(1e-10));
            for (int64_t j = 0; j < d; ++j) CHECK(t[r * d + j] == doctest::Approx(want[k * d + j]).epsilon(1e-10));
        }
    }
    // At small sigma a sample next to a reference of the other class still takes nothing from it.
    Tensor near = ops::contiguous(ops::narrow(x, 0, 7, 1));
    diffusion::StfTarget own = diffusion::stf_target_grouped(near, ops::full({1}, 1e-3, DType::F64), x, {{{0}, 0, 6}});
    std::vector<double> nv = own.target.to_vector(), x7 = near.to_vector();
    double dist = 0;
    for (int64_t j = 0; j < d; ++j) dist += std::abs(nv[j] - x7[j]);
    CHECK(dist > 0.1);

    CHECK_THROWS_WITH_AS(diffusion::stf_target_grouped(y, sigma, x, {{{0, 1, 2, 3}, 0, 6}}),
                         doctest::Contains("sample 4 is in no group"), Error);
    CHECK_THROWS_WITH_AS(diffusion::stf_target_grouped(y, sigma, x, {{{0, 1, 2}, 0, 6}, {{2, 3, 4}, 6, 4}}),
                         doctest::Contains("in two groups"), Error);
    CHECK_THROWS_WITH_AS(diffusion::stf_target_grouped(y, sigma, x, {{{0, 1, 2}, 0, 6}, {{3, 4}, 8, 4}}),
                         doctest::Contains("does not fit a reference batch of 10"), Error);
}
