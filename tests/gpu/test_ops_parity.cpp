// Every differentiable op on CUDA against the same op on the CPU: forward values and the gradients of
// every input, float32 on both, relative error ||cuda - cpu|| / ||cpu|| under 1e-5.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "tests/gpu/parity.h"
#include "autograd/functions.h"
#include "cuda/runtime.h"

using namespace stf;
using stf::test::rel_error;

namespace {

using Inputs = std::vector<Tensor>;
using Fn = std::function<Tensor(const Inputs&)>;

struct Run {
    Tensor out;
    std::vector<Tensor> grads;
};

Run run_on(Device device, const Fn& f, const Inputs& inputs, const Tensor& weights) {
    Inputs leaves;
    for (const Tensor& x : inputs) leaves.push_back(ops::clone(ops::to(x, device)).set_requires_grad(true));
    Run r;
    r.out = f(leaves);
    backward(sum(mul(r.out, ops::to(weights, device))));
    for (const Tensor& l : leaves) r.grads.push_back(l.grad());
    return r;
}

// Forward and backward on both devices; weights make every output element count in the gradient.
void parity(const char* name, const Fn& f, const Inputs& inputs, double tol = 1e-5) {
    CAPTURE(name);
    Run probe = run_on(Device::cpu(), f, inputs, ops::ones({}, DType::F32));
    Generator wg(99);
    Tensor weights = ops::rand(probe.out.shape(), wg);
    Run cpu = run_on(Device::cpu(), f, inputs, weights);
    Run gpu = run_on(Device::cuda(), f, inputs, weights);
    CHECK(gpu.out.device().is_cuda());
    CHECK(rel_error(gpu.out, cpu.out) < tol);
    for (size_t i = 0; i < inputs.size(); ++i) {
        CAPTURE(i);
        REQUIRE(cpu.grads[i].defined() == gpu.grads[i].defined());
        if (cpu.grads[i].defined()) CHECK(rel_error(gpu.grads[i], cpu.grads[i]) < tol);
    }
}

Tensor randn(const Shape& s, uint64_t seed) {
    Generator g(seed);
    return ops::randn(s, g);
}
Tensor positive(const Shape& s, uint64_t seed) {
    Generator g(seed);
    return ops::add_scalar(ops::rand(s, g), 0.5);
}

}  // namespace

TEST_CASE("elementwise ops, broadcasting and odd sizes") {
    for (int64_t n : {1, 7, 1000, 4099, 65537}) {
        CAPTURE(n);
        Tensor a = randn({n}, 1), b = randn({n}, 2), p = positive({n}, 3);
        parity("add", [](const Inputs& x) { return add(x[0], x[1]); }, {a, b});
        parity("sub", [](const Inputs& x) { return sub(x[0], x[1]); }, {a, b});
        parity("mul", [](const Inputs& x) { return mul(x[0], x[1]); }, {a, b});
        parity("div", [](const Inputs& x) { return div(x[0], x[1]); }, {a, p});
        parity("maximum", [](const Inputs& x) { return maximum(x[0], x[1]); }, {a, b});
        parity("minimum", [](const Inputs& x) { return minimum(x[0], x[1]); }, {a, b});
        parity("exp", [](const Inputs& x) { return exp(x[0]); }, {a});
        parity("log", [](const Inputs& x) { return log(x[0]); }, {p});
        parity("sqrt", [](const Inputs& x) { return sqrt(x[0]); }, {p});
        parity("rsqrt", [](const Inputs& x) { return rsqrt(x[0]); }, {p});
        parity("square", [](const Inputs& x) { return square(x[0]); }, {a});
        parity("abs", [](const Inputs& x) { return abs(x[0]); }, {a});
        parity("pow", [](const Inputs& x) { return pow(x[0], 1.7); }, {p});
        parity("silu", [](const Inputs& x) { return silu(x[0]); }, {a});
        parity("sigmoid", [](const Inputs& x) { return sigmoid(x[0]); }, {a});
        parity("sin", [](const Inputs& x) { return sin(x[0]); }, {a});
        parity("cos", [](const Inputs& x) { return cos(x[0]); }, {a});
        parity("neg", [](const Inputs& x) { return neg(x[0]); }, {a});
        parity("clamp", [](const Inputs& x) { return clamp(x[0], -0.3, 0.4); }, {a});
        parity("scalars", [](const Inputs& x) { return (1.0 - x[0]) * 2.5 + 3.0 / x[1] - x[0] / 7.0; }, {a, p});
        parity("where", [](const Inputs& x) { return where(ops::binary(BinaryOp::Gt, x[0], x[1]), x[0], x[1] * 3.0); },
               {a, b});
    }
    parity("broadcast add", [](const Inputs& x) { return add(x[0], x[1]); }, {randn({3, 1, 33}, 4), randn({17, 1}, 5)});
    parity("broadcast mul", [](const Inputs& x) { return mul(x[0], x[1]); }, {randn({2, 64, 9, 9}, 6), randn({1, 64, 1, 1}, 7)});
    Tensor inf = ops::from_vector({NAN, INFINITY, -INFINITY, 1.5}, {4});
    CHECK(ops::to(nan_to_num(ops::to(inf, Device::cuda()), 1e5), Device::cpu()).to_vector() ==
          std::vector<double>{0, 1e5, -1e5, 1.5});
}

