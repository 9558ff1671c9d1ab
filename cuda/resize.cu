// Bilinear resizing of contiguous planes [planes, h, w] to [planes, out_h, out_w], one thread per output
// pixel (grid-stride): Inception-v3's input, CIFAR's 32x32 images brought to 299x299 (half-pixel centres
// as F.interpolate, or TensorFlow 1's alignment as EDM's detector). The taps come from
// cuda/pool_math.h and the arithmetic is the CPU twin's (tensor/cpu/resize.cpp) in the same order;
// fused multiply-adds may change the last bit. Inference only.
#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/pool_math.h"

namespace stf::cuda {
namespace {

__global__ void resize_bilinear_kernel(int64_t total, int64_t h, int64_t w, int64_t out_h, int64_t out_w,
                                       bool half_pixel, const float* x, float* y) {
    for (int64_t i = global_thread(); i < total; i += grid_threads()) {
        const int64_t oj = i % out_w, oi = (i / out_w) % out_h, p = i / (out_w * out_h);
        const pool::Tap<float> r = pool::bilinear_tap<float>(oi, h, out_h, half_pixel);
        const pool::Tap<float> c = pool::bilinear_tap<float>(oj, w, out_w, half_pixel);
        const float* top = x + p * h * w + r.i0 * w;
        const float* bottom = x + p * h * w + r.i1 * w;
        const float upper = (1.0f - c.lambda) * top[c.i0] + c.lambda * top[c.i1];
        const float lower = (1.0f - c.lambda) * bottom[c.i0] + c.lambda * bottom[c.i1];
        y[i] = (1.0f - r.lambda) * upper + r.lambda * lower;
    }
}

}  // namespace

void resize_bilinear(int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w, bool half_pixel,
                     const float* x, float* y) {
    const int64_t total = planes * out_h * out_w;
    if (total <= 0) return;
    resize_bilinear_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(total, h, w, out_h, out_w,
                                                                                           half_pixel, x, y);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
