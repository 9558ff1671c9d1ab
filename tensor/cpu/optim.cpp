// CPU twins of cuda/optim.cu: Adam and the EMA as one pass over each tensor. The arithmetic is
// cuda/optim_math.h; without FMA instructions in the build, the compiler performs it as written.
#include "cuda/optim_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <class T>
void adam_update(int64_t n, T* p, const T* g, T* m, T* v, const optim::AdamConstants<T>& k) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) optim::adam_element(k, g[i], p[i], m[i], v[i]);
}

template <class T> void ema_update(int64_t n, T* ema, const T* net, T beta) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) ema[i] = optim::ema_element(ema[i], net[i], beta);
}

#define STF_INSTANTIATE(T)                                                                             \
    template void adam_update<T>(int64_t, T*, const T*, T*, T*, const optim::AdamConstants<T>&);      \
    template void ema_update<T>(int64_t, T*, const T*, T);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

}  // namespace stf::cpu
