// Mixed precision on CUDA against the CPU's emulation (tensor/ops.h: float arithmetic, bf16 rounding):
// cuDNN's bf16 convolutions in every form the network uses, scaled_residual with bf16 inputs, and the
// full DDPM++ network with set_activation_dtype(BF16). The two devices round different float sums to
// bf16, so values may differ by one bf16 unit (2^-8 relative) per element; the tolerances allow that and
// nothing like a wrong index or a missing term, which give errors of order 1.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "nn/network.h"
#include "tensor/ops.h"
#include "tests/gpu/parity.h"

using namespace stf;
using stf::test::rel_error;

namespace {
Tensor bf16_randn(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::to(ops::randn(shape, g), DType::BF16);
}
Tensor on_gpu(const Tensor& t) { return ops::to(t, Device::cuda()); }
}  // namespace

TEST_CASE("bf16 conv2d, its data and weight gradients: cuDNN vs the CPU emulation") {
    struct Case {
        const char* name;
        Shape x, w;
        int stride, padding, groups;
    };
    const Case cases[] = {
        {"3x3, 64 -> 64 channels at 16x16", {4, 64, 16, 16}, {64, 64, 3, 3}, 1, 1, 1},
        {"1x1, 32 -> 96 (qkv, skip)", {4, 32, 8, 8}, {96, 32, 1, 1}, 1, 0, 1},
        {"3x3, 3 -> 32 at 32x32", {2, 3, 32, 32}, {32, 3, 3, 3}, 1, 1, 1},
        {"2x2 depthwise stride 2 (FIR down-sampling)", {4, 32, 16, 16}, {32, 1, 2, 2}, 2, 0, 32},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        Tensor x = bf16_randn(c.x, 1), w = bf16_randn(c.w, 2);
        Tensor y = ops::conv2d(x, w, c.stride, c.padding, c.groups);
        Tensor yg = ops::conv2d(on_gpu(x), on_gpu(w), c.stride, c.padding, c.groups);
        CHECK(yg.dtype() == DType::BF16);
        const double fwd = rel_error(ops::to(yg, DType::F32), ops::to(y, DType::F32));
        Tensor dy = bf16_randn(y.shape(), 3);
        Tensor dx = ops::conv2d_backward_data(dy, w, c.x, c.stride, c.padding, c.groups);
        Tensor dxg = ops::conv2d_backward_data(on_gpu(dy), on_gpu(w), c.x, c.stride, c.padding, c.groups);
        Tensor dw = ops::conv2d_backward_weight(x, dy, c.w, c.stride, c.padding, c.groups);
        Tensor dwg = ops::conv2d_backward_weight(on_gpu(x), on_gpu(dy), c.w, c.stride, c.padding, c.groups);
        const double bd = rel_error(ops::to(dxg, DType::F32), ops::to(dx, DType::F32));
        const double bw = rel_error(ops::to(dwg, DType::F32), ops::to(dw, DType::F32));
        std::printf("bf16 conv %s: forward %.2e, data grad %.2e, weight grad %.2e\n", c.name, fwd, bd, bw);
        CHECK(fwd < 4e-3);
        CHECK(bd < 4e-3);
        CHECK(bw < 4e-3);
    }
}

TEST_CASE("scaled_residual with bf16 inputs: CUDA and CPU agree bit for bit") {
    Generator g(4);
    Tensor bias = ops::randn({16}, g);
    for (bool odd : {false, true}) {  // inner % 4 == 0 takes the vector kernel, 7x7 the general one
        CAPTURE(odd);
        const Shape shape = odd ? Shape{4, 16, 7, 7} : Shape{4, 16, 8, 8};
        Tensor a = bf16_randn(shape, 5), bb = bf16_randn(shape, 6), bf = ops::to(bf16_randn(shape, 7), DType::F32);
        CHECK(rel_error(ops::scaled_residual(on_gpu(a), on_gpu(bf), on_gpu(bias), 0.7),
                        ops::scaled_residual(a, bf, bias, 0.7)) == 0.0);
        CHECK(rel_error(ops::scaled_residual(on_gpu(a), on_gpu(bb), Tensor(), 0.7),
                        ops::scaled_residual(a, bb, Tensor(), 0.7)) == 0.0);
    }
}

TEST_CASE("DDPM++ in bf16 mixed precision, batch 2: CUDA vs the CPU emulation, and vs float32") {
    struct Result {
        Tensor out, x_grad;
        std::vector<Tensor> grads;
    };
    auto run = [](Device device, DType activations) {
        nn::NetworkConfig c = nn::NetworkConfig::preset("ddpmpp");
        c.unet.augment_dim = 9;
        c.unet.dropout = 0.13;
        Generator init(0);
        std::shared_ptr<nn::Precond> net = nn::make_network(c, init);
        net->to(device);
        net->set_activation_dtype(activations);
        net->train();
        Generator data(1);
        Tensor x = ops::to(ops::randn({2, 3, 32, 32}, data), device).set_requires_grad(true);
        Tensor sigma = ops::to(ops::from_vector({0.3, 4.0}, {2}), device);
        Tensor aug = ops::to(ops::mul_scalar(ops::randn({2, 9}, data), 0.5), device);
        Tensor weights = ops::to(ops::rand({2, 3, 32, 32}, data), device);
        Generator dropout_gen(2);
        Result r;
        r.out = net->forward(x, sigma, Tensor(), aug, dropout_gen);
        backward(sum(mul(r.out, weights)));
        r.x_grad = x.grad();
        for (const Tensor& p : net->parameters()) {
            REQUIRE(p.grad().defined());
            CHECK(p.grad().dtype() == DType::F32);
            r.grads.push_back(ops::reshape(p.grad(), {-1}));
        }
        return r;
    };
    Result cpu = run(Device::cpu(), DType::BF16), gpu = run(Device::cuda(), DType::BF16);
    Result gpu32 = run(Device::cuda(), DType::F32);
    const double out = rel_error(gpu.out, cpu.out), xg = rel_error(gpu.x_grad, cpu.x_grad);
    const double grads = rel_error(ops::cat(gpu.grads, 0), ops::cat(cpu.grads, 0));
    const double out32 = rel_error(gpu.out, gpu32.out), grads32 = rel_error(ops::cat(gpu.grads, 0), ops::cat(gpu32.grads, 0));
    std::printf("DDPM++ bf16 CUDA vs CPU emulation: output %.2e, input grad %.2e, all parameter grads %.2e; "
                "vs CUDA float32: output %.2e, parameter grads %.2e\n", out, xg, grads, out32, grads32);
    CHECK(out < 2e-2);
    CHECK(xg < 5e-2);
    CHECK(grads < 5e-2);
    CHECK(out32 < 2e-2);
    CHECK(grads32 < 5e-2);
    CHECK(out32 > 1e-6);  // the bf16 paths ran
}
