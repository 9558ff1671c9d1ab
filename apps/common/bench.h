// What the benchmark programs (bench_train, bench_sample, bench_kernels) share: the network flags of
// train_cifar and the arithmetic limit a run is measured against. Their --mode is train/precision.h.
#pragma once
#include <string>

#include "apps/common/flags.h"
#include "report/progress.h"  // peak_memory_gib
#include "nn/network.h"

namespace stf::apps {

// train_cifar's model flags (--arch --precond --cbase --cres --blocks --attn --res --dropout) plus
// --channels (image channels, default 3). Augmentation labels are left to the caller.
nn::NetworkConfig network_flags(Flags& f);
// The usage lines for network_flags().
extern const char* kNetworkFlagsUsage;

// The arithmetic limit a run's achieved rate is compared with, and where that number comes from.
struct Limit {
    double tflops = 0;
    std::string source;
};
// --peak-tflops wins when given (> 0); otherwise on CUDA NVIDIA's H100 SXM datasheet (dense fp32 67
// TFLOP/s, TF32 495), and on the CPU `measured_gemm_tflops` (measure_gemm_tflops below).
Limit arithmetic_limit(double peak_tflops_flag, const std::string& mode, Device device, double measured_gemm_tflops);

// Measured float32 GEMM rate (TFLOP/s) of a large square matrix product (cuBLAS or OpenBLAS), best of a
// few repetitions after a warm-up, under the current math mode.
double measure_gemm_tflops(Device device);
// The arithmetic of that GEMM under the current math mode: "tf32" or "fp32".
const char* gemm_mode();

// Waits for the device (a no-op on the CPU) so a host clock reads finished work.
void sync(Device device);

// The device argument: --device, defaulting to cuda when a GPU is usable; cuda without one throws.
Device bench_device(Flags& f);

}  // namespace stf::apps
