// Preconditioning (EDM Table 1): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), around a SongUNet
// held as child "model" (so tensor names read model.enc...).
#pragma once
#include "nn/song_unet.h"

namespace stf::nn {

struct PrecondCoefficients {
    Tensor c_skip, c_out, c_in, c_noise;  // c_* [n, 1, 1, 1], c_noise [n]
};

class Precond : public Module {
public:
    Precond(const SongUNetConfig& unet, Generator& gen);
    // x [n, c, h, w], sigma [n]; class_labels [n, label_dim] and augment_labels [n, augment_dim] may be undefined
    // (undefined class labels of a conditional network are all zeros, as in EDM).
    Tensor forward(const Tensor& x, const Tensor& sigma, const Tensor& class_labels, const Tensor& augment_labels,
                   Generator& dropout_gen) const;
    Tensor forward(const Tensor& x, const Tensor& sigma) const;  // eval-style call with the default generator
    virtual PrecondCoefficients coefficients(const Tensor& sigma) const = 0;
    virtual std::string kind() const = 0;  // "edm", "vp" or "ve"
    const SongUNet& model() const { return *model_; }

protected:
    std::shared_ptr<SongUNet> model_;
};

// EDM: c_skip = sd^2/(s^2+sd^2), c_out = s sd / sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.
class EDMPrecond : public Precond {
public:
    EDMPrecond(const SongUNetConfig& unet, double sigma_data, Generator& gen);
    PrecondCoefficients coefficients(const Tensor& sigma) const override;
    std::string kind() const override { return "edm"; }
    double sigma_data;
};

// VP (DDPM++ as in Song et al.): c_skip = 1, c_out = -s, c_in = 1/sqrt(s^2+1), c_noise = (M-1) sigma^-1(s).
class VPPrecond : public Precond {
public:
    VPPrecond(const SongUNetConfig& unet, Generator& gen, double beta_d = 19.9, double beta_min = 0.1, double M = 1000,
              double epsilon_t = 1e-5);
    PrecondCoefficients coefficients(const Tensor& sigma) const override;
    std::string kind() const override { return "vp"; }
    double sigma(double t) const;      // sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)
    double sigma_inv(double s) const;  // t(sigma)
    double beta_d, beta_min, M, epsilon_t;
};

// VE (NCSN++ as in Song et al.): c_skip = 1, c_out = s, c_in = 1, c_noise = ln(s/2).
class VEPrecond : public Precond {
public:
    VEPrecond(const SongUNetConfig& unet, Generator& gen);
    PrecondCoefficients coefficients(const Tensor& sigma) const override;
    std::string kind() const override { return "ve"; }
};

}  // namespace stf::nn
