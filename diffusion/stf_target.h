// The Stable Target Field target (Xu, Tong & Jaakkola 2023): for a noisy sample y_i at noise level
// sigma_i and a reference batch x_1..x_n, the posterior mean of the clean image under the empirical
// distribution of the reference batch,
//     target_i = sum_j w_ij x_j,   w_ij = softmax_j(-||y_i - x_j||^2 / (2 sigma_i^2)).
#pragma once
#include <vector>

#include "diffusion/reference_set.h"
#include "tensor/ops.h"

namespace stf::diffusion {

struct StfTarget {
    Tensor target;  // like y
    Tensor ess;     // [b] effective sample size 1 / sum_j w_ij^2: 1 when one image takes all the weight, n at most
};

// Reference images per chunk by default: CIFAR-10's 50,000 in one pass. On an H100 at b 64, d 3072 and
// n 50,000 chunks of 65,536 took 1.88 ms, of 16,384 2.04 ms and of 8,192 2.61 ms (docs/perf.md, 2026-11-27);
// the chunk's distances take b x chunk floats (16.8 MB at b 64).
constexpr int64_t kDefaultStfChunk = 65536;

// y [b, ...], sigma [b], reference [n, ...] with the same trailing shape, all on one device.
// Never materialises b x n x d: the reference batch is streamed in chunks of `chunk` images with an online
// softmax (running row max, running sums), so memory is O(b x chunk + b x d) and n can be a whole dataset.
// Distances come from the differences, not from norms, so small sigmas see no cancellation.
StfTarget stf_target(const Tensor& y, const Tensor& sigma, const Tensor& reference, int64_t chunk = kDefaultStfChunk);

// Class-conditional STF: the samples at `rows` (indices into y) take their target from the block
// reference[start, start + length) alone, so an image's softmax runs over references of its own class
// (docs/design.md, "Class labels and the STF reference batch").
struct ReferenceGroup {
    std::vector<int64_t> rows;
    int64_t start = 0, length = 0;
};
// The groups must cover every row of y exactly once, each block inside the reference batch and holding at
// least its group's samples. The result is in y's row order.
StfTarget stf_target_grouped(const Tensor& y, const Tensor& sigma, const Tensor& reference,
                             const std::vector<ReferenceGroup>& groups, int64_t chunk = kDefaultStfChunk);

// The same over a reference set (diffusion/reference_set.h): the training batch, then a whole dataset less
// the batch's own rows, streamed in chunks of `chunk` dataset images. With augmentation off the set is the
// dataset and the target is E[x | y] under the dataset's empirical distribution (train_cifar --rbatch all).
StfTarget stf_target(const Tensor& y, const Tensor& sigma, const ReferenceSet& reference,
                     int64_t chunk = kDefaultStfChunk);

}  // namespace stf::diffusion
