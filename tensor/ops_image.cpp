// Raw ops for image feature networks, inference only: max and average pooling, bilinear resizing and
// the per-axis-padded convolution. See tensor/ops.h (they have no autograd versions).
#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace stf::ops {

using detail::dispatch;

namespace {

// x must be [n, c, h, w]; returns it contiguous.
Tensor image_input(const Tensor& x, const char* op) {
    STF_CHECK(x.ndim() == 4, op << ": expected an input [n, c, h, w], got " << describe(x));
    return contiguous(x);
}

void check_window(const Tensor& x, int kernel, int stride, int padding, const char* op) {
    STF_CHECK(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2,
              op << ": bad kernel " << kernel << ", stride " << stride << " or padding " << padding
                 << " (need kernel, stride >= 1 and 0 <= padding <= kernel / 2)");
    STF_CHECK(x.size(2) + 2 * padding >= kernel && x.size(3) + 2 * padding >= kernel,
              op << ": kernel " << kernel << " larger than the padded input " << describe(x));
}

enum class Pool { Max, Average };

Tensor pool2d(Pool kind, const Tensor& x_in, int kernel, int stride, int padding, bool count_include_pad,
              const char* op) {
    Tensor x = image_input(x_in, op);
    check_window(x, kernel, stride, padding, op);
    const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
    const int64_t oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
    Tensor y = empty({x.size(0), x.size(1), oh, ow}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    const bool max = kind == Pool::Max;
    if (max)
        dispatch(
            x, op,
            [&]<class T>() { cpu::max_pool2d<T>(planes, h, w, kernel, stride, padding, x.data<T>(), y.data<T>()); },
            [&] { cuda::max_pool2d(planes, h, w, kernel, stride, padding, x.data<float>(), y.data<float>()); });
    else
        dispatch(
            x, op,
            [&]<class T>() {
                cpu::avg_pool2d<T>(planes, h, w, kernel, stride, padding, count_include_pad, x.data<T>(), y.data<T>());
            },
            [&] {
                cuda::avg_pool2d(planes, h, w, kernel, stride, padding, count_include_pad, x.data<float>(),
                                 y.data<float>());
            });
    return y;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding) {
    return pool2d(Pool::Max, x, kernel, stride, padding, false, "max_pool2d");
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding, bool count_include_pad) {
    return pool2d(Pool::Average, x, kernel, stride, padding, count_include_pad, "avg_pool2d");
}

Tensor resize_bilinear(const Tensor& x_in, int64_t out_h, int64_t out_w, bool half_pixel) {
    const char* op = "resize_bilinear";
    Tensor x = image_input(x_in, op);
    STF_CHECK(out_h >= 1 && out_w >= 1, op << ": bad output size " << out_h << "x" << out_w);
    STF_CHECK(x.size(2) >= 1 && x.size(3) >= 1, op << ": empty image " << describe(x));
    const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
    Tensor y = empty({x.size(0), x.size(1), out_h, out_w}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    dispatch(
        x, op,
        [&]<class T>() { cpu::resize_bilinear<T>(planes, h, w, out_h, out_w, half_pixel, x.data<T>(), y.data<T>()); },
        [&] { cuda::resize_bilinear(planes, h, w, out_h, out_w, half_pixel, x.data<float>(), y.data<float>()); });
    return y;
}

Tensor conv2d_hw(const Tensor& x_in, const Tensor& w_in, int stride, int pad_h, int pad_w) {
    const char* op = "conv2d_hw";
    detail::check_same(x_in, w_in, op);
    STF_CHECK(x_in.ndim() == 4 && w_in.ndim() == 4 && w_in.size(1) == x_in.size(1),
              op << ": expected input [n, c, h, w] and weight [k, c, r, s], got " << describe(x_in) << " and "
                 << describe(w_in));
    STF_CHECK(stride >= 1 && pad_h >= 0 && pad_w >= 0,
              op << ": bad stride " << stride << " or padding (" << pad_h << ", " << pad_w << ")");
    ConvShape s;
    s.n = x_in.size(0), s.c = x_in.size(1), s.h = x_in.size(2), s.w = x_in.size(3);
    s.k = w_in.size(0), s.r = w_in.size(2), s.s = w_in.size(3);
    s.stride_h = s.stride_w = stride;
    s.pad_h = pad_h, s.pad_w = pad_w;
    STF_CHECK(s.h + 2 * pad_h >= s.r && s.w + 2 * pad_w >= s.s,
              op << ": kernel " << s.r << "x" << s.s << " larger than the padded input " << describe(x_in));
    Tensor x = contiguous(x_in), w = contiguous(w_in);
    Tensor y = empty({s.n, s.k, s.out_h(), s.out_w()}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    dispatch(x, op, [&]<class T>() { cpu::conv2d_forward<T>(s, x.data<T>(), w.data<T>(), y.data<T>()); },
             [&] { cuda::conv2d_forward(s, x.data<float>(), w.data<float>(), y.data<float>()); });
    return y;
}

}  // namespace stf::ops
