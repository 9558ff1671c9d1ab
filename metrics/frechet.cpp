#include "metrics/frechet.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tensor/ops.h"

namespace stf::metrics {

FeatureStats feature_stats(const std::vector<double>& f, int64_t count, int64_t dim) {
    STF_CHECK(dim >= 1 && count >= 2, "feature_stats: needs at least 2 feature vectors of dimension >= 1, got "
                                          << count << " of dimension " << dim);
    STF_CHECK(static_cast<int64_t>(f.size()) == count * dim,
              "feature_stats: " << f.size() << " values for " << count << " x " << dim);
    FeatureStats s;
    s.count = count;
    s.dim = dim;
    s.mean.assign(static_cast<size_t>(dim), 0.0);
    for (int64_t i = 0; i < count; ++i)
        for (int64_t d = 0; d < dim; ++d) s.mean[d] += f[i * dim + d];
    for (double& m : s.mean) m /= static_cast<double>(count);
    // Centre first, then accumulate: the two-pass form loses no precision to large means.
    std::vector<double> centred(f.size());
    for (int64_t i = 0; i < count; ++i)
        for (int64_t d = 0; d < dim; ++d) centred[i * dim + d] = f[i * dim + d] - s.mean[d];
    s.cov.assign(static_cast<size_t>(dim * dim), 0.0);
    for (int64_t i = 0; i < count; ++i) {
        const double* row = &centred[i * dim];
        for (int64_t a = 0; a < dim; ++a)
            for (int64_t b = a; b < dim; ++b) s.cov[a * dim + b] += row[a] * row[b];
    }
    for (int64_t a = 0; a < dim; ++a)
        for (int64_t b = a; b < dim; ++b) {
            double v = s.cov[a * dim + b] / static_cast<double>(count - 1);
            s.cov[a * dim + b] = v;
            s.cov[b * dim + a] = v;
        }
    return s;
}

FeatureStats feature_stats(const Tensor& features) {
    STF_CHECK(features.ndim() == 2, "feature_stats: expected features [count, dim], got " << describe(features));
    return feature_stats(features.to_vector(), features.size(0), features.size(1));
}

namespace {

// Applies the rotation that zeroes a[p][q] to a (both sides) and to the eigenvector matrix v (right side).
void jacobi_rotate(std::vector<double>& a, std::vector<double>& v, int64_t n, int64_t p, int64_t q) {
    double apq = a[p * n + q];
    if (apq == 0) return;
    double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
    // The smaller root of t^2 + 2 t theta - 1 = 0: the rotation angle stays below pi/4, which converges.
    double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
    double c = 1 / std::sqrt(t * t + 1), s = t * c;
    for (int64_t k = 0; k < n; ++k) {  // columns p and q
        double akp = a[k * n + p], akq = a[k * n + q];
        a[k * n + p] = c * akp - s * akq;
        a[k * n + q] = s * akp + c * akq;
    }
    for (int64_t k = 0; k < n; ++k) {  // rows p and q
        double apk = a[p * n + k], aqk = a[q * n + k];
        a[p * n + k] = c * apk - s * aqk;
        a[q * n + k] = s * apk + c * aqk;
    }
    for (int64_t k = 0; k < n; ++k) {
        double vkp = v[k * n + p], vkq = v[k * n + q];
        v[k * n + p] = c * vkp - s * vkq;
        v[k * n + q] = s * vkp + c * vkq;
    }
}

double off_diagonal_mass(const std::vector<double>& a, int64_t n) {
    double off = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
            if (i != j) off += a[i * n + j] * a[i * n + j];
    return off;
}

}  // namespace

SymmetricEigen symmetric_eigen(const std::vector<double>& a_in, int64_t n) {
    STF_CHECK(n >= 1 && static_cast<int64_t>(a_in.size()) == n * n,
              "symmetric_eigen: " << a_in.size() << " values for a " << n << " x " << n << " matrix");
    std::vector<double> a = a_in;
    for (int64_t i = 0; i < n; ++i)  // symmetrise: rounding in the caller may leave a[i][j] != a[j][i]
        for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = a[j * n + i] = 0.5 * (a[i * n + j] + a[j * n + i]);
    std::vector<double> v(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i) v[i * n + i] = 1;
    double total = std::inner_product(a.begin(), a.end(), a.begin(), 0.0);
    for (int sweep = 0; sweep < 100 && off_diagonal_mass(a, n) > 1e-30 * total; ++sweep)
        for (int64_t p = 0; p < n; ++p)
            for (int64_t q = p + 1; q < n; ++q) jacobi_rotate(a, v, n, p, q);
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return a[x * n + x] < a[y * n + y]; });
    SymmetricEigen e;
    e.values.resize(static_cast<size_t>(n));
    e.vectors.resize(static_cast<size_t>(n * n));
    for (int64_t k = 0; k < n; ++k) {
        e.values[k] = a[order[k] * n + order[k]];
        for (int64_t i = 0; i < n; ++i) e.vectors[i * n + k] = v[i * n + order[k]];
    }
    return e;
}

std::vector<double> sqrt_psd(const std::vector<double>& a, int64_t n) {
    SymmetricEigen e = symmetric_eigen(a, n);
    std::vector<double> out(static_cast<size_t>(n * n), 0.0);
    for (int64_t k = 0; k < n; ++k) {
        double r = std::sqrt(std::max(e.values[k], 0.0));
        if (r == 0) continue;
        for (int64_t i = 0; i < n; ++i) {
            double vi = e.vectors[i * n + k] * r;
            for (int64_t j = 0; j < n; ++j) out[i * n + j] += vi * e.vectors[j * n + k];
        }
    }
    return out;
}

double trace_sqrt_psd(const std::vector<double>& a, int64_t n) {
    double t = 0;
    for (double v : symmetric_eigen(a, n).values) t += std::sqrt(std::max(v, 0.0));
    return t;
}

// c = a * b for n x n row-major matrices.
static std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    std::vector<double> c(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) {
            double aik = a[i * n + k];
            for (int64_t j = 0; j < n; ++j) c[i * n + j] += aik * b[k * n + j];
        }
    return c;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
    STF_CHECK(a.dim == b.dim && a.dim >= 1, "frechet_distance: feature dimensions differ (" << a.dim << " vs "
                                                                                           << b.dim << ")");
    int64_t n = a.dim;
    double mean_term = 0;
    for (int64_t d = 0; d < n; ++d) mean_term += (a.mean[d] - b.mean[d]) * (a.mean[d] - b.mean[d]);
    double trace_a = 0, trace_b = 0;
    for (int64_t d = 0; d < n; ++d) {
        trace_a += a.cov[d * n + d];
        trace_b += b.cov[d * n + d];
    }
    std::vector<double> root_a = sqrt_psd(a.cov, n);
    std::vector<double> middle = matmul(matmul(root_a, b.cov, n), root_a, n);  // S1^1/2 S2 S1^1/2
    return mean_term + trace_a + trace_b - 2 * trace_sqrt_psd(middle, n);
}

}  // namespace stf::metrics
