// bench_sample: times EDM's Heun (or Euler) sampler on one batch, through diffusion::edm_sample and the
// same denoiser wrapper ./sample uses (float64 sampler state on the CPU, float32 network on its device),
// and puts the time beside the network's arithmetic: FLOPs = nn::forward_flops x batch x evaluations.
#include <chrono>
#include <cstdio>

#include "apps/common/bench.h"
#include "train/precision.h"
#include "cuda/runtime.h"
#include "diffusion/sampler.h"
#include "nn/graph_forward.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_sample [options]

Samples one batch with EDM's deterministic sampler from a randomly initialised network (or --net) and
reports seconds per batch, img/s, ms per network evaluation, achieved TFLOP/s and its share of the
arithmetic limit, and peak memory. The last line is "img/s: <number>".

sampling
  --net FILE           a network snapshot (.safetensors); default: a new network from the flags below
  --batch N            images per batch (default 256 on CUDA, 16 on the CPU)
  --steps N            sampler steps (default 18: Heun makes 2N-1 = 35 network evaluations)
  --euler              Euler steps (N evaluations) instead of Heun
  --repeats N          timed batches (default 1), after a warm-up of two network evaluations
  --mode fp32|tf32|bf16  as bench_train
  --device cpu|cuda    (default cuda when a GPU is usable)
  --peak-tflops T      arithmetic limit for the share (default: CUDA 67 fp32 / 495 tf32 / 989 bf16, NVIDIA's
                       H100 SXM datasheet; CPU the measured sgemm rate)
  --cuda-graph on|off  each network evaluation as a CUDA graph, as ./sample --cuda-graph on (captured in the
                       warm-up; default off)
  --seed N             latents and initial weights (default 0)
  --profile            CUDA: record one network evaluation, after the warm-up and outside the timing, for
                       `ncu --profile-from-start off` (per-kernel times)
)";

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    std::string usage = std::string(kUsage) + apps::kNetworkFlagsUsage;
    return apps::run_program("bench_sample", argc, argv, usage.c_str(), [&](apps::Flags& f) {
        std::string net_path = f.str("net", "");
        nn::NetworkConfig config = apps::network_flags(f);
        Device device = apps::bench_device(f);
        int64_t batch = f.integer("batch", device.is_cuda() ? 256 : 16);
        diffusion::SamplerOptions so;
        so.num_steps = static_cast<int>(f.integer("steps", 18));
        so.heun = !f.boolean("euler");
        int64_t repeats = f.integer("repeats", 1);
        std::string mode = f.str("mode", "fp32");
        double peak_flag = f.real("peak-tflops", 0);
        uint64_t seed = static_cast<uint64_t>(f.integer("seed", 0));
        bool profile = f.boolean("profile");
        const bool cuda_graph = f.on_off("cuda-graph", false);
        f.check_all_used();
        for (const char* flag : {"arch", "precond", "cbase", "cres", "blocks", "attn", "res", "channels", "dropout"})
            STF_CHECK(net_path.empty() || !f.given(flag),
                      "--" << flag << " with --net: the network file says its own architecture");
        STF_CHECK(batch >= 1 && repeats >= 1 && so.num_steps >= 1, "--batch, --repeats and --steps must be positive");
        std::string mode_text = train::set_precision(mode, device, "--mode");

        double gemm_tflops = apps::measure_gemm_tflops(device);
        apps::Limit limit = apps::arithmetic_limit(peak_flag, mode, device, gemm_tflops);
        if (device.is_cuda()) cuda::empty_cache(), cuda::reset_peak();

        Generator gen(seed);
        std::shared_ptr<nn::Precond> net;
        if (net_path.empty()) {
            net = nn::make_network(config, gen);
        } else {
            nn::LoadedNetwork loaded = nn::load_network(net_path);
            net = loaded.net;
            config = loaded.config;
        }
        net->to(device);
        net->set_activation_dtype(train::activation_dtype(mode));
        net->eval();
        const nn::SongUNetConfig& u = config.unet;

        // The denoiser of ./sample, timed per call (its copies to the CPU wait for the device).
        double network_seconds = 0;
        int64_t calls = 0;
        nn::GraphForward network(
            [&](const std::vector<Tensor>& in) {
                NoGradGuard no_grad;
                return net->forward(in[0], in[1]);
            },
            cuda_graph && device.is_cuda());
        diffusion::Denoiser denoise = [&](const Tensor& x, double sigma) {
            auto start = std::chrono::steady_clock::now();
            NoGradGuard no_grad;
            Tensor xd = ops::to(ops::to(x, DType::F32), device);
            Tensor s = ops::full({x.size(0)}, sigma, DType::F32, device);
            Tensor out = ops::to(ops::to(network({xd, s}), Device::cpu()), DType::F64);
            network_seconds += seconds_since(start);
            calls++;
            return out;
        };
        Tensor latents = ops::randn({batch, u.in_channels, u.img_resolution, u.img_resolution}, gen, DType::F64);
        for (int i = 0; i < 2; ++i) denoise(latents, 1.0);  // warm-up: cuDNN algorithm choice, allocator, threads
        if (profile) {
            STF_CHECK(device.is_cuda(), "--profile records a CUDA network evaluation; it needs --device cuda");
            cuda::profiler_start();
            denoise(latents, 1.0);
            cuda::profiler_stop();
        }
        network_seconds = 0;
        calls = 0;

        std::printf("bench_sample: %s, %lld parameters, %lldx%lldx%lld, %s%s, %s\n",
                    u.embedding_type == "fourier" ? "NCSN++" : "DDPM++", (long long)net->num_parameters(),
                    (long long)u.img_resolution, (long long)u.img_resolution, (long long)u.in_channels,
                    device.str().c_str(), device.is_cuda() ? (" (" + cuda::device_name() + ")").c_str() : "",
                    mode_text.c_str());
        std::printf("sampler: %s %d steps, %lld network evaluations per batch, batch %lld, %lld timed batch(es)%s\n",
                    so.heun ? "Heun" : "Euler", so.num_steps, (long long)diffusion::network_evaluations(so),
                    (long long)batch, (long long)repeats,
                    !cuda_graph ? "" : device.is_cuda() ? "; each evaluation a CUDA graph replay"
                                                                : "; --cuda-graph on: nothing to capture on the CPU");
        auto start = std::chrono::steady_clock::now();
        for (int64_t r = 0; r < repeats; ++r) diffusion::edm_sample(denoise, latents, so);
        double total = seconds_since(start) / static_cast<double>(repeats);
        double per_eval_ms = 1e3 * network_seconds / static_cast<double>(calls);

        double flops = nn::forward_flops(u) * static_cast<double>(batch * diffusion::network_evaluations(so));
        double achieved = flops / total / 1e12;
        std::printf("FLOPs: forward %.2f GFLOP/image; batch %.3f TFLOP\n", nn::forward_flops(u) / 1e9, flops / 1e12);
        std::printf("limit: %.3g TFLOP/s (%s); measured %s GEMM: %.3g TFLOP/s\n", limit.tflops,
                    limit.source.c_str(), apps::gemm_mode(), gemm_tflops);
        std::printf("s/batch: %.3f; ms per network evaluation: %.2f (with its copies); float64 sampler outside "
                    "the network: %.1f%%\n",
                    total, per_eval_ms, 100 * (1 - network_seconds / static_cast<double>(repeats) / total));
        std::printf("achieved: %.3g TFLOP/s = %.1f%% of the limit (%.1f%% of the measured GEMM)\n", achieved,
                    100 * achieved / limit.tflops, 100 * achieved / gemm_tflops);
        std::printf("peak memory: %.2f GiB (%s)\n", report::peak_memory_gib(device),
                    device.is_cuda() ? "caching allocator, tensors only" : "process peak resident set");
        std::printf("img/s: %.3f\n", static_cast<double>(batch) / total);
    });
}
