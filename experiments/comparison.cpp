#include "experiments/comparison.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include "metrics/frechet.h"
#include "data/image_io.h"
#include "data/sampler.h"
#include "report/plot.h"
#include "diffusion/sampler.h"

namespace stf::experiments {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double number_or_nan(const json& j) { return j.is_number() ? j.get<double>() : NAN; }

// Images [N, C, H, W] in [-1, 1] rounded to 8 bits the way PNGs of them would be (EDM's x * 127.5 + 128,
// clipped, truncated) and scaled back: the classifier then sees samples exactly as it sees dataset images.
Tensor quantise_like_png(const Tensor& images) {
    std::vector<uint8_t> nhwc = data::to_uint8_nhwc(images);
    int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    std::vector<double> values(nhwc.size());
    for (size_t i = 0; i < nhwc.size(); ++i) values[i] = nhwc[i] / 127.5 - 1.0;
    return ops::contiguous(ops::permute(ops::from_vector(values, {n, h, w, c}), {0, 3, 1, 2}));
}

// Images for seeds 0 .. count - 1 with the Heun sampler, as ./sample --seeds 0-(count-1) draws them
// (latents N(0, I) per seed, sampler in float64, network in float32 on its device).
Tensor sample_images(const nn::Precond& net, const nn::SongUNetConfig& u, int64_t count, int heun_steps,
                     int64_t batch, Device device) {
    diffusion::SamplerOptions so;
    so.num_steps = heun_steps;
    Shape image{u.in_channels, u.img_resolution, u.img_resolution};
    diffusion::Denoiser denoise = [&](const Tensor& x, double sigma) {
        NoGradGuard no_grad;
        Tensor xd = ops::to(ops::to(x, DType::F32), device);
        Tensor s = ops::full({x.size(0)}, sigma, DType::F32, device);
        return ops::to(ops::to(net.forward(xd, s), Device::cpu()), DType::F64);
    };
    std::vector<Tensor> outputs;
    for (int64_t b0 = 0; b0 < count; b0 += batch) {
        int64_t len = std::min(batch, count - b0);
        std::vector<Tensor> latents;
        for (int64_t s = b0; s < b0 + len; ++s) {
            Generator g(static_cast<uint64_t>(s));
            latents.push_back(ops::unsqueeze(ops::randn(image, g, DType::F64), 0));
        }
        outputs.push_back(diffusion::edm_sample(denoise, ops::cat(latents, 0), so));
        std::printf("  sampled %lld / %lld\n", (long long)(b0 + len), (long long)count);
        std::fflush(stdout);
    }
    return ops::to(ops::cat(outputs, 0), DType::F32);
}

// Test-set features and the classifier's accuracy on the test set, in one pass.
struct TestFeatures {
    metrics::FeatureStats stats;
    double accuracy = 0;
};
TestFeatures test_features(const metrics::Classifier& clf, const data::ImageDataset& test, Device device) {
    NoGradGuard no_grad;
    std::vector<double> all;
    int64_t correct = 0, k = clf.config().num_classes, dim = clf.config().feature_dim();
    for (int64_t b0 = 0; b0 < test.size(); b0 += 256) {
        std::vector<int64_t> idx(static_cast<size_t>(std::min<int64_t>(256, test.size() - b0)));
        std::iota(idx.begin(), idx.end(), b0);
        Tensor f = clf.features(test.batch(idx, device));
        std::vector<double> logits = clf.logits_from_features(f).to_vector();
        std::vector<double> fv = f.to_vector();
        all.insert(all.end(), fv.begin(), fv.end());
        for (size_t i = 0; i < idx.size(); ++i) {
            const double* row = &logits[i * k];
            correct += (std::max_element(row, row + k) - row) == test.label(idx[i]);
        }
    }
    TestFeatures t;
    t.stats = metrics::feature_stats(all, test.size(), dim);
    t.accuracy = test.has_labels() ? static_cast<double>(correct) / static_cast<double>(test.size()) : NAN;
    return t;
}

std::string load_or_train_classifier(const CompareOptions& o, const fs::path& out) {
    if (!o.classifier.empty()) return o.classifier;
    metrics::ClassifierTrainOptions c = o.classifier_train;
    c.data = o.train.data;
    c.test_data = o.test_data;
    c.max_images = o.train.max_images;
    c.max_test_images = o.max_test_images;
    c.device = o.train.device;
    c.seed = o.train.seed;
    c.out = (out / "classifier.safetensors").string();
    std::printf("== training the feature classifier\n");
    metrics::train_classifier(c);
    return c.out;
}

using Runs = std::vector<std::pair<std::string, RunStats>>;

// DSM, STF n=256, STF all, kNN k=2048 n=256: the method as the plots' legends name it.
std::string method_label(const CompareOptions& o, const std::string& method) {
    if (method == "dsm") return "DSM";
    if (method == "stf") return "STF n=" + std::to_string(o.train.rbatch);
    if (method == "stf-all") return "STF all";
    if (method == "knn") return "kNN k=" + std::to_string(o.train.knn_k) + " n=" + std::to_string(o.train.rbatch);
    return method;
}

void write_loss_plots(const CompareOptions& o, const fs::path& out, const Runs& runs) {
    std::vector<report::Series> loss;
    for (size_t m = 0; m < runs.size(); ++m)
        loss.push_back({method_label(o, runs[m].first), runs[m].second.kimg, runs[m].second.loss, report::palette_color(m)});
    report::write_line_plot_png((out / "loss.png").string(), loss,
                        report::PlotOptions{.title = "training loss per tick", .x_label = "kimg", .y_label = "loss",
                                    .log_y = true});
    // One panel per band (the methods in the same colours as loss.png), tiled 2 x 2 into one PNG.
    const int pw = 480, ph = 320;
    std::vector<uint8_t> tiled(static_cast<size_t>(4 * pw * ph * 3), 255);
    for (size_t b = 0; b < kLossBandNames.size(); ++b) {
        std::vector<report::Series> var;
        for (size_t m = 0; m < runs.size(); ++m)
            var.push_back({method_label(o, runs[m].first), runs[m].second.kimg, runs[m].second.band_var[b],
                           report::palette_color(m)});
        std::vector<uint8_t> panel = report::render_line_plot(
            var, report::PlotOptions{.title = std::string("loss variance, ") + kLossBandNames[b], .x_label = "kimg",
                                     .y_label = "var", .log_y = true, .width = pw, .height = ph});
        int x0 = static_cast<int>(b % 2) * pw, y0 = static_cast<int>(b / 2) * ph;
        for (int y = 0; y < ph; ++y)
            std::copy(panel.begin() + static_cast<size_t>(y * pw * 3), panel.begin() + static_cast<size_t>((y + 1) * pw * 3),
                      tiled.begin() + static_cast<size_t>(((y0 + y) * 2 * pw + x0) * 3));
    }
    data::write_png((out / "loss_bands_var.png").string(), tiled.data(), 2 * ph, 2 * pw, 3);
}

// Per method and band: samples seen, and the mean over the second half of the ticks of the band's loss mean
// and variance (the first half is dominated by the network's early fall).
void write_band_summary(const fs::path& out, const Runs& runs) {
    std::ostringstream csv;
    csv << "method,band,count,loss_mean,loss_var,ess\n";
    for (const auto& [method, s] : runs)
        for (size_t b = 0; b < kLossBandNames.size(); ++b) {
            double count = 0, mean = 0, var = 0, ess = 0;
            int used = 0, ess_used = 0;
            for (size_t t = s.kimg.size() / 2; t < s.kimg.size(); ++t) {
                count += std::isfinite(s.band_count[b][t]) ? s.band_count[b][t] : 0;
                if (std::isfinite(s.band_ess[b][t])) ess += s.band_ess[b][t], ++ess_used;
                if (!std::isfinite(s.band_mean[b][t]) || !std::isfinite(s.band_var[b][t])) continue;
                mean += s.band_mean[b][t];
                var += s.band_var[b][t];
                ++used;
            }
            csv << method << "," << kLossBandNames[b] << "," << count << ",";
            if (used) csv << mean / used << "," << var / used << ",";
            else csv << ",,";
            if (ess_used) csv << ess / ess_used;
            csv << "\n";
        }
    std::string text = csv.str();
    data::write_file_atomic((out / "loss_bands.csv").string(), text.data(), text.size());
}

void write_results(const fs::path& out, const std::vector<CompareRow>& rows) {
    std::ostringstream csv;
    csv << "method,kimg,steps,final_loss,fd,fd_std,samples,train_seconds,sample_seconds,img_per_sec\n";
    for (const CompareRow& r : rows) {
        char line[256];
        std::snprintf(line, sizeof line, "%s,%.3f,%lld,%.6g,%.6g,%.3g,%lld,%.1f,%.1f,%.4g\n", r.method.c_str(), r.kimg,
                      (long long)r.steps, r.final_loss, r.fd, r.fd_std, (long long)r.samples, r.train_seconds,
                      r.sample_seconds, r.img_per_sec);
        csv << line;
    }
    std::string text = csv.str();
    data::write_file_atomic((out / "results.csv").string(), text.data(), text.size());
}

// Training and sampling times of an earlier results.csv, by method (a rescore keeps them), found by the
// header's column names.
std::map<std::string, std::pair<double, double>> previous_times(const fs::path& csv_path) {
    std::map<std::string, std::pair<double, double>> times;
    std::ifstream in(csv_path);
    auto cells_of = [](const std::string& line) {
        std::vector<std::string> cells;
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
        return cells;
    };
    std::string line;
    if (!std::getline(in, line)) return times;
    std::vector<std::string> header = cells_of(line);
    auto column = [&](const std::string& name) {
        return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
    };
    const size_t train = column("train_seconds"), sample = column("sample_seconds");
    while (std::getline(in, line)) {
        std::vector<std::string> cells = cells_of(line);
        if (cells.empty() || train >= cells.size() || sample >= cells.size()) continue;
        try {
            times[cells[0]] = {std::stod(cells[train]), std::stod(cells[sample])};
        } catch (const std::exception&) {
        }
    }
    return times;
}

void check_options(const CompareOptions& o) {
    STF_CHECK(!o.train.data.empty(), "stf_compare: no dataset (--data)");
    STF_CHECK(o.samples >= 2, "stf_compare: --samples must be >= 2 (a covariance needs two), got " << o.samples);
    STF_CHECK(o.heun_steps >= 1, "stf_compare: --heun must be >= 1, got " << o.heun_steps);
    STF_CHECK(o.sample_batch >= 1, "stf_compare: --sample-batch must be >= 1, got " << o.sample_batch);
    STF_CHECK(o.train.duration_mimg > 0, "stf_compare: --kimg must be positive");
    STF_CHECK(o.train.resume.empty(), "stf_compare: runs start from scratch (no --resume)");
    STF_CHECK(o.bootstrap >= 0, "stf_compare: --bootstrap must be >= 0, got " << o.bootstrap);
    STF_CHECK(!o.rescore || !o.classifier.empty(), "stf_compare: --rescore needs --classifier FILE");
    STF_CHECK(!o.targets.empty(), "stf_compare: --targets lists no method");
    for (size_t i = 0; i < o.targets.size(); ++i) {
        method_options(o, o.targets[i]);  // throws for an unknown name
        STF_CHECK(std::find(o.targets.begin(), o.targets.begin() + static_cast<std::ptrdiff_t>(i), o.targets[i]) ==
                      o.targets.begin() + static_cast<std::ptrdiff_t>(i),
                  "stf_compare: --targets lists '" << o.targets[i] << "' twice");
    }
}

}  // namespace

