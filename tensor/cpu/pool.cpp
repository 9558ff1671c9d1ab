// CPU twins of cuda/pool.cu: max pooling and average pooling over contiguous planes [planes, h, w]; the
// windows come from cuda/pool_math.h. Inference only (Inception-v3's feature network for FID): no
// backward kernels. OpenMP over planes.
#include <limits>

#include "cuda/pool_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T>
void max_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, const T* x, T* y) {
    const int64_t oh_n = pool::out_size(h, kernel, stride, padding), ow_n = pool::out_size(w, kernel, stride, padding);
#pragma omp parallel for schedule(static) if (planes * oh_n * ow_n >= (1 << 14))
    for (int64_t p = 0; p < planes; ++p) {
        const T* xp = x + p * h * w;
        T* yp = y + p * oh_n * ow_n;
        for (int64_t oh = 0; oh < oh_n; ++oh)
            for (int64_t ow = 0; ow < ow_n; ++ow) {
                const pool::Window win = pool::window(oh, ow, h, w, kernel, stride, padding);
                T m = -std::numeric_limits<T>::infinity();
                for (int64_t i = win.h0; i < win.h1; ++i)
                    for (int64_t j = win.w0; j < win.w1; ++j) {
                        const T v = xp[i * w + j];
                        if (v > m || v != v) m = v;  // NaN propagates, as in PyTorch
                    }
                yp[oh * ow_n + ow] = m;
            }
    }
}

template <class T>
void avg_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, bool count_include_pad,
                const T* x, T* y) {
    const int64_t oh_n = pool::out_size(h, kernel, stride, padding), ow_n = pool::out_size(w, kernel, stride, padding);
#pragma omp parallel for schedule(static) if (planes * oh_n * ow_n >= (1 << 14))
    for (int64_t p = 0; p < planes; ++p) {
        const T* xp = x + p * h * w;
        T* yp = y + p * oh_n * ow_n;
        for (int64_t oh = 0; oh < oh_n; ++oh)
            for (int64_t ow = 0; ow < ow_n; ++ow) {
                const pool::Window win = pool::window(oh, ow, h, w, kernel, stride, padding);
                T sum = 0;
                for (int64_t i = win.h0; i < win.h1; ++i)
                    for (int64_t j = win.w0; j < win.w1; ++j) sum += xp[i * w + j];
                const int64_t count = count_include_pad ? int64_t(kernel) * kernel : (win.h1 - win.h0) * (win.w1 - win.w0);
                yp[oh * ow_n + ow] = sum / static_cast<T>(count);
            }
    }
}

template void max_pool2d<float>(int64_t, int64_t, int64_t, int, int, int, const float*, float*);
template void max_pool2d<double>(int64_t, int64_t, int64_t, int, int, int, const double*, double*);
template void avg_pool2d<float>(int64_t, int64_t, int64_t, int, int, int, bool, const float*, float*);
template void avg_pool2d<double>(int64_t, int64_t, int64_t, int, int, int, bool, const double*, double*);

}  // namespace stf::cpu
