// bench_stf_target: times the STF target (exact distances + streamed online softmax + GEMM) against
// the plain GEMM form of the same softmax (norms and a dot product, a row softmax, a second GEMM),
// at the sizes the PyTorch reference was timed at (docs/perf.md), and checks that the two agree; then the
// whole-dataset targets, STF over a reference set and the nearest-neighbour target (distances, per-row
// top-k, host draws, weighted sum), at a training step's size.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "apps/common/flags.h"
#include "cuda/runtime.h"
#include "diffusion/knn_target.h"
#include "diffusion/stf_target.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_stf_target [--device cuda|cpu] [--iters N] [--chunks LIST] [--profile]
Times diffusion::stf_target against GEMM + softmax + GEMM for (B, n, d) = (64, 1024, 3072),
(256, 2048, 3072) and (64, 50000, 3072), the last once per chunk size in LIST (default 8192,16384,65536:
the training default, and larger chunks down to one pass; each chunk keeps B x chunk logits). Then the
whole-dataset targets at B 64 over 50,000 images of 3072 (CPU: 16 over 4096): STF over the set, and kNN
with k 2048 and 256 draws (the kNN paper's) and with 1024 draws.
--profile (CUDA) records one call of each 64 x 50000 row for `ncu --profile-from-start off` (per-kernel
times; timings printed under the profiler are meaningless).
)";

// The GEMM form: logits_ij = (2 y_i.x_j - ||x_j||^2) / (2 sigma_i^2) (||y_i||^2 cancels in the softmax).
Tensor gemm_form(const Tensor& y, const Tensor& sigma, const Tensor& x) {
    int64_t b = y.size(0);
    Tensor xx = ops::reshape(ops::sum(ops::unary(UnaryOp::Square, x), {1}), {1, x.size(0)});
    Tensor dots = ops::matmul(y, x, false, true);
    Tensor coef = ops::reshape(ops::unary(UnaryOp::RDivScalar, ops::unary(UnaryOp::Square, sigma), 0.5), {b, 1});
    Tensor logits = ops::mul(ops::sub(ops::mul_scalar(dots, 2.0), xx), coef);
    return ops::matmul(ops::softmax(logits, 1), x);
}

template <class F> double time_ms(F&& f, int iters, Device device) {
    f();
    if (device.is_cuda()) cuda::synchronize();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    if (device.is_cuda()) cuda::synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / iters;
}

}  // namespace

int main(int argc, char** argv) {
    return apps::run_program("bench_stf_target", argc, argv, kUsage, [&](apps::Flags& flags) {
        Device device = Device::parse(flags.str("device", cuda::available() ? "cuda" : "cpu"));
        int iters = static_cast<int>(flags.integer("iters", device.is_cuda() ? 50 : 2));
        std::vector<int64_t> chunks = flags.int_list("chunks", {8192, 16384, 65536});
        for (int64_t c : chunks) STF_CHECK(c >= 1, "--chunks: chunk sizes must be positive, got " << c);
        const bool profile = flags.boolean("profile");
        STF_CHECK(!profile || device.is_cuda(), "--profile needs --device cuda");
        if (profile) iters = 1;
        flags.check_all_used();
        std::printf("%-34s %12s %12s %10s %12s\n", "B x n x d (chunk)", "stf ms", "gemm ms", "ratio", "rel diff");
        struct Size {
            int64_t b, n, d, chunk;
        };
        std::vector<Size> sizes{{64, 1024, 3072, 8192}, {256, 2048, 3072, 8192}};
        for (int64_t c : chunks) sizes.push_back({64, 50000, 3072, c});
        for (Size s : sizes) {
            if (!device.is_cuda() && s.n > 2048) continue;
            Generator gen(s.n);
            Tensor x = ops::to(ops::add_scalar(ops::mul_scalar(ops::rand({s.n, s.d}, gen), 2.0), -1.0), device);
            std::vector<double> sig(s.b);
            for (int64_t i = 0; i < s.b; ++i) sig[i] = std::exp(-1.2 + 1.2 * std::sin(static_cast<double>(i)));
            Tensor sigma = ops::from_vector(sig, {s.b}, DType::F32, device);
            Tensor y = ops::add(ops::narrow(x, 0, 0, s.b),
                                ops::mul(ops::to(ops::randn({s.b, s.d}, gen), device), ops::reshape(sigma, {s.b, 1})));
            double stf_ms = time_ms([&] { diffusion::stf_target(y, sigma, x, s.chunk); }, iters, device);
            double gemm_ms = time_ms([&] { gemm_form(y, sigma, x); }, iters, device);
            if (profile && s.n == 50000) {
                cuda::synchronize();
                cuda::profiler_start();
                diffusion::stf_target(y, sigma, x, s.chunk);
                cuda::synchronize();
                cuda::profiler_stop();
            }
            std::vector<double> a = diffusion::stf_target(y, sigma, x, s.chunk).target.to_vector(),
                                g = gemm_form(y, sigma, x).to_vector();
            double num = 0, den = 0;
            for (size_t i = 0; i < a.size(); ++i) num += (a[i] - g[i]) * (a[i] - g[i]), den += a[i] * a[i];
            char label[64];
            std::snprintf(label, sizeof(label), "%lld x %lld x %lld (%lld)", (long long)s.b, (long long)s.n,
                          (long long)s.d, (long long)s.chunk);
            std::printf("%-34s %12.3f %12.3f %10.2f %12.2e\n", label, stf_ms, gemm_ms, gemm_ms / stf_ms, std::sqrt(num / den));
        }
        if (profile) return;
        // The whole-dataset targets, the batch standing in for its first rows (augmentation off).
        const int64_t b = device.is_cuda() ? 64 : 16, n = device.is_cuda() ? 50000 : 4096, d = 3072;
        Generator gen(3);
        Tensor x = ops::to(ops::add_scalar(ops::mul_scalar(ops::rand({n, d}, gen), 2.0), -1.0), device);
        std::vector<double> sig(b);
        for (int64_t i = 0; i < b; ++i) sig[i] = std::exp(-1.2 + 1.2 * std::sin(static_cast<double>(i)));
        Tensor sigma = ops::from_vector(sig, {b}, DType::F32, device), lead = ops::contiguous(ops::narrow(x, 0, 0, b));
        Tensor y = ops::add(lead, ops::mul(ops::to(ops::randn({b, d}, gen), device), ops::reshape(sigma, {b, 1})));
        std::vector<int64_t> rows(static_cast<size_t>(b));
        for (int64_t i = 0; i < b; ++i) rows[i] = i;
        const diffusion::ReferenceSet set{lead, x, rows};
        std::printf("\n%-34s %12s\n", "whole-dataset target, B x N x d", "ms");
        char label[96];
        std::snprintf(label, sizeof(label), "stf-all %lld x %lld x %lld", (long long)b, (long long)n, (long long)d);
        std::printf("%-34s %12.3f\n", label,
                    time_ms([&] { diffusion::stf_target(y, sigma, set); }, std::max(1, iters / 5), device));
        for (int64_t draws : {int64_t{256}, int64_t{1024}}) {
            const int64_t k = std::min<int64_t>(2048, n);
            Generator g(5);
            std::snprintf(label, sizeof(label), "knn k%lld n%lld %lld x %lld x %lld", (long long)k, (long long)draws,
                          (long long)b, (long long)n, (long long)d);
            std::printf("%-34s %12.3f\n", label,
                        time_ms([&] { diffusion::knn_target(y, sigma, set, k, draws, g); }, std::max(1, iters / 5), device));
        }
    });
}
