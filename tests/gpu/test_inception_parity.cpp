// The FID feature network on CUDA against the CPU (metrics/inception.h), TF32 off: the per-axis-padded
// convolution, and the whole Inception-v3 on seeded random weights at 32x32 (resize to 299 included),
// in both input conventions. The network is 48 convolutions deep along its longest path, so float32
// summation-order differences grow; the features must agree to 1e-4 relative (stated, as the CPU twin
// matches pytorch-fid's float64 features to that tolerance in tests/metrics/test_inception.cpp).
#include <doctest/doctest.h>

#include "cuda/math_mode.h"
#include "cuda/runtime.h"
#include "metrics/inception.h"
#include "tensor/ops.h"
#include "tests/gpu/parity.h"

using namespace stf;

namespace {
struct Fp32Scope {
    bool saved = cuda::allow_tf32();
    Fp32Scope() { cuda::set_allow_tf32(false); }
    ~Fp32Scope() { cuda::set_allow_tf32(saved); }
};
}  // namespace

TEST_CASE("conv2d_hw: CUDA against the CPU (1x7, 7x1, stride 2)") {
    Fp32Scope fp32;
    Generator gen(5);
    struct Case {
        int64_t r, s;
        int stride, pad_h, pad_w;
    };
    for (Case c : {Case{1, 7, 1, 0, 3}, Case{7, 1, 1, 3, 0}, Case{3, 3, 2, 0, 0}, Case{1, 3, 1, 0, 1}}) {
        Tensor x = ops::randn({3, 16, 17, 17}, gen), w = ops::randn({24, 16, c.r, c.s}, gen);
        Tensor want = ops::conv2d_hw(x, w, c.stride, c.pad_h, c.pad_w);
        Tensor got = ops::conv2d_hw(ops::to(x, Device::cuda()), ops::to(w, Device::cuda()), c.stride, c.pad_h, c.pad_w);
        CHECK(test::rel_error(ops::to(got, Device::cpu()), want) < 1e-5);
    }
}

TEST_CASE("Inception-v3 features: CUDA against the CPU on random weights, both input conventions") {
    Fp32Scope fp32;
    std::vector<double> px(2 * 3 * 32 * 32);
    for (size_t i = 0; i < px.size(); ++i) px[i] = std::floor(256 * metrics::seeded_uniform("image", 2015, int64_t(i)));
    Tensor pixels = ops::from_vector(px, {2, 3, 32, 32});
    metrics::InceptionWeights w = metrics::random_inception_weights(2015);
    for (const char* resize : {"half_pixel", "tf1"}) {
        CAPTURE(resize);
        w.metadata["resize"] = resize;
        metrics::InceptionV3 cpu(w.tensors, w.metadata, Device::cpu(), "random");
        metrics::InceptionV3 gpu(w.tensors, w.metadata, Device::cuda(), "random");
        Tensor want = cpu.features(pixels);
        Tensor got = ops::to(gpu.features(pixels), Device::cpu());
        REQUIRE(got.shape() == want.shape());
        CHECK(test::rel_error(got, want) < 1e-4);
    }
}
