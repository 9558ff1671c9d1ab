// EDM's deterministic and stochastic samplers (Karras et al. 2022, Algorithm 2; EDM's edm_sampler).
//
// Time steps: t_i = (sigma_max^(1/rho) + i/(N-1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for
// i < N, then t_N = 0. Starting from x_0 = latents * t_0, each step i
//   1. optionally raises the noise level ("churn"): gamma = min(S_churn/N, sqrt(2)-1) when
//      S_min <= t_i <= S_max, else 0; t_hat = t_i + gamma*t_i;
//      x_hat = x_i + sqrt(t_hat^2 - t_i^2) * S_noise * eps, eps ~ N(0, I);
//   2. takes an Euler step: d = (x_hat - D(x_hat; t_hat)) / t_hat; x_{i+1} = x_hat + (t_{i+1} - t_hat) * d;
//   3. for i < N-1 (and Heun on), corrects it with the trapezoid rule:
//      d' = (x_{i+1} - D(x_{i+1}; t_{i+1})) / t_{i+1}; x_{i+1} = x_hat + (t_{i+1} - t_hat) * (d/2 + d'/2).
// Heun therefore makes 2N-1 denoiser calls (35 for N = 18), Euler N.
//
// The sampler state is float64 on the CPU, as in EDM (which runs the sampler in float64 and the network
// in float32); every operation is the raw op of tensor/ops.h in float64, in EDM's order, so the
// arithmetic matches EDM's rounding for rounding. EDM also passes the sigmas through the network's
// round_sigma, which is the identity for EDMPrecond and is not modelled here.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace stf::diffusion {

struct SamplerOptions {
    int num_steps = 18;  // N >= 1
    double sigma_min = 0.002, sigma_max = 80, rho = 7;
    // Stochasticity (EDM's defaults switch it off). S_churn > 0 needs one noise generator per image.
    double S_churn = 0, S_min = 0, S_max = std::numeric_limits<double>::infinity(), S_noise = 1;
    bool heun = true;  // false: Euler (first order) steps only
};

// t_0 .. t_{N-1} from the formula above, then t_N = 0: N + 1 entries, t_0 = sigma_max (up to rounding),
// t_{N-1} = sigma_min (up to rounding). For N = 1, where EDM's i/(N-1) is 0/0, the single step starts at
// sigma_max: {sigma_max, 0}. Throws stf::Error for invalid options (see edm_sample).
std::vector<double> edm_time_steps(const SamplerOptions& o);

// D(x; sigma): x float64 CPU [N, C, H, W]; returns the denoised images, float64 CPU, the same shape.
// The application wraps its (float32, possibly CUDA) network in one of these.
using Denoiser = std::function<Tensor(const Tensor& x, double sigma)>;

// Runs the sampler on `latents` (float64 CPU [N, C, H, W], standard normal) and returns the samples
// (float64 CPU [N, C, H, W]).
//
// churn_noise: when S_churn > 0, exactly one Generator per image (N of them). In every step each image
// k draws its own standard-normal eps from (*churn_noise)[k] (one draw of C*H*W values, one generator
// offset), including steps where gamma is 0 because t_i lies outside [S_min, S_max], as EDM draws
// randn_like in every step. So an image depends only on its latents and its generator, never on the
// batch it was sampled in. Ignored (may be null) when S_churn == 0.
//
// on_step(i + 1, N) is called after step i (0-based) completes: the last call is (N, N).
//
// Throws stf::Error for num_steps < 1, sigma_min <= 0, sigma_max < sigma_min, rho <= 0, S_churn < 0,
// latents that are not float64 CPU 4-D, S_churn > 0 with a missing or wrongly sized churn_noise, or a
// denoiser result that is not float64 CPU of the input's shape.
Tensor edm_sample(const Denoiser& denoise, const Tensor& latents, const SamplerOptions& o,
                  std::vector<Generator>* churn_noise = nullptr,
                  const std::function<void(int step, int num_steps)>& on_step = {});

// Denoiser calls edm_sample makes: 2N - 1 for Heun, N for Euler.
int64_t network_evaluations(const SamplerOptions& o);

}  // namespace stf::diffusion
