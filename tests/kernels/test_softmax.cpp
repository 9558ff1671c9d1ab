// Row-wise softmax and log_softmax over a contiguous [rows, cols], forward and backward
// (cuda/softmax.cu; CPU twin in tensor/cpu/softmax.cpp). The attention of DDPM++ takes the softmax of
// rows of 256 (16x16 pixels) or 64 (8x8).
//
// Forward: y_j = exp(x_j - m) / sum_i exp(x_i - m) with m the row's max, so large logits do not
// overflow; log_softmax y_j = x_j - m - log sum_i exp(x_i - m). Backward from y and dy:
// dx_j = y_j (dy_j - sum_i dy_i y_i) for softmax and dx_j = dy_j - exp(y_j) sum_i dy_i for log_softmax.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: the definition in long double, and the backward pass through the Jacobian
// written out entry by entry.
// =================================================================================================
namespace {

// Softmax of one row, straight from the definition (shifted so large logits fit).
std::vector<double> ref_softmax(const std::vector<double>& x, bool log) {
    long double m = *std::max_element(x.begin(), x.end()), s = 0;
    for (double v : x) s += std::exp(static_cast<long double>(v) - m);
    std::vector<double> y;
    for (double v : x)
        y.push_back(log ? static_cast<double>(v - m - std::log(s)) : static_cast<double>(std::exp(v - m) / s));
    return y;
}

// The same over rows of a [rows, cols] matrix.
template <class T> std::vector<double> ref_softmax_rows(int64_t rows, int64_t cols, const std::vector<T>& x, bool log) {
    std::vector<double> want;
    for (int64_t i = 0; i < rows; ++i) {
        auto r = ref_softmax(std::vector<double>(x.begin() + i * cols, x.begin() + (i + 1) * cols), log);
        want.insert(want.end(), r.begin(), r.end());
    }
    return want;
}

// dx_j = sum_i dy_i dy_i/dx_j with the Jacobian dy_i/dx_j = p_i ((i == j) - p_j) of softmax, or
// (i == j) - p_j of log_softmax, where p = softmax(x) (= exp(y) for log_softmax).
std::vector<double> ref_softmax_rows_backward(int64_t rows, int64_t cols, const std::vector<double>& dy,
                                              const std::vector<double>& y, bool log) {
    std::vector<double> dx(y.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) {
            long double acc = 0;
            for (int64_t i = 0; i < cols; ++i) {
                const long double p_i = log ? std::exp((long double)y[r * cols + i]) : y[r * cols + i];
                const long double p_j = log ? std::exp((long double)y[r * cols + j]) : y[r * cols + j];
                const long double jac = log ? (i == j) - p_j : p_i * ((i == j) - p_j);
                acc += dy[r * cols + i] * jac;
            }
            dx[r * cols + j] = static_cast<double>(acc);
        }
    return dx;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("softmax cpu: rows match the definition, even with logits near 1000", T, float, double) {
    const int64_t rows = 3, cols = 5;
    const std::vector<T> x = {T(0.1), T(-1.2), T(2.0), T(0.0), T(0.7),   // ordinary
                              T(1000), T(1001), T(999), T(1000.5), T(998), // exp(1000) overflows unshifted
                              T(-5), T(-5), T(-5), T(-5), T(-5)};          // uniform
    for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<T> y(x.size());
        cpu::softmax_rows<T>(rows, cols, y.data(), x.data(), log);
        CHECK(max_err(y, ref_softmax_rows(rows, cols, x, log)) <= tol<T>());
    }
}

TEST_CASE("softmax cpu: backward against the exact Jacobian and finite differences (double)") {
    const int64_t rows = 2, cols = 6;
    auto x = random_vector<double>(size_t(rows * cols), -3.0, 3.0, 6);
    x[3] = 40.0;  // one dominant logit
    const auto dy = random_vector<double>(x.size(), -1.0, 1.0, 7);
    for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<double> y(x.size()), dx(x.size());
        cpu::softmax_rows<double>(rows, cols, y.data(), x.data(), log);
        cpu::softmax_rows_backward<double>(rows, cols, dx.data(), dy.data(), y.data(), log);
        CHECK(max_err(dx, ref_softmax_rows_backward(rows, cols, dy, y, log)) <= 1e-12);

        // Central differences of L(x) = <dy, softmax(x)>.
        auto loss = [&](const std::vector<double>& xs) {
            std::vector<double> ys(xs.size());
            cpu::softmax_rows<double>(rows, cols, ys.data(), xs.data(), log);
            return dot(dy, ys);
        };
        std::vector<double> fd(x.size());
        const double h = 1e-5;
        for (size_t i = 0; i < x.size(); ++i) {
            auto xp = x, xm = x;
            xp[i] += h;
            xm[i] -= h;
            fd[i] = (loss(xp) - loss(xm)) / (2 * h);
        }
        CHECK(max_err(dx, fd) <= 1e-8);
    }
}

