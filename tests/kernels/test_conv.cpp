// 2-D convolutions, NCHW, with strides, padding and groups, in the three directions training needs:
// forward y = conv(x, w), backward-data dx (the adjoint in x) and backward-weight dw (the adjoint in
// w). cuDNN on the GPU (cuda/conv.cu: algorithm chosen once per shape, one shared workspace); on the
// CPU im2col + GEMM (tensor/cpu/conv.cpp): each image's input patches are unrolled into a matrix of
// (c / groups) r s rows by p q columns, so the convolution is one GEMM per image and group, and
// backward-data folds the columns back (col2im).
//
// For output (b, k, oh, ow), channel k of group gk = k / (K / groups) reads input channels
// gk (C / groups) .. (gk + 1) (C / groups) - 1 at rows oh stride_h - pad_h + kr and columns
// ow stride_w - pad_w + ks, zero outside the image.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/cpu/conv_onednn.h"
#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: all three products from one direct 7-loop nest in long double.
// =================================================================================================
namespace {
// y = conv(x, w), and the adjoints dx = sum over taps of dy * w, dw = sum over taps of dy * x.
struct DirectConv {
    std::vector<double> y, dx, dw;
};

template <class T>
DirectConv ref_conv2d(const ConvShape& s, const std::vector<T>& x, const std::vector<T>& w, const std::vector<T>& dy) {
    const int64_t p = s.out_h(), q = s.out_w(), cpg = s.c / s.groups, kpg = s.k / s.groups;
    DirectConv r{std::vector<double>(size_t(s.n * s.k * p * q)), {}, {}};
    std::vector<long double> dx(x.size()), dw(w.size());
    for (int64_t b = 0; b < s.n; ++b)
        for (int64_t ko = 0; ko < s.k; ++ko)
            for (int64_t oh = 0; oh < p; ++oh)
                for (int64_t ow = 0; ow < q; ++ow) {
                    const size_t yi = size_t(((b * s.k + ko) * p + oh) * q + ow);
                    long double acc = 0;
                    for (int64_t cl = 0; cl < cpg; ++cl)
                        for (int64_t kr = 0; kr < s.r; ++kr)
                            for (int64_t ks = 0; ks < s.s; ++ks) {
                                const int64_t ih = oh * s.stride_h - s.pad_h + kr, iw = ow * s.stride_w - s.pad_w + ks;
                                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                                const int64_t ci = (ko / kpg) * cpg + cl;
                                const size_t xi = size_t(((b * s.c + ci) * s.h + ih) * s.w + iw);
                                const size_t wi = size_t(((ko * cpg + cl) * s.r + kr) * s.s + ks);
                                acc += static_cast<long double>(x[xi]) * w[wi];
                                dx[xi] += static_cast<long double>(dy[yi]) * w[wi];
                                dw[wi] += static_cast<long double>(dy[yi]) * x[xi];
                            }
                    r.y[yi] = static_cast<double>(acc);
                }
    r.dx.assign(dx.begin(), dx.end());
    r.dw.assign(dw.begin(), dw.end());
    return r;
}

ConvShape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw, int64_t groups) {
    ConvShape cs;
    cs.n = n, cs.c = c, cs.h = h, cs.w = w, cs.k = k, cs.r = r, cs.s = s;
    cs.stride_h = sh, cs.stride_w = sw, cs.pad_h = ph, cs.pad_w = pw, cs.groups = groups;
    return cs;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================
namespace {

template <class T> void check_conv(const ConvShape& s, double tolerance) {
    const int64_t p = s.out_h(), q = s.out_w();
    const auto x = random_vector<T>(size_t(s.n * s.c * s.h * s.w), -1.0, 1.0, 18);
    const auto w = random_vector<T>(size_t(s.k * (s.c / s.groups) * s.r * s.s), -1.0, 1.0, 19);
    const auto dy = random_vector<T>(size_t(s.n * s.k * p * q), -1.0, 1.0, 20);
    const DirectConv want = ref_conv2d(s, x, w, dy);

    // Outputs start as garbage: every kernel must overwrite, not accumulate.
    std::vector<T> y(want.y.size(), T(77)), dx(x.size(), T(77)), dw(w.size(), T(77));
    cpu::conv2d_forward<T>(s, x.data(), w.data(), y.data());
    cpu::conv2d_backward_data<T>(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_weight<T>(s, x.data(), dy.data(), dw.data());
    CHECK(max_err(y, want.y) <= tolerance);
    CHECK(max_err(dx, want.dx) <= tolerance);
    CHECK(max_err(dw, want.dw) <= tolerance);
    // The im2col twin on its own (for float the kernels above may have run on oneDNN).
    std::vector<T> y2(want.y.size(), T(77)), dx2(x.size(), T(77)), dw2(w.size(), T(77));
    cpu::conv2d_forward_im2col<T>(s, x.data(), w.data(), y2.data());
    cpu::conv2d_backward_data_im2col<T>(s, dy.data(), w.data(), dx2.data());
    cpu::conv2d_backward_weight_im2col<T>(s, x.data(), dy.data(), dw2.data());
    CHECK(max_err(y2, want.y) <= tolerance);
    CHECK(max_err(dx2, want.dx) <= tolerance);
    CHECK(max_err(dw2, want.dw) <= tolerance);

    if constexpr (std::is_same_v<T, double>) {
        // The adjoint identity <conv(x, w), dy> = <x, bwd_data(dy, w)> = <w, bwd_weight(x, dy)>.
        const double lhs = dot(y, dy);
        CHECK(std::abs(dot(x, dx) - lhs) <= 1e-12 * std::abs(lhs));
        CHECK(std::abs(dot(w, dw) - lhs) <= 1e-12 * std::abs(lhs));
    }
}
}  // namespace

TEST_CASE_TEMPLATE("conv cpu: stride 2, padding 1, groups 2, non-square input", T, float, double) {
    check_conv<T>(conv_shape(2, 4, 7, 6, 6, 3, 3, 2, 2, 1, 1, 2), tol<T>());
}

TEST_CASE_TEMPLATE("conv cpu: unequal strides and padding, 2x3 kernel", T, float, double) {
    check_conv<T>(conv_shape(3, 3, 5, 8, 2, 2, 3, 1, 2, 0, 1, 1), tol<T>());
}

TEST_CASE_TEMPLATE("conv cpu: stride 1 with padding wider than the image, and pointwise", T, float, double) {
    // Stride-1 rows are unrolled as blocks: 3x3 taps with padding 2 on a 2-wide image leave runs that
    // are empty or one pixel long.
    check_conv<T>(conv_shape(2, 3, 4, 2, 5, 3, 3, 1, 1, 2, 2, 1), tol<T>());
    // 1x1, stride 1, no padding: no unrolling at all, with and without groups.
    check_conv<T>(conv_shape(3, 6, 5, 4, 4, 1, 1, 1, 1, 0, 0, 1), tol<T>());
    check_conv<T>(conv_shape(3, 6, 5, 4, 4, 1, 1, 1, 1, 0, 0, 2), tol<T>());
    // 1x1 with padding still unrolls (the padding ring is zeros).
    check_conv<T>(conv_shape(2, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1), tol<T>());
}

TEST_CASE_TEMPLATE("conv cpu: stride-1 data gradients computed as a flipped forward convolution", T, float,
                   double) {
    // backward_data_as_forward: a 3x2 kernel with unequal padding (1, 0), more outputs than inputs,
    // a non-square image; no padding; 5x5 with padding 2 (the U-Net's are 3x3 with padding 1).
    check_conv<T>(conv_shape(2, 3, 6, 5, 4, 3, 2, 1, 1, 1, 0, 1), tol<T>());
    check_conv<T>(conv_shape(2, 4, 5, 7, 3, 3, 3, 1, 1, 0, 0, 1), tol<T>());
    check_conv<T>(conv_shape(1, 2, 6, 6, 5, 5, 5, 1, 1, 2, 2, 1), tol<T>());
}

TEST_CASE("conv cpu: a batch unrolled in several chunks (double)") {
    // 32 channels * 3 * 3 taps * 85 * 85 outputs = 2.08M column entries per image, so conv.cpp
    // (budget 2^22) unrolls these 5 images as 2 + 2 + 1.
    check_conv<double>(conv_shape(5, 32, 85, 85, 2, 3, 3, 1, 1, 1, 1, 1), 1e-12);
}

// =================================================================================================
// (b') oneDNN (tensor/cpu/conv_onednn.h) against the im2col twin in float: ||onednn - im2col|| /
// ||im2col|| below 1e-5 in all three directions, for each layout a primitive can be built on. Both
// round in float and sum in different orders, so they agree to a few float ulps, not bit for bit.
// Outputs are poisoned with NaN: an element oneDNN did not write fails.
// =================================================================================================
namespace {

void check_onednn_against_im2col(const ConvShape& s, cpu::onednn::Layout layout, uint32_t seed) {
    const int64_t p = s.out_h(), q = s.out_w();
    const auto x = random_vector<float>(size_t(s.n * s.c * s.h * s.w), -1.0, 1.0, seed);
    const auto w = random_vector<float>(size_t(s.k * (s.c / s.groups) * s.r * s.s), -1.0, 1.0, seed + 1);
    const auto dy = random_vector<float>(size_t(s.n * s.k * p * q), -1.0, 1.0, seed + 2);
    std::vector<float> y_ref(dy.size()), dx_ref(x.size()), dw_ref(w.size());
    cpu::conv2d_forward_im2col<float>(s, x.data(), w.data(), y_ref.data());
    cpu::conv2d_backward_data_im2col<float>(s, dy.data(), w.data(), dx_ref.data());
    cpu::conv2d_backward_weight_im2col<float>(s, x.data(), dy.data(), dw_ref.data());

    const float nan = std::numeric_limits<float>::quiet_NaN();
    // Twice: the first call builds and caches the primitive, the second reuses it.
    for (int call = 0; call < 2; ++call) {
        CAPTURE(call);
        std::vector<float> y(dy.size(), nan), dx(x.size(), nan), dw(w.size(), nan);
        REQUIRE(cpu::onednn::conv2d_forward(s, x.data(), w.data(), y.data(), layout));
        REQUIRE(cpu::onednn::conv2d_backward_data(s, dy.data(), w.data(), dx.data(), layout));
        REQUIRE(cpu::onednn::conv2d_backward_weight(s, x.data(), dy.data(), dw.data(), layout));
        CHECK(rel_error(y, y_ref) < 1e-5);
        CHECK(rel_error(dx, dx_ref) < 1e-5);
        CHECK(rel_error(dw, dw_ref) < 1e-5);
    }
    // The public float kernels: the default layout, chosen by shape, with its fallbacks to im2col.
    std::vector<float> y(dy.size(), nan), dx(x.size(), nan), dw(w.size(), nan);
    cpu::conv2d_forward<float>(s, x.data(), w.data(), y.data());
    cpu::conv2d_backward_data<float>(s, dy.data(), w.data(), dx.data());
    cpu::conv2d_backward_weight<float>(s, x.data(), dy.data(), dw.data());
    CHECK(rel_error(y, y_ref) < 1e-5);
    CHECK(rel_error(dx, dx_ref) < 1e-5);
    CHECK(rel_error(dw, dw_ref) < 1e-5);
}

}  // namespace

TEST_CASE("conv cpu: oneDNN against the im2col twin" * doctest::skip(!cpu::onednn::available())) {
    using cpu::onednn::Layout;
    const std::vector<std::pair<const char*, ConvShape>> shapes = {
        {"U-Net 3x3 pad 1, 32 -> 64 at 16x16", conv_shape(2, 32, 16, 16, 64, 3, 3, 1, 1, 1, 1, 1)},
        {"U-Net 1x1 skip, 64 -> 32 at 8x8", conv_shape(2, 64, 8, 8, 32, 1, 1, 1, 1, 0, 0, 1)},
        {"input layer, 1 -> 16", conv_shape(2, 1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1)},
        {"output layer, 32 -> 1", conv_shape(2, 32, 8, 8, 1, 3, 3, 1, 1, 1, 1, 1)},
        {"odd sizes, channels not multiples of 8", conv_shape(3, 5, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1)},
        {"batch 1, 13 -> 3, 5x6", conv_shape(1, 13, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1)},
        {"1x1, 12 -> 20, batch 1, 7x5", conv_shape(1, 12, 7, 5, 20, 1, 1, 1, 1, 0, 0, 1)},
        {"3x3 stride 2, pad 1, odd input", conv_shape(2, 8, 9, 9, 16, 3, 3, 2, 2, 1, 1, 1)},
        {"grouped 3x3, 2 in / 3 out channels per group", conv_shape(2, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 4)},
        {"depthwise 4x4 stride 2 pad 1 (FIR resample)", conv_shape(2, 16, 16, 16, 16, 4, 4, 2, 2, 1, 1, 16)},
        {"depthwise 2x2 stride 2 (U-Net resample), 9 channels at 10x10", conv_shape(2, 9, 10, 10, 9, 2, 2, 2, 2, 0, 0, 9)},
        {"3x3 pad 1, batch 1, 3 -> 5 at 31x17", conv_shape(1, 3, 31, 17, 5, 3, 3, 1, 1, 1, 1, 1)},
    };
    uint32_t seed = 40;
    for (const Layout layout : {Layout::plain, Layout::blocked_weights, Layout::blocked})
        for (const auto& [name, s] : shapes) {
            CAPTURE(name);
            CAPTURE(static_cast<int>(layout));
            check_onednn_against_im2col(s, layout, seed += 3);
        }
}

TEST_CASE("conv cpu: float kernels take oneDNN where built in, double the im2col path") {
    // The public float kernel gives oneDNN's result bit for bit when oneDNN is built in, the twin's
    // otherwise; the double kernel is always the twin (oneDNN has no f64 convolutions).
    const ConvShape s = conv_shape(2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1);
    const auto x = random_vector<float>(size_t(2 * 8 * 36), -1.0, 1.0, 7);
    const auto w = random_vector<float>(size_t(8 * 8 * 9), -1.0, 1.0, 8);
    std::vector<float> y(x.size()), y_direct(x.size(), 0.f);
    cpu::conv2d_forward<float>(s, x.data(), w.data(), y.data());
    if (!cpu::onednn::conv2d_forward(s, x.data(), w.data(), y_direct.data()))
        cpu::conv2d_forward_im2col<float>(s, x.data(), w.data(), y_direct.data());
    CHECK(y == y_direct);
    const std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
    std::vector<double> yd(x.size()), yd_twin(x.size());
    cpu::conv2d_forward<double>(s, xd.data(), wd.data(), yd.data());
    cpu::conv2d_forward_im2col<double>(s, xd.data(), wd.data(), yd_twin.data());
    CHECK(yd == yd_twin);

    // Every direction takes oneDNN by default where it is built in.
    std::vector<float> dw(w.size(), 0.f), dx(x.size(), 0.f);
    CHECK(cpu::onednn::conv2d_backward_data(s, x.data(), w.data(), dx.data()) == cpu::onednn::available());
    CHECK(cpu::onednn::conv2d_backward_weight(s, x.data(), x.data(), dw.data()) == cpu::onednn::available());

    // A stride that leaves input rows past the last window (3x3, stride 2, no padding on 6x6: the
    // last row is never read) is not expressible in oneDNN: declined, and the kernel runs the twin.
    const ConvShape leftover = conv_shape(2, 8, 6, 6, 8, 3, 3, 2, 2, 0, 0, 1);
    std::vector<float> y_left(2 * 8 * 2 * 2, 0.f), y_left_twin(y_left.size(), 0.f);
    CHECK_FALSE(cpu::onednn::conv2d_forward(leftover, x.data(), w.data(), y_left.data()));
    cpu::conv2d_forward<float>(leftover, x.data(), w.data(), y_left.data());
    cpu::conv2d_forward_im2col<float>(leftover, x.data(), w.data(), y_left_twin.data());
    CHECK(y_left == y_left_twin);
}

TEST_CASE("conv cpu: the default weight gradient does not depend on how the batch is split") {
    // Data-parallel ranks (or --batch-gpu rounds) each sum their share of the batch and the shares are
    // then added. The default weight gradient sums fixed chunks of 8 images and adds the chunks in
    // order, so two halves of 8 images, added, give the batch of 16 bit for bit; a batch of 20 (chunks
    // 8, 8, 4) still agrees with the im2col twin to float rounding.
    for (const int64_t kernel : {3, 1}) {
        CAPTURE(kernel);
        const int64_t pad = kernel / 2;
        const ConvShape whole = conv_shape(20, 16, 8, 8, 24, kernel, kernel, 1, 1, pad, pad, 1);
        ConvShape half = whole, sixteen = whole;
        half.n = 8, sixteen.n = 16;
        const size_t x_image = 16 * 64, y_image = 24 * 64, dw_size = size_t(24 * 16 * kernel * kernel);
        const auto x = random_vector<float>(size_t(whole.n) * x_image, -1.0, 1.0, 11 + uint32_t(kernel));
        const auto dy = random_vector<float>(size_t(whole.n) * y_image, -1.0, 1.0, 12 + uint32_t(kernel));
        std::vector<float> dw16(dw_size), first(dw_size), second(dw_size), dw20(dw_size), dw20_twin(dw_size);
        cpu::conv2d_backward_weight<float>(sixteen, x.data(), dy.data(), dw16.data());
        cpu::conv2d_backward_weight<float>(half, x.data(), dy.data(), first.data());
        cpu::conv2d_backward_weight<float>(half, x.data() + 8 * x_image, dy.data() + 8 * y_image, second.data());
        std::vector<float> added(dw_size);
        for (size_t i = 0; i < dw_size; ++i) added[i] = first[i] + second[i];
        CHECK(dw16 == added);
        cpu::conv2d_backward_weight<float>(whole, x.data(), dy.data(), dw20.data());
        cpu::conv2d_backward_weight_im2col<float>(whole, x.data(), dy.data(), dw20_twin.data());
        CHECK(rel_error(dw20, dw20_twin) < 1e-5);
        CHECK(rel_error(dw20, dw16) > 1e-2);  // the last four images count
    }
}

// =================================================================================================
// (c) cuDNN against the CPU twin in double (so the error measured is the GPU's alone). With TF32 off
// cuDNN computes in float32: ||gpu - cpu|| / ||cpu|| below 1e-5 in all three directions. Outputs are
// poisoned with NaN first, so an element cuDNN forgot to write fails instead of passing on stale data.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

constexpr double kFp32Tolerance = 1e-5;
// TF32 keeps 10 mantissa bits: products are off by about 1e-3 relative.
constexpr double kTf32Tolerance = 1e-2;

struct ConvCase {
    const char* name;
    stf::ConvShape shape;
};

std::vector<ConvCase> conv_cases() {
    return {
        {"EDM 3x3, pad 1, stride 1", conv_shape(2, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1)},
        {"1x1", conv_shape(2, 32, 8, 8, 16, 1, 1, 1, 1, 0, 0, 1)},
        {"3x3 stride 2 downsampling", conv_shape(2, 8, 16, 16, 16, 3, 3, 2, 2, 1, 1, 1)},
        {"depthwise 2x2 stride 2 (EDM [1,1] resample)", conv_shape(2, 16, 16, 16, 16, 2, 2, 2, 2, 0, 0, 16)},
        {"depthwise 4x4 stride 2 pad 1 (EDM [1,3,3,1] resample)", conv_shape(2, 16, 16, 16, 16, 4, 4, 2, 2, 1, 1, 16)},
        {"grouped, 2 in / 3 out channels per group", conv_shape(2, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 4)},
        // 15 rows with stride 2: the last input row is covered by no output, so its dx must be 0.
        {"non-square input and kernel, mixed strides", conv_shape(3, 5, 15, 12, 6, 3, 2, 2, 1, 1, 0, 1)},
    };
}

std::string describe(const stf::ConvShape& s) {
    return "x [" + std::to_string(s.n) + ", " + std::to_string(s.c) + ", " + std::to_string(s.h) + ", " +
           std::to_string(s.w) + "], k " + std::to_string(s.k) + ", kernel " + std::to_string(s.r) + "x" +
           std::to_string(s.s) + ", stride " + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
           ", pad " + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w) + ", groups " + std::to_string(s.groups);
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

struct ConvErrors {
    double forward = 0, backward_data = 0, backward_weight = 0;
};

// All three directions of one shape against the CPU twin in double (so the error measured is the
// GPU's alone). Each GPU direction runs twice: the first call benchmarks and caches an algorithm,
// the second takes the cached path; both must be right. Reports the worse of the two.
ConvErrors conv_errors(const stf::ConvShape& s, uint32_t seed) {
    const size_t x_count = size_t(s.n * s.c * s.h * s.w);
    const size_t w_count = size_t(s.k * (s.c / s.groups) * s.r * s.s);
    const size_t y_count = size_t(s.n * s.k * s.out_h() * s.out_w());
    const std::vector<float> x = random_floats(int64_t(x_count), -1, 1, seed);
    const std::vector<float> w = random_floats(int64_t(w_count), -1, 1, seed + 1);
    const std::vector<float> dy = random_floats(int64_t(y_count), -1, 1, seed + 2);

    const std::vector<double> xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
    std::vector<double> y_ref(y_count), dx_ref(x_count), dw_ref(w_count);
    stf::cpu::conv2d_forward<double>(s, xd.data(), wd.data(), y_ref.data());
    stf::cpu::conv2d_backward_data<double>(s, dyd.data(), wd.data(), dx_ref.data());
    stf::cpu::conv2d_backward_weight<double>(s, xd.data(), dyd.data(), dw_ref.data());

    DeviceArray<float> dx_in(x), dw_in(w), ddy(dy);
    DeviceArray<float> y_out{int64_t(y_count)}, dx_out{int64_t(x_count)}, dw_out{int64_t(w_count)};
    ConvErrors e;
    for (int run = 0; run < 2; ++run) {
        y_out.poison();
        stf::cuda::conv2d_forward(s, dx_in.get(), dw_in.get(), y_out.get());
        e.forward = std::max(e.forward, rel_error(y_out.download(), y_ref));

        dx_out.poison();
        stf::cuda::conv2d_backward_data(s, ddy.get(), dw_in.get(), dx_out.get());
        e.backward_data = std::max(e.backward_data, rel_error(dx_out.download(), dx_ref));

        dw_out.poison();
        stf::cuda::conv2d_backward_weight(s, dx_in.get(), ddy.get(), dw_out.get());
        e.backward_weight = std::max(e.backward_weight, rel_error(dw_out.download(), dw_ref));
    }
    return e;
}

}  // namespace

TEST_CASE("conv cuda: cuDNN matches cpu::conv2d_* in all three directions" * needs_gpu()) {
    Tf32Scope fp32(false);
    uint32_t seed = 500;
    for (const ConvCase& c : conv_cases()) {
        const ConvErrors e = conv_errors(c.shape, seed += 10);
        INFO(c.name, ": ", describe(c.shape));
        CHECK(e.forward < kFp32Tolerance);
        CHECK(e.backward_data < kFp32Tolerance);
        CHECK(e.backward_weight < kFp32Tolerance);
    }
}

// For a shape this small cuDNN may well find a non-tensor-core kernel fastest even with TF32 allowed
// (on an H100 it did), so this checks the accuracy bound and the switch back, not that TF32 ran.
// On 8x256x32x32 -> 256, 3x3, TF32 showed errors of about 3e-4 and float32 about 4e-6.
TEST_CASE("conv cuda: with TF32 allowed the result stays within TF32 accuracy" * needs_gpu()) {
    Tf32Scope tf32(true);
    const stf::ConvShape s = conv_shape(2, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1);
    const ConvErrors e = conv_errors(s, 600);
    INFO(describe(s));
    CHECK(e.forward < kTf32Tolerance);
    CHECK(e.backward_data < kTf32Tolerance);
    CHECK(e.backward_weight < kTf32Tolerance);
    // Switching back must select the float32 plans again, not reuse the TF32 ones.
    stf::cuda::set_allow_tf32(false);
    const ConvErrors fp32 = conv_errors(s, 601);
    CHECK(fp32.forward < kFp32Tolerance);
    CHECK(fp32.backward_data < kFp32Tolerance);
    CHECK(fp32.backward_weight < kFp32Tolerance);
}

TEST_CASE("conv cuda: groups that do not divide the channels are rejected" * needs_gpu()) {
    // Validation happens before any device work, so null pointers are fine here.
    const stf::ConvShape bad_c = conv_shape(1, 6, 8, 8, 8, 3, 3, 1, 1, 1, 1, 4);
    const stf::ConvShape bad_k = conv_shape(1, 8, 8, 8, 6, 3, 3, 1, 1, 1, 1, 4);
    float* none = nullptr;
    CHECK_THROWS_AS(stf::cuda::conv2d_forward(bad_c, none, none, none), std::invalid_argument);
    CHECK_THROWS_AS(stf::cuda::conv2d_backward_data(bad_k, none, none, none), std::invalid_argument);
    CHECK_THROWS_AS(stf::cuda::conv2d_backward_weight(bad_c, none, none, none), std::invalid_argument);
    stf::bf16* none16 = nullptr;  // the bf16 entry points validate the same way
    CHECK_THROWS_AS(stf::cuda::conv2d_forward(bad_c, none16, none16, none16), std::invalid_argument);
}

#endif  // STF_WITH_CUDA
