// Mixed precision (Module::set_activation_dtype(BF16)) on the CPU, where bf16 is emulated with the
// GPU's rounding: UNetBlock variants and a tiny network against their float32 selves with the same
// weights, inputs and dropout masks. bf16 keeps 8 significant bits, so outputs and gradients must agree
// to about 1% (relative L2), must not agree exactly (the bf16 paths ran), and every gradient that
// reaches a parameter or an input is float32.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/network.h"

using namespace stf;
using namespace stf::nn;

namespace {
Tensor randn(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g);
}

double rel_l2(const Tensor& got, const Tensor& want) {
    std::vector<double> g = got.to_vector(), w = want.to_vector();
    REQUIRE(g.size() == w.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < g.size(); ++i) {
        REQUIRE(std::isfinite(g[i]));
        num += (g[i] - w[i]) * (g[i] - w[i]);
        den += w[i] * w[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// The output of a forward pass and the gradients of sum(output * r) with respect to the inputs and
// every parameter.
struct Pass {
    Tensor out;
    std::vector<Tensor> input_grads, param_grads;
};

template <class F> Pass run(Module& m, std::vector<Tensor> inputs, const Tensor& r, F forward) {
    m.zero_grad();
    for (Tensor& t : inputs) t = ops::clone(t).set_requires_grad();
    Tensor out = forward(inputs);
    backward(sum(mul(out, r)));
    Pass p{out, {}, {}};
    for (const Tensor& t : inputs) p.input_grads.push_back(t.grad());
    for (const Tensor& t : m.parameters()) p.param_grads.push_back(t.grad());
    return p;
}

// Mixed against float32: close (output within `tolerance`, each gradient within `grad_tolerance`,
// relative L2), not equal, float32 gradients everywhere.
void compare(const std::string& name, const Pass& mixed, const Pass& full, double tolerance, double grad_tolerance) {
    CAPTURE(name);
    CHECK(mixed.out.dtype() == DType::F32);
    const double out_err = rel_l2(mixed.out, full.out);
    CHECK(out_err < tolerance);
    CHECK(out_err > 1e-6);  // bf16 rounding happened
    for (size_t i = 0; i < full.input_grads.size(); ++i) {
        CAPTURE(i);
        REQUIRE(mixed.input_grads[i].defined());
        CHECK(mixed.input_grads[i].dtype() == DType::F32);
        CHECK(rel_l2(mixed.input_grads[i], full.input_grads[i]) < grad_tolerance);
    }
    REQUIRE(mixed.param_grads.size() == full.param_grads.size());
    for (size_t i = 0; i < full.param_grads.size(); ++i) {
        CAPTURE(i);
        REQUIRE(mixed.param_grads[i].defined());
        CHECK(mixed.param_grads[i].dtype() == DType::F32);
        CHECK(rel_l2(mixed.param_grads[i], full.param_grads[i]) < grad_tolerance);
    }
}

// All parameter gradients as one vector.
Tensor flat(const std::vector<Tensor>& ts) {
    std::vector<Tensor> parts;
    for (const Tensor& t : ts) parts.push_back(ops::reshape(t, {-1}));
    return ops::cat(parts, 0);
}
}  // namespace

TEST_CASE("mixed precision: UNetBlock variants in bf16 agree with float32 to bf16's precision") {
    struct Case {
        std::string name;
        int64_t in, out;
        bool up = false, down = false, attention = false, adaptive_scale = false, resample_proj = true;
    };
    const std::vector<Case> cases = {
        {.name = "plain", .in = 16, .out = 16},
        {.name = "skip convolution (channels change)", .in = 8, .out = 16},
        {.name = "down, resample_proj", .in = 16, .out = 16, .down = true},
        {.name = "up, resample_proj", .in = 16, .out = 8, .up = true},
        {.name = "attention", .in = 16, .out = 16, .attention = true},
        {.name = "adaptive scale", .in = 16, .out = 16, .adaptive_scale = true},
    };
    uint64_t seed = 100;
    for (const Case& c : cases) {
        UNetBlock::Options o;
        o.emb_channels = 12;
        o.up = c.up;
        o.down = c.down;
        o.attention = c.attention;
        o.dropout = 0.1;
        o.skip_scale = std::sqrt(0.5);
        o.resample_proj = c.resample_proj;
        o.adaptive_scale = c.adaptive_scale;
        o.init_zero = o.init;  // conv1 and proj initialised to zero would hide their paths
        Generator gen(seed++);
        UNetBlock block(c.in, c.out, o, gen);
        const int64_t res = 8, res_out = c.down ? 4 : c.up ? 16 : 8;
        Tensor x = randn({3, c.in, res, res}, seed++), emb = randn({3, 12}, seed++);
        Tensor r = randn({3, c.out, res_out, res_out}, seed++);
        auto pass = [&](DType dtype) {
            block.set_activation_dtype(dtype);
            Generator dropout_gen(7);  // the same masks in both passes
            return run(block, {x, emb}, r, [&](const std::vector<Tensor>& v) { return block.forward(v[0], v[1], dropout_gen); });
        };
        Pass full = pass(DType::F32), mixed = pass(DType::BF16);
        compare(c.name, mixed, full, 0.01, 0.03);
    }
}

TEST_CASE("mixed precision: a tiny DDPM++ and NCSN++ in bf16 agree with float32; weights stay float32") {
    for (const char* arch : {"ddpmpp", "ncsnpp"}) {
        NetworkConfig c = NetworkConfig::preset(arch);
        c.unet.model_channels = 16;
        c.unet.channel_mult = {1, 2};
        c.unet.num_blocks = 1;
        c.unet.img_resolution = 8;
        c.unet.attn_resolutions = {4};
        Generator gen(3);
        std::shared_ptr<Precond> net = make_network(c, gen);
        // EDM initialises some output convolutions to zero; small random weights let every path count.
        Generator perturb(4);
        for (Tensor& p : net->parameters()) {
            Tensor noise = ops::mul_scalar(ops::randn(p.shape(), perturb), 0.05);
            ops::binary_(BinaryOp::Add, p, noise);
        }
        Tensor x = randn({2, 3, 8, 8}, 5), sigma = ops::from_vector({0.5, 3.0}, {2});
        Tensor r = randn({2, 3, 8, 8}, 6);
        auto pass = [&](DType dtype) {
            net->set_activation_dtype(dtype);
            Generator dropout_gen(8);
            return run(*net, {x}, r, [&](const std::vector<Tensor>& v) {
                return net->forward(v[0], sigma, Tensor(), Tensor(), dropout_gen);
            });
        };
        Pass full = pass(DType::F32), mixed = pass(DType::BF16);
        // Rounding errors compound through the depth of the backward pass: the encoder's small
        // gradients (its GroupNorm scales, the embedding's layers) come out within a few percent (up to
        // 6% measured), all of them together within 2.2% (a wrong path in a block gives 100%: the
        // block cases above hold each path to 3%).
        compare(arch, mixed, full, 0.01, 0.1);
        CHECK(rel_l2(flat(mixed.param_grads), flat(full.param_grads)) < 0.04);
        for (const Tensor& p : net->parameters()) CHECK(p.dtype() == DType::F32);
    }
}

TEST_CASE("backward adds the bf16 gradients of a tensor used twice in float32") {
    Tensor x = randn({2, 4, 5, 5}, 20), w1 = randn({3, 4, 3, 3}, 21), w2 = randn({3, 4, 3, 3}, 22);
    Tensor r = randn({2, 3, 5, 5}, 23);
    auto grad_of_x = [&](DType dtype) {
        Tensor xl = ops::clone(x).set_requires_grad();
        Tensor xb = to(xl, dtype);  // used by both convolutions: its two gradients meet in the engine
        Tensor y = add(to(conv2d(xb, to(w1, dtype), Tensor(), 1, 1), DType::F32),
                       to(conv2d(xb, to(w2, dtype), Tensor(), 1, 1), DType::F32));
        backward(sum(mul(y, r)));
        return xl.grad();
    };
    Tensor full = grad_of_x(DType::F32), mixed = grad_of_x(DType::BF16);
    CHECK(mixed.dtype() == DType::F32);
    const double err = rel_l2(mixed, full);
    CHECK(err < 0.01);
    CHECK(err > 1e-6);
}
