// GEMM on cuBLAS for stf's row-major matrices.
//
// cuBLAS is column-major (its Fortran heritage), stf is row-major. A row-major matrix X[r, c] with
// leading dimension ld occupies exactly the same bytes as the column-major matrix X^T[c, r] with the
// same ld. So rather than transposing any data we ask cuBLAS for the transpose of the product:
//
//     C = op(A) op(B)   <=>   C^T = op(B)^T op(A)^T
//
// cuBLAS already sees C^T, B^T and A^T when it reads our buffers, so the call is simply the original
// one with A and B swapped and m and n swapped; each operand keeps its own transpose flag.
#include <algorithm>
#include <climits>
#include <sstream>
#include <stdexcept>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/math_mode.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

// The classic cuBLAS entry points take int sizes; refuse loudly rather than truncate silently.
int checked_int(int64_t v, const char* what) {
    if (v < 0 || v > INT_MAX) {
        std::ostringstream os;
        os << "cuda::gemm: " << what << " = " << v << " is negative or does not fit in an int";
        throw std::invalid_argument(os.str());
    }
    return static_cast<int>(v);
}

// C = beta * C for k == 0, where the product is an empty sum. beta == 0 writes zeros, so garbage (even
// NaN) in C is dropped, as BLAS and the CPU twin do. A kernel rather than cuBLAS, whose handling of k == 0
// is not documented.
__global__ void scale_matrices(int64_t total, int64_t m, int64_t n, float beta, float* c, int64_t ldc,
                               int64_t stride_c) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t j = idx % n, i = (idx / n) % m, b = idx / (n * m);
        float* p = c + b * stride_c + i * ldc + j;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int64_t batch, int64_t stride_a,
          int64_t stride_b, int64_t stride_c) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) {
        std::ostringstream os;
        os << "cuda::gemm: negative size (m " << m << ", n " << n << ", k " << k << ", batch " << batch << ")";
        throw std::invalid_argument(os.str());
    }
    if (m == 0 || n == 0 || batch == 0) return;  // no output element: nothing to do (cuBLAS would reject ldc 0)
    if (k == 0) {
        if (beta == 1.0f) return;
        const int64_t total = batch * m * n;
        const int threads = 256;
        const int blocks = int(std::min<int64_t>((total + threads - 1) / threads, 4096));
        scale_matrices<<<blocks, threads, 0, static_cast<cudaStream_t>(stream())>>>(total, m, n, beta, c, ldc, stride_c);
        STF_CUDA_CHECK_LAUNCH();
        return;
    }

    auto handle = static_cast<cublasHandle_t>(cublas_handle());
    // The handle is shared with every other cuBLAS user in the process, so stream and math mode are set
    // on each call (both are cheap host-side field writes) instead of trusting whoever set them last.
    STF_CUBLAS_CHECK(cublasSetStream(handle, static_cast<cudaStream_t>(stream())));
    // Since CUDA 11, CUBLAS_DEFAULT_MATH computes float32 GEMMs in true float32; TF32 tensor cores are
    // used only when asked for explicitly.
    STF_CUBLAS_CHECK(cublasSetMathMode(handle, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));

    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int im = checked_int(m, "m"), in = checked_int(n, "n"), ik = checked_int(k, "k");
    const int ilda = checked_int(lda, "lda"), ildb = checked_int(ldb, "ldb");
    const int ildc = checked_int(ldc, "ldc");

    // Swapped operands: cuBLAS computes the column-major [n, m] matrix C^T = op(B)^T op(A)^T.
    // With beta == 0 cuBLAS does not read C, so C may hold garbage (even NaN) on entry.
    if (batch == 1) {
        STF_CUBLAS_CHECK(
            cublasSgemm(handle, op_b, op_a, in, im, ik, &alpha, b, ildb, a, ilda, &beta, c, ildc));
    } else {
        STF_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, op_b, op_a, in, im, ik, &alpha, b, ildb, stride_b, a, ilda,
                                                   stride_a, &beta, c, ildc, stride_c,
                                                   checked_int(batch, "batch")));
    }
}

}  // namespace stf::cuda
