// The Stable Target Field target (Xu, Tong & Jaakkola 2023): for a noisy sample y_i at noise level
// sigma_i and a reference batch x_1..x_n, the posterior mean of the clean image under the empirical
// distribution of the reference batch,
//     target_i = sum_j w_ij x_j,   w_ij = softmax_j(-||y_i - x_j||^2 / (2 sigma_i^2)).
#pragma once
#include "tensor/ops.h"

namespace stf::diffusion {

struct StfTarget {
    Tensor target;  // like y
    Tensor ess;     // [b] effective sample size 1 / sum_j w_ij^2: 1 when one image takes all the weight, n at most
};

// y [b, ...], sigma [b], reference [n, ...] with the same trailing shape, all on one device.
// Never materialises b x n x d: the reference batch is streamed in chunks of `chunk` images with an online
// softmax (running row max, running sums), so memory is O(b x chunk + b x d) and n can be a whole dataset.
// Distances come from the differences, not from norms, so small sigmas see no cancellation.
StfTarget stf_target(const Tensor& y, const Tensor& sigma, const Tensor& reference, int64_t chunk = 8192);

}  // namespace stf::diffusion
