// bench_conv_cpu: the CPU convolutions of the CPU row (DDPM++-small: model_channels 32, channel_mult
// [1, 2, 2], 2 blocks, attention at 16, 32x32x1, batch 32), each shape in the three directions, timed
// on the im2col + OpenBLAS twin and on oneDNN in each layout its primitives can be built on
// (tensor/cpu/conv_onednn.h), in GFLOP/s. The last lines weight every shape by how often one training
// step's forward pass runs it (each forward convolution has a data and a weight gradient in the
// backward pass) and give the convolutions' share of a step in each variant, so the layout the
// kernels use by default is the one measured fastest here.
//
// Timing: one warm-up call (which builds and caches the oneDNN primitive), then 5 timings of --reps
// back-to-back calls; the median is reported. Each variant's outputs are checked against the twin's
// (||onednn - im2col|| / ||im2col||); a variant beyond 1e-5 fails the program.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "tensor/cpu/conv_onednn.h"
#include "tensor/cpu/kernels.h"
#include "tensor/tensor.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_conv_cpu [--batch N] [--reps N] [--filter TEXT]

Times the CPU convolutions of DDPM++-small (the CPU row of docs/perf.md) on the im2col + OpenBLAS
twin and on oneDNN (plain NCHW/OIHW primitives; NCHW activations with oneDNN's weight layout; oneDNN's
layouts for everything, reordered every call; the default, chosen by shape), forward, data gradient
and weight gradient, in GFLOP/s, and the convolutions' time per training step in each variant.

  --batch N      images per call (default 32)
  --reps N       calls per timing (default 3); 5 timings, median reported
  --filter TEXT  only the shapes whose name contains TEXT (e.g. "3x3", "@8")
)";

struct UNetConv {
    int64_t c, k, res, kernel, stride, groups, count;  // count: forward calls per training step
};

// The distinct convolutions of one DDPM++-small forward pass at 32x32 and how often each runs: the
// resampling ones (2x2, stride 2, one group per channel) are the FIR down- and up-sampling filters.
const std::vector<UNetConv> kShapes = {
    {1, 32, 32, 3, 1, 1, 1},    {32, 32, 32, 3, 1, 1, 7},   {64, 32, 32, 3, 1, 1, 2},   {96, 32, 32, 3, 1, 1, 1},
    {64, 64, 32, 3, 1, 1, 2},   {32, 1, 32, 3, 1, 1, 1},    {64, 32, 32, 1, 1, 1, 2},   {96, 32, 32, 1, 1, 1, 1},
    {64, 64, 32, 1, 1, 1, 1},   {32, 32, 16, 3, 1, 1, 2},   {32, 64, 16, 3, 1, 1, 1},   {64, 64, 16, 3, 1, 1, 8},
    {96, 64, 16, 3, 1, 1, 1},   {128, 64, 16, 3, 1, 1, 2},  {32, 32, 16, 1, 1, 1, 1},   {32, 64, 16, 1, 1, 1, 1},
    {64, 64, 16, 1, 1, 1, 4},   {64, 192, 16, 1, 1, 1, 3},  {96, 64, 16, 1, 1, 1, 1},   {128, 64, 16, 1, 1, 1, 2},
    {64, 64, 8, 3, 1, 1, 13},   {128, 64, 8, 3, 1, 1, 3},   {64, 64, 8, 1, 1, 1, 2},    {64, 192, 8, 1, 1, 1, 1},
    {128, 64, 8, 1, 1, 1, 3},   {32, 32, 32, 2, 2, 32, 2},  {64, 64, 32, 2, 2, 64, 2},  {64, 64, 16, 2, 2, 64, 4},
};

ConvShape shape_of(const UNetConv& u, int64_t batch) {
    ConvShape s;
    s.n = batch, s.c = u.c, s.h = s.w = u.res, s.k = u.k, s.r = s.s = u.kernel;
    s.stride_h = s.stride_w = u.stride;
    s.pad_h = s.pad_w = u.kernel == 3 ? 1 : 0;
    s.groups = u.groups;
    return s;
}

std::string name_of(const UNetConv& u) {
    return std::to_string(u.kernel) + "x" + std::to_string(u.kernel) + (u.groups > 1 ? " depthwise/2" : "") + " " +
           std::to_string(u.c) + "->" + std::to_string(u.k) + " @" + std::to_string(u.res);
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen);
    return v;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        norm += double(want[i]) * want[i];
    }
    return std::sqrt(diff / std::max(norm, 1e-300));
}

// Median seconds per call of each variant over 5 rounds, each round timing `reps` calls of every
// variant in turn (so a change in the machine's load hits all variants alike), after one warm-up call
// of each.
std::vector<double> seconds_per_call(int64_t reps, const std::vector<std::function<void()>>& calls) {
    for (const auto& call : calls) call();
    std::vector<std::vector<double>> t(calls.size());
    for (int round = 0; round < 5; ++round)
        for (size_t v = 0; v < calls.size(); ++v) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int64_t r = 0; r < reps; ++r) calls[v]();
            t[v].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(reps));
        }
    std::vector<double> median;
    for (auto& tv : t) {
        std::sort(tv.begin(), tv.end());
        median.push_back(tv[2]);
    }
    return median;
}

