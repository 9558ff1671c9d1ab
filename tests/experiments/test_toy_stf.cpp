// The Gaussian mixture's exact denoiser against Monte Carlo, its limits in sigma, the STF target's bias
// falling with the reference size, and a few steps of ./toy_stf's training end to end.
#include <doctest/doctest.h>

#include <cmath>

#include "experiments/gaussian_mixture.h"
#include "experiments/toy_stf.h"

using namespace stf;
using experiments::GaussianMixture;

TEST_CASE("gaussian mixture: exact denoiser matches a Monte Carlo posterior mean") {
    GaussianMixture mix = GaussianMixture::make(2, 3, 1.0, 0.2, 0);
    Generator gen(7);
    const int64_t M = 200000, d = 2;
    std::vector<double> xs = mix.sample(M, gen).to_vector();
    // Points near a mode, between modes and far away.
    std::vector<std::vector<double>> ys = {{0.9, 0.1}, {0.1, 0.4}, {-0.5, -0.3}, {1.5, 1.5}};
    int compared = 0;
    for (double sigma : {0.1, 0.3, 0.7, 2.0}) {
        for (const auto& y : ys) {
            std::vector<double> logw(M);
            double mx = -INFINITY;
            for (int64_t i = 0; i < M; ++i) {
                double dist = 0;
                for (int64_t k = 0; k < d; ++k) dist += (y[k] - xs[i * d + k]) * (y[k] - xs[i * d + k]);
                logw[i] = -dist / (2 * sigma * sigma);
                mx = std::max(mx, logw[i]);
            }
            double z = 0, z2 = 0;
            std::vector<double> m(d, 0.0);
            for (int64_t i = 0; i < M; ++i) {
                double w = std::exp(logw[i] - mx);
                z += w;
                z2 += w * w;
                for (int64_t k = 0; k < d; ++k) m[k] += w * xs[i * d + k];
            }
            double ess = z * z / z2;
            if (ess < 200) continue;  // too few samples near y (small sigma far from the data) to compare
            ++compared;
            std::vector<double> exact = mix.denoise(ops::from_vector(y, {1, d}, DType::F64), {sigma}).to_vector();
            for (int64_t k = 0; k < d; ++k) {
                // Monte Carlo error ~ spread / sqrt(ess); the posterior spread is below 1.5 here.
                double tol = 6 * 1.5 / std::sqrt(ess);
                CHECK(std::abs(m[k] / z - exact[k]) < tol);
            }
        }
    }
    CHECK(compared >= 13);
}

TEST_CASE("gaussian mixture: denoiser limits, moments and posterior sampling") {
    GaussianMixture mix = GaussianMixture::make(8, 4, 1.0, 0.1, 0);
    const int64_t d = 8;
    // sigma -> 0 near a mode: D(y) ~ y.
    std::vector<double> y(d, 0.0);
    y[0] = 1.02;
    y[3] = -0.03;
    std::vector<double> dn = mix.denoise(ops::from_vector(y, {1, d}, DType::F64), {1e-4}).to_vector();
    for (int64_t k = 0; k < d; ++k) CHECK(std::abs(dn[k] - y[k]) < 1e-5);
    // sigma -> infinity: D(y) -> the mixture mean.
    std::vector<double> far = mix.denoise(ops::from_vector(y, {1, d}, DType::F64), {1e4}).to_vector();
    std::vector<double> m = mix.mean();
    for (int64_t k = 0; k < d; ++k) CHECK(std::abs(far[k] - m[k]) < 1e-4);
    // Sample moments against mean() and data_std().
    Generator gen(3);
    const int64_t N = 100000;
    std::vector<double> xs = mix.sample(N, gen).to_vector(), sm(d, 0.0);
    for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < d; ++k) sm[k] += xs[i * d + k] / N;
    double var = 0;
    for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < d; ++k) var += (xs[i * d + k] - sm[k]) * (xs[i * d + k] - sm[k]);
    for (int64_t k = 0; k < d; ++k) CHECK(std::abs(sm[k] - m[k]) < 0.01);
    CHECK(std::sqrt(var / (N * d)) == doctest::Approx(mix.data_std()).epsilon(0.01));
    // The mean of posterior draws is the denoiser.
    const int64_t B = 20000;
    Tensor yb = ops::from_vector(std::vector<double>(B * d, 0.3), {B, d}, DType::F64);
    std::vector<double> sig(B, 0.5);
    std::vector<double> post = mix.sample_posterior(yb, sig, gen).to_vector();
    std::vector<double> ex = mix.denoise(ops::narrow(yb, 0, 0, 1), {0.5}).to_vector(), pm(d, 0.0);
    for (int64_t i = 0; i < B; ++i)
        for (int64_t k = 0; k < d; ++k) pm[k] += post[i * d + k] / B;
    for (int64_t k = 0; k < d; ++k) CHECK(std::abs(pm[k] - ex[k]) < 0.02);
}