TEST_CASE("softmax cpu: float backward against the reference") {
    // The float twin from its own forward output, against the Jacobian in long double on that output.
    const int64_t rows = 4, cols = 33;
    const auto x = random_vector<float>(size_t(rows * cols), -4.0, 4.0, 8);
    const auto dy = random_vector<float>(x.size(), -1.0, 1.0, 9);
    for (bool log : {false, true}) {
        CAPTURE(log);
        std::vector<float> y(x.size()), dx(x.size());
        cpu::softmax_rows<float>(rows, cols, y.data(), x.data(), log);
        cpu::softmax_rows_backward<float>(rows, cols, dx.data(), dy.data(), y.data(), log);
        const std::vector<double> want = ref_softmax_rows_backward(
            rows, cols, std::vector<double>(dy.begin(), dy.end()), std::vector<double>(y.begin(), y.end()), log);
        CHECK(max_err(dx, want) <= tol<float>());
    }
}

// =================================================================================================
// (c) The CUDA kernels against the CPU twin: a warp per row up to 1024 columns, a block per row above.
// Outputs poisoned with NaN; ||gpu - cpu|| / ||cpu|| < 1e-5.
// =================================================================================================
#if STF_WITH_CUDA
namespace {
constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("softmax cuda: softmax and log_softmax, forward and backward, match the CPU twins" * needs_gpu()) {
    struct Shape {
        int64_t rows, cols;
    };
    // Warp per row up to 1024 columns, block per row above.
    const Shape shapes[] = {{1, 1}, {4099, 1}, {7, 7}, {1000, 33}, {3, 1000}, {5, 1024}, {5, 1025}, {2, 4099},
                            {1, 65537}};
    uint32_t seed = 700;
    for (const Shape& s : shapes) {
        for (bool log : {false, true}) {
            INFO((log ? "log_softmax" : "softmax"), " over [", s.rows, ", ", s.cols, "]");
            int64_t n = s.rows * s.cols;
            // Values near 90: exp(x) would overflow float without the row max subtracted.
            std::vector<float> x = random_floats(n, 80, 100, seed++);
            std::vector<float> y(static_cast<size_t>(n));
            stf::cpu::softmax_rows<float>(s.rows, s.cols, y.data(), x.data(), log);

            DeviceArray<float> dx_in(x), dy_out(n);
            dy_out.poison();
            stf::cuda::softmax_rows(s.rows, s.cols, dy_out.get(), dx_in.get(), log);
            CHECK(rel_error(dy_out.download(), y) < kTol);

            // Backward from the CPU's y, so both sides differentiate the same forward output.
            std::vector<float> grad_y = random_floats(n, -1, 1, seed++);
            std::vector<float> expected(static_cast<size_t>(n));
            stf::cpu::softmax_rows_backward<float>(s.rows, s.cols, expected.data(), grad_y.data(), y.data(), log);

            DeviceArray<float> d_grad_y(grad_y), d_y(y), d_grad_x(n);
            d_grad_x.poison();
            stf::cuda::softmax_rows_backward(s.rows, s.cols, d_grad_x.get(), d_grad_y.get(), d_y.get(), log);
            CHECK(rel_error(d_grad_x.download(), expected) < kTol);
        }
    }
}

#endif  // STF_WITH_CUDA
