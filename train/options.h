// Everything a training run is started with: what train_cifar's flags set, what training_options.json
// and a training state's metadata store (as JSON), and the small CPU preset of the README's first run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/network.h"

namespace stf::train {

struct TrainOptions {
    std::string data;                  // dataset path (data/dataset.h)
    std::string outdir = "training-runs";  // where the run's files go (train/run_dir.h picks a run directory in it)
    std::string desc;                  // appended to the run directory's name
    bool nosubdir = false;             // write into outdir itself instead of a new NNNNN-<description> directory
    int64_t max_images = 0;            // use only the first N images (0: all)
    int64_t pad_to = 32;               // pad smaller images to this square size; larger ones keep theirs (0: no padding)
    bool xflip = false;                // EDM's dataset x-flips: the dataset doubled with mirrored images
    // Class-conditional: the dataset's labels, one-hot, go to the network (net.unet.label_dim classes; its
    // label_dropout is --label-dropout), and with STF each image's references are of its own class.
    bool cond = false;
    nn::NetworkConfig net = nn::NetworkConfig::preset("ddpmpp");
    // The training target (diffusion/loss.h): dsm (the clean image), stf (Stable Target Field over a reference
    // batch of rbatch images, or over the whole dataset when rbatch is kWholeDataset) or knn (the
    // nearest-neighbour estimator over the whole dataset: knn_k neighbours, rbatch draws per sample).
    std::string target = "dsm";
    int64_t rbatch = 1024;             // STF: reference batch size (per round and rank; 0: all); kNN: draws
    int64_t knn_k = 2048;              // kNN: neighbours that get their exact posterior weight in the proposal
    std::string rbatch_scope = "local";  // local: each round's own references; global: all ranks' gathered
    int64_t batch = 512;               // images per optimiser step, over all ranks
    int64_t batch_gpu = 0;             // images per forward/backward round on one rank (0: batch / ranks)
    double duration_mimg = 200;        // training length in millions of images
    double lr = 1e-3;
    double lr_rampup_mimg = 10;
    double ema_mimg = 0.5;             // EMA half-life
    double ema_rampup = 0.05;          // half-life at most this ratio of images seen (<= 0: off)
    double augment = 0.12;             // augmentation probability (0: off)
    uint64_t seed = 0;
    double tick_kimg = 50;             // progress line every tick
    int64_t snap_ticks = 50;           // network snapshot every N ticks (0: only at the end)
    int64_t dump_ticks = 500;          // training state every N ticks (0: only at the end)
    std::string device = "cuda";
    std::string precision = "fp32";   // fp32 (TF32 off), tf32 (CUDA) or bf16 mixed precision (bench_train's --mode)
    std::string resume;                // training-state-*.safetensors to continue from (train/run_dir.h: or a run
                                       // directory, or "auto")
    std::string transfer;              // network snapshot whose weights start the run (fresh Adam; EMA = weights)
    // on: the step runs as CUDA graphs, captured at the second step and replayed (train/graph_step.h);
    // on the CPU the same graph-ready step runs eagerly. Not saved: it does not change the results.
    std::string cuda_graph = "off";
    bool progress_bar = true;
    double dist_timeout = 600;         // seconds a collective waits for the other ranks before failing
    // Which options the user set (flattened to_json() keys such as "/lr" or "/net/num_blocks"), so that
    // --resume can refuse those that differ from the state's instead of silently ignoring them. Not saved.
    std::vector<std::string> explicitly_set;

    static constexpr int64_t kWholeDataset = 0;  // rbatch with --target stf: every training image
    // True when the target's references are the whole dataset (STF with --rbatch all, kNN).
    bool whole_dataset_target() const { return target == "knn" || (target == "stf" && rbatch == kWholeDataset); }

    std::string to_json() const;
    static TrainOptions from_json(const std::string& json);
    // train_cifar --preset small: a DDPM++ of 1.3M parameters (32 channels, [1, 2, 2], one block per
    // resolution, dropout 0.1) on Fashion-MNIST padded to 32x32, on the CPU, DSM (STF-ready: reference batch
    // 256), 225 steps of 32 images, written straight into training-runs/small (nosubdir). ./stf_compare's
    // presets start from it too.
    static TrainOptions small();
};

}  // namespace stf::train
