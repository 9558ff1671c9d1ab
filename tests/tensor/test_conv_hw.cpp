// conv2d_hw, the convolution with its own padding per axis (Inception's 1x7 and 7x1 kernels): equal to
// a plain convolution of the explicitly zero-padded input, in float32 and float64.
#include <doctest/doctest.h>

#include <cmath>

#include "tensor/ops.h"

using namespace stf;

TEST_CASE("conv2d_hw equals conv2d of the zero-padded input") {
    Generator gen(11);
    struct Case {
        int64_t r, s;
        int stride, pad_h, pad_w;
    };
    for (Case c : {Case{1, 7, 1, 0, 3}, Case{7, 1, 1, 3, 0}, Case{1, 3, 1, 0, 1}, Case{3, 3, 2, 0, 0}, Case{3, 1, 2, 1, 0}}) {
        for (DType dtype : {DType::F32, DType::F64}) {
            CAPTURE(c.r);
            CAPTURE(c.s);
            Tensor x = ops::randn({2, 5, 9, 8}, gen, dtype), w = ops::randn({4, 5, c.r, c.s}, gen, dtype);
            Tensor got = ops::conv2d_hw(x, w, c.stride, c.pad_h, c.pad_w);
            Tensor want = ops::conv2d(ops::pad(x, {{0, 0}, {0, 0}, {c.pad_h, c.pad_h}, {c.pad_w, c.pad_w}}), w, c.stride);
            REQUIRE(got.shape() == want.shape());
            std::vector<double> g = got.to_vector(), v = want.to_vector();
            double worst = 0;
            for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::abs(g[i] - v[i]));
            CHECK(worst < (dtype == DType::F32 ? 1e-5 : 1e-12));
        }
    }
    CHECK_THROWS_WITH_AS(ops::conv2d_hw(ops::zeros({1, 3, 4, 4}), ops::zeros({2, 4, 1, 7}), 1, 0, 3),
                         doctest::Contains("weight"), Error);
    CHECK_THROWS_WITH_AS(ops::conv2d_hw(ops::zeros({1, 3, 4, 4}), ops::zeros({2, 3, 1, 7}), 1, 0, 1),
                         doctest::Contains("larger than"), Error);
}
