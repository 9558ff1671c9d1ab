// Gradient checks for nn/: every layer, UNetBlock variant and a tiny SongUNet under each
// preconditioning, in float64 on the CPU. The input gradients go through stf::gradcheck (element by
// element); the parameters, which are leaves inside the modules, through a directional check: for each
// parameter tensor p and a random direction v, <dL/dp, v> from one backward against the central
// difference (L(p + eps v) - L(p - eps v)) / (2 eps), with L = sum(f(x) * r) for a fixed random r.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "nn/layers.h"
#include "nn/precond.h"
#include "nn/song_unet.h"

using namespace stf;
using namespace stf::nn;
using Inputs = std::vector<Tensor>;

namespace {

Tensor randn64(const Shape& shape, uint64_t seed, double scale = 1) {
    Generator g(seed);
    return ops::mul_scalar(ops::randn(shape, g, DType::F64), scale);
}

// Converts m to float64 and draws every parameter afresh, so that no gradient is trivially small: EDM
// zero-initialises some convolutions (weight 0 or 1e-5) and every bias, which would leave gradients
// through them at the noise floor. Weights (2-D and up) become N(0, 1 / fan_in); 1-D parameters
// (biases, GroupNorm scales and shifts) get N(0, 0.2^2) added to their initial value.
void prepare(Module& m, uint64_t seed) {
    m.to(DType::F64);
    m.eval();
    NoGradGuard no_grad;
    Generator g(seed);
    for (auto& [name, p] : m.named_parameters()) {
        REQUIRE(p.is_contiguous());
        std::vector<double> noise = ops::randn(p.shape(), g, DType::F64).to_vector();
        double* d = p.data<double>();
        if (p.ndim() >= 2) {
            double fan_in = static_cast<double>(p.numel() / p.size(0));
            for (size_t i = 0; i < noise.size(); ++i) d[i] = noise[i] / std::sqrt(fan_in);
        } else {
            for (size_t i = 0; i < noise.size(); ++i) d[i] += 0.2 * noise[i];
        }
    }
}

struct ParamCheck {
    bool ok = true;
    int checked = 0;
    double max_rel_error = 0;  // |analytic - numeric| / |numeric|, over the parameters
    std::string report;        // one line per failing parameter
};

// The directional check of every parameter of m for L = sum(f() * r). A parameter passes when
// |analytic - numeric| <= rtol * |numeric| + floor, where floor = 1e-9 * sum|f() * r| bounds the
// rounding noise of the difference quotient; a derivative below 100 * floor fails too (the check would
// say nothing). `tamper`, when given, runs between backward and the comparison (to test the check).
ParamCheck check_params(Module& m, const std::function<Tensor()>& f, uint64_t seed,
                        const std::function<void()>& tamper = nullptr, double eps = 1e-6, double rtol = 1e-6) {
    ParamCheck result;
    if (m.named_parameters().empty()) return result;
    Generator g(seed);
    m.zero_grad();
    Tensor out = f();
    Tensor r = ops::randn(out.shape(), g, DType::F64);
    backward(sum(mul(out, r)));
    if (tamper) tamper();

    double scale = 0;
    {
        std::vector<double> o = out.to_vector(), rv = r.to_vector();
        for (size_t i = 0; i < o.size(); ++i) scale += std::abs(o[i] * rv[i]);
    }
    const double floor = 1e-9 * scale;
    auto loss = [&] {
        NoGradGuard no_grad;
        return ops::sum(ops::mul(f(), r)).item();
    };

    std::ostringstream report;
    report.precision(12);
    for (auto& [name, p] : m.named_parameters()) {
        std::vector<double> v = ops::randn(p.shape(), g, DType::F64).to_vector();
        double analytic = 0;
        if (Tensor grad = p.grad(); grad.defined()) {
            std::vector<double> gv = grad.to_vector();
            for (size_t i = 0; i < v.size(); ++i) analytic += gv[i] * v[i];
        }
        double numeric;
        {
            NoGradGuard no_grad;
            REQUIRE(p.is_contiguous());
            double* d = p.data<double>();
            std::vector<double> saved(d, d + p.numel());
            for (size_t i = 0; i < v.size(); ++i) d[i] = saved[i] + eps * v[i];
            double up = loss();
            for (size_t i = 0; i < v.size(); ++i) d[i] = saved[i] - eps * v[i];
            double down = loss();
            for (size_t i = 0; i < v.size(); ++i) d[i] = saved[i];
            numeric = (up - down) / (2 * eps);
        }
        double err = std::abs(analytic - numeric);
        ++result.checked;
        if (numeric != 0) result.max_rel_error = std::max(result.max_rel_error, err / std::abs(numeric));
        bool pass = err <= rtol * std::abs(numeric) + floor;
        bool meaningful = std::abs(numeric) > 100 * floor;
        if (!pass || !meaningful) {
            result.ok = false;
            report << name << " " << shape_str(p.shape()) << ": analytic " << analytic << ", numeric " << numeric
                   << ", rel error " << err / std::max(std::abs(numeric), 1e-300)
                   << (pass ? " (derivative at the noise floor " : " (floor ") << floor << ")\n";
        }
    }
    m.zero_grad();
    result.report = result.ok ? "ok" : report.str();
    return result;
}

void expect_params(const std::string& what, Module& m, const std::function<Tensor()>& f, uint64_t seed,
                   int expected_count = -1) {
    CAPTURE(what);
    ParamCheck r = check_params(m, f, seed);
    INFO(r.report);
    CHECK(r.ok);
    CHECK(r.checked == static_cast<int>(m.named_parameters().size()));
    if (expected_count >= 0) CHECK(r.checked == expected_count);
}

// stf::gradcheck with |analytic - numeric| <= 1e-6 |numeric| + 1e-9 sum|f(x)|: gradcheck weighs the
// outputs by r in [0, 1), so 1e-9 sum|f(x)| bounds the rounding noise of its difference quotients as in
// check_params.
void expect_inputs(const std::string& what, const std::function<Tensor(const Inputs&)>& f, const Inputs& inputs) {
    CAPTURE(what);
    double scale = 0;
    {
        NoGradGuard no_grad;
        for (double v : f(inputs).to_vector()) scale += std::abs(v);
    }
    GradcheckResult r = gradcheck(f, inputs, 1e-6, 1e-9 * scale, 1e-6);
    INFO(r.report);
    CHECK(r.ok);
}

// A module's checks: its input gradient(s) element by element, its parameters by direction.
template <class M, class F>
void check_module(const std::string& what, M& m, const F& forward, const Inputs& inputs, uint64_t seed,
                  int expected_params = -1) {
    expect_inputs(what, [&](const Inputs& x) { return forward(m, x); }, inputs);
    expect_params(what, m, [&] { return forward(m, inputs); }, seed, expected_params);
}

}  // namespace

