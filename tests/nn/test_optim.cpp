// EDM's optimiser pieces against hand-written float64 references: Adam, the learning-rate ramp,
// the gradient NaN guard and the EMA of weights.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "nn/optim.h"
#include "tensor/ops.h"

using namespace stf;

namespace {
Tensor randn(const Shape& shape, uint64_t seed, DType dt = DType::F64) {
    Generator g(seed);
    return ops::randn(shape, g, dt);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
}

// torch.optim.Adam's update, element by element, in float64.
struct RefAdam {
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    std::vector<double> m, v;
    int t = 0;
    void step(std::vector<double>& p, const std::vector<double>& g, double lr) {
        if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0);
        ++t;
        for (size_t i = 0; i < p.size(); ++i) {
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double m_hat = m[i] / (1 - std::pow(b1, t));
            double v_hat = v[i] / (1 - std::pow(b2, t));
            p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
        }
    }
};
}  // namespace

TEST_CASE("Adam matches the float64 formula over 5 steps with varying lr") {
    std::vector<Tensor> params = {randn({3, 4}, 1), randn({5}, 2), randn({2, 2}, 3)};
    for (Tensor& p : params) p.set_requires_grad();
    const std::vector<double> frozen = params[2].to_vector();  // never gets a gradient
    const void* storage0 = params[0].raw_data();

    std::vector<std::vector<double>> ref_p = {params[0].to_vector(), params[1].to_vector()};
    std::vector<RefAdam> ref(2);
    nn::Adam adam(params);
    const double lrs[] = {1e-3, 5e-3, 2e-2, 1e-1, 3e-2};
    for (int s = 0; s < 5; ++s) {
        for (int i = 0; i < 2; ++i) {
            // Gradients of varied scale, so eps and the bias corrections both matter.
            Tensor g = ops::mul_scalar(randn(params[i].shape(), 100 + 10 * s + i), std::pow(10.0, s - 3));
            params[i].set_grad(g);
            ref[i].step(ref_p[i], g.to_vector(), lrs[s]);
        }
        adam.step(lrs[s]);
    }
    CHECK(adam.steps() == 5);
    CHECK(max_abs_diff(params[0].to_vector(), ref_p[0]) < 1e-12);
    CHECK(max_abs_diff(params[1].to_vector(), ref_p[1]) < 1e-12);
    CHECK(params[2].to_vector() == frozen);
    CHECK(params[0].raw_data() == storage0);  // updated in place
    // The moments are the reference's too.
    nn::NamedTensors st = adam.state();
    CHECK(st[0].first == "exp_avg.0");
    CHECK(max_abs_diff(st[0].second.to_vector(), ref[0].m) < 1e-15);
    CHECK(st[3].first == "exp_avg_sq.1");
    CHECK(max_abs_diff(st[3].second.to_vector(), ref[1].v) < 1e-15);
    CHECK(st.back().first == "step");
    CHECK(st.back().second.dtype() == DType::F64);
    CHECK(st.back().second.item() == 5);
}

