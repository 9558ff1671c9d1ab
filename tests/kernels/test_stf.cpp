// The STF target's two kernels (cuda/stf.cu; CPU twin in tensor/cpu/stf.cpp; the target itself in
// diffusion/stf_target.cpp): the squared distances from each noisy sample to each reference image, and
// one chunk of the streamed softmax over them.
//
// The target for sample y_i at noise level sigma_i is sum_j w_ij x_j with w_i = softmax_j(-||y_i -
// x_j||^2 / 2 sigma_i^2). Streaming the references in chunks, each chunk's logits are the distances
// times coef_i = -1 / (2 sigma_i^2); a running max m_i, weight sum, sum of squared weights and
// accumulator acc_i are rescaled by exp(old m_i - new m_i) whenever a chunk raises the max (the
// online softmax), and a GEMM adds the chunk's weights times its images to acc.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "diffusion/stf_target.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference, in long double: distances from the differences, and the chunk update as
// its contract in cuda/kernels.h states it.
// =================================================================================================
namespace {

template <class T>
std::vector<long double> ref_sq_distances(int64_t b, int64_t n, int64_t d, const std::vector<T>& y,
                                          const std::vector<T>& x) {
    std::vector<long double> out(size_t(b * n));
    for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < n; ++j) {
            long double sum = 0;
            for (int64_t k = 0; k < d; ++k) {
                const long double diff = (long double)y[size_t(i * d + k)] - (long double)x[size_t(j * d + k)];
                sum += diff * diff;
            }
            out[size_t(i * n + j)] = sum;
        }
    return out;
}

// The running state of b rows of the streamed softmax.
struct ChunkState {
    std::vector<double> dist, row_max, weight_sum, weight_sq_sum, acc;  // dist becomes the chunk's weights
};

ChunkState ref_stf_softmax_chunk(int64_t b, int64_t len, int64_t d, const std::vector<double>& coef, ChunkState s) {
    for (int64_t i = 0; i < b; ++i) {
        long double m = s.row_max[i];
        for (int64_t j = 0; j < len; ++j) m = std::max(m, (long double)s.dist[i * len + j] * coef[i]);
        const long double r = std::exp((long double)s.row_max[i] - m);
        long double sum = 0, sq = 0;
        for (int64_t j = 0; j < len; ++j) {
            const long double w = std::exp((long double)s.dist[i * len + j] * coef[i] - m);
            s.dist[i * len + j] = double(w);
            sum += w;
            sq += w * w;
        }
        s.weight_sum[i] = double(s.weight_sum[i] * r + sum);
        s.weight_sq_sum[i] = double(s.weight_sq_sum[i] * r * r + sq);
        for (int64_t k = 0; k < d; ++k) s.acc[i * d + k] = double(s.acc[i * d + k] * r);
        s.row_max[i] = double(m);
    }
    return s;
}

template <class T> std::vector<T> as(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }

