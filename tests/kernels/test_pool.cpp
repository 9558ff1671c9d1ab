// Pooling kernels (cuda/pool.cu, tensor/cpu/pool.cpp; inference only, for the FID feature network):
// (a) a naive reference in long double, written from the definitions; (b) the CPU twin against it, in
// float and double, on Inception's shapes and odd ones; (c) the raw ops' shapes and errors; (d) the CUDA
// kernels against the CPU twin (suite "gpu").
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"
#include "tests/requirements.h"

using namespace stf;

namespace {

struct PoolCase {
    int64_t planes, h, w;
    int kernel, stride, padding;
};

// Inception-v3's pools (3x3 stride 2 without padding; 3x3 stride 1 padding 1) and shapes whose windows
// run off the bottom and right edges unevenly.
const PoolCase kCases[] = {{3, 7, 7, 3, 2, 0}, {2, 9, 8, 3, 1, 1}, {4, 35, 35, 3, 1, 1}, {2, 17, 17, 3, 2, 0},
                           {5, 6, 11, 2, 2, 1}, {1, 1, 1, 1, 1, 0}, {3, 10, 13, 5, 3, 2}};

int64_t out_size(int64_t in, int kernel, int stride, int padding) { return (in + 2 * padding - kernel) / stride + 1; }

// The reference: every tap of the window, skipping those in the padding.
std::vector<long double> reference_pool(bool max, const PoolCase& c, const std::vector<double>& x, bool include_pad) {
    const int64_t oh_n = out_size(c.h, c.kernel, c.stride, c.padding), ow_n = out_size(c.w, c.kernel, c.stride, c.padding);
    std::vector<long double> y;
    for (int64_t p = 0; p < c.planes; ++p)
        for (int64_t oh = 0; oh < oh_n; ++oh)
            for (int64_t ow = 0; ow < ow_n; ++ow) {
                long double best = -std::numeric_limits<long double>::infinity(), sum = 0;
                int64_t inside = 0;
                for (int a = 0; a < c.kernel; ++a)
                    for (int b = 0; b < c.kernel; ++b) {
                        const int64_t i = oh * c.stride - c.padding + a, j = ow * c.stride - c.padding + b;
                        if (i < 0 || i >= c.h || j < 0 || j >= c.w) continue;
                        const long double v = x[(p * c.h + i) * c.w + j];
                        best = std::max(best, v);
                        sum += v;
                        ++inside;
                    }
                y.push_back(max ? best : sum / (include_pad ? c.kernel * c.kernel : inside));
            }
    return y;
}

std::vector<double> random_values(int64_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-3, 3);
    std::vector<double> v(static_cast<size_t>(n));
    for (double& x : v) x = u(rng);
    return v;
}

template <class T> double max_rel_error(const std::vector<T>& got, const std::vector<long double>& want) {
    REQUIRE(got.size() == want.size());
    long double worst = 0;
    for (size_t i = 0; i < got.size(); ++i)
        worst = std::max(worst, std::fabs(static_cast<long double>(got[i]) - want[i]) / (1 + std::fabs(want[i])));
    return static_cast<double>(worst);
}

template <class T> void check_twin_against_reference(double tolerance) {
    unsigned seed = 1;
    for (const PoolCase& c : kCases)
        for (int kind = 0; kind < 3; ++kind) {  // max, average excluding padding, average including it
            CAPTURE(c.planes);
            CAPTURE(c.h);
            CAPTURE(c.w);
            CAPTURE(c.kernel);
            CAPTURE(c.stride);
            CAPTURE(c.padding);
            CAPTURE(kind);
            std::vector<double> xd = random_values(c.planes * c.h * c.w, seed++);
            std::vector<T> x(xd.begin(), xd.end());
            std::vector<double> xr(x.begin(), x.end());  // the reference sees the rounded inputs
            const int64_t n_out =
                c.planes * out_size(c.h, c.kernel, c.stride, c.padding) * out_size(c.w, c.kernel, c.stride, c.padding);
            std::vector<T> y(static_cast<size_t>(n_out), std::numeric_limits<T>::quiet_NaN());
            if (kind == 0) cpu::max_pool2d<T>(c.planes, c.h, c.w, c.kernel, c.stride, c.padding, x.data(), y.data());
            else cpu::avg_pool2d<T>(c.planes, c.h, c.w, c.kernel, c.stride, c.padding, kind == 2, x.data(), y.data());
            CHECK(max_rel_error(y, reference_pool(kind == 0, c, xr, kind == 2)) < tolerance);
        }
}

}  // namespace

