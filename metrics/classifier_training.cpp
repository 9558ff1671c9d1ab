#include "metrics/classifier_training.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "cuda/runtime.h"
#include "data/sampler.h"
#include "nn/optim.h"

namespace stf::metrics {

namespace {

void check_device(const Device& device) {
    STF_CHECK(!device.is_cuda() || cuda::available(),
              "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                            : "stf was built without CUDA (use --device cpu)"));
}

data::ImageDataset load_labelled(const std::string& path, int64_t pad_to, int64_t max_images, const char* what) {
    data::ImageDataset d = data::ImageDataset::load(path, pad_to, max_images);
    STF_CHECK(d.has_labels(), "train_classifier: the " << what << " images at '" << path << "' have no labels "
                              "(expected e.g. train-labels-idx1-ubyte[.gz] beside train-images-idx3-ubyte[.gz])");
    return d;
}

void check_fits(const data::ImageDataset& d, const ClassifierConfig& c, const std::string& path) {
    STF_CHECK(d.channels() == c.in_channels && d.height() == c.resolution && d.width() == c.resolution,
              "train_classifier: images at '" << path << "' are " << d.channels() << "x" << d.height() << "x"
                                              << d.width() << ", the classifier takes " << c.in_channels << "x"
                                              << c.resolution << "x" << c.resolution);
    STF_CHECK(d.num_classes() <= c.num_classes, "train_classifier: '" << path << "' has labels up to "
                                                                      << d.num_classes() - 1 << ", the classifier has "
                                                                      << c.num_classes << " classes");
}

std::vector<int> labels_of(const data::ImageDataset& d, const std::vector<int64_t>& idx) {
    std::vector<int> out;
    out.reserve(idx.size());
    for (int64_t i : idx) out.push_back(d.label(i));
    return out;
}

std::vector<int64_t> range(int64_t begin, int64_t end) {
    std::vector<int64_t> v(static_cast<size_t>(end - begin));
    std::iota(v.begin(), v.end(), begin);
    return v;
}

// Adam's rate with a cosine decay from lr to 0 over the run: a fixed budget ends at a settled point.
double cosine_lr(double lr, int64_t step, int64_t total) {
    return 0.5 * lr * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
}

}  // namespace

ClassifierTrainResult train_classifier(const ClassifierTrainOptions& o) {
    o.net.validate();
    STF_CHECK(o.batch >= 1, "train_classifier: --batch must be >= 1, got " << o.batch);
    STF_CHECK(o.lr > 0, "train_classifier: --lr must be positive, got " << o.lr);
    STF_CHECK(o.steps > 0 || o.epochs > 0, "train_classifier: give --epochs > 0 or --steps > 0");
    STF_CHECK(!o.out.empty(), "train_classifier: no output path (--out)");
    Device device = Device::parse(o.device);
    check_device(device);
    std::string data_path = o.data.empty() ? data::ImageDataset::default_fashion_mnist_path() : o.data;
    std::string test_path = o.test_data.empty() ? data::ImageDataset::test_split_path(data_path) : o.test_data;
    STF_CHECK(!test_path.empty(), "train_classifier: no test split beside '" << data_path << "' (looked for "
                                  "t10k-images-idx3-ubyte[.gz] and test_batch.bin); give --test-data PATH");
    data::ImageDataset train = load_labelled(data_path, o.net.resolution, o.max_images, "training");
    data::ImageDataset test = load_labelled(test_path, o.net.resolution, o.max_test_images, "test");
    check_fits(train, o.net, data_path);
    check_fits(test, o.net, test_path);

    ClassifierTrainResult r;
    r.data_source = train.source();
    r.test_source = test.source();
    r.steps = o.steps > 0 ? o.steps
                          : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.epochs * train.size() / o.batch)));
    std::printf("classifier: %s\n  test: %s\n  %lld steps of %lld images on %s\n", train.source().c_str(),
                test.source().c_str(), (long long)r.steps, (long long)o.batch, device.str().c_str());
    std::fflush(stdout);

    Generator init(o.seed);
    Classifier net(o.net, init);
    net.to(device);
    net.train();
    nn::Adam adam(net.parameters());
    data::InfiniteSampler sampler(train.size(), o.seed);
    auto start = std::chrono::steady_clock::now();
    double window = 0;
    for (int64_t step = 0; step < r.steps; ++step) {
        std::vector<int64_t> idx = sampler.next(o.batch);
        net.zero_grad();
        Tensor loss = cross_entropy(net.forward(train.batch(idx, device)), labels_of(train, idx));
        backward(loss);
        adam.step(cosine_lr(o.lr, step, r.steps));
        double v = loss.item();
        STF_CHECK(std::isfinite(v), "train_classifier: the loss is " << v << " at step " << step << "; lower --lr");
        r.losses.push_back(v);
        window += v;
        bool last = step + 1 == r.steps;
        if (o.log_every > 0 && ((step + 1) % o.log_every == 0 || last)) {
            int64_t in_window = (step + 1) % o.log_every == 0 ? o.log_every : (step + 1) % o.log_every;
            double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::printf("step %-6lld epoch %-6.2f loss %-8.4f img/s %.1f\n", (long long)(step + 1),
                        static_cast<double>((step + 1) * o.batch) / train.size(), window / in_window,
                        static_cast<double>((step + 1) * o.batch) / secs);
            std::fflush(stdout);
            window = 0;
        }
    }
    net.eval();
    r.test_accuracy = classifier_accuracy(net, test, device);
    r.test_images = test.size();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char acc[32];
    std::snprintf(acc, sizeof acc, "%.4f", r.test_accuracy);
    if (auto parent = std::filesystem::path(o.out).parent_path(); !parent.empty())
        std::filesystem::create_directories(parent);
    net.to(Device::cpu());
    save_classifier(o.out, net, {{"test_accuracy", acc}, {"data", train.source()}, {"test_data", test.source()}});
    r.checkpoint = o.out;
    std::printf("test accuracy %.2f%% on %lld images; %.1f s; wrote %s\n", 100 * r.test_accuracy,
                (long long)r.test_images, r.seconds, o.out.c_str());
    std::fflush(stdout);
    return r;
}