// A state as an earlier chunk leaves it, and a chunk whose distances are those of CIFAR-sized images
// (hundreds to thousands) at sigma from 5 to 13: logits from -60 to -0.3, some rows raising their max and
// some not.
ChunkState random_chunk_state(int64_t b, int64_t len, int64_t d, std::vector<double>& coef, unsigned seed) {
    ChunkState s{random_vector<double>(size_t(b * len), 100.0, 3000.0, seed),
                 random_vector<double>(size_t(b), -4.0, -0.1, seed + 1),
                 random_vector<double>(size_t(b), 1.0, 3.0, seed + 2),
                 random_vector<double>(size_t(b), 0.5, 1.0, seed + 3),
                 random_vector<double>(size_t(b * d), -1.0, 1.0, seed + 4)};
    coef = random_vector<double>(size_t(b), -0.02, -0.003, seed + 5);
    return s;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("stf cpu: sq_distances is the definition, ragged blocks, and tiny distances without cancellation", T,
                   float, double) {
    // n = 37 leaves a partial cache block and a partial group of four; d = 203 a partial span and lane.
    const int64_t b = 5, n = 37, d = 203;
    auto y = random_vector<T>(size_t(b * d), -1.0, 1.0, 41);
    const auto x = random_vector<T>(size_t(n * d), -1.0, 1.0, 42);
    // Sample 3 sits 1e-3 from reference 30 in every feature: distance 203e-6 beside |x|^2 ~ 68, which a
    // norms-and-dot-product formula would lose in float.
    for (int64_t k = 0; k < d; ++k) y[size_t(3 * d + k)] = x[size_t(30 * d + k)] + T(1e-3);
    std::vector<T> out(size_t(b * n), T(-7));
    cpu::sq_distances<T>(b, n, d, y.data(), x.data(), out.data());
    double worst = 0;
    for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < n; ++j) {
            long double want = 0;
            for (int64_t k = 0; k < d; ++k) {
                const long double diff = (long double)y[size_t(i * d + k)] - (long double)x[size_t(j * d + k)];
                want += diff * diff;
            }
            worst = std::max(worst, double(std::abs(out[size_t(i * n + j)] - want) / want));
        }
    CHECK(worst <= (std::is_same_v<T, float> ? 1e-6 : 1e-14));
    // The tiny one, on its own: each difference is 1e-3 up to the rounding of x + 1e-3 in T.
    CHECK(double(out[size_t(3 * n + 30)]) == doctest::Approx(203e-6).epsilon(std::is_same_v<T, float> ? 1e-3 : 1e-9));
}

TEST_CASE_TEMPLATE("stf cpu: stf_softmax_chunk rescales the running state and turns distances into weights", T,
                   float, double) {
    // 9 rows, chunks of 37 (not a multiple of any vector width), d 50; a long row for the threaded path.
    for (int64_t len : {int64_t(37), int64_t(5000)}) {
        CAPTURE(len);
        const int64_t b = 9, d = 50;
        std::vector<double> coef;
        const ChunkState start = random_chunk_state(b, len, d, coef, 60 + unsigned(len));
        const ChunkState want = ref_stf_softmax_chunk(b, len, d, coef, start);
        int raised = 0;
        for (int64_t i = 0; i < b; ++i) raised += want.row_max[i] > start.row_max[i];
        CHECK(raised > 0);      // some rows' max moved (their state was rescaled)
        CHECK(raised < int(b));  // and some did not

        std::vector<T> dist = as<T>(start.dist), row_max = as<T>(start.row_max), sum = as<T>(start.weight_sum),
                       sq = as<T>(start.weight_sq_sum), acc = as<T>(start.acc);
        const std::vector<T> c = as<T>(coef);
        cpu::stf_softmax_chunk<T>(b, len, d, c.data(), dist.data(), row_max.data(), sum.data(), sq.data(), acc.data());
        // Weights and the running sums are relative quantities (the logits' rounding in float moves
        // them by ~1e-6 relative at logits of 60); the max is a logit.
        const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;
        CHECK(rel_error(dist, want.dist) <= tolerance);
        CHECK(max_err(row_max, want.row_max) <= tolerance);
        CHECK(rel_error(sum, want.weight_sum) <= tolerance);
        CHECK(rel_error(sq, want.weight_sq_sum) <= tolerance);
        CHECK(rel_error(acc, want.acc) <= tolerance);
    }
}

// =================================================================================================
// (c) The CUDA kernels against the CPU twin: the raw chunk kernel, then both through the op layer at
// training sizes (the distance GEMM's 64 x 64 tiles, whole and ragged) and across sigma. Relative error
// ||gpu - cpu|| / ||cpu|| under 1e-5.
// =================================================================================================
#if STF_WITH_CUDA

