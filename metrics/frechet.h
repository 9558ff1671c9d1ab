// The Fréchet distance between two sets of feature vectors, each summarised by its mean and covariance
// (the formula behind FID):
//   FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}),
// all in double. The symmetric square roots come from our own cyclic Jacobi eigendecomposition (no LAPACK:
// at a few hundred dimensions it takes milliseconds). The middle form, rather than sqrtm(S1 S2), keeps every
// matrix symmetric positive semi-definite, so the square roots are real; rounding can make tiny eigenvalues
// negative, and those are clipped to 0.
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
// Eigendecomposition of a symmetric matrix (a: n x n row-major; only symmetry up to rounding is assumed)
// by cyclic Jacobi rotations, until the off-diagonal part's Frobenius norm is below 1e-15 of the whole (or 100 sweeps).
SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n);
// The symmetric positive semi-definite square root; eigenvalues below 0 (rounding) count as 0.
std::vector<double> sqrt_psd(const std::vector<double>& a, int64_t n);
// tr((a)^{1/2}) for a symmetric PSD a: the sum of the square roots of its (clipped) eigenvalues.
double trace_sqrt_psd(const std::vector<double>& a, int64_t n);

// Throws stf::Error when the dimensions differ.
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

}  // namespace stf::metrics