TEST_CASE("views, joins, reductions") {
    Tensor x = randn({4, 5, 67}, 8);
    parity("transpose+contiguous", [](const Inputs& v) { return contiguous(transpose(v[0], 0, 2)); }, {x});
    parity("permute", [](const Inputs& v) { return permute(v[0], {1, 2, 0}) * 2.0; }, {x});
    parity("narrow", [](const Inputs& v) { return narrow(v[0], 2, 3, 50); }, {x});
    parity("expand", [](const Inputs& v) { return expand(narrow(v[0], 0, 0, 1), {3, 4, 5, 67}); }, {x});
    parity("cat", [](const Inputs& v) { return cat({v[0], v[1]}, 1); }, {x, randn({4, 2, 67}, 9)});
    parity("pad", [](const Inputs& v) { return pad(v[0], {{0, 0}, {1, 2}, {3, 0}}); }, {x});
    parity("sum all", [](const Inputs& v) { return sum(v[0]); }, {x});
    parity("sum rows", [](const Inputs& v) { return sum(v[0], {2}); }, {x});
    parity("sum middle", [](const Inputs& v) { return sum(v[0], {1}); }, {x});
    parity("sum non-adjacent", [](const Inputs& v) { return sum(v[0], {0, 2}, true); }, {x});
    parity("mean", [](const Inputs& v) { return mean(v[0], {0, 1}); }, {x});
    parity("max", [](const Inputs& v) { return max(v[0], {2}); }, {x});
    parity("big sum", [](const Inputs& v) { return sum(v[0], {1}); }, {randn({3, 300000}, 10)});
}

TEST_CASE("matmul and linear") {
    parity("matmul", [](const Inputs& v) { return matmul(v[0], v[1]); }, {randn({33, 65}, 11), randn({65, 17}, 12)});
    parity("matmul tt", [](const Inputs& v) { return matmul(v[0], v[1], true, true); },
           {randn({65, 33}, 13), randn({17, 65}, 14)});
    parity("bmm", [](const Inputs& v) { return matmul(v[0], v[1], true, false); },
           {randn({4, 64, 256}, 15), randn({4, 64, 256}, 16)});
    parity("linear", [](const Inputs& v) { return linear(v[0], v[1], v[2]); },
           {randn({8, 128}, 17), randn({512, 128}, 18), randn({512}, 19)});
}

TEST_CASE("self-attention at DDPM++'s 16x16 shape") {
    parity("self_attention", [](const Inputs& v) { return self_attention(v[0], 1); }, {randn({2, 192, 16, 16}, 65)});
    parity("self_attention 2 heads", [](const Inputs& v) { return self_attention(v[0], 2); }, {randn({3, 24, 5, 7}, 66)});
}

TEST_CASE("convolutions as EDM's U-Net uses them") {
    parity("conv 3x3", [](const Inputs& v) { return conv2d(v[0], v[1], v[2], 1, 1); },
           {randn({2, 32, 16, 16}, 20), randn({64, 32, 3, 3}, 21), randn({64}, 22)});
    parity("conv 1x1", [](const Inputs& v) { return conv2d(v[0], v[1], v[2], 1, 0); },
           {randn({2, 64, 8, 8}, 23), randn({96, 64, 1, 1}, 24), randn({96}, 25)});
    parity("conv down 2x2 depthwise", [](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), 2, 0, 16); },
           {randn({2, 16, 16, 16}, 26), randn({16, 1, 2, 2}, 27)});
    parity("conv down 4x4 depthwise", [](const Inputs& v) { return conv2d(v[0], v[1], Tensor(), 2, 1, 16); },
           {randn({2, 16, 16, 16}, 28), randn({16, 1, 4, 4}, 29)});
    parity("conv_transpose up", [](const Inputs& v) { return conv_transpose2d(v[0], v[1], Tensor(), 2, 1, 16); },
           {randn({2, 16, 8, 8}, 30), randn({16, 1, 4, 4}, 31)});
    parity("conv odd", [](const Inputs& v) { return conv2d(v[0], v[1], v[2], 2, 1, 1); },
           {randn({3, 3, 17, 11}, 32), randn({5, 3, 3, 3}, 33), randn({5}, 34)});
}