RunStats read_run_stats(const std::string& path) {
    std::ifstream in(path);
    STF_CHECK(in, "read_run_stats: cannot open '" << path << "' (expected a training run's stats.jsonl)");
    RunStats s;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (line.empty()) continue;
        try {
            json j = json::parse(line);
            s.kimg.push_back(j.at("kimg").get<double>());
            s.loss.push_back(number_or_nan(j.at("loss")));
            s.step.push_back(j.contains("step") ? number_or_nan(j["step"]) : NAN);
            s.img_per_sec.push_back(j.contains("img_per_sec") ? number_or_nan(j["img_per_sec"]) : NAN);
            for (size_t b = 0; b < kLossBandNames.size(); ++b) {
                const json& band = j.at("loss_bands").at(kLossBandNames[b]);
                s.band_count[b].push_back(number_or_nan(band.at("count")));
                s.band_mean[b].push_back(number_or_nan(band.at("mean")));
                s.band_var[b].push_back(number_or_nan(band.at("var")));
                const bool has_ess = j.contains("ess") && j["ess"].contains(kLossBandNames[b]);
                s.band_ess[b].push_back(has_ess ? number_or_nan(j["ess"][kLossBandNames[b]]) : NAN);
            }
        } catch (const json::exception& e) {
            throw Error("read_run_stats: '" + path + "' line " + std::to_string(number) +
                        " is not a stats line with kimg, loss and loss_bands: " + e.what());
        }
    }
    STF_CHECK(!s.kimg.empty(), "read_run_stats: '" << path << "' holds no ticks");
    return s;
}

