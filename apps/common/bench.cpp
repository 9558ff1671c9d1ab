#include "apps/common/bench.h"

#include <algorithm>
#include <chrono>
#include <fstream>

#include "cuda/math_mode.h"
#include "cuda/runtime.h"
#include "tensor/ops.h"

namespace stf::apps {

const char* kNetworkFlagsUsage = R"(network (train_cifar's flags)
  --arch ddpmpp|ncsnpp EDM's CIFAR-10 architectures (default ddpmpp)
  --precond edm|vp|ve  preconditioning (default edm)
  --cbase N            model_channels (default 128)
  --cres 2,2,2         channel multiplier per resolution (default 2,2,2)
  --blocks N           residual blocks per resolution (default 4)
  --attn 16            attention resolutions (default 16)
  --res R              image resolution (default 32)
  --channels C         image channels (default 3)
  --dropout P          dropout probability (default 0.13)
)";

nn::NetworkConfig network_flags(Flags& f) {
    nn::NetworkConfig net = nn::NetworkConfig::preset(f.str("arch", "ddpmpp"));
    net.precond = f.str("precond", "edm");
    nn::SongUNetConfig& u = net.unet;
    model_size_flags(f, u);
    u.img_resolution = f.integer("res", 32);
    u.in_channels = u.out_channels = f.integer("channels", 3);
    u.dropout = f.real("dropout", 0.13);
    STF_CHECK(u.in_channels >= 1, "--channels must be positive");
    STF_CHECK(u.dropout >= 0 && u.dropout < 1, "--dropout must be in [0, 1)");
    return net;
}

double measure_gemm_tflops(Device device) {
    const int64_t n = device.is_cuda() ? 8192 : 1024;  // fills an H100; about 30 ms on two CPU cores
    Generator gen(1);
    Tensor a = ops::randn({n, n}, gen, DType::F32, device), b = ops::randn({n, n}, gen, DType::F32, device);
    ops::matmul(a, b);  // warm-up: handles, heuristics, thread pool
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        sync(device);
        auto start = std::chrono::steady_clock::now();
        ops::matmul(a, b);
        sync(device);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return 2.0 * n * n * n / best / 1e12;
}

const char* gemm_mode() { return cuda::allow_tf32() ? "tf32" : "fp32"; }

Limit arithmetic_limit(double peak_tflops_flag, const std::string& mode, Device device, double measured_gemm_tflops) {
    if (peak_tflops_flag > 0) return {peak_tflops_flag, "--peak-tflops"};
    if (device.is_cuda())
        return mode == "tf32"   ? Limit{495, "H100 SXM dense TF32, NVIDIA datasheet"}
               : mode == "bf16" ? Limit{989, "H100 SXM dense BF16, NVIDIA datasheet"}
                                : Limit{67, "H100 SXM fp32 FMA rate, NVIDIA datasheet"};
    return {measured_gemm_tflops, "measured OpenBLAS sgemm 1024^3 on this CPU"};
}

void sync(Device device) {
    if (device.is_cuda()) cuda::synchronize();
}

Device bench_device(Flags& f) {
    Device device = Device::parse(f.str("device", cuda::available() ? "cuda" : "cpu"));
    STF_CHECK(!device.is_cuda() || cuda::available(),
              "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                            : "stf was built without CUDA (use --device cpu)"));
    return device;
}

}  // namespace stf::apps