TEST_CASE("stf cuda: stf_softmax_chunk matches the CPU twin" * needs_gpu()) {
    for (int64_t len : {int64_t(1), int64_t(37), int64_t(8192)}) {
        CAPTURE(len);
        const int64_t b = 64, d = 3072;
        std::vector<double> coef_d;
        const ChunkState start = random_chunk_state(b, len, d, coef_d, 70 + unsigned(len));
        const std::vector<float> coef = as<float>(coef_d);
        std::vector<float> dist = as<float>(start.dist), row_max = as<float>(start.row_max),
                           sum = as<float>(start.weight_sum), sq = as<float>(start.weight_sq_sum),
                           acc = as<float>(start.acc);
        DeviceArray<float> d_coef(coef), d_dist(dist), d_max(row_max), d_sum(sum), d_sq(sq), d_acc(acc);
        cpu::stf_softmax_chunk<float>(b, len, d, coef.data(), dist.data(), row_max.data(), sum.data(), sq.data(),
                                      acc.data());
        cuda::stf_softmax_chunk(b, len, d, d_coef.get(), d_dist.get(), d_max.get(), d_sum.get(), d_sq.get(),
                                d_acc.get());
        CHECK(rel_error(d_dist.download(), dist) < 1e-5);
        CHECK(rel_error(d_max.download(), row_max) < 1e-5);
        CHECK(rel_error(d_sum.download(), sum) < 1e-5);
        CHECK(rel_error(d_sq.download(), sq) < 1e-5);
        CHECK(rel_error(d_acc.download(), acc) < 1e-5);
    }
}

// The first versions (cuda/stf.cu, "version 1"), kept as lessons: the same contracts, so the same checks.
TEST_CASE("stf cuda: the first versions, sq_distances_v1 and stf_softmax_chunk_v1, match the CPU twin" * needs_gpu()) {
    for (auto [b, n, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 65, 17}, {64, 1024, 3072}, {130, 77, 784}}) {
        CAPTURE(b);
        CAPTURE(n);
        CAPTURE(d);
        const std::vector<float> y = random_floats(b * d, -1, 1, unsigned(b + d)), x = random_floats(n * d, -1, 1, unsigned(n));
        std::vector<float> want(static_cast<size_t>(b * n));
        cpu::sq_distances<float>(b, n, d, y.data(), x.data(), want.data());
        DeviceArray<float> d_y(y), d_x(x), d_out(std::vector<float>(want.size(), NAN));
        cuda::sq_distances_v1(b, n, d, d_y.get(), d_x.get(), d_out.get());
        CHECK(rel_error(d_out.download(), want) < 1e-5);
    }
    for (int64_t len : {int64_t(1), int64_t(37), int64_t(8192)}) {
        CAPTURE(len);
        const int64_t b = 64, d = 3072;
        std::vector<double> coef_d;
        const ChunkState start = random_chunk_state(b, len, d, coef_d, 80 + unsigned(len));
        const std::vector<float> coef = as<float>(coef_d);
        std::vector<float> dist = as<float>(start.dist), row_max = as<float>(start.row_max),
                           sum = as<float>(start.weight_sum), sq = as<float>(start.weight_sq_sum),
                           acc = as<float>(start.acc);
        DeviceArray<float> d_coef(coef), d_dist(dist), d_max(row_max), d_sum(sum), d_sq(sq), d_acc(acc);
        cpu::stf_softmax_chunk<float>(b, len, d, coef.data(), dist.data(), row_max.data(), sum.data(), sq.data(),
                                      acc.data());
        cuda::stf_softmax_chunk_v1(b, len, d, d_coef.get(), d_dist.get(), d_max.get(), d_sum.get(), d_sq.get(),
                                   d_acc.get());
        CHECK(rel_error(d_dist.download(), dist) < 1e-5);
        CHECK(rel_error(d_max.download(), row_max) < 1e-5);
        CHECK(rel_error(d_sum.download(), sum) < 1e-5);
        CHECK(rel_error(d_sq.download(), sq) < 1e-5);
        CHECK(rel_error(d_acc.download(), acc) < 1e-5);
    }
}

