// Bilinear resizing (cuda/resize.cu, tensor/cpu/resize.cpp; inference only, Inception-v3's input): (a) a
// naive reference in long double from the two definitions (F.interpolate's half-pixel centres; TensorFlow
// 1's resize_bilinear), (b) the CPU twin against it, (c) known values and the raw op's errors, (d) the CUDA
// kernel against the CPU twin (suite "gpu").
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cuda/kernels.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"
#include "tests/requirements.h"

using namespace stf;

namespace {

struct ResizeCase {
    int64_t planes, h, w, out_h, out_w;
};
// CIFAR's 32x32 to Inception's 299x299, MNIST's 28x28, downscaling, odd and degenerate shapes.
const ResizeCase kCases[] = {{3, 32, 32, 299, 299}, {1, 28, 28, 299, 299}, {2, 9, 7, 4, 5},
                             {2, 5, 6, 13, 11},     {1, 1, 1, 3, 2},        {2, 8, 8, 8, 8}};

// One axis: the two source indices and the weight of the second, straight from the definitions.
struct Axis {
    int64_t i0, i1;
    long double weight1;
};
Axis source(int64_t j, int64_t in, int64_t out, bool half_pixel) {
    long double scale = static_cast<long double>(in) / out;
    long double s = half_pixel ? (j + 0.5L) * scale - 0.5L : j * scale;
    s = std::clamp<long double>(s, 0, in - 1);
    int64_t i0 = static_cast<int64_t>(std::floor(s));
    return {i0, std::min(i0 + 1, in - 1), s - i0};
}

std::vector<long double> reference_resize(const ResizeCase& c, const std::vector<double>& x, bool half_pixel) {
    std::vector<long double> y;
    for (int64_t p = 0; p < c.planes; ++p)
        for (int64_t i = 0; i < c.out_h; ++i)
            for (int64_t j = 0; j < c.out_w; ++j) {
                Axis r = source(i, c.h, c.out_h, half_pixel), q = source(j, c.w, c.out_w, half_pixel);
                auto at = [&](int64_t a, int64_t b) { return static_cast<long double>(x[(p * c.h + a) * c.w + b]); };
                y.push_back((1 - r.weight1) * ((1 - q.weight1) * at(r.i0, q.i0) + q.weight1 * at(r.i0, q.i1)) +
                            r.weight1 * ((1 - q.weight1) * at(r.i1, q.i0) + q.weight1 * at(r.i1, q.i1)));
            }
    return y;
}

std::vector<double> random_values(int64_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0, 255);
    std::vector<double> v(static_cast<size_t>(n));
    for (double& x : v) x = u(rng);
    return v;
}

template <class T> void check_twin(double tolerance) {
    unsigned seed = 7;
    for (const ResizeCase& c : kCases)
        for (bool half_pixel : {true, false}) {
            CAPTURE(c.h);
            CAPTURE(c.w);
            CAPTURE(c.out_h);
            CAPTURE(c.out_w);
            CAPTURE(half_pixel);
            std::vector<double> xd = random_values(c.planes * c.h * c.w, seed++);
            std::vector<T> x(xd.begin(), xd.end());
            std::vector<T> y(static_cast<size_t>(c.planes * c.out_h * c.out_w), std::numeric_limits<T>::quiet_NaN());
            cpu::resize_bilinear<T>(c.planes, c.h, c.w, c.out_h, c.out_w, half_pixel, x.data(), y.data());
            std::vector<long double> want = reference_resize(c, std::vector<double>(x.begin(), x.end()), half_pixel);
            long double worst = 0;
            for (size_t i = 0; i < y.size(); ++i)
                worst = std::max(worst, std::fabs(static_cast<long double>(y[i]) - want[i]) / 255);
            CHECK(static_cast<double>(worst) < tolerance);
        }
}

}  // namespace

TEST_CASE("resize cpu: the twin against the long double reference (float and double)") {
    // Errors relative to the value range 255. In float the source coordinate itself is rounded (by up to
    // about in * 2^-24 pixels), which moves a sample by up to that share of the step between neighbours.
    check_twin<double>(1e-13);
    check_twin<float>(1e-5);
}

TEST_CASE("resize cpu: known values of both alignments") {
    Tensor x = ops::from_vector({0, 1}, {1, 1, 1, 2});
    // F.interpolate([0, 1], 4, bilinear, align_corners=False) = [0, 0.25, 0.75, 1].
    std::vector<double> half = ops::resize_bilinear(x, 1, 4, true).to_vector();
    CHECK(half == std::vector<double>{0, 0.25, 0.75, 1});
    // tf.image.resize_bilinear([0, 1], 4) samples 0, 0.5, 1, 1.5 (clamped): [0, 0.5, 1, 1].
    std::vector<double> tf = ops::resize_bilinear(x, 1, 4, false).to_vector();
    CHECK(tf == std::vector<double>{0, 0.5, 1, 1});
    // The same size is the identity in both.
    Generator gen(1);
    Tensor r = ops::randn({2, 3, 5, 7}, gen);
    CHECK(ops::resize_bilinear(r, 5, 7, true).to_vector() == r.to_vector());
    CHECK(ops::resize_bilinear(r, 5, 7, false).to_vector() == r.to_vector());
    CHECK(ops::resize_bilinear(r, 299, 299, true).shape() == Shape{2, 3, 299, 299});
    CHECK_THROWS_WITH_AS(ops::resize_bilinear(r, 0, 4, true), doctest::Contains("output size"), Error);
    CHECK_THROWS_WITH_AS(ops::resize_bilinear(ops::zeros({3, 5, 5}), 4, 4, true), doctest::Contains("[n, c, h, w]"),
                         Error);
}

#if STF_WITH_CUDA
TEST_CASE("resize cuda: the kernel against the CPU twin" * test::needs_gpu()) {
    unsigned seed = 50;
    for (const ResizeCase& c : kCases)
        for (bool half_pixel : {true, false}) {
            CAPTURE(c.h);
            CAPTURE(c.out_h);
            CAPTURE(half_pixel);
            Tensor x = ops::from_vector(random_values(c.planes * c.h * c.w, seed++), {c.planes, 1, c.h, c.w});
            std::vector<double> want = ops::resize_bilinear(x, c.out_h, c.out_w, half_pixel).to_vector();
            std::vector<double> got =
                ops::to(ops::resize_bilinear(ops::to(x, Device::cuda()), c.out_h, c.out_w, half_pixel), Device::cpu())
                    .to_vector();
            REQUIRE(got.size() == want.size());
            double worst = 0;
            for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]) / 255);
            CHECK(worst < 1e-5);  // fused multiply-adds may round the coordinate differently
        }
}
#endif
