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

// LAPACK (OpenBLAS ships it), with gfortran's hidden lengths of the character arguments.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t jobz_len,
                        size_t uplo_len);

namespace {

// Eigenvalues (ascending) and, with vectors, the eigenvectors of the symmetrised a, in LAPACK's
// column-major layout: column k of `a` is the eigenvector of values[k].
std::vector<double> lapack_eigen(std::vector<double>& a, int64_t n, bool vectors) {
    STF_CHECK(n >= 1 && n <= 46340 && static_cast<int64_t>(a.size()) == n * n,
              "symmetric_eigen: " << a.size() << " values for a " << n << " x " << n << " matrix");
    for (int64_t i = 0; i < n; ++i)  // symmetrise: rounding in the caller may leave a[i][j] != a[j][i]
        for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = a[j * n + i] = 0.5 * (a[i * n + j] + a[j * n + i]);
    const char jobz = vectors ? 'V' : 'N', uplo = 'L';
    const int nn = static_cast<int>(n), query = -1;
    int info = 0, liwork = 0;
    double lwork_size = 0;
    std::vector<double> values(static_cast<size_t>(n));
    dsyevd_(&jobz, &uplo, &nn, a.data(), &nn, values.data(), &lwork_size, &query, &liwork, &query, &info, 1, 1);
    STF_CHECK(info == 0, "symmetric_eigen: LAPACK dsyevd workspace query failed (info " << info << ")");
    int lwork = static_cast<int>(lwork_size);
    std::vector<double> work(static_cast<size_t>(std::max(lwork, 1)));
    std::vector<int> iwork(static_cast<size_t>(std::max(liwork, 1)));
    dsyevd_(&jobz, &uplo, &nn, a.data(), &nn, values.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
    STF_CHECK(info == 0, "symmetric_eigen: LAPACK dsyevd failed (info " << info
                                                                        << "): the matrix has non-finite entries or "
                                                                           "the solver did not converge");
    return values;
}

Tensor as_matrix(const std::vector<double>& a, int64_t n) { return ops::from_vector(a, {n, n}, DType::F64); }

}  // namespace

SymmetricEigen symmetric_eigen(const std::vector<double>& a_in, int64_t n) {
    std::vector<double> a = a_in;
    SymmetricEigen e;
    e.values = lapack_eigen(a, n, true);
    e.vectors.resize(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) e.vectors[i * n + k] = a[k * n + i];  // column-major to row-major
    return e;
}

std::vector<double> sqrt_psd(const std::vector<double>& a, int64_t n) {
    SymmetricEigen e = symmetric_eigen(a, n);
    // V diag(sqrt(lambda)) V^T as one GEMM of V, its columns scaled, with V^T.
    std::vector<double> scaled = e.vectors;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k) scaled[i * n + k] *= std::sqrt(std::max(e.values[k], 0.0));
    return ops::matmul(as_matrix(scaled, n), as_matrix(e.vectors, n), false, true).to_vector();
}

double trace_sqrt_psd(const std::vector<double>& a_in, int64_t n) {
    std::vector<double> a = a_in;
    double t = 0;
    for (double v : lapack_eigen(a, n, false)) t += std::sqrt(std::max(v, 0.0));
    return t;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
    STF_CHECK(a.dim == b.dim && a.dim >= 1, "frechet_distance: feature dimensions differ (" << a.dim << " vs "
                                                                                           << b.dim << ")");
    for (const FeatureStats* s : {&a, &b})
        STF_CHECK(static_cast<int64_t>(s->mean.size()) == s->dim && static_cast<int64_t>(s->cov.size()) == s->dim * s->dim,
                  "frechet_distance: statistics of dimension " << s->dim << " hold a mean of " << s->mean.size()
                                                               << " and a covariance of " << s->cov.size() << " values");
    int64_t n = a.dim;
    double mean_term = 0;
    for (int64_t d = 0; d < n; ++d) mean_term += (a.mean[d] - b.mean[d]) * (a.mean[d] - b.mean[d]);
    double trace_a = 0, trace_b = 0;
    for (int64_t d = 0; d < n; ++d) {
        trace_a += a.cov[d * n + d];
        trace_b += b.cov[d * n + d];
    }
    Tensor root_a = as_matrix(sqrt_psd(a.cov, n), n);
    // S1^1/2 S2 S1^1/2
    std::vector<double> middle = ops::matmul(ops::matmul(root_a, as_matrix(b.cov, n)), root_a).to_vector();
    return mean_term + trace_a + trace_b - 2 * trace_sqrt_psd(middle, n);
}

FeatureAccumulator::FeatureAccumulator(int64_t dim) : dim_(dim) {
    STF_CHECK(dim >= 1, "FeatureAccumulator: dimension must be positive, got " << dim);
    sum_ = ops::zeros({dim}, DType::F64);
    sum_outer_ = ops::zeros({dim, dim}, DType::F64);
}

void FeatureAccumulator::add(const Tensor& features) {
    STF_CHECK(features.ndim() == 2 && features.size(1) == dim_,
              "FeatureAccumulator: expected features [b, " << dim_ << "], got " << describe(features));
    Tensor x = ops::to(ops::to(features, Device::cpu()), DType::F64);
    ops::binary_(BinaryOp::Add, sum_, ops::sum(x, {0}));
    ops::binary_(BinaryOp::Add, sum_outer_, ops::matmul(x, x, true, false));
    count_ += features.size(0);
}

FeatureStats FeatureAccumulator::finish() const {
    STF_CHECK(count_ >= 2, "FeatureAccumulator: needs at least 2 feature vectors, got " << count_);
    FeatureStats s;
    s.count = count_;
    s.dim = dim_;
    const double n = static_cast<double>(count_);
    s.mean = sum_.to_vector();
    for (double& m : s.mean) m /= n;
    s.cov = sum_outer_.to_vector();
    for (int64_t i = 0; i < dim_; ++i)
        for (int64_t j = 0; j < dim_; ++j)
            s.cov[i * dim_ + j] = (s.cov[i * dim_ + j] - n * s.mean[i] * s.mean[j]) / (n - 1);
    return s;
}


}  // namespace stf::metrics
