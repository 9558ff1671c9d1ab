// EDM's augmentation on CUDA against the CPU: the raw kernels (cuda/augment.cu against
// tensor/cpu/augment.cpp) and the whole pipeline (diffusion/augment.h) with every transform active.
// The random parameters are drawn on the CPU in both runs, so the labels must agree exactly and the
// images to ||cuda - cpu|| / ||cpu|| < 1e-5.
#include <doctest/doctest.h>

// A build without CUDA has no stf::cuda kernels to link against; its GPU suite is main.cpp's skip.
#if !defined(STF_WITH_CUDA) || STF_WITH_CUDA

#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tests/gpu/parity.h"
#include "cuda/augment_math.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "diffusion/augment.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"

using namespace stf;
using stf::test::rel_error;
using namespace stf::diffusion;

namespace {

Tensor random_images(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g);
}

// A CUDA tensor whose every byte is 0xFF (NaN as float32), so an element a kernel misses shows.
Tensor poisoned_cuda(const Shape& shape) {
    Tensor t = ops::empty(shape, DType::F32, Device::cuda());
    std::vector<unsigned char> ff(static_cast<size_t>(t.numel()) * sizeof(float), 0xFF);
    cuda::copy_host_to_device(t.raw_data(), ff.data(), ff.size());
    return t;
}

AugmentOptions everything(double p) {
    AugmentOptions o;
    o.p = p;
    o.xflip = o.yflip = o.rotate_int = o.translate_int = 1;
    o.scale = o.rotate_frac = o.aniso = o.translate_frac = 1;
    o.brightness = o.contrast = o.lumaflip = o.hue = o.saturation = 1;
    return o;
}

// Random matrices in EDM's range: rotation, scale and anisotropy, and a translation, per image.
std::vector<float> random_matrices(int64_t n, uint64_t seed) {
    Generator g(seed);
    const std::vector<double> u = ops::rand({n, 5}, g).to_vector();
    std::vector<float> m;
    for (int64_t i = 0; i < n; ++i) {
        const double* r = &u[5 * i];
        const double t = (2 * r[0] - 1) * 3.14159, s = std::exp2(0.6 * (r[1] - 0.5)), a = std::exp2(0.4 * (r[2] - 0.5));
        const double tx = 6 * (r[3] - 0.5), ty = 6 * (r[4] - 0.5);
        const double v[9] = {std::cos(t) * s * a, -std::sin(t) * s / a, tx, std::sin(t) * s * a, std::cos(t) * s / a,
                             ty, 0, 0, 1};
        m.insert(m.end(), v, v + 9);
    }
    return m;
}

}  // namespace

TEST_CASE("augment kernels: CUDA geometric and blit against the CPU twins") {
    const std::vector<std::array<int64_t, 4>> shapes = {{5, 3, 32, 32}, {3, 2, 7, 13}, {2, 1, 64, 48}};
    for (auto [n, c, h, w] : shapes) {
        CAPTURE(n);
        CAPTURE(h);
        CAPTURE(w);
        Tensor x = random_images({n, c, h, w}, 100 + h);
        const std::vector<float> mats = random_matrices(n, 200 + w);
        const augment::Padding pad = augment::padding(n, h, w, mats.data());

        std::vector<float> want(static_cast<size_t>(x.numel()));
        cpu::augment_geometric<float>(n, c, h, w, mats.data(), pad.x0, pad.y0, pad.x1, pad.y1, x.data<float>(),
                                      want.data());
        Tensor xd = ops::to(x, Device::cuda());
        Tensor md = ops::from_vector(std::vector<double>(mats.begin(), mats.end()), {n, 3, 3}, DType::F32,
                                     Device::cuda());
        Tensor yd = poisoned_cuda({n, c, h, w});
        cuda::augment_geometric(n, c, h, w, md.data<float>(), pad.x0, pad.y0, pad.x1, pad.y1, xd.data<float>(),
                                yd.data<float>());
        const double err = rel_error(yd.to_vector(), std::vector<double>(want.begin(), want.end()));
        MESSAGE("geometric kernel " << n << "x" << c << "x" << h << "x" << w << ": relative error " << err);
        CHECK(err < 1e-5);

        // blit: flips, transposes (square only) and translations, bit for bit
        std::vector<int32_t> params;
        for (int64_t i = 0; i < n; ++i)
            params.insert(params.end(), {int32_t(i % 2), int32_t((i / 2) % 2), int32_t(h == w && i % 3 == 1),
                                         int32_t(i * 3 - 4), int32_t(5 - 2 * i)});
        std::vector<float> blit_want(want.size());
        cpu::augment_blit<float>(n, c, h, w, params.data(), x.data<float>(), blit_want.data());
        auto* pd = static_cast<int32_t*>(cuda::malloc(params.size() * sizeof(int32_t)));
        cuda::copy_host_to_device(pd, params.data(), params.size() * sizeof(int32_t));
        Tensor bd = poisoned_cuda({n, c, h, w});
        cuda::augment_blit(n, c, h, w, pd, xd.data<float>(), bd.data<float>());
        const std::vector<double> got = bd.to_vector();
        cuda::free(pd);
        CHECK(got == std::vector<double>(blit_want.begin(), blit_want.end()));
    }
}

TEST_CASE("augment pipeline: CUDA against CPU with every transform active (p = 1)") {
    const AugmentOptions presets[] = {AugmentOptions::cifar10(1.0), everything(1.0)};
    for (const AugmentOptions& o : presets) {
        AugmentPipe pipe(o);
        CAPTURE(pipe.label_dim());
        Tensor x = random_images({5, 3, 32, 32}, 300);
        Generator g_cpu(301), g_cuda(301);
        auto on_cpu = pipe.apply(x, g_cpu);
        auto on_cuda = pipe.apply(ops::to(x, Device::cuda()), g_cuda);
        CHECK(on_cuda.images.device().is_cuda());
        CHECK(on_cuda.labels.device().is_cuda());
        CHECK(on_cuda.labels.shape() == Shape{5, pipe.label_dim()});
        CHECK(g_cpu.offset() == g_cuda.offset());
        CHECK(on_cuda.labels.to_vector() == on_cpu.labels.to_vector());
        const double err = rel_error(on_cuda.images.to_vector(), on_cpu.images.to_vector());
        MESSAGE("pipeline with " << pipe.label_dim() << " labels: CUDA vs CPU relative error " << err);
        CHECK(err < 1e-5);
        CHECK(rel_error(on_cpu.images.to_vector(), x.to_vector()) > 0.1);  // it did transform them
    }
}

TEST_CASE("augment pipeline: p = 0 on CUDA is the identity, and a timing") {
    AugmentPipe none(AugmentOptions::cifar10(0.0));
    Tensor x = ops::to(random_images({4, 3, 32, 32}, 400), Device::cuda());
    Generator g(401);
    auto r = none.apply(x, g);
    CHECK(r.images.to_vector() == x.to_vector());

    // EDM's CIFAR-10 setting at a training batch of 512 (informational).
    AugmentPipe pipe(AugmentOptions::cifar10(0.12));
    Tensor batch = ops::to(random_images({512, 3, 32, 32}, 402), Device::cuda());
    Generator gb(403);
    pipe.apply(batch, gb);  // warm-up
    cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 10;
    for (int i = 0; i < reps; ++i) pipe.apply(batch, gb);
    cuda::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    MESSAGE("AugmentPipe::apply, CIFAR-10 preset p = 0.12, 512 x 3 x 32 x 32 on CUDA: " << ms << " ms");
}

#endif  // STF_WITH_CUDA