CompareOptions compare_preset(const std::string& name) {
    CompareOptions o;
    stf::train::TrainOptions& t = o.train;
    // DDPM++-small on Fashion-MNIST padded to 32x32, as train_cifar --preset small trains it.
    t = stf::train::TrainOptions::small();
    t.snap_ticks = 0;
    t.dump_ticks = 0;
    t.progress_bar = false;
    if (name == "cpu") {
        // About 9 minutes on 2 idle cores with --classifier (training ~2.7 and sampling ~1.6 per method),
        // plus ~8 to train the classifier without it. Heun 10 steps (19 evaluations) instead of 18 buys
        // twice the samples; both methods get the same sampler. Batch, reference batch, learning-rate
        // ramp and EMA are the small preset's.
        t.duration_mimg = 0.0048;  // 150 steps of 32 images
        t.tick_kimg = 0.16;
        o.samples = 500;
        o.heun_steps = 10;
        o.sample_batch = 100;
        o.classifier_train.epochs = 2;
        o.outdir = "compare-runs/cpu";
    } else if (name == "gpu") {
        // One device call of about 8 minutes on an H200 for the four targets (not run yet: no GPU was lent
        // when it was written; docs/experiments.md). 1,000 kimg per method in 1,954 steps of 512: the small
        // network's step is bound by the host issuing its kernels (docs/perf.md), so large steps buy images.
        // The learning rate and its ramp are the CPU preset's; the EMA half-life is 5% of the run.
        t.device = "cuda";
        t.batch = 512;
        t.rbatch = 1024;
        t.duration_mimg = 1.0;
        t.lr_rampup_mimg = 0.05;
        t.ema_mimg = 0.05;
        t.tick_kimg = 25;
        o.samples = 10000;
        o.heun_steps = 18;
        o.sample_batch = 1000;
        o.classifier_train.epochs = 10;
        o.classifier_train.batch = 256;
        o.outdir = "compare-runs/gpu";
    } else {
        throw Error("unknown --preset '" + name + "' (known: cpu, gpu)");
    }
    return o;
}

