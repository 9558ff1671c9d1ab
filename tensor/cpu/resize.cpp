// CPU twin of cuda/resize.cu: bilinear resizing of contiguous planes [planes, h, w] to [planes, out_h,
// out_w], half-pixel centres or TensorFlow 1's alignment (cuda/pool_math.h). Inference only: no backward.
#include <vector>

#include "cuda/pool_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T>
void resize_bilinear(int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w, bool half_pixel, const T* x,
                     T* y) {
    // The taps depend only on the output row or column: computed once for all planes.
    std::vector<pool::Tap<T>> rows(static_cast<size_t>(out_h)), cols(static_cast<size_t>(out_w));
    for (int64_t i = 0; i < out_h; ++i) rows[i] = pool::bilinear_tap<T>(i, h, out_h, half_pixel);
    for (int64_t j = 0; j < out_w; ++j) cols[j] = pool::bilinear_tap<T>(j, w, out_w, half_pixel);
#pragma omp parallel for schedule(static) if (planes * out_h * out_w >= (1 << 14))
    for (int64_t p = 0; p < planes; ++p) {
        const T* xp = x + p * h * w;
        T* yp = y + p * out_h * out_w;
        for (int64_t i = 0; i < out_h; ++i) {
            const pool::Tap<T> r = rows[i];
            const T* top = xp + r.i0 * w;
            const T* bottom = xp + r.i1 * w;
            for (int64_t j = 0; j < out_w; ++j) {
                const pool::Tap<T> c = cols[j];
                const T upper = (T(1) - c.lambda) * top[c.i0] + c.lambda * top[c.i1];
                const T lower = (T(1) - c.lambda) * bottom[c.i0] + c.lambda * bottom[c.i1];
                yp[i * out_w + j] = (T(1) - r.lambda) * upper + r.lambda * lower;
            }
        }
    }
}

template void resize_bilinear<float>(int64_t, int64_t, int64_t, int64_t, int64_t, bool, const float*, float*);
template void resize_bilinear<double>(int64_t, int64_t, int64_t, int64_t, int64_t, bool, const double*, double*);

}  // namespace stf::cpu
