// ./sample: EDM's samplers (Heun, Euler, stochastic) from a network snapshot, to PNGs, a grid and .npy.
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <unistd.h>

#include "apps/common/flags.h"
#include "data/image_io.h"
#include "report/progress.h"
#include "cuda/runtime.h"
#include "diffusion/sampler.h"
#include "nn/graph_forward.h"
#include "nn/network.h"
#include "train/precision.h"

using namespace stf;

static const char* kUsage = R"(usage: sample --net FILE [options]

Generates images with EDM's sampler (Karras et al. 2022, Algorithm 2) from a network snapshot written
by train_cifar, or an EDM/STF checkpoint converted by tools/edm_to_safetensors.py.

  --net FILE|DIR        network snapshot (.safetensors), or a training run's directory (its newest snapshot),
                        or train_cifar's --outdir (the newest snapshot of its newest NNNNN-* run)
  --seeds 0-63          seeds, as ranges and lists: 0-63 or 1,5,9-12 (default 0-63); one image per seed
  --batch N             images per network call (default 64); the same seed gives the same image at any batch
  --heun N              Heun's 2nd-order sampler with N steps: 2N-1 network evaluations (default 18: 35)
  --euler N             Euler's 1st-order sampler with N steps instead
  --churn S             stochasticity S_churn (default 0: deterministic); --s-min, --s-max, --s-noise
  --sigma-min S         (default 0.002)  --sigma-max S (default 80)  --rho R (default 7)
  --latents FILE.npy    start from these N x C x H x W standard-normal latents instead of seeds (0 .. N-1)
  --class C             class-conditional networks: every image of class C (default: each seed's class drawn
                        from the seed's own random stream after its latents, as EDM's generate.py does)
  --guidance W          classifier-free guidance for a network trained with --label-dropout:
                        D = D(x; no label) + W (D(x; class) - D(x; no label)); 1 (default) is plain conditional
  --outdir DIR          one PNG per seed, in EDM's layout (DIR/000000/000012.png), for fid.py
  --grid FILE.png       all images in one grid
  --out-npy FILE.npy    the raw float32 outputs, N x C x H x W in [-1, 1] (before rounding to pixels)
  --device cpu|cuda     (default cuda)
  --precision fp32|tf32|bf16  the network's arithmetic (default fp32, EDM's): tf32 on tensor cores (CUDA),
                        bf16 mixed precision (its convolutions and activations in bfloat16; emulated on the
                        CPU); the sampler itself always runs in float64
  --cuda-graph on|off   replay each network evaluation as a CUDA graph, captured at the second evaluation of
                        each batch shape (default off; not yet run on a GPU; on the CPU, on evaluates eagerly)
)";

// Fails before any sampling when an output cannot be written: an output file's folder must exist and be
// writable, and the file must not be a folder; an output folder is created and tried with a probe file.
static void check_output_file(const char* flag, const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    STF_CHECK(!fs::is_directory(path, ec), "--" << flag << " " << path << " is a directory, not a file");
    fs::path dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    STF_CHECK(fs::is_directory(dir, ec), "--" << flag << " " << path << ": folder '" << dir.string() << "' does not exist");
    STF_CHECK(::access(dir.c_str(), W_OK) == 0, "--" << flag << " " << path << ": folder '" << dir.string()
                                                     << "' is not writable");
}

static void check_output_dir(const char* flag, const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    STF_CHECK(fs::is_directory(dir, ec), "--" << flag << " " << dir << ": cannot create this folder"
                                             << (ec ? ": " + ec.message() : std::string()));
    STF_CHECK(::access(dir.c_str(), W_OK) == 0, "--" << flag << " " << dir << ": folder is not writable");
}

// EDM's generate.py draws a seed's class from the seed's own generator right after its latents; here the
// seed's Philox stream is at offset 1 after the latents' draw at offset 0.
static int64_t random_class(int64_t seed, int64_t label_dim) {
    Generator g(static_cast<uint64_t>(seed));
    g.next_stream();  // the latents
    const double u = ops::rand({1}, g, DType::F64).to_vector()[0];
    return std::min(label_dim - 1, static_cast<int64_t>(u * static_cast<double>(label_dim)));
}

