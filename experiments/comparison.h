// Training targets compared on one dataset with the same seeds, data order and image budget: the experiment
// behind ./stf_compare, kept here so tests can run it in-process. The methods are dsm, stf (STF with a
// reference batch of train.rbatch), stf-all (STF over the whole dataset) and knn (the nearest-neighbour
// target, train.knn_k neighbours and train.rbatch draws; diffusion/knn_target.h). Every run goes through
// train::training_loop (train/training_loop.h); each final EMA snapshot draws the same seeds' images with
// EDM's Heun sampler; a classifier trained by this framework on the dataset's labels (metrics/classifier.h)
// turns images into features, and the Fréchet distance of each model's samples to the test set is computed
// on them (metrics/frechet.h).
#pragma once
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "metrics/classifier_training.h"
#include "metrics/frechet.h"
#include "train/training_loop.h"

namespace stf::experiments {

// The noise-level bands of stats.jsonl's "loss_bands" (train/training_loop.h), in order.
inline constexpr const auto& kLossBandNames = stf::train::kSigmaBandNames;

// One training run's stats.jsonl: one entry per tick; NaN where a band had no samples (JSON null).
struct RunStats {
    std::vector<double> kimg, loss, step, img_per_sec;
    std::array<std::vector<double>, 4> band_count, band_mean, band_var, band_ess;  // ess: NaN for DSM
};
// Throws stf::Error naming the file when it is missing or a line is not the JSON the trainer writes.
RunStats read_run_stats(const std::string& stats_jsonl);

struct CompareOptions {
    stf::train::TrainOptions train;  // shared by every run; target, rbatch (stf-all) and outdir are set per run
    std::vector<std::string> targets = {"dsm", "stf", "stf-all", "knn"};  // methods, in the order they run
    std::string test_data;           // "": the test split beside train.data
    int64_t max_test_images = 0;     // 0: the whole test split
    std::string outdir = "compare-runs";
    std::string classifier;          // checkpoint; "": train one into outdir/classifier.safetensors
    metrics::ClassifierTrainOptions classifier_train;  // how, when training one (data, device and seed follow train)
    int64_t samples = 1000;          // images drawn from each model (seeds 0 .. samples-1)
    int heun_steps = 18;
    int64_t sample_batch = 100;
    int64_t grid_images = 64;        // images in each sample grid
    int64_t bootstrap = 50;          // resamples of each model's samples for the FD's spread (0: none)
    // Recompute the FDs with `classifier` from outdir's samples_*.npy and runs' stats.jsonl, without training
    // or sampling (e.g. to score a finished comparison with a better classifier).
    bool rescore = false;
};

// "cpu": DDPM++-small (train_cifar --preset small's network) on Fashion-MNIST on the CPU, about 9 minutes
// on 2 idle cores (plus 8 to train the classifier); "gpu": the same network with a larger budget on
// CUDA. Throws for other names.
CompareOptions compare_preset(const std::string& name);

struct CompareRow {
    std::string method;  // a target of CompareOptions::targets, or "data" (training images: the floor at this N)
    double kimg = 0;
    int64_t steps = 0;
    double final_loss = 0;   // mean loss of the last tick (NaN for data)
    double fd = 0;           // Fréchet distance to the test set on classifier features
    double fd_std = NAN;     // its standard deviation over bootstrap resamples of the samples
    int64_t samples = 0;
    double train_seconds = 0, sample_seconds = 0;
    double img_per_sec = NAN;  // training images per second over the run's ticks after the first (stats.jsonl)
};

struct CompareResult {
    std::vector<CompareRow> rows;  // one per target, then data
    double classifier_accuracy = 0;
    std::string classifier;
};

// FD of `features` [N, D] to `reference`, and the standard deviation of the FD over `resamples` bootstrap
// resamples (N features drawn with replacement, seeded; NaN when resamples is 0). How much the FD moves
// with the particular samples drawn, not the spread over training seeds.
std::pair<double, double> fd_with_bootstrap(const Tensor& features, const metrics::FeatureStats& reference,
                                            int64_t resamples, uint64_t seed);

// The training options of one method of the comparison (a name of CompareOptions::targets). Throws for others.
stf::train::TrainOptions method_options(const CompareOptions& o, const std::string& method);

// Writes under outdir: one run directory per target (<target>/), classifier.safetensors (when trained here),
// results.csv (rewritten after each target, so a comparison stopped part-way keeps what it finished),
// loss_bands.csv, loss.png, loss_bands_var.png, samples_<target>.png and samples_<target>.npy (raw float32
// samples). Prints progress to stdout.
CompareResult run_comparison(const CompareOptions& options);

}  // namespace stf::experiments
