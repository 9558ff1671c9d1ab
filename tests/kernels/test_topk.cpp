// Per-row top-k (cuda/topk.cu; CPU twin in tensor/cpu/topk.cpp; the order in cuda/topk_math.h).
//
// For each row of x [rows, cols], the k smallest entries in ascending order and their columns, where
// "smaller" is IEEE 754's total order with every NaN last (-0 before +0), and equal values are ordered by
// column. That makes the chosen set definite even with ties, so the CUDA kernel must match the CPU twin
// exactly, values and columns, not just within a tolerance.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/topk_math.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/requirements.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#endif

using namespace stf;

// =================================================================================================
// (a) The naive reference: sort every column of the row by the order written out case by case, keep k.
// =================================================================================================
namespace {

template <class T> bool naive_before(T a, int64_t ia, T b, int64_t ib) {
    const bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) return na == nb ? ia < ib : nb;  // NaNs after everything, among themselves by column
    if (a < b) return true;
    if (b < a) return false;
    if (a == 0 && std::signbit(a) != std::signbit(b)) return std::signbit(a);  // -0 before +0
    return ia < ib;
}

template <class T> struct TopK {
    std::vector<T> values;
    std::vector<int64_t> indices;
};

template <class T> TopK<T> naive_topk(int64_t rows, int64_t cols, int64_t k, const std::vector<T>& x) {
    TopK<T> r;
    for (int64_t row = 0; row < rows; ++row) {
        std::vector<int64_t> order(static_cast<size_t>(cols));
        std::iota(order.begin(), order.end(), int64_t{0});
        const T* xr = x.data() + row * cols;
        std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return naive_before(xr[i], i, xr[j], j); });
        for (int64_t i = 0; i < k; ++i) {
            r.values.push_back(xr[order[i]]);
            r.indices.push_back(order[i]);
        }
    }
    return r;
}

template <class T> TopK<T> twin_topk(int64_t rows, int64_t cols, int64_t k, const std::vector<T>& x) {
    TopK<T> r{std::vector<T>(static_cast<size_t>(rows * k)), std::vector<int64_t>(static_cast<size_t>(rows * k))};
    cpu::topk_rows<T>(rows, cols, k, x.data(), r.values.data(), r.indices.data());
    return r;
}

// Bitwise equality, so that -0 and +0, and NaNs, are told apart and matched.
template <class T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return false;
    return true;
}

// Rows that exercise the order: many ties (values from a small set), both zeros, infinities, NaNs of
// either sign.
template <class T> std::vector<T> awkward_rows(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    const T specials[] = {T(0), T(-0.0), inf, -inf, nan, -nan, T(1), T(-1), T(0.5), T(0.5)};
    std::vector<T> x(static_cast<size_t>(rows * cols));
    for (T& v : x) {
        const unsigned pick = gen() % 4;
        if (pick == 0) v = specials[gen() % 10];
        else if (pick == 1) v = T(static_cast<int>(gen() % 7) - 3);  // ties
        else v = T(std::uniform_real_distribution<double>(-10, 10)(gen));
    }
    return x;
}

// Squared distances of noisy samples to a dataset: positive, all with the same top byte of the order key
// (the case the CUDA kernel's histograms must not serialise on), and a few exact duplicates.
std::vector<float> distance_rows(int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(1500.f, 2500.f);
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (float& v : x) v = u(gen);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j + 1 < cols; j += 97) x[r * cols + j + 1] = x[r * cols + j];
    return x;
}

}  // namespace

TEST_CASE("naive top-k: the order it encodes") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> x = {3, nan, -0.0, 0.0, -1, 3, -nan, -INFINITY};
    TopK<double> r = naive_topk<double>(1, 8, 8, x);
    CHECK(r.indices == std::vector<int64_t>{7, 4, 2, 3, 0, 5, 1, 6});
}

// =================================================================================================
// (b) The CPU twin against the naive reference.
// =================================================================================================
TEST_CASE_TEMPLATE("cpu topk_rows equals the naive reference: ties, signed zeros, infinities, NaNs", T, float, double) {
    struct Case {
        int64_t rows, cols, k;
    };
    for (Case c : {Case{1, 1, 1}, Case{3, 10, 1}, Case{4, 37, 37}, Case{5, 200, 17}, Case{2, 1000, 999}, Case{7, 64, 64}}) {
        CAPTURE(c.rows);
        CAPTURE(c.cols);
        CAPTURE(c.k);
        std::vector<T> x = awkward_rows<T>(c.rows, c.cols, static_cast<uint32_t>(c.cols * 31 + c.k));
        TopK<T> want = naive_topk(c.rows, c.cols, c.k, x), got = twin_topk(c.rows, c.cols, c.k, x);
        CHECK(got.indices == want.indices);
        CHECK(same_bits(got.values, want.values));
    }
}

