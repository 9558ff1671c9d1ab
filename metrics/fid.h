// FID as EDM's fid.py computes it (Heusel et al. 2017): Inception-v3's 2048-d pool features
// (metrics/inception.h) of uint8 images, their mean and covariance in float64 (FeatureAccumulator), and
// the Fréchet distance to reference statistics (metrics/frechet.h). Reference statistics are .npz files
// with mu [2048] and sigma [2048, 2048] in float64, EDM's format (its fid-refs/cifar10-32x32.npz reads
// as is), written by `./fid ref`.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "metrics/frechet.h"
#include "metrics/inception.h"

namespace stf::nn {
class Precond;
}

namespace stf::metrics {

// The Inception statistics of `count` images that pixels(start, n) supplies as [n, C, H, W] values
// 0..255 (any float dtype and device), fed to the network in batches of `batch`. progress(done) after
// each batch.
FeatureStats inception_stats(const InceptionV3& net, int64_t count, int64_t batch,
                             const std::function<Tensor(int64_t start, int64_t n)>& pixels,
                             const std::function<void(int64_t done)>& progress = {});

// EDM's reference format. load_fid_reference checks for mu and sigma of matching sizes and throws
// stf::Error naming the file otherwise.
void save_fid_reference(const std::string& path, const FeatureStats& stats);
FeatureStats load_fid_reference(const std::string& path);

// Generated images [N, C, H, W] in [-1, 1] (float, any device) as the pixel values their PNGs hold
// (data::to_uint8_nhwc: x * 127.5 + 128, clipped, truncated), float32 [N, C, H, W] on the CPU.
Tensor samples_to_pixels(const Tensor& images);

// FID of a diffusion network's samples: images from seeds 0 .. count-1 (the latents ./sample draws for
// those seeds), EDM's deterministic Heun sampler with `steps` steps on the network's device, `batch`
// images at a time, against `reference`. The network should be in eval mode.
double network_fid(const nn::Precond& net, Device device, const InceptionV3& inception, const FeatureStats& reference,
                   int64_t count, int64_t batch, int steps = 18,
                   const std::function<void(int64_t done)>& progress = {});

}  // namespace stf::metrics
