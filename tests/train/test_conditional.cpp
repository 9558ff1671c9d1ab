// Class-conditional training on a toy ZIP dataset whose label decides the image (uniform greys): the conditional model
// learns the labels, STF with labels averages over the image's own class only, label dropout, x-flips
// and augmentation keep the bit-exact resume, and --transfer starts from the given weights.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/image_dataset.h"
#include "diffusion/loss.h"
#include "nn/network.h"
#include "nn/safetensors.h"
#include "tests/safetensors_diff.h"
#include "tests/expect_error.h"
#include "tests/temp_files.h"
#include "tests/tiny_network.h"
#include "train/training_loop.h"
#include "train/transfer.h"

using namespace stf;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_test_conditional") {}
};

constexpr int kClasses = 4, kRes = 8, kPerClass = 8;

// 8x8 grey images: class k is uniformly 85 k (-1, -1/3, 1/3 and 1 in [-1, 1]); kPerClass copies of each,
// the classes interleaved. Written as EDM's dataset_tool writes a ZIP.
std::string write_greys(const TempDir& dir) {
    const int64_t n = kClasses * kPerClass;
    std::vector<uint8_t> px(static_cast<size_t>(n * kRes * kRes), 0);
    std::vector<int> labels;
    for (int64_t i = 0; i < n; ++i) {
        const int k = static_cast<int>(i % kClasses);
        labels.push_back(k);
        std::fill(px.begin() + i * kRes * kRes, px.begin() + (i + 1) * kRes * kRes, static_cast<uint8_t>(85 * k));
    }
    const std::string path = dir.file("greys.zip");
    data::write_image_dataset(path, data::ImageDataset(px, labels, n, 1, kRes, kRes, "greys"));
    return path;
}

train::TrainOptions toy(const std::string& data, const fs::path& outdir, bool cond, int64_t steps) {
    train::TrainOptions o;
    o.data = data;
    o.pad_to = 0;
    o.outdir = outdir.string();
    o.cond = cond;
    o.net = test::tiny_network(16, {});
    o.net.unet.dropout = 0;
    o.rbatch = 16;
    o.batch = 16;
    o.batch_gpu = 8;
    o.duration_mimg = 16.0 * static_cast<double>(steps) / 1e6;
    o.lr = 3e-3;
    o.lr_rampup_mimg = 0;
    o.ema_mimg = 0.0005;
    o.augment = 0;
    o.tick_kimg = 16.0 * static_cast<double>(steps) / 1e3;
    o.snap_ticks = o.dump_ticks = 0;
    o.device = "cpu";
    o.progress_bar = false;
    return o;
}

// The mean EDM loss of a network over 512 fixed draws of the toy images, noise and noise levels around
// sigma = 2.7 (ln sigma ~ N(1, 0.5^2)), where the noise hides the image and only the label can tell it; the
// network sees the images' one-hot labels, all-zero labels, or none.
enum class Labels { one_hot, zeros, none };
double eval_loss(const nn::Precond& net, const data::ImageDataset& d, Labels labels) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < 512; ++i) idx.push_back(i % d.size());
    diffusion::LossBatch b;
    b.images = d.batch(idx);
    if (labels != Labels::none) b.class_labels = d.label_batch(idx, kClasses);
    if (labels == Labels::zeros) b.class_labels = ops::zeros_like(b.class_labels);
    Generator gen(99), dropout(100);
    NoGradGuard no_grad;
    diffusion::LossOptions o;
    o.P_mean = 1.0;
    o.P_std = 0.5;
    return ops::mean(diffusion::diffusion_loss(net, b, o, gen, dropout).loss).to_vector()[0];
}

std::vector<double> tick_losses(const fs::path& dir) {
    std::ifstream in(dir / "stats.jsonl");
    std::vector<double> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line).at("loss"));
    return out;
}

}  // namespace

