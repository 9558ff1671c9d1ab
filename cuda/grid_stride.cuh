// Grid-stride loops, the launch shape of the elementwise, random and augmentation kernels: launched with
// blocks_for(n) blocks of kGridStrideThreads threads, thread t visits t, t + grid_threads(), ... so any n
// is covered with at most kMaxGridBlocks blocks.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cuda/runtime.h"

namespace stf::cuda {

constexpr int kGridStrideThreads = 256;
// Several times what an H100 keeps resident (132 SMs x 8 blocks of 256 threads), so the machine stays full.
constexpr int64_t kMaxGridBlocks = 65536;

inline int blocks_for(int64_t n) {
    return static_cast<int>(std::min<int64_t>((n + kGridStrideThreads - 1) / kGridStrideThreads, kMaxGridBlocks));
}

inline cudaStream_t current_stream() { return static_cast<cudaStream_t>(stream()); }

__device__ __forceinline__ int64_t global_thread() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace stf::cuda