TEST_CASE("group norm, softmax, losses") {
    parity("group_norm", [](const Inputs& v) { return group_norm(v[0], 32, v[1], v[2], 1e-6); },
           {ops::add_scalar(randn({2, 128, 16, 16}, 35), 3.0), positive({128}, 36), randn({128}, 37)});
    parity("group_norm small", [](const Inputs& v) { return group_norm(v[0], 3, v[1], v[2], 1e-5); },
           {randn({3, 6, 5, 7}, 38), positive({6}, 39), randn({6}, 40)});
    parity("group_norm_silu", [](const Inputs& v) { return group_norm_silu(v[0], 32, v[1], v[2], 1e-6); },
           {ops::add_scalar(randn({2, 128, 16, 16}, 44), 1.0), positive({128}, 45), randn({128}, 46)});
    // With the [n, c] offset of EDM's blocks: the cached kernels (16x16) and the general ones (5x7).
    parity("group_norm_silu offset", [](const Inputs& v) { return group_norm_silu(v[0], 32, v[1], v[2], 1e-6, v[3]); },
           {randn({2, 128, 16, 16}, 48), positive({128}, 49), randn({128}, 50), randn({2, 128}, 51)});
    parity("group_norm_silu offset odd", [](const Inputs& v) { return group_norm_silu(v[0], 3, v[1], v[2], 1e-5, v[3]); },
           {randn({3, 6, 5, 7}, 52), positive({6}, 53), randn({6}, 54), randn({3, 6}, 55)});
    parity("group_norm_silu_dropout", [](const Inputs& v) {
               Generator g(17);  // the same stream on both devices
               g.key_rows(3, 0);
               return group_norm_silu_dropout(v[0], 32, v[1], v[2], 1e-6, v[3], 0.13, true, g);
           },
           {randn({2, 128, 16, 16}, 61), positive({128}, 62), randn({128}, 63), randn({2, 128}, 64)});
    parity("scaled_residual", [](const Inputs& v) { return scaled_residual(v[0], v[1], v[2], 0.7071); },
           {randn({2, 64, 8, 8}, 56), randn({2, 64, 8, 8}, 57), randn({64}, 58)});
    parity("scaled_residual odd", [](const Inputs& v) { return scaled_residual(v[0], v[1], Tensor(), 2.0); },
           {randn({3, 5, 7, 3}, 59), randn({3, 5, 7, 3}, 60)});
    parity("softmax", [](const Inputs& v) { return softmax(v[0], -1); }, {ops::mul_scalar(randn({37, 1030}, 41), 10.0)});
    parity("softmax dim 1", [](const Inputs& v) { return softmax(v[0], 1); }, {randn({4, 256, 3}, 42)});
    parity("log_softmax", [](const Inputs& v) { return log_softmax(v[0], -1); }, {randn({5, 4099}, 43)});
    parity("mse", [](const Inputs& v) { return mse_loss(v[0], v[1]); }, {randn({4, 3, 8, 8}, 44), randn({4, 3, 8, 8}, 45)});
    parity("per-sample squared error", [](const Inputs& v) { return squared_error_per_sample(v[0], v[1]); },
           {randn({4, 3, 8, 8}, 46), randn({4, 3, 8, 8}, 47)});
}

TEST_CASE("random streams agree across devices") {
    for (int64_t n : {1, 5, 4099, 100003}) {
        CAPTURE(n);
        Generator c1(5), g1(5);
        CHECK(ops::rand({n}, c1).to_vector() == ops::rand({n}, g1, DType::F32, Device::cuda()).to_vector());
        std::vector<double> zc = ops::randn({n}, c1).to_vector(), zg = ops::randn({n}, g1, DType::F32, Device::cuda()).to_vector();
        double worst = 0;
        for (size_t i = 0; i < zc.size(); ++i) worst = std::max(worst, std::abs(zc[i] - zg[i]));
        CHECK(worst < 1e-5);
        CHECK(ops::bernoulli({n}, 0.3, c1).to_vector() ==
              ops::bernoulli({n}, 0.3, g1, DType::F32, Device::cuda()).to_vector());
    }
    Generator dc(8), dg(8);
    Tensor x = ops::ones({1000});
    CHECK(dropout(x, 0.13, true, dc).to_vector() == dropout(ops::to(x, Device::cuda()), 0.13, true, dg).to_vector());
}