TEST_CASE("a conditional model learns what the label decides; its unlabelled output stays unconditional") {
    TempDir dir;
    const std::string zip = write_greys(dir);
    train::TrainOptions c = toy(zip, dir.path / "cond", true, 80);
    c.net.unet.label_dropout = 0.25;
    train::TrainSummary cs = train::training_loop(c);
    train::TrainSummary us = train::training_loop(toy(zip, dir.path / "uncond", false, 80));

    nn::LoadedNetwork cond = nn::load_network(cs.snapshot), uncond = nn::load_network(us.snapshot);
    cond.net->eval();  // no label dropout
    uncond.net->eval();
    REQUIRE(cond.config.unet.label_dim == kClasses);  // EDM's label_dim: the largest class + 1
    CHECK(cond.config.unet.label_dropout == 0.25);
    CHECK(uncond.config.unet.label_dim == 0);
    data::ImageDataset d = data::ImageDataset::load(zip, 0);
    const double with_labels = eval_loss(*cond.net, d, Labels::one_hot);
    const double without = eval_loss(*uncond.net, d, Labels::none);
    const double zero_labels = eval_loss(*cond.net, d, Labels::zeros);
    MESSAGE("loss: conditional " << with_labels << ", unconditional " << without << ", conditional net without labels "
                                 << zero_labels);
    CHECK(with_labels < 0.6 * without);
    CHECK(with_labels < 0.6 * zero_labels);
}

TEST_CASE("STF with labels averages over the image's own class: on classes of identical images it equals DSM") {
    // Each class's images are identical, so the posterior mean over references of the image's class is the
    // image itself: STF's target is DSM's, and with the same seed (same images, noise levels and noise) the
    // losses agree to rounding. References from every class would pull the target toward other quadrants.
    TempDir dir;
    const std::string zip = write_greys(dir);
    auto first_loss = [&](bool cond, bool stf, const std::string& name) {
        train::TrainOptions o = toy(zip, dir.path / name, cond, 4);
        o.target = stf ? "stf" : "dsm";
        o.tick_kimg = 0.016;  // one step per tick
        train::training_loop(o);
        return tick_losses(dir.path / name).at(0);
    };
    const double cond_dsm = first_loss(true, false, "cd"), cond_stf = first_loss(true, true, "cs");
    const double uncond_dsm = first_loss(false, false, "ud"), uncond_stf = first_loss(false, true, "us");
    MESSAGE("first-step loss: conditional DSM " << cond_dsm << ", STF " << cond_stf << "; unconditional DSM "
                                                << uncond_dsm << ", STF " << uncond_stf);
    CHECK(cond_stf == doctest::Approx(cond_dsm).epsilon(1e-5));
    CHECK(std::abs(uncond_stf - uncond_dsm) > 1e-3 * uncond_dsm);
    std::ifstream log(dir.path / "cs" / "log.txt");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    CHECK(has(text, "class-conditional, 4 classes"));
}

TEST_CASE("conditional STF with label dropout, x-flips and augmentation resumes bit-exactly") {
    TempDir dir;
    const std::string zip = write_greys(dir);
    auto options = [&](const std::string& name, int64_t steps) {
        train::TrainOptions o = toy(zip, dir.path / name, true, steps);
        o.target = "stf";
        o.xflip = true;
        o.augment = 0.5;
        o.net.unet.label_dropout = 0.3;
        o.net.unet.dropout = 0.1;
        o.tick_kimg = 0.064;
        o.dump_ticks = 1;
        return o;
    };
    train::TrainSummary full = train::training_loop(options("full", 8));
    train::TrainSummary half = train::training_loop(options("split", 4));
    train::TrainOptions resume;
    resume.resume = (dir.path / "split").string();  // a run directory: its newest training state
    resume.duration_mimg = 16.0 * 8 / 1e6;
    resume.progress_bar = false;
    train::TrainSummary second = train::training_loop(resume);
    CHECK(half.steps == 4);
    CHECK(second.steps == 8);
    CHECK(fs::path(second.state).parent_path() == dir.path / "split");
    CHECK(test::differing_tensors(full.state, second.state) == 0);
}

