#include "nn/precond.h"

#include <cmath>

namespace stf::nn {

Precond::Precond(const SongUNetConfig& unet, Generator& gen) {
    model_ = register_module("model", std::make_shared<SongUNet>(unet, gen));
}

Tensor Precond::forward(const Tensor& x, const Tensor& sigma, const Tensor& class_labels, const Tensor& augment_labels,
                        Generator& dropout_gen) const {
    STF_CHECK(x.ndim() == 4 && sigma.numel() == x.size(0),
              "Precond: sigma " << describe(sigma) << " for input " << describe(x) << " (one sigma per image)");
    Tensor s = reshape(sigma, {x.size(0)});
    PrecondCoefficients c = coefficients(s);
    // As EDM's preconditioning: a class-conditional network given no labels sees all-zero labels, its
    // unconditional output (what label dropout trains).
    const int64_t label_dim = model_->config().label_dim;
    const Tensor labels = label_dim > 0 && !class_labels.defined()
                              ? ops::zeros({x.size(0), label_dim}, x.dtype(), x.device())
                              : class_labels;
    Tensor f = model_->forward(mul(c.c_in, x), c.c_noise, labels, augment_labels, dropout_gen);
    return add(mul(c.c_skip, x), mul(c.c_out, f));
}

Tensor Precond::forward(const Tensor& x, const Tensor& sigma) const {
    return forward(x, sigma, Tensor(), Tensor(), default_generator());
}

static Tensor per_image(const Tensor& s) { return reshape(s, {s.size(0), 1, 1, 1}); }

EDMPrecond::EDMPrecond(const SongUNetConfig& unet, double sd, Generator& gen) : Precond(unet, gen), sigma_data(sd) {}

PrecondCoefficients EDMPrecond::coefficients(const Tensor& sigma) const {
    Tensor s = per_image(sigma);
    double sd2 = sigma_data * sigma_data;
    Tensor total = add(square(s), sd2);  // s^2 + sd^2
    return {rdiv(total, sd2), div(mul(s, sigma_data), sqrt(total)), rsqrt(total), mul(log(sigma), 0.25)};
}

VPPrecond::VPPrecond(const SongUNetConfig& unet, Generator& gen, double bd, double bm, double m, double et)
    : Precond(unet, gen), beta_d(bd), beta_min(bm), M(m), epsilon_t(et) {}

double VPPrecond::sigma(double t) const { return std::sqrt(std::exp(0.5 * beta_d * t * t + beta_min * t) - 1); }

double VPPrecond::sigma_inv(double s) const {
    return (std::sqrt(beta_min * beta_min + 2 * beta_d * std::log1p(s * s)) - beta_min) / beta_d;
}

PrecondCoefficients VPPrecond::coefficients(const Tensor& sigma) const {
    Tensor s = per_image(sigma);
    // sigma^-1(s) = (sqrt(beta_min^2 + 2 beta_d ln(1 + s^2)) - beta_min) / beta_d
    Tensor t = mul(add(sqrt(add(mul(log(add(square(sigma), 1.0)), 2 * beta_d), beta_min * beta_min)), -beta_min),
                   1.0 / beta_d);
    return {ops::ones(s.shape(), s.dtype(), s.device()), neg(s), rsqrt(add(square(s), 1.0)), mul(t, M - 1)};
}

VEPrecond::VEPrecond(const SongUNetConfig& unet, Generator& gen) : Precond(unet, gen) {}

PrecondCoefficients VEPrecond::coefficients(const Tensor& sigma) const {
    Tensor s = per_image(sigma);
    return {ops::ones(s.shape(), s.dtype(), s.device()), s, ops::ones(s.shape(), s.dtype(), s.device()),
            log(mul(sigma, 0.5))};
}

}  // namespace stf::nn
