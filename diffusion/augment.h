// EDM's non-leaking augmentation pipeline (Karras et al. 2022, training/augment.py; after Karras et
// al. 2020, "Training generative adversarial networks with limited data"): random flips, 90-degree
// rotations, integer translations, then scaling, rotation, anisotropic scaling and fractional
// translation by resampling, then colour transforms. Every transform an image received is reported in
// its augmentation labels, which the network takes as conditioning (augment_dim), so it can learn
// the clean distribution and be sampled with labels zero.
//
// Each enabled transform (multiplier > 0) applies to an image with probability multiplier * p, and
// draws its random numbers in EDM's order whether or not it applies: all draws are made on the CPU
// from the generator given (ops::rand / ops::randn, one generator offset each), so one generator
// state gives the same augmentation on CPU and CUDA. Per-image matrices are composed on the host in
// double; the images are transformed on their own device (cuda/augment.cu, tensor/cpu/augment.cpp).
//
// Labels, in this order, for each enabled transform (w the drawn parameter, 0 where it did not apply):
//   xflip: w in {0, 1}            yflip: w in {0, 1}
//   rotate_int: [w in {1, 2}, w in {2, 3}] for w quarter turns
//   translate_int: [tx / (W * max), ty / (H * max)] in whole pixels
//   scale: w (log2 scale / scale_std)    rotate_frac: [cos w - 1, sin w]
//   aniso: [w cos r, w sin r]             translate_frac: [wx, wy] (in units of translate_frac_std)
//   brightness: w    contrast: w    lumaflip: w in {0, 1}    hue: [cos w - 1, sin w]    saturation: w
//
// One deliberate difference from EDM: EDM resamples the whole batch whenever a geometric transform is
// enabled, even when no image drew one; this pipeline skips the resampling (and the colour transform)
// when every image's matrix is exactly the identity, so with p = 0 the images come back unchanged,
// bit for bit. When any image is transformed, all go through the resampling as in EDM; an identity
// warp then reproduces an image to float rounding (sym6 is an orthonormal wavelet filter).
#pragma once
#include <cstdint>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace stf::diffusion {

// EDM's AugmentPipe arguments, names and defaults. All transforms are off by default (multiplier 0).
struct AugmentOptions {
    double p = 1;  // overall multiplier for every transform's probability

    // Pixel blitting (exact).
    double xflip = 0;                // x-flip
    double yflip = 0;                // y-flip
    double rotate_int = 0;           // rotation by a whole number of quarter turns (square images)
    double translate_int = 0;        // integer translation, reflecting at the borders
    double translate_int_max = 0.125;  // its range, as a fraction of the image size

    // Geometric transformations (resampled).
    double scale = 0;                // isotropic scaling
    double rotate_frac = 0;          // arbitrary rotation
    double aniso = 0;                // anisotropic scaling
    double translate_frac = 0;       // fractional translation
    double scale_std = 0.2;          // log2 standard deviation of isotropic scaling
    double rotate_frac_max = 1;      // rotation range, 1 = full circle
    double aniso_std = 0.2;          // log2 standard deviation of anisotropic scaling
    double aniso_rotate_prob = 0.5;  // probability of scaling along a randomly rotated frame
    double translate_frac_std = 0.125;  // standard deviation of the translation, as a fraction of the size

    // Colour transformations (RGB or single-channel images).
    double brightness = 0;
    double contrast = 0;
    double lumaflip = 0;
    double hue = 0;
    double saturation = 0;
    double brightness_std = 0.2;     // standard deviation of the brightness offset
    double contrast_std = 0.5;       // log2 standard deviation of contrast
    double hue_max = 1;              // hue rotation range, 1 = full circle
    double saturation_std = 1;       // log2 standard deviation of saturation

    // EDM's CIFAR-10 setting (train.py --augment): x-flips always possible (multiplier 1e8, so half
    // of all images are mirrored whatever p is), y-flip, scaling, rotation, anisotropy and fractional
    // translation with probability p. 9 labels.
    static AugmentOptions cifar10(double p = 0.12);
};

class AugmentPipe {
public:
    explicit AugmentPipe(AugmentOptions o);

    struct Result {
        Tensor images;  // [n, c, h, w] float32, a new tensor on the input's device
        Tensor labels;  // [n, label_dim()] float32 on the input's device
    };
    // images [n, c, h, w] float32 on the CPU or CUDA. Throws stf::Error on a wrong shape or dtype,
    // on rotate_int with non-square images and on colour transforms with other than 1 or 3 channels.
    Result apply(const Tensor& images, Generator& gen) const;

    int64_t label_dim() const;  // 9 for cifar10()
    const AugmentOptions& options() const { return o_; }

private:
    AugmentOptions o_;
};

}  // namespace stf::diffusion
