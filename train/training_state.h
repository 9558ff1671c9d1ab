// The files a run leaves behind to continue from or sample with:
//   network-snapshot-KIMG.safetensors  the EMA weights with their config (loadable by ./sample);
//   training-state-KIMG.safetensors    network ("net."), EMA ("ema.") and Adam moments ("adam."), with
//                                      the run's options and progress as metadata (format
//                                      "stf-training-state"), everything --resume needs.
// The step alone is the data-order and random-number state (train/training_loop.h), so nothing else is saved.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "nn/optim.h"
#include "nn/precond.h"
#include "nn/safetensors.h"
#include "train/options.h"

namespace stf::train {

// Where a run stands: optimiser steps and ticks done, images seen, and where the current tick began.
struct TrainingProgress {
    int64_t step = 0, tick = 0;
    double cur_nimg = 0, tick_start_nimg = 0;
};

// "PREFIX-KKKKKK.safetensors", KKKKKK the kimg rounded to an integer.
// With ticks under 1 kimg (tick_kimg < 1), names carry kimg to 3 decimals, fixed width so they still sort
// by kimg ("network-snapshot-000000.160.safetensors"): rounded to whole kimg, snapshots of different
// ticks shared a name and overwrote each other.
std::string kimg_file_name(const char* prefix, double kimg, double tick_kimg = 1);

void save_training_state(const std::string& path, const TrainOptions& options, const nn::Precond& net,
                         const nn::Precond& ema, const nn::Adam& adam, const TrainingProgress& progress);

// A training state split back into its parts; the caller owns the networks and optimiser.
struct TrainingState {
    TrainOptions options;
    TrainingProgress progress;
    std::map<std::string, Tensor> net, ema;
    nn::NamedTensors adam;
};
// Throws stf::Error naming the file when it is not a training state (a network snapshot, say).
TrainingState load_training_state(const std::string& path);

}  // namespace stf::train
