// EDM's sampler; see sampler.h for the algorithm. Each expression is evaluated in float64 in the order
// EDM's PyTorch code evaluates it (a true division by t_hat, not a multiplication by its reciprocal;
// separate multiplies and adds, no fused multiply-add), so the two agree rounding for rounding.
#include "diffusion/sampler.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace stf::diffusion {
namespace {

void check_options(const SamplerOptions& o, const char* op) {
    STF_CHECK(o.num_steps >= 1, op << ": num_steps must be at least 1, got " << o.num_steps);
    STF_CHECK(o.sigma_min > 0 && std::isfinite(o.sigma_min),
              op << ": sigma_min must be positive and finite, got " << o.sigma_min);
    STF_CHECK(o.sigma_max >= o.sigma_min && std::isfinite(o.sigma_max),
              op << ": sigma_max must be finite and at least sigma_min (" << o.sigma_min << "), got "
                 << o.sigma_max);
    STF_CHECK(o.rho > 0 && std::isfinite(o.rho), op << ": rho must be positive and finite, got " << o.rho);
    STF_CHECK(o.S_churn >= 0 && std::isfinite(o.S_churn),
              op << ": S_churn must be non-negative and finite, got " << o.S_churn);
    STF_CHECK(!std::isnan(o.S_min) && !std::isnan(o.S_max) && std::isfinite(o.S_noise),
              op << ": S_min, S_max and S_noise must not be NaN (S_noise finite), got S_min " << o.S_min
                 << ", S_max " << o.S_max << ", S_noise " << o.S_noise);
}

// x / s as EDM computes tensor / 0-d tensor: a true division in float64.
Tensor div_scalar(const Tensor& x, double s) { return ops::div(x, ops::full({}, s, DType::F64)); }

Tensor call_denoiser(const Denoiser& denoise, const Tensor& x, double sigma) {
    Tensor d = denoise(x, sigma);
    STF_CHECK(d.defined() && d.dtype() == DType::F64 && d.device().is_cpu() && d.shape() == x.shape(),
              "edm_sample: the denoiser must return float64 CPU " << shape_str(x.shape()) << " at sigma "
                                                                   << sigma << ", got "
                                                                   << (d.defined() ? describe(d) : "undefined"));
    return d;
}

}  // namespace

std::vector<double> edm_time_steps(const SamplerOptions& o) {
    check_options(o, "edm_time_steps");
    const int n = o.num_steps;
    const double inv_rho = 1 / o.rho;
    const double max_r = std::pow(o.sigma_max, inv_rho), min_r = std::pow(o.sigma_min, inv_rho);
    std::vector<double> t(n + 1);
    for (int i = 0; i < n; ++i) {
        const double frac = n > 1 ? static_cast<double>(i) / (n - 1) : 0.0;
        t[i] = std::pow(max_r + frac * (min_r - max_r), o.rho);
    }
    t[n] = 0;
    return t;
}

int64_t network_evaluations(const SamplerOptions& o) {
    check_options(o, "network_evaluations");
    return o.heun ? 2 * static_cast<int64_t>(o.num_steps) - 1 : o.num_steps;
}

Tensor edm_sample(const Denoiser& denoise, const Tensor& latents, const SamplerOptions& o,
                  std::vector<Generator>* churn_noise, const std::function<void(int, int)>& on_step) {
    check_options(o, "edm_sample");
    STF_CHECK(static_cast<bool>(denoise), "edm_sample: no denoiser given");
    STF_CHECK(latents.defined() && latents.dtype() == DType::F64 && latents.device().is_cpu() &&
                  latents.ndim() == 4,
              "edm_sample: latents must be float64 CPU [N, C, H, W], got "
                  << (latents.defined() ? describe(latents) : "undefined"));
    const int64_t batch = latents.size(0);
    const bool churn = o.S_churn > 0;
    if (churn) {
        STF_CHECK(churn_noise != nullptr,
                  "edm_sample: S_churn = " << o.S_churn << " needs one churn-noise generator per image, got none");
        STF_CHECK(static_cast<int64_t>(churn_noise->size()) == batch,
                  "edm_sample: S_churn = " << o.S_churn << " needs one churn-noise generator per image: "
                                           << batch << " images, " << churn_noise->size() << " generators");
    }

    const int n = o.num_steps;
    const std::vector<double> t = edm_time_steps(o);
    const double gamma_max = std::sqrt(2.0) - 1;

    Tensor x_next = ops::mul_scalar(latents, t[0]);
    for (int i = 0; i < n; ++i) {
        const double t_cur = t[i], t_next = t[i + 1];
        Tensor x_cur = x_next;

        // Increase the noise level temporarily.
        const double gamma = (o.S_min <= t_cur && t_cur <= o.S_max) ? std::min(o.S_churn / n, gamma_max) : 0.0;
        const double t_hat = t_cur + gamma * t_cur;
        Tensor x_hat = x_cur;
        if (churn) {
            // One draw per image from its own generator, every step (as EDM's randn_like).
            Tensor eps = ops::empty(x_cur.shape(), DType::F64);
            for (int64_t k = 0; k < batch; ++k) {
                Tensor slot = ops::narrow(eps, 0, k, 1);
                ops::normal_(slot, 0.0, 1.0, (*churn_noise)[static_cast<size_t>(k)]);
            }
            // With gamma = 0 the term is an exact zero and x_hat = x_cur; skip the no-op add.
            if (t_hat != t_cur) {
                const double scale = std::sqrt(t_hat * t_hat - t_cur * t_cur) * o.S_noise;
                x_hat = ops::add(x_cur, ops::mul_scalar(eps, scale));
            }
        }

        // Euler step.
        Tensor denoised = call_denoiser(denoise, x_hat, t_hat);
        Tensor d_cur = div_scalar(ops::sub(x_hat, denoised), t_hat);
        const double h = t_next - t_hat;
        x_next = ops::add(x_hat, ops::mul_scalar(d_cur, h));

        // Second-order (trapezoid) correction; the last step, to t_N = 0, stays Euler.
        if (o.heun && i < n - 1) {
            denoised = call_denoiser(denoise, x_next, t_next);
            Tensor d_prime = div_scalar(ops::sub(x_next, denoised), t_next);
            Tensor slope = ops::add(ops::mul_scalar(d_cur, 0.5), ops::mul_scalar(d_prime, 0.5));
            x_next = ops::add(x_hat, ops::mul_scalar(slope, h));
        }
        if (on_step) on_step(i + 1, n);
    }
    return x_next;
}

}  // namespace stf::diffusion
