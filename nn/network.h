// A whole network as users exchange it: the constructor arguments (EDM's names) and the weights, in
// one self-describing safetensors file whose metadata key "config" holds the arguments as JSON.
#pragma once
#include <memory>
#include <string>

#include "nn/precond.h"

namespace stf::nn {

struct NetworkConfig {
    std::string model_type = "SongUNet";
    std::string precond = "edm";  // edm, vp or ve
    double sigma_data = 0.5;
    SongUNetConfig unet;  // img_channels is unet.in_channels (= out_channels)

    static NetworkConfig preset(const std::string& arch);  // "ddpmpp" or "ncsnpp" (EDM's CIFAR-10 configs)
    std::string to_json() const;
    static NetworkConfig from_json(const std::string& json);  // throws stf::Error naming the bad key
};

std::shared_ptr<Precond> make_network(const NetworkConfig& config, Generator& gen);
NetworkConfig config_of(const Precond& net);

// Writes atomically (temporary file, then rename).
void save_network(const std::string& path, const Precond& net);
struct LoadedNetwork {
    std::shared_ptr<Precond> net;
    NetworkConfig config;
};
// Builds the network its config describes and loads the weights (CPU, float32); a file whose names,
// shapes or config do not match fails with a message listing the first mismatches.
LoadedNetwork load_network(const std::string& path);

}  // namespace stf::nn