// The newest network-snapshot-*.safetensors of a training run (names sort by kimg); "" when none.
static std::string newest_snapshot_in(const std::filesystem::path& dir) {
    std::string best;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = entry.path().filename().string();
        if (name.rfind("network-snapshot-", 0) == 0 && entry.path().extension() == ".safetensors" &&
            entry.path().string() > best)
            best = entry.path().string();
    }
    return best;
}

// A run directory's newest snapshot, or for a directory of runs (train_cifar's --outdir, runs named
// NNNNN-<description>) the newest snapshot of the run with the largest NNNNN that has one.
static std::string newest_snapshot(const std::string& dir) {
    std::string best = newest_snapshot_in(dir);
    if (!best.empty()) return best;
    long long best_id = -1;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        size_t digits = 0;
        while (digits < name.size() && std::isdigit(static_cast<unsigned char>(name[digits]))) ++digits;
        if (digits == 0 || digits > 15 || digits >= name.size() || name[digits] != '-' || !entry.is_directory(ec)) continue;
        const long long id = std::stoll(name.substr(0, digits));
        std::string snap = id > best_id ? newest_snapshot_in(entry.path()) : "";
        if (!snap.empty()) best_id = id, best = snap;
    }
    STF_CHECK(!best.empty(), "--net " << dir << ": no network-snapshot-*.safetensors in this directory or in its runs "
                                             "(NNNNN-* directories)");
    return best;
}

