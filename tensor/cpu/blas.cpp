// Row-major GEMM on OpenBLAS: C = alpha * op(A) * op(B) + beta * C, repeated over a batch.
// OpenBLAS threads each call itself, so the batch loop stays serial (and must not run inside an
// OpenMP region: the pthread build of OpenBLAS warns and may hang there).
#include <cblas.h>
#include <climits>
#include <stdexcept>
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

// CBLAS takes 32-bit ints (unless OpenBLAS was built with INTERFACE64).
int blas_int(int64_t v) {
    if (v < 0 || v > INT_MAX) throw std::invalid_argument("cpu::gemm: dimension does not fit a BLAS int");
    return static_cast<int>(v);
}

CBLAS_TRANSPOSE trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans(ta), trans(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
               int ldb, double beta, double* c, int ldc) {
    cblas_dgemm(CblasRowMajor, trans(ta), trans(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// k == 0 leaves C = beta * C. Handled here because BLAS would also insist on lda >= 1 for an empty A.
// beta == 0 writes zeros rather than multiplying, so garbage (even NaN) in C is ignored, as in BLAS.
template <class T> void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

} // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
          int64_t stride_c) {
    if (m == 0 || n == 0) return;
    for (int64_t i = 0; i < batch; ++i) {
        T* ci = c + i * stride_c;
        if (k == 0) {
            scale_c(m, n, beta, ci, ldc);
            continue;
        }
        blas_gemm(trans_a, trans_b, blas_int(m), blas_int(n), blas_int(k), alpha, a + i * stride_a, blas_int(lda),
                  b + i * stride_b, blas_int(ldb), beta, ci, blas_int(ldc));
    }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t, int64_t, int64_t, int64_t, int64_t);

} // namespace stf::cpu
