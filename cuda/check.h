// Return-code checks for CUDA, cuBLAS and cuDNN calls: on failure, throw with the call, file and line.
// Only .cu files (and CUDA-enabled .cpp files) include this.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <sstream>
#include <stdexcept>

namespace stf::cuda::detail {
[[noreturn]] inline void fail(const char* lib, const char* what, const char* expr, const char* file, int line) {
    std::ostringstream os;
    os << lib << " error: " << what << "\n  in " << expr << "\n  at " << file << ":" << line;
    throw std::runtime_error(os.str());
}
inline const char* cublas_status_name(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        default: return "cuBLAS status (unknown)";
    }
}
}  // namespace stf::cuda::detail

#define STF_CUDA_CHECK(expr)                                                                           \
    do {                                                                                               \
        cudaError_t stf_err_ = (expr);                                                                 \
        if (stf_err_ != cudaSuccess)                                                                   \
            ::stf::cuda::detail::fail("CUDA", cudaGetErrorString(stf_err_), #expr, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: catches bad launch configurations at the launch site.
#define STF_CUDA_CHECK_LAUNCH() STF_CUDA_CHECK(cudaGetLastError())

#define STF_CUBLAS_CHECK(expr)                                                                               \
    do {                                                                                                     \
        cublasStatus_t stf_st_ = (expr);                                                                     \
        if (stf_st_ != CUBLAS_STATUS_SUCCESS)                                                                \
            ::stf::cuda::detail::fail("cuBLAS", ::stf::cuda::detail::cublas_status_name(stf_st_), #expr, __FILE__, \
                                      __LINE__);                                                             \
    } while (0)

#define STF_CUDNN_CHECK(expr)                                                                           \
    do {                                                                                                \
        cudnnStatus_t stf_st_ = (expr);                                                                 \
        if (stf_st_ != CUDNN_STATUS_SUCCESS)                                                            \
            ::stf::cuda::detail::fail("cuDNN", cudnnGetErrorString(stf_st_), #expr, __FILE__, __LINE__); \
    } while (0)