// ---- the check itself --------------------------------------------------------------------------------

TEST_CASE("layer gradcheck: the directional parameter check catches wrong gradients") {
    Generator gen(1);
    Linear lin(5, 4, true, Init{}, gen);
    prepare(lin, 2);
    Tensor x = randn64({3, 5}, 3);
    auto f = [&] { return lin.forward(x); };

    ParamCheck good = check_params(lin, f, 4);
    CHECK(good.ok);
    CHECK(good.checked == 2);

    // The analytic gradient of one parameter off by a relative 1e-4: that parameter, and only it, fails.
    ParamCheck scaled = check_params(lin, f, 4, [&] {
        Tensor g = lin.bias.grad();
        REQUIRE(g.defined());
        ops::unary_(UnaryOp::MulScalar, g, 1 + 1e-4);
    });
    CHECK_FALSE(scaled.ok);
    CHECK(scaled.report.find("bias") != std::string::npos);
    CHECK(scaled.report.find("weight") == std::string::npos);

    // A gradient that never arrives (here: dropped by the tamper) fails as well.
    ParamCheck dropped = check_params(lin, f, 4, [&] { lin.weight.set_grad(Tensor()); });
    CHECK_FALSE(dropped.ok);
    CHECK(dropped.report.find("weight") != std::string::npos);

    // A function whose recorded backward is wrong: the weight enters through an op that claims
    // d(3 w)/dw = 3.3.
    auto wrong = [&] {
        Tensor w3 = record("wrong", ops::mul_scalar(lin.weight, 3.0), {lin.weight},
                           [](const Tensor& g) { return std::vector<Tensor>{ops::mul_scalar(g, 3.3)}; });
        return add(linear(x, w3, lin.bias), 0.0);
    };
    ParamCheck bad = check_params(lin, wrong, 4);
    CHECK_FALSE(bad.ok);
    CHECK(bad.report.find("weight") != std::string::npos);
    CHECK(bad.report.find("bias") == std::string::npos);

    // A parameter the function does not use: a zero derivative is not a passed check.
    ParamCheck unused = check_params(lin, [&] { return linear(x, lin.weight, Tensor()); }, 4);
    CHECK_FALSE(unused.ok);
    CHECK(unused.report.find("bias") != std::string::npos);
}

