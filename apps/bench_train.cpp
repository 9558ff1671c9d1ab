// bench_train: times full EDM training steps (DSM, STF or kNN) of DDPM++/NCSN++ on random images, the step
// that train/training_loop.cpp takes, and puts the time beside the arithmetic it must do.
//
// Arithmetic: a training step is about 3 forward passes (forward, backward to the activations, backward
// to the weights), so FLOPs per step = 3 x nn::forward_flops(config) x batch. Achieved TFLOP/s over the
// arithmetic limit is how close the step is to the floor; the rest is elementwise and normalisation
// traffic, launch gaps and the host.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include "apps/common/bench.h"
#include "apps/common/target_flags.h"
#include "train/precision.h"
#include "cuda/runtime.h"
#include "diffusion/augment.h"
#include "diffusion/knn_target.h"
#include "diffusion/loss.h"
#include "diffusion/stf_target.h"
#include "nn/optim.h"
#include "train/graph_step.h"
#include "train/sigma_bands.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_train [options]

Times full training steps (augmentation, loss, backward of the batch mean, NaN guard, Adam, EMA) on
random images, as train_cifar takes them, and reports ms per step, img/s, achieved TFLOP/s and its share
of the arithmetic limit, the STF target's share of the step and peak memory. The last line is
"img/s: <number>".

step
  --batch N            images per step (default 64)
  --target T           dsm, stf or knn (default: stf when --rbatch is given, else dsm)
  --rbatch N|all       stf: a reference batch of N images (>= --batch; its first --batch images are the
                       batch), or all: the whole random dataset of --dataset-size images; knn: draws per
                       sample (default 1024 with --target, else 0: DSM)
  --k K                knn: neighbours in the proposal (default 2048)
  --dataset-size N     random images standing in for the dataset of the whole-dataset targets (default
                       50000, CIFAR-10's training set; the batch is its first --batch images)
  --augment P          EDM's augmentation with probability P every step, 9 augmentation labels (default
                       0.12, as train_cifar; 0: off, no labels)
  --mode fp32|tf32|bf16  arithmetic: fp32 with TF32 off (default), TF32 tensor cores (CUDA), or bf16
                       mixed precision (the residual blocks' convolutions and the activations between
                       them in bf16, float32 master weights; the rest TF32 on CUDA; emulated on the CPU)
  --cuda-graph on|off  the step as train_cifar --cuda-graph takes it: each round and optimiser step a
                       CUDA graph captured in the second warm-up step, replayed after (default off; needs
                       --warmup 2 or more on CUDA; on the CPU the same graph-ready step runs eagerly).
                       DSM and STF with a reference batch
  --steps N            timed steps (default 20)
  --warmup N           untimed steps first (default 3)
  --device cpu|cuda    (default cuda when a GPU is usable)
  --peak-tflops T      arithmetic limit for the share (default: CUDA 67 fp32 / 495 tf32 / 989 bf16, NVIDIA's
                       H100 SXM datasheet; CPU the measured sgemm rate)
  --seed N             (default 0)
  --profile            CUDA: record the last timed step for `ncu --profile-from-start off` (per-kernel
                       times; the kernels run serialised under the profiler, so ms/step is then meaningless)
)";

double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The target alone on the step's shapes (noisy batch, its noise levels, its references), as diffusion_loss
// computes it: mean ms over `reps` calls of `target(noisy, sigma)`.
template <class Target>
double target_ms(const Tensor& batch_images, const diffusion::LossOptions& o, Device device, int reps, Target&& target) {
    const int64_t batch = batch_images.size(0);
    Generator gen(7);
    diffusion::NoiseLevels levels = diffusion::sample_noise_levels(o, batch, gen, device);
    Tensor noise = ops::randn(batch_images.shape(), gen, DType::F32, device);
    Tensor noisy = ops::add(batch_images, ops::mul(noise, ops::reshape(levels.sigma, {batch, 1, 1, 1})));
    target(noisy, levels.sigma);  // warm-up
    apps::sync(device);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) target(noisy, levels.sigma);
    apps::sync(device);
    return ms_since(start) / reps;
}

}  // namespace

