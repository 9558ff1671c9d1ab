// stf_info: builds a network and prints its layer table (name, parameters, buffers, output shape) and
// the total parameter count, as EDM's module summary does.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "apps/common/flags.h"
#include "nn/network.h"
#include "nn/safetensors.h"

using namespace stf;

static const char* kUsage = R"(usage: stf_info [options]
  --arch ddpmpp|ncsnpp    EDM's CIFAR-10 architecture (default ddpmpp)
  --precond edm|vp|ve     preconditioning (default edm)
  --augment-dim N         augmentation labels fed to the network (EDM uses 9 with augmentation; default 0)
  --cbase N               model_channels (default 128)
  --cres 1,2,2            channel_mult per resolution level (default 2,2,2)
  --blocks N              residual blocks per level (default 4)
  --res R                 image resolution (default 32)
  --channels C            image channels (default 3)
  --attn 16               attention resolutions (default 16)
  --no-forward            skip the forward pass (no output shapes)

comparing two weight or training-state files (e.g. runs that should have ended alike)
  --compare A --to B      per-tensor difference max|a - b| / max|a|; prints the worst tensor
  --tolerance T           exit with an error when the whole-file relative difference |a - b| / |a|
                          exceeds T
)";

// Compares two safetensors files tensor by tensor; throws when names or shapes differ, or when the
// whole-file relative difference passes `tolerance` (< 0: never). The per-tensor figures are printed
// but not judged: tensors that start at zero and get (near-)zero gradients, such as attention's key
// bias, to which the softmax is blind, turn rounding noise into full Adam steps.
static void compare_files(const std::string& path_a, const std::string& path_b, double tolerance) {
    nn::SafetensorsFile a = nn::load_safetensors(path_a), b = nn::load_safetensors(path_b);
    std::map<std::string, Tensor> by_name(b.tensors.begin(), b.tensors.end());
    STF_CHECK(a.tensors.size() == b.tensors.size(),
              path_a << " holds " << a.tensors.size() << " tensors, " << path_b << " " << b.tensors.size());
    std::vector<std::pair<double, std::string>> rows;  // relative difference, name
    size_t identical = 0;
    double diff_sq = 0, norm_sq = 0;  // over all tensors
    for (auto& [name, ta] : a.tensors) {
        auto it = by_name.find(name);
        STF_CHECK(it != by_name.end(), path_b << " has no tensor '" << name << "'");
        STF_CHECK(it->second.shape() == ta.shape(), "'" << name << "' has shape " << describe(ta) << " in " << path_a
                                                       << " but " << describe(it->second) << " in " << path_b);
        std::vector<double> x = ta.to_vector(), y = it->second.to_vector();
        double diff = 0, scale = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            diff = std::max(diff, std::abs(x[i] - y[i]));
            scale = std::max(scale, std::abs(x[i]));
            diff_sq += (x[i] - y[i]) * (x[i] - y[i]);
            norm_sq += x[i] * x[i];
        }
        identical += diff == 0;
        rows.emplace_back(diff == 0 ? 0 : diff / std::max(scale, 1e-30), name);
    }
    std::sort(rows.begin(), rows.end(), std::greater<>());
    std::printf("tensors: %zu (%zu identical)\nwhole-file relative difference |a - b| / |a|: %.3g\n"
                "largest per-tensor relative differences max|a - b| / max|a|:\n",
                a.tensors.size(), identical, norm_sq > 0 ? std::sqrt(diff_sq / norm_sq) : std::sqrt(diff_sq));
    for (size_t i = 0; i < std::min<size_t>(5, rows.size()); ++i)
        std::printf("  %-10.3g %s\n", rows[i].first, rows[i].second.c_str());
    const double whole = norm_sq > 0 ? std::sqrt(diff_sq / norm_sq) : std::sqrt(diff_sq);
    STF_CHECK(tolerance < 0 || whole <= tolerance,
              "the whole-file relative difference " << whole << " exceeds --tolerance " << tolerance);
}

int main(int argc, char** argv) {
    return apps::run_program("stf_info", argc, argv, kUsage, [&](apps::Flags& flags) {
        if (flags.given("compare")) {
            std::string first = flags.str("compare", ""), second = flags.str("to", "");
            STF_CHECK(!second.empty(), "--compare needs a second file: --compare A --to B");
            double tolerance = flags.real("tolerance", -1);
            flags.check_all_used();
            compare_files(first, second, tolerance);
            return;
        }
        nn::NetworkConfig c = nn::NetworkConfig::preset(flags.str("arch", "ddpmpp"));
        c.precond = flags.str("precond", "edm");
        c.unet.augment_dim = flags.integer("augment-dim", 0);
        apps::model_size_flags(flags, c.unet);
        c.unet.img_resolution = flags.integer("res", c.unet.img_resolution);
        c.unet.in_channels = c.unet.out_channels = flags.integer("channels", c.unet.in_channels);
        bool forward = !flags.boolean("no-forward");
        flags.check_all_used();

        Generator gen(0);
        std::shared_ptr<nn::Precond> net = nn::make_network(c, gen);
        net->eval();
        std::printf("%s, %s preconditioning, %lldx%lldx%lld\n", c.unet.embedding_type == "fourier" ? "NCSN++" : "DDPM++",
                    c.precond.c_str(), (long long)c.unet.in_channels, (long long)c.unet.img_resolution,
                    (long long)c.unet.img_resolution);
        if (forward) {
            std::vector<nn::LayerTrace> rows;
            nn::set_layer_trace(&rows);
            {
                NoGradGuard no_grad;
                int64_t r = c.unet.img_resolution;
                Tensor x = ops::randn({1, c.unet.in_channels, r, r}, gen);
                Tensor sigma = ops::full({1}, 1.0);
                Tensor aug = c.unet.augment_dim ? ops::zeros({1, c.unet.augment_dim}) : Tensor();
                net->forward(x, sigma, Tensor(), aug, gen);
            }
            nn::set_layer_trace(nullptr);
            std::printf("\n%-34s %12s %8s  %s\n", "layer", "parameters", "buffers", "output shape");
            std::printf("%-34s %12s %8s  %s\n", "---", "---", "---", "---");
            for (const nn::LayerTrace& row : rows)
                std::printf("%-34s %12lld %8lld  %s\n", row.name.c_str(), (long long)row.params, (long long)row.buffers,
                            shape_str(row.output).c_str());
        }
        int64_t buffers = 0;
        for (auto& [name, t] : net->named_buffers()) buffers += t.numel();
        std::printf("\ntensors in state_dict: %zu\nbuffer elements: %lld\nparameters: %lld\n", net->state_dict().size(),
                    (long long)buffers, (long long)net->num_parameters());
    });
}
