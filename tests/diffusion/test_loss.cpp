// Noise-level distributions, loss weights and preconditioning against their closed forms (EDM Table 1).
#include <doctest/doctest.h>

#include <cmath>

#include "diffusion/loss.h"

using namespace stf;
using namespace stf::diffusion;

namespace {
nn::SongUNetConfig tiny() {
    nn::SongUNetConfig c = nn::SongUNetConfig::ddpmpp();
    c.model_channels = 8;
    c.channel_mult = {1};
    c.num_blocks = 1;
    c.img_resolution = 4;
    c.attn_resolutions = {};
    c.dropout = 0;
    return c;
}
}  // namespace

TEST_CASE("EDM noise levels: ln sigma ~ N(-1.2, 1.2^2) and lambda = (s^2 + sd^2) / (s sd)^2") {
    LossOptions o;
    Generator gen(1);
    NoiseLevels nl = sample_noise_levels(o, 20000, gen, Device::cpu());
    std::vector<double> s = nl.sigma.to_vector(), w = nl.weight.to_vector();
    double m = 0, v = 0;
    for (double x : s) m += std::log(x);
    m /= s.size();
    for (double x : s) v += (std::log(x) - m) * (std::log(x) - m);
    v /= s.size();
    CHECK(m == doctest::Approx(-1.2).epsilon(0.02));
    CHECK(std::sqrt(v) == doctest::Approx(1.2).epsilon(0.02));
    for (size_t i = 0; i < s.size(); i += 997)
        CHECK(w[i] == doctest::Approx((s[i] * s[i] + 0.25) / (s[i] * s[i] * 0.25)).epsilon(1e-6));
}

TEST_CASE("VP and VE noise levels stay in their ranges with weight 1 / sigma^2") {
    LossOptions vp;
    vp.kind = "vp";
    Generator gen(2);
    NoiseLevels a = sample_noise_levels(vp, 5000, gen, Device::cpu());
    double lo = std::sqrt(std::exp(0.5 * 19.9 * 1e-10 + 0.1 * 1e-5) - 1), hi = std::sqrt(std::exp(0.5 * 19.9 + 0.1) - 1);
    std::vector<double> s = a.sigma.to_vector(), w = a.weight.to_vector();
    for (size_t i = 0; i < s.size(); ++i) {
        CHECK(s[i] >= lo * 0.999);
        CHECK(s[i] <= hi * 1.001);
        CHECK(w[i] == doctest::Approx(1 / (s[i] * s[i])).epsilon(1e-5));
    }
    LossOptions ve;
    ve.kind = "ve";
    NoiseLevels b = sample_noise_levels(ve, 5000, gen, Device::cpu());
    double mean_log = 0;
    for (double x : b.sigma.to_vector()) {
        CHECK(x >= 0.02 * 0.999);
        CHECK(x <= 100 * 1.001);
        mean_log += std::log(x) / 5000;
    }
    // ln sigma ~ U(ln 0.02, ln 100): mean 0.347, standard error of the mean 2.46 / sqrt(5000) = 0.035
    CHECK(std::abs(mean_log - 0.5 * (std::log(0.02) + std::log(100.0))) < 4 * 0.035);
    LossOptions bad;
    bad.kind = "xx";
    CHECK_THROWS_WITH_AS(sample_noise_levels(bad, 1, gen, Device::cpu()), doctest::Contains("unknown kind 'xx'"), Error);
}

TEST_CASE("preconditioning coefficients match EDM's Table 1") {
    Generator gen(3);
    Tensor sigma = ops::from_vector({0.002, 0.5, 3.0, 80.0}, {4});
    std::vector<double> s = sigma.to_vector();
    nn::EDMPrecond edm(tiny(), 0.5, gen);
    nn::PrecondCoefficients c = edm.coefficients(sigma);
    for (int i = 0; i < 4; ++i) {
        double t = s[i] * s[i] + 0.25;
        CHECK(c.c_skip.to_vector()[i] == doctest::Approx(0.25 / t).epsilon(1e-6));
        CHECK(c.c_out.to_vector()[i] == doctest::Approx(s[i] * 0.5 / std::sqrt(t)).epsilon(1e-6));
        CHECK(c.c_in.to_vector()[i] == doctest::Approx(1 / std::sqrt(t)).epsilon(1e-6));
        CHECK(c.c_noise.to_vector()[i] == doctest::Approx(std::log(s[i]) / 4).epsilon(1e-6));
    }
    nn::VPPrecond vp(tiny(), gen);
    nn::PrecondCoefficients v = vp.coefficients(sigma);
    for (int i = 0; i < 4; ++i) {
        CHECK(v.c_skip.to_vector()[i] == 1);
        CHECK(v.c_out.to_vector()[i] == doctest::Approx(-s[i]).epsilon(1e-6));
        CHECK(v.c_in.to_vector()[i] == doctest::Approx(1 / std::sqrt(s[i] * s[i] + 1)).epsilon(1e-6));
        // In float32, as EDM computes it, ln(1 + s^2) loses digits at tiny s: 2% there, 1e-5 elsewhere.
        CHECK(v.c_noise.to_vector()[i] == doctest::Approx(999 * vp.sigma_inv(s[i])).epsilon(s[i] < 0.01 ? 2e-2 : 1e-5));
        CHECK(vp.sigma(vp.sigma_inv(s[i])) == doctest::Approx(s[i]).epsilon(1e-9));
    }
    nn::VEPrecond ve(tiny(), gen);
    nn::PrecondCoefficients e = ve.coefficients(sigma);
    for (int i = 0; i < 4; ++i) {
        CHECK(e.c_out.to_vector()[i] == doctest::Approx(s[i]).epsilon(1e-6));
        CHECK(e.c_noise.to_vector()[i] == doctest::Approx(std::log(0.5 * s[i])).epsilon(1e-6));
    }
}

