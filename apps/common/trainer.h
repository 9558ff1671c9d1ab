// EDM training with the DSM or STF objective: the loop behind ./train_cifar, kept here so tests can
// drive it in-process (e.g. to check that a resumed run ends bit-exactly where an uninterrupted one does).
#pragma once
#include <array>
#include <functional>
#include <string>

#include "apps/common/dataset.h"
#include "diffusion/loss.h"
#include "nn/network.h"

namespace stf::apps {

struct TrainOptions {
    std::string data;                  // dataset path (apps/common/dataset.h)
    std::string outdir = "training-runs";
    int64_t max_images = 0;            // use only the first N images (0: all)
    int64_t pad_to = 32;               // pad smaller images to this square size (0: keep their size)
    nn::NetworkConfig net = nn::NetworkConfig::preset("ddpmpp");
    bool stf = false;                  // STF target instead of DSM
    int64_t rbatch = 1024;             // reference batch size with STF (per round and rank)
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
    std::string resume;                // training-state-*.safetensors to continue from
    bool progress_bar = true;
    double dist_timeout = 600;         // seconds a collective waits for the other ranks before failing

    std::string to_json() const;
    static TrainOptions from_json(const std::string& json);
    // train_cifar --preset small: a DDPM++ of 1.3M parameters (32 channels, [1, 2, 2], one block per
    // resolution, dropout 0.1) on Fashion-MNIST padded to 32x32, on the CPU, STF-ready (reference batch
    // 256), 225 steps of 32 images. ./stf_compare's presets start from it too.
    static TrainOptions small();
};

// The noise-level bands of stats.jsonl's "loss_bands" and "ess" entries, in order.
inline constexpr std::array<const char*, 4> kSigmaBandNames = {"sigma<0.2", "0.2<=sigma<1", "1<=sigma<5", "sigma>=5"};

struct TrainSummary {
    int64_t steps = 0;
    double kimg = 0;
    double last_loss = 0;
    std::string snapshot;  // path of the last network snapshot
    std::string state;     // path of the last training state
};

// Runs training to the end of `duration_mimg`, printing a line per tick to stdout and writing
// log.txt, stats.jsonl, loss.png, network-snapshot-*.safetensors and training-state-*.safetensors.
// Throws stf::Error on bad options, data or a diverged (non-finite) loss.
//
// Started by mpirun, each rank trains on its share of every step's batch and gradients are summed
// over ranks before the optimiser step (apps/common/distributed.h); rank 0 alone prints and writes.
// Every random number a sample uses (its image, noise level, noise, dropout and augmentation) is keyed
// by (seed, step, the sample's index in the step's global batch), so a step does not depend on how its
// batch is split over ranks and rounds, up to the order of floating-point sums. With STF, a round's
// reference batch is its own training images plus rbatch - batch_gpu images from a second stream,
// keyed by the round's position in the step; `global` scope gathers every rank's reference batch.
TrainSummary train(TrainOptions options);

}  // namespace stf::apps