stf::train::TrainOptions method_options(const CompareOptions& o, const std::string& method) {
    stf::train::TrainOptions t = o.train;
    if (method == "dsm") {
        t.target = "dsm";
    } else if (method == "stf") {
        STF_CHECK(t.rbatch != stf::train::TrainOptions::kWholeDataset,
                  "stf_compare: method stf needs a reference batch size (--rbatch N); stf-all is the whole dataset");
        t.target = "stf";
    } else if (method == "stf-all") {
        t.target = "stf";
        t.rbatch = stf::train::TrainOptions::kWholeDataset;
    } else if (method == "knn") {
        t.target = "knn";
    } else {
        throw Error("stf_compare: unknown target '" + method + "' in --targets (known: dsm, stf, stf-all, knn)");
    }
    return t;
}

std::pair<double, double> fd_with_bootstrap(const Tensor& features, const metrics::FeatureStats& reference, int64_t resamples,
                                            uint64_t seed) {
    metrics::FeatureStats own = metrics::feature_stats(features);
    double fd = metrics::frechet_distance(own, reference);
    if (resamples <= 0) return {fd, NAN};
    std::vector<double> f = features.to_vector();
    int64_t n = own.count, dim = own.dim;
    std::vector<double> picked(f.size());
    double sum = 0, sum_sq = 0;
    Generator gen(seed);
    for (int64_t r = 0; r < resamples; ++r) {
        std::vector<double> u = ops::rand({n}, gen, DType::F64).to_vector();
        for (int64_t i = 0; i < n; ++i) {
            int64_t j = std::min(n - 1, static_cast<int64_t>(u[i] * static_cast<double>(n)));
            std::copy(f.begin() + j * dim, f.begin() + (j + 1) * dim, picked.begin() + i * dim);
        }
        double v = metrics::frechet_distance(metrics::feature_stats(picked, n, dim), reference);
        sum += v;
        sum_sq += v * v;
    }
    double mean = sum / static_cast<double>(resamples);
    double var = std::max(0.0, sum_sq / static_cast<double>(resamples) - mean * mean);
    return {fd, std::sqrt(var * static_cast<double>(resamples) / std::max<double>(1, static_cast<double>(resamples - 1)))};
}