TEST_CASE("pool cpu: the twins against the long double reference (float and double)") {
    check_twin_against_reference<double>(1e-14);
    check_twin_against_reference<float>(2e-6);
}

TEST_CASE("pool cpu: known values: padding excluded from averages and never the maximum") {
    // A 3x3 plane 1..9, 3x3 windows, stride 1, padding 1.
    Tensor x = ops::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
    std::vector<double> avg = ops::avg_pool2d(x, 3, 1, 1, false).to_vector();
    CHECK(avg[0] == doctest::Approx((1 + 2 + 4 + 5) / 4.0));         // corner: 4 pixels inside
    CHECK(avg[1] == doctest::Approx((1 + 2 + 3 + 4 + 5 + 6) / 6.0));  // edge: 6 pixels
    CHECK(avg[4] == doctest::Approx(5));                              // centre: all 9
    std::vector<double> avg_incl = ops::avg_pool2d(x, 3, 1, 1, true).to_vector();
    CHECK(avg_incl[0] == doctest::Approx((1 + 2 + 4 + 5) / 9.0));
    // All negative: the zero padding must not win the maximum.
    Tensor neg = ops::mul_scalar(x, -1);
    std::vector<double> mx = ops::max_pool2d(neg, 3, 1, 1).to_vector();
    CHECK(mx[0] == -1);
    CHECK(mx[8] == -5);
    CHECK(ops::max_pool2d(x, 3, 2).to_vector() == std::vector<double>{9});
}

TEST_CASE("pool cpu: raw ops' shapes, float64, and clear errors") {
    Generator gen(3);
    Tensor x = ops::randn({2, 3, 147, 147}, gen);
    CHECK(ops::max_pool2d(x, 3, 2).shape() == Shape{2, 3, 73, 73});  // Inception's first max pool
    CHECK(ops::avg_pool2d(x, 3, 1, 1, false).shape() == Shape{2, 3, 147, 147});
    Tensor xd = ops::to(x, DType::F64);
    CHECK(ops::max_pool2d(xd, 3, 2).dtype() == DType::F64);
    // A non-contiguous view is pooled as its values.
    Tensor t = ops::transpose(x, 2, 3);
    std::vector<double> a = ops::max_pool2d(t, 3, 2).to_vector(), b = ops::max_pool2d(ops::contiguous(t), 3, 2).to_vector();
    CHECK(a == b);
    CHECK_THROWS_WITH_AS(ops::max_pool2d(ops::zeros({3, 4, 4}), 3, 1), doctest::Contains("[n, c, h, w]"), Error);
    CHECK_THROWS_WITH_AS(ops::avg_pool2d(x, 3, 1, 2), doctest::Contains("padding"), Error);
    CHECK_THROWS_WITH_AS(ops::max_pool2d(ops::zeros({1, 1, 2, 2}), 3, 1), doctest::Contains("larger than"), Error);
    CHECK_THROWS_WITH_AS(ops::max_pool2d(x, 3, 0), doctest::Contains("stride"), Error);
}

#if STF_WITH_CUDA
TEST_CASE("pool cuda: the kernels against the CPU twin" * test::needs_gpu()) {
    unsigned seed = 100;
    for (const PoolCase& c : kCases)
        for (int kind = 0; kind < 3; ++kind) {
            CAPTURE(c.h);
            CAPTURE(c.w);
            CAPTURE(c.kernel);
            CAPTURE(kind);
            std::vector<double> xd = random_values(c.planes * c.h * c.w, seed++);
            Tensor x = ops::from_vector(xd, {c.planes, 1, c.h, c.w});
            Tensor want = kind == 0 ? ops::max_pool2d(x, c.kernel, c.stride, c.padding)
                                    : ops::avg_pool2d(x, c.kernel, c.stride, c.padding, kind == 2);
            Tensor xg = ops::to(x, Device::cuda());
            Tensor got = kind == 0 ? ops::max_pool2d(xg, c.kernel, c.stride, c.padding)
                                   : ops::avg_pool2d(xg, c.kernel, c.stride, c.padding, kind == 2);
            // Same windows, same summation order: equal up to the division's rounding.
            std::vector<double> g = ops::to(got, Device::cpu()).to_vector(), w = want.to_vector();
            REQUIRE(g.size() == w.size());
            double worst = 0;
            for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - w[i]) / (1 + std::abs(w[i])));
            CHECK(worst < 1e-6);
        }
}
#endif
