// EDM's augmentation kernels on the GPU: pixel blitting and the geometric transformation (reflect
// padding, sym6 2x upsampling, bilinear sampling, sym6 2x downsampling). The formulas live in
// cuda/augment_math.h, shared with the CPU twins in tensor/cpu/augment.cpp.
//
// The geometric transformation runs in two passes, one thread per output value each:
//   1. the bilinear sampler's (2h + 12) x (2w + 12) grid, each value four taps of the upsampled image,
//      which is itself evaluated on the fly from a 6 x 6 patch of the reflect-padded input (so the
//      upsampled image, up to 36 times the input with the largest paddings, is never stored);
//   2. the sym6 downsampling, 12 x 12 taps of that grid per output pixel.
// Both are compute bound on small images (CIFAR-10's 32 x 32 planes stay in L1/L2).
#include <algorithm>

#include "cuda/augment_math.h"
#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

__global__ void blit_kernel(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const float* x,
                            float* y) {
    const int64_t hw = h * w, total = n * c * hw;
    for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
        const int64_t plane = idx / hw, pixel = idx % hw;
        const int32_t* p = params + (plane / c) * augment::kBlitParams;
        y[idx] = x[plane * hw + augment::blit_source(p, h, w, pixel / w, pixel % w)];
    }
}

// s [n * c, rows, cols]: the bilinear sampler's output.
__global__ void sample_kernel(int64_t n, int64_t c, int64_t h, int64_t w, const float* matrices, augment::Padding pad,
                              const float* x, float* s) {
    const int64_t rows = augment::sampled_rows(h), cols = augment::sampled_cols(w);
    const int64_t per_plane = rows * cols, total = n * c * per_plane;
    for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
        const int64_t plane = idx / per_plane, pos = idx % per_plane;
        const augment::SampleMap<float> map = augment::sample_map(matrices + (plane / c) * 9, h, w, pad);
        s[idx] = augment::sampled(x + plane * h * w, h, w, pad, map, pos / cols, pos % cols);
    }
}

__global__ void downsample_kernel(int64_t n, int64_t c, int64_t h, int64_t w, const float* s, float* y) {
    const int64_t hw = h * w, total = n * c * hw;
    const int64_t per_plane = augment::sampled_rows(h) * augment::sampled_cols(w);
    for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
        const int64_t plane = idx / hw, pixel = idx % hw;
        y[idx] = augment::downsampled(s + plane * per_plane, w, pixel / w, pixel % w);
    }
}

// Scratch memory from the caching allocator, returned on scope exit. Kernels queued on the stream
// before the release still finish with it: the allocator hands the block out again only to work
// queued later on the same stream.
class Scratch {
public:
    explicit Scratch(size_t bytes) : ptr_(static_cast<float*>(stf::cuda::malloc(bytes))) {}
    ~Scratch() { stf::cuda::free(ptr_); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    float* get() const { return ptr_; }

private:
    float* ptr_;
};

} // namespace

void augment_blit(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const float* x, float* y) {
    const int64_t total = n * c * h * w;
    if (total == 0) return;
    blit_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(n, c, h, w, params, x, y);
    STF_CUDA_CHECK_LAUNCH();
}

void augment_geometric(int64_t n, int64_t c, int64_t h, int64_t w, const float* matrices, int64_t pad_x0,
                       int64_t pad_y0, int64_t pad_x1, int64_t pad_y1, const float* x, float* y) {
    const int64_t total = n * c * h * w;
    if (total == 0) return;
    const int64_t sampled = n * c * augment::sampled_rows(h) * augment::sampled_cols(w);
    Scratch s(static_cast<size_t>(sampled) * sizeof(float));
    const augment::Padding pad{pad_x0, pad_y0, pad_x1, pad_y1};
    sample_kernel<<<blocks_for(sampled), kGridStrideThreads, 0, current_stream()>>>(n, c, h, w, matrices, pad, x, s.get());
    STF_CUDA_CHECK_LAUNCH();
    downsample_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(n, c, h, w, s.get(), y);
    STF_CUDA_CHECK_LAUNCH();
}

} // namespace stf::cuda
