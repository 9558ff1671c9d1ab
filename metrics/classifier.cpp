#include "metrics/classifier.h"

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"

namespace stf::metrics {

using nlohmann::json;

// ---- config ------------------------------------------------------------------------------------------

void ClassifierConfig::validate() const {
    STF_CHECK(in_channels >= 1, "classifier config: in_channels must be >= 1, got " << in_channels);
    STF_CHECK(num_classes >= 2, "classifier config: num_classes must be >= 2, got " << num_classes);
    STF_CHECK(!channels.empty(), "classifier config: channels is empty (expected e.g. [16, 32, 64, 128])");
    for (int64_t c : channels)
        STF_CHECK(c >= 4, "classifier config: every entry of channels must be >= 4 (nn::GroupNorm needs 4 channels "
                          "per group), got " << c);
    STF_CHECK(convs_per_stage >= 1, "classifier config: convs_per_stage must be >= 1, got " << convs_per_stage);
    // Each stage after the first halves the resolution: it must stay at least 1 pixel.
    int64_t min_res = int64_t(1) << (channels.size() - 1);
    STF_CHECK(resolution >= min_res, "classifier config: resolution " << resolution << " is too small for "
                                                                      << channels.size() << " stages (needs >= "
                                                                      << min_res << ")");
}

std::string ClassifierConfig::to_json() const {
    json j = {{"model_type", "Classifier"},      {"in_channels", in_channels}, {"resolution", resolution},
              {"num_classes", num_classes},       {"channels", channels},       {"convs_per_stage", convs_per_stage}};
    return j.dump();
}

ClassifierConfig ClassifierConfig::from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(std::string("classifier config is not valid JSON: ") + e.what());
    }
    STF_CHECK(j.is_object(), "classifier config: expected a JSON object");
    STF_CHECK(j.value("model_type", std::string()) == "Classifier",
              "classifier config: model_type is '" << j.value("model_type", std::string()) << "', expected 'Classifier'");
    ClassifierConfig c;
    auto read = [&](const char* key, auto& out) {
        STF_CHECK(j.contains(key), "classifier config: missing key '" << key << "'");
        try {
            out = j[key].get<std::decay_t<decltype(out)>>();
        } catch (const json::exception& e) {
            throw Error(std::string("classifier config: key '") + key + "' has the wrong type (" + e.what() + ")");
        }
    };
    read("in_channels", c.in_channels);
    read("resolution", c.resolution);
    read("num_classes", c.num_classes);
    read("channels", c.channels);
    read("convs_per_stage", c.convs_per_stage);
    c.validate();
    return c;
}

// ---- network -----------------------------------------------------------------------------------------

ConvNormAct::ConvNormAct(int64_t in, int64_t out, int stride_, Generator& gen) : stride(stride_) {
    int64_t fan_in = in * 9, fan_out = out * 9;
    weight = register_parameter("weight", nn::weight_init({out, in, 3, 3}, "kaiming_uniform", fan_in, fan_out, gen));
    bias = register_parameter("bias", ops::zeros({out}));
    norm_ = register_module("norm", std::make_shared<nn::GroupNorm>(out));
}

Tensor ConvNormAct::forward(const Tensor& x) const {
    return silu(norm_->forward(conv2d(x, weight, bias, stride, /*padding=*/1)));
}

Classifier::Classifier(const ClassifierConfig& config, Generator& gen) : config_(config) {
    config_.validate();
    int64_t in = config_.in_channels;
    for (size_t s = 0; s < config_.channels.size(); ++s) {
        int64_t out = config_.channels[s];
        for (int64_t i = 0; i < config_.convs_per_stage; ++i) {
            int stride = (s > 0 && i == 0) ? 2 : 1;
            std::string name = "stage" + std::to_string(s) + ".conv" + std::to_string(i);
            convs_.push_back(register_module(name, std::make_shared<ConvNormAct>(in, out, stride, gen)));
            in = out;
        }
    }
    head_ = register_module("head", std::make_shared<nn::Linear>(in, config_.num_classes, true,
                                                             nn::Init{"kaiming_uniform", 1, 0}, gen));
}

Tensor Classifier::features(const Tensor& x) const {
    const ClassifierConfig& c = config_;
    STF_CHECK(x.ndim() == 4 && x.size(1) == c.in_channels && x.size(2) == c.resolution && x.size(3) == c.resolution,
              "Classifier: input " << describe(x) << ", expected [N, " << c.in_channels << ", " << c.resolution << ", "
                                   << c.resolution << "]");
    Tensor h = x;
    for (const auto& conv : convs_) h = conv->forward(h);
    return mean(h, {2, 3});  // global average pool
}

Tensor Classifier::logits_from_features(const Tensor& f) const { return head_->forward(f); }

Tensor cross_entropy(const Tensor& logits, const std::vector<int>& labels) {
    STF_CHECK(logits.ndim() == 2 && logits.size(0) == static_cast<int64_t>(labels.size()),
              "cross_entropy: logits " << describe(logits) << " for " << labels.size() << " labels");
    int64_t n = logits.size(0), k = logits.size(1);
    std::vector<double> onehot(static_cast<size_t>(n * k), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        int l = labels[static_cast<size_t>(i)];
        STF_CHECK(l >= 0 && l < k, "cross_entropy: label " << l << " of sample " << i << " is outside 0.." << k - 1);
        onehot[static_cast<size_t>(i * k + l)] = 1.0;
    }
    Tensor target = ops::from_vector(onehot, {n, k}, logits.dtype(), logits.device());
    return neg(mean(sum(log_softmax(logits, 1) * target, {1})));
}

// ---- checkpoints -------------------------------------------------------------------------------------

void save_classifier(const std::string& path, const Classifier& net, const std::map<std::string, std::string>& extra) {
    std::map<std::string, std::string> metadata = extra;
    metadata["format"] = kClassifierFormat;
    metadata["config"] = net.config().to_json();
    nn::save_safetensors(path, net.state_dict(), metadata);
}

LoadedClassifier load_classifier(const std::string& path) {
    nn::SafetensorsFile file = nn::load_safetensors(path);
    auto format = file.metadata.find("format");
    std::string found = format == file.metadata.end() ? "none" : "'" + format->second + "'";
    STF_CHECK(format != file.metadata.end() && format->second == kClassifierFormat,
              "load_classifier: " << path << " is not an stf classifier checkpoint (format " << found << ", expected '"
                                  << kClassifierFormat << "'; write one with ./train_classifier)");
    auto config = file.metadata.find("config");
    STF_CHECK(config != file.metadata.end(), "load_classifier: " << path << " has no 'config' metadata");
    ClassifierConfig c;
    try {
        c = ClassifierConfig::from_json(config->second);
    } catch (const Error& e) {
        throw Error("load_classifier: " + path + ": " + e.what());
    }
    Generator gen(0);
    auto net = std::make_shared<Classifier>(c, gen);
    std::map<std::string, Tensor> state;
    for (auto& [name, t] : file.tensors) state[name] = t.dtype() == DType::F32 ? t : ops::to(t, DType::F32);
    try {
        net->load_state_dict(state);
    } catch (const Error& e) {
        throw Error("load_classifier: " + path + ": " + e.what());
    }
    net->eval();
    return {net, file.metadata};
}

}  // namespace stf::metrics
