// CPU twin of cuda/residual.cu: y = ((a + b) + bias[ch]) * scale over contiguous [n, c, inner], one
// pass, in the element type T (so float agrees with the CUDA kernel bit for bit). a and b may be
// stored as bf16 (mixed precision): they are converted to T as they are loaded.
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T, class TA, class TB>
void scaled_residual(int64_t n, int64_t c, int64_t inner, const TA* a, const TB* b, const T* bias, T scale, T* y) {
    const int64_t rows = n * c;
#pragma omp parallel for schedule(static) if (rows * inner >= (1 << 15))
    for (int64_t row = 0; row < rows; ++row) {
        const T bv = bias ? bias[row % c] : T(0);
        const int64_t at = row * inner;
        for (int64_t i = 0; i < inner; ++i) y[at + i] = ((static_cast<T>(a[at + i]) + static_cast<T>(b[at + i])) + bv) * scale;
    }
}

template void scaled_residual<float>(int64_t, int64_t, int64_t, const float*, const float*, const float*, float,
                                     float*);
template void scaled_residual<double>(int64_t, int64_t, int64_t, const double*, const double*, const double*, double,
                                      double*);
template void scaled_residual<float, bf16, float>(int64_t, int64_t, int64_t, const bf16*, const float*, const float*,
                                                  float, float*);
template void scaled_residual<float, bf16, bf16>(int64_t, int64_t, int64_t, const bf16*, const bf16*, const float*,
                                                 float, float*);

}  // namespace stf::cpu
