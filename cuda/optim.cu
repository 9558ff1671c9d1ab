// Fused optimiser steps: one launch per tensor for Adam (it was ten elementwise ops) and for the EMA
// (three), and the same over all of a network's tensors in a few launches (the *_many functions, with
// the gradient guard), since most of its tensors are small enough that launching, not moving bytes, is
// the cost. The arithmetic is cuda/optim_math.h, shared with the CPU twins; this file is compiled with
// -fmad=false so that float results match them bit for bit (the kernels are memory bound anyway).
#include <vector>

#include "cuda/check.h"
#include "cuda/elementwise_math.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/optim_math.h"
#include "cuda/runtime.h"
#include "cuda/tensor_lists.h"

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

// ---- many tensors per launch (cuda/tensor_lists.h) --------------------------------------------------
// A launch's tables travel in its arguments (under the 4 KB limit): up to kListTensors operand sets and
// kListBlocks blocks, block b taking chunk chunk_of_block[b] of the tensor in slot slot_of_block[b].
// 512 blocks of 256 threads are about four per multiprocessor of an H100: enough loads in flight for
// these memory-bound updates (the tables of 256 blocks left half of that).
constexpr int kListTensors = 32;
constexpr int kListBlocks = 512;
constexpr int64_t kListChunk = 16384;  // elements per block: 64 per thread

template <class Operands> struct TensorList {
    Operands tensors[kListTensors];
    uint8_t slot_of_block[kListBlocks];
    int32_t chunk_of_block[kListBlocks];
};
static_assert(sizeof(TensorList<AdamOperands>) + sizeof(optim::AdamConstants<float>) <= 4096,
              "kernel arguments are limited to 4 KB");
static_assert(kListTensors <= 256, "slots are uint8_t");

template <class Operands, class Op> __global__ void tensor_list_kernel(TensorList<Operands> list, Op op) {
    const Operands& t = list.tensors[list.slot_of_block[blockIdx.x]];
    const int64_t start = static_cast<int64_t>(list.chunk_of_block[blockIdx.x]) * kListChunk;
    const int64_t end = t.n < start + kListChunk ? t.n : start + kListChunk;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) op(t, i);
}

template <class Operands, class Op> void apply_lists(const Operands* tensors, int64_t count, Op op) {
    std::vector<int64_t> sizes(static_cast<size_t>(count));
    for (int64_t t = 0; t < count; ++t) sizes[t] = tensors[t].n;
    for (const TensorListLaunch& launch : plan_tensor_lists(sizes, kListTensors, kListBlocks, kListChunk)) {
        TensorList<Operands> list{};
        for (size_t s = 0; s < launch.tensors.size(); ++s) list.tensors[s] = tensors[launch.tensors[s]];
        const int blocks = static_cast<int>(launch.slot_of_block.size());
        for (int b = 0; b < blocks; ++b) {
            list.slot_of_block[b] = static_cast<uint8_t>(launch.slot_of_block[b]);
            list.chunk_of_block[b] = static_cast<int32_t>(launch.chunk_of_block[b]);
        }
        tensor_list_kernel<<<blocks, kGridStrideThreads, 0, current_stream()>>>(list, op);
        STF_CUDA_CHECK_LAUNCH();
    }
}

struct AdamOp {
    optim::AdamConstants<float> k;
    __device__ void operator()(const AdamOperands& t, int64_t i) const {
        float pi = t.p[i], mi = t.m[i], vi = t.v[i];
        optim::adam_element(k, t.g[i], pi, mi, vi);
        t.p[i] = pi;
        t.m[i] = mi;
        t.v[i] = vi;
    }
};

// The graph-ready forms: each thread reads the constants from memory, a broadcast load the L1 serves
// (the kernel's bytes are the tensors', 28 per element for Adam).
struct AdamFromMemoryOp {
    const optim::AdamConstants<float>* k;
    __device__ void operator()(const AdamOperands& t, int64_t i) const { AdamOp{*k}(t, i); }
};

struct EmaOp {
    float beta;
    __device__ void operator()(const EmaOperands& t, int64_t i) const {
        t.ema[i] = optim::ema_element(t.ema[i], t.net[i], beta);
    }
};

struct EmaFromMemoryOp {
    const float* beta;
    __device__ void operator()(const EmaOperands& t, int64_t i) const { EmaOp{*beta}(t, i); }
};

struct GuardOp {
    float inf_value;
    __device__ void operator()(const GuardOperands& t, int64_t i) const {
        t.x[i] = elementwise_math::nan_to_num(t.x[i], inf_value);
    }
};

}  // namespace

void adam_update_many(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>& k) {
    apply_lists(tensors, count, AdamOp{k});
}

void ema_update_many(const EmaOperands* tensors, int64_t count, float beta) {
    apply_lists(tensors, count, EmaOp{beta});
}

void adam_update_many(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>* k_device) {
    apply_lists(tensors, count, AdamFromMemoryOp{k_device});
}

void ema_update_many(const EmaOperands* tensors, int64_t count, const float* beta_device) {
    apply_lists(tensors, count, EmaFromMemoryOp{beta_device});
}

void nan_to_num_many(const GuardOperands* tensors, int64_t count, float inf_value) {
    apply_lists(tensors, count, GuardOp{inf_value});
}

// ---- version 1 of the multi-tensor steps (kept as a lesson; bench_kernels --version 1) --------------
// One launch per tensor: the per-tensor kernels (adam_update, ema_update, and the elementwise NanToNum)
// called for each tensor in turn. DDPM++ has 425 parameter tensors, most of a few hundred floats, so a
// step made about 1,275 launches whose cost was launching, not moving bytes: version 4's profile on the
// H100 (80GB HBM3, 2026-11-27) had Adam at 1.9 ms and the EMA at 1.4 ms for 0.9 ms of bytes. Version 2
// (the *_many functions above) takes up to 32 tensors and 512 blocks of 16,384 elements per launch,
// with the same per-element arithmetic, so the results are bit for bit the same (docs/kernels.md).

void adam_update_many_v1(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>& k) {
    for (int64_t t = 0; t < count; ++t) adam_update(tensors[t].n, tensors[t].p, tensors[t].g, tensors[t].m, tensors[t].v, k);
}

void ema_update_many_v1(const EmaOperands* tensors, int64_t count, float beta) {
    for (int64_t t = 0; t < count; ++t) ema_update(tensors[t].n, tensors[t].ema, tensors[t].net, beta);
}

void nan_to_num_many_v1(const GuardOperands* tensors, int64_t count, float inf_value) {
    for (int64_t t = 0; t < count; ++t) {
        StridedLayout flat;  // the tensor as one contiguous dimension
        flat.ndim = 1;
        flat.sizes[0] = tensors[t].n;
        flat.strides[0] = 1;
        unary(UnaryOp::NanToNum, tensors[t].n, tensors[t].x, tensors[t].x, flat, inf_value, 0.0f);
    }
}

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
