// EDM's sampler: the time steps against the closed form, the call sequence, the float64 arithmetic
// against a scalar re-derivation, sampling analytic distributions (a Gaussian and a two-point mixture,
// whose denoisers are known exactly), batch-independence of the churn noise, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include <unistd.h>

#include <filesystem>

#include "autograd/node.h"
#include "diffusion/sampler.h"
#include "nn/network.h"
#include "tensor/ops.h"

using namespace stf;
using namespace stf::diffusion;

namespace {

Tensor latents_of(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g, DType::F64);
}

// Applies f(x, sigma) elementwise: every test denoiser here acts on each value independently, so it
// cannot couple the images of a batch.
template <class F> Denoiser elementwise(F f) {
    return [f](const Tensor& x, double sigma) {
        Tensor xc = ops::contiguous(x);
        Tensor out = ops::empty(x.shape(), DType::F64);
        const double* in = xc.data<double>();
        double* o = out.data<double>();
        for (int64_t i = 0; i < x.numel(); ++i) o[i] = f(in[i], sigma);
        return out;
    };
}

// Data x ~ N(mu, s^2): D(x; sigma) = E[x0 | x] = (s^2 x + sigma^2 mu) / (s^2 + sigma^2).
Denoiser gaussian_denoiser(double mu, double s) {
    return elementwise([mu, s](double x, double sigma) {
        return (s * s * x + sigma * sigma * mu) / (s * s + sigma * sigma);
    });
}

// Data x = +a with probability p, -a otherwise: the posterior odds of +a given x at noise sigma are
// exp(2 a x / sigma^2) p / (1 - p), so D(x; sigma) = a tanh(a x / sigma^2 + atanh(2p - 1)).
Denoiser two_point_denoiser(double a, double p) {
    const double bias = 0.5 * std::log(p / (1 - p));
    return elementwise([a, bias](double x, double sigma) { return a * std::tanh(a * x / (sigma * sigma) + bias); });
}

struct Moments {
    double mean, std;
};
Moments moments(const Tensor& t) {
    std::vector<double> v = t.to_vector();
    double m = 0;
    for (double x : v) m += x;
    m /= static_cast<double>(v.size());
    double var = 0;
    for (double x : v) var += (x - m) * (x - m);
    var /= static_cast<double>(v.size() - 1);
    return {m, std::sqrt(var)};
}

bool all_finite(const Tensor& t) {
    for (double x : t.to_vector())
        if (!std::isfinite(x)) return false;
    return true;
}

}  // namespace

TEST_CASE("edm_time_steps: EDM's rho-spaced discretisation, then t_N = 0") {
    SamplerOptions o;  // N = 18, sigma 0.002 .. 80, rho 7
    std::vector<double> t = edm_time_steps(o);
    REQUIRE(t.size() == 19);
    const double a = std::pow(80.0, 1 / 7.0), b = std::pow(0.002, 1 / 7.0);
    for (int i = 0; i < 18; ++i) CHECK(t[i] == doctest::Approx(std::pow(a + i / 17.0 * (b - a), 7.0)).epsilon(1e-14));
    CHECK(t[0] == doctest::Approx(80).epsilon(1e-13));
    CHECK(t[17] == doctest::Approx(0.002).epsilon(1e-13));
    CHECK(t[18] == 0);
    for (int i = 0; i < 18; ++i) CHECK(t[i] > t[i + 1]);
    // A few values of the 18-step schedule.
    CHECK(t[1] == doctest::Approx(57.5862).epsilon(1e-5));
    CHECK(t[9] == doctest::Approx(1.92334).epsilon(1e-5));
    CHECK(t[16] == doctest::Approx(0.00752802).epsilon(1e-5));

    SamplerOptions one;
    one.num_steps = 1;  // EDM's i / (N - 1) is 0 / 0 here: the single step starts at sigma_max
    std::vector<double> t1 = edm_time_steps(one);
    REQUIRE(t1.size() == 2);
    CHECK(t1[0] == doctest::Approx(80).epsilon(1e-13));
    CHECK(t1[1] == 0);

    SamplerOptions two;
    two.num_steps = 2;
    two.sigma_min = two.sigma_max = 3;  // a degenerate but valid range
    std::vector<double> t2 = edm_time_steps(two);
    CHECK(t2[0] == doctest::Approx(3).epsilon(1e-14));
    CHECK(t2[1] == doctest::Approx(3).epsilon(1e-14));
    CHECK(t2[2] == 0);

    CHECK(network_evaluations(o) == 35);
    SamplerOptions euler = o;
    euler.heun = false;
    CHECK(network_evaluations(euler) == 18);
    CHECK(network_evaluations(one) == 1);
}

