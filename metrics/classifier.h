// A small image classifier whose penultimate features feed the Fréchet distance of ./stf_compare (the way
// FID uses Inception's pool features, but trained by this framework on the dataset's own labels).
//
// Network: stage s (channels[s]) is a 3x3 convolution (stride 1 in the first stage, 2 after: each later
// stage halves the resolution), then `convs_per_stage - 1` more 3x3 convolutions, each followed by
// GroupNorm (min(32, C/4) groups) and SiLU; then the global average over pixels gives the features
// (channels.back() of them) and a linear layer the class logits.
//
// Checkpoint: a safetensors file with metadata "format" = "stf-classifier" and "config" = the JSON of
// ClassifierConfig, so a file is self-describing; other metadata (e.g. "test_accuracy") is kept as given.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace stf::metrics {

struct ClassifierConfig {
    int64_t in_channels = 1;
    int64_t resolution = 32;  // input images are resolution x resolution
    int64_t num_classes = 10;
    std::vector<int64_t> channels = {16, 32, 64, 128};
    int64_t convs_per_stage = 2;

    int64_t feature_dim() const { return channels.empty() ? 0 : channels.back(); }
    void validate() const;  // throws stf::Error naming the bad field
    std::string to_json() const;
    static ClassifierConfig from_json(const std::string& json);  // throws stf::Error naming the bad key
};

// conv 3x3 (bias) -> GroupNorm -> SiLU; parameters "weight", "bias", "norm.weight", "norm.bias".
class ConvNormAct : public nn::Module {
public:
    ConvNormAct(int64_t in_channels, int64_t out_channels, int stride, Generator& gen);
    Tensor forward(const Tensor& x) const;
    Tensor weight, bias;
    int stride;

private:
    std::shared_ptr<nn::GroupNorm> norm_;
};

class Classifier : public nn::Module {
public:
    Classifier(const ClassifierConfig& config, Generator& gen);
    // x [n, in_channels, resolution, resolution] in [-1, 1] -> features [n, feature_dim].
    Tensor features(const Tensor& x) const;
    Tensor logits_from_features(const Tensor& features) const;  // -> [n, num_classes]
    Tensor forward(const Tensor& x) const { return logits_from_features(features(x)); }
    const ClassifierConfig& config() const { return config_; }

private:
    ClassifierConfig config_;
    std::vector<std::shared_ptr<ConvNormAct>> convs_;  // "stage{s}.conv{i}"
    std::shared_ptr<nn::Linear> head_;
};

// Mean cross-entropy of logits [n, classes] against integer labels (n of them, each in 0..classes-1),
// built from log_softmax so it is differentiable.
Tensor cross_entropy(const Tensor& logits, const std::vector<int>& labels);

inline constexpr const char* kClassifierFormat = "stf-classifier";

// Writes atomically (temporary file, then rename); `extra` metadata is stored beside format and config.
void save_classifier(const std::string& path, const Classifier& net, const std::map<std::string, std::string>& extra = {});

struct LoadedClassifier {
    std::shared_ptr<Classifier> net;  // CPU, float32, eval mode
    std::map<std::string, std::string> metadata;
};
// Throws stf::Error naming the file when it is not an stf classifier checkpoint (e.g. a diffusion network
// snapshot) or its tensors do not match its config.
LoadedClassifier load_classifier(const std::string& path);

}  // namespace stf::metrics
