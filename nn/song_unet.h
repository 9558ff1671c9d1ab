// EDM's SongUNet: the DDPM++ and NCSN++ U-Nets of Song et al., as EDM configures them.
#pragma once
#include <string>
#include <vector>

#include "nn/layers.h"

namespace stf::nn {

struct SongUNetConfig {
    int64_t img_resolution = 32, in_channels = 3, out_channels = 3;
    int64_t label_dim = 0, augment_dim = 0;
    int64_t model_channels = 128;
    std::vector<int64_t> channel_mult{1, 2, 2, 2};
    int64_t channel_mult_emb = 4, num_blocks = 4;
    std::vector<int64_t> attn_resolutions{16};
    double dropout = 0.10, label_dropout = 0;
    std::string embedding_type = "positional";  // positional (DDPM++) or fourier (NCSN++)
    int64_t channel_mult_noise = 1;
    std::string encoder_type = "standard";  // standard, skip or residual
    std::string decoder_type = "standard";  // standard or skip
    std::vector<double> resample_filter{1, 1};

    // EDM's CIFAR-10 presets (train.py --arch=ddpmpp / ncsnpp, channel_mult [2, 2, 2]).
    static SongUNetConfig ddpmpp();
    static SongUNetConfig ncsnpp();
};

// Bounds on a SongUNet's sizes, checked before any layer is built: configs come from flags and from
// files (a snapshot's metadata), and a network of 10^7 blocks would exhaust memory before its weights
// could be found not to match. Generous for EDM's networks (DDPM++ CIFAR-10: 128 channels, 4 levels,
// 4 blocks; ImageNet-64 ADM: 192 channels).
struct SongUNetLimits {
    int64_t max_channels = 4096, max_levels = 10, max_channel_mult = 64, max_blocks = 64;
    int64_t max_resolution = 4096, max_image_channels = 64, max_label_dim = 100000, max_emb_mult = 64;
};

// Throws stf::Error naming the field when a config is outside SongUNetLimits or inconsistent (levels
// that do not halve the resolution, attention at a resolution the network does not have; 0 stands for
// none, as in --attn 0).
void validate_config(const SongUNetConfig& c);

// A ModuleDict: children addressed by name, kept in insertion order.
class ModuleList : public Module {
public:
    template <class M> std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
        names_.push_back(name);
        return register_module(name, m);
    }
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& items() const { return children(); }

private:
    std::vector<std::string> names_;
};

// One row of a module summary: a layer, its output shape and its tensor counts.
struct LayerTrace {
    std::string name;
    Shape output;
    int64_t params = 0, buffers = 0;
};
// While set (non-null), SongUNet::forward appends a row for each layer it runs, as EDM's
// print_module_summary does. For inspection tools; off by default.
void set_layer_trace(std::vector<LayerTrace>* trace);

// Forward floating-point operations of one image through a SongUNet built from `config`: 2 per
// multiply-add of every convolution (the FIR resampling filters included), linear layer and attention
// matrix product. Normalisation, activations, bias adds and the noise embedding are left out: they are
// memory-bound and under 1% of the arithmetic. DDPM++ at 32x32x3: 42.4 GFLOP; a training step (forward
// and backward) is about 3x that.
double forward_flops(const SongUNetConfig& config);

class SongUNet : public Module {
public:
    SongUNet(const SongUNetConfig& config, Generator& gen);
    // x [n, in_channels, res, res], noise_labels [n], class_labels [n, label_dim] or undefined,
    // augment_labels [n, augment_dim] or undefined.
    Tensor forward(const Tensor& x, const Tensor& noise_labels, const Tensor& class_labels,
                   const Tensor& augment_labels, Generator& dropout_gen) const;
    const SongUNetConfig& config() const { return config_; }

private:
    SongUNetConfig config_;
    std::shared_ptr<Module> map_noise_;
    std::shared_ptr<Linear> map_label_, map_augment_, map_layer0_, map_layer1_;
    std::shared_ptr<ModuleList> enc_, dec_;
};

}  // namespace stf::nn
