// Squared distances between noisy samples and reference images: the logits of the STF target.
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T> void sq_distances(int64_t b, int64_t n, int64_t d, const T* y, const T* x, T* out) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const T* yi = y + i * d;
            const T* xj = x + j * d;
            double acc = 0;  // double: the CPU twin is the reference the CUDA kernel is checked against
            for (int64_t k = 0; k < d; ++k) {
                double diff = static_cast<double>(yi[k]) - static_cast<double>(xj[k]);
                acc += diff * diff;
            }
            out[i * n + j] = static_cast<T>(acc);
        }
}

template void sq_distances<float>(int64_t, int64_t, int64_t, const float*, const float*, float*);
template void sq_distances<double>(int64_t, int64_t, int64_t, const double*, const double*, double*);

}  // namespace stf::cpu
