// EDM's augmentation kernels on the CPU: pixel blitting and the geometric transformation (reflect
// padding, sym6 2x upsampling, bilinear sampling, sym6 2x downsampling). The formulas live in
// cuda/augment_math.h, shared with the CUDA kernels; these loops only walk the pixels.
#include <vector>
#include "cuda/augment_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T>
void augment_blit(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const T* x, T* y) {
    const int64_t hw = h * w;
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < n * c; ++plane) {
        const int32_t* p = params + (plane / c) * augment::kBlitParams;
        const T* src = x + plane * hw;
        T* dst = y + plane * hw;
        for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) dst[i * w + j] = src[augment::blit_source(p, h, w, i, j)];
    }
}

template <class T>
void augment_geometric(int64_t n, int64_t c, int64_t h, int64_t w, const T* matrices, int64_t pad_x0, int64_t pad_y0,
                       int64_t pad_x1, int64_t pad_y1, const T* x, T* y) {
    const augment::Padding pad{pad_x0, pad_y0, pad_x1, pad_y1};
    const int64_t rows = augment::sampled_rows(h), cols = augment::sampled_cols(w);
#pragma omp parallel
    {
        std::vector<T> s(static_cast<size_t>(rows * cols));  // one plane of the sampler's output
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < n * c; ++plane) {
            const augment::SampleMap<T> map = augment::sample_map(matrices + (plane / c) * 9, h, w, pad);
            const T* src = x + plane * h * w;
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) s[i * cols + j] = augment::sampled(src, h, w, pad, map, i, j);
            T* dst = y + plane * h * w;
            for (int64_t i = 0; i < h; ++i)
                for (int64_t j = 0; j < w; ++j) dst[i * w + j] = augment::downsampled(s.data(), w, i, j);
        }
    }
}

#define STF_INSTANTIATE(T)                                                                                    \
    template void augment_blit<T>(int64_t, int64_t, int64_t, int64_t, const int32_t*, const T*, T*);         \
    template void augment_geometric<T>(int64_t, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, int64_t, \
                                       int64_t, const T*, T*);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
