// Max pooling and average pooling over contiguous planes [planes, h, w], one thread per output pixel
// (grid-stride). The windows come from cuda/pool_math.h, shared with the CPU twins (tensor/cpu/pool.cpp),
// and the sums run in the same order, so float results agree bit for bit. Inference only: Inception-v3's
// feature network for FID (its 3x3 stride-2 max pools, its 3x3 stride-1 average pools that exclude the
// padding, and the last block's 3x3 stride-1 max pool). Memory bound: each output reads its kernel^2
// inputs, which neighbouring threads share through L1/L2.
#include <cmath>

#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/pool_math.h"

namespace stf::cuda {
namespace {

__global__ void max_pool2d_kernel(int64_t total, int64_t h, int64_t w, int64_t oh_n, int64_t ow_n, int kernel,
                                  int stride, int padding, const float* x, float* y) {
    for (int64_t i = global_thread(); i < total; i += grid_threads()) {
        const int64_t ow = i % ow_n, oh = (i / ow_n) % oh_n, p = i / (ow_n * oh_n);
        const pool::Window win = pool::window(oh, ow, h, w, kernel, stride, padding);
        const float* xp = x + p * h * w;
        float m = -INFINITY;
        for (int64_t r = win.h0; r < win.h1; ++r)
            for (int64_t c = win.w0; c < win.w1; ++c) {
                const float v = xp[r * w + c];
                if (v > m || v != v) m = v;  // NaN propagates, as in PyTorch
            }
        y[i] = m;
    }
}

__global__ void avg_pool2d_kernel(int64_t total, int64_t h, int64_t w, int64_t oh_n, int64_t ow_n, int kernel,
                                  int stride, int padding, bool count_include_pad, const float* x, float* y) {
    for (int64_t i = global_thread(); i < total; i += grid_threads()) {
        const int64_t ow = i % ow_n, oh = (i / ow_n) % oh_n, p = i / (ow_n * oh_n);
        const pool::Window win = pool::window(oh, ow, h, w, kernel, stride, padding);
        const float* xp = x + p * h * w;
        float sum = 0.0f;
        for (int64_t r = win.h0; r < win.h1; ++r)
            for (int64_t c = win.w0; c < win.w1; ++c) sum += xp[r * w + c];
        const int64_t count = count_include_pad ? int64_t(kernel) * kernel : (win.h1 - win.h0) * (win.w1 - win.w0);
        y[i] = sum / static_cast<float>(count);
    }
}

}  // namespace

void max_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, const float* x, float* y) {
    const int64_t oh_n = pool::out_size(h, kernel, stride, padding), ow_n = pool::out_size(w, kernel, stride, padding);
    const int64_t total = planes * oh_n * ow_n;
    if (total <= 0) return;
    max_pool2d_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(total, h, w, oh_n, ow_n, kernel,
                                                                                      stride, padding, x, y);
    STF_CUDA_CHECK_LAUNCH();
}

void avg_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, bool count_include_pad,
                const float* x, float* y) {
    const int64_t oh_n = pool::out_size(h, kernel, stride, padding), ow_n = pool::out_size(w, kernel, stride, padding);
    const int64_t total = planes * oh_n * ow_n;
    if (total <= 0) return;
    avg_pool2d_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(
        total, h, w, oh_n, ow_n, kernel, stride, padding, count_include_pad, x, y);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
