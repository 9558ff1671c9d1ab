// --cuda-graph on: the graph-ready step (train/graph_step.h) run eagerly on the CPU must train exactly
// the run the plain step trains, for DSM and STF with augmentation and dropout, over rounds and a
// resume; and the targets it cannot replay are refused up front. (Capture and replay themselves need a
// GPU: tests/gpu/test_graph_parity.cpp.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "tests/safetensors_diff.h"
#include "tests/expect_error.h"
#include "tests/requirements.h"
#include "tests/temp_files.h"
#include "tests/tiny_network.h"
#include "train/training_loop.h"

using namespace stf;
namespace fs = std::filesystem;

namespace {

train::TrainOptions small_run(const fs::path& outdir, const std::string& target, const std::string& cuda_graph) {
    train::TrainOptions o;
    o.data = data::ImageDataset::default_fashion_mnist_path();
    o.max_images = 256;
    o.pad_to = 0;
    o.outdir = outdir.string();
    o.nosubdir = true;
    o.net = test::tiny_network(8, {14});
    o.net.unet.dropout = 0.1;
    o.target = target;
    o.rbatch = 32;
    o.batch = 16;
    o.batch_gpu = 8;  // two rounds per step
    o.duration_mimg = 16 * 12 / 1e6;
    o.lr = 2e-3;
    o.lr_rampup_mimg = 16 * 6 / 1e6;  // the learning rate changes every step for the first six
    o.ema_mimg = 0.0005;
    o.augment = 0.3;
    o.tick_kimg = 16 * 6 / 1e3;
    o.snap_ticks = 1;
    o.dump_ticks = 1;
    o.device = "cpu";
    o.progress_bar = false;
    o.cuda_graph = cuda_graph;
    return o;
}

std::vector<std::string> lines(const fs::path& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// The tick rows of stats.jsonl without their timings.
std::vector<std::string> stats_without_timings(const fs::path& path) {
    std::vector<std::string> out;
    for (std::string line : lines(path)) {
        for (const char* key : {"\"sec_per_kimg\":", "\"img_per_sec\":", "\"peak_mem_gib\":"}) {
            const size_t at = line.find(key);
            if (at == std::string::npos) continue;
            const size_t end = line.find_first_of(",}", at);
            line.erase(at, end - at);
        }
        out.push_back(line);
    }
    return out;
}

}  // namespace

TEST_CASE("--cuda-graph on trains bit for bit the run --cuda-graph off trains (DSM and STF)" *
          test::needs_fashion_mnist()) {
    for (const char* target : {"dsm", "stf"}) {
        CAPTURE(target);
        test::TempDir dir("stf_test_graph_step");
        const train::TrainSummary off = train::training_loop(small_run(dir.path / "off", target, "off"));
        const train::TrainSummary on = train::training_loop(small_run(dir.path / "on", target, "on"));
        CHECK(on.steps == 12);
        CHECK(on.last_loss == off.last_loss);
        CHECK(test::differing_tensors(off.state, on.state) == 0);
        CHECK(stats_without_timings(dir.path / "on" / "stats.jsonl") == stats_without_timings(dir.path / "off" / "stats.jsonl"));
        bool said = false;
        for (const std::string& line : lines(dir.path / "on" / "log.txt"))
            said = said || line.find("graph-ready step, run eagerly") != std::string::npos;
        CHECK(said);
    }
}

TEST_CASE("--cuda-graph on resumes a run and ends where an uninterrupted one does" * test::needs_fashion_mnist()) {
    test::TempDir dir("stf_test_graph_step");
    const train::TrainSummary full = train::training_loop(small_run(dir.path / "full", "stf", "off"));
    train::TrainOptions half = small_run(dir.path / "split", "stf", "on");
    half.duration_mimg = 16 * 6 / 1e6;
    const train::TrainSummary first = train::training_loop(half);
    CHECK(first.steps == 6);
    train::TrainOptions resume;
    resume.resume = first.state;
    resume.cuda_graph = "on";
    resume.progress_bar = false;
    resume.duration_mimg = 16 * 12 / 1e6;
    const train::TrainSummary second = train::training_loop(resume);
    CHECK(second.steps == 12);
    CHECK(test::differing_tensors(full.state, second.state) == 0);
}

TEST_CASE("--cuda-graph refuses what it cannot replay, before training") {
    test::TempDir dir("stf_test_graph_step");
    train::TrainOptions o = small_run(dir.path / "bad", "stf", "maybe");
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--cuda-graph must be on or off"), Error);
    o = small_run(dir.path / "bad", "knn", "on");
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("whole dataset (use --cuda-graph off)"), Error);
    o = small_run(dir.path / "bad", "stf", "on");
    o.rbatch = train::TrainOptions::kWholeDataset;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--cuda-graph on with the STF all target"), Error);
    o = small_run(dir.path / "bad", "stf", "on");
    o.cond = true;
    CHECK_THROWS_WITH_AS(train::training_loop(o), doctest::Contains("--cond and STF is not supported"), Error);
}