// ---- single layers -----------------------------------------------------------------------------------

TEST_CASE("layer gradcheck: Linear") {
    Generator gen(10);
    auto fwd = [](Linear& m, const Inputs& x) { return m.forward(x[0]); };
    Linear with_bias(5, 4, true, Init{"xavier_uniform", 1, 0}, gen);
    prepare(with_bias, 11);
    check_module("Linear with bias", with_bias, fwd, {randn64({3, 5}, 12)}, 13, 2);
    Linear no_bias(5, 4, false, Init{}, gen);
    prepare(no_bias, 14);
    check_module("Linear without bias", no_bias, fwd, {randn64({3, 5}, 15)}, 16, 1);
}

TEST_CASE("layer gradcheck: Conv2d, plain and resampling") {
    auto fwd = [](Conv2d& m, const Inputs& x) { return m.forward(x[0]); };
    struct Case {
        std::string name;
        int kernel;
        bool up, down, fused;
        std::vector<double> filter;
        Shape x, y;  // input and expected output shapes
    };
    const std::vector<Case> cases = {
        {"3x3 plain", 3, false, false, false, {1, 1}, {2, 3, 5, 5}, {2, 4, 5, 5}},
        {"1x1 plain", 1, false, false, false, {1, 1}, {2, 3, 4, 4}, {2, 4, 4, 4}},
        {"3x3 up [1,1]", 3, true, false, false, {1, 1}, {1, 3, 4, 4}, {1, 4, 8, 8}},
        {"3x3 up [1,3,3,1]", 3, true, false, false, {1, 3, 3, 1}, {1, 3, 4, 4}, {1, 4, 8, 8}},
        {"3x3 down [1,1]", 3, false, true, false, {1, 1}, {1, 3, 6, 6}, {1, 4, 3, 3}},
        {"3x3 down [1,3,3,1]", 3, false, true, false, {1, 3, 3, 1}, {1, 3, 6, 6}, {1, 4, 3, 3}},
        {"1x1 down [1,1]", 1, false, true, false, {1, 1}, {1, 3, 6, 6}, {1, 4, 3, 3}},
        {"kernel 0 up [1,1]", 0, true, false, false, {1, 1}, {1, 3, 4, 4}, {1, 3, 8, 8}},
        {"kernel 0 up [1,3,3,1]", 0, true, false, false, {1, 3, 3, 1}, {1, 3, 4, 4}, {1, 3, 8, 8}},
        {"kernel 0 down [1,1]", 0, false, true, false, {1, 1}, {1, 3, 6, 6}, {1, 3, 3, 3}},
        {"kernel 0 down [1,3,3,1]", 0, false, true, false, {1, 3, 3, 1}, {1, 3, 6, 6}, {1, 3, 3, 3}},
        {"fused 3x3 up [1,3,3,1]", 3, true, false, true, {1, 3, 3, 1}, {1, 3, 4, 4}, {1, 4, 8, 8}},
        {"fused 3x3 down [1,3,3,1]", 3, false, true, true, {1, 3, 3, 1}, {1, 3, 6, 6}, {1, 4, 3, 3}},
        {"fused 3x3 up [1,1]", 3, true, false, true, {1, 1}, {1, 3, 4, 4}, {1, 4, 8, 8}},
        {"fused 3x3 down [1,1]", 3, false, true, true, {1, 1}, {1, 3, 6, 6}, {1, 4, 3, 3}},
    };
    uint64_t seed = 100;
    for (const Case& c : cases) {
        CAPTURE(c.name);
        Generator gen(seed++);
        int64_t out = c.kernel ? 4 : 3;
        Conv2d::Options o;
        o.up = c.up;
        o.down = c.down;
        o.fused_resample = c.fused;
        o.resample_filter = c.filter;
        Conv2d conv(3, out, c.kernel, o, gen);
        prepare(conv, seed++);
        Tensor x = randn64(c.x, seed++);
        CHECK(conv.forward(x).shape() == c.y);
        check_module(c.name, conv, fwd, {x}, seed++, c.kernel ? 2 : 0);
    }
}