TEST_CASE("cpu topk_rows at the nearest-neighbour target's size: 2048 of 20000 distances per row") {
    const int64_t rows = 3, cols = 20000, k = 2048;
    std::vector<float> x = distance_rows(rows, cols, 5);
    TopK<float> want = naive_topk(rows, cols, k, x), got = twin_topk(rows, cols, k, x);
    CHECK(got.indices == want.indices);
    CHECK(same_bits(got.values, want.values));
    for (int64_t i = 1; i < k; ++i) CHECK(got.values[i - 1] <= got.values[i]);
}

TEST_CASE("row_topk: float64 and float32 on the CPU, and bad k") {
    std::vector<double> v = {5, 1, 4, 1, 3, 9, 2, 6};
    Tensor x = ops::from_vector(v, {2, 4}, DType::F64);
    ops::RowTopK r = ops::row_topk(x, 2);
    CHECK(r.rows == 2);
    CHECK(r.k == 2);
    CHECK(r.values == std::vector<double>{1, 1, 2, 3});
    CHECK(r.indices == std::vector<int64_t>{1, 3, 2, 0});
    ops::RowTopK f = ops::row_topk(ops::to(x, DType::F32), 2);
    CHECK(f.values == r.values);
    CHECK(f.indices == r.indices);
    // A strided view is read through a contiguous copy.
    ops::RowTopK t = ops::row_topk(ops::transpose(x, 0, 1), 1);
    CHECK(t.indices == std::vector<int64_t>{1, 0, 1, 0});
    CHECK(test::has(test::error_of([&] { ops::row_topk(x, 5); }), "row_topk: k 5 is not in 1..4"));
    CHECK(test::has(test::error_of([&] { ops::row_topk(x, 0); }), "row_topk: k 0 is not in 1..4"));
    CHECK(test::has(test::error_of([&] { ops::row_topk(ops::reshape(x, {8}), 1); }), "row_topk: expected a matrix"));
}

// =================================================================================================
// (c) The CUDA kernel against the CPU twin: the same columns and the same values, bit for bit.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

TopK<float> cuda_topk(int64_t rows, int64_t cols, int64_t k, const std::vector<float>& x) {
    const size_t in_bytes = x.size() * sizeof(float), out = static_cast<size_t>(rows * k);
    void* dx = cuda::malloc(in_bytes);
    void* dv = cuda::malloc(out * sizeof(float));
    void* di = cuda::malloc(out * sizeof(int64_t));
    cuda::copy_host_to_device(dx, x.data(), in_bytes);
    cuda::topk_rows(rows, cols, k, static_cast<const float*>(dx), static_cast<float*>(dv), static_cast<int64_t*>(di));
    TopK<float> r{std::vector<float>(out), std::vector<int64_t>(out)};
    cuda::copy_device_to_host(r.values.data(), dv, out * sizeof(float));
    cuda::copy_device_to_host(r.indices.data(), di, out * sizeof(int64_t));
    cuda::free(dx);
    cuda::free(dv);
    cuda::free(di);
    return r;
}

}  // namespace

TEST_CASE("topk_rows, CUDA vs CPU twin: awkward rows, ragged sizes, the target's sizes" * stf::test::needs_gpu()) {
    struct Case {
        int64_t rows, cols, k;
        bool distances;
    };
    for (Case c : {Case{1, 1, 1, false}, Case{3, 1000, 7, false}, Case{9, 513, 513, false}, Case{2, 5000, 4096, false},
                   Case{128, 60000, 2048, true}, Case{5, 70001, 4096, true}, Case{70, 300, 1, true}}) {
        CAPTURE(c.rows);
        CAPTURE(c.cols);
        CAPTURE(c.k);
        std::vector<float> x = c.distances ? distance_rows(c.rows, c.cols, 11)
                                           : awkward_rows<float>(c.rows, c.cols, static_cast<uint32_t>(c.cols + c.k));
        TopK<float> want = twin_topk(c.rows, c.cols, c.k, x), got = cuda_topk(c.rows, c.cols, c.k, x);
        CHECK(got.indices == want.indices);
        CHECK(same_bits(got.values, want.values));
    }
}

TEST_CASE("row_topk on CUDA: the op reads both results back; k above the kernel's limit is refused" *
          stf::test::needs_gpu()) {
    std::vector<float> x = distance_rows(4, 9000, 3);
    Tensor cpu = ops::from_vector(std::vector<double>(x.begin(), x.end()), {4, 9000});
    Tensor gpu = ops::to(cpu, Device::cuda());
    ops::RowTopK a = ops::row_topk(cpu, 300), b = ops::row_topk(gpu, 300);
    CHECK(a.indices == b.indices);
    CHECK(a.values == b.values);
    CHECK(test::has(test::error_of([&] { ops::row_topk(gpu, topk::kMaxK + 1); }), "above the CUDA kernel's"));
}
#endif
