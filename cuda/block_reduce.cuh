// Warp- and block-wide reductions shared by the reduce, softmax and group-norm kernels.
// A warp combines its 32 lanes with a butterfly of shuffles; a block combines its warps' results
// through shared memory. Every thread of the block must call the block-wide functions (they contain
// barriers), and blockDim.x must be a multiple of 32.
#pragma once
#include <cmath>

#include "cuda/layout.h"
#include "cuda/grid_stride.cuh"

namespace stf::cuda {

constexpr int kWarp = 32;

template <ReduceOp op> __device__ __forceinline__ float identity() {
    return op == ReduceOp::Sum ? 0.0f : -INFINITY;
}
template <ReduceOp op> __device__ __forceinline__ float combine(float a, float b) {
    if constexpr (op == ReduceOp::Sum) return a + b;
    else return b > a ? b : a;
}

// Butterfly: after log2(32) exchange steps every lane holds the combination of all 32 lanes.
template <ReduceOp op> __device__ __forceinline__ float warp_reduce(float v) {
    for (int lane_mask = kWarp / 2; lane_mask > 0; lane_mask /= 2)
        v = combine<op>(v, __shfl_xor_sync(0xffffffffu, v, lane_mask));
    return v;
}

// Reduces one value per thread over the whole block and hands the result to every thread.
template <ReduceOp op> __device__ float block_reduce_all(float v) {
    __shared__ float warp_results[kWarp];
    __shared__ float result;
    int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_reduce<op>(v);
    if (lane == 0) warp_results[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x / kWarp;
        v = warp_reduce<op>(lane < warps ? warp_results[lane] : identity<op>());
        if (lane == 0) result = v;
    }
    __syncthreads();
    v = result;
    __syncthreads();  // all threads have read `result` before a later call overwrites it
    return v;
}

// Sums of a float, or of a float2 (two sums at once, as group norm needs for sum and sum of squares).
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce<ReduceOp::Sum>(v); }
__device__ __forceinline__ float2 warp_sum(float2 v) { return make_float2(warp_sum(v.x), warp_sum(v.y)); }

template <class T> __device__ T block_sum(T v) {
    __shared__ T warp_results[kWarp];
    __shared__ T result;
    int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    v = warp_sum(v);
    if (lane == 0) warp_results[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int warps = blockDim.x / kWarp;
        v = warp_sum(lane < warps ? warp_results[lane] : T{});
        if (lane == 0) result = v;
    }
    __syncthreads();
    v = result;
    __syncthreads();
    return v;
}

}  // namespace stf::cuda
