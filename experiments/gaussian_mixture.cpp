#include "experiments/gaussian_mixture.h"

#include <algorithm>
#include <cmath>

namespace stf::experiments {

GaussianMixture GaussianMixture::make(int64_t dim, int64_t modes, double radius, double s, uint64_t seed) {
    STF_CHECK(dim >= 1 && modes >= 1 && s > 0 && radius >= 0,
              "GaussianMixture: need dim >= 1, modes >= 1, s > 0 and radius >= 0, got dim " << dim << ", modes "
                                                                                             << modes << ", s " << s);
    std::vector<double> mu(static_cast<size_t>(modes * dim), 0.0);
    Generator gen(seed);
    std::vector<double> z = ops::randn({modes, dim}, gen, DType::F64).to_vector();
    for (int64_t k = 0; k < modes; ++k) {
        if (k < 2 * dim) {
            mu[k * dim + k / 2] = (k % 2 == 0 ? radius : -radius);
        } else {
            double norm = 0;
            for (int64_t i = 0; i < dim; ++i) norm += z[k * dim + i] * z[k * dim + i];
            norm = std::sqrt(std::max(norm, 1e-300));
            for (int64_t i = 0; i < dim; ++i) mu[k * dim + i] = radius * z[k * dim + i] / norm;
        }
    }
    GaussianMixture g;
    g.means = ops::from_vector(mu, {modes, dim}, DType::F64);
    double total = 0.5 * static_cast<double>(modes) * static_cast<double>(modes + 1);
    for (int64_t k = 0; k < modes; ++k) g.weights.push_back(static_cast<double>(k + 1) / total);
    g.s = s;
    return g;
}

std::vector<double> GaussianMixture::mean() const {
    const int64_t K = modes(), d = dim();
    std::vector<double> mu = means.to_vector(), m(static_cast<size_t>(d), 0.0);
    for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < d; ++i) m[i] += weights[k] * mu[k * d + i];
    return m;
}

double GaussianMixture::data_std() const {
    const int64_t K = modes(), d = dim();
    std::vector<double> mu = means.to_vector(), m = mean();
    double spread = 0;
    for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < d; ++i) spread += weights[k] * (mu[k * d + i] - m[i]) * (mu[k * d + i] - m[i]);
    return std::sqrt(s * s + spread / static_cast<double>(d));
}

// Index of the mode whose cumulative weight first exceeds u.
static int64_t pick(const std::vector<double>& cumulative, double u) {
    auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
    return std::min<int64_t>(static_cast<int64_t>(it - cumulative.begin()), static_cast<int64_t>(cumulative.size()) - 1);
}

Tensor GaussianMixture::sample(int64_t n, Generator& gen) const {
    const int64_t K = modes(), d = dim();
    std::vector<double> cum(static_cast<size_t>(K));
    double c = 0;
    for (int64_t k = 0; k < K; ++k) cum[k] = (c += weights[k]);
    std::vector<double> u = ops::rand({n}, gen, DType::F64).to_vector();
    std::vector<double> z = ops::randn({n, d}, gen, DType::F64).to_vector();
    std::vector<double> mu = means.to_vector(), x(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i) {
        int64_t k = pick(cum, u[i]);
        for (int64_t j = 0; j < d; ++j) x[i * d + j] = mu[k * d + j] + s * z[i * d + j];
    }
    return ops::from_vector(x, {n, d}, DType::F64);
}

// Posterior responsibilities r_k(y_i), row-major [b, K].
static std::vector<double> responsibilities(const std::vector<double>& y, const std::vector<double>& mu,
                                            const std::vector<double>& w, double s, const std::vector<double>& sigma,
                                            int64_t b, int64_t K, int64_t d) {
    std::vector<double> r(static_cast<size_t>(b * K));
    for (int64_t i = 0; i < b; ++i) {
        double v = s * s + sigma[i] * sigma[i], mx = -INFINITY;
        for (int64_t k = 0; k < K; ++k) {
            double dist = 0;
            for (int64_t j = 0; j < d; ++j) dist += (y[i * d + j] - mu[k * d + j]) * (y[i * d + j] - mu[k * d + j]);
            r[i * K + k] = std::log(w[k]) - dist / (2 * v);
            mx = std::max(mx, r[i * K + k]);
        }
        double z = 0;
        for (int64_t k = 0; k < K; ++k) z += (r[i * K + k] = std::exp(r[i * K + k] - mx));
        for (int64_t k = 0; k < K; ++k) r[i * K + k] /= z;
    }
    return r;
}

Tensor GaussianMixture::denoise(const Tensor& y, const std::vector<double>& sigma) const {
    const int64_t K = modes(), d = dim();
    STF_CHECK(y.ndim() == 2 && y.size(1) == d && static_cast<int64_t>(sigma.size()) == y.size(0),
              "GaussianMixture::denoise: expected y [b, " << d << "] and b sigmas, got " << describe(y) << " and "
                                                          << sigma.size() << " sigmas");
    const int64_t b = y.size(0);
    std::vector<double> yv = y.to_vector(), mu = means.to_vector();
    std::vector<double> r = responsibilities(yv, mu, weights, s, sigma, b, K, d), out(static_cast<size_t>(b * d), 0.0);
    for (int64_t i = 0; i < b; ++i) {
        double s2 = s * s, t2 = sigma[i] * sigma[i], v = s2 + t2;
        for (int64_t k = 0; k < K; ++k) {
            double rk = r[i * K + k];
            if (rk == 0) continue;
            for (int64_t j = 0; j < d; ++j) out[i * d + j] += rk * (s2 * yv[i * d + j] + t2 * mu[k * d + j]) / v;
        }
    }
    return ops::from_vector(out, {b, d}, DType::F64);
}

Tensor GaussianMixture::sample_posterior(const Tensor& y, const std::vector<double>& sigma, Generator& gen) const {
    const int64_t K = modes(), d = dim();
    STF_CHECK(y.ndim() == 2 && y.size(1) == d && static_cast<int64_t>(sigma.size()) == y.size(0),
              "GaussianMixture::sample_posterior: expected y [b, " << d << "] and b sigmas, got " << describe(y));
    const int64_t b = y.size(0);
    std::vector<double> yv = y.to_vector(), mu = means.to_vector();
    std::vector<double> r = responsibilities(yv, mu, weights, s, sigma, b, K, d);
    std::vector<double> u = ops::rand({b}, gen, DType::F64).to_vector();
    std::vector<double> z = ops::randn({b, d}, gen, DType::F64).to_vector();
    std::vector<double> out(static_cast<size_t>(b * d));
    for (int64_t i = 0; i < b; ++i) {
        std::vector<double> cum(static_cast<size_t>(K));
        double c = 0;
        for (int64_t k = 0; k < K; ++k) cum[k] = (c += r[i * K + k]);
        int64_t k = pick(cum, u[i] * c);
        double s2 = s * s, t2 = sigma[i] * sigma[i], v = s2 + t2, sd = std::sqrt(s2 * t2 / v);
        for (int64_t j = 0; j < d; ++j) out[i * d + j] = (s2 * yv[i * d + j] + t2 * mu[k * d + j]) / v + sd * z[i * d + j];
    }
    return ops::from_vector(out, {b, d}, DType::F64);
}

}  // namespace stf::experiments