namespace {

struct Scorer {
    const metrics::Classifier& clf;
    const metrics::FeatureStats& reference;
    Device device;
    int64_t bootstrap;
    uint64_t seed;
    void score(const Tensor& images, CompareRow& row) const {
        Tensor features = metrics::classifier_features(clf, images, device);
        std::tie(row.fd, row.fd_std) = fd_with_bootstrap(features, reference, bootstrap, seed);
    }
};

// Trains one method, samples from its final EMA snapshot and writes its samples; the row lacks the FD.
// Mean images per second over a run's ticks after the first (which includes start-up and first-call costs).
double run_img_per_sec(const RunStats& s) {
    double sum = 0;
    int used = 0;
    for (size_t t = s.img_per_sec.size() > 1 ? 1 : 0; t < s.img_per_sec.size(); ++t)
        if (std::isfinite(s.img_per_sec[t])) sum += s.img_per_sec[t], ++used;
    return used ? sum / used : NAN;
}

CompareRow train_and_sample(const CompareOptions& o, const std::string& method, const fs::path& out, Tensor& images) {
    stf::train::TrainOptions t = method_options(o, method);
    t.outdir = (out / method).string();
    fs::remove(fs::path(t.outdir) / "stats.jsonl");  // the trainer appends: a rerun starts a fresh file
    std::printf("== training %s (%g kimg, seed %llu)\n", method.c_str(), t.duration_mimg * 1e3,
                (unsigned long long)t.seed);
    std::fflush(stdout);
    auto start = std::chrono::steady_clock::now();
    stf::train::TrainSummary summary = stf::train::training_loop(t);
    CompareRow row{method, summary.kimg, summary.steps, summary.last_loss, 0, NAN, o.samples, seconds_since(start), 0};
    row.img_per_sec = run_img_per_sec(read_run_stats((fs::path(t.outdir) / "stats.jsonl").string()));

    std::printf("== sampling %lld images from %s with Heun %d steps\n", (long long)o.samples, summary.snapshot.c_str(),
                o.heun_steps);
    start = std::chrono::steady_clock::now();
    Device device = Device::parse(o.train.device);
    nn::LoadedNetwork net = nn::load_network(summary.snapshot);
    net.net->to(device);
    net.net->eval();
    images = sample_images(*net.net, net.config.unet, o.samples, o.heun_steps, o.sample_batch, device);
    row.sample_seconds = seconds_since(start);
    data::write_npy((out / ("samples_" + method + ".npy")).string(), images);
    return row;
}

// A finished method's row and samples from outdir, for --rescore.
CompareRow reload(const std::string& method, const fs::path& out, Tensor& images) {
    fs::path npy = out / ("samples_" + method + ".npy");
    STF_CHECK(fs::exists(npy), "stf_compare --rescore: " << npy.string() << " is missing (run the comparison first)");
    images = data::read_npy(npy.string());
    RunStats s = read_run_stats((out / method / "stats.jsonl").string());
    auto times = previous_times(out / "results.csv");
    auto it = times.find(method);
    std::pair<double, double> secs = it == times.end() ? std::pair<double, double>{NAN, NAN} : it->second;
    int64_t steps = std::isfinite(s.step.back()) ? static_cast<int64_t>(s.step.back()) : 0;
    CompareRow row{method, s.kimg.back(), steps, s.loss.back(), 0, NAN, images.size(0), secs.first, secs.second};
    row.img_per_sec = run_img_per_sec(s);
    return row;
}

}  // namespace

