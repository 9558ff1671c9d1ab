// Training end to end on the CPU, in-process: the loss falls, checkpoints appear, a stopped and resumed
// run ends with exactly the weights of one that never stopped, and bad options fail clearly.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "train/training_loop.h"
#include "nn/safetensors.h"
#include "tests/requirements.h"
#include "tests/temp_files.h"

using namespace stf;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_test_train") {}
};

train::TrainOptions tiny(const fs::path& outdir, bool stf) {
    train::TrainOptions o;
    o.data = data::ImageDataset::default_fashion_mnist_path();
    o.max_images = 512;
    o.pad_to = 0;  // 28x28 as stored
    o.outdir = outdir.string();
    o.net = nn::NetworkConfig::preset("ddpmpp");
    o.net.unet.model_channels = 8;
    o.net.unet.channel_mult = {1, 2};
    o.net.unet.num_blocks = 1;
    o.net.unet.attn_resolutions = {14};
    o.net.unet.dropout = 0.1;
    o.stf = stf;
    o.rbatch = 64;
    o.batch = 16;
    o.batch_gpu = 8;
    o.duration_mimg = 16 * 40 / 1e6;  // 40 steps
    o.lr = 2e-3;
    o.lr_rampup_mimg = 0;
    o.ema_mimg = 0.0005;
    o.augment = 0.12;
    o.tick_kimg = 0.16;  // every 10 steps
    o.snap_ticks = 2;
    o.dump_ticks = 2;
    o.device = "cpu";
    o.progress_bar = false;
    return o;
}

nn::NamedTensors weights(const std::string& state_path) { return nn::load_safetensors(state_path).tensors; }

}  // namespace

TEST_CASE("STF training on Fashion-MNIST: checkpoints, stats, and a bit-exact resume" * test::needs_fashion_mnist()) {
    TempDir dir;
    train::TrainSummary full = train::training_loop(tiny(dir.path / "full", true));
    CHECK(full.steps == 40);
    CHECK(fs::exists(full.snapshot));
    CHECK(fs::exists(dir.path / "full" / "stats.jsonl"));
    CHECK(fs::exists(dir.path / "full" / "loss.png"));
    CHECK(fs::exists(dir.path / "full" / "log.txt"));

    // Stop after 20 steps, then resume to 40.
    train::TrainOptions half = tiny(dir.path / "split", true);
    half.duration_mimg = 16 * 20 / 1e6;
    train::TrainSummary first = train::training_loop(half);
    CHECK(first.steps == 20);
    train::TrainOptions resume;
    resume.resume = first.state;
    resume.duration_mimg = 16 * 40 / 1e6;
    train::TrainSummary second = train::training_loop(resume);
    CHECK(second.steps == 40);
    nn::NamedTensors a = weights(full.state), b = weights(second.state);
    REQUIRE(a.size() == b.size());
    size_t differing = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].first == b[i].first);
        if (a[i].second.to_vector() != b[i].second.to_vector()) ++differing;
    }
    CHECK(differing == 0);
}

TEST_CASE("the loss goes down over a few hundred DSM steps" * test::needs_fashion_mnist()) {
    TempDir dir;
    train::TrainOptions o = tiny(dir.path / "dsm", false);
    o.augment = 0;
    o.net.unet.dropout = 0;
    o.duration_mimg = 16 * 200 / 1e6;
    o.tick_kimg = 16 * 50 / 1e3;
    o.snap_ticks = o.dump_ticks = 0;
    train::training_loop(o);
    std::ifstream stats(dir.path / "dsm" / "stats.jsonl");
    std::vector<double> losses;
    std::string line;
    while (std::getline(stats, line)) {
        nlohmann::json j = nlohmann::json::parse(line);
        losses.push_back(j.at("loss"));
        // The per-noise-level bands partition the tick's 800 samples and average back to its loss.
        double count = 0, weighted = 0;
        for (auto& [name, band] : j.at("loss_bands").items()) {
            count += band.at("count").get<double>();
            if (!band.at("mean").is_null()) weighted += band.at("count").get<double>() * band.at("mean").get<double>();
            if (!band.at("var").is_null()) CHECK(band.at("var").get<double>() >= 0);
        }
        CHECK(count == 800);
        CHECK(weighted / count == doctest::Approx(losses.back()).epsilon(1e-9));
    }
    REQUIRE(losses.size() == 4);
    CHECK(losses.back() < 0.7 * losses.front());
}

TEST_CASE("bad options fail before training, naming what is wrong") {
    TempDir dir;
    train::TrainOptions o = tiny(dir.path / "bad", true);
    o.rbatch = 4;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--rbatch 4 is smaller than the per-round batch 8"), Error);
    o = tiny(dir.path / "bad", false);
    o.batch_gpu = 5;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--batch-gpu 5 must divide --batch 16"), Error);
    o = tiny(dir.path / "bad", false);
    o.data = (dir.path / "nowhere").string();
    CHECK_THROWS_AS(train::training_loop(o), Error);
    train::TrainOptions r;
    r.resume = (dir.path / "missing.safetensors").string();
    CHECK_THROWS_AS(train::training_loop(r), Error);
}
