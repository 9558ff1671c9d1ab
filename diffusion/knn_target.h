// The nearest-neighbour target (Niedoba et al., ICML 2024, "Nearest Neighbour Score Estimators for Diffusion
// Generative Models"), the estimator that followed STF: a self-normalised importance-sampling estimate of the
// posterior mean E[x | y] over a whole reference set, whose proposal gives the k references nearest to the
// noisy sample their exact posterior weight and every other reference a flat floor.
//
// For a noisy sample y at noise level sigma and references x_1..x_N (diffusion/reference_set.h: the training
// batch, then the dataset less the batch's rows), with logits l_j = -||y - x_j||^2 / (2 sigma^2), so that the
// posterior under the set's empirical distribution is p_j = e^{l_j} / sum_i e^{l_i}:
//  - K is the set of the k references nearest to y (equal distances by column), l_(k) = min_{j in K} l_j
//    the k-th nearest one's logit.
//  - The proposal is q_j ∝ e^{max(l_j, l_(k))}: the posterior's own weight on K, the k-th nearest one's on
//    every other reference (which is no nearer, so that weight bounds its own from above). As a mixture,
//        q = pi U + (1 - pi) Q_K,   pi = N e^{l_(k)} / Z,   Z = sum_{j in K} e^{l_j} + (N - k) e^{l_(k)},
//    U uniform over all N references, Q_K(j) ∝ e^{l_j} - e^{l_(k)} on K.
//  - n draws j_1..j_n from q. Draw r takes two uniforms (u_r, u'_r) in [0, 1): when u_r < pi it is the set's
//    column floor(u'_r N) (a dataset row, or the batch image standing in for it), else the first neighbour,
//    nearest first, at which the cumulative sum of Q_K exceeds u'_r.
//  - The target is the self-normalised estimate
//        T = sum_r v_r x_{j_r} / sum_r v_r,   v_r = p_{j_r} / q_{j_r} ∝ e^{min(0, l_{j_r} - l_(k))},
//    i.e. 1 for a draw in K and e^{l_j - l_(k)} < 1 for any other. Repeated draws add up: the weight of a
//    reference drawn c_j times is c_j v_j, and the effective sample size reported is
//    (sum_j c_j v_j)^2 / sum_j (c_j v_j)^2 over the distinct references drawn.
// This is the estimator of the authors' code (plai-group/knn-score, KNNDenoiser: the same proposal with
// duplicate draws merged into counts and weights c_j p_j / q_j normalised by a softmax), there with an
// approximate index (FAISS) for K, here exact from the streamed distance kernel and a per-row top-k kernel.
//
// Limits. k = N makes q the posterior itself: every v is 1 and T is the mean of n posterior draws. At small
// sigma the nearest reference (the sample's own image) takes all of q and T is that image, as with DSM. As n
// grows T tends to E[x | y]; for finite n it is biased (self-normalised importance sampling), unlike STF with
// the sample's own image in its reference batch, whose mean given y is E[x | y] exactly.
//
// Cost: one streamed distance pass over the whole set (the cost of STF with --rbatch all) with a top-k per
// chunk; the proposal and the draws on the host (n per sample); then the drawn references' weights as one
// more streamed softmax over the kept distances (recomputed when b x set size exceeds kKnnKeepDistances).
#pragma once
#include <vector>

#include "diffusion/reference_set.h"
#include "diffusion/stf_target.h"  // kDefaultStfChunk

namespace stf::diffusion {

// The paper's defaults (plai-group/knn-score's train.py: --k 2048 --ref-size 256).
constexpr int64_t kDefaultKnnK = 2048;
constexpr int64_t kDefaultKnnDraws = 256;
// Distances kept between the two passes when b x columns is at most this (256 MB in float32).
constexpr int64_t kKnnKeepDistances = int64_t{1} << 26;

struct KnnTarget {
    Tensor target;  // like y
    Tensor ess;     // [b]: effective sample size of the weights over the distinct references drawn
};

// y [b, ...] and sigma [b] on the reference set's device; 1 <= k <= reference.size(), n >= 1. The draws
// take 2n uniforms per sample from gen (ops::rand on the CPU, [b, 2n] in float64: with a row-keyed
// generator each sample has its own stream, tensor/random.h). The first pass's distances are kept for the
// second when b x reference.columns() <= keep_distances, else computed again.
KnnTarget knn_target(const Tensor& y, const Tensor& sigma, const ReferenceSet& reference, int64_t k, int64_t n,
                     Generator& gen, int64_t chunk = kDefaultStfChunk, int64_t keep_distances = kKnnKeepDistances);

// One sample's proposal, from the logits of its k nearest references, nearest first (non-increasing), and
// the set's size N (k <= N): the uniform component's mass pi and Q_K's cumulative sums (the last is 1;
// empty when pi is 1, i.e. when all k logits are equal).
struct KnnProposal {
    double uniform_mass = 1;
    std::vector<double> neighbour_cdf;
};
KnnProposal knn_proposal(const std::vector<double>& nearest_logits, int64_t set_size);
// Draw (u, u2): i >= 0 for the set's column i (the uniform component), or -1 - m for the m-th nearest
// neighbour (m from 0).
int64_t knn_draw(const KnnProposal& q, double u, double u2, int64_t set_size);

}  // namespace stf::diffusion