TEST_CASE("toy: STF target statistics against the reference size") {
    GaussianMixture mix = GaussianMixture::make(8, 4, 1.0, 0.1, 0);
    std::vector<double> excl_bias, var;
    for (int64_t n : {2, 16, 256}) {
        Generator g1(11), g2(12);
        auto own = experiments::toy_target_stats(mix, 0.2, 1.0, n, true, 32, 200, g1);
        auto excl = experiments::toy_target_stats(mix, 0.2, 1.0, n, false, 32, 200, g2);
        MESSAGE("sigma in [0.2, 1), n " << n << ": bias^2/d with own image " << own.bias2 << ", without "
                                        << excl.bias2 << "; variance/d " << own.variance);
        // With the sample's own image in the reference batch (as in training) E[target | y] = E[x | y]
        // exactly, for every n (exchangeability); the estimate is noise around 0.
        CHECK(std::abs(own.bias2) < 0.02 * own.variance + 1e-6);
        excl_bias.push_back(excl.bias2);
        var.push_back(own.variance);
    }
    // Without it, the self-normalised estimate's bias falls with n; the variance falls with n either way.
    CHECK(excl_bias[0] > 3 * excl_bias[1]);
    CHECK(excl_bias[1] > 3 * excl_bias[2]);
    CHECK(var[0] > 2 * var[1]);
    CHECK(var[1] > 2 * var[2]);
    // At tiny sigma the target is the sample's own image: no bias, and n = 1 (DSM) has the posterior's variance.
    Generator gen(13);
    auto tiny = experiments::toy_target_stats(mix, 1e-3, 2e-3, 16, true, 16, 50, gen);
    CHECK(std::abs(tiny.bias2) < 1e-7);
    CHECK(tiny.variance < 4e-6);
}

TEST_CASE("toy: a few training steps of DSM and STF run and reduce the denoiser error") {
    GaussianMixture mix = GaussianMixture::make(2, 3, 1.0, 0.1, 0);
    for (int64_t rbatch : {0, 64}) {
        experiments::ToyTrainOptions o;
        o.steps = 150;
        o.batch = 32;
        o.rbatch = rbatch;
        o.hidden = 32;
        o.depth = 2;
        o.lr = 3e-3;
        experiments::ToyTrainOptions o0 = o;
        o0.steps = 0;
        auto untrained = experiments::train_toy(mix, o0);
        auto trained = experiments::train_toy(mix, o);
        REQUIRE(trained.losses.size() == 150);
        for (double l : trained.losses) REQUIRE(std::isfinite(l));
        Generator g1(5), g2(5);
        double before = experiments::toy_denoiser_error(*untrained.net, mix, 0.05, 5, 2000, g1);
        double after = experiments::toy_denoiser_error(*trained.net, mix, 0.05, 5, 2000, g2);
        MESSAGE("rbatch " << rbatch << ": denoiser error " << before << " -> " << after);
        CHECK(after < 0.5 * before);
        Generator g3(6);
        double gv = experiments::toy_grad_variance(*trained.net, mix, 0.1, 1, 32, rbatch, 4, g3);
        CHECK(std::isfinite(gv));
        CHECK(gv > 0);
    }
}