int main(int argc, char** argv) {
    std::string usage = std::string(kUsage) + apps::kNetworkFlagsUsage;
    return apps::run_program("bench_train", argc, argv, usage.c_str(), [&](apps::Flags& f) {
        nn::NetworkConfig config = apps::network_flags(f);
        int64_t batch = f.integer("batch", 64);
        // --rbatch 0 (or none) without --target is DSM, as before --target existed.
        const std::string rbatch_text = f.str("rbatch", "");
        const bool all = rbatch_text == "all", dsm_rbatch = rbatch_text.empty() || rbatch_text == "0";
        int64_t rbatch = dsm_rbatch ? (f.given("target") ? 1024 : 0) : all ? 0 : apps::parse_rbatch(rbatch_text, "rbatch");
        const std::string target = f.str("target", dsm_rbatch ? "dsm" : "stf");
        const int64_t knn_k = f.integer("k", diffusion::kDefaultKnnK), dataset_size = f.integer("dataset-size", 50000);
        double augment = f.real("augment", 0.12);
        std::string mode = f.str("mode", "fp32");
        int64_t steps = f.integer("steps", 20), warmup = f.integer("warmup", 3);
        Device device = apps::bench_device(f);
        double peak_flag = f.real("peak-tflops", 0);
        uint64_t seed = static_cast<uint64_t>(f.integer("seed", 0));
        bool profile = f.boolean("profile");
        const bool graphs = f.on_off("cuda-graph", false);
        f.check_all_used();
        STF_CHECK(!profile || device.is_cuda(), "--profile records a CUDA step; it needs --device cuda");
        STF_CHECK(batch >= 1, "--batch must be positive, got " << batch);
        STF_CHECK(target == "dsm" || target == "stf" || target == "knn", "--target must be dsm, stf or knn, got '" << target << "'");
        const bool whole = target == "knn" || (target == "stf" && all);
        STF_CHECK(target != "stf" || whole || rbatch >= batch,
                  "--rbatch " << rbatch << " is smaller than --batch " << batch << ": the reference batch must contain the batch");
        STF_CHECK(target != "knn" || !all, "--rbatch all: the kNN target's --rbatch is its number of draws");
        STF_CHECK(!whole || (dataset_size >= batch && knn_k >= 1 && knn_k <= dataset_size),
                  "--dataset-size " << dataset_size << " must hold the batch of " << batch << " and --k " << knn_k);
        if (target == "dsm") rbatch = 0;
        STF_CHECK(augment >= 0 && augment <= 1, "--augment is a probability in [0, 1], got " << augment);
        STF_CHECK(steps >= 1 && warmup >= 0, "--steps must be positive and --warmup not negative");
        STF_CHECK(!graphs || !whole, "--cuda-graph on: the whole-dataset targets are not supported (use --cuda-graph off)");
        STF_CHECK(!graphs || !device.is_cuda() || warmup >= 2,
                  "--cuda-graph on needs --warmup 2 or more on CUDA: the first step runs eagerly, the second is captured");
        std::string mode_text = train::set_precision(mode, device, "--mode");
        config.unet.augment_dim = augment > 0 ? 9 : 0;

        // Ceilings first, before the network allocates, so their buffers stay out of the peak memory.
        double gemm_tflops = apps::measure_gemm_tflops(device);
        apps::Limit limit = apps::arithmetic_limit(peak_flag, mode, device, gemm_tflops);
        if (device.is_cuda()) cuda::empty_cache(), cuda::reset_peak();

        Generator init(seed);
        std::shared_ptr<nn::Precond> net = nn::make_network(config, init), ema = nn::make_network(config, init);
        net->to(device);
        net->set_activation_dtype(train::activation_dtype(mode));
        ema->to(device);
        net->train();
        ema->eval();
        std::vector<Tensor> params = net->parameters();
        nn::Adam adam(params, nn::AdamOptions{1e-4, 0.9, 0.999, 1e-8});
        nn::Ema ema_update(params, ema->parameters());
        diffusion::AugmentPipe pipe(diffusion::AugmentOptions::cifar10(augment));
        diffusion::LossOptions loss_options;
        loss_options.kind = config.precond;
        loss_options.sigma_data = config.sigma_data;
        Generator noise_gen(seed), dropout_gen(seed + 1000003), augment_gen(seed + 2000003), data_gen(seed + 3);

        // Random images in [-1, 1], drawn once: the trainer's data loading (a host-to-device copy) is left out.
        const nn::SongUNetConfig& u = config.unet;
        const int64_t draw = whole ? dataset_size : target == "stf" ? rbatch : batch;
        std::vector<int64_t> batch_rows(static_cast<size_t>(batch));
        for (int64_t i = 0; i < batch; ++i) batch_rows[i] = i;
        Tensor data = ops::to(ops::add_scalar(ops::mul_scalar(ops::rand({draw, u.in_channels, u.img_resolution,
                                                                          u.img_resolution}, data_gen), 2), -1),
                              device);

        // One optimiser step as train/training_loop.cpp takes it with --batch-gpu equal to --batch: the
        // tick statistics summed on the device, nothing read back inside the step.
        train::SigmaBandSums bands;
        std::optional<train::GraphStep> graph_step;
        if (graphs)
            graph_step.emplace(train::GraphStep::Parts{*net, adam, ema_update, bands, loss_options,
                                                       1.0 / static_cast<double>(batch)},
                               device, device.is_cuda());
        double cur_nimg = 0;
        int64_t step_index = 0;
        auto step = [&] {
            if (graph_step)
                graph_step->begin_step();
            else
                net->zero_grad();
            // The trainer augments the reference batch with the images; a whole dataset stays un-augmented.
            Tensor images = whole ? ops::narrow(data, 0, 0, batch) : data, labels;
            if (augment > 0) {
                diffusion::AugmentPipe::Result a = pipe.apply(images, augment_gen);
                images = a.images;
                labels = ops::contiguous(ops::narrow(a.labels, 0, 0, batch));
            }
            Tensor y = ops::contiguous(ops::narrow(images, 0, 0, batch));
            if (graph_step) {
                graph_step->round({y, Tensor(), labels, target == "stf" ? images : Tensor(), {}, {}}, step_index, 0,
                                  noise_gen, dropout_gen);
                cur_nimg += static_cast<double>(batch);
                graph_step->end_step(1e-4, nn::Ema::beta(static_cast<double>(batch), cur_nimg, 500, 0.05));
                ++step_index;
                return;
            }
            diffusion::LossTerms terms =
                whole ? diffusion::diffusion_loss(*net, y, labels,
                                                  diffusion::DatasetTarget{target, {y, data, batch_rows}, knn_k, rbatch},
                                                  loss_options, noise_gen, dropout_gen)
                      : diffusion::diffusion_loss(*net, y, labels, target == "stf" ? images : Tensor(), loss_options,
                                                  noise_gen, dropout_gen);
            backward(mul(sum(terms.loss), 1.0 / static_cast<double>(batch)));
            bands.add(terms.sigma, terms.loss, terms.ess);
            nn::nan_to_num_grads(params);
            adam.step(1e-4);
            cur_nimg += static_cast<double>(batch);
            ema_update.update(nn::Ema::beta(static_cast<double>(batch), cur_nimg, 500, 0.05));
        };

        const std::string target_text =
            target == "knn" ? "kNN target, k " + std::to_string(knn_k) + ", " + std::to_string(rbatch) + " draws, dataset of " +
                                  std::to_string(dataset_size)
            : whole        ? "STF target over the whole dataset of " + std::to_string(dataset_size)
            : target == "stf" ? "STF target, reference batch " + std::to_string(rbatch)
                              : std::string("DSM target");
        std::printf("bench_train: %s, %lld parameters, %lldx%lldx%lld, %s%s, %s\n",
                    u.embedding_type == "fourier" ? "NCSN++" : "DDPM++", (long long)net->num_parameters(),
                    (long long)u.img_resolution, (long long)u.img_resolution, (long long)u.in_channels,
                    device.str().c_str(), device.is_cuda() ? (" (" + cuda::device_name() + ")").c_str() : "",
                    mode_text.c_str());
        std::printf("step: batch %lld, %s, augment %g, dropout %g; %lld warm-up + %lld timed steps%s\n", (long long)batch,
                    target_text.c_str(), augment, u.dropout, (long long)warmup, (long long)steps,
                    !graphs ? "" : device.is_cuda() ? "; CUDA graphs (captured in warm-up step 2)"
                                                    : "; the graph-ready step, run eagerly");
        for (int64_t i = 0; i < warmup; ++i) step();
        // Peak memory as the PyTorch reference figures measure it (docs/perf.md): over the timed steps,
        // after the warm-up, so cuDNN's one-off algorithm search (its scratch buffer) is reported apart.
        const double warmup_peak_gib = report::peak_memory_gib(device);
        if (device.is_cuda()) cuda::reset_peak();
        std::vector<double> ms;
        for (int64_t i = 0; i < steps; ++i) {
            const bool record = profile && i == steps - 1;
            apps::sync(device);
            if (record) cuda::profiler_start();
            auto start = std::chrono::steady_clock::now();
            step();
            apps::sync(device);
            if (record) cuda::profiler_stop();
            ms.push_back(ms_since(start));
        }
        double mean_ms = 0;
        for (double t : ms) mean_ms += t / static_cast<double>(ms.size());
        double min_ms = *std::min_element(ms.begin(), ms.end());

        double step_flops = 3 * nn::forward_flops(u) * static_cast<double>(batch);
        double achieved = step_flops / (mean_ms / 1e3) / 1e12;
        std::printf("FLOPs: forward %.2f GFLOP/image; step %.3f TFLOP (3 x forward x batch)\n",
                    nn::forward_flops(u) / 1e9, step_flops / 1e12);
        std::printf("limit: %.3g TFLOP/s (%s); measured %s GEMM: %.3g TFLOP/s\n", limit.tflops,
                    limit.source.c_str(), apps::gemm_mode(), gemm_tflops);
        std::printf("ms/step: mean %.2f  min %.2f\n", mean_ms, min_ms);
        std::printf("achieved: %.3g TFLOP/s = %.1f%% of the limit (%.1f%% of the measured GEMM)\n", achieved,
                    100 * achieved / limit.tflops, 100 * achieved / gemm_tflops);
        if (target != "dsm") {
            const int reps = device.is_cuda() ? 20 : 3;
            Tensor lead = ops::contiguous(ops::narrow(data, 0, 0, batch));
            Generator draws(11);
            double ms = target_ms(lead, loss_options, device, reps, [&](const Tensor& noisy, const Tensor& sigma) {
                if (target == "knn")
                    diffusion::knn_target(noisy, sigma, {lead, data, batch_rows}, knn_k, rbatch, draws, loss_options.stf_chunk);
                else if (whole)
                    diffusion::stf_target(noisy, sigma, diffusion::ReferenceSet{lead, data, batch_rows}, loss_options.stf_chunk);
                else
                    diffusion::stf_target(noisy, sigma, data, loss_options.stf_chunk);
            });
            std::printf("%s target alone: %.3f ms = %.2f%% of the step\n", target == "knn" ? "kNN" : "STF", ms,
                        100 * ms / mean_ms);
        }
        if (device.is_cuda())
            std::printf("peak memory: %.2f GiB over the timed steps; %.2f GiB in the warm-up with cuDNN's algorithm "
                        "search (caching allocator, tensors and workspaces)\n",
                        report::peak_memory_gib(device), warmup_peak_gib);
        else
            std::printf("peak memory: %.2f GiB (process peak resident set)\n", report::peak_memory_gib(device));
        std::printf("img/s: %.2f\n", static_cast<double>(batch) / (mean_ms / 1e3));
    });
}
