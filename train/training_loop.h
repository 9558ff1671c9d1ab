// EDM training with the DSM or STF objective: the loop behind ./train_cifar, kept here so tests can
// drive it in-process (e.g. to check that a resumed run ends bit-exactly where an uninterrupted one does).
#pragma once
#include <array>
#include <functional>
#include <map>
#include <string>

#include "diffusion/loss.h"
#include "train/options.h"
#include "train/sigma_bands.h"

namespace stf::train {

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
// over ranks before the optimiser step (train/distributed.h); rank 0 alone prints and writes.
// Every random number a sample uses (its image, noise level, noise, dropout and augmentation) is keyed
// by (seed, step, the sample's index in the step's global batch), so a step does not depend on how its
// batch is split over ranks and rounds, up to the order of floating-point sums. With STF, a round's
// reference batch is its own training images plus rbatch - batch_gpu images from a second stream,
// keyed by the round's position in the step; `global` scope gathers every rank's reference batch. The
// whole-dataset targets (STF with rbatch 0, kNN) hold every training image on the device once and run over
// it with the round's own images standing in for their rows (diffusion/reference_set.h); kNN's draws are
// keyed like the noise (with augmentation off the set is the dataset, whatever the batch).
//
// snapshot_metrics, when given, is called on rank 0 at every network snapshot with the EMA network (eval
// mode, on the training device) and the snapshot's kimg; the name -> value pairs it returns join that
// tick's stats.jsonl line (train_cifar --metrics fid50k: metrics/snapshot_fid.h). Other ranks wait for
// it in their next collective, within --dist-timeout.
using SnapshotMetrics = std::function<std::map<std::string, double>(const nn::Precond& ema, double kimg)>;
// observe_round, when given, sees every round's loss terms on this rank (on the training device) with
// the step they belong to: the tick statistics are summed on the device (train/sigma_bands.h), and tests
// recompute them on the host from these to check that they agree.
using RoundObserver = std::function<void(int64_t step, const diffusion::LossTerms& terms)>;
TrainSummary training_loop(TrainOptions options, const SnapshotMetrics& snapshot_metrics = {},
                           const RoundObserver& observe_round = {});

}  // namespace stf::train
