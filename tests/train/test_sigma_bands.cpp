// The tick statistics summed on the device (train/sigma_bands.h) against the float64 host sums the
// training loop computed before: the same bands, counts, means, variances and ESS, within float32
// rounding; NaN stays in its band; and a whole run's stats.jsonl against the host sums of its rounds.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "tensor/ops.h"
#include "train/sigma_bands.h"
#include "train/training_loop.h"
#include "tests/requirements.h"
#include "tests/temp_files.h"
#include "tests/tiny_network.h"

using namespace stf;
namespace fs = std::filesystem;

namespace {

// Relative agreement, with NaN equal to NaN.
bool close(double a, double b, double rel) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::abs(a - b) <= rel * std::max({std::abs(a), std::abs(b), 1e-30});
}

void check_bands_agree(const train::SigmaBands& device, const train::SigmaBands& host, double rel) {
    for (int b = 0; b < train::SigmaBands::kBands; ++b) {
        CAPTURE(b);
        CHECK(device.count[b] == host.count[b]);
        CHECK(device.ess_count[b] == host.ess_count[b]);
        CHECK(close(device.loss_mean(b), host.loss_mean(b), rel));
        CHECK(close(device.loss_var(b), host.loss_var(b), 5 * rel));
        CHECK(close(device.ess_mean(b), host.ess_mean(b), rel));
    }
    CHECK(close(device.total_loss(), host.total_loss(), rel));
}

// One round's float32 values as the loss produces them, and as the host read them back (widened).
struct Round {
    Tensor sigma, loss, ess;
    std::vector<double> sigma_h, loss_h, ess_h;
};

// EDM's noise levels (log-normal, mean -1.2, std 1.2) and losses that grow with sigma and spread.
Round random_round(Generator& gen, int64_t b, bool with_ess) {
    Round r;
    r.sigma = ops::unary(UnaryOp::Exp, ops::add_scalar(ops::mul_scalar(ops::randn({b}, gen), 1.2), -1.2));
    const Tensor spread = ops::rand({b}, gen);
    r.loss = ops::mul(ops::add_scalar(ops::mul_scalar(spread, 1.5), 0.25), ops::add_scalar(ops::unary(UnaryOp::Sqrt, r.sigma), 0.1));
    if (with_ess) r.ess = ops::add_scalar(ops::mul_scalar(ops::rand({b}, gen), 40), 1);
    r.sigma_h = r.sigma.to_vector();
    r.loss_h = r.loss.to_vector();
    if (with_ess) r.ess_h = r.ess.to_vector();
    return r;
}

}  // namespace

TEST_CASE("sigma bands summed on the device agree with the float64 host sums over a long tick") {
    for (bool with_ess : {false, true}) {
        CAPTURE(with_ess);
        Generator gen(7);
        train::SigmaBands host;
        train::SigmaBandSums device;
        for (int round = 0; round < 400; ++round) {  // 400 rounds of 64: a tick of 25,600 samples
            Round r = random_round(gen, 64, with_ess);
            host.add(r.sigma_h, r.loss_h, r.ess_h);
            device.add(r.sigma, r.loss, r.ess);
        }
        const train::SigmaBands sums = device.read_and_reset();
        CHECK(sums.total_count() == 25600);
        for (int b = 0; b < train::SigmaBands::kBands; ++b) CHECK(host.count[b] > 100);  // every band is exercised
        CHECK(sums.ess_count[0] == (with_ess ? host.count[0] : 0));
        check_bands_agree(sums, host, 2e-6);
        // Read and reset: the next tick starts from zero.
        const train::SigmaBands empty = device.read_and_reset();
        CHECK(empty.total_count() == 0);
        CHECK(empty.total_loss() == 0);
        CHECK(std::isnan(empty.loss_mean(2)));
    }
}

TEST_CASE("sigma bands: the compensated sum keeps a float32 tick exact where a running float32 sum drifts") {
    // 20,000 rounds each adding 0.1f + ...: a plain float32 running sum of this is off by ~1e-4 relative.
    train::SigmaBandSums device;
    const Tensor sigma = ops::full({4}, 0.5);
    const Tensor loss = ops::from_vector({0.1, 0.1000001, 0.0999999, 0.1}, {4});
    double host = 0;
    float naive = 0;
    for (double v : loss.to_vector()) host += v;
    host *= 20000;
    const float round_sum = static_cast<float>(ops::sum(loss).item());
    for (int round = 0; round < 20000; ++round) {
        device.add(sigma, loss, Tensor());
        naive += round_sum;
    }
    const train::SigmaBands sums = device.read_and_reset();
    CHECK(sums.count[1] == 80000);
    CHECK(std::abs(sums.loss_sum[1] - host) / host < 1e-6);
    CHECK(std::abs(naive - host) / host > 1e-5);  // what the compensation is there for
}

