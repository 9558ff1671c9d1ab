// Training end to end on the CPU, in-process: the loss falls, checkpoints appear, a stopped and resumed
// run ends with exactly the weights of one that never stopped, and bad options fail clearly.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "train/training_loop.h"
#include "tests/safetensors_diff.h"
#include "tests/requirements.h"
#include "tests/temp_files.h"
#include "tests/tiny_network.h"

using namespace stf;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_test_train") {}
};

train::TrainOptions tiny(const fs::path& outdir, const std::string& target) {
    train::TrainOptions o;
    o.data = data::ImageDataset::default_fashion_mnist_path();
    o.max_images = 512;
    o.pad_to = 0;  // 28x28 as stored
    o.outdir = outdir.string();
    o.net = test::tiny_network(8, {14});
    o.net.unet.dropout = 0.1;
    o.target = target;
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

}  // namespace

TEST_CASE("STF training on Fashion-MNIST: checkpoints, stats, and a bit-exact resume" * test::needs_fashion_mnist()) {
    TempDir dir;
    train::TrainSummary full = train::training_loop(tiny(dir.path / "full", "stf"));
    CHECK(full.steps == 40);
    CHECK(fs::exists(full.snapshot));
    CHECK(fs::exists(dir.path / "full" / "stats.jsonl"));
    CHECK(fs::exists(dir.path / "full" / "loss.png"));
    CHECK(fs::exists(dir.path / "full" / "log.txt"));

    // Stop after 20 steps, then resume to 40.
    train::TrainOptions half = tiny(dir.path / "split", "stf");
    half.duration_mimg = 16 * 20 / 1e6;
    train::TrainSummary first = train::training_loop(half);
    CHECK(first.steps == 20);
    train::TrainOptions resume;
    resume.resume = first.state;
    resume.duration_mimg = 16 * 40 / 1e6;
    train::TrainSummary second = train::training_loop(resume);
    CHECK(second.steps == 40);
    CHECK(test::differing_tensors(full.state, second.state) == 0);
}

TEST_CASE("the loss goes down over a few hundred DSM steps" * test::needs_fashion_mnist()) {
    TempDir dir;
    train::TrainOptions o = tiny(dir.path / "dsm", "dsm");
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
    train::TrainOptions o = tiny(dir.path / "bad", "stf");
    o.rbatch = 4;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--rbatch 4 is smaller than the per-round batch 8"), Error);
    o = tiny(dir.path / "bad", "dsm");
    o.batch_gpu = 5;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--batch-gpu 5 must divide --batch 16"), Error);
    o = tiny(dir.path / "bad", "dsm");
    o.data = (dir.path / "nowhere").string();
    CHECK_THROWS_AS(train::training_loop(o), Error);
    train::TrainOptions r;
    r.resume = (dir.path / "missing.safetensors").string();
    CHECK_THROWS_AS(train::training_loop(r), Error);
    o = tiny(dir.path / "bad", "ddim");
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--target must be dsm, stf or knn, got 'ddim'"), Error);
    o = tiny(dir.path / "bad", "knn");
    o.rbatch = 0;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("needs at least one draw per sample"), Error);
    o = tiny(dir.path / "bad", "stf");
    o.rbatch = train::TrainOptions::kWholeDataset;
    o.rbatch_scope = "global";
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("already uses the whole dataset"), Error);
}

TEST_CASE("training options JSON: the target round-trips; options written before --target load as before") {
    train::TrainOptions o;
    o.target = "knn";
    o.knn_k = 77;
    o.rbatch = 33;
    train::TrainOptions back = train::TrainOptions::from_json(o.to_json());
    CHECK(back.target == "knn");
    CHECK(back.knn_k == 77);
    CHECK(back.rbatch == 33);
    CHECK(back.whole_dataset_target());
    // An older file: "stf": true or false and no "target" or "knn_k".
    nlohmann::json old = nlohmann::json::parse(train::TrainOptions().to_json());
    old.erase("target");
    old.erase("knn_k");
    old["stf"] = true;
    train::TrainOptions stf = train::TrainOptions::from_json(old.dump());
    CHECK(stf.target == "stf");
    CHECK(stf.knn_k == 2048);
    CHECK_FALSE(stf.whole_dataset_target());
    old["stf"] = false;
    CHECK(train::TrainOptions::from_json(old.dump()).target == "dsm");
    old.erase("stf");
    CHECK_THROWS_WITH_AS(train::TrainOptions::from_json(old.dump()), doctest::Contains("training options"), Error);
}

TEST_CASE("whole-dataset targets train on Fashion-MNIST; kNN resumes bit-exactly" * test::needs_fashion_mnist()) {
    TempDir dir;
    train::TrainOptions all = tiny(dir.path / "all", "stf");
    all.rbatch = train::TrainOptions::kWholeDataset;
    all.duration_mimg = 16 * 10 / 1e6;
    all.snap_ticks = all.dump_ticks = 0;
    train::TrainSummary a = train::training_loop(all);
    CHECK(a.steps == 10);
    CHECK(std::isfinite(a.last_loss));
    // kNN with augmentation (the batch's augmented images stand in for their rows), stopped and resumed.
    train::TrainOptions knn = tiny(dir.path / "knn", "knn");
    knn.knn_k = 32;
    knn.rbatch = 24;
    knn.duration_mimg = 16 * 20 / 1e6;
    knn.snap_ticks = knn.dump_ticks = 0;
    train::TrainSummary full = train::training_loop(knn);
    CHECK(full.steps == 20);
    std::string log;
    {
        std::ifstream in(dir.path / "knn" / "log.txt");
        log.assign(std::istreambuf_iterator<char>(in), {});
    }
    CHECK(log.find("kNN target, k 32, 24 draws per sample over the whole dataset (512 images)") != std::string::npos);
    CHECK(log.find("ess[s<0.2]") != std::string::npos);
    train::TrainOptions half = tiny(dir.path / "knn-split", "knn");
    half.knn_k = 32;
    half.rbatch = 24;
    half.duration_mimg = 16 * 10 / 1e6;
    half.snap_ticks = half.dump_ticks = 0;
    train::TrainSummary first = train::training_loop(half);
    train::TrainOptions resume;
    resume.resume = first.state;
    resume.duration_mimg = 16 * 20 / 1e6;
    train::TrainSummary second = train::training_loop(resume);
    CHECK(second.steps == 20);
    CHECK(test::differing_tensors(full.state, second.state) == 0);
    train::TrainOptions too_many = tiny(dir.path / "k", "knn");
    too_many.knn_k = 513;
    CHECK_THROWS_WITH_AS(train::training_loop(too_many), doctest::Contains("--k 513 is larger than the dataset (512 images)"),
                         Error);
}
