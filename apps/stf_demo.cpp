// A small demo of the framework core until the training app exists: fits a two-layer network with
// convolutions, group norm and SiLU to a fixed random target, printing the loss as it falls.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "autograd/functions.h"
#include "cuda/runtime.h"

using namespace stf;

int main(int argc, char** argv) {
    Device device = Device::cpu();
    int steps = 200;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--device" && i + 1 < argc) device = Device::parse(argv[++i]);
        else if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--device cpu|cuda] [--steps N]\n", argv[0]);
            return 2;
        }
    }
    if (device.is_cuda() && !cuda::available()) {
        std::fprintf(stderr, "stf_demo: --device cuda asked for, but %s\n",
                     cuda::built_with_cuda() ? "no CUDA device is available" : "stf was built without CUDA");
        return 1;
    }
    Generator gen(0);
    auto param = [&](Shape shape, double scale) {
        Tensor t = ops::randn(shape, gen, DType::F32, device);
        ops::unary_(UnaryOp::MulScalar, t, scale);
        return t.set_requires_grad(true);
    };
    Tensor x = ops::randn({8, 4, 16, 16}, gen, DType::F32, device);
    Tensor target = ops::randn({8, 4, 16, 16}, gen, DType::F32, device);
    Tensor w1 = param({32, 4, 3, 3}, 0.2), b1 = param({32}, 0.0), g1 = ops::ones({32}, DType::F32, device);
    Tensor w2 = param({4, 32, 3, 3}, 0.05), b2 = param({4}, 0.0);
    g1.set_requires_grad(true);
    std::vector<Tensor> params{w1, b1, g1, w2, b2};
    const double lr = 0.05;
    auto start = std::chrono::steady_clock::now();
    std::printf("stf demo: conv -> group_norm -> silu -> conv, fit to a random target on %s\n", device.str().c_str());
    for (int step = 0; step <= steps; ++step) {
        Tensor h = silu(group_norm(conv2d(x, w1, b1, 1, 1), 8, g1, Tensor(), 1e-6));
        Tensor loss = mse_loss(conv2d(h, w2, b2, 1, 1), target);
        for (Tensor& p : params) p.set_grad(Tensor());
        backward(loss);
        {
            NoGradGuard no_grad;
            for (Tensor& p : params) ops::binary_(BinaryOp::AddScaled, p, p.grad(), -lr);
        }
        if (step % 20 == 0) std::printf("step %4d  loss %.6f\n", step, loss.item());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("done: %d steps in %.2f s\n", steps, secs);
    return 0;
}
