#include "train/training_state.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace stf::train {

using nlohmann::json;

std::string kimg_file_name(const char* prefix, double kimg, double tick_kimg) {
    char buf[96];
    if (tick_kimg < 1) std::snprintf(buf, sizeof(buf), "%s-%010.3f.safetensors", prefix, kimg);
    else std::snprintf(buf, sizeof(buf), "%s-%06lld.safetensors", prefix, static_cast<long long>(std::llround(kimg)));
    return buf;
}

void save_training_state(const std::string& path, const TrainOptions& o, const nn::Precond& net,
                         const nn::Precond& ema, const nn::Adam& adam, const TrainingProgress& p) {
    nn::NamedTensors tensors;
    for (auto& [n, t] : net.state_dict()) tensors.emplace_back("net." + n, t);
    for (auto& [n, t] : ema.state_dict()) tensors.emplace_back("ema." + n, t);
    for (auto& [n, t] : adam.state()) tensors.emplace_back("adam." + n, t);
    json progress = {{"step", p.step},
                     {"tick", p.tick},
                     {"cur_nimg", p.cur_nimg},
                     {"tick_start_nimg", p.tick_start_nimg},
                     {"streams", "per-sample"}};  // data and randomness follow from the step (training_loop.h)
    nn::save_safetensors(path, tensors,
                         {{"options", o.to_json()}, {"progress", progress.dump()}, {"config", o.net.to_json()},
                          {"format", "stf-training-state"}});
}

TrainingState load_training_state(const std::string& path) {
    nn::SafetensorsFile f = nn::load_safetensors(path);
    STF_CHECK(f.metadata.count("options") && f.metadata.count("progress"),
              "--resume " << path << " is not a training state (no options/progress metadata); network snapshots "
                                     "hold only weights");
    TrainingState s;
    s.options = TrainOptions::from_json(f.metadata.at("options"));
    try {
        json j = json::parse(f.metadata.at("progress"));
        s.progress.step = j.at("step");
        s.progress.tick = j.at("tick");
        s.progress.cur_nimg = j.at("cur_nimg");
        s.progress.tick_start_nimg = j.at("tick_start_nimg");
    } catch (const json::exception& e) {
        throw Error("--resume " + path + ": bad progress metadata: " + e.what());
    }
    for (auto& [n, t] : f.tensors) {
        if (n.rfind("net.", 0) == 0) s.net[n.substr(4)] = t;
        else if (n.rfind("ema.", 0) == 0) s.ema[n.substr(4)] = t;
        else if (n.rfind("adam.", 0) == 0) s.adam.emplace_back(n.substr(5), t);
    }
    return s;
}

}  // namespace stf::train
