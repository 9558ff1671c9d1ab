#include "train/transfer.h"

#include <map>
#include <sstream>

namespace stf::train {

namespace {

template <class T> std::string text(const T& v) {
    std::ostringstream s;
    s << v;
    return s.str();
}
template <class T> std::string text(const std::vector<T>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + text(v[i]);
    return s + "]";
}

}  // namespace

std::string transfer_mismatch(const nn::NetworkConfig& snapshot, const nn::NetworkConfig& run) {
    std::vector<std::string> out;
    auto compare = [&](const char* name, const auto& a, const auto& b, const char* flag) {
        if (a != b) out.push_back(std::string(name) + ": snapshot " + text(a) + ", this run " + text(b) + " (" + flag + ")");
    };
    const nn::SongUNetConfig &s = snapshot.unet, &r = run.unet;
    compare("model_type", snapshot.model_type, run.model_type, "stf trains SongUNet");
    compare("precond", snapshot.precond, run.precond, "--precond");
    compare("sigma_data", snapshot.sigma_data, run.sigma_data, "EDM's 0.5");
    compare("img_resolution", s.img_resolution, r.img_resolution, "the dataset's image size, or --res");
    compare("img_channels", s.in_channels, r.in_channels, "the dataset's channels");
    compare("label_dim", s.label_dim, r.label_dim, "--cond and the dataset's classes");
    compare("augment_dim", s.augment_dim, r.augment_dim, "--augment: 9 when on, 0 when off");
    compare("model_channels", s.model_channels, r.model_channels, "--cbase");
    compare("channel_mult", s.channel_mult, r.channel_mult, "--cres");
    compare("channel_mult_emb", s.channel_mult_emb, r.channel_mult_emb, "EDM's 4");
    compare("num_blocks", s.num_blocks, r.num_blocks, "--blocks");
    compare("attn_resolutions", s.attn_resolutions, r.attn_resolutions, "--attn");
    compare("embedding_type", s.embedding_type, r.embedding_type, "--arch");
    compare("channel_mult_noise", s.channel_mult_noise, r.channel_mult_noise, "--arch");
    compare("encoder_type", s.encoder_type, r.encoder_type, "--arch");
    compare("decoder_type", s.decoder_type, r.decoder_type, "--arch");
    compare("resample_filter", s.resample_filter, r.resample_filter, "--arch");
    std::string joined;
    for (const std::string& m : out) joined += (joined.empty() ? "" : "; ") + m;
    return joined;
}

void copy_transfer_weights(const std::string& path, const nn::LoadedNetwork& src, const nn::NetworkConfig& run,
                           nn::Precond& net) {
    const std::string mismatch = transfer_mismatch(src.config, run);
    STF_CHECK(mismatch.empty(), "--transfer " << path << ": the snapshot's network does not match this run's flags: "
                                              << mismatch);
    std::map<std::string, Tensor> weights;
    for (auto& [n, t] : src.net->state_dict()) weights[n] = t;
    net.load_state_dict(weights);
}

}  // namespace stf::train