CompareResult run_comparison(const CompareOptions& o) {
    check_options(o);
    fs::path out(o.outdir);
    fs::create_directories(out);
    Device device = Device::parse(o.train.device);
    std::string test_path = o.test_data.empty() ? data::ImageDataset::test_split_path(o.train.data) : o.test_data;
    STF_CHECK(!test_path.empty(), "stf_compare: no test split beside '" << o.train.data << "' (looked for "
                                  "t10k-images-idx3-ubyte[.gz] and test_batch.bin); give --test-data PATH");

    CompareResult result;
    result.classifier = load_or_train_classifier(o, out);
    metrics::LoadedClassifier clf = metrics::load_classifier(result.classifier);
    clf.net->to(device);
    const metrics::ClassifierConfig& cc = clf.net->config();
    STF_CHECK(cc.resolution == o.train.pad_to,
              "stf_compare: the classifier " << result.classifier << " takes " << cc.resolution << "x" << cc.resolution
                                             << " images, the diffusion models make " << o.train.pad_to << "x"
                                             << o.train.pad_to << " (--res)");
    data::ImageDataset test = data::ImageDataset::load(test_path, cc.resolution);
    if (o.max_test_images > 0) test = test.subset(o.max_test_images);
    STF_CHECK(test.channels() == cc.in_channels, "stf_compare: the classifier " << result.classifier << " takes "
                                                 << cc.in_channels << "-channel images, " << test.source() << " has "
                                                 << test.channels());
    TestFeatures reference = test_features(*clf.net, test, device);
    result.classifier_accuracy = reference.accuracy;
    std::printf("== feature classifier %s: test accuracy %.2f%% on %lld images, %lld features\n",
                result.classifier.c_str(), 100 * reference.accuracy, (long long)test.size(), (long long)cc.feature_dim());
    Scorer scorer{*clf.net, reference.stats, device, o.bootstrap, o.train.seed + 2};

    // The floor, scored once the first method's sample count is known: training images (a seeded random choice)
    // against the test set at the same sample size.
    auto data_row = [&](int64_t count) {
        data::ImageDataset train_data = data::ImageDataset::load(o.train.data, cc.resolution, o.train.max_images);
        data::InfiniteSampler pick(train_data.size(), o.train.seed + 1);
        const int64_t n_real = std::min(count, train_data.size());
        CompareRow row{"data", 0, 0, NAN, 0, NAN, n_real, 0, 0};
        scorer.score(train_data.batch(pick.next(n_real)), row);
        return row;
    };
    std::optional<CompareRow> floor;
    Runs stats;
    for (const std::string& method : o.targets) {
        Tensor images;
        CompareRow row = o.rescore ? reload(method, out, images) : train_and_sample(o, method, out, images);
        data::write_image_grid((out / ("samples_" + method + ".png")).string(),
                         ops::narrow(images, 0, 0, std::min(o.grid_images, images.size(0))));
        scorer.score(quantise_like_png(images), row);
        std::printf("== %s: FD %.4f (bootstrap std %.4f), final loss %.4f, %.0f s training (%.1f img/s), %.0f s sampling\n",
                    method.c_str(), row.fd, row.fd_std, row.final_loss, row.train_seconds, row.img_per_sec,
                    row.sample_seconds);
        std::fflush(stdout);
        result.rows.push_back(row);
        stats.emplace_back(method, read_run_stats((out / method / "stats.jsonl").string()));
        if (!floor) floor = data_row(row.samples);
        // Everything finished so far, so that a comparison stopped part-way (a time limit) keeps it.
        std::vector<CompareRow> so_far = result.rows;
        so_far.push_back(*floor);
        write_results(out, so_far);
        write_loss_plots(o, out, stats);
        write_band_summary(out, stats);
    }
    result.rows.push_back(*floor);
    std::printf("== results (%s/results.csv)\n", out.string().c_str());
    for (const CompareRow& r : result.rows)
        std::printf("  %-8s kimg %-7.2f FD %-9.4f +- %-8.4f final loss %-9.4f img/s %.1f\n", r.method.c_str(), r.kimg, r.fd,
                    r.fd_std, r.final_loss, r.img_per_sec);
    return result;
}

}  // namespace stf::experiments
