// How a raw op picks its kernel: by device and dtype. Private to tensor/.
#pragma once
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"
#include "tensor/tensor.h"

namespace stf::detail {

enum class Backend { CpuF32, CpuF64, CudaF32 };

// The backend for a compute op on t: CPU float32/float64 or CUDA float32. bf16 is storage only.
inline Backend backend_of(const Tensor& t, const char* op) {
    if (t.dtype() == DType::BF16)
        throw Error(std::string(op) + ": bf16 tensors are storage only; convert " + describe(t) + " to f32 first");
    if (t.device().is_cpu()) return t.dtype() == DType::F32 ? Backend::CpuF32 : Backend::CpuF64;
    STF_CHECK(t.dtype() == DType::F32, op << ": float64 is CPU only (for gradient checks); got " << describe(t));
    return Backend::CudaF32;
}

// Inputs of one op must share device and dtype.
inline void check_same(const Tensor& a, const Tensor& b, const char* op) {
    STF_CHECK(a.device() == b.device(), op << ": tensors on different devices: " << describe(a) << " and " << describe(b));
    STF_CHECK(a.dtype() == b.dtype(), op << ": dtype mismatch: " << describe(a) << " and " << describe(b));
}

inline StridedLayout layout_of(const Tensor& t) {
    STF_CHECK(t.ndim() <= kMaxDims, "tensor " << describe(t) << " has more than " << kMaxDims << " dims");
    StridedLayout l;
    l.ndim = t.ndim();
    for (int d = 0; d < l.ndim; ++d) {
        l.sizes[d] = t.shape()[d];
        l.strides[d] = t.strides()[d];
    }
    return l;
}

[[noreturn]] inline void no_cuda(const char* op) {
    throw Error(std::string(op) + ": stf was built without CUDA");
}

}  // namespace stf::detail

// Calls a CUDA launcher in a CUDA build; throws in a CPU-only build (where no CUDA tensor can exist).
#if STF_WITH_CUDA
#define STF_CUDA_LAUNCH(op, ...) __VA_ARGS__
#else
#define STF_CUDA_LAUNCH(op, ...) ::stf::detail::no_cuda(op)
#endif
