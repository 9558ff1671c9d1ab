// Inception-v3 as FID uses it: the 2015 TensorFlow graph (inception-2015-12-05) whose 2048-d pool_3
// features every published FID is computed on (Heusel et al. 2017; EDM's fid.py; pytorch-fid). The
// graph differs from torchvision's Inception-v3 in three places, all reproduced here:
//   - its average pools exclude the zero padding from the mean (count_include_pad=False), in every
//     A, C and E block;
//   - the last block (Mixed_7c, "E_2") pools its fourth branch with a 3x3 max pool, not an average;
//   - every convolution is followed by batch normalisation with eps 1e-3, then ReLU.
// The input is uint8 pixels, resized bilinearly to 299x299 and scaled to about [-1, 1]. The two
// published copies of the weights do that differently, so the weight file says which:
//   EDM / StyleGAN's inception-2015-12-05.pkl: TensorFlow 1's resize_bilinear alignment, then
//     (x - 128) / 128;
//   pytorch-fid's pt_inception-2015-12-05-6726825d.pth: F.interpolate(align_corners=False), then
//     2 x / 255 - 1.
// (Scaling is affine and bilinear weights sum to 1, so it is applied before the resize, on the small image.)
//
// Batch norm is folded into each convolution when the weights are loaded (inference only):
//   w' = w * gamma / sqrt(var + eps),   b' = beta - mean * gamma / sqrt(var + eps),
// so a layer is conv2d_hw, a bias add and ReLU, all raw ops (tensor/ops.h): no graph is recorded.
//
// Weight files are safetensors with metadata format = "stf-inception", written by
// tools/inception_to_safetensors.py from either published file. Tensors carry pytorch-fid's names:
// <layer>.conv.weight [out, in, kh, kw], <layer>.bn.weight (gamma), .bn.bias (beta), .bn.running_mean,
// .bn.running_var, for the 94 layers of inception_layers(). Metadata "resize" is "half_pixel" or
// "tf1", "input_offset" and "input_scale" give x = (pixel - offset) / scale.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/tensor.h"

namespace stf::metrics {

// One convolution + batch norm + ReLU of the graph, by its pytorch-fid (torchvision) name.
struct InceptionLayer {
    std::string name;
    int64_t in, out, kh, kw;
    int stride, pad_h, pad_w;
};
// All 94, in graph order.
const std::vector<InceptionLayer>& inception_layers();

// How pixels become the network's input (from the weight file's metadata).
struct InceptionInput {
    bool half_pixel = true;               // resize alignment (ops::resize_bilinear)
    double offset = 127.5, scale = 127.5;  // x = (pixel - offset) / scale
};

class InceptionV3 {
public:
    static constexpr int64_t kFeatures = 2048, kResolution = 299;
    static constexpr double kBatchNormEps = 1e-3;

    // Reads a "stf-inception" safetensors file. Throws stf::Error naming the file and what is wrong
    // (not that format, a missing, extra or misshapen tensor, bad metadata).
    static InceptionV3 load(const std::string& path, Device device = Device::cpu());
    // The same from tensors and metadata already in memory; `what` names their origin in errors.
    InceptionV3(const nn::NamedTensors& tensors, const std::map<std::string, std::string>& metadata, Device device,
                const std::string& what);

    // pixels [N, C, H, W], values 0..255 (float32, any device; C = 3, or 1 repeated to 3 as EDM's fid.py
    // does) -> features [N, 2048] float32 on this network's device. Any H, W >= 1.
    Tensor features(const Tensor& pixels) const;

    Device device() const { return device_; }
    const InceptionInput& input() const { return input_; }

private:
    struct Conv {
        Tensor weight, bias;  // folded; bias [1, out, 1, 1]
        int stride, pad_h, pad_w;
    };
    Tensor layer(const std::string& name, const Tensor& x) const;  // conv + bias + ReLU
    Tensor block_a(const std::string& prefix, const Tensor& x) const;
    Tensor block_b(const std::string& prefix, const Tensor& x) const;
    Tensor block_c(const std::string& prefix, const Tensor& x) const;
    Tensor block_d(const std::string& prefix, const Tensor& x) const;
    Tensor block_e(const std::string& prefix, const Tensor& x, bool max_pool) const;

    std::map<std::string, Conv> convs_;
    InceptionInput input_;
    Device device_;
};

// Weights from a seeded formula, the same on every machine and in tools/inception_fixture.py (no
// random-number library involved), for tests and benchmarks where the real weights are absent.
// Element i of tensor `name` is u = splitmix64(fnv1a64(name) ^ seed + (i + 1) * 0x9E3779B97F4A7C15) / 2^64
// (top 53 bits), mapped to: conv weights (2u - 1) sqrt(6 / fan_in) (He-uniform); gamma and running_var
// 0.5 + u; beta and running_mean 0.2 (2u - 1). All rounded to float32. `resize` "half_pixel" gives
// pytorch-fid's input convention, "tf1" EDM's.
struct InceptionWeights {
    nn::NamedTensors tensors;
    std::map<std::string, std::string> metadata;
};
InceptionWeights random_inception_weights(uint64_t seed, const std::string& resize = "half_pixel");
// The formula's value u in [0, 1) for element i of tensor `name` (exposed for test images).
double seeded_uniform(const std::string& name, uint64_t seed, int64_t i);

}  // namespace stf::metrics
