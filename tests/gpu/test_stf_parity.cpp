// The STF target and its distance kernel, CUDA vs CPU, at training sizes and across sigma.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/gpu/parity.h"
#include "diffusion/stf_target.h"

using namespace stf;
using stf::test::rel_error;

TEST_CASE("squared distances, CUDA vs CPU, sizes off the 64 x 64 tile") {
    for (auto [b, n, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 65, 17}, {64, 1024, 3072}, {130, 77, 784}}) {
        CAPTURE(b);
        CAPTURE(n);
        CAPTURE(d);
        Generator gen(b + n + d);
        Tensor y = ops::randn({b, d}, gen), x = ops::randn({n, d}, gen);
        Tensor cpu = ops::sq_distances(y, x);
        Tensor gpu = ops::sq_distances(ops::to(y, Device::cuda()), ops::to(x, Device::cuda()));
        CHECK(rel_error(gpu, cpu) < 1e-5);
    }
}

TEST_CASE("STF target, CUDA vs CPU: training size, streamed large reference, sigma 0.002 to 80") {
    struct Case {
        int64_t b, n, d, chunk;
    };
    for (Case c : {Case{64, 1024, 3072, 8192}, Case{16, 20000, 3072, 4096}, Case{5, 333, 100, 64}}) {
        CAPTURE(c.n);
        Generator gen(c.n);
        Tensor x = ops::add_scalar(ops::mul_scalar(ops::rand({c.n, c.d}, gen), 2.0), -1.0);
        std::vector<double> sig(c.b);
        for (int64_t i = 0; i < c.b; ++i) sig[i] = 0.002 * std::pow(40000.0, static_cast<double>(i) / std::max<int64_t>(c.b - 1, 1));
        Tensor sigma = ops::from_vector(sig, {c.b});
        Tensor y = ops::add(ops::narrow(x, 0, 0, c.b), ops::mul(ops::randn({c.b, c.d}, gen), ops::reshape(sigma, {c.b, 1})));
        auto cpu = diffusion::stf_target(y, sigma, x, c.chunk);
        auto gpu = diffusion::stf_target(ops::to(y, Device::cuda()), ops::to(sigma, Device::cuda()),
                                         ops::to(x, Device::cuda()), c.chunk);
        CHECK(gpu.target.device().is_cuda());
        CHECK(rel_error(gpu.target, cpu.target) < 1e-5);
        CHECK(rel_error(gpu.ess, cpu.ess) < 1e-4);
    }
}
