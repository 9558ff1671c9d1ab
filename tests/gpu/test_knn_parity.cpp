// The whole-dataset targets, CUDA vs CPU: STF over a reference set (the batch standing in for its dataset
// rows) and the nearest-neighbour target, up to training size (Fashion-MNIST's 60,000 images padded to 32x32).
//
// The kNN target's draws depend on which references are the k nearest and on the proposal's probabilities,
// which the host computes from the distances. Pixels and noise on a grid of 1/8 make every squared distance
// exact on both devices (each kernel's float partial sums stay exact; the double totals round once), so both
// take the same k, the same proposal and the same draws; only the final weighted sums differ in rounding.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "diffusion/knn_target.h"
#include "diffusion/stf_target.h"
#include "tests/gpu/parity.h"

using namespace stf;
using stf::test::rel_error;

namespace {

// Values on a grid of 1/8 (float64 on the CPU; moved and converted where needed).
Tensor on_grid(const Tensor& t) { return ops::mul_scalar(ops::unary(UnaryOp::Clamp, ops::mul_scalar(t, 8.0), -64, 64), 0.125); }

struct Problem {
    diffusion::ReferenceSet set;
    Tensor y, sigma;
};

Problem problem(int64_t b, int64_t n, int64_t d, bool augmented, bool grid) {
    Generator gen(n + b);
    Tensor rest = ops::add_scalar(ops::mul_scalar(ops::rand({n, d}, gen), 2.0), -1.0);
    std::vector<int64_t> rows;
    std::vector<Tensor> picked;
    for (int64_t i = 0; i < b; ++i) {
        rows.push_back((i * 7919 + 3) % n);
        Tensor x = ops::narrow(rest, 0, rows.back(), 1);
        picked.push_back(augmented ? ops::mul_scalar(x, -1.0) : x);
    }
    std::vector<double> sig(b);
    for (int64_t i = 0; i < b; ++i) sig[i] = 0.02 * std::pow(2000.0, static_cast<double>(i) / std::max<int64_t>(b - 1, 1));
    Tensor sigma = ops::from_vector(sig, {b});
    Tensor lead = ops::cat(picked, 0);
    Tensor y = ops::add(lead, ops::mul(ops::randn({b, d}, gen), ops::reshape(sigma, {b, 1})));
    if (grid) {
        rest = ops::to(on_grid(ops::to(rest, DType::F64)), DType::F32);
        lead = ops::to(on_grid(ops::to(lead, DType::F64)), DType::F32);
        y = ops::to(on_grid(ops::to(y, DType::F64)), DType::F32);
        // the batch images stand in for their rows: with augmentation off they are those rows, on the grid too
        if (!augmented) {
            std::vector<Tensor> again;
            for (int64_t r : rows) again.push_back(ops::narrow(rest, 0, r, 1));
            lead = ops::cat(again, 0);
        }
    }
    return {{lead, rest, rows}, y, sigma};
}

Problem to_cuda(const Problem& p) {
    return {{ops::to(p.set.lead, Device::cuda()), ops::to(p.set.rest, Device::cuda()), p.set.rows},
            ops::to(p.y, Device::cuda()), ops::to(p.sigma, Device::cuda())};
}

}  // namespace

TEST_CASE("STF over a reference set, CUDA vs CPU: augmentation on and off, streamed chunks") {
    struct Case {
        int64_t b, n, d, chunk;
        bool augmented;
    };
    for (Case c : {Case{16, 3000, 784, 1000, false}, Case{8, 5000, 3072, 65536, true}}) {
        CAPTURE(c.n);
        Problem cpu = problem(c.b, c.n, c.d, c.augmented, false), gpu = to_cuda(cpu);
        diffusion::StfTarget a = diffusion::stf_target(cpu.y, cpu.sigma, cpu.set, c.chunk);
        diffusion::StfTarget g = diffusion::stf_target(gpu.y, gpu.sigma, gpu.set, c.chunk);
        CHECK(g.target.device().is_cuda());
        CHECK(rel_error(g.target, a.target) < 1e-5);
        CHECK(rel_error(g.ess, a.ess) < 1e-4);
    }
}

TEST_CASE("kNN target, CUDA vs CPU: the same neighbours and draws, up to Fashion-MNIST's training size") {
    struct Case {
        int64_t b, n, d, k, draws, chunk;
        bool augmented;
    };
    for (Case c : {Case{8, 2000, 64, 50, 32, 300, true}, Case{32, 60000, 1024, 2048, 256, 65536, false}}) {
        CAPTURE(c.n);
        Problem cpu = problem(c.b, c.n, c.d, c.augmented, true), gpu = to_cuda(cpu);
        Generator g_cpu(5), g_gpu(5);
        diffusion::KnnTarget a = diffusion::knn_target(cpu.y, cpu.sigma, cpu.set, c.k, c.draws, g_cpu, c.chunk);
        diffusion::KnnTarget g = diffusion::knn_target(gpu.y, gpu.sigma, gpu.set, c.k, c.draws, g_gpu, c.chunk);
        CHECK(g.target.device().is_cuda());
        CHECK(rel_error(g.target, a.target) < 1e-5);
        CHECK(rel_error(g.ess, a.ess) < 1e-4);
    }
}
