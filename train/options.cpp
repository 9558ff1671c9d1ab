#include "train/options.h"

#include <nlohmann/json.hpp>

#include "data/dataset.h"

namespace stf::train {

using nlohmann::json;

std::string TrainOptions::to_json() const {
    json j = {{"data", data},         {"outdir", outdir},       {"desc", desc},           {"nosubdir", nosubdir},
              {"max_images", max_images}, {"pad_to", pad_to}, {"xflip", xflip}, {"cond", cond},
              {"net", json::parse(net.to_json())},
              {"target", target},     {"rbatch", rbatch},       {"knn_k", knn_k},       {"rbatch_scope", rbatch_scope}, {"batch", batch},
              {"batch_gpu", batch_gpu}, {"duration_mimg", duration_mimg}, {"lr", lr},
              {"lr_rampup_mimg", lr_rampup_mimg}, {"ema_mimg", ema_mimg}, {"ema_rampup", ema_rampup},
              {"augment", augment},   {"seed", seed},           {"tick_kimg", tick_kimg},
              {"snap_ticks", snap_ticks}, {"dump_ticks", dump_ticks}, {"device", device},
              {"precision", precision}, {"transfer", transfer}};
    return j.dump(2);
}

TrainOptions TrainOptions::from_json(const std::string& text) {
    TrainOptions o;
    try {
        json j = json::parse(text);
        o.data = j.at("data");
        o.outdir = j.at("outdir");
        // Runs started before these options existed had none of them.
        o.desc = j.value("desc", "");
        o.nosubdir = j.value("nosubdir", false);
        o.xflip = j.value("xflip", false);
        o.cond = j.value("cond", false);
        o.transfer = j.value("transfer", "");
        o.max_images = j.at("max_images");
        o.pad_to = j.at("pad_to");
        o.net = nn::NetworkConfig::from_json(j.at("net").dump());
        // Runs started before --target: "stf" true or false.
        o.target = j.contains("target") ? j.at("target").get<std::string>() : (j.at("stf").get<bool>() ? "stf" : "dsm");
        o.rbatch = j.at("rbatch");
        o.knn_k = j.value("knn_k", o.knn_k);
        o.rbatch_scope = j.value("rbatch_scope", "local");
        o.batch = j.at("batch");
        o.batch_gpu = j.at("batch_gpu");
        o.duration_mimg = j.at("duration_mimg");
        o.lr = j.at("lr");
        o.lr_rampup_mimg = j.at("lr_rampup_mimg");
        o.ema_mimg = j.at("ema_mimg");
        o.ema_rampup = j.at("ema_rampup");
        o.augment = j.at("augment");
        o.seed = j.at("seed");
        o.tick_kimg = j.at("tick_kimg");
        o.snap_ticks = j.at("snap_ticks");
        o.dump_ticks = j.at("dump_ticks");
        o.device = j.at("device");
        o.precision = j.value("precision", "fp32");  // runs started before mixed precision existed
    } catch (const json::exception& e) {
        throw Error(std::string("training options: ") + e.what());
    }
    return o;
}

TrainOptions TrainOptions::small() {
    TrainOptions o;
    o.data = data::ImageDataset::default_fashion_mnist_path();
    o.device = "cpu";
    o.net.unet.model_channels = 32;
    o.net.unet.channel_mult = {1, 2, 2};
    o.net.unet.num_blocks = 1;
    o.net.unet.dropout = 0.1;
    o.rbatch = 256;
    o.batch = 32;
    o.duration_mimg = 0.0072;
    o.lr = 2e-3;
    o.lr_rampup_mimg = 0.0005;
    o.ema_mimg = 0.001;
    o.augment = 0;
    o.tick_kimg = 0.8;
    o.snap_ticks = 3;
    o.dump_ticks = 3;
    o.outdir = "training-runs/small";
    o.nosubdir = true;  // the README's sample command reads training-runs/small
    return o;
}

}  // namespace stf::train
