// The index arithmetic of 2-D pooling and bilinear resizing, shared by the CUDA kernels (cuda/pool.cu,
// cuda/resize.cu) and their CPU twins (tensor/cpu/pool.cpp, tensor/cpu/resize.cpp), so that both
// backends visit the same pixels with the same weights. Header only, host and device.
//
// Pooling (PyTorch's max_pool2d / avg_pool2d with ceil_mode=False): output pixel (oh, ow) covers input
// rows oh * stride - padding .. + kernel - 1 (likewise columns); out = (in + 2 padding - kernel) / stride
// + 1. Padding never contributes a value: max pooling pads with -inf, and average pooling that excludes
// padding (count_include_pad=False, TensorFlow's only kind, which Inception-v3's graph uses) divides by
// the number of pixels inside the image. Including it divides by kernel^2.
//
// Bilinear resizing of an h x w plane to out_h x out_w. Output pixel j samples source coordinate
//   half-pixel centres (PyTorch's F.interpolate, align_corners=False): s = (j + 0.5) * in / out - 0.5,
//     negative s clamped to 0;
//   TensorFlow 1's resize_bilinear (align_corners=False, no half-pixel centres; what EDM's Inception
//     detector emulates with affine_grid and grid_sample): s = j * in / out,
// then reads taps floor(s) and floor(s) + 1 (the last row or column repeated at the far edge) with
// weights 1 - (s - floor(s)) and s - floor(s), along each axis.
#pragma once
#include <cstdint>

#include "cuda/layout.h"

namespace stf::pool {

STF_HD int64_t out_size(int64_t in, int kernel, int stride, int padding) {
    return (in + 2 * int64_t(padding) - kernel) / stride + 1;
}

// The part of a window inside the image: rows [h0, h1), columns [w0, w1).
struct Window {
    int64_t h0, h1, w0, w1;
};
STF_HD Window window(int64_t oh, int64_t ow, int64_t h, int64_t w, int kernel, int stride, int padding) {
    const int64_t top = oh * stride - padding, left = ow * stride - padding;
    Window win;
    win.h0 = top < 0 ? 0 : top;
    win.h1 = top + kernel < h ? top + kernel : h;
    win.w0 = left < 0 ? 0 : left;
    win.w1 = left + kernel < w ? left + kernel : w;
    return win;
}

// One axis of a bilinear sample: value = (1 - lambda) * in[i0] + lambda * in[i1].
template <class T> struct Tap {
    int64_t i0, i1;
    T lambda;
};
template <class T> STF_HD Tap<T> bilinear_tap(int64_t j, int64_t in, int64_t out, bool half_pixel) {
    const T scale = static_cast<T>(in) / static_cast<T>(out);
    T s = half_pixel ? (static_cast<T>(j) + T(0.5)) * scale - T(0.5) : static_cast<T>(j) * scale;
    if (s < T(0)) s = T(0);
    int64_t i0 = static_cast<int64_t>(s);  // s >= 0: truncation is floor
    if (i0 > in - 1) i0 = in - 1;
    Tap<T> t;
    t.i0 = i0;
    t.i1 = i0 < in - 1 ? i0 + 1 : i0;
    t.lambda = s - static_cast<T>(i0);
    return t;
}

}  // namespace stf::pool