TEST_CASE("--transfer starts from the snapshot's weights with a fresh optimiser; a mismatch names the flags") {
    TempDir dir;
    const std::string zip = write_greys(dir);
    train::TrainSummary base = train::training_loop(toy(zip, dir.path / "base", true, 10));
    nn::NamedTensors given = nn::load_safetensors(base.snapshot).tensors;

    // One step at a learning rate too small to move anything: the weights are still the snapshot's.
    train::TrainOptions t = toy(zip, dir.path / "transfer", true, 1);
    t.transfer = base.snapshot;
    t.lr = 1e-12;
    t.seed = 5;  // another initialisation, which the snapshot must replace
    train::TrainSummary s = train::training_loop(t);
    nn::SafetensorsFile state = nn::load_safetensors(s.state);
    CHECK(has(state.metadata.at("progress"), "\"step\":1"));
    size_t compared = 0, far = 0;
    for (auto& [name, tensor] : given) {
        std::vector<double> want = tensor.to_vector();
        for (const char* prefix : {"net.", "ema."}) {
            auto it = std::find_if(state.tensors.begin(), state.tensors.end(),
                                   [&](const auto& e) { return e.first == prefix + name; });
            REQUIRE(it != state.tensors.end());
            std::vector<double> got = it->second.to_vector();
            for (size_t i = 0; i < want.size(); ++i)
                if (std::abs(got[i] - want[i]) > 1e-6 * (1 + std::abs(want[i]))) ++far;
            ++compared;
        }
    }
    CHECK(compared == 2 * given.size());
    CHECK(far == 0);
    // The same run without --transfer starts elsewhere.
    t.transfer.clear();
    t.outdir = (dir.path / "fresh").string();
    nn::NamedTensors fresh = nn::load_safetensors(train::training_loop(t).snapshot).tensors;
    size_t differing = 0;
    for (size_t i = 0; i < fresh.size(); ++i) differing += fresh[i].second.to_vector() != given[i].second.to_vector();
    CHECK(differing > given.size() / 2);

    // Another architecture, or the conditional snapshot into an unconditional run: named, with the flags.
    train::TrainOptions bad = toy(zip, dir.path / "bad", true, 1);
    bad.transfer = base.snapshot;
    bad.net.unet.model_channels = 8;
    bad.net.unet.num_blocks = 2;
    std::string e = error_of([&] { train::training_loop(bad); });
    CHECK(has(e, "--transfer " + base.snapshot));
    CHECK(has(e, "model_channels: snapshot 16, this run 8 (--cbase)"));
    CHECK(has(e, "num_blocks: snapshot 1, this run 2 (--blocks)"));
    CHECK_FALSE(fs::exists(dir.path / "bad" / "training_options.json"));  // refused before writing anything
    bad = toy(zip, dir.path / "bad", false, 1);
    bad.transfer = base.snapshot;
    e = error_of([&] { train::training_loop(bad); });
    CHECK(has(e, "label_dim: snapshot 4, this run 0 (--cond and the dataset's classes)"));
    bad.transfer = dir.file("nothing.safetensors");
    CHECK(has(error_of([&] { train::training_loop(bad); }), "nothing.safetensors"));
}

TEST_CASE("--cond needs labels; --label-dropout needs --cond") {
    TempDir dir;
    data::ImageDataset unlabelled(std::vector<uint8_t>(4 * 64, 7), {}, 4, 1, 8, 8, "unlabelled");
    data::write_image_dataset(dir.file("plain.zip"), unlabelled);
    train::TrainOptions o = toy(dir.file("plain.zip"), dir.path / "x", true, 1);
    std::string e = error_of([&] { train::training_loop(o); });
    CHECK(has(e, "--cond needs class labels"));
    CHECK(has(e, "plain.zip"));
    o.cond = false;
    o.net.unet.label_dropout = 0.1;
    CHECK(has(error_of([&] { train::training_loop(o); }), "--label-dropout needs --cond"));
}
