// A residual connection with its skip scale, as one pass over contiguous [n, c, inner]:
//   y = (a + b + bias[ch]) * scale
// EDM's blocks end with x = (conv1(h) + skip(x_in)) * skip_scale, and both convolutions add a bias:
// four passes over the activation as separate ops (two bias adds, the add, the scale), one here, with
// both biases summed into `bias` beforehand ([c], tiny). The CPU twin is tensor/cpu/residual.cpp; the
// arithmetic is ((a + b) + bias) * scale in both, so they agree bit for bit. a and b may be stored as
// bf16 (mixed precision: the convolutions' outputs); y, the residual stream, is float.
#include <climits>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/layout.h"

namespace stf::cuda {
namespace {

__device__ __forceinline__ float residual(float a, float b, float bias, float scale) { return ((a + b) + bias) * scale; }

// General: 64-bit indices, any inner size.
template <class TA, class TB>
__global__ void scaled_residual_kernel(int64_t total, int64_t c, int64_t inner, const TA* a, const TB* b,
                                       const float* bias, float scale, float* y) {
    for (int64_t i = global_thread(); i < total; i += grid_threads()) {
        const float bv = bias ? bias[(i / inner) % c] : 0.0f;
        y[i] = residual(static_cast<float>(a[i]), static_cast<float>(b[i]), bv, scale);
    }
}

// Four elements per step with 32-bit indices: inner % 4 == 0, so the four lie within one channel, and
// the channel comes from two multiply-and-shift divisions.
template <class TA, class TB>
__global__ void scaled_residual_vec4_kernel(uint32_t total4, FastDivider inner4, FastDivider c, const TA* a,
                                            const TB* b, const float* bias, float scale, float* y) {
    for (uint32_t i = global_thread(); i < total4; i += grid_threads()) {
        float bv = 0.0f;
        if (bias) {
            const uint32_t row = inner4.div(i);
            bv = bias[row - c.div(row) * c.divisor];
        }
        const int64_t at = int64_t(4) * i;
        const float4 av = load4(a, at), bw = load4(b, at);
        store4(y, at, make_float4(residual(av.x, bw.x, bv, scale), residual(av.y, bw.y, bv, scale),
                                  residual(av.z, bw.z, bv, scale), residual(av.w, bw.w, bv, scale)));
    }
}

template <class T> bool vec4_aligned(const T* p) { return reinterpret_cast<uintptr_t>(p) % vec4_alignment<T>() == 0; }

}  // namespace

template <class TA, class TB>
void scaled_residual(int64_t n, int64_t c, int64_t inner, const TA* a, const TB* b, const float* bias, float scale,
                     float* y) {
    const int64_t total = n * c * inner;
    if (total <= 0) return;
    if (inner % 4 == 0 && total / 4 <= INT32_MAX && c <= INT32_MAX && vec4_aligned(a) && vec4_aligned(b) &&
        vec4_aligned(y)) {
        const int64_t total4 = total / 4;
        scaled_residual_vec4_kernel<<<blocks_for(total4), kGridStrideThreads, 0, current_stream()>>>(
            static_cast<uint32_t>(total4), FastDivider(static_cast<uint32_t>(inner / 4)),
            FastDivider(static_cast<uint32_t>(c)), a, b, bias, scale, y);
    } else {
        scaled_residual_kernel<<<blocks_for(total), kGridStrideThreads, 0, current_stream()>>>(total, c, inner, a, b,
                                                                                              bias, scale, y);
    }
    STF_CUDA_CHECK_LAUNCH();
}

template void scaled_residual<float, float>(int64_t, int64_t, int64_t, const float*, const float*, const float*, float,
                                            float*);
template void scaled_residual<bf16, float>(int64_t, int64_t, int64_t, const bf16*, const float*, const float*, float,
                                           float*);
template void scaled_residual<bf16, bf16>(int64_t, int64_t, int64_t, const bf16*, const bf16*, const float*, float,
                                          float*);

}  // namespace stf::cuda