double classifier_accuracy(const Classifier& net, const data::ImageDataset& data, Device device, int64_t batch) {
    STF_CHECK(data.has_labels(), "classifier_accuracy: " << data.source() << " has no labels");
    NoGradGuard no_grad;
    int64_t correct = 0;
    int64_t k = net.config().num_classes;
    for (int64_t b0 = 0; b0 < data.size(); b0 += batch) {
        std::vector<int64_t> idx = range(b0, std::min(data.size(), b0 + batch));
        std::vector<double> logits = net.forward(data.batch(idx, device)).to_vector();
        for (size_t i = 0; i < idx.size(); ++i) {
            const double* row = &logits[i * k];
            int64_t best = std::max_element(row, row + k) - row;
            correct += best == data.label(idx[i]);
        }
    }
    return static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(data.size(), 1));
}

Tensor classifier_features(const Classifier& net, const Tensor& images, Device device, int64_t batch) {
    STF_CHECK(images.ndim() == 4, "classifier_features: expected images [N, C, H, W], got " << describe(images));
    NoGradGuard no_grad;
    std::vector<Tensor> parts;
    for (int64_t b0 = 0; b0 < images.size(0); b0 += batch) {
        int64_t len = std::min(batch, images.size(0) - b0);
        Tensor x = ops::to(ops::to(ops::contiguous(ops::narrow(images, 0, b0, len)), DType::F32), device);
        parts.push_back(ops::to(ops::to(net.features(x), Device::cpu()), DType::F64));
    }
    return ops::cat(parts, 0);
}

Tensor classifier_features(const Classifier& net, const data::ImageDataset& data, Device device, int64_t batch) {
    NoGradGuard no_grad;
    std::vector<Tensor> parts;
    for (int64_t b0 = 0; b0 < data.size(); b0 += batch) {
        Tensor x = data.batch(range(b0, std::min(data.size(), b0 + batch)), device);
        parts.push_back(ops::to(ops::to(net.features(x), Device::cpu()), DType::F64));
    }
    return ops::cat(parts, 0);
}

}  // namespace stf::metrics