TEST_CASE("stf cuda: sq_distances, sizes off the 64 x 64 tile" * needs_gpu()) {
    for (auto [b, n, d] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 65, 17}, {64, 1024, 3072}, {130, 77, 784}}) {
        CAPTURE(b);
        CAPTURE(n);
        CAPTURE(d);
        Generator gen(b + n + d);
        Tensor y = ops::randn({b, d}, gen), x = ops::randn({n, d}, gen);
        Tensor cpu = ops::sq_distances(y, x);
        Tensor gpu = ops::sq_distances(ops::to(y, Device::cuda()), ops::to(x, Device::cuda()));
        CHECK(rel_error(gpu, cpu) < 1e-5);
    }
}

TEST_CASE("stf cuda: the STF target at training size, streamed large reference, sigma 0.002 to 80" * needs_gpu()) {
    struct Case {
        int64_t b, n, d, chunk;
    };
    for (Case c : {Case{64, 1024, 3072, 8192}, Case{16, 20000, 3072, 4096}, Case{5, 333, 100, 64}}) {
        CAPTURE(c.n);
        Generator gen(c.n);
        Tensor x = ops::add_scalar(ops::mul_scalar(ops::rand({c.n, c.d}, gen), 2.0), -1.0);
        std::vector<double> sig(c.b);
        for (int64_t i = 0; i < c.b; ++i) sig[i] = 0.002 * std::pow(40000.0, static_cast<double>(i) / std::max<int64_t>(c.b - 1, 1));
        Tensor sigma = ops::from_vector(sig, {c.b});
        Tensor y = ops::add(ops::narrow(x, 0, 0, c.b), ops::mul(ops::randn({c.b, c.d}, gen), ops::reshape(sigma, {c.b, 1})));
        auto cpu = diffusion::stf_target(y, sigma, x, c.chunk);
        auto gpu = diffusion::stf_target(ops::to(y, Device::cuda()), ops::to(sigma, Device::cuda()),
                                         ops::to(x, Device::cuda()), c.chunk);
        CHECK(gpu.target.device().is_cuda());
        CHECK(rel_error(gpu.target, cpu.target) < 1e-5);
        CHECK(rel_error(gpu.ess, cpu.ess) < 1e-4);
    }
}


TEST_CASE("stf cuda: the class-conditional STF target (per-class reference blocks)" * needs_gpu()) {
    // CIFAR-like: 64 images of 10 classes against blocks of 256 references each.
    const int64_t b = 64, d = 3072, per = 256, classes = 10;
    Generator gen(21);
    Tensor x = ops::add_scalar(ops::mul_scalar(ops::rand({classes * per, d}, gen), 2.0), -1.0);
    std::vector<diffusion::ReferenceGroup> groups(classes);
    for (int64_t c = 0; c < classes; ++c) groups[c].start = c * per, groups[c].length = per;
    for (int64_t i = 0; i < b; ++i) groups[(i * 7) % classes].rows.push_back(i);
    std::vector<double> sig(b);
    for (int64_t i = 0; i < b; ++i) sig[i] = 0.002 * std::pow(40000.0, static_cast<double>(i) / (b - 1));
    Tensor sigma = ops::from_vector(sig, {b});
    // Each noisy image around a reference of its own block, as in training.
    std::vector<Tensor> own;
    for (int64_t i = 0; i < b; ++i) own.push_back(ops::narrow(x, 0, ((i * 7) % classes) * per + i / classes, 1));
    Tensor y = ops::add(ops::cat(own, 0), ops::mul(ops::randn({b, d}, gen), ops::reshape(sigma, {b, 1})));
    auto cpu = diffusion::stf_target_grouped(y, sigma, x, groups);
    auto gpu = diffusion::stf_target_grouped(ops::to(y, Device::cuda()), ops::to(sigma, Device::cuda()),
                                             ops::to(x, Device::cuda()), groups);
    CHECK(gpu.target.device().is_cuda());
    CHECK(rel_error(gpu.target, cpu.target) < 1e-5);
    CHECK(rel_error(gpu.ess, cpu.ess) < 1e-4);
}

#endif  // STF_WITH_CUDA