TEST_CASE("layer gradcheck: fused and unfused up-sampling agree away from the border") {
    // Both up-sample then convolve; they differ only in where the zero padding sits (the fused path
    // convolves the uncropped up-sampled image without padding), so the interior must agree exactly.
    // (Down-sampling is another matter: fused convolves at full resolution before filtering.)
    Generator g1(7), g2(7);
    Conv2d::Options o;
    o.up = true;
    o.resample_filter = {1, 3, 3, 1};
    Conv2d unfused(2, 3, 3, o, g1);
    o.fused_resample = true;
    Conv2d fused(2, 3, 3, o, g2);
    prepare(unfused, 8);
    prepare(fused, 8);
    Tensor x = randn64({1, 2, 5, 5}, 9);
    Tensor ya = unfused.forward(x), yb = fused.forward(x);
    REQUIRE(ya.shape() == yb.shape());
    std::vector<double> a = ya.to_vector(), b = yb.to_vector();
    const int64_t c = ya.size(1), h = ya.size(2), w = ya.size(3);
    double max_diff = 0, max_border_diff = 0;
    for (int64_t k = 0; k < c; ++k)
        for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) {
                int64_t idx = (k * h + i) * w + j;
                bool border = i == 0 || j == 0 || i == h - 1 || j == w - 1;
                (border ? max_border_diff : max_diff) = std::max(border ? max_border_diff : max_diff,
                                                                 std::abs(a[idx] - b[idx]));
            }
    CHECK(max_diff < 1e-12);
    CHECK(max_border_diff > 1e-6);  // the padding does differ at the border
}

TEST_CASE("layer gradcheck: GroupNorm") {
    auto fwd = [](GroupNorm& m, const Inputs& x) { return m.forward(x[0]); };
    GroupNorm two_groups(8);  // min(32, 8 / 4) = 2 groups
    CHECK(two_groups.num_groups == 2);
    prepare(two_groups, 20);
    check_module("GroupNorm 8 channels, 2 groups", two_groups, fwd, {randn64({2, 8, 3, 3}, 21)}, 22, 2);
    GroupNorm per_channel(6, 1e-6, 32, 1);  // 6 groups of one channel
    CHECK(per_channel.num_groups == 6);
    prepare(per_channel, 23);
    check_module("GroupNorm 6 channels, 6 groups", per_channel, fwd, {randn64({2, 6, 2, 3}, 24)}, 25, 2);
}

TEST_CASE("layer gradcheck: noise embeddings") {
    for (bool endpoint : {false, true}) {
        CAPTURE(endpoint);
        PositionalEmbedding emb(8, 10000, endpoint);
        CHECK(emb.named_parameters().empty());
        Generator g(30 + endpoint);
        Tensor x = ops::mul_scalar(ops::add_scalar(ops::rand({3}, g, DType::F64), 0.1), 5);
        expect_inputs(endpoint ? "PositionalEmbedding endpoint" : "PositionalEmbedding",
                      [&](const Inputs& v) { return emb.forward(v[0]); }, {x});
    }
    for (double scale : {1.0, 16.0}) {
        CAPTURE(scale);
        Generator gen(31);
        FourierEmbedding emb(8, scale, gen);
        emb.to(DType::F64);
        CHECK(emb.named_parameters().empty());
        expect_inputs("FourierEmbedding", [&](const Inputs& v) { return emb.forward(v[0]); }, {randn64({3}, 32, 0.3)});
    }
}

// ---- UNetBlock ---------------------------------------------------------------------------------------