TEST_CASE("Adam's first step moves each element by about lr against its gradient's sign") {
    Tensor p = ops::from_vector({1, 1, 1}, {3}, DType::F64);
    p.set_grad(ops::from_vector({0.5, -3, 0}, {3}, DType::F64));
    nn::Adam adam({p});
    adam.step(0.1);
    std::vector<double> v = p.to_vector();
    // m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps).
    CHECK(v[0] == doctest::Approx(1 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
    CHECK(v[1] == doctest::Approx(1 + 0.1 * 3 / (3 + 1e-8)).epsilon(1e-14));
    CHECK(v[2] == 1);
}

TEST_CASE("Adam state round trip continues bit-identically") {
    auto grad_at = [](int step, int i, const Shape& s) { return randn(s, 1000 + 7 * step + i); };
    std::vector<Tensor> a = {randn({4, 3}, 11), randn({6}, 12)};
    nn::Adam opt_a(a);
    for (int s = 0; s < 3; ++s) {
        for (int i = 0; i < 2; ++i) a[i].set_grad(grad_at(s, i, a[i].shape()));
        opt_a.step(1e-2 * (s + 1));
    }
    nn::NamedTensors saved = opt_a.state();
    std::vector<double> m0_saved = saved[0].second.to_vector();

    // A second optimiser on copies of the weights, restored from the mid-run state.
    std::vector<Tensor> b = {ops::clone(a[0]), ops::clone(a[1])};
    nn::Adam opt_b(b);
    opt_b.load_state(saved);
    CHECK(opt_b.steps() == 3);
    for (int s = 3; s < 6; ++s) {
        for (int i = 0; i < 2; ++i) {
            a[i].set_grad(grad_at(s, i, a[i].shape()));
            b[i].set_grad(grad_at(s, i, b[i].shape()));
        }
        opt_a.step(1e-2 * (s + 1));
        opt_b.step(1e-2 * (s + 1));
    }
    CHECK(a[0].to_vector() == b[0].to_vector());
    CHECK(a[1].to_vector() == b[1].to_vector());
    nn::NamedTensors end_a = opt_a.state(), end_b = opt_b.state();
    for (size_t k = 0; k < end_a.size(); ++k) CHECK(end_a[k].second.to_vector() == end_b[k].second.to_vector());
    // state() returned copies: later steps did not change what was saved.
    CHECK(saved[0].second.to_vector() == m0_saved);
    CHECK(end_a[0].second.to_vector() != m0_saved);
}

TEST_CASE("Adam load_state rejects mismatched states") {
    std::vector<Tensor> params = {randn({2, 3}, 1), randn({4}, 2)};
    nn::Adam adam(params);
    nn::NamedTensors good = adam.state();

    nn::NamedTensors too_few(good.begin(), good.end() - 1);
    CHECK_THROWS_AS(adam.load_state(too_few), Error);

    nn::NamedTensors bad_shape = good;
    bad_shape[2].second = ops::zeros({5}, DType::F64);  // exp_avg.1 should be [4]
    CHECK_THROWS_AS(adam.load_state(bad_shape), Error);

    nn::NamedTensors renamed = good;
    renamed[1].first = "exp_avg_sq.7";
    CHECK_THROWS_AS(adam.load_state(renamed), Error);

    nn::NamedTensors other_model = nn::Adam({randn({2, 3}, 1)}).state();
    CHECK_THROWS_AS(adam.load_state(other_model), Error);

    // A failed load changes nothing; a good one still loads.
    nn::NamedTensors moved = good;
    moved[0].second = ops::full({2, 3}, 7, DType::F64);
    moved.back().second = ops::from_vector({4}, {1}, DType::F64);
    moved[2].second = ops::zeros({3}, DType::F64);
    CHECK_THROWS_AS(adam.load_state(moved), Error);
    CHECK(adam.steps() == 0);
    CHECK(adam.state()[0].second.to_vector() == std::vector<double>(6, 0));
    moved[2].second = ops::zeros({4}, DType::F64);
    adam.load_state(moved);
    CHECK(adam.steps() == 4);
    CHECK(adam.state()[0].second.to_vector() == std::vector<double>(6, 7));
}

TEST_CASE("Adam minimises a quadratic (float32)") {
    Tensor target = ops::from_vector({1.5, -2, 0.25, 3, -0.75}, {5});
    Tensor p = ops::zeros({5});
    p.set_requires_grad();
    nn::Adam adam({p});
    auto loss = [&] { return ops::sum(ops::unary(UnaryOp::Square, ops::sub(p, target))).item(); };
    const double loss0 = loss();
    for (int s = 0; s < 1000; ++s) {
        p.set_grad(ops::mul_scalar(ops::sub(p, target), 2));  // d/dp sum (p - target)^2
        adam.step(s < 500 ? 0.05 : 0.005);
    }
    CHECK(loss0 == doctest::Approx(15.875));  // 2.25 + 4 + 0.0625 + 9 + 0.5625
    CHECK(loss() < 1e-5);
    CHECK(max_abs_diff(p.to_vector(), target.to_vector()) < 1e-3);
}

TEST_CASE("EDM learning-rate ramp") {
    const double lr = 1e-3, rampup_kimg = 10000;  // 10 Mimg
    CHECK(nn::edm_learning_rate(lr, 0, rampup_kimg) == 0);
    CHECK(nn::edm_learning_rate(lr, 5e6, rampup_kimg) == doctest::Approx(5e-4).epsilon(1e-15));
    CHECK(nn::edm_learning_rate(lr, 512, rampup_kimg) == doctest::Approx(1e-3 * 512 / 1e7).epsilon(1e-15));
    CHECK(nn::edm_learning_rate(lr, 1e7, rampup_kimg) == lr);
    CHECK(nn::edm_learning_rate(lr, 2e8, rampup_kimg) == lr);
    // No ramp: full rate once any image has been seen (EDM's max(..., 1e-8) guard).
    CHECK(nn::edm_learning_rate(lr, 512, 0) == lr);
}

TEST_CASE("nan_to_num_grads replaces nan and infinities and leaves the rest") {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    const std::vector<double> raw = {nan, inf, -inf, 1.5, -2, 0, 1e30};
    const std::vector<double> fixed = {0, 1e5, -1e5, 1.5, -2, 0, 1e30};
    for (DType dt : {DType::F64, DType::F32}) {
        INFO((dt == DType::F32 ? "float32" : "float64"));
        Tensor p = ops::zeros({7}, dt);
        Tensor g = ops::from_vector(raw, {7}, dt);
        p.set_grad(g);
        Tensor no_grad = ops::zeros({2}, dt);
        nn::nan_to_num_grads({p, no_grad});
        std::vector<double> out = p.grad().to_vector();
        for (size_t i = 0; i < raw.size(); ++i) CHECK(out[i] == doctest::Approx(fixed[i]).epsilon(1e-7));
        CHECK(p.grad().same(g));  // in place
        CHECK(!no_grad.grad().defined());
    }
    // A strided gradient is fixed in its own storage too.
    Tensor p = ops::zeros({3, 2}, DType::F64);
    Tensor base = ops::from_vector({nan, 1, inf, 2, -inf, 3}, {2, 3}, DType::F64);
    p.set_grad(ops::transpose(base, 0, 1));
    nn::nan_to_num_grads({p}, 7);
    CHECK(base.to_vector() == std::vector<double>{0, 1, 7, 2, -7, 3});
}

TEST_CASE("EMA beta against closed forms") {
    // Batch 512, half-life 500 kimg, no ramp.
    CHECK(nn::Ema::beta(512, 1e6, 500, 0) == doctest::Approx(std::pow(0.5, 512.0 / 500000)).epsilon(1e-15));
    // Ramp ratio 0.05 at 10240 images: half-life min(500000, 512) = 512, so beta is 0.5.
    CHECK(nn::Ema::beta(512, 10240, 500, 0.05) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(nn::Ema::beta(512, 20480, 500, 0.05) == doctest::Approx(std::pow(0.5, 0.5)).epsilon(1e-15));
    // Past 10 Mimg the ramp no longer binds.
    CHECK(nn::Ema::beta(512, 2e7, 500, 0.05) == doctest::Approx(std::pow(0.5, 512.0 / 500000)).epsilon(1e-15));
    // Before any image the half-life is ~0 and the EMA just copies the network.
    CHECK(nn::Ema::beta(512, 0, 500, 0.05) == 0);
}

TEST_CASE("EMA update is a lerp from the network toward the old EMA") {
    Tensor net0 = randn({3, 5}, 21), net1 = randn({4}, 22);
    Tensor ema0 = randn({3, 5}, 23), ema1 = randn({4}, 24);
    const std::vector<double> n0 = net0.to_vector(), n1 = net1.to_vector();
    const std::vector<double> e0 = ema0.to_vector(), e1 = ema1.to_vector();
    const void* storage = ema0.raw_data();
    nn::Ema ema({net0, net1}, {ema0, ema1});
    const double beta = 0.9993;
    ema.update(beta);
    auto lerp = [&](const std::vector<double>& n, const std::vector<double>& e) {
        std::vector<double> out(n.size());
        for (size_t i = 0; i < n.size(); ++i) out[i] = n[i] + beta * (e[i] - n[i]);
        return out;
    };
    CHECK(max_abs_diff(ema0.to_vector(), lerp(n0, e0)) < 1e-15);
    CHECK(max_abs_diff(ema1.to_vector(), lerp(n1, e1)) < 1e-15);
    CHECK(ema0.raw_data() == storage);
    CHECK(net0.to_vector() == n0);  // the network is untouched
    ema.update(0);                  // beta 0 copies the network
    CHECK(ema1.to_vector() == n1);

    CHECK_THROWS_AS(nn::Ema({net0}, {ema0, ema1}), Error);
    CHECK_THROWS_AS(nn::Ema({net0}, {ema1}), Error);
}

// The graph-ready split (stage on the host, apply_staged reading the constants from memory) against the
// plain step, in float32 and float64: the same bits after every step, with the lr ramp and the EMA's
// beta changing each step, and a parameter that has no gradient left alone.
TEST_CASE("Adam and EMA staged through memory equal the plain step bit for bit") {
    for (DType dt : {DType::F32, DType::F64}) {
        INFO((dt == DType::F32 ? "float32" : "float64"));
        auto make = [&] {
            std::vector<Tensor> ps = {randn({3, 4}, 1, dt), randn({70}, 2, dt), randn({2}, 3, dt)};
            for (Tensor& p : ps) p.set_requires_grad();
            return ps;
        };
        std::vector<Tensor> plain = make(), staged = make();
        std::vector<Tensor> ema_plain = {ops::zeros({3, 4}, dt), ops::zeros({70}, dt), ops::zeros({2}, dt)};
        std::vector<Tensor> ema_staged = {ops::zeros({3, 4}, dt), ops::zeros({70}, dt), ops::zeros({2}, dt)};
        nn::Adam adam_plain(plain), adam_staged(staged);
        nn::Ema e_plain(plain, ema_plain), e_staged(staged, ema_staged);
        for (int s = 0; s < 6; ++s) {
            for (int i = 0; i < 2; ++i) {  // parameter 2 never has a gradient
                Tensor g = ops::mul_scalar(randn(plain[static_cast<size_t>(i)].shape(), 200 + 10 * s + i, dt),
                                           std::pow(10.0, s - 4));
                plain[static_cast<size_t>(i)].set_grad(g);
                staged[static_cast<size_t>(i)].set_grad(ops::clone(g));
            }
            const double lr = nn::edm_learning_rate(1e-2, 64.0 * s, 0.2);
            const double beta = nn::Ema::beta(64, 64.0 * (s + 1), 0.5, 0.05);
            adam_plain.step(lr);
            e_plain.update(beta);
            adam_staged.stage(lr);
            adam_staged.apply_staged();
            e_staged.stage(beta);
            e_staged.apply_staged();
            for (size_t i = 0; i < plain.size(); ++i) {
                CHECK(staged[i].to_vector() == plain[i].to_vector());
                CHECK(ema_staged[i].to_vector() == ema_plain[i].to_vector());
            }
        }
        CHECK(adam_staged.steps() == adam_plain.steps());
        const nn::NamedTensors a = adam_plain.state(), b = adam_staged.state();
        for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].second.to_vector() == b[i].second.to_vector());
        CHECK(ema_plain[1].to_vector() != std::vector<double>(70, 0.0));  // the EMA did move
    }
}

TEST_CASE("apply_staged before stage, and constants of the wrong size or dtype, are refused") {
    std::vector<Tensor> ps = {randn({4}, 5, DType::F32)};
    ps[0].set_requires_grad();
    ps[0].set_grad(randn({4}, 6, DType::F32));
    nn::Adam adam(ps);
    CHECK_THROWS_AS(adam.apply_staged(), Error);
    std::vector<Tensor> ema = {ops::zeros({4})};
    nn::Ema e(ps, ema);
    CHECK_THROWS_AS(e.apply_staged(), Error);

    std::vector<Tensor> m = {ops::zeros({4})}, v = {ops::zeros({4})}, g = {ps[0].grad()};
    Tensor short_constants = ops::zeros({6});
    CHECK_THROWS_WITH_AS(ops::adam_update_many_(ps, g, m, v, short_constants),
                         doctest::Contains("must be a contiguous tensor of 7 values"), Error);
    Tensor wrong_dtype = ops::zeros({7}, DType::F64);
    CHECK_THROWS_AS(ops::adam_update_many_(ps, g, m, v, wrong_dtype), Error);
    CHECK_THROWS_AS(ops::write_adam_constants_(short_constants, ops::AdamStep{1e-3, 0.9, 0.999, 1e-8, 1}), Error);
    Tensor constants = ops::zeros({7});
    CHECK_THROWS_AS(ops::write_adam_constants_(constants, ops::AdamStep{1e-3, 0.9, 0.999, 1e-8, 0}), Error);
    CHECK_THROWS_AS(ops::ema_update_many_(ema, ps, ops::zeros({2})), Error);
    // What the constants hold: beta1, 1 - beta1, beta2, 1 - beta2, 1 / (1 - beta2^t), -lr / (1 - beta1^t), eps.
    ops::write_adam_constants_(constants, ops::AdamStep{1e-3, 0.9, 0.999, 1e-8, 2});
    const std::vector<double> k = constants.to_vector();
    CHECK(k[0] == static_cast<double>(0.9f));
    CHECK(k[4] == static_cast<double>(static_cast<float>(1 / (1 - 0.999 * 0.999))));
    CHECK(k[5] == static_cast<double>(static_cast<float>(-1e-3 / (1 - 0.9 * 0.9))));
    CHECK(k[6] == static_cast<double>(1e-8f));
}
