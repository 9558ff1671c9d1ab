#include "nn/network.h"

#include <map>
#include <nlohmann/json.hpp>

#include "nn/safetensors.h"

namespace stf::nn {

using nlohmann::json;

NetworkConfig NetworkConfig::preset(const std::string& arch) {
    NetworkConfig c;
    if (arch == "ddpmpp") c.unet = SongUNetConfig::ddpmpp();
    else if (arch == "ncsnpp") c.unet = SongUNetConfig::ncsnpp();
    else throw Error("unknown architecture '" + arch + "' (expected ddpmpp or ncsnpp)");
    return c;
}

std::string NetworkConfig::to_json() const {
    const SongUNetConfig& u = unet;
    json j = {{"model_type", model_type},
              {"precond", precond},
              {"sigma_data", sigma_data},
              {"img_resolution", u.img_resolution},
              {"img_channels", u.in_channels},
              {"label_dim", u.label_dim},
              {"augment_dim", u.augment_dim},
              {"model_channels", u.model_channels},
              {"channel_mult", u.channel_mult},
              {"channel_mult_emb", u.channel_mult_emb},
              {"num_blocks", u.num_blocks},
              {"attn_resolutions", u.attn_resolutions},
              {"dropout", u.dropout},
              {"label_dropout", u.label_dropout},
              {"embedding_type", u.embedding_type},
              {"channel_mult_noise", u.channel_mult_noise},
              {"encoder_type", u.encoder_type},
              {"decoder_type", u.decoder_type},
              {"resample_filter", u.resample_filter}};
    return j.dump();
}

// Reads an optional key, keeping the default when absent; a key of the wrong type is an error.
template <class T> static void read(const json& j, const char* key, T& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    try {
        out = j[key].get<T>();
    } catch (const json::exception& e) {
        throw Error(std::string("network config: key '") + key + "' has the wrong type (" + e.what() + ")");
    }
}

NetworkConfig NetworkConfig::from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(std::string("network config is not valid JSON: ") + e.what());
    }
    STF_CHECK(j.is_object(), "network config: expected a JSON object");
    NetworkConfig c;
    SongUNetConfig& u = c.unet;
    read(j, "model_type", c.model_type);
    STF_CHECK(c.model_type == "SongUNet",
              "network config: model_type '" << c.model_type << "' is not supported (only SongUNet)");
    read(j, "precond", c.precond);
    STF_CHECK(c.precond == "edm" || c.precond == "vp" || c.precond == "ve",
              "network config: precond '" << c.precond << "' (expected edm, vp or ve)");
    read(j, "sigma_data", c.sigma_data);
    read(j, "img_resolution", u.img_resolution);
    read(j, "img_channels", u.in_channels);
    u.out_channels = u.in_channels;
    read(j, "label_dim", u.label_dim);
    read(j, "augment_dim", u.augment_dim);
    read(j, "model_channels", u.model_channels);
    read(j, "channel_mult", u.channel_mult);
    read(j, "channel_mult_emb", u.channel_mult_emb);
    read(j, "num_blocks", u.num_blocks);
    read(j, "attn_resolutions", u.attn_resolutions);
    read(j, "dropout", u.dropout);
    read(j, "label_dropout", u.label_dropout);
    read(j, "embedding_type", u.embedding_type);
    read(j, "channel_mult_noise", u.channel_mult_noise);
    read(j, "encoder_type", u.encoder_type);
    read(j, "decoder_type", u.decoder_type);
    read(j, "resample_filter", u.resample_filter);
    return c;
}

std::shared_ptr<Precond> make_network(const NetworkConfig& c, Generator& gen) {
    if (c.precond == "edm") return std::make_shared<EDMPrecond>(c.unet, c.sigma_data, gen);
    if (c.precond == "vp") return std::make_shared<VPPrecond>(c.unet, gen);
    if (c.precond == "ve") return std::make_shared<VEPrecond>(c.unet, gen);
    throw Error("make_network: precond '" + c.precond + "' (expected edm, vp or ve)");
}

NetworkConfig config_of(const Precond& net) {
    NetworkConfig c;
    c.precond = net.kind();
    c.unet = net.model().config();
    if (auto* edm = dynamic_cast<const EDMPrecond*>(&net)) c.sigma_data = edm->sigma_data;
    return c;
}

void save_network(const std::string& path, const Precond& net) {
    save_safetensors(path, net.state_dict(), {{"config", config_of(net).to_json()}, {"format", "stf"}});
}

LoadedNetwork load_network(const std::string& path) {
    SafetensorsFile file = load_safetensors(path);
    auto it = file.metadata.find("config");
    STF_CHECK(it != file.metadata.end(), "load_network: " << path
                                                         << " has no 'config' metadata (write it with save_network or "
                                                            "tools/edm_to_safetensors.py)");
    auto format = file.metadata.find("format");
    STF_CHECK(format == file.metadata.end() || format->second != "stf-training-state",
              "load_network: " << path << " is a training state (network, EMA and optimiser state for --resume), not "
                               << "a network snapshot; use a network-snapshot-*.safetensors of the same run");
    NetworkConfig config = NetworkConfig::from_json(it->second);
    // The config comes from the file: before building (and allocating) the network it describes, check
    // that the file can hold it. Each encoder block has a 3x3 convolution of C x C weights per level, so
    // the file holds at least that many elements; a config claiming 10^7 blocks fails here, not in malloc.
    const SongUNetConfig& u = config.unet;
    try {
        validate_config(u);  // bounded sizes: the products below cannot overflow
    } catch (const Error& e) {
        throw Error("load_network: " + path + ": " + e.what());
    }
    int64_t file_elements = 0, needed = 0;
    for (const auto& [name, t] : file.tensors) file_elements += t.numel();
    for (int64_t m : u.channel_mult) needed += u.num_blocks * 9 * (u.model_channels * m) * (u.model_channels * m);
    STF_CHECK(needed <= file_elements, "load_network: " << path << ": its config describes a network of at least "
                                                        << needed << " weights, but the file holds " << file_elements
                                                        << " (a corrupt or mismatched config)");
    Generator gen(0);
    std::shared_ptr<Precond> net = make_network(config, gen);
    std::map<std::string, Tensor> state;
    for (auto& [name, t] : file.tensors) state[name] = t.dtype() == DType::F32 ? t : ops::to(t, DType::F32);
    try {
        net->load_state_dict(state);
    } catch (const Error& e) {
        throw Error("load_network: " + path + ": " + e.what());
    }
    return {net, config};
}

}  // namespace stf::nn