TEST_CASE("layer gradcheck: UNetBlock") {
    struct Case {
        std::string name;
        int64_t in, out;
        bool up = false, down = false, attention = false;
        int heads = 1;
        bool adaptive_scale = true, resample_proj = false;
        std::vector<double> filter{1, 1};
        double skip_scale = 1;
    };
    const std::vector<Case> cases = {
        {.name = "plain, adaptive scale", .in = 8, .out = 8},
        {.name = "plain, no adaptive scale", .in = 8, .out = 8, .adaptive_scale = false, .skip_scale = std::sqrt(0.5)},
        {.name = "in != out", .in = 8, .out = 12},
        {.name = "in != out, no adaptive scale", .in = 12, .out = 8, .adaptive_scale = false},
        {.name = "attention, 1 head", .in = 8, .out = 8, .attention = true, .skip_scale = std::sqrt(0.5)},
        {.name = "attention, 2 heads", .in = 8, .out = 8, .attention = true, .heads = 2},
        {.name = "attention, 2 heads, in != out, no adaptive scale", .in = 12, .out = 8, .attention = true, .heads = 2,
         .adaptive_scale = false},
        {.name = "up [1,1]", .in = 8, .out = 8, .up = true},
        {.name = "up [1,3,3,1], resample_proj", .in = 8, .out = 8, .up = true, .resample_proj = true,
         .filter = {1, 3, 3, 1}},
        {.name = "down [1,1], no adaptive scale", .in = 8, .out = 8, .down = true, .adaptive_scale = false},
        {.name = "down [1,3,3,1], resample_proj", .in = 8, .out = 8, .down = true, .resample_proj = true,
         .filter = {1, 3, 3, 1}},
        {.name = "down, in != out, attention", .in = 8, .out = 12, .down = true, .attention = true},
    };
    const int64_t emb_channels = 6;
    uint64_t seed = 200;
    for (const Case& c : cases) {
        CAPTURE(c.name);
        UNetBlock::Options o;
        o.emb_channels = emb_channels;
        o.up = c.up;
        o.down = c.down;
        o.attention = c.attention;
        o.num_heads = c.heads;
        o.dropout = 0;
        o.skip_scale = c.skip_scale;
        o.resample_filter = c.filter;
        o.resample_proj = c.resample_proj;
        o.adaptive_scale = c.adaptive_scale;
        Generator gen(seed++);
        UNetBlock block(c.in, c.out, o, gen);
        prepare(block, seed++);
        int64_t res = c.down ? 4 : c.up ? 2 : 3;
        Tensor x = randn64({2, c.in, res, res}, seed++), emb = randn64({2, emb_channels}, seed++);
        Generator dropout_gen(0);
        int64_t res_out = c.down ? res / 2 : c.up ? res * 2 : res;
        CHECK(block.forward(x, emb, dropout_gen).shape() == Shape{2, c.out, res_out, res_out});
        // norm0, conv0, affine, norm1, conv1: 2 tensors each; a skip conv with a kernel: 2; attention: 6.
        bool skip_kernel = c.in != c.out || ((c.up || c.down) && c.resample_proj);
        int expected = 10 + (skip_kernel ? 2 : 0) + (c.attention ? 6 : 0);
        check_module(c.name, block, [&](UNetBlock& m, const Inputs& v) { return m.forward(v[0], v[1], dropout_gen); },
                     {x, emb}, seed++, expected);
    }
}

// EDM's UNetBlock.forward written out with unfused ops from the block's own parameters: the fused
// forward (group_norm_silu_dropout with the bias and embedding as offset, scaled_residual) must agree,
// dropout mask included (training mode, the same generator state).
TEST_CASE("UNetBlock: the fused forward is EDM's formula (no adaptive scale)") {
    struct Case {
        std::string name;
        int64_t in, out;
        bool attention;
    };
    for (const Case& c : {Case{"in == out", 8, 8, false}, Case{"in != out, attention, 2 heads", 8, 12, true}}) {
        CAPTURE(c.name);
        UNetBlock::Options o;
        o.emb_channels = 6;
        o.attention = c.attention;
        o.num_heads = 2;
        o.dropout = 0.3;
        o.skip_scale = std::sqrt(0.5);
        o.adaptive_scale = false;
        o.eps = 1e-5;
        Generator gen(7);
        UNetBlock block(c.in, c.out, o, gen);
        prepare(block, 8);
        block.train();
        Generator formula_gen(12);
        std::map<std::string, Tensor> p;
        for (auto& [name, t] : block.named_parameters()) p[name] = t;
        Tensor x = randn64({2, c.in, 4, 4}, 9), emb = randn64({2, 6}, 10);
        auto groups = [](int64_t ch) { return static_cast<int>(std::min<int64_t>(32, ch / 4)); };

        Tensor h = silu(group_norm(x, groups(c.in), p["norm0.weight"], p["norm0.bias"], 1e-5));
        h = conv2d(h, p["conv0.weight"], p["conv0.bias"], 1, 1);
        Tensor params = linear(emb, p["affine.weight"], p["affine.bias"]);
        h = add(h, reshape(params, {2, c.out, 1, 1}));
        h = silu(group_norm(h, groups(c.out), p["norm1.weight"], p["norm1.bias"], 1e-5));
        h = dropout(h, 0.3, true, formula_gen);
        h = conv2d(h, p["conv1.weight"], p["conv1.bias"], 1, 1);
        Tensor skip = c.in != c.out ? conv2d(x, p["skip.weight"], p["skip.bias"], 1, 0) : x;
        Tensor want = mul(add(h, skip), o.skip_scale);
        if (c.attention) {
            const int64_t heads = 2, ch = c.out / heads, hw = 16;
            Tensor qkv = conv2d(group_norm(want, groups(c.out), p["norm2.weight"], p["norm2.bias"], 1e-5),
                                p["qkv.weight"], p["qkv.bias"], 1, 0);
            qkv = reshape(qkv, {2 * heads, ch, 3, hw});
            auto part = [&](int64_t i) { return reshape(narrow(qkv, 2, i, 1), {2 * heads, ch, hw}); };
            Tensor w = softmax(matmul(part(0), mul(part(1), 1 / std::sqrt(double(ch))), true, false), 2);
            Tensor a = reshape(matmul(part(2), w, false, true), want.shape());
            want = mul(add(conv2d(a, p["proj.weight"], p["proj.bias"], 1, 0), want), o.skip_scale);
        }
        Generator dropout_gen(12);
        Tensor got = block.forward(x, emb, dropout_gen);
        REQUIRE(got.shape() == want.shape());
        CHECK(ops::rand({3}, dropout_gen).to_vector() == ops::rand({3}, formula_gen).to_vector());
        std::vector<double> g = got.to_vector(), e = want.to_vector();
        double worst = 0;
        for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - e[i]));
        CHECK(worst < 1e-12);
    }
}