TEST_CASE("edm_sample calls the denoiser 2N-1 (Heun) or N (Euler) times, at the expected sigmas") {
    Tensor z = latents_of({3, 2, 4, 4}, 1);
    for (bool heun : {true, false}) {
        for (int n : {1, 2, 18}) {
            CAPTURE(heun);
            CAPTURE(n);
            SamplerOptions o;
            o.num_steps = n;
            o.heun = heun;
            std::vector<double> sigmas;
            Denoiser base = gaussian_denoiser(0.1, 0.5);
            Denoiser rec = [&](const Tensor& x, double sigma) {
                CHECK(x.shape() == z.shape());
                CHECK(x.dtype() == DType::F64);
                sigmas.push_back(sigma);
                return base(x, sigma);
            };
            std::vector<std::pair<int, int>> steps;
            Tensor out = edm_sample(rec, z, o, nullptr, [&](int s, int total) { steps.emplace_back(s, total); });
            CHECK(out.shape() == z.shape());
            CHECK(out.dtype() == DType::F64);
            CHECK(out.device().is_cpu());

            std::vector<double> t = edm_time_steps(o);
            std::vector<double> expect;
            for (int i = 0; i < n; ++i) {
                expect.push_back(t[i]);
                if (heun && i < n - 1) expect.push_back(t[i + 1]);
            }
            CHECK(static_cast<int64_t>(sigmas.size()) == network_evaluations(o));
            CHECK(sigmas == expect);
            REQUIRE(steps.size() == static_cast<size_t>(n));
            for (int i = 0; i < n; ++i) CHECK(steps[i] == std::make_pair(i + 1, n));
        }
    }

    // With churn the Euler evaluation moves to t_hat = (1 + gamma) t_i inside [S_min, S_max] only.
    SamplerOptions o;
    o.num_steps = 10;
    o.S_churn = 2;  // gamma = 0.2 (below sqrt(2) - 1)
    o.S_min = 0.05;
    o.S_max = 10;
    std::vector<Generator> gens{Generator(1), Generator(2), Generator(3)};
    std::vector<double> sigmas;
    Denoiser base = gaussian_denoiser(0, 0.5);
    edm_sample([&](const Tensor& x, double s) { sigmas.push_back(s); return base(x, s); }, z, o, &gens);
    std::vector<double> t = edm_time_steps(o);
    std::vector<double> expect;
    int churned = 0;
    for (int i = 0; i < 10; ++i) {
        const bool in = 0.05 <= t[i] && t[i] <= 10;
        churned += in;
        expect.push_back(in ? t[i] + 0.2 * t[i] : t[i]);
        if (i < 9) expect.push_back(t[i + 1]);
    }
    CHECK(churned > 0);
    CHECK(churned < 10);
    CHECK(sigmas == expect);
    // One churn draw per image per step, in every step.
    for (const Generator& g : gens) CHECK(g.offset() == 10);

    // gamma is capped at sqrt(2) - 1.
    o.S_churn = 1000;
    o.S_min = 0;
    o.S_max = std::numeric_limits<double>::infinity();
    sigmas.clear();
    edm_sample([&](const Tensor& x, double s) { sigmas.push_back(s); return base(x, s); }, z, o, &gens);
    CHECK(sigmas[0] == t[0] + (std::sqrt(2.0) - 1) * t[0]);
}

