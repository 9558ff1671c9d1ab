// The optimiser's per-element kernels: one Adam step, the EMA of the weights, and the gradient guard
// (cuda/optim.cu; CPU twin in tensor/cpu/optim.cpp; the arithmetic in cuda/optim_math.h), one tensor
// at a time or many in a few launches (adam_update_many, ema_update_many, nan_to_num_many over the
// network's parameter list, cuda/tensor_lists.h).
//
// Adam (torch.optim.Adam) at step t, learning rate lr, for gradient g:
//   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2,
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps).
// The kernels take the step's constants precomputed on the host (optim::AdamConstants).
// EMA: ema = beta ema + (1 - beta) net. The guard: NaN -> 0, +-inf -> +-1e5, as torch.nan_to_num.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "cuda/optim_math.h"
#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: the formulas above in long double, from lr, the betas, eps and t.
// =================================================================================================
namespace {

struct AdamSettings {
    double lr = 2e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    int t = 7;
};

struct AdamState {
    std::vector<double> p, m, v;
};

AdamState ref_adam(const AdamSettings& s, AdamState x, const std::vector<double>& g) {
    const long double beta1 = s.beta1, beta2 = s.beta2, lr = s.lr, eps = s.eps;
    const long double bias1 = 1 - std::pow(beta1, s.t), bias2 = 1 - std::pow(beta2, s.t);
    for (size_t i = 0; i < g.size(); ++i) {
        const long double gi = g[i];
        const long double m = beta1 * x.m[i] + (1 - beta1) * gi;
        const long double v = beta2 * x.v[i] + (1 - beta2) * gi * gi;
        x.p[i] = static_cast<double>(x.p[i] - lr / bias1 * m / (std::sqrt(v / bias2) + eps));
        x.m[i] = static_cast<double>(m);
        x.v[i] = static_cast<double>(v);
    }
    return x;
}

std::vector<double> ref_ema(std::vector<double> ema, const std::vector<double>& net, double beta) {
    const long double b = beta;
    for (size_t i = 0; i < ema.size(); ++i) ema[i] = static_cast<double>(b * ema[i] + (1 - b) * net[i]);
    return ema;
}

// The constants the kernels take, as the optimiser computes them (tensor/ops_nn.cpp).
template <class T> optim::AdamConstants<T> adam_constants(const AdamSettings& s) {
    const double bias1 = 1 - std::pow(s.beta1, s.t), bias2 = 1 - std::pow(s.beta2, s.t);
    return {T(s.beta1), T(1 - s.beta1), T(s.beta2), T(1 - s.beta2), T(1 / bias2), T(-s.lr / bias1), T(s.eps)};
}

template <class T> std::vector<double> wide(const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("optim cpu: adam_update is torch's Adam step", T, float, double) {
    // Gradients of 1e-3 and second moments of 1e-6, as late in training: each element moves by up to
    // about lr (2e-3), a small change to a p of order 1 that float must not lose.
    const int64_t n = 4099;
    const AdamSettings s;
    std::vector<T> p = random_vector<T>(n, -1, 1, 1), g = random_vector<T>(n, -1e-3, 1e-3, 2);
    std::vector<T> m = random_vector<T>(n, -1e-3, 1e-3, 3), v = random_vector<T>(n, 0, 1e-6, 4);
    g[0] = T(0);  // a zero gradient still moves p through m
    const std::vector<double> p0 = wide(p);
    const AdamState want = ref_adam(s, {p0, wide(m), wide(v)}, wide(g));
    cpu::adam_update<T>(n, p.data(), g.data(), m.data(), v.data(), adam_constants<T>(s));
    // Relative to the size of each quantity: p is of order 1, m of 1e-3, v of 1e-6.
    CHECK(rel_error(p, want.p) <= (std::is_same_v<T, float> ? 1e-7 : 1e-15));
    CHECK(rel_error(m, want.m) <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    CHECK(rel_error(v, want.v) <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    // The step itself (p's change, about lr): a float kernel may not lose it in p's rounding beyond
    // p's own ulp (6e-8 against steps of 2e-3).
    std::vector<double> step(n), want_step(n);
    for (int64_t i = 0; i < n; ++i) step[i] = p[i] - p0[i], want_step[i] = want.p[i] - p0[i];
    CHECK(rel_error(step, want_step) <= (std::is_same_v<T, float> ? 1e-4 : 1e-12));
}

TEST_CASE_TEMPLATE("optim cpu: ema_update is beta ema + (1 - beta) net", T, float, double) {
    const int64_t n = 40000;  // over the twin's threshold for threads
    std::vector<T> ema = random_vector<T>(n, -1, 1, 5);
    const std::vector<T> net = random_vector<T>(n, -1, 1, 6);
    const std::vector<double> want = ref_ema(wide(ema), wide(net), 0.999);
    cpu::ema_update<T>(n, ema.data(), net.data(), T(0.999));
    CHECK(max_err(ema, want) <= tol<T>());
}

// =================================================================================================
// (c) The CUDA kernels against the CPU twin. Both sides run cuda/optim_math.h (optim.cu without fused
// multiply-adds), so they must agree bit for bit.
// =================================================================================================
#if STF_WITH_CUDA
namespace {
constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("optim cuda: fused Adam and EMA steps match their CPU twins" * needs_gpu()) {
    // Both sides run cuda/optim_math.h (optim.cu without fused multiply-adds): expected bit for bit.
    for (int64_t n : kSizes) {
        INFO("n = ", n);
        std::vector<float> p = random_floats(n, -1, 1, 1), g = random_floats(n, -1e-3f, 1e-3f, 2);
        std::vector<float> m = random_floats(n, -1e-3f, 1e-3f, 3), v = random_floats(n, 0, 1e-6f, 4);
        const stf::optim::AdamConstants<float> k{0.9f, 0.1f, 0.999f, 0.001f, 1.0f / 0.00698f, -2e-3f / 0.5217f, 1e-8f};
        DeviceArray<float> dp(p), dg(g), dm(m), dv(v);
        stf::cuda::adam_update(n, dp.get(), dg.get(), dm.get(), dv.get(), k);
        stf::cpu::adam_update<float>(n, p.data(), g.data(), m.data(), v.data(), k);
        CHECK(rel_error(dp.download(), p) < kTol);
        CHECK(rel_error(dm.download(), m) < kTol);
        CHECK(rel_error(dv.download(), v) < kTol);
        CHECK(dp.download() == p);

        std::vector<float> ema = random_floats(n, -1, 1, 5);
        DeviceArray<float> de(ema);
        stf::cuda::ema_update(n, de.get(), dp.get(), 0.999f);
        stf::cpu::ema_update<float>(n, ema.data(), p.data(), 0.999f);
        CHECK(de.download() == ema);
    }
}

namespace {
// The multi-tensor launchers: version 2 (adam_update_many, ...) or their first version (one launch per
// tensor, adam_update_many_v1, ...).
struct ManyLaunchers {
    void (*adam)(const stf::cuda::AdamOperands*, int64_t, const stf::optim::AdamConstants<float>&);
    void (*ema)(const stf::cuda::EmaOperands*, int64_t, float);
    void (*guard)(const stf::cuda::GuardOperands*, int64_t, float);
};

void check_many(const ManyLaunchers& launch) {
    // 45 tensors (more than a launch's 32 slots), sizes 0 and 1 to 9.1 M (more than a launch's 512 blocks
    // of 16384), so the plan spans several launches and splits a tensor between two.
    std::vector<int64_t> sizes{0, 1, 4099, 32768, 32769, 9100000, 3};
    for (int i = 0; sizes.size() < 45; ++i) sizes.push_back(1 + 37 * i);
    const stf::optim::AdamConstants<float> k{0.9f, 0.1f, 0.999f, 0.001f, 1.0f / 0.00698f, -2e-3f / 0.5217f, 1e-8f};
    std::vector<std::vector<float>> p, g, m, v, ema;
    std::vector<std::unique_ptr<DeviceArray<float>>> dp, dg, dm, dv, de;
    std::vector<stf::cuda::AdamOperands> adam;
    std::vector<stf::cuda::EmaOperands> emas;
    std::vector<stf::cuda::GuardOperands> guards;
    uint32_t seed = 1000;
    for (int64_t n : sizes) {
        p.push_back(random_floats(n, -1, 1, seed++));
        g.push_back(random_floats(n, -1e-3f, 1e-3f, seed++));
        m.push_back(random_floats(n, -1e-3f, 1e-3f, seed++));
        v.push_back(random_floats(n, 0, 1e-6f, seed++));
        ema.push_back(random_floats(n, -1, 1, seed++));
        dp.push_back(std::make_unique<DeviceArray<float>>(p.back()));
        dg.push_back(std::make_unique<DeviceArray<float>>(g.back()));
        dm.push_back(std::make_unique<DeviceArray<float>>(m.back()));
        dv.push_back(std::make_unique<DeviceArray<float>>(v.back()));
        de.push_back(std::make_unique<DeviceArray<float>>(ema.back()));
        adam.push_back({dp.back()->get(), dg.back()->get(), dm.back()->get(), dv.back()->get(), n});
        emas.push_back({de.back()->get(), dp.back()->get(), n});
        guards.push_back({dg.back()->get(), n});
    }
    launch.adam(adam.data(), static_cast<int64_t>(adam.size()), k);
    launch.ema(emas.data(), static_cast<int64_t>(emas.size()), 0.999f);
    for (size_t t = 0; t < sizes.size(); ++t) {
        const int64_t n = sizes[t];
        stf::cpu::adam_update<float>(n, p[t].data(), g[t].data(), m[t].data(), v[t].data(), k);
        stf::cpu::ema_update<float>(n, ema[t].data(), p[t].data(), 0.999f);
        INFO("tensor ", t, " of ", n, " elements");
        CHECK(dp[t]->download() == p[t]);
        CHECK(dm[t]->download() == m[t]);
        CHECK(dv[t]->download() == v[t]);
        CHECK(de[t]->download() == ema[t]);
    }
    // The guard: NaN -> 0, +-inf -> +-1e5, everything else untouched.
    for (size_t t = 0; t < sizes.size(); ++t)
        if (sizes[t] >= 3) {
            g[t][0] = NAN;
            g[t][1] = INFINITY;
            g[t][2] = -INFINITY;
            dg[t]->upload(g[t]);
        }
    launch.guard(guards.data(), static_cast<int64_t>(guards.size()), 1e5f);
    for (size_t t = 0; t < sizes.size(); ++t) {
        if (sizes[t] >= 3) g[t][0] = 0, g[t][1] = 1e5f, g[t][2] = -1e5f;
        CHECK(dg[t]->download() == g[t]);
    }
}
}  // namespace

TEST_CASE("optim cuda: Adam, EMA and the gradient guard over many tensors match the per-tensor CPU twins" *
          needs_gpu()) {
    check_many({stf::cuda::adam_update_many, stf::cuda::ema_update_many, stf::cuda::nan_to_num_many});
}

// The first version (cuda/optim.cu), one launch per tensor, kept as a lesson: the same results bit for bit.
TEST_CASE("optim cuda: the first versions, *_many_v1 (one launch per tensor), match the per-tensor CPU twins" *
          needs_gpu()) {
    check_many({stf::cuda::adam_update_many_v1, stf::cuda::ema_update_many_v1, stf::cuda::nan_to_num_many_v1});
}

// The graph-ready forms read the step's constants from device memory (cuda/kernels.h): the same
// arithmetic, so the same bits.
TEST_CASE("optim cuda: Adam and EMA with their constants read from device memory match the CPU twins" *
          needs_gpu()) {
    check_many({[](const stf::cuda::AdamOperands* t, int64_t count, const stf::optim::AdamConstants<float>& k) {
                    const float* values = reinterpret_cast<const float*>(&k);
                    DeviceArray<float> on_device(std::vector<float>(values, values + 7));
                    stf::cuda::adam_update_many(t, count,
                                                reinterpret_cast<const stf::optim::AdamConstants<float>*>(on_device.get()));
                },
                [](const stf::cuda::EmaOperands* t, int64_t count, float beta) {
                    DeviceArray<float> on_device(std::vector<float>{beta});
                    stf::cuda::ema_update_many(t, count, on_device.get());
                },
                stf::cuda::nan_to_num_many});
}

#endif  // STF_WITH_CUDA