enum Variant { kIm2col, kPlain, kBlockedWeights, kBlocked, kByShape, kVariants };
const char* kVariantNames[kVariants] = {"im2col", "dnnl plain", "dnnl blk-w", "dnnl blocked", "dnnl default"};
const cpu::onednn::Layout kLayouts[kVariants] = {cpu::onednn::Layout::plain, cpu::onednn::Layout::plain,
                                                 cpu::onednn::Layout::blocked_weights, cpu::onednn::Layout::blocked,
                                                 cpu::onednn::Layout::by_shape};

}  // namespace

int main(int argc, char** argv) {
    return apps::run_program("bench_conv_cpu", argc, argv, kUsage, [](apps::Flags& f) {
        const int64_t batch = f.integer("batch", 32), reps = f.integer("reps", 3);
        const std::string filter = f.str("filter", "");
        f.check_all_used();
        STF_CHECK(batch >= 1 && reps >= 1, "bench_conv_cpu: --batch and --reps must be at least 1");
        const bool any_match = std::any_of(kShapes.begin(), kShapes.end(), [&](const UNetConv& u) {
            return name_of(u).find(filter) != std::string::npos;
        });
        STF_CHECK(any_match, "bench_conv_cpu: no shape's name contains --filter \"" << filter
                                                                                    << "\" (names look like \"3x3 64->64 @16\")");
        const int variants = cpu::onednn::available() ? kVariants : 1;
        if (variants == 1) std::printf("built without oneDNN: the im2col twin only\n");

        const std::string header = "shape (batch " + std::to_string(batch) + ")";
        std::printf("%-26s %-16s", header.c_str(), "direction");
        for (int v = 0; v < variants; ++v) std::printf(" %13s", kVariantNames[v]);
        std::printf("   GFLOP/s\n");
        double step_seconds[kVariants] = {};
        double worst_error = 0;
        for (const UNetConv& u : kShapes) {
            const std::string name = name_of(u);
            if (name.find(filter) == std::string::npos) continue;
            const ConvShape s = shape_of(u, batch);
            const int64_t p = s.out_h(), q = s.out_w();
            const auto x = random_floats(size_t(s.n * s.c * s.h * s.w), 1);
            const auto w = random_floats(size_t(s.k * (s.c / s.groups) * s.r * s.s), 2);
            const auto dy = random_floats(size_t(s.n * s.k * p * q), 3);
            const double flops = 2.0 * double(s.n * s.k * p * q) * double((s.c / s.groups) * s.r * s.s);
            for (int dir = 0; dir < 3; ++dir) {
                static const char* kDirections[3] = {"forward", "backward_data", "backward_weight"};
                const size_t out_size = dir == 0 ? dy.size() : dir == 1 ? x.size() : w.size();
                auto out = std::vector<std::vector<float>>(size_t(variants), std::vector<float>(out_size));
                std::vector<std::function<void()>> calls;
                for (int v = 0; v < variants; ++v)
                    calls.push_back([&, v, dir] {
                        float* o = out[size_t(v)].data();
                        const auto layout = kLayouts[v];
                        if (v == kIm2col) {
                            if (dir == 0) cpu::conv2d_forward_im2col<float>(s, x.data(), w.data(), o);
                            if (dir == 1) cpu::conv2d_backward_data_im2col<float>(s, dy.data(), w.data(), o);
                            if (dir == 2) cpu::conv2d_backward_weight_im2col<float>(s, x.data(), dy.data(), o);
                            return;
                        }
                        const bool took = dir == 0   ? cpu::onednn::conv2d_forward(s, x.data(), w.data(), o, layout)
                                          : dir == 1 ? cpu::onednn::conv2d_backward_data(s, dy.data(), w.data(), o, layout)
                                                     : cpu::onednn::conv2d_backward_weight(s, x.data(), dy.data(), o, layout);
                        // The default leaves the weight gradient to the im2col path (conv_onednn.h).
                        if (!took && v == kByShape) {
                            if (dir == 0) cpu::conv2d_forward_im2col<float>(s, x.data(), w.data(), o);
                            if (dir == 1) cpu::conv2d_backward_data_im2col<float>(s, dy.data(), w.data(), o);
                            if (dir == 2) cpu::conv2d_backward_weight_im2col<float>(s, x.data(), dy.data(), o);
                            return;
                        }
                        STF_CHECK(took, "bench_conv_cpu: oneDNN declined " << name);
                    });
                const std::vector<double> t = seconds_per_call(reps, calls);
                std::printf("%-26s %-16s", name.c_str(), kDirections[dir]);
                for (int v = 0; v < variants; ++v) {
                    if (v != kIm2col) worst_error = std::max(worst_error, rel_error(out[size_t(v)], out[kIm2col]));
                    step_seconds[v] += t[size_t(v)] * double(u.count);
                    std::printf(" %13.1f", flops / t[size_t(v)] * 1e-9);
                }
                std::printf("\n");
            }
        }
        std::printf("\nconvolutions per training step (forward + both gradients, weighted by use):\n");
        for (int v = 0; v < variants; ++v)
            std::printf("  %-13s %8.1f ms  (%.2fx the im2col twin's speed)\n", kVariantNames[v], step_seconds[v] * 1e3,
                        step_seconds[kIm2col] / step_seconds[v]);
        if (variants > 1) std::printf("worst ||onednn - im2col|| / ||im2col||: %.2e\n", worst_error);
        STF_CHECK(worst_error < 1e-5, "bench_conv_cpu: oneDNN disagrees with the im2col twin by " << worst_error);
    });
}
