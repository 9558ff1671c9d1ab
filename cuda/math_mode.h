// Whether float32 GEMMs (cuBLAS) and convolutions (cuDNN) may run on TF32 tensor cores.
//
// TF32 keeps float32's exponent but only 10 mantissa bits, so a matmul is several times faster on
// Ampere/Hopper but agrees with float32 to about 1e-3, not 1e-6. Default off: results then match the
// CPU backend to float32 rounding, which the parity tests rely on. Turn it on for speed in training.
//
// Header-only on purpose: the flag is plain C++ and exists in every build, so code above the CUDA
// layer can set it without caring whether the CUDA backend was compiled in. blas.cu and conv.cu read
// it at each call; conv.cu caches a separate algorithm choice per setting.
#pragma once
#include <atomic>

namespace stf::cuda {

namespace detail {
inline std::atomic<bool> allow_tf32_flag{false};
}  // namespace detail

inline void set_allow_tf32(bool allow) { detail::allow_tf32_flag.store(allow, std::memory_order_relaxed); }
inline bool allow_tf32() { return detail::allow_tf32_flag.load(std::memory_order_relaxed); }

}  // namespace stf::cuda
