// bench_fid: the FID feature network's throughput, the cost of one FID evaluation: N CIFAR-sized
// (32x32) images through Inception-v3 (metrics/inception.h) in batches, resize to 299x299 included,
// timed after a warm-up batch. Weights from --net, or the seeded random ones of the tests (the time does
// not depend on the values). Prints the setup time, per-batch time, img/s and the projected time of a
// 50,000-image FID; the last line is "img/s: <number>".
#include <chrono>
#include <cstdio>

#include "apps/common/bench.h"
#include "cuda/runtime.h"
#include "metrics/inception.h"
#include "nn/safetensors.h"
#include "tensor/ops.h"
#include "train/precision.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_fid [options]

Times Inception-v3's 2048-d pool features (FID's network) on random 32x32 RGB images.

  --net FILE        an stf-inception weight file (tools/inception_to_safetensors.py); default: seeded
                    random weights
  --images N        images timed (default 2048 on CUDA, 8 on the CPU)
  --batch N         images per batch (default 200 on CUDA, 4 on the CPU)
  --res N           image size (default 32, CIFAR-10)
  --mode fp32|tf32  arithmetic (default fp32, as FID's reference implementations)
  --device cpu|cuda (default cuda when a GPU is usable)
  --write-net FILE  also write the seeded random weights as an stf-inception file (for trying ./fid
                    without the published weights; its FIDs mean nothing)
)";

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    return apps::run_program("bench_fid", argc, argv, kUsage, [&](apps::Flags& f) {
        std::string net_path = f.str("net", "");
        Device device = apps::bench_device(f);
        int64_t images = f.integer("images", device.is_cuda() ? 2048 : 8);
        int64_t batch = f.integer("batch", device.is_cuda() ? 200 : 4);
        int64_t res = f.integer("res", 32);
        std::string mode = f.str("mode", "fp32");
        std::string write_net = f.str("write-net", "");
        f.check_all_used();
        STF_CHECK(write_net.empty() || net_path.empty(), "--write-net writes the random weights: not with --net");
        STF_CHECK(images >= 1 && batch >= 1 && res >= 1, "--images, --batch and --res must be positive");
        STF_CHECK(mode == "fp32" || mode == "tf32", "--mode must be fp32 or tf32, got '" << mode << "'");
        std::string mode_text = train::set_precision(mode, device, "--mode");

        auto start = std::chrono::steady_clock::now();
        metrics::InceptionWeights random;
        if (net_path.empty()) random = metrics::random_inception_weights(2015);
        metrics::InceptionV3 net = net_path.empty()
                                       ? metrics::InceptionV3(random.tensors, random.metadata, device, "random")
                                       : metrics::InceptionV3::load(net_path, device);
        double setup = seconds_since(start);
        if (!write_net.empty()) {
            nn::save_safetensors(write_net, random.tensors, random.metadata);
            std::printf("wrote %s (seeded random weights)\n", write_net.c_str());
        }
        Generator gen(0);
        Tensor pixels = ops::to(ops::mul_scalar(ops::rand({batch, 3, res, res}, gen), 255), device);
        if (device.is_cuda()) cuda::empty_cache(), cuda::reset_peak();

        Tensor warm = net.features(pixels);  // cuDNN's algorithm search, the allocator's first blocks
        apps::sync(device);
        int64_t done = 0;
        start = std::chrono::steady_clock::now();
        while (done < images) {
            int64_t b = std::min(batch, images - done);
            Tensor x = b == batch ? pixels : ops::narrow(pixels, 0, 0, b);
            Tensor feats = net.features(x);
            done += b;
        }
        apps::sync(device);
        double seconds = seconds_since(start);
        double rate = static_cast<double>(images) / seconds;
        std::printf("bench_fid: Inception-v3 pool features, %lld images of 3x%lldx%lld in batches of %lld on %s (%s)\n",
                    (long long)images, (long long)res, (long long)res, (long long)batch,
                    device.is_cuda() ? cuda::device_name().c_str() : "the CPU", mode_text.c_str());
        std::printf("setup (weights, batch-norm folding): %.2f s\n", setup);
        std::printf("%.1f ms per batch, %.1f img/s; 50,000 images: %.1f s\n", 1e3 * seconds * batch / images, rate,
                    50000 / rate);
        if (device.is_cuda()) std::printf("peak memory %.2f GiB\n", report::peak_memory_gib(device));
        std::printf("img/s: %.2f\n", rate);
    });
}
