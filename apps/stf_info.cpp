// stf_info: builds a network and prints its layer table (name, parameters, buffers, output shape) and
// the total parameter count, as EDM's module summary does.
#include <cstdio>

#include "apps/common/flags.h"
#include "nn/network.h"

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
)";

int main(int argc, char** argv) {
    return apps::run_program("stf_info", argc, argv, kUsage, [&](apps::Flags& flags) {
        nn::NetworkConfig c = nn::NetworkConfig::preset(flags.str("arch", "ddpmpp"));
        c.precond = flags.str("precond", "edm");
        c.unet.augment_dim = flags.integer("augment-dim", 0);
        c.unet.model_channels = flags.integer("cbase", c.unet.model_channels);
        c.unet.channel_mult = flags.int_list("cres", c.unet.channel_mult);
        c.unet.num_blocks = flags.integer("blocks", c.unet.num_blocks);
        c.unet.img_resolution = flags.integer("res", c.unet.img_resolution);
        c.unet.in_channels = c.unet.out_channels = flags.integer("channels", c.unet.in_channels);
        c.unet.attn_resolutions = flags.int_list("attn", c.unet.attn_resolutions);
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
