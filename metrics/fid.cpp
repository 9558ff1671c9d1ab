#include "metrics/fid.h"

#include "autograd/node.h"
#include "data/image_io.h"
#include "data/npz.h"
#include "diffusion/sampler.h"
#include "nn/network.h"
#include "tensor/ops.h"

namespace stf::metrics {

FeatureStats inception_stats(const InceptionV3& net, int64_t count, int64_t batch,
                             const std::function<Tensor(int64_t start, int64_t n)>& pixels,
                             const std::function<void(int64_t done)>& progress) {
    STF_CHECK(count >= 2 && batch >= 1, "inception_stats: needs at least 2 images and a positive batch, got "
                                            << count << " images in batches of " << batch);
    FeatureAccumulator acc(InceptionV3::kFeatures);
    for (int64_t start = 0; start < count; start += batch) {
        const int64_t n = std::min(batch, count - start);
        Tensor x = pixels(start, n);
        STF_CHECK(x.ndim() == 4 && x.size(0) == n, "inception_stats: the image source gave " << describe(x) << " for "
                                                                                              << n << " images");
        acc.add(net.features(x));
        if (progress) progress(start + n);
    }
    return acc.finish();
}

void save_fid_reference(const std::string& path, const FeatureStats& s) {
    data::write_npz(path, {{"mu", ops::from_vector(s.mean, {s.dim}, DType::F64)},
                           {"sigma", ops::from_vector(s.cov, {s.dim, s.dim}, DType::F64)}});
}

FeatureStats load_fid_reference(const std::string& path) {
    std::map<std::string, Tensor> a = data::read_npz(path);
    STF_CHECK(a.count("mu") && a.count("sigma"),
              "FID reference '" << path << "' has no 'mu' and 'sigma' arrays (expected EDM's format, as ./fid ref "
                                   "writes)");
    const Tensor &mu = a.at("mu"), &sigma = a.at("sigma");
    STF_CHECK(mu.ndim() == 1 && sigma.ndim() == 2 && sigma.size(0) == mu.size(0) && sigma.size(1) == mu.size(0),
              "FID reference '" << path << "': mu " << shape_str(mu.shape()) << " and sigma " << shape_str(sigma.shape())
                                << " do not match (expected [d] and [d, d])");
    FeatureStats s;
    s.dim = mu.size(0);
    s.count = 0;  // not stored in EDM's format
    s.mean = ops::to(mu, DType::F64).to_vector();
    s.cov = ops::to(sigma, DType::F64).to_vector();
    return s;
}

Tensor samples_to_pixels(const Tensor& images) {
    STF_CHECK(images.ndim() == 4, "samples_to_pixels: expected images [N, C, H, W], got " << describe(images));
    const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    std::vector<uint8_t> nhwc = data::to_uint8_nhwc(images);
    std::vector<double> values(nhwc.begin(), nhwc.end());
    return ops::contiguous(ops::permute(ops::from_vector(values, {n, h, w, c}), {0, 3, 1, 2}));
}

double network_fid(const nn::Precond& net, Device device, const InceptionV3& inception, const FeatureStats& reference,
                   int64_t count, int64_t batch, int steps, const std::function<void(int64_t done)>& progress) {
    STF_CHECK(reference.dim == InceptionV3::kFeatures,
              "network_fid: reference statistics of dimension " << reference.dim << ", expected "
                                                                << InceptionV3::kFeatures);
    diffusion::SamplerOptions so;
    so.num_steps = steps;
    const nn::SongUNetConfig& u = nn::config_of(net).unet;
    const Shape image{u.in_channels, u.img_resolution, u.img_resolution};
    diffusion::Denoiser denoise = [&](const Tensor& x, double sigma) {
        NoGradGuard no_grad;
        Tensor xd = ops::to(ops::to(x, DType::F32), device);
        Tensor s = ops::full({x.size(0)}, sigma, DType::F32, device);
        return ops::to(ops::to(net.forward(xd, s), Device::cpu()), DType::F64);
    };
    auto pixels = [&](int64_t start, int64_t n) {
        std::vector<Tensor> latents;
        for (int64_t seed = start; seed < start + n; ++seed) {  // as ./sample --seeds draws them
            Generator g(static_cast<uint64_t>(seed));
            latents.push_back(ops::unsqueeze(ops::randn(image, g, DType::F64), 0));
        }
        return samples_to_pixels(diffusion::edm_sample(denoise, ops::cat(latents, 0), so));
    };
    return frechet_distance(inception_stats(inception, count, batch, pixels, progress), reference);
}

}  // namespace stf::metrics
