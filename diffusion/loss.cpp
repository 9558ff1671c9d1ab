#include "diffusion/loss.h"

#include <cmath>

#include "diffusion/stf_target.h"

namespace stf::diffusion {

NoiseLevels sample_noise_levels(const LossOptions& o, int64_t b, Generator& gen, Device device) {
    std::vector<double> sigma(b), weight(b);
    if (o.kind == "edm") {
        std::vector<double> z = ops::randn({b}, gen, DType::F64).to_vector();
        for (int64_t i = 0; i < b; ++i) {
            sigma[i] = std::exp(z[i] * o.P_std + o.P_mean);
            double s2 = sigma[i] * sigma[i], sd2 = o.sigma_data * o.sigma_data;
            weight[i] = (s2 + sd2) / (s2 * sd2);
        }
    } else if (o.kind == "vp") {
        std::vector<double> u = ops::rand({b}, gen, DType::F64).to_vector();
        for (int64_t i = 0; i < b; ++i) {
            double t = 1 + u[i] * (o.epsilon_t - 1);
            sigma[i] = std::sqrt(std::exp(0.5 * o.beta_d * t * t + o.beta_min * t) - 1);
            weight[i] = 1 / (sigma[i] * sigma[i]);
        }
    } else if (o.kind == "ve") {
        std::vector<double> u = ops::rand({b}, gen, DType::F64).to_vector();
        for (int64_t i = 0; i < b; ++i) {
            sigma[i] = o.sigma_min * std::pow(o.sigma_max / o.sigma_min, u[i]);
            weight[i] = 1 / (sigma[i] * sigma[i]);
        }
    } else {
        throw Error("loss: unknown kind '" + o.kind + "' (expected edm, vp or ve)");
    }
    return {ops::from_vector(sigma, {b}, DType::F32, device), ops::from_vector(weight, {b}, DType::F32, device)};
}

namespace {

// The loss of one batch with the target `target_of` computes from the noisy images and their noise levels
// (filling the target and, for STF and kNN, the effective sample sizes): noise levels, noise, target, network.
template <class TargetOf>
LossTerms loss_with(const nn::Precond& net, const LossBatch& batch, const LossOptions& o, Generator& gen,
                    Generator& dropout_gen, TargetOf&& target_of) {
    const Tensor& images = batch.images;
    STF_CHECK(images.ndim() == 4, "diffusion_loss: expected images [b, c, h, w], got " << describe(images));
    int64_t b = images.size(0);
    const NoiseLevels levels =
        batch.levels.sigma.defined() ? batch.levels : sample_noise_levels(o, b, gen, images.device());
    STF_CHECK(levels.sigma.numel() == b && levels.weight.numel() == b,
              "diffusion_loss: " << b << " images but noise levels " << describe(levels.sigma) << " and weights "
                                 << describe(levels.weight));
    Tensor per_image_sigma = ops::reshape(levels.sigma, {b, 1, 1, 1});
    Tensor noise = ops::mul(ops::randn(images.shape(), gen, images.dtype(), images.device()), per_image_sigma);
    Tensor noisy = ops::add(images, noise);
    LossTerms out;
    out.sigma = levels.sigma;
    Tensor target = images;
    target_of(noisy, levels.sigma, target, out.ess);
    Tensor denoised = net.forward(noisy, levels.sigma, batch.class_labels, batch.augment_labels, dropout_gen);
    out.loss = mul(squared_error_per_sample(denoised, target), levels.weight);
    return out;
}

}  // namespace

LossTerms diffusion_loss(const nn::Precond& net, const LossBatch& batch, const LossOptions& o, Generator& gen,
                         Generator& dropout_gen) {
    return loss_with(net, batch, o, gen, dropout_gen,
                     [&](const Tensor& noisy, const Tensor& sigma, Tensor& target, Tensor& ess) {
                         if (!batch.reference.defined()) return;
                         const int64_t b = batch.images.size(0);
                         STF_CHECK(batch.reference.ndim() == 4 && batch.reference.size(0) >= b,
                                   "diffusion_loss: the reference batch " << describe(batch.reference)
                                                                          << " must hold at least the " << b
                                                                          << " training images");
                         StfTarget stf = batch.groups.empty()
                                             ? stf_target(noisy, sigma, batch.reference, o.stf_chunk)
                                             : stf_target_grouped(noisy, sigma, batch.reference, batch.groups,
                                                                  o.stf_chunk);
                         target = stf.target;
                         ess = stf.ess;
                     });
}

LossTerms diffusion_loss(const nn::Precond& net, const Tensor& images, const Tensor& augment_labels,
                         const Tensor& reference, const LossOptions& o, Generator& gen, Generator& dropout_gen) {
    return diffusion_loss(net, LossBatch{images, Tensor(), augment_labels, reference, {}, {}}, o, gen, dropout_gen);
}

LossTerms diffusion_loss(const nn::Precond& net, const LossBatch& batch, const DatasetTarget& spec,
                         const LossOptions& o, Generator& gen, Generator& dropout_gen) {
    STF_CHECK(spec.kind == "stf" || spec.kind == "knn",
              "diffusion_loss: unknown dataset target '" << spec.kind << "' (expected stf or knn)");
    STF_CHECK(spec.references.lead.defined() && spec.references.lead.same(batch.images),
              "diffusion_loss: the reference set must lead with the training images");
    return loss_with(net, batch, o, gen, dropout_gen,
                     [&](const Tensor& noisy, const Tensor& sigma, Tensor& target, Tensor& ess) {
                         if (spec.kind == "stf") {
                             StfTarget t = stf_target(noisy, sigma, spec.references, o.stf_chunk);
                             target = t.target;
                             ess = t.ess;
                         } else {
                             KnnTarget t = knn_target(noisy, sigma, spec.references, spec.k, spec.n, gen, o.stf_chunk);
                             target = t.target;
                             ess = t.ess;
                         }
                     });
}

LossTerms diffusion_loss(const nn::Precond& net, const Tensor& images, const Tensor& augment_labels,
                         const DatasetTarget& spec, const LossOptions& o, Generator& gen, Generator& dropout_gen) {
    return diffusion_loss(net, LossBatch{images, Tensor(), augment_labels, Tensor(), {}, {}}, spec, o, gen, dropout_gen);
}

}  // namespace stf::diffusion
