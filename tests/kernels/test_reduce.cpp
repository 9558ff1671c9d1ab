// Reductions over the middle axis of a contiguous [outer, r, inner] view: sum and max
// (cuda/reduce.cu; CPU twin in tensor/cpu/reduce.cpp). inner = 1 reduces rows (a loss per image),
// inner > 1 a middle axis (a sum over channels, or over the batch for a bias gradient).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: one loop over r per output element, the sum in long double; max skips NaN.
// =================================================================================================
namespace {

template <class T>
std::vector<double> ref_reduce(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const std::vector<T>& x) {
    std::vector<double> out(static_cast<size_t>(outer * inner));
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < inner; ++j) {
            long double sum = 0, max = -INFINITY;
            for (int64_t k = 0; k < r; ++k) {
                const long double v = x[static_cast<size_t>((o * r + k) * inner + j)];
                sum += v;
                if (v > max) max = v;  // false for NaN: skipped
            }
            out[static_cast<size_t>(o * inner + j)] = static_cast<double>(op == ReduceOp::Sum ? sum : max);
        }
    return out;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("reduce cpu: sum and max over the middle dim", T, float, double) {
    // inner = 1 (reducing the last dim), a small inner, and one spanning two of the kernel's tiles
    // (large enough, at 40 * 5 * 300 values, to take the multi-threaded path).
    for (int64_t inner : {int64_t(1), int64_t(4), int64_t(300)}) {
        CAPTURE(inner);
        const int64_t outer = inner == 300 ? 40 : 3, r = 5;
        const auto x = random_vector<T>(size_t(outer * r * inner), -2.0, 2.0, 5);
        const std::vector<double> want_sum = ref_reduce(ReduceOp::Sum, outer, r, inner, x);
        const std::vector<double> want_max = ref_reduce(ReduceOp::Max, outer, r, inner, x);
        std::vector<T> out(size_t(outer * inner));
        cpu::reduce<T>(ReduceOp::Sum, outer, r, inner, out.data(), x.data());
        CHECK(max_err(out, want_sum) <= tol<T>());
        cpu::reduce<T>(ReduceOp::Max, outer, r, inner, out.data(), x.data());
        CHECK(max_err(out, want_max) == 0.0);
    }
}

TEST_CASE("reduce cpu: max skips NaN, as the CUDA kernel does") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<double> x = {nan, 1.0, nan, 3.0, 2.0};
    double out = 0;
    cpu::reduce<double>(ReduceOp::Max, 1, 5, 1, &out, x.data());
    CHECK(out == 3.0);
    CHECK(ref_reduce(ReduceOp::Max, 1, 5, 1, x)[0] == 3.0);
}

// =================================================================================================
// (c) The CUDA kernel against the CPU twin. The shapes cover each of the kernel's strategies: a warp
// per row up to 1024, a block per row, rows chunked in two and more stages, and inner > 1 coalesced
// along inner, chunked along r above 512 rows. Outputs poisoned with NaN; ||gpu - cpu|| / ||cpu|| < 1e-5.
// =================================================================================================
#if STF_WITH_CUDA
namespace {
constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("reduce cuda: sum and max over the middle dim match the CPU twin" * needs_gpu()) {
    struct Shape {
        int64_t outer, r, inner;
    };
    const Shape shapes[] = {
        // inner == 1: rows; warp per row up to 1024, block per row, chunked rows (two and more stages)
        {1, 1, 1}, {1000, 1, 1}, {1, 7, 1}, {7, 1000, 1}, {5, 1025, 1}, {3, 4099, 1}, {1, 65537, 1},
        {2, 300000, 1}, {1, 5000000, 1},
        // inner > 1: coalesced along inner; chunked along r above 512 rows
        {5, 7, 13}, {2, 1000, 33}, {1, 3, 65537}, {4099, 1, 7}, {1, 65537, 2}, {3, 4099, 40}, {1, 300000, 3},
    };
    uint32_t seed = 600;
    for (const Shape& s : shapes) {
        for (stf::ReduceOp op : {stf::ReduceOp::Sum, stf::ReduceOp::Max}) {
            INFO((op == stf::ReduceOp::Sum ? "sum" : "max"), " over [", s.outer, ", ", s.r, ", ", s.inner, "]");
            std::vector<float> x = random_floats(s.outer * s.r * s.inner, -1, 2, seed++);
            std::vector<float> expected(static_cast<size_t>(s.outer * s.inner));
            stf::cpu::reduce<float>(op, s.outer, s.r, s.inner, expected.data(), x.data());

            DeviceArray<float> dx(x), out(s.outer * s.inner);
            out.poison();
            stf::cuda::reduce(op, s.outer, s.r, s.inner, out.get(), dx.get());
            CHECK(rel_error(out.download(), expected) < kTol);
        }
    }
}

#endif  // STF_WITH_CUDA
