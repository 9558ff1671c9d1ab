// ./toy_stf: DSM against STF on a Gaussian mixture whose ideal denoiser E[x|y] is exact
// (experiments/gaussian_mixture.h, experiments/toy_stf.h). Trains a small MLP denoiser with each target for equal
// steps and seeds and reports, per sigma band, its error against the exact denoiser, the variance of the
// loss gradient, and the variance and bias of the training target. Writes toy.csv and three PNG plots.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "report/plot.h"
#include "experiments/toy_stf.h"

using namespace stf;
namespace fs = std::filesystem;

static const char* kUsage = R"(usage: toy_stf [options]

A d-dimensional mixture of K isotropic Gaussians (modes at +-e_i, pairwise >= 1.41 apart, per-mode std 0.1,
weights proportional to 1..K), where the ideal denoiser E[x|y] is exact. For each seed, trains the MLP
denoiser D(y, sigma) = c_skip y + c_out F([c_in y, c_noise]) (EDM preconditioning, sigma_data = the data
std; F: 3 hidden layers of 128 SiLU units) with the DSM target and with the STF target for each reference
size n, for equal steps (fresh mixture samples every step; EDM's noise levels ln sigma ~ N(-1.2, 1.2^2);
Adam, lr 1e-3). Then, per sigma band [0.01,0.1) [0.1,1) [1,10) [10,80] (sigma log-uniform in the band):

  denoiser_mse   ||D(y) - E[x|y]||^2 / d on fresh samples (the trained net against the exact denoiser)
  grad_var       trace of the covariance of the loss gradient w.r.t. the MLP's last-layer weights, across
                 independent mini-batches at the final weights (the method's own target and weights)
  target_var     trace Cov[target | y] / d at fixed y, over reference batches (DSM: the posterior's own)
  target_bias2   ||E[target | y] - E[x|y]||^2 / d, as in training (the sample's own image in the batch);
                 Monte Carlo-debiased, so noise around 0 can be negative
  bias2_no_own   the same for a reference batch of n fresh draws without the sample's own image (a plain
                 self-normalised estimate of E[x|y], biased by O(1/n)); empty for DSM
  final_loss     the training loss averaged over the last 10% of steps

Every number is a mean over seeds, with its standard deviation (over seeds) in the *_std column.
toy.csv columns: method,n,sigma_lo,sigma_hi,seeds,denoiser_mse,denoiser_mse_std,grad_var,grad_var_std,
target_var,target_var_std,target_bias2,target_bias2_std,bias2_no_own,bias2_no_own_std,final_loss,final_loss_std
(method dsm or stf; n 0 for dsm). Plots: toy.png (denoiser_mse), toy_gradvar.png, toy_target.png.

  --dim D          data dimension, 2..64 (default 8)
  --modes K        mixture modes (default 4)
  --steps N        training steps per run (default 2000)
  --batch B        training batch (default 64)
  --rbatch LIST    STF reference sizes, each >= B (default 64,256,1024); DSM is always included
  --seeds S        seeds per method (default 3)
  --samples N      fresh samples per band for denoiser_mse (default 4096)
  --minibatches M  mini-batches per band for grad_var (default 16)
  --draws R        reference batches per point for the target statistics (default 64; 64 points per band)
  --outdir DIR     where toy.csv and the plots go (default toy-runs)
  --device cpu     (the only device: the MLP is tiny)
)";

namespace {

struct Band {
    double lo, hi;
};
const std::vector<Band> kBands = {{0.01, 0.1}, {0.1, 1}, {1, 10}, {10, 80}};

struct Stat {
    std::vector<double> v;
    double mean() const {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? NAN : s / static_cast<double>(v.size());
    }
    double std() const {
        if (v.size() < 2) return 0;
        double m = mean(), s = 0;
        for (double x : v) s += (x - m) * (x - m);
        return std::sqrt(s / static_cast<double>(v.size() - 1));
    }
};

struct Cell {  // one method x band, over seeds
    Stat mse, grad_var, target_var, bias2, bias2_no_own, final_loss;
};

std::string label(int64_t n) { return n == 0 ? "dsm" : "stf n=" + std::to_string(n); }

}  // namespace

int main(int argc, char** argv) {
    return apps::run_program("toy_stf", argc, argv, kUsage, [&](apps::Flags& f) {
        int64_t dim = f.integer("dim", 8), modes = f.integer("modes", 4), steps = f.integer("steps", 2000);
        int64_t batch = f.integer("batch", 64), seeds = f.integer("seeds", 3);
        std::vector<int64_t> rbatch = f.int_list("rbatch", {64, 256, 1024});
        int64_t samples = f.integer("samples", 4096), minibatches = f.integer("minibatches", 16);
        int64_t draws = f.integer("draws", 64);
        std::string outdir = f.str("outdir", "toy-runs");
        std::string device = f.str("device", "cpu");
        f.check_all_used();
        STF_CHECK(dim >= 2 && dim <= 64, "--dim must be in 2..64, got " << dim);
        STF_CHECK(modes >= 1, "--modes must be at least 1, got " << modes);
        STF_CHECK(steps >= 1 && batch >= 1 && seeds >= 1, "--steps, --batch and --seeds must be at least 1");
        STF_CHECK(samples >= 1 && minibatches >= 2 && draws >= 2,
                  "--samples must be >= 1, --minibatches and --draws >= 2");
        for (int64_t n : rbatch)
            STF_CHECK(n >= batch, "--rbatch " << n << " is smaller than --batch " << batch
                                              << " (the reference batch holds the training batch)");
        STF_CHECK(device == "cpu", "--device: only cpu is supported (the MLP is tiny), got '" << device << "'");

        experiments::GaussianMixture mix = experiments::GaussianMixture::make(dim, modes, 1.0, 0.1, 0);
        std::vector<int64_t> methods = {0};
        methods.insert(methods.end(), rbatch.begin(), rbatch.end());
        std::printf("mixture: d %lld, %lld modes, per-mode std %.3g, data std %.4g; %lld steps of batch %lld, %lld seeds\n",
                    (long long)dim, (long long)modes, mix.s, mix.data_std(), (long long)steps, (long long)batch,
                    (long long)seeds);
        std::fflush(stdout);

        std::vector<std::vector<Cell>> cells(methods.size(), std::vector<Cell>(kBands.size()));
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t seed = 0; seed < seeds; ++seed) {
            for (size_t m = 0; m < methods.size(); ++m) {
                auto t1 = std::chrono::steady_clock::now();
                experiments::ToyTrainOptions o;
                o.steps = steps;
                o.batch = batch;
                o.rbatch = methods[m];
                o.seed = static_cast<uint64_t>(seed);
                experiments::ToyTrainResult r = experiments::train_toy(mix, o);
                int64_t tail = std::max<int64_t>(1, steps / 10);
                double fl = 0;
                for (int64_t i = steps - tail; i < steps; ++i) fl += r.losses[i] / static_cast<double>(tail);
                // Measurements draw from a generator of their own, the same for every method of a seed.
                Generator gen(1000003 * (seed + 1));
                for (size_t b = 0; b < kBands.size(); ++b) {
                    Cell& c = cells[m][b];
                    const Band& band = kBands[b];
                    c.final_loss.v.push_back(fl);
                    c.mse.v.push_back(experiments::toy_denoiser_error(*r.net, mix, band.lo, band.hi, samples, gen));
                    c.grad_var.v.push_back(
                        experiments::toy_grad_variance(*r.net, mix, band.lo, band.hi, batch, methods[m], minibatches, gen));
                    int64_t n = methods[m] == 0 ? 1 : methods[m];
                    auto own = experiments::toy_target_stats(mix, band.lo, band.hi, n, true, 64, draws, gen);
                    c.target_var.v.push_back(own.variance);
                    c.bias2.v.push_back(own.bias2);
                    if (methods[m] > 0)
                        c.bias2_no_own.v.push_back(
                            experiments::toy_target_stats(mix, band.lo, band.hi, n, false, 64, draws, gen).bias2);
                }
                double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
                double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                std::printf("seed %lld %-12s final loss %-9.4g mse[0.1,1) %-10.4g (%5.1f s, total %6.1f s)\n",
                            (long long)seed, label(methods[m]).c_str(), fl, cells[m][1].mse.v.back(), sec, total);
                std::fflush(stdout);
            }
        }
        double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        fs::create_directories(outdir);
        std::string csv = (fs::path(outdir) / "toy.csv").string();
        {
            std::ofstream out(csv);
            STF_CHECK(out, "cannot write " << csv);
            out << "method,n,sigma_lo,sigma_hi,seeds,denoiser_mse,denoiser_mse_std,grad_var,grad_var_std,target_var,"
                   "target_var_std,target_bias2,target_bias2_std,bias2_no_own,bias2_no_own_std,final_loss,final_loss_std\n";
            char buf[1024];
            for (size_t m = 0; m < methods.size(); ++m)
                for (size_t b = 0; b < kBands.size(); ++b) {
                    const Cell& c = cells[m][b];
                    std::string no_own = methods[m] == 0 ? std::string(",") : [&] {
                        char t[64];
                        std::snprintf(t, sizeof t, "%.6g,%.6g", c.bias2_no_own.mean(), c.bias2_no_own.std());
                        return std::string(t);
                    }();
                    std::snprintf(buf, sizeof buf, "%s,%lld,%g,%g,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%s,%.6g,%.6g\n",
                                  methods[m] == 0 ? "dsm" : "stf", (long long)methods[m], kBands[b].lo, kBands[b].hi,
                                  (long long)seeds, c.mse.mean(), c.mse.std(), c.grad_var.mean(), c.grad_var.std(),
                                  c.target_var.mean(), c.target_var.std(), c.bias2.mean(), c.bias2.std(),
                                  no_own.c_str(), c.final_loss.mean(), c.final_loss.std());
                    out << buf;
                }
            STF_CHECK(out.good(), "error writing " << csv);
        }

        // Plots: x = log10 of the band's geometric centre, one series per method, log y.
        auto plot = [&](const std::string& name, const std::string& title, const std::string& ylab,
                        const std::function<double(const Cell&)>& value, bool with_no_own) {
            std::vector<report::Series> series;
            for (size_t m = 0; m < methods.size(); ++m) {
                report::Series s;
                s.name = label(methods[m]);
                s.color = report::palette_color(m);
                for (size_t b = 0; b < kBands.size(); ++b) {
                    s.x.push_back(std::log10(std::sqrt(kBands[b].lo * kBands[b].hi)));
                    s.y.push_back(value(cells[m][b]));
                }
                series.push_back(s);
            }
            if (with_no_own)
                for (size_t m = 1; m < methods.size(); ++m) {
                    report::Series s;
                    s.name = "bias2 no own n=" + std::to_string(methods[m]);
                    s.color = report::palette_color(methods.size() + m);
                    for (size_t b = 0; b < kBands.size(); ++b) {
                        s.x.push_back(std::log10(std::sqrt(kBands[b].lo * kBands[b].hi)));
                        s.y.push_back(cells[m][b].bias2_no_own.mean());
                    }
                    series.push_back(s);
                }
            report::PlotOptions po;
            po.title = title;
            po.x_label = "log10 sigma (band centre)";
            po.y_label = ylab;
            po.log_y = true;
            po.line_width = 2;
            report::write_line_plot_png((fs::path(outdir) / name).string(), series, po);
        };
        plot("toy.png", "trained denoiser vs exact E[x|y], mean over seeds", "mse per dim (log)",
             [](const Cell& c) { return c.mse.mean(); }, false);
        plot("toy_gradvar.png", "trace Cov of last-layer gradient", "grad var (log)",
             [](const Cell& c) { return c.grad_var.mean(); }, false);
        plot("toy_target.png", "target variance and bias2 without own image, per dim", "per dim (log)",
             [](const Cell& c) { return c.target_var.mean(); }, true);

        // The table.
        std::printf("\nper sigma band, mean +- std over %lld seeds\n", (long long)seeds);
        std::printf("%-12s %-11s %-21s %-21s %-21s %-21s %-21s\n", "method", "band", "denoiser_mse", "grad_var",
                    "target_var", "target_bias2", "bias2_no_own");
        for (size_t m = 0; m < methods.size(); ++m)
            for (size_t b = 0; b < kBands.size(); ++b) {
                const Cell& c = cells[m][b];
                char band[32], no_own[48] = "-";
                std::snprintf(band, sizeof band, "[%g,%g)", kBands[b].lo, kBands[b].hi);
                if (methods[m] > 0)
                    std::snprintf(no_own, sizeof no_own, "%.3g +- %.2g", c.bias2_no_own.mean(), c.bias2_no_own.std());
                auto pm = [](const Stat& s) {
                    char t[48];
                    std::snprintf(t, sizeof t, "%.3g +- %.2g", s.mean(), s.std());
                    return std::string(t);
                };
                std::printf("%-12s %-11s %-21s %-21s %-21s %-21s %-21s\n", label(methods[m]).c_str(), band,
                            pm(c.mse).c_str(), pm(c.grad_var).c_str(), pm(c.target_var).c_str(), pm(c.bias2).c_str(),
                            no_own);
            }
        std::printf("\nwrote %s, toy.png, toy_gradvar.png and toy_target.png in %s in %.1f s\n", csv.c_str(),
                    outdir.c_str(), total);
    });
}
