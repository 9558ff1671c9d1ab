// Inception-v3's feature network (metrics/inception.h) against pytorch-fid's, on seeded random weights:
// tools/inception_fixture.py built pytorch-fid's InceptionV3 (float64) with the weights of
// random_inception_weights(2015) and stored its 2048-d features of two seeded 32x32 images in
// tests/metrics/data/inception_random_features.npy, under both input conventions (pytorch-fid's resize
// and scaling, and EDM's detector's). Here the same weights are made in C++ and the features must agree
// within 1e-4 (float32 against float64). Plus the weight files' errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "data/image_io.h"
#include "metrics/inception.h"
#include "nn/safetensors.h"
#include "tensor/ops.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::metrics;

namespace {

constexpr uint64_t kSeed = 2015;

Tensor test_pixels() {
    std::vector<double> v(2 * 3 * 32 * 32);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::floor(256 * seeded_uniform("image", kSeed, static_cast<int64_t>(i)));
    return ops::from_vector(v, {2, 3, 32, 32});
}

// Made once: the two conventions share the tensors and differ only in metadata.
const InceptionWeights& weights(const std::string& resize) {
    static InceptionWeights half = random_inception_weights(kSeed, "half_pixel");
    static InceptionWeights tf1 = [] {
        InceptionWeights w = half;
        w.metadata["resize"] = "tf1";  // EDM's detector: TensorFlow 1's resize, then (x - 128) / 128
        w.metadata["input_offset"] = w.metadata["input_scale"] = "128";
        return w;
    }();
    return resize == "tf1" ? tf1 : half;
}

void check_against_fixture(const std::string& resize, int64_t convention) {
    const InceptionWeights& w = weights(resize);
    InceptionV3 net(w.tensors, w.metadata, Device::cpu(), "random");
    Tensor got = net.features(test_pixels());
    REQUIRE(got.shape() == Shape{2, InceptionV3::kFeatures});
    Tensor fixture = data::read_npy(std::string(STF_SOURCE_DIR) + "/tests/metrics/data/inception_random_features.npy");
    REQUIRE(fixture.shape() == Shape{2, 2, 2048});
    std::vector<double> want = ops::narrow(fixture, 0, convention, 1).to_vector(), g = got.to_vector();
    double num = 0, den = 0, worst = 0, biggest = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        num += (g[i] - want[i]) * (g[i] - want[i]);
        den += want[i] * want[i];
        worst = std::max(worst, std::abs(g[i] - want[i]));
        biggest = std::max(biggest, std::abs(want[i]));
    }
    MESSAGE(resize << ": relative L2 error " << std::sqrt(num / den) << ", max error " << worst << " of max " << biggest);
    CHECK(std::sqrt(num / den) < 1e-4);
    CHECK(worst < 1e-4 * biggest);
    CHECK(biggest > 0.1);  // the random network's features are not degenerate
}

}  // namespace

TEST_CASE("Inception-v3 matches pytorch-fid's on random weights (pytorch-fid's input convention)") {
    check_against_fixture("half_pixel", 0);
}

TEST_CASE("Inception-v3 matches pytorch-fid's blocks on random weights (EDM's detector's input convention)") {
    check_against_fixture("tf1", 1);
}

TEST_CASE("Inception weight files: clear errors for the wrong format, tensors and metadata") {
    const InceptionWeights& w = weights("half_pixel");
    auto build = [&](nn::NamedTensors t, std::map<std::string, std::string> m) {
        InceptionV3 net(t, m, Device::cpu(), "'test.safetensors'");
    };
    auto m = w.metadata;
    m["format"] = "stf-network";
    CHECK_THROWS_WITH_AS(build(w.tensors, m), doctest::Contains("expected 'stf-inception'"), Error);
    m = w.metadata;
    m.erase("format");
    CHECK_THROWS_WITH_AS(build(w.tensors, m), doctest::Contains("format is missing"), Error);
    m = w.metadata;
    m["resize"] = "bicubic";
    CHECK_THROWS_WITH_AS(build(w.tensors, m), doctest::Contains("'resize' must be"), Error);
    m = w.metadata;
    m["input_scale"] = "0";
    CHECK_THROWS_WITH_AS(build(w.tensors, m), doctest::Contains("input_scale"), Error);

    nn::NamedTensors t = w.tensors;
    t.erase(t.begin() + 7);
    CHECK_THROWS_WITH_AS(build(t, w.metadata), doctest::Contains("is missing"), Error);
    t = w.tensors;
    t[0].second = ops::zeros({32, 3, 5, 5});
    CHECK_THROWS_WITH_AS(build(t, w.metadata), doctest::Contains("Conv2d_1a_3x3.conv.weight' has shape [32, 3, 5, 5]"),
                         Error);
    t = w.tensors;
    t.emplace_back("fc.weight", ops::zeros({1008, 2048}));
    CHECK_THROWS_WITH_AS(build(t, w.metadata), doctest::Contains("unexpected tensor 'fc.weight'"), Error);
    t = w.tensors;
    t[4].second = ops::full({32}, -5.0);  // Conv2d_1a_3x3.bn.running_var
    CHECK_THROWS_WITH_AS(build(t, w.metadata), doctest::Contains("non-finite"), Error);

    // A file that is not stf-inception: the loader names it.
    test::TempDir dir;
    std::string path = dir.file("not_inception.safetensors");
    nn::save_safetensors(path, {{"x", ops::zeros({2})}}, {{"format", "stf-network"}});
    CHECK_THROWS_WITH_AS(InceptionV3::load(path), doctest::Contains("not_inception.safetensors"), Error);

    InceptionV3 net(w.tensors, w.metadata, Device::cpu(), "random");
    CHECK(net.input().half_pixel);
    CHECK(net.input().offset == 127.5);
    CHECK_THROWS_WITH_AS(net.features(ops::zeros({1, 4, 8, 8})), doctest::Contains("[N, 3 or 1, H, W]"), Error);
}
