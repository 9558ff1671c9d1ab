// A d-dimensional isotropic Gaussian mixture, p(x) = sum_k w_k N(x; mu_k, s^2 I), whose ideal denoiser
// E[x | y] at noise level sigma (y = x + sigma * eps) is known in closed form: with
//     r_k(y) = softmax_k(ln w_k - ||y - mu_k||^2 / (2 (s^2 + sigma^2)))     (posterior mode responsibilities)
//     m_k(y) = (s^2 y + sigma^2 mu_k) / (s^2 + sigma^2)                     (per-mode posterior means)
// E[x | y] = sum_k r_k(y) m_k(y), and p(x | y) = sum_k r_k N(m_k, s^2 sigma^2 / (s^2 + sigma^2) I).
// Everything here is float64 on CPU tensors. Used by ./toy_stf, where the STF and DSM targets can be
// compared with the exact answer.
#pragma once
#include <vector>
#include "tensor/ops.h"

namespace stf::experiments {

struct GaussianMixture {
    Tensor means;                 // [K, d] f64
    std::vector<double> weights;  // K, summing to 1
    double s = 0.1;               // per-mode standard deviation (every dimension)

    int64_t dim() const { return means.size(1); }
    int64_t modes() const { return means.size(0); }

    // K well-separated modes: for K <= 2d the points +-radius e_i (e_1, -e_1, e_2, -e_2, ...), pairwise at
    // least radius * sqrt(2) apart; beyond that, random directions of length radius (seeded). Weights
    // proportional to 1, 2, ..., K (unequal on purpose). Throws stf::Error for d < 1, K < 1 or s <= 0.
    static GaussianMixture make(int64_t dim, int64_t modes, double radius = 1.0, double s = 0.1, uint64_t seed = 0);

    std::vector<double> mean() const;  // E[x], d values
    double data_std() const;           // sqrt(E||x - E[x]||^2 / d): the per-dimension data std (EDM's sigma_data)

    // n draws, [n, d] f64.
    Tensor sample(int64_t n, Generator& gen) const;
    // For each row y_i at sigma_i, one draw from p(x | y_i) (exact), [b, d] f64.
    Tensor sample_posterior(const Tensor& y, const std::vector<double>& sigma, Generator& gen) const;
    // The ideal denoiser E[x | y_i] at sigma_i: y [b, d] (any float dtype), sigma b values; [b, d] f64.
    Tensor denoise(const Tensor& y, const std::vector<double>& sigma) const;
};

}  // namespace stf::experiments
