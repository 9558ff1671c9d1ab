// ./stf_variance: how much the DSM, STF and kNN training targets vary for a fixed noisy sample, per noise
// level, on a real dataset (experiments/target_variance.h). Writes variance.csv and variance.png.
#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <sstream>

#include "data/dataset.h"
#include "apps/common/flags.h"
#include "report/plot.h"
#include "cuda/runtime.h"
#include "experiments/target_variance.h"

using namespace stf;
namespace fs = std::filesystem;

static const char* kUsage = R"(usage: stf_variance [options]

For each noise level sigma, the mean over noisy samples y = x + sigma * eps (x a random dataset image) of
the trace of the covariance of the training target given y: for DSM (the clean image; its posterior over
the dataset is computed exactly) and for the Stable Target Field target with each reference size n (the
sample's own image x', distributed as that posterior, plus n - 1 random images: Monte Carlo over the
n - 1 others, exact over x' for the posterior's 64 main modes), and with --target knn for the
nearest-neighbour target (Niedoba et al. 2024: k neighbours, n draws over the whole dataset; --draws
targets per sample), which is biased for finite n: bias2 is its mean squared bias ||E[T | y] - E[x | y]||^2
(0 for dsm and stf, which are unbiased). stderr is the standard error of the mean over the samples y.
Writes DIR/variance.csv (sigma,method,n,trace_cov,stderr,k,bias2) and DIR/variance.png (for knn the plot
shows trace_cov + bias2, the target's mean squared distance from E[x | y]).

  --data PATH          CIFAR-10 binary directory or IDX images (default: Debian's Fashion-MNIST,
                       /usr/share/datasets/fashion-mnist)
  --max-images N       use only the first N images (default: all)
  --sigmas LIST        noise levels, e.g. 0.1,1,10 (default: 12 from 0.01 to 80, evenly in log sigma)
  --rbatch LIST        STF reference sizes, e.g. 64,256,1024,all (default); all = the whole dataset, where
                       the target is E[x | y] itself and its covariance is 0 (written with n = dataset size)
  --target LIST        estimators besides DSM: stf, knn or stf,knn (default stf)
  --k LIST             kNN neighbour counts (default 2048); kNN's draws are the numbers in --rbatch
  --samples N          noisy samples y per sigma (default 128)
  --draws K            reference batches per sample for the STF Monte Carlo (default 16)
  --seed N             random seed (default 0)
  --outdir DIR         where variance.csv and variance.png go (default variance-runs)
  --device cpu|cuda    (default: cuda when a GPU is available, else cpu)
)";