TEST_CASE("edm_sample's float64 arithmetic matches a scalar re-derivation bit for bit") {
    // A nonlinear denoiser, churn on part of the range, S_noise != 1.
    auto f = [](double x, double sigma) { return 0.7 * std::tanh(x / (1 + sigma)) + 0.01 * sigma; };
    SamplerOptions o;
    o.num_steps = 7;
    o.S_churn = 3;
    o.S_min = 0.1;
    o.S_max = 20;
    o.S_noise = 1.007;
    for (bool heun : {true, false}) {
        CAPTURE(heun);
        o.heun = heun;
        const Shape shape{2, 1, 3, 2};
        Tensor z = latents_of(shape, 7);
        std::vector<Generator> gens{Generator(11), Generator(12)};
        Tensor out = edm_sample(elementwise(f), z, o, &gens);

        // The reference: the same steps on plain doubles, with the same noise draws.
        std::vector<Generator> ref_gens{Generator(11), Generator(12)};
        std::vector<double> t = edm_time_steps(o);
        std::vector<double> x = z.to_vector();
        for (double& v : x) v = v * t[0];
        const int64_t per = 6;
        for (int i = 0; i < o.num_steps; ++i) {
            std::vector<double> eps;
            for (Generator& g : ref_gens) {
                std::vector<double> e = ops::randn({1, 1, 3, 2}, g, DType::F64).to_vector();
                eps.insert(eps.end(), e.begin(), e.end());
            }
            const double gamma = (o.S_min <= t[i] && t[i] <= o.S_max) ? std::min(o.S_churn / o.num_steps, std::sqrt(2.0) - 1) : 0;
            const double th = t[i] + gamma * t[i];
            for (int64_t k = 0; k < 2 * per; ++k) {
                const double xh = gamma > 0 ? x[k] + eps[k] * (std::sqrt(th * th - t[i] * t[i]) * o.S_noise) : x[k];
                const double d = (xh - f(xh, th)) / th;
                double xn = xh + d * (t[i + 1] - th);
                if (heun && i < o.num_steps - 1) {
                    const double dp = (xn - f(xn, t[i + 1])) / t[i + 1];
                    xn = xh + (d * 0.5 + dp * 0.5) * (t[i + 1] - th);
                }
                x[k] = xn;
            }
        }
        CHECK(out.to_vector() == x);
    }
}