TEST_CASE("the loss is lambda(sigma) times the per-image squared error to the DSM or STF target") {
    Generator gen(4);
    nn::EDMPrecond net(tiny(), 0.5, gen);
    net.eval();
    Tensor images = ops::add_scalar(ops::mul_scalar(ops::rand({3, 3, 4, 4}, gen), 2.0), -1.0);
    LossOptions o;
    // Same generator state twice: the DSM loss recomputed by hand from the same sigma and noise.
    Generator g1(7), g2(7), d1(8), d2(8);
    LossTerms terms = diffusion_loss(net, images, Tensor(), Tensor(), o, g1, d1);
    NoiseLevels nl = sample_noise_levels(o, 3, g2, Device::cpu());
    Tensor noise = ops::mul(ops::randn(images.shape(), g2), ops::reshape(nl.sigma, {3, 1, 1, 1}));
    Tensor denoised = net.forward(ops::add(images, noise), nl.sigma, Tensor(), Tensor(), d2);
    std::vector<double> want = ops::mul(ops::sum(ops::unary(UnaryOp::Square, ops::sub(denoised, images)), {1, 2, 3}),
                                        nl.weight).to_vector();
    std::vector<double> got = terms.loss.to_vector();
    for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
    CHECK_FALSE(terms.ess.defined());
    // STF with a reference batch of only the training images themselves gives effective sample sizes in [1, 3].
    Generator g3(7), d3(8);
    LossTerms stf = diffusion_loss(net, images, Tensor(), images, o, g3, d3);
    for (double e : stf.ess.to_vector()) {
        CHECK(e >= 1 - 1e-6);
        CHECK(e <= 3 + 1e-6);
    }
    CHECK_THROWS_WITH_AS(diffusion_loss(net, images, Tensor(), ops::narrow(images, 0, 0, 2), o, g3, d3),
                         doctest::Contains("must hold at least the 3 training images"), Error);
}

TEST_CASE("the loss with a whole-dataset target: STF over the set equals STF over the dataset; kNN draws after the noise") {
    Generator gen(5);
    nn::EDMPrecond net(tiny(), 0.5, gen);
    net.eval();
    Tensor dataset = ops::add_scalar(ops::mul_scalar(ops::rand({20, 3, 4, 4}, gen), 2.0), -1.0);
    const std::vector<int64_t> rows{4, 17, 9};
    Tensor images = ops::cat({ops::narrow(dataset, 0, 4, 1), ops::narrow(dataset, 0, 17, 1), ops::narrow(dataset, 0, 9, 1)}, 0);
    LossOptions o;
    Generator g1(7), d1(8), g3(7), d3(8);
    // Augmentation off: the set is the dataset itself, so STF over it is STF with the dataset as the reference
    // batch (up to the order of the sums).
    LossTerms set = diffusion_loss(net, images, Tensor(), DatasetTarget{"stf", {images, dataset, rows}}, o, g1, d1);
    LossTerms alone = diffusion_loss(net, images, Tensor(), dataset, o, g3, d3);
    std::vector<double> a = set.loss.to_vector(), c = alone.loss.to_vector();
    for (int i = 0; i < 3; ++i) CHECK(a[i] == doctest::Approx(c[i]).epsilon(1e-5));
    CHECK(set.ess.defined());
    // kNN: the same noise levels as DSM (its draws come after the noise), a finite loss and ESS in [1, n].
    Generator g4(7), g5(7), d4(8), d5(8);
    LossTerms knn = diffusion_loss(net, images, Tensor(), DatasetTarget{"knn", {images, dataset, rows}, 5, 16}, o, g4, d4);
    LossTerms dsm = diffusion_loss(net, images, Tensor(), Tensor(), o, g5, d5);
    CHECK(knn.sigma.to_vector() == dsm.sigma.to_vector());
    for (double e : knn.ess.to_vector()) {
        CHECK(e >= 1 - 1e-6);
        CHECK(e <= 16 + 1e-6);
    }
    for (double l : knn.loss.to_vector()) CHECK(std::isfinite(l));
    CHECK_THROWS_WITH_AS(diffusion_loss(net, images, Tensor(), DatasetTarget{"stf", {ops::clone(images), dataset, rows}},
                                        o, g3, d3),
                         doctest::Contains("must lead with the training images"), Error);
    CHECK_THROWS_WITH_AS(diffusion_loss(net, images, Tensor(), DatasetTarget{"mean", {images, dataset, rows}}, o, g3, d3),
                         doctest::Contains("unknown dataset target 'mean'"), Error);
}
