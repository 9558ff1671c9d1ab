// The training step in the form a CUDA graph can replay (train_cifar --cuda-graph on).
//
// A step issues some 2,300 kernels; at 20-25 us of host time each, the TF32 and bf16 steps at batch 64
// wait on the host, not the GPU (docs/perf.md). A CUDA graph records a round's launches once and replays
// them for the cost of one launch, but a replay reuses the recorded arguments and addresses. So here
// everything that changes from round to round or step to step goes through memory:
//   - the round's batch (images, labels, augmentation labels, reference batch) is copied into tensors
//     allocated at the first round and kept;
//   - the noise levels are drawn on the host in double, as the plain step draws them, and copied in too;
//   - the noise and dropout draws are keyed to a row key in memory (tensor/random.h), set per round;
//   - the gradients stay allocated: begin_step zeroes them in place, and every round adds into them;
//   - Adam's constants and the EMA's beta are staged into memory (nn/optim.h).
// What stays eager: loading and augmenting the batch, the all-reduce over ranks, reading the tick.
//
// With capture on (CUDA), the first step runs eagerly (cuDNN's algorithm search, the allocator's
// blocks), the second step's first round and its optimiser step are captured, and everything after is
// replayed. With capture off the same work runs eagerly: on the CPU that is what --cuda-graph on does,
// and the tests check it equals the plain step bit for bit.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "cuda/runtime.h"
#include "diffusion/loss.h"
#include "nn/optim.h"
#include "train/sigma_bands.h"

namespace stf::train {

class GraphStep {
public:
    struct Parts {
        nn::Precond& net;
        nn::Adam& adam;
        nn::Ema& ema;
        SigmaBandSums& bands;
        diffusion::LossOptions loss;
        double loss_scale;  // each round's summed loss is scaled by this (1 / the global batch)
    };
    GraphStep(Parts parts, Device device, bool capture);

    void begin_step();
    // One round of `step`, its samples numbered from first_sample in the global batch; batch as
    // StepData makes it (augmented; no class groups). The terms stay valid until the next round.
    diffusion::LossTerms round(const diffusion::LossBatch& batch, int64_t step, int64_t first_sample, Generator& noise,
                               Generator& dropout);
    // The optimiser step, after the gradients' all-reduce: the NaN guard, Adam with learning rate lr,
    // the EMA with beta.
    void end_step(double lr, double ema_beta);

    bool capturing() const { return capture_; }
    int64_t replays() const { return replays_; }  // graph launches so far (rounds and optimiser steps)

private:
    void run(cuda::Graph& graph, const std::function<void()>& work);
    void hold(const diffusion::LossBatch& batch, const diffusion::NoiseLevels& levels);

    Parts p_;
    Device device_;
    bool capture_;
    int64_t steps_done_ = 0, replays_ = 0;
    bool held_ = false;  // the round's tensors are allocated
    std::vector<Tensor> params_;
    diffusion::LossBatch fixed_;  // the round's inputs, at fixed addresses
    std::shared_ptr<RowKey> key_;
    diffusion::LossTerms terms_;
    cuda::Graph round_graph_, optimizer_graph_;
};

}  // namespace stf::train
