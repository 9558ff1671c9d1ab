// The training losses of EDM (Karras et al. 2022, training/loss.py): EDM, VP and VE noise-level
// distributions and weights, with the denoising score matching target (the clean image) or the Stable
// Target Field target (the posterior mean over a reference batch, diffusion/stf_target.h).
#pragma once
#include <string>

#include "diffusion/knn_target.h"
#include "diffusion/stf_target.h"  // kDefaultStfChunk
#include "nn/precond.h"

namespace stf::diffusion {

struct LossOptions {
    std::string kind = "edm";                     // edm, vp or ve (match the network's preconditioning)
    double P_mean = -1.2, P_std = 1.2, sigma_data = 0.5;  // EDM: ln sigma ~ N(P_mean, P_std^2)
    double beta_d = 19.9, beta_min = 0.1, epsilon_t = 1e-5;  // VP: t ~ U(epsilon_t, 1)
    double sigma_min = 0.02, sigma_max = 100;     // VE: ln sigma ~ U(ln sigma_min, ln sigma_max)
    int64_t stf_chunk = kDefaultStfChunk;         // reference images per chunk of the STF softmax
};

struct NoiseLevels {
    Tensor sigma;   // [b]
    Tensor weight;  // [b] lambda(sigma)
};
// Draws one noise level per image and its loss weight (EDM: (s^2+sd^2)/(s sd)^2; VP and VE: 1/s^2).
NoiseLevels sample_noise_levels(const LossOptions& o, int64_t b, Generator& gen, Device device);

struct LossTerms {
    Tensor loss;   // [b] weighted squared error summed over each image's pixels (differentiable)
    Tensor sigma;  // [b]
    Tensor ess;    // [b] effective sample size of the STF or kNN weights (undefined for DSM)
};

// What one round of training feeds the loss.
struct LossBatch {
    Tensor images;          // [b, c, h, w]: the (augmented) training batch
    Tensor class_labels;    // [b, label_dim] one-hot (all zeros: unconditional), or undefined
    Tensor augment_labels;  // [b, 9], or undefined
    // The STF reference batch [n, c, h, w]; undefined selects DSM. Without groups it serves every image and
    // reference[:b] == images; with groups (class labels), image groups[g].rows[k] is reference row
    // groups[g].start + k and its softmax runs over its group's block only (stf_target_grouped).
    Tensor reference;
    std::vector<ReferenceGroup> groups;
    // The images' noise levels and weights, drawn beforehand with sample_noise_levels from the generator
    // the loss is given (its first draw); undefined: the loss draws them. A CUDA graph of the loss draws
    // them on the host before each replay (train/graph_step.h): they are computed in double there.
    NoiseLevels levels;
};

LossTerms diffusion_loss(const nn::Precond& net, const LossBatch& batch, const LossOptions& o, Generator& gen,
                         Generator& dropout_gen);
// The unconditional case: one reference batch (or none) for all images.
LossTerms diffusion_loss(const nn::Precond& net, const Tensor& images, const Tensor& augment_labels,
                         const Tensor& reference, const LossOptions& o, Generator& gen, Generator& dropout_gen);

// The targets over a whole dataset (diffusion/reference_set.h; its lead is `images`): "stf", the STF target
// over all of it (train_cifar --rbatch all), or "knn", the nearest-neighbour estimator with k neighbours
// and n draws (diffusion/knn_target.h), whose draws come from `gen` after the noise.
struct DatasetTarget {
    std::string kind = "stf";
    ReferenceSet references;
    int64_t k = kDefaultKnnK, n = kDefaultKnnDraws;
};
// The batch's reference and groups are unused here: the set replaces them.
LossTerms diffusion_loss(const nn::Precond& net, const LossBatch& batch, const DatasetTarget& target,
                         const LossOptions& o, Generator& gen, Generator& dropout_gen);
LossTerms diffusion_loss(const nn::Precond& net, const Tensor& images, const Tensor& augment_labels,
                         const DatasetTarget& target, const LossOptions& o, Generator& gen, Generator& dropout_gen);

}  // namespace stf::diffusion