TEST_CASE("bf16 storage round trip matches the CPU conversion") {
    Tensor x = ops::mul_scalar(randn({4099}, 48), 100.0);
    Tensor cpu = ops::to(x, DType::BF16);
    Tensor gpu = ops::to(ops::to(x, Device::cuda()), DType::BF16);
    CHECK(gpu.to_vector() == cpu.to_vector());
    CHECK(ops::to(gpu, DType::F32).to_vector() == cpu.to_vector());
}

TEST_CASE("tensors on the device reuse cached memory") {
    cuda::synchronize();
    size_t before = cuda::allocator_stats().backend_allocs;
    for (int i = 0; i < 10; ++i) {
        Tensor t = ops::zeros({1000, 1000}, DType::F32, Device::cuda());
        CHECK(t.numel() == 1000000);
    }
    CHECK(cuda::allocator_stats().backend_allocs <= before + 1);
    CHECK(cuda::allocator_stats().peak_allocated >= 4000000);
}

TEST_CASE("multi-tensor Adam and EMA: bit for bit with the CPU, and a tensor listed twice updated twice") {
    auto on = [](const Tensor& t, Device d) { return ops::contiguous(ops::to(t, d)); };
    std::vector<Tensor> p_cpu{randn({70000}, 67), randn({3, 5}, 68)}, g_cpu{randn({70000}, 69), randn({3, 5}, 70)};
    for (Tensor& g : g_cpu) g = ops::mul_scalar(g, 1e-3);
    auto zeros_like_all = [](const std::vector<Tensor>& ts) {
        std::vector<Tensor> out;
        for (const Tensor& t : ts) out.push_back(ops::zeros_like(t));
        return out;
    };
    // The second parameter listed twice: two Adam steps on it, one after the other, as on the CPU.
    std::vector<Tensor> p_gpu{on(p_cpu[0], Device::cuda()), on(p_cpu[1], Device::cuda())};
    std::vector<Tensor> g_gpu{on(g_cpu[0], Device::cuda()), on(g_cpu[1], Device::cuda())};
    std::vector<Tensor> m_cpu = zeros_like_all(p_cpu), v_cpu = zeros_like_all(p_cpu);
    std::vector<Tensor> m_gpu = zeros_like_all(p_gpu), v_gpu = zeros_like_all(p_gpu);
    const ops::AdamStep step{1e-3, 0.9, 0.999, 1e-8, 1};
    ops::adam_update_many_({p_cpu[0], p_cpu[1], p_cpu[1]}, {g_cpu[0], g_cpu[1], g_cpu[1]}, {m_cpu[0], m_cpu[1], m_cpu[1]},
                           {v_cpu[0], v_cpu[1], v_cpu[1]}, step);
    ops::adam_update_many_({p_gpu[0], p_gpu[1], p_gpu[1]}, {g_gpu[0], g_gpu[1], g_gpu[1]}, {m_gpu[0], m_gpu[1], m_gpu[1]},
                           {v_gpu[0], v_gpu[1], v_gpu[1]}, step);
    for (size_t i = 0; i < 2; ++i) {
        CHECK(p_gpu[i].to_vector() == p_cpu[i].to_vector());
        CHECK(m_gpu[i].to_vector() == m_cpu[i].to_vector());
        CHECK(v_gpu[i].to_vector() == v_cpu[i].to_vector());
    }
    // Without the duplicate: the multi-tensor launch itself.
    ops::adam_update_many_(p_cpu, g_cpu, m_cpu, v_cpu, step);
    ops::adam_update_many_(p_gpu, g_gpu, m_gpu, v_gpu, step);
    for (size_t i = 0; i < 2; ++i) CHECK(p_gpu[i].to_vector() == p_cpu[i].to_vector());
    std::vector<Tensor> e_cpu{randn({70000}, 71), randn({3, 5}, 72)};
    std::vector<Tensor> e_gpu{on(e_cpu[0], Device::cuda()), on(e_cpu[1], Device::cuda())};
    ops::ema_update_many_(e_cpu, p_cpu, 0.999);
    ops::ema_update_many_(e_gpu, p_gpu, 0.999);
    for (size_t i = 0; i < 2; ++i) CHECK(e_gpu[i].to_vector() == e_cpu[i].to_vector());
}