int main(int argc, char** argv) {
    return apps::run_program("sample", argc, argv, kUsage, [&](apps::Flags& f) {
        std::string net_path = f.str("net", "");
        std::string seeds_text = f.str("seeds", "0-63");
        int64_t batch = f.integer("batch", 64);
        diffusion::SamplerOptions so;
        STF_CHECK(!(f.given("heun") && f.given("euler")), "give --heun N or --euler N, not both");
        if (f.given("euler")) {
            so.heun = false;
            so.num_steps = static_cast<int>(f.integer("euler", 18));
        } else {
            so.num_steps = static_cast<int>(f.integer("heun", 18));
        }
        so.S_churn = f.real("churn", 0);
        so.S_min = f.real("s-min", 0);
        so.S_max = f.real("s-max", INFINITY);
        so.S_noise = f.real("s-noise", 1);
        so.sigma_min = f.real("sigma-min", so.sigma_min);
        so.sigma_max = f.real("sigma-max", so.sigma_max);
        so.rho = f.real("rho", so.rho);
        std::string latents_path = f.str("latents", ""), outdir = f.str("outdir", ""), grid = f.str("grid", "");
        std::string out_npy = f.str("out-npy", "");
        Device device = Device::parse(f.str("device", "cuda"));
        std::string precision = f.str("precision", "fp32");
        const int64_t class_index = f.integer("class", -1);
        const double guidance = f.real("guidance", 1);
        const bool cuda_graph = f.on_off("cuda-graph", false);
        f.check_all_used();
        STF_CHECK(!net_path.empty(), "no network: give --net FILE (a snapshot from train_cifar)");
        STF_CHECK(batch >= 1, "--batch must be positive");
        STF_CHECK(!outdir.empty() || !grid.empty() || !out_npy.empty(),
                  "nothing to write: give --outdir DIR, --grid FILE.png and/or --out-npy FILE.npy");
        STF_CHECK(!device.is_cuda() || cuda::available(),
                  "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                                : "stf was built without CUDA (use --device cpu)"));

        if (!out_npy.empty()) check_output_file("out-npy", out_npy);
        if (!grid.empty()) check_output_file("grid", grid);
        if (!outdir.empty()) check_output_dir("outdir", outdir);
        std::vector<int64_t> seeds;
        if (latents_path.empty()) seeds = apps::parse_seeds(seeds_text);

        const std::string arithmetic = train::set_precision(precision, device);
        if (std::filesystem::is_directory(net_path)) net_path = newest_snapshot(net_path);
        std::printf("network: %s\n", net_path.c_str());
        nn::LoadedNetwork loaded = nn::load_network(net_path);
        const std::string bad_weight = nn::first_non_finite(loaded.net->state_dict());
        STF_CHECK(bad_weight.empty(), "--net " << net_path << ": weight '" << bad_weight << "' holds NaN or infinite "
                                               << "values; this snapshot cannot produce images");
        nn::Precond& net = *loaded.net;
        net.to(device);
        net.eval();
        net.set_activation_dtype(train::activation_dtype(precision));
        std::printf("arithmetic: %s\n", arithmetic.c_str());
        const nn::SongUNetConfig& u = loaded.config.unet;
        Shape image{u.in_channels, u.img_resolution, u.img_resolution};
        const int64_t label_dim = u.label_dim;
        STF_CHECK(!f.given("class") || label_dim > 0,
                  "--class: " << net_path << " is an unconditional network (label_dim 0); train with --cond");
        STF_CHECK(!f.given("class") || (class_index >= 0 && class_index < label_dim),
                  "--class " << class_index << " is out of range: the network has classes 0 .. " << label_dim - 1);
        STF_CHECK(guidance == 1 || label_dim > 0, "--guidance: " << net_path << " is an unconditional network");
        STF_CHECK(guidance == 1 || u.label_dropout > 0,
                  "--guidance " << guidance << ": " << net_path << " was trained without label dropout, so its output "
                                << "without a label was never trained (train with --cond --label-dropout P)");

        // Latents: from a file, or one standard-normal draw per seed (so an image depends on its seed only),
        // drawn batch by batch.
        Tensor latents;
        if (!latents_path.empty()) {
            latents = ops::to(data::read_npy(latents_path), DType::F64);
            STF_CHECK(latents.ndim() == 4 && Shape(latents.shape().begin() + 1, latents.shape().end()) == image,
                      "--latents " << latents_path << " holds " << describe(latents) << ", the network needs N x "
                                   << shape_str(image));
            const std::string bad = nn::first_non_finite({{"latents", latents}});
            STF_CHECK(bad.empty(), "--latents " << latents_path << " holds NaN or infinite values");
            for (int64_t i = 0; i < latents.size(0); ++i) seeds.push_back(i);
            if (f.given("seeds")) std::fprintf(stderr, "sample: --latents given, --seeds ignored\n");
        }
        auto latents_of = [&](int64_t b0, int64_t len) {
            if (latents.defined()) return ops::contiguous(ops::narrow(latents, 0, b0, len));
            std::vector<Tensor> per_seed;
            for (int64_t i = b0; i < b0 + len; ++i) {
                Generator g(static_cast<uint64_t>(seeds[static_cast<size_t>(i)]));
                per_seed.push_back(ops::unsqueeze(ops::randn(image, g, DType::F64), 0));
            }
            return ops::cat(per_seed, 0);
        };
        const int64_t n = static_cast<int64_t>(seeds.size());
        // One-hot class labels per image (none for an unconditional network).
        Tensor labels;
        if (label_dim > 0) {
            std::vector<double> onehot(static_cast<size_t>(n * label_dim), 0.0);
            for (int64_t i = 0; i < n; ++i)
                onehot[static_cast<size_t>(i * label_dim + (class_index >= 0 ? class_index
                                                                             : random_class(seeds[static_cast<size_t>(i)], label_dim)))] = 1;
            labels = ops::from_vector(onehot, {n, label_dim}, DType::F32);
            std::string guided = guidance == 1 ? "" : ", guidance " + std::to_string(guidance);
            if (class_index >= 0) std::printf("class %lld for every image%s\n", (long long)class_index, guided.c_str());
            else std::printf("classes 0 .. %lld drawn per seed%s\n", (long long)label_dim - 1, guided.c_str());
        }
        std::printf("sampling %lld images with %s %d steps (%lld network evaluations per batch), %s, batch %lld\n",
                    (long long)n, so.heun ? "Heun" : "Euler", so.num_steps,
                    (long long)diffusion::network_evaluations(so), device.str().c_str(), (long long)batch);

        // The sampler runs in float64 on the CPU; the network in float32 on its device. With guidance the
        // conditional and unconditional (all-zero label) evaluations share one network call of twice the batch.
        Tensor batch_labels;  // the current batch's labels, on the device
        Generator no_dropout;  // eval mode: the network draws nothing
        // The network evaluation, replayed as a CUDA graph with --cuda-graph on (nn/graph_forward.h):
        // inputs x, sigma and, for a class-conditional network, the labels.
        nn::GraphForward network(
            [&](const std::vector<Tensor>& in) {
                NoGradGuard no_grad;
                return in[2].defined() ? net.forward(in[0], in[1], in[2], Tensor(), no_dropout) : net.forward(in[0], in[1]);
            },
            cuda_graph && device.is_cuda());
        auto on_host = [](const Tensor& d) { return ops::to(ops::to(d, Device::cpu()), DType::F64); };
        diffusion::Denoiser denoise = [&](const Tensor& x, double sigma) {
            NoGradGuard no_grad;
            Tensor xd = ops::to(ops::to(x, DType::F32), device);
            const int64_t b = x.size(0);
            if (label_dim == 0 || guidance == 1)
                return on_host(network({xd, ops::full({b}, sigma, DType::F32, device), batch_labels}));
            Tensor s = ops::full({2 * b}, sigma, DType::F32, device);
            Tensor both = on_host(
                network({ops::cat({xd, xd}, 0), s, ops::cat({batch_labels, ops::zeros_like(batch_labels)}, 0)}));
            Tensor cond = ops::narrow(both, 0, 0, b), uncond = ops::narrow(both, 0, b, b);
            return ops::add(uncond, ops::mul_scalar(ops::sub(cond, uncond), guidance));
        };
        auto start = std::chrono::steady_clock::now();
        std::vector<Tensor> outputs;  // kept only for --grid and --out-npy
        std::vector<int64_t> non_finite_seeds;
        report::ProgressBar bar(n, "images");
        for (int64_t b0 = 0; b0 < n; b0 += batch) {
            int64_t len = std::min(batch, n - b0);
            std::vector<Generator> churn;
            for (int64_t i = 0; i < len; ++i) churn.emplace_back(static_cast<uint64_t>(seeds[b0 + i]) + (1ull << 32));
            if (labels.defined()) batch_labels = ops::to(ops::contiguous(ops::narrow(labels, 0, b0, len)), device);
            Tensor out = ops::to(diffusion::edm_sample(denoise, latents_of(b0, len), so, so.S_churn > 0 ? &churn : nullptr),
                                 DType::F32);
            const std::vector<double> values = out.to_vector();
            const size_t per = values.size() / static_cast<size_t>(len);
            for (int64_t i = 0; i < len; ++i)
                for (size_t k = 0; k < per; ++k)
                    if (!std::isfinite(values[static_cast<size_t>(i) * per + k])) {
                        non_finite_seeds.push_back(seeds[static_cast<size_t>(b0 + i)]);
                        break;
                    }
            // PNGs are written as they are made, so an interrupted run keeps what it finished.
            if (!outdir.empty())
                data::write_images_to_dir(outdir, out, std::vector<int64_t>(seeds.begin() + b0, seeds.begin() + b0 + len));
            if (!grid.empty() || !out_npy.empty()) outputs.push_back(out);
            bar.update(b0 + len);
        }
        bar.finish();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%lld images in %.2f s: %.2f img/s, %lld network evaluations\n", (long long)n, secs,
                    static_cast<double>(n) / secs,
                    (long long)(diffusion::network_evaluations(so) * ((n + batch - 1) / batch)));
        if (!outdir.empty()) std::printf("wrote %lld PNGs under %s\n", (long long)n, outdir.c_str());
        Tensor images = outputs.empty() ? Tensor() : ops::cat(outputs, 0);
        if (!out_npy.empty()) {
            data::write_npy(out_npy, images);
            std::printf("wrote %s\n", out_npy.c_str());
        }
        if (!grid.empty()) {
            data::write_image_grid(grid, images);
            std::printf("wrote %s\n", grid.c_str());
        }
        if (!non_finite_seeds.empty()) {
            std::ostringstream list;
            for (size_t i = 0; i < std::min<size_t>(non_finite_seeds.size(), 10); ++i) list << (i ? ", " : "") << non_finite_seeds[i];
            throw Error(std::to_string(non_finite_seeds.size()) + " of " + std::to_string(n) +
                        " images came out with NaN or infinite values (seeds " + list.str() +
                        (non_finite_seeds.size() > 10 ? ", ..." : "") + "); they were written black");
        }
    });
}
