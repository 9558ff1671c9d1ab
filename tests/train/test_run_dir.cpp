// Run directories as EDM's train.py names them, the next free run id, the newest training state, and
// what --resume DIR and --resume auto pick.
#include <doctest/doctest.h>

#include <filesystem>

#include "tests/expect_error.h"
#include "tests/temp_files.h"
#include "train/run_dir.h"

using namespace stf;
using namespace stf::train;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_test_run_dir") {}
};

void touch(const fs::path& p) {
    fs::create_directories(p.parent_path());
    test::write_bytes(p.string(), "x");
}

TrainOptions options(const fs::path& outdir) {
    TrainOptions o;
    o.data = "datasets/cifar10-32x32.zip";
    o.outdir = outdir.string();
    o.batch = 512;
    return o;
}

}  // namespace

TEST_CASE("run descriptions and dataset names are EDM's") {
    CHECK(dataset_name("datasets/cifar10-32x32.zip") == "cifar10-32x32");
    CHECK(dataset_name("/usr/share/datasets/fashion-mnist") == "fashion-mnist");
    CHECK(dataset_name("/usr/share/datasets/fashion-mnist/") == "fashion-mnist");
    CHECK(dataset_name("data/train-images-idx3-ubyte.gz") == "train-images-idx3-ubyte");
    CHECK(dataset_name("cifar-10-batches-bin") == "cifar-10-batches-bin");

    TrainOptions o = options("runs");
    CHECK(run_description(o, 1) == "cifar10-32x32-uncond-ddpmpp-edm-gpus1-batch512-fp32");
    o.cond = true;
    o.net = nn::NetworkConfig::preset("ncsnpp");
    o.net.precond = "ve";
    o.precision = "bf16";
    o.batch = 256;
    o.desc = "stf-rbatch4096";
    CHECK(run_description(o, 8) == "cifar10-32x32-cond-ncsnpp-ve-gpus8-batch256-bf16-stf-rbatch4096");
}

TEST_CASE("run ids, the newest training state, and a fresh run's directory") {
    TempDir tmp;
    CHECK(next_run_id(tmp.file("missing")) == 0);
    CHECK(next_run_id(tmp.path.string()) == 0);
    fs::create_directories(tmp.path / "00000-a");
    fs::create_directories(tmp.path / "00007-b");
    fs::create_directories(tmp.path / "notes");
    touch(tmp.path / "00012.txt");  // a file, not a run
    CHECK(next_run_id(tmp.path.string()) == 8);

    CHECK(newest_training_state((tmp.path / "00000-a").string()).empty());
    for (const char* name : {"training-state-000200.safetensors", "training-state-001000.safetensors",
                             "training-state-000999.safetensors", "network-snapshot-005000.safetensors",
                             "training-state-1000000.safetensors.tmp"})
        touch(tmp.path / "00000-a" / name);
    CHECK(newest_training_state((tmp.path / "00000-a").string()) ==
          (tmp.path / "00000-a" / "training-state-001000.safetensors").string());
    touch(tmp.path / "00000-a" / "training-state-1000000.safetensors");  // past six digits: by number, not by name
    CHECK(newest_training_state((tmp.path / "00000-a").string()) ==
          (tmp.path / "00000-a" / "training-state-1000000.safetensors").string());
    // Ticks under 1 kimg name states with three decimals (train/training_state.h): by number too.
    fs::create_directories(tmp.path / "00001-c");
    for (const char* name : {"training-state-000000.080.safetensors", "training-state-000000.160.safetensors",
                             "training-state-000000.160.safetensors.tmp.123"})
        touch(tmp.path / "00001-c" / name);
    CHECK(newest_training_state((tmp.path / "00001-c").string()) ==
          (tmp.path / "00001-c" / "training-state-000000.160.safetensors").string());

    ProcessGroup& group = ProcessGroup::world();
    TrainOptions o = options(tmp.path / "runs");
    choose_run_directory(o, group);
    CHECK(o.outdir == (tmp.path / "runs" / "00000-cifar10-32x32-uncond-ddpmpp-edm-gpus1-batch512-fp32").string());
    CHECK(o.resume.empty());
    fs::create_directories(o.outdir);
    o = options(tmp.path / "runs");
    o.desc = "x";
    choose_run_directory(o, group);
    CHECK(o.outdir == (tmp.path / "runs" / "00001-cifar10-32x32-uncond-ddpmpp-edm-gpus1-batch512-fp32-x").string());
    o = options(tmp.path / "runs");
    o.nosubdir = true;
    choose_run_directory(o, group);
    CHECK(o.outdir == (tmp.path / "runs").string());
}

TEST_CASE("--resume DIR takes its newest state; --resume auto resumes this command's run or starts it") {
    TempDir tmp;
    ProcessGroup& group = ProcessGroup::world();
    const fs::path runs = tmp.path / "runs";
    const std::string desc = "cifar10-32x32-cond-ddpmpp-edm-gpus1-batch512-fp32";

    TrainOptions o = options(runs);
    o.resume = (runs / "00003-x").string();
    fs::create_directories(o.resume);
    CHECK(has(error_of([&] { choose_run_directory(o, group); }), "no training-state-*.safetensors in this directory"));
    touch(runs / "00003-x" / "training-state-000050.safetensors");
    choose_run_directory(o, group);
    CHECK(o.resume == (runs / "00003-x" / "training-state-000050.safetensors").string());
    CHECK(o.outdir == (runs / "00003-x").string());
    o = options(runs);
    o.resume = (runs / "nothing-here").string();
    CHECK(has(error_of([&] { choose_run_directory(o, group); }), "does not exist"));

    // auto, nothing to resume: a fresh run, with the next id.
    o = options(runs);
    o.cond = true;
    o.resume = "auto";
    choose_run_directory(o, group);
    CHECK(o.resume.empty());
    CHECK(o.outdir == (runs / ("00004-" + desc)).string());
    // Preempted after a dump: the same command resumes that run's newest state. Runs of other
    // descriptions (an unconditional one here) and older runs of this one are left alone.
    touch(runs / ("00004-" + desc) / "training-state-000100.safetensors");
    touch(runs / ("00004-" + desc) / "training-state-000200.safetensors");
    touch(runs / ("00002-" + desc) / "training-state-009000.safetensors");
    touch(runs / "00005-cifar10-32x32-uncond-ddpmpp-edm-gpus1-batch512-fp32" / "training-state-009000.safetensors");
    o = options(runs);
    o.cond = true;
    o.resume = "auto";
    choose_run_directory(o, group);
    CHECK(o.resume == (runs / ("00004-" + desc) / "training-state-000200.safetensors").string());
    CHECK(o.outdir == (runs / ("00004-" + desc)).string());
    // The newest run of this description has no state yet: start afresh, in a new directory.
    fs::create_directories(runs / ("00006-" + desc));
    o = options(runs);
    o.cond = true;
    o.resume = "auto";
    choose_run_directory(o, group);
    CHECK(o.resume.empty());
    CHECK(o.outdir == (runs / ("00007-" + desc)).string());
    // With --nosubdir, OUTDIR's own states.
    o = options(runs / ("00004-" + desc));
    o.nosubdir = true;
    o.resume = "auto";
    choose_run_directory(o, group);
    CHECK(o.resume == (runs / ("00004-" + desc) / "training-state-000200.safetensors").string());
}
