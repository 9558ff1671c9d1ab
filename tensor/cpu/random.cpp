// Random fills. Every element's draw is a pure function of (i, offset, seed) through Philox (see
// cuda/philox.h), so the loops parallelise freely and the CUDA kernels produce the same numbers.
// The draw is always made in float, exactly as on the GPU, and only then widened and scaled.
#include "cuda/philox.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 12;  // Philox is ~40 integer ops per draw: parallel pays early

} // namespace

template <class T> void uniform(int64_t n, T* out, double lo, double hi, uint64_t seed, uint64_t offset) {
    const T l = static_cast<T>(lo), h = static_cast<T>(hi);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = l + (h - l) * static_cast<T>(philox::uniform(i, offset, seed));
}

template <class T> void normal(int64_t n, T* out, double mean, double std, uint64_t seed, uint64_t offset) {
    const T m = static_cast<T>(mean), s = static_cast<T>(std);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = m + s * static_cast<T>(philox::normal(i, offset, seed));
}

// p is compared in T: for float that is the float p the CUDA kernel receives.
template <class T> void bernoulli(int64_t n, T* out, double p, uint64_t seed, uint64_t offset) {
    const T pt = static_cast<T>(p);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(philox::uniform(i, offset, seed)) < pt ? T(1) : T(0);
}

#define STF_INSTANTIATE(T)                                                                    \
    template void uniform<T>(int64_t, T*, double, double, uint64_t, uint64_t);               \
    template void normal<T>(int64_t, T*, double, double, uint64_t, uint64_t);                \
    template void bernoulli<T>(int64_t, T*, double, uint64_t, uint64_t);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