// ---- SongUNet under each preconditioning -------------------------------------------------------------

namespace {

SongUNetConfig tiny(SongUNetConfig c) {
    c.img_resolution = 8;
    c.in_channels = c.out_channels = 3;
    c.label_dim = 0;
    c.augment_dim = 9;
    c.model_channels = 16;
    c.channel_mult = {1, 2};
    c.num_blocks = 1;
    c.attn_resolutions = {8};
    c.dropout = 0;
    return c;
}

// Input gradients w.r.t. the image, sigma and the augment labels; then every parameter.
void check_precond(const std::string& what, Precond& net, double sigma, uint64_t seed) {
    CAPTURE(what);
    prepare(net, seed);
    const int64_t res = net.model().config().img_resolution;
    Tensor x = randn64({1, 3, res, res}, seed + 1, sigma);
    Tensor s = ops::full({1}, sigma, DType::F64);
    Tensor aug = randn64({1, 9}, seed + 2, 0.5);
    Generator dropout_gen(0);
    CHECK(net.forward(x, s, Tensor(), aug, dropout_gen).shape() == x.shape());
    expect_inputs(what, [&](const Inputs& v) { return net.forward(v[0], v[1], Tensor(), v[2], dropout_gen); },
                  {x, s, aug});
    expect_params(what, net, [&] { return net.forward(x, s, Tensor(), aug, dropout_gen); }, seed + 3);
}

}  // namespace

TEST_CASE("layer gradcheck: tiny DDPM++ under EDMPrecond") {
    Generator gen(300);
    EDMPrecond net(tiny(SongUNetConfig::ddpmpp()), 0.5, gen);
    check_precond("DDPM++ EDM", net, 0.8, 301);
}

TEST_CASE("layer gradcheck: tiny NCSN++ under EDMPrecond") {
    Generator gen(310);
    EDMPrecond net(tiny(SongUNetConfig::ncsnpp()), 0.5, gen);
    check_precond("NCSN++ EDM", net, 0.8, 311);
}

TEST_CASE("layer gradcheck: tiny SongUNet with skip encoder and skip decoder under EDMPrecond") {
    SongUNetConfig c = tiny(SongUNetConfig::ddpmpp());
    c.encoder_type = "skip";
    c.decoder_type = "skip";
    c.resample_filter = {1, 3, 3, 1};
    Generator gen(320);
    EDMPrecond net(c, 0.5, gen);
    check_precond("skip/skip EDM", net, 1.5, 321);
}

TEST_CASE("layer gradcheck: tiny DDPM++ under VPPrecond") {
    Generator gen(330);
    VPPrecond net(tiny(SongUNetConfig::ddpmpp()), gen);
    check_precond("DDPM++ VP", net, 2.0, 331);
}

TEST_CASE("layer gradcheck: tiny DDPM++ under VEPrecond") {
    Generator gen(340);
    VEPrecond net(tiny(SongUNetConfig::ddpmpp()), gen);
    check_precond("DDPM++ VE", net, 5.0, 341);
}
