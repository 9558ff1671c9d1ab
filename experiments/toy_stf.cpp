#include "experiments/toy_stf.h"

#include <cmath>

#include "diffusion/loss.h"
#include "diffusion/stf_target.h"
#include "nn/optim.h"

namespace stf::experiments {

ToyDenoiser::ToyDenoiser(int64_t dim, int64_t hidden, int depth, double sd, Generator& gen) : sigma_data(sd) {
    STF_CHECK(dim >= 1 && hidden >= 1 && depth >= 1, "ToyDenoiser: bad sizes dim " << dim << " hidden " << hidden
                                                                                     << " depth " << depth);
    nn::Init init{"xavier_uniform", 1, 0};
    int64_t in = dim + 1;
    for (int i = 0; i < depth; ++i) {
        hidden_layers.push_back(register_module("fc" + std::to_string(i), std::make_shared<nn::Linear>(in, hidden, true, init, gen)));
        in = hidden;
    }
    out = register_module("out", std::make_shared<nn::Linear>(in, dim, true, init, gen));
}

Tensor ToyDenoiser::forward(const Tensor& y, const Tensor& sigma) const {
    const int64_t b = y.size(0);
    Tensor s = reshape(sigma, {b, 1});
    Tensor s2 = add(square(s), sigma_data * sigma_data);
    Tensor c_skip = rdiv(s2, sigma_data * sigma_data);            // sd^2 / (s^2 + sd^2)
    Tensor c_out = mul(s, rsqrt(s2)) * sigma_data;                 // s sd / sqrt(s^2 + sd^2)
    Tensor c_in = rsqrt(s2);                                       // 1 / sqrt(s^2 + sd^2)
    Tensor c_noise = log(s) * 0.25;                                // ln(s) / 4
    Tensor h = cat({mul(y, c_in), c_noise}, 1);
    for (const auto& l : hidden_layers) h = silu(l->forward(h));
    return add(mul(y, c_skip), mul(out->forward(h), c_out));
}

static Tensor f32(const Tensor& t) { return ops::to(t, DType::F32); }

Tensor toy_loss(const ToyDenoiser& net, const GaussianMixture& mix, const Tensor& x, const std::vector<double>& sigma,
                int64_t rbatch, Generator& gen) {
    const int64_t b = x.size(0), d = x.size(1);
    Tensor sig = ops::from_vector(sigma, {b}, DType::F32);
    std::vector<double> lambda(static_cast<size_t>(b));
    double sd2 = net.sigma_data * net.sigma_data;
    for (int64_t i = 0; i < b; ++i) lambda[i] = (sigma[i] * sigma[i] + sd2) / (sigma[i] * sigma[i] * sd2);
    Tensor xf = f32(x);
    Tensor y = ops::add(xf, ops::mul(ops::randn({b, d}, gen), ops::reshape(sig, {b, 1})));
    Tensor target = xf;
    if (rbatch > 0) {
        STF_CHECK(rbatch >= b, "toy_loss: the reference batch " << rbatch << " must hold the batch of " << b);
        Tensor ref = rbatch > b ? ops::cat({xf, f32(mix.sample(rbatch - b, gen))}, 0) : xf;
        target = diffusion::stf_target(y, sig, ref).target;
    }
    Tensor denoised = net.forward(y, sig);
    Tensor per = mul(squared_error_per_sample(denoised, target), ops::from_vector(lambda, {b}, DType::F32));
    return mean(per);
}

ToyTrainResult train_toy(const GaussianMixture& mix, const ToyTrainOptions& o,
                         const std::function<void(int64_t, double)>& on_step) {
    STF_CHECK(o.steps >= 0 && o.batch >= 1, "train_toy: need steps >= 0 and batch >= 1");
    STF_CHECK(o.rbatch == 0 || o.rbatch >= o.batch,
              "train_toy: the reference batch (" << o.rbatch << ") must be at least the batch (" << o.batch << ")");
    Generator init_gen(o.seed * 2 + 1), gen(o.seed * 2 + 2);
    ToyTrainResult r;
    r.net = std::make_shared<ToyDenoiser>(mix.dim(), o.hidden, o.depth, mix.data_std(), init_gen);
    std::vector<Tensor> params = r.net->parameters();
    nn::Adam adam(params);
    diffusion::LossOptions lo;
    lo.sigma_data = mix.data_std();
    for (int64_t step = 0; step < o.steps; ++step) {
        Tensor x = mix.sample(o.batch, gen);
        std::vector<double> sigma = diffusion::sample_noise_levels(lo, o.batch, gen, Device::cpu()).sigma.to_vector();
        r.net->zero_grad();
        Tensor loss = toy_loss(*r.net, mix, x, sigma, o.rbatch, gen);
        backward(loss);
        nn::nan_to_num_grads(params);
        adam.step(o.lr);
        double l = loss.item();
        r.losses.push_back(l);
        if (on_step) on_step(step, l);
    }
    return r;
}

static std::vector<double> band_sigmas(double lo, double hi, int64_t n, Generator& gen) {
    STF_CHECK(lo > 0 && hi >= lo, "toy: bad sigma band [" << lo << ", " << hi << ")");
    std::vector<double> u = ops::rand({n}, gen, DType::F64).to_vector(), s(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) s[i] = lo * std::pow(hi / lo, u[i]);
    return s;
}

double toy_denoiser_error(const ToyDenoiser& net, const GaussianMixture& mix, double lo, double hi, int64_t samples,
                          Generator& gen) {
    NoGradGuard ng;
    const int64_t d = mix.dim();
    Tensor x = mix.sample(samples, gen);
    std::vector<double> sigma = band_sigmas(lo, hi, samples, gen);
    Tensor y = ops::add(x, ops::mul(ops::randn({samples, d}, gen, DType::F64),
                                    ops::from_vector(sigma, {samples, 1}, DType::F64)));
    std::vector<double> exact = mix.denoise(y, sigma).to_vector();
    std::vector<double> got = net.forward(f32(y), ops::from_vector(sigma, {samples}, DType::F32)).to_vector();
    double err = 0;
    for (size_t i = 0; i < exact.size(); ++i) err += (got[i] - exact[i]) * (got[i] - exact[i]);
    return err / static_cast<double>(samples * d);
}

double toy_grad_variance(ToyDenoiser& net, const GaussianMixture& mix, double lo, double hi, int64_t batch,
                         int64_t rbatch, int64_t minibatches, Generator& gen) {
    STF_CHECK(minibatches >= 2, "toy_grad_variance: need at least 2 mini-batches");
    std::vector<std::vector<double>> grads;
    for (int64_t m = 0; m < minibatches; ++m) {
        net.zero_grad();
        Tensor x = mix.sample(batch, gen);
        std::vector<double> sigma = band_sigmas(lo, hi, batch, gen);
        backward(toy_loss(net, mix, x, sigma, rbatch, gen));
        grads.push_back(net.out->weight.grad().to_vector());
    }
    net.zero_grad();
    const size_t P = grads[0].size();
    double trace = 0;
    for (size_t e = 0; e < P; ++e) {
        double mu = 0, ss = 0;
        for (const auto& g : grads) mu += g[e];
        mu /= static_cast<double>(minibatches);
        for (const auto& g : grads) ss += (g[e] - mu) * (g[e] - mu);
        trace += ss / static_cast<double>(minibatches - 1);
    }
    return trace;
}

ToyTargetStats toy_target_stats(const GaussianMixture& mix, double lo, double hi, int64_t n, bool include_own,
                                int64_t points, int64_t draws, Generator& gen) {
    STF_CHECK(n >= 1 && points >= 1 && draws >= 2, "toy_target_stats: need n >= 1, points >= 1, draws >= 2");
    const int64_t d = mix.dim();
    Tensor x = mix.sample(points, gen);
    std::vector<double> sigma = band_sigmas(lo, hi, points, gen);
    Tensor y = ops::add(x, ops::mul(ops::randn({points, d}, gen, DType::F64),
                                    ops::from_vector(sigma, {points, 1}, DType::F64)));
    std::vector<double> yv = y.to_vector(), exact = mix.denoise(y, sigma).to_vector();
    std::vector<double> sum(static_cast<size_t>(points * d), 0.0), sumsq(static_cast<size_t>(points * d), 0.0);
    for (int64_t r = 0; r < draws; ++r) {
        std::vector<double> own = include_own ? mix.sample_posterior(y, sigma, gen).to_vector() : std::vector<double>{};
        const int64_t n_shared = include_own ? n - 1 : n, first_shared = include_own ? 1 : 0;
        std::vector<double> shared = n_shared > 0 ? mix.sample(n_shared, gen).to_vector() : std::vector<double>{};
        // Shared draws serve every point: each point's reference batch is its own image plus these n - 1.
        for (int64_t i = 0; i < points; ++i) {
            const double* yi = &yv[i * d];
            double inv = 1 / (2 * sigma[i] * sigma[i]);
            std::vector<double> logit(static_cast<size_t>(n));
            double mx = -INFINITY;
            for (int64_t j = 0; j < n; ++j) {
                const double* xj = j < first_shared ? &own[i * d] : &shared[(j - first_shared) * d];
                double dist = 0;
                for (int64_t k = 0; k < d; ++k) dist += (yi[k] - xj[k]) * (yi[k] - xj[k]);
                logit[j] = -dist * inv;
                mx = std::max(mx, logit[j]);
            }
            double z = 0;
            std::vector<double> t(static_cast<size_t>(d), 0.0);
            for (int64_t j = 0; j < n; ++j) {
                double w = std::exp(logit[j] - mx);
                z += w;
                const double* xj = j < first_shared ? &own[i * d] : &shared[(j - first_shared) * d];
                for (int64_t k = 0; k < d; ++k) t[k] += w * xj[k];
            }
            for (int64_t k = 0; k < d; ++k) {
                double v = t[k] / z - exact[i * d + k];
                sum[i * d + k] += v;
                sumsq[i * d + k] += v * v;
            }
        }
    }
    double bias = 0, variance = 0, R = static_cast<double>(draws);
    for (size_t e = 0; e < sum.size(); ++e) {
        double m = sum[e] / R, var = std::max(0.0, (sumsq[e] - R * m * m) / (R - 1));
        bias += m * m - var / R;
        variance += var;
    }
    return {bias / static_cast<double>(points * d), variance / static_cast<double>(points * d)};
}

}  // namespace stf::experiments