TEST_CASE("Heun and Euler sample a Gaussian N(mu, s^2) from its exact denoiser") {
    const double mu = 0.3, s = 0.5;
    Denoiser D = gaussian_denoiser(mu, s);
    Tensor z = latents_of({2500, 2, 2, 2}, 42);  // 20000 values
    const double n = 20000;

    // The probability-flow ODE of a Gaussian is linear: from x(sigma_max) it ends at
    // mu + s / sqrt(s^2 + sigma_max^2) * (x(sigma_max) - mu).
    auto exact = [&](double zi) {
        const double x0 = zi * 80;
        return mu + s / std::sqrt(s * s + 80 * 80) * (x0 - mu);
    };
    std::vector<double> zv = z.to_vector();

    auto max_err = [&](const Tensor& x) {
        std::vector<double> v = x.to_vector();
        double e = 0;
        for (size_t i = 0; i < v.size(); ++i) e = std::max(e, std::abs(v[i] - exact(zv[i])));
        return e;
    };
    const double mean_tol = 4 * s / std::sqrt(n), std_tol = 4 * s / std::sqrt(2 * n);

    // EDM's defaults, 18 Heun steps: the mean within sampling error. The spread carries the ODE
    // discretisation error of 35 evaluations, which for a Gaussian of s = 0.5 is +5.5% (the exact
    // linear map's factor 0.006250 becomes 0.006595), well above the sampling error of the std (0.5%).
    SamplerOptions heun;
    Tensor xh = edm_sample(D, z, heun);
    REQUIRE(all_finite(xh));
    Moments m = moments(xh);
    CHECK(std::abs(m.mean - mu) < mean_tol);
    CHECK(std::abs(m.std - s) < 0.07 * s);
    const double heun_err = max_err(xh);
    CHECK(heun_err < 0.06 * 4 * s);  // |z| < 4 or so: 6% of the largest deviation

    // Euler with the same steps is first order and worse: its spread is 15% too small.
    SamplerOptions euler18;
    euler18.heun = false;
    Tensor xe18 = edm_sample(D, z, euler18);
    CHECK(moments(xe18).std < 0.9 * s);
    CHECK(max_err(xe18) > 2 * heun_err);

    // More steps converge onto the exact map: Heun at second order, Euler at first.
    SamplerOptions heun100;
    heun100.num_steps = 100;
    Tensor xh100 = edm_sample(D, z, heun100);
    m = moments(xh100);
    CHECK(std::abs(m.mean - mu) < mean_tol);
    CHECK(std::abs(m.std - s) < std_tol);
    CHECK(max_err(xh100) < 0.05 * heun_err);  // 0.15% against 5.5%

    SamplerOptions euler;
    euler.heun = false;
    euler.num_steps = 500;
    Tensor xe = edm_sample(D, z, euler);
    m = moments(xe);
    CHECK(std::abs(m.mean - mu) < mean_tol);
    CHECK(std::abs(m.std - s) < std_tol);
    CHECK(max_err(xe) < 0.01 * 4 * s);

    // The stochastic sampler (EDM's ImageNet settings) keeps the distribution. Its spread is predicted
    // exactly by propagating the variance through the steps: churn adds (t_hat^2 - t_i^2) S_noise^2,
    // and each (linear) Heun step scales the deviation from mu by its factor. 40 steps, with churn,
    // S_noise = 1.003: 0.5203.
    SamplerOptions sto;
    sto.num_steps = 40;
    sto.S_churn = 40;
    sto.S_min = 0.05;
    sto.S_max = 50;
    sto.S_noise = 1.003;
    std::vector<Generator> gens;
    for (int k = 0; k < 2500; ++k) gens.emplace_back(1000 + k);
    Tensor xs = edm_sample(D, z, sto, &gens);
    REQUIRE(all_finite(xs));
    m = moments(xs);
    CHECK(std::abs(m.mean - mu) < mean_tol);
    CHECK(std::abs(m.std - s) < 0.05 * s);
    std::vector<double> t = edm_time_steps(sto);
    double var = 80.0 * 80.0;
    for (int i = 0; i < sto.num_steps; ++i) {
        const double gamma = (sto.S_min <= t[i] && t[i] <= sto.S_max) ? std::min(sto.S_churn / sto.num_steps, std::sqrt(2.0) - 1) : 0;
        const double th = t[i] + gamma * t[i], tn = t[i + 1];
        var += (th * th - t[i] * t[i]) * sto.S_noise * sto.S_noise;
        // The Heun step applied to a unit deviation: x - D(x; sigma) = x sigma^2 / (s^2 + sigma^2).
        const double d = th / (s * s + th * th);
        double f = 1 + (tn - th) * d;
        if (i < sto.num_steps - 1) f = 1 + (tn - th) * 0.5 * (d + f * tn / (s * s + tn * tn));
        var *= f * f;
    }
    CHECK(std::sqrt(var) == doctest::Approx(0.5203).epsilon(1e-3));
    CHECK(std::abs(m.std - std::sqrt(var)) < std_tol);
}

