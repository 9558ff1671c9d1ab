// The Fréchet distance between two sets of feature vectors, each summarised by its mean and covariance
// (the formula behind FID):
//   FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}),
// all in double. The symmetric square roots come from LAPACK's divide-and-conquer symmetric eigensolver
// (dsyevd, from OpenBLAS): at FID's 2048 dimensions a second or two. The middle form, rather than EDM's
// sqrtm(S1 S2) (a general, non-symmetric square root), keeps every matrix symmetric positive
// semi-definite, so the square roots are real and the trace is the same; rounding can make tiny
// eigenvalues negative, and those are clipped to 0.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace stf::metrics {

struct FeatureStats {
    int64_t count = 0, dim = 0;
    std::vector<double> mean;  // [dim]
    std::vector<double> cov;   // [dim x dim], row-major, unbiased (divides by count - 1)
};

// features: count x dim values, row-major. Needs count >= 2.
FeatureStats feature_stats(const std::vector<double>& features, int64_t count, int64_t dim);
// features: a 2-D tensor [count, dim] of any float dtype, on any device.
FeatureStats feature_stats(const Tensor& features);

struct SymmetricEigen {
    std::vector<double> values;   // [n], ascending
    std::vector<double> vectors;  // [n x n], row-major; column k is the eigenvector of values[k]
};
// Eigendecomposition of a symmetric matrix (a: n x n row-major; only symmetry up to rounding is assumed:
// it is symmetrised first) by LAPACK's dsyevd. Throws stf::Error if LAPACK reports a failure.
SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n);
// The symmetric positive semi-definite square root; eigenvalues below 0 (rounding) count as 0.
std::vector<double> sqrt_psd(const std::vector<double>& a, int64_t n);
// tr((a)^{1/2}) for a symmetric PSD a: the sum of the square roots of its (clipped) eigenvalues.
double trace_sqrt_psd(const std::vector<double>& a, int64_t n);

// Throws stf::Error when the dimensions differ or a statistic's size does not match its dimension.
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

// Mean and covariance of many feature vectors, added a batch at a time, as EDM's fid.py accumulates
// them: in float64, sum x and sum x x^T (a GEMM per batch), then mean = sum / n and
// cov = (sum x x^T - n mean mean^T) / (n - 1).
class FeatureAccumulator {
public:
    explicit FeatureAccumulator(int64_t dim);
    void add(const Tensor& features);  // [b, dim], any float dtype and device
    int64_t count() const { return count_; }
    FeatureStats finish() const;       // needs count() >= 2

private:
    int64_t dim_, count_ = 0;
    Tensor sum_, sum_outer_;  // float64 CPU: [dim], [dim, dim]
};

}  // namespace stf::metrics
