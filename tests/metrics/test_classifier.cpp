// The feature classifier: cross-entropy against its closed form and a gradient check, the loss falling on a
// tiny two-class problem, and checkpoints that round-trip and refuse files that are not classifiers.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/gradcheck.h"
#include "metrics/classifier.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::nn;
using namespace stf::metrics;

namespace {

ClassifierConfig tiny_config() {
    ClassifierConfig c;
    c.resolution = 8;
    c.num_classes = 2;
    c.channels = {8, 8};
    c.convs_per_stage = 1;
    return c;
}

// Class 0: the top half bright; class 1: the bottom half; plus noise. n images [n, 1, 8, 8], labels 0,1,0,1...
Tensor two_class_images(int64_t n, std::vector<int>& labels, Generator& gen) {
    Tensor noise = ops::randn({n, 1, 8, 8}, gen);
    std::vector<double> v = noise.to_vector();
    labels.clear();
    for (int64_t i = 0; i < n; ++i) {
        int label = static_cast<int>(i % 2);
        labels.push_back(label);
        for (int64_t y = 0; y < 8; ++y)
            for (int64_t x = 0; x < 8; ++x) {
                bool bright = label == 0 ? y < 4 : y >= 4;
                double& p = v[static_cast<size_t>((i * 8 + y) * 8 + x)];
                p = 0.3 * p + (bright ? 0.8 : -0.8);
            }
    }
    return ops::from_vector(v, {n, 1, 8, 8});
}

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_classifier_test") {}
};

}  // namespace

TEST_CASE("cross_entropy: log(k) at equal logits, -log softmax of the label otherwise; gradients check") {
    Tensor zeros = ops::zeros({3, 5});
    CHECK(cross_entropy(zeros, {0, 4, 2}).item() == doctest::Approx(std::log(5.0)));
    Tensor logits = ops::from_vector({1, 2, 3, 0, 0, 0}, {2, 3});
    double want = (-(1 - std::log(std::exp(1) + std::exp(2) + std::exp(3))) + std::log(3.0)) / 2;
    CHECK(cross_entropy(logits, {0, 2}).item() == doctest::Approx(want));
    CHECK_THROWS_WITH_AS(cross_entropy(logits, {0, 3}), doctest::Contains("outside 0..2"), Error);
    CHECK_THROWS_WITH_AS(cross_entropy(logits, {0}), doctest::Contains("for 1 labels"), Error);

    Generator gen(1);
    Tensor x = ops::randn({4, 3}, gen, DType::F64);
    GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], {2, 0, 1, 1}); }, {x});
    CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("classifier: named parameters, feature size, clear shape errors") {
    Generator gen(0);
    Classifier net(tiny_config(), gen);
    NamedTensors params = net.named_parameters();
    CHECK(params.front().first == "stage0.conv0.weight");
    CHECK(params.back().first == "head.bias");
    Tensor f = net.features(ops::zeros({3, 1, 8, 8}));
    CHECK(f.shape() == Shape{3, 8});
    CHECK(net.forward(ops::zeros({3, 1, 8, 8})).shape() == Shape{3, 2});
    CHECK_THROWS_WITH_AS(net.features(ops::zeros({3, 1, 16, 16})), doctest::Contains("expected [N, 1, 8, 8]"), Error);
    ClassifierConfig bad = tiny_config();
    bad.channels = {8, 2};
    CHECK_THROWS_WITH_AS(Classifier(bad, gen), doctest::Contains("channels must be >= 4"), Error);
}

TEST_CASE("classifier: the loss falls on a tiny two-class problem") {
    Generator gen(0);
    std::vector<int> labels;
    Tensor images = two_class_images(32, labels, gen);
    Classifier net(tiny_config(), gen);
    Adam adam(net.parameters());
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
        net.zero_grad();
        Tensor loss = cross_entropy(net.forward(images), labels);
        backward(loss);
        adam.step(1e-2);
        (step == 0 ? first : last) = loss.item();
    }
    CHECK(first > 0.5);
    CHECK(last < 0.25 * first);
    std::vector<double> logits = net.forward(images).to_vector();
    int correct = 0;
    for (size_t i = 0; i < labels.size(); ++i) correct += (logits[2 * i + 1] > logits[2 * i]) == (labels[i] == 1);
    CHECK(correct == 32);
}

TEST_CASE("classifier checkpoints round-trip and refuse other files") {
    TempDir tmp;
    Generator gen(5);
    Classifier net(tiny_config(), gen);
    std::string path = tmp.file("clf.safetensors");
    save_classifier(path, net, {{"test_accuracy", "0.5"}});
    LoadedClassifier loaded = load_classifier(path);
    CHECK(loaded.metadata.at("format") == "stf-classifier");
    CHECK(loaded.metadata.at("test_accuracy") == "0.5");
    CHECK(loaded.net->config().channels == std::vector<int64_t>{8, 8});
    CHECK_FALSE(loaded.net->is_training());
    Tensor x = ops::randn({2, 1, 8, 8}, gen);
    CHECK(loaded.net->features(x).to_vector() == net.features(x).to_vector());
    for (const std::string& name : tmp.entries()) CHECK(name == "clf.safetensors");  // no temporary left

    // A weights file without the format entry (e.g. a diffusion network snapshot).
    save_safetensors(tmp.file("other.safetensors"), net.state_dict(), {{"format", "stf"}});
    CHECK_THROWS_WITH_AS(load_classifier(tmp.file("other.safetensors")),
                         doctest::Contains("is not an stf classifier checkpoint (format 'stf'"), Error);
    // A config that does not describe the tensors.
    ClassifierConfig wider = tiny_config();
    wider.channels = {8, 16};
    save_safetensors(tmp.file("mismatch.safetensors"), net.state_dict(),
                     {{"format", "stf-classifier"}, {"config", wider.to_json()}});
    CHECK_THROWS_WITH_AS(load_classifier(tmp.file("mismatch.safetensors")), doctest::Contains("mismatch.safetensors"),
                         Error);
    save_safetensors(tmp.file("badconfig.safetensors"), net.state_dict(),
                     {{"format", "stf-classifier"}, {"config", "{\"model_type\": \"SongUNet\"}"}});
    CHECK_THROWS_WITH_AS(load_classifier(tmp.file("badconfig.safetensors")), doctest::Contains("expected 'Classifier'"),
                         Error);
}