TEST_CASE("Heun samples a two-point mixture onto its two points with the right weights") {
    const double a = 0.8, p = 0.3;
    Tensor z = latents_of({20000, 1, 1, 1}, 5);
    Tensor x = edm_sample(two_point_denoiser(a, p), z, SamplerOptions{});
    int plus = 0;
    double worst = 0;
    for (double v : x.to_vector()) {
        worst = std::max(worst, std::abs(std::abs(v) - a));
        plus += v > 0;
    }
    CHECK(worst < 1e-6);
    const double frac = plus / 20000.0;
    CHECK(std::abs(frac - p) < 4 * std::sqrt(p * (1 - p) / 20000));
}

TEST_CASE("an image depends on its latents and churn generator only, not on the batch split") {
    SamplerOptions o;
    o.num_steps = 12;
    o.S_churn = 30;
    o.S_min = 0.01;
    o.S_max = 40;
    o.S_noise = 1.005;
    const Shape shape{4, 3, 4, 4};
    Tensor z = latents_of(shape, 99);
    Denoiser D = two_point_denoiser(0.5, 0.5);  // nonlinear, elementwise

    std::vector<Generator> all{Generator(10), Generator(11), Generator(12), Generator(13)};
    Tensor whole = edm_sample(D, z, o, &all);

    std::vector<Generator> first{Generator(10), Generator(11)}, second{Generator(12), Generator(13)};
    Tensor a = edm_sample(D, ops::contiguous(ops::narrow(z, 0, 0, 2)), o, &first);
    Tensor b = edm_sample(D, ops::narrow(z, 0, 2, 2), o, &second);  // a strided view works too
    CHECK(ops::cat({a, b}, 0).to_vector() == whole.to_vector());

    // Reordering the batch permutes the results exactly.
    std::vector<Generator> swapped{Generator(12), Generator(13), Generator(10), Generator(11)};
    Tensor zs = ops::cat({ops::narrow(z, 0, 2, 2), ops::narrow(z, 0, 0, 2)}, 0);
    Tensor ws = edm_sample(D, zs, o, &swapped);
    CHECK(ops::cat({ops::narrow(ws, 0, 2, 2), ops::narrow(ws, 0, 0, 2)}, 0).to_vector() == whole.to_vector());

    // The churn noise matters: other generators give other images, and no churn differs again.
    std::vector<Generator> other{Generator(20), Generator(21), Generator(22), Generator(23)};
    CHECK(edm_sample(D, z, o, &other).to_vector() != whole.to_vector());
    SamplerOptions det = o;
    det.S_churn = 0;
    CHECK(edm_sample(D, z, det).to_vector() != whole.to_vector());
    // Deterministic sampling ignores the generators entirely.
    std::vector<Generator> unused{Generator(1), Generator(2), Generator(3), Generator(4)};
    CHECK(edm_sample(D, z, det, &unused).to_vector() == edm_sample(D, z, det).to_vector());
    CHECK(unused[0].offset() == 0);
}

