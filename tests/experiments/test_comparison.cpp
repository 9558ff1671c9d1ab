// The pieces of ./stf_compare and ./train_classifier that run in-process: reading a run's stats.jsonl,
// the presets, and training the feature classifier for a few steps on a slice of Fashion-MNIST.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "metrics/classifier_training.h"
#include "experiments/comparison.h"
#include "tests/requirements.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::experiments;
using namespace stf::metrics;
using stf::data::ImageDataset;
namespace fs = std::filesystem;

namespace {
struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_compare_test") {}
};
}  // namespace

TEST_CASE("read_run_stats: loss and per-band stats per tick; null bands are NaN; bad lines name the file") {
    TempDir tmp;
    std::string band = R"({"count": 3, "mean": 1.5, "var": 0.25})";
    std::string empty = R"({"count": 0, "mean": null, "var": null})";
    std::string line1 = R"({"tick": 0, "kimg": 0.5, "loss": 10.0, "loss_bands": {"sigma<0.2": )" + band +
                        R"(, "0.2<=sigma<1": )" + band + R"(, "1<=sigma<5": )" + band + R"(, "sigma>=5": )" + empty + "}}";
    std::string line2 = R"({"tick": 1, "kimg": 1.0, "loss": 8.0, "loss_bands": {"sigma<0.2": )" + band +
                        R"(, "0.2<=sigma<1": )" + band + R"(, "1<=sigma<5": )" + band + R"(, "sigma>=5": )" + band + "}}";
    test::write_bytes(tmp.file("stats.jsonl"), line1 + "\n" + line2 + "\n");
    RunStats s = read_run_stats(tmp.file("stats.jsonl"));
    REQUIRE(s.kimg.size() == 2);
    CHECK(s.kimg[1] == 1.0);
    CHECK(s.loss[0] == 10.0);
    CHECK(s.band_var[0][0] == 0.25);
    CHECK(s.band_count[3][0] == 0);
    CHECK(std::isnan(s.band_mean[3][0]));
    CHECK(std::isnan(s.band_var[3][0]));
    CHECK(s.band_mean[3][1] == 1.5);

    test::write_bytes(tmp.file("old.jsonl"), R"({"tick": 0, "kimg": 0.5, "loss": 10.0})" "\n");
    CHECK_THROWS_WITH_AS(read_run_stats(tmp.file("old.jsonl")), doctest::Contains("old.jsonl' line 1"), Error);
    CHECK_THROWS_WITH_AS(read_run_stats(tmp.file("none.jsonl")), doctest::Contains("cannot open"), Error);
}

TEST_CASE("compare presets: same network for both, the GPU one on CUDA with more images") {
    CompareOptions cpu = compare_preset("cpu"), gpu = compare_preset("gpu");
    CHECK(cpu.train.device == "cpu");
    CHECK(gpu.train.device == "cuda");
    CHECK(cpu.train.net.unet.model_channels == 32);
    CHECK(cpu.train.net.unet.channel_mult == std::vector<int64_t>{1, 2, 2});
    CHECK(gpu.train.net.to_json() == cpu.train.net.to_json());
    CHECK(gpu.train.duration_mimg > 10 * cpu.train.duration_mimg);
    CHECK(gpu.samples > cpu.samples);
    CHECK(cpu.targets == std::vector<std::string>{"dsm", "stf", "stf-all", "knn"});
    CHECK(method_options(cpu, "dsm").target == "dsm");
    CHECK(method_options(cpu, "stf").rbatch == cpu.train.rbatch);
    CHECK(method_options(cpu, "stf-all").rbatch == train::TrainOptions::kWholeDataset);
    CHECK(method_options(cpu, "knn").target == "knn");
    CHECK_THROWS_WITH_AS(method_options(cpu, "ddim"), doctest::Contains("unknown target 'ddim'"), Error);
    CHECK_THROWS_WITH_AS(compare_preset("tpu"), doctest::Contains("unknown --preset 'tpu'"), Error);
}

TEST_CASE("train_classifier in-process: a few steps on a slice of Fashion-MNIST, a loadable checkpoint" * test::needs_fashion_mnist()) {
    std::string dir = ImageDataset::default_fashion_mnist_path();
    TempDir tmp;
    ClassifierTrainOptions o;
    o.data = dir;
    o.out = tmp.file("sub/clf.safetensors");
    o.max_images = 512;
    o.max_test_images = 256;
    o.net.channels = {8, 8, 16, 16};
    o.net.convs_per_stage = 1;
    o.steps = 100;
    o.batch = 32;
    o.lr = 5e-3;
    o.log_every = 0;
    ClassifierTrainResult r = train_classifier(o);
    REQUIRE(r.losses.size() == 100);
    double early = (r.losses[0] + r.losses[1] + r.losses[2]) / 3, late = (r.losses[97] + r.losses[98] + r.losses[99]) / 3;
    CHECK(late < 0.8 * early);
    CHECK(r.test_images == 256);
    CHECK(r.test_accuracy > 0.35);  // 10 classes: chance is 0.1
    metrics::LoadedClassifier loaded = metrics::load_classifier(o.out);
    CHECK(loaded.metadata.at("test_accuracy").substr(0, 2) == "0.");
    ImageDataset test = ImageDataset::load(dir + "/t10k-images-idx3-ubyte.gz").subset(256);
    CHECK(classifier_accuracy(*loaded.net, test, Device::cpu()) == doctest::Approx(r.test_accuracy));
    Tensor f = classifier_features(*loaded.net, test.subset(10), Device::cpu());
    CHECK(f.shape() == Shape{10, 16});
    CHECK(f.dtype() == DType::F64);

    o.data = tmp.path.string();
    CHECK_THROWS_WITH_AS(train_classifier(o), doctest::Contains("no test split beside"), Error);
}

TEST_CASE("fd_with_bootstrap: the plain FD, and a seeded spread that shrinks with more samples") {
    auto gaussian_features = [](int64_t n, uint64_t seed) {
        Generator g(seed);
        return ops::randn({n, 4}, g, DType::F64);
    };
    FeatureStats reference = feature_stats(gaussian_features(4000, 1));
    Tensor few = gaussian_features(50, 2), many = gaussian_features(800, 3);
    auto [fd, sd] = fd_with_bootstrap(few, reference, 40, 7);
    CHECK(fd == doctest::Approx(frechet_distance(feature_stats(few), reference)));
    CHECK(sd > 0);
    CHECK(fd_with_bootstrap(few, reference, 40, 7).second == sd);  // seeded
    CHECK(fd_with_bootstrap(many, reference, 40, 7).second < sd);
    CHECK(std::isnan(fd_with_bootstrap(few, reference, 0, 7).second));
}