TEST_CASE("sigma bands: edges, NaN and float64") {
    // Samples exactly at an edge belong to the band above it, as on the host; a NaN sigma has reached
    // no edge (band 0); a NaN loss makes its own band's sums NaN and leaves the others finite.
    const std::vector<double> sigma = {0.2, 1.0, 5.0, 0.19999, 4.9999, 80.0, NAN, 0.002};
    const std::vector<double> loss = {1, 2, 3, 4, NAN, 6, 7, 8};
    for (DType dtype : {DType::F32, DType::F64}) {
        const std::string dtype_text = dtype_name(dtype);
        CAPTURE(dtype_text);
        const Tensor s = ops::from_vector(sigma, {8}, dtype), l = ops::from_vector(loss, {8}, dtype);
        train::SigmaBands host;
        host.add(s.to_vector(), l.to_vector(), {});
        train::SigmaBandSums device;
        device.add(s, l, Tensor());
        const train::SigmaBands sums = device.read_and_reset();
        CHECK(sums.count[0] == 3);  // 0.19999, NaN, 0.002
        CHECK(sums.count[1] == 1);  // 0.2
        CHECK(sums.count[2] == 2);  // 1.0, 4.9999
        CHECK(sums.count[3] == 2);  // 5.0, 80
        CHECK(sums.loss_sum[0] == 4 + 7 + 8);
        CHECK(std::isnan(sums.loss_sum[2]));
        CHECK(sums.loss_sum[3] == 9);
        CHECK(std::isnan(sums.total_loss()));
        for (int b = 0; b < train::SigmaBands::kBands; ++b) CHECK(sums.count[b] == host.count[b]);
        check_bands_agree(sums, host, dtype == DType::F64 ? 1e-14 : 1e-7);
    }
    // Non-finite stays non-finite in later rounds, so the tick's mean loss reports the divergence.
    train::SigmaBandSums device;
    device.add(ops::full({2}, 3.0), ops::from_vector({INFINITY, 1}, {2}), Tensor());
    for (int round = 0; round < 3; ++round) device.add(ops::full({2}, 3.0), ops::full({2}, 1.0), Tensor());
    CHECK_FALSE(std::isfinite(device.read_and_reset().total_loss()));
}

TEST_CASE("sigma bands: mismatched inputs are refused by name") {
    train::SigmaBandSums device;
    CHECK_THROWS_WITH_AS(device.add(ops::zeros({3}), ops::zeros({4}), Tensor()), doctest::Contains("must be [b] alike"),
                         Error);
    device.add(ops::zeros({4}), ops::zeros({4}), Tensor());
    CHECK_THROWS_WITH_AS(device.add(ops::zeros({4}, DType::F64), ops::zeros({4}, DType::F64), Tensor()),
                         doctest::Contains("not on the device and in the dtype"), Error);
    // A bf16 loss (storage only) is summed in float32.
    train::SigmaBandSums widened;
    widened.add(ops::full({2}, 2.0), ops::to(ops::from_vector({1.5, 2.5}, {2}), DType::BF16), Tensor());
    CHECK(widened.read_and_reset().loss_sum[2] == 4.0);
}

TEST_CASE("a run's tick statistics equal the host sums of its rounds" * test::needs_fashion_mnist()) {
    test::TempDir dir("stf_test_bands");
    train::TrainOptions o;
    o.data = data::ImageDataset::default_fashion_mnist_path();
    o.max_images = 64;
    o.pad_to = 0;
    o.outdir = (dir.path / "run").string();
    o.net = test::tiny_network(8, {});
    o.target = "stf";
    o.rbatch = 16;
    o.batch = 8;
    o.batch_gpu = 4;
    o.duration_mimg = 8 * 5 / 1e6;  // 5 steps in ticks of 2: 2, 2 and a short last one of 1
    o.tick_kimg = 0.016;
    o.snap_ticks = o.dump_ticks = 0;
    o.device = "cpu";
    o.progress_bar = false;
    std::map<int64_t, train::SigmaBands> host_by_step;  // the host sums, step by step
    train::training_loop(o, {}, [&](int64_t step, const diffusion::LossTerms& terms) {
        host_by_step[step].add(terms.sigma.to_vector(), terms.loss.to_vector(), terms.ess.to_vector());
    });
    REQUIRE(host_by_step.size() == 5);

    std::ifstream stats(dir.path / "run" / "stats.jsonl");
    std::string line;
    int ticks = 0;
    const int64_t tick_steps[] = {2, 2, 1};
    int64_t first_step = 0;
    while (std::getline(stats, line)) {
        REQUIRE(ticks < 3);
        const nlohmann::json row = nlohmann::json::parse(line);
        CAPTURE(ticks);
        train::SigmaBands host;
        for (int64_t s = first_step; s < first_step + tick_steps[ticks]; ++s) {
            const train::SigmaBands& h = host_by_step.at(s);
            for (int b = 0; b < train::SigmaBands::kBands; ++b) {
                host.count[b] += h.count[b];
                host.loss_sum[b] += h.loss_sum[b];
                host.loss_sq[b] += h.loss_sq[b];
                host.ess_sum[b] += h.ess_sum[b];
                host.ess_count[b] += h.ess_count[b];
            }
        }
        first_step += tick_steps[ticks];
        CHECK(row.at("step").get<int64_t>() == first_step);
        CHECK(host.total_count() == 8 * tick_steps[ticks]);
        CHECK(row.at("loss").get<double>() == doctest::Approx(host.total_loss() / host.total_count()).epsilon(2e-6));
        for (int b = 0; b < train::SigmaBands::kBands; ++b) {
            const nlohmann::json& band = row.at("loss_bands").at(train::kSigmaBandNames[b]);
            CAPTURE(b);
            CHECK(band.at("count").get<double>() == host.count[b]);
            const nlohmann::json& ess = row.at("ess").at(train::kSigmaBandNames[b]);
            if (host.count[b] == 0) {
                CHECK(band.at("mean").is_null());
                CHECK(ess.is_null());
                continue;
            }
            CHECK(band.at("mean").get<double>() == doctest::Approx(host.loss_mean(b)).epsilon(2e-6));
            CHECK(ess.get<double>() == doctest::Approx(host.ess_mean(b)).epsilon(2e-6));
            if (host.count[b] >= 2) CHECK(band.at("var").get<double>() == doctest::Approx(host.loss_var(b)).epsilon(1e-5));
        }
        ++ticks;
    }
    CHECK(ticks == 3);
}
