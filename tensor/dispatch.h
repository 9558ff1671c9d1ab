// How a raw op picks its kernel: by device and dtype. Private to tensor/.
#pragma once
#include <type_traits>

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

// Calls launch, a lambda that calls CUDA launchers, and returns what it returns. In a CPU-only build
// (where no CUDA tensor can exist) it throws instead: the launchers are declared there but not
// defined, and since launch is never called its body is never compiled into the program.
template <class Launch>
std::invoke_result_t<Launch&> launch_cuda([[maybe_unused]] const char* op, [[maybe_unused]] Launch&& launch) {
#if STF_WITH_CUDA
    return launch();
#else
    no_cuda(op);
#endif
}

// The one place where an op picks its kernel by backend_of(t): for a CPU tensor cpu, a lambda
// templated on the element type, runs with T = float or double; for a CUDA one, the float32 launch
// (through launch_cuda). An op reads
//     dispatch(x, "softmax",
//              [&]<class T>() { cpu::softmax_rows<T>(rows, cols, y.data<T>(), x.data<T>(), log); },
//              [&] { cuda::softmax_rows(rows, cols, y.data<float>(), x.data<float>(), log); });
template <class Cpu, class Cuda> void dispatch(const Tensor& t, const char* op, Cpu&& cpu, Cuda&& cuda) {
    switch (backend_of(t, op)) {
        case Backend::CpuF32: cpu.template operator()<float>(); return;
        case Backend::CpuF64: cpu.template operator()<double>(); return;
        case Backend::CudaF32: launch_cuda(op, cuda); return;
    }
}

}  // namespace stf::detail
