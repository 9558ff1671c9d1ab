// Fused optimiser steps: one launch per tensor for Adam (it was ten elementwise ops) and for the EMA
// (three), since most of a network's tensors are small enough that launching, not moving bytes, is
// the cost. The arithmetic is cuda/optim_math.h, shared with the CPU twins; this file is compiled with
// -fmad=false so that float results match them bit for bit (the kernels are memory bound anyway).
#include "cuda/check.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/optim_math.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

__global__ void adam_kernel(int64_t n, float* p, const float* g, float* m, float* v,
                            optim::AdamConstants<float> k) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) {
        float pi = p[i], mi = m[i], vi = v[i];
        optim::adam_element(k, g[i], pi, mi, vi);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

__global__ void ema_kernel(int64_t n, float* ema, const float* net, float beta) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) ema[i] = optim::ema_element(ema[i], net[i], beta);
}

}  // namespace

void adam_update(int64_t n, float* p, const float* g, float* m, float* v, const optim::AdamConstants<float>& k) {
    if (n <= 0) return;
    adam_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, p, g, m, v, k);
    STF_CUDA_CHECK_LAUNCH();
}

void ema_update(int64_t n, float* ema, const float* net, float beta) {
    if (n <= 0) return;
    ema_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, ema, net, beta);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