static std::vector<double> parse_sigmas(const std::string& text) {
    std::vector<double> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        double v = NAN;
        size_t pos = 0;
        try {
            v = std::stod(item, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        STF_CHECK(pos == item.size() && pos > 0 && std::isfinite(v) && v > 0,
                  "--sigmas expects a comma-separated list of positive numbers, got '" << text << "'");
        out.push_back(v);
    }
    STF_CHECK(!out.empty(), "--sigmas: no noise levels given");
    return out;
}

// Reference sizes; `all` becomes -1 until the dataset size is known.
static std::vector<int64_t> parse_rbatch(const std::string& text) {
    std::vector<int64_t> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item == "all") {
            out.push_back(-1);
            continue;
        }
        int64_t v = 0;
        size_t pos = 0;
        try {
            v = std::stoll(item, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        STF_CHECK(pos == item.size() && pos > 0 && v >= 1,
                  "--rbatch expects a comma-separated list of positive sizes or 'all', got '" << text << "'");
        out.push_back(v);
    }
    STF_CHECK(!out.empty(), "--rbatch: no reference sizes given");
    return out;
}

int main(int argc, char** argv) {
    return apps::run_program("stf_variance", argc, argv, kUsage, [&](apps::Flags& f) {
        std::string data_path = f.str("data", data::ImageDataset::default_fashion_mnist_path());
        int64_t max_images = f.integer("max-images", 0);
        std::string sigmas_text = f.str("sigmas", "");
        std::string rbatch_text = f.str("rbatch", "64,256,1024,all");
        std::string target_text = f.str("target", "stf");
        std::vector<int64_t> knn_k = f.int_list("k", {2048});
        experiments::VarianceOptions o;
        o.samples = f.integer("samples", 128);
        o.draws = f.integer("draws", 16);
        o.seed = static_cast<uint64_t>(f.integer("seed", 0));
        std::string outdir = f.str("outdir", "variance-runs");
        std::string device_name = f.str("device", cuda::available() ? "cuda" : "cpu");
        f.check_all_used();

        o.sigmas = sigmas_text.empty() ? experiments::default_variance_sigmas() : parse_sigmas(sigmas_text);
        std::vector<int64_t> rbatch = parse_rbatch(rbatch_text);
        bool want_stf = false, want_knn = false;
        {
            std::stringstream ss(target_text);
            for (std::string t; std::getline(ss, t, ',');) {
                STF_CHECK(t == "stf" || t == "knn", "--target expects stf, knn or stf,knn, got '" << target_text << "'");
                (t == "stf" ? want_stf : want_knn) = true;
            }
        }
        STF_CHECK(max_images >= 0, "--max-images must be positive (0: all), got " << max_images);
        STF_CHECK(o.samples >= 2, "--samples must be at least 2 (the standard error needs two), got " << o.samples);
        STF_CHECK(o.draws >= 1, "--draws must be at least 1, got " << o.draws);
        Device device = Device::parse(device_name);
        STF_CHECK(!device.is_cuda() || cuda::available(),
                  "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                                : "stf was built without CUDA (use --device cpu)"));

        // Native resolution (no padding: constant pixels change no distance and no covariance).
        data::ImageDataset data = data::ImageDataset::load(data_path, 0);
        if (max_images > 0) data = data.subset(max_images);
        const int64_t N = data.size();
        STF_CHECK(N >= 2, "the dataset " << data.source() << " has " << N << " image(s); need at least 2");
        if (want_knn) {
            for (int64_t n : rbatch)
                if (n > 0) o.knn_draws.push_back(n);  // draws: "all" means nothing for kNN
            for (int64_t k : knn_k)
                STF_CHECK(k >= 1 && k <= N, "--k " << k << " is not in 1.." << N << " (the dataset size)");
            o.knn_k = knn_k;
            STF_CHECK(!o.knn_draws.empty(), "--target knn: --rbatch lists no number of draws");
            STF_CHECK(o.draws >= 2, "--target knn needs --draws of at least 2 (a covariance), got " << o.draws);
        }
        for (int64_t& n : rbatch) {
            if (n < 0) n = N;
            STF_CHECK(!want_stf || n <= N, "--rbatch " << n << " is larger than the dataset (" << N << " images; use all)");
        }
        if (want_stf) o.rbatch = rbatch;

        std::vector<int64_t> all(static_cast<size_t>(N));
        std::iota(all.begin(), all.end(), int64_t{0});
        Tensor images = data.batch(all, device);
        std::printf("data: %s\n", data.source().c_str());
        std::printf("%lld images of %lldx%lldx%lld, device %s, %lld noisy samples per sigma, %lld reference draws each\n",
                    (long long)N, (long long)data.channels(), (long long)data.height(), (long long)data.width(),
                    device.str().c_str(), (long long)o.samples, (long long)o.draws);
        std::fflush(stdout);

        fs::create_directories(outdir);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<experiments::VarianceRow> rows = experiments::target_variance(images, o, [&](const experiments::VarianceRow& r) {
            double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::string label = r.method == "dsm"   ? "dsm"
                                : r.method == "knn" ? "knn k=" + std::to_string(r.k) + " n=" + std::to_string(r.n)
                                : r.n == N          ? "stf n=all"
                                                    : "stf n=" + std::to_string(r.n);
            std::printf("sigma %-8.4g %-18s trace %-11.5g +- %-10.3g%s (%5.1f s, total %6.1f s)\n", r.sigma,
                        label.c_str(), r.trace_cov, r.standard_error,
                        r.method == "knn" ? (" bias2 " + std::to_string(r.bias2)).c_str() : "", r.seconds, el);
            std::fflush(stdout);
        });
        double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        std::string csv = (fs::path(outdir) / "variance.csv").string();
        std::string png = (fs::path(outdir) / "variance.png").string();
        experiments::write_variance_csv(csv, rows);

        // One series per method, n (and k), x = log10 sigma (the plot has no log x axis), log y. kNN's series is
        // trace_cov + bias2: its target's mean squared distance from E[x | y], what DSM's and STF's traces are.
        struct Key {
            std::string method;
            int64_t n, k;
        };
        std::vector<Key> keys = {{"dsm", 0, 0}};
        for (int64_t n : o.rbatch) keys.push_back({"stf", n, 0});
        for (int64_t k : o.knn_k)
            for (int64_t n : o.knn_draws) keys.push_back({"knn", n, k});
        auto value = [](const experiments::VarianceRow& r) {
            return r.method == "knn" ? std::max(0.0, r.trace_cov + r.bias2) : r.trace_cov;
        };
        // Below about 1e-9 of the largest trace the values only say "zero" (they fall to 1e-170 and beyond
        // at small sigma): they are left out so that the region where the methods differ fills the plot.
        double largest = 0;
        for (const auto& r : rows) largest = std::max(largest, value(r));
        const double floor = largest * 1e-9;
        std::vector<report::Series> series;
        for (size_t k = 0; k < keys.size(); ++k) {
            report::Series s;
            s.name = keys[k].method == "dsm"   ? "dsm"
                     : keys[k].method == "knn" ? "knn k=" + std::to_string(keys[k].k) + " n=" + std::to_string(keys[k].n) +
                                                     " (cov + bias^2)"
                     : keys[k].n == N          ? "stf n=all (0)"
                                               : "stf n=" + std::to_string(keys[k].n);
            s.color = report::palette_color(k);
            for (const auto& r : rows)
                if (r.method == keys[k].method && r.n == keys[k].n && r.k == keys[k].k) {
                    s.x.push_back(std::log10(r.sigma));
                    s.y.push_back(value(r) >= floor ? value(r) : NAN);
                }
            series.push_back(s);
        }
        report::PlotOptions po;
        po.title = o.knn_k.empty() ? "trace Cov[target | y]: DSM vs STF (reference size n)"
                                   : "E||target - E[x | y]||^2 given y: DSM, STF (reference size n), kNN (k, n draws)";
        po.x_label = "log10 sigma";
        po.y_label = "trace of the target covariance (>= 1e-9 x max)";
        po.width = 800;
        po.height = 500;
        po.log_y = true;
        po.line_width = 2;
        report::write_line_plot_png(png, series, po);

        // The table: one row per sigma, one column per series (kNN: cov + bias^2, as plotted).
        std::printf("\n%-9s", "sigma");
        for (const auto& s : series) {
            std::string name = s.name.substr(0, s.name.find(" ("));
            std::printf(" %16s", name.c_str());
        }
        std::printf("\n");
        for (double sigma : o.sigmas) {
            std::printf("%-9.4g", sigma);
            for (const auto& key : keys)
                for (const auto& r : rows)
                    if (r.sigma == sigma && r.method == key.method && r.n == key.n && r.k == key.k) {
                        std::printf(" %16.5g", value(r));
                        break;
                    }
            std::printf("\n");
        }
        std::printf("\nwrote %s and %s in %.1f s\n", csv.c_str(), png.c_str(), total);
    });
}
