// Where a run writes, as EDM's train.py lays runs out: each run in OUTDIR/NNNNN-<description>, NNNNN the
// next free run id in OUTDIR and the description
//     <data>-<cond|uncond>-<arch>-<precond>-gpus<G>-batch<B>-<precision>[-<desc>]
// (<data> the dataset path's file or directory name without extension, as EDM's dataset.name), or OUTDIR
// itself with --nosubdir. Resuming finds a run's newest training state, so a preempted job restarted with
// the same command line and --resume auto continues where it stopped.
#pragma once
#include <string>

#include "train/distributed.h"
#include "train/options.h"

namespace stf::train {

// "cifar10-32x32" for datasets/cifar10-32x32.zip, "fashion-mnist" for /usr/share/datasets/fashion-mnist/.
std::string dataset_name(const std::string& data_path);
// The description above for a run of `ranks` processes.
std::string run_description(const TrainOptions& o, int ranks);
// One more than the largest NNNNN of OUTDIR's subdirectories whose name starts with digits (0 for none).
int next_run_id(const std::string& outdir);
// The training-state-KIMG.safetensors with the largest KIMG in dir; "" when there is none.
std::string newest_training_state(const std::string& dir);

// What train_cifar does before training: sets o.outdir to the run directory and o.resume to a training
// state file or "":
//  - resume a file: kept (the run continues in that file's directory);
//  - resume a directory: its newest training state (an error when it has none);
//  - resume "auto": the newest training state of the run this command would use — OUTDIR with nosubdir,
//    else the OUTDIR/NNNNN-<description> with the largest NNNNN for this description — or, when there is
//    none, a fresh start;
//  - a fresh start: OUTDIR with nosubdir, else a new OUTDIR/NNNNN-<description>.
// Rank 0 looks at the file system and every rank takes its answer.
void choose_run_directory(TrainOptions& o, ProcessGroup& group);

}  // namespace stf::train