TEST_CASE("edm_sample and edm_time_steps reject invalid options and inputs") {
    Denoiser D = gaussian_denoiser(0, 0.5);
    Tensor z = latents_of({2, 1, 2, 2}, 3);
    auto bad = [&](auto edit) {
        SamplerOptions o;
        edit(o);
        CHECK_THROWS_AS(edm_time_steps(o), Error);
        CHECK_THROWS_AS(network_evaluations(o), Error);
        CHECK_THROWS_AS(edm_sample(D, z, o), Error);
    };
    bad([](SamplerOptions& o) { o.num_steps = 0; });
    bad([](SamplerOptions& o) { o.num_steps = -3; });
    bad([](SamplerOptions& o) { o.sigma_min = 0; });
    bad([](SamplerOptions& o) { o.sigma_min = -1; });
    bad([](SamplerOptions& o) { o.sigma_min = std::nan(""); });
    bad([](SamplerOptions& o) { o.sigma_max = 0.001; });
    bad([](SamplerOptions& o) { o.sigma_max = std::numeric_limits<double>::infinity(); });
    bad([](SamplerOptions& o) { o.rho = 0; });
    bad([](SamplerOptions& o) { o.rho = -7; });
    bad([](SamplerOptions& o) { o.S_churn = -1; });

    SamplerOptions o;
    CHECK_THROWS_AS(edm_sample(D, ops::to(z, DType::F32), o), Error);
    CHECK_THROWS_AS(edm_sample(D, ops::reshape(z, {2, 4}), o), Error);
    CHECK_THROWS_AS(edm_sample(D, ops::reshape(z, {1, 2, 1, 2, 2}), o), Error);
    CHECK_THROWS_AS(edm_sample(D, Tensor(), o), Error);
    CHECK_THROWS_AS(edm_sample(Denoiser(), z, o), Error);

    // Churn needs exactly one generator per image.
    SamplerOptions sto;
    sto.S_churn = 10;
    CHECK_THROWS_AS(edm_sample(D, z, sto), Error);
    std::vector<Generator> one{Generator(1)};
    CHECK_THROWS_AS(edm_sample(D, z, sto, &one), Error);
    std::vector<Generator> two{Generator(1), Generator(2)};
    CHECK_NOTHROW(edm_sample(D, z, sto, &two));

    // A denoiser that returns the wrong shape or dtype.
    CHECK_THROWS_AS(edm_sample([](const Tensor& x, double) { return ops::reshape(x, {-1}); }, z, o), Error);
    CHECK_THROWS_AS(edm_sample([](const Tensor& x, double) { return ops::to(x, DType::F32); }, z, o), Error);
    CHECK_THROWS_AS(edm_sample([](const Tensor&, double) { return Tensor(); }, z, o), Error);
}

TEST_CASE("a 64x64 network like EDM's FFHQ/AFHQv2 ones, saved and loaded, samples as the original does") {
    // EDM's 64x64 configuration (channel_mult [1, 2, 2, 2], attention at 16, dropout 0.05, 3 channels) at
    // a sixteenth of its width, so that sampling a few steps takes a moment on the CPU.
    for (const char* arch : {"ddpmpp", "ncsnpp"}) {
        CAPTURE(arch);
        nn::NetworkConfig c = nn::NetworkConfig::preset(arch);
        c.unet.img_resolution = 64;
        c.unet.channel_mult = {1, 2, 2, 2};
        c.unet.model_channels = 8;
        c.unet.num_blocks = 1;
        c.unet.dropout = 0.05;
        Generator gen(3);
        std::shared_ptr<nn::Precond> net = nn::make_network(c, gen);
        const std::string path = (std::filesystem::temp_directory_path() /
                                  ("stf_test_ffhq_" + std::to_string(::getpid()) + "_" + arch + ".safetensors"))
                                     .string();
        nn::save_network(path, *net);
        nn::LoadedNetwork loaded = nn::load_network(path);
        std::filesystem::remove(path);
        CHECK(loaded.config.to_json() == c.to_json());
        auto sample = [&](const nn::Precond& n) {
            SamplerOptions o;
            o.num_steps = 3;
            Denoiser d = [&](const Tensor& x, double sigma) {
                NoGradGuard no_grad;
                Tensor s = ops::full({x.size(0)}, sigma, DType::F32);
                return ops::to(n.forward(ops::to(x, DType::F32), s), DType::F64);
            };
            return edm_sample(d, latents_of({2, 3, 64, 64}, 7), o).to_vector();
        };
        net->eval();
        loaded.net->eval();
        std::vector<double> a = sample(*net), b = sample(*loaded.net);
        REQUIRE(a.size() == 2 * 3 * 64 * 64);
        CHECK(a == b);
        double sq = 0;
        size_t nonfinite = 0;
        for (double v : a) {
            nonfinite += !std::isfinite(v);
            sq += v * v;
        }
        CHECK(nonfinite == 0);
        CHECK(sq / static_cast<double>(a.size()) > 1e-3);  // not all zeros
    }
}
