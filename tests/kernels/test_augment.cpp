// EDM's augmentation kernels (cuda/augment.cu; CPU twin in tensor/cpu/augment.cpp; the per-pixel
// formulas in cuda/augment_math.h; the pipeline that draws their parameters in diffusion/augment.cpp).
//
// Blitting copies pixels: per image {flip_x, flip_y, transpose, tx, ty} (EDM's x-flip, y-flip,
// quarter turns as flips then a transpose, and integer translation with the image mirrored beyond its
// edges). The geometric transformation resamples: per image a 3x3 matrix G maps each output pixel,
// measured from the image centre, to the input position it reads; EDM reflect-pads the batch,
// upsamples 2x with the sym6 wavelet filter, samples bilinearly, and downsamples 2x with the same
// filter, so that rotations and fractional shifts do not alias.
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/augment_math.h"
#include "diffusion/augment.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;
using namespace stf::diffusion;

// =================================================================================================
// (a) The naive reference. Blitting as whole-image steps in EDM's order. The geometric transformation
// as EDM's augment.py runs it with torch ops, step by step in long double: its padding, reflect pad,
// zero interleave and a 12-tap convolution along each axis, the 3x3 matrices that carry G into
// affine_grid's normalised coordinates, grid_sample (bilinear, zeros outside, align_corners=False),
// and a stride-2 convolution along each axis cropped by 3 pixels per side.
// =================================================================================================
namespace {

constexpr double kPi = std::numbers::pi;

// Mirror i into [0, n) by folding at the edges (the edge pixel not repeated) as often as needed.
int64_t ref_fold(int64_t i, int64_t n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

// One plane [h, w]: x-flip, then y-flip, then transpose (h == w), then the translation, which reads
// (y + ty, x - tx) (EDM's signs), folded.
std::vector<double> ref_blit_plane(const std::vector<double>& in, int64_t h, int64_t w, const int32_t* p) {
    std::vector<double> a(in.size()), b(in.size()), c(in.size()), out(in.size());
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) a[y * w + x] = in[y * w + (p[0] ? w - 1 - x : x)];
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) b[y * w + x] = a[(p[1] ? h - 1 - y : y) * w + x];
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) c[y * w + x] = p[2] ? b[x * w + y] : b[y * w + x];
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) out[y * w + x] = c[ref_fold(y + p[4], h) * w + ref_fold(x - p[3], w)];
    return out;
}

std::vector<double> ref_blit(const std::vector<double>& x, int64_t n, int64_t c, int64_t h, int64_t w,
                             const std::vector<int32_t>& params) {
    std::vector<double> y;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t ch = 0; ch < c; ++ch) {
            const std::vector<double> plane(x.begin() + ((i * c + ch) * h) * w, x.begin() + ((i * c + ch) * h + h) * w);
            const std::vector<double> out = ref_blit_plane(plane, h, w, &params[size_t(5 * i)]);
            y.insert(y.end(), out.begin(), out.end());
        }
    return y;
}

// The sym6 low-pass filter as PyWavelets publishes it.
const long double kSym6[12] = {0.015404109327027373L, 0.0034907120842174702L, -0.11799011114819057L,
                               -0.048311742585633L,   0.4910559419267466L,    0.787641141030194L,
                               0.3379294217276218L,   -0.07263752278646252L,  -0.021060292512300564L,
                               0.04472490177066578L,  0.0017677118642428036L, -0.007800708325034148L};
constexpr int kHzPad = 3;  // len(Hz) // 4

using Mat3 = std::array<std::array<long double, 3>, 3>;
Mat3 mat_mul(const Mat3& a, const Mat3& b) {
    Mat3 c{};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k) c[i][j] += a[i][k] * b[k][j];
    return c;
}
Mat3 translate2d(long double tx, long double ty) { return {{{1, 0, tx}, {0, 1, ty}, {0, 0, 1}}}; }
Mat3 scale2d(long double sx, long double sy) { return {{{sx, 0, 0}, {0, sy, 0}, {0, 0, 1}}}; }

// EDM's padding: the image corners mapped by every G of the batch, widened by twice the filter pad,
// clamped to [0, size - 1] and rounded up. {x0, y0, x1, y1}.
std::array<int64_t, 4> ref_padding(int64_t n, int64_t h, int64_t w, const std::vector<double>& g) {
    const long double cx = (w - 1) / 2.0L, cy = (h - 1) / 2.0L;
    std::array<long double, 4> m = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int64_t b = 0; b < n; ++b)
        for (auto [px, py] : {std::pair{-cx, -cy}, {cx, -cy}, {cx, cy}, {-cx, cy}}) {
            const double* G = &g[size_t(9 * b)];
            const long double x = G[0] * px + G[1] * py + G[2], y = G[3] * px + G[4] * py + G[5];
            m = {std::max(m[0], -x), std::max(m[1], -y), std::max(m[2], x), std::max(m[3], y)};
        }
    const long double limit[4] = {static_cast<long double>(w - 1), static_cast<long double>(h - 1),
                                  static_cast<long double>(w - 1), static_cast<long double>(h - 1)};
    const long double centre[4] = {cx, cy, cx, cy};
    std::array<int64_t, 4> pad{};
    for (int k = 0; k < 4; ++k)
        pad[k] = static_cast<int64_t>(std::ceil(std::min(std::max(m[k] + 2 * kHzPad - centre[k], 0.0L), limit[k])));
    return pad;
}

// A 1-D pass of torch.nn.functional.conv2d along one axis: out[o] = sum_t weight[t] in[o * stride + t - pad],
// zero outside `in`.
std::vector<long double> conv1d(const std::vector<long double>& in, const long double* weight, int taps, int pad,
                                int stride) {
    const int64_t len = static_cast<int64_t>(in.size()), out_len = (len + 2 * pad - taps) / stride + 1;
    std::vector<long double> out(static_cast<size_t>(out_len));
    for (int64_t o = 0; o < out_len; ++o)
        for (int t = 0; t < taps; ++t) {
            const int64_t i = o * stride + t - pad;
            if (i >= 0 && i < len) out[o] += weight[t] * in[i];
        }
    return out;
}

// Runs `pass` over every row (axis 1) or every column (axis 0) of a rows x cols plane.
template <class F>
std::vector<long double> along(const std::vector<long double>& plane, int64_t rows, int64_t cols, int axis, F pass,
                               int64_t& out_rows, int64_t& out_cols) {
    std::vector<std::vector<long double>> lines;
    for (int64_t l = 0; l < (axis == 1 ? rows : cols); ++l) {
        std::vector<long double> line;
        for (int64_t k = 0; k < (axis == 1 ? cols : rows); ++k)
            line.push_back(axis == 1 ? plane[l * cols + k] : plane[k * cols + l]);
        lines.push_back(pass(line));
    }
    const int64_t len = static_cast<int64_t>(lines[0].size());
    out_rows = axis == 1 ? rows : len;
    out_cols = axis == 1 ? len : cols;
    std::vector<long double> out(static_cast<size_t>(out_rows * out_cols));
    for (int64_t l = 0; l < static_cast<int64_t>(lines.size()); ++l)
        for (int64_t k = 0; k < len; ++k) (axis == 1 ? out[l * out_cols + k] : out[k * out_cols + l]) = lines[l][k];
    return out;
}

std::vector<double> ref_geometric(const std::vector<double>& x, int64_t n, int64_t c, int64_t h, int64_t w,
                                  const std::vector<double>& g) {
    const auto [mx0, my0, mx1, my1] = ref_padding(n, h, w, g);
    const int64_t hp = h + my0 + my1, wp = w + mx0 + mx1;
    long double flipped[12];
    for (int t = 0; t < 12; ++t) flipped[t] = kSym6[11 - t];
    // Upsampling along one axis: zeros interleaved (the last one dropped), then the flipped filter
    // with padding (12 + 1) / 2. Downsampling: the filter with padding (12 - 1) / 2, stride 2, and a
    // crop of kHzPad on each side.
    auto up = [&](const std::vector<long double>& line) {
        std::vector<long double> z(2 * line.size() - 1);
        for (size_t k = 0; k < line.size(); ++k) z[2 * k] = line[k];
        return conv1d(z, flipped, 12, 6, 1);
    };
    auto down = [&](const std::vector<long double>& line) {
        const std::vector<long double> d = conv1d(line, kSym6, 12, 5, 2);
        return std::vector<long double>(d.begin() + kHzPad, d.end() - kHzPad);
    };
    const int64_t hs = (h + kHzPad * 2) * 2, ws = (w + kHzPad * 2) * 2;  // the sampler's grid
    std::vector<double> y;
    for (int64_t b = 0; b < n; ++b) {
        Mat3 G;
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) G[i][j] = g[size_t(9 * b + 3 * i + j)];
        G = mat_mul(translate2d((mx0 - mx1) / 2.0L, (my0 - my1) / 2.0L), G);
        G = mat_mul(mat_mul(scale2d(2, 2), G), scale2d(0.5L, 0.5L));
        G = mat_mul(mat_mul(translate2d(-0.5L, -0.5L), G), translate2d(0.5L, 0.5L));
        const int64_t hu = 2 * hp, wu = 2 * wp;  // the upsampled image
        G = mat_mul(mat_mul(scale2d(2.0L / wu, 2.0L / hu), G), scale2d(ws / 2.0L, hs / 2.0L));
        for (int64_t ch = 0; ch < c; ++ch) {
            const double* plane = &x[size_t(((b * c + ch) * h) * w)];
            std::vector<long double> p(static_cast<size_t>(hp * wp));
            for (int64_t i = 0; i < hp; ++i)
                for (int64_t j = 0; j < wp; ++j) p[i * wp + j] = plane[ref_fold(i - my0, h) * w + ref_fold(j - mx0, w)];
            int64_t rows = 0, cols = 0;
            std::vector<long double> u = along(p, hp, wp, 1, up, rows, cols);
            u = along(u, rows, cols, 0, up, rows, cols);
            REQUIRE((rows == hu && cols == wu));
            // affine_grid: output pixel (i, j) at normalised ((2 j + 1) / ws - 1, (2 i + 1) / hs - 1), mapped
            // by G's top two rows; grid_sample reads input position ((gx + 1) wu - 1) / 2, bilinearly.
            std::vector<long double> s(static_cast<size_t>(hs * ws));
            for (int64_t i = 0; i < hs; ++i)
                for (int64_t j = 0; j < ws; ++j) {
                    const long double xn = (2.0L * j + 1) / ws - 1, yn = (2.0L * i + 1) / hs - 1;
                    const long double gx = G[0][0] * xn + G[0][1] * yn + G[0][2];
                    const long double gy = G[1][0] * xn + G[1][1] * yn + G[1][2];
                    const long double ix = ((gx + 1) * wu - 1) / 2, iy = ((gy + 1) * hu - 1) / 2;
                    const int64_t x0 = static_cast<int64_t>(std::floor(ix)), y0 = static_cast<int64_t>(std::floor(iy));
                    const long double fx = ix - x0, fy = iy - y0;
                    long double v = 0;
                    for (int dy = 0; dy < 2; ++dy)
                        for (int dx = 0; dx < 2; ++dx) {
                            const int64_t yy = y0 + dy, xx = x0 + dx;
                            if (yy < 0 || yy >= hu || xx < 0 || xx >= wu) continue;
                            v += (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * u[yy * wu + xx];
                        }
                    s[i * ws + j] = v;
                }
            std::vector<long double> out = along(s, hs, ws, 1, down, rows, cols);
            out = along(out, rows, cols, 0, down, rows, cols);
            REQUIRE((rows == h && cols == w));
            y.insert(y.end(), out.begin(), out.end());
        }
    }
    return y;
}

// Golden values from an independent, deliberately literal evaluation (plain Python, double) of the
// chain as EDM runs it with torch ops: reflect pad, zero interleave and sym6 convolution along each
// axis, affine_grid + grid_sample (bilinear, zero padding, align_corners=False), stride-2 sym6
// convolution with padding 5 and a crop of 3 per side. Image x[i][j] = sin(1.3 i + 0.7 j) + 0.1 j,
// 5 x 6; G = [[cos a / 1.2, -0.9 sin a, 0.4], [sin a / 1.2, 0.9 cos a, -0.7]], a = 0.5.
struct LiteralEvaluation {
    int64_t h, w;
    std::vector<double> x, g, want;
};

LiteralEvaluation literal_evaluation() {
    LiteralEvaluation e{5, 6, {}, {}, {}};
    for (int64_t i = 0; i < e.h; ++i)
        for (int64_t j = 0; j < e.w; ++j) e.x.push_back(std::sin(1.3 * i + 0.7 * j) + 0.1 * j);
    const double a = 0.5;
    e.g = {std::cos(a) / 1.2, -std::sin(a) * 0.9, 0.4, std::sin(a) / 1.2, std::cos(a) * 0.9, -0.7, 0, 0, 1};
    e.want = {
        0.356289075138, 0.433709916837,  0.642166803002,  0.585235555111,  -0.012623368911, -0.286613871034,
        1.006433846084, 1.169178061045,  0.984993894244,  0.069662069726,  -0.564981533842, -0.321129788145,
        0.907389631925, 0.949849925065,  0.151534526540,  -0.581067644672, -0.374171961953, 0.677224014476,
        1.004040497188, 0.373969208426,  -0.481403106134, -0.635655719045, 0.057722233711,  1.110945365749,
        0.491318563516, -0.410616510720, -0.831660395238, -0.259613767319, 0.813125032358,  1.316502845217};
    return e;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================
namespace {

Tensor random_images(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g);
}

// A smooth, asymmetric image: low frequencies only, so a resampled rotation is close to the exact one.
std::vector<double> smooth_plane(int64_t h, int64_t w, double phase) {
    std::vector<double> v(static_cast<size_t>(h * w));
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
            v[y * w + x] = std::sin(0.31 * x + 0.17 * y + phase) + 0.5 * std::cos(0.23 * y - 0.11 * x * x / w);
    return v;
}

// Reflect about the edge pixels (no repeat), valid for one reflection: -(n - 1) <= i <= 2 (n - 1).
int64_t mirror(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
    return m;
}

// Runs the CPU geometric kernel on n images [c, h, w] with one row-major 3x3 matrix per image.
template <class T>
std::vector<double> warp(const std::vector<double>& images, int64_t n, int64_t c, int64_t h, int64_t w,
                         const std::vector<double>& matrices) {
    const augment::Padding pad = augment::padding(n, h, w, matrices.data());
    std::vector<T> x(images.begin(), images.end()), y(images.size()), g(matrices.begin(), matrices.end());
    cpu::augment_geometric<T>(n, c, h, w, g.data(), pad.x0, pad.y0, pad.x1, pad.y1, x.data(), y.data());
    return std::vector<double>(y.begin(), y.end());
}

std::vector<double> blit(const std::vector<double>& images, int64_t n, int64_t c, int64_t h, int64_t w,
                         const std::vector<int32_t>& params) {
    std::vector<float> x(images.begin(), images.end()), y(images.size());
    cpu::augment_blit<float>(n, c, h, w, params.data(), x.data(), y.data());
    return std::vector<double>(y.begin(), y.end());
}

std::vector<double> identity_matrices(int64_t n) {
    std::vector<double> m;
    for (int64_t i = 0; i < n; ++i) m.insert(m.end(), {1, 0, 0, 0, 1, 0, 0, 0, 1});
    return m;
}

// Per image a rotation, an anisotropic scale and a fractional shift, in EDM's ranges or beyond.
std::vector<double> general_warps(int64_t n) {
    std::vector<double> g;
    for (int64_t i = 0; i < n; ++i) {
        const double t = 0.4 + 0.9 * i, s = 0.7 + 0.25 * i;
        g.insert(g.end(),
                 {std::cos(t) / s, -std::sin(t) * s, 1.3 - i, std::sin(t) / s, std::cos(t) * s, -0.6 * i, 0, 0, 1});
    }
    return g;
}

}  // namespace

TEST_CASE("augment cpu: blit against the reference: every flip, transpose and translation") {
    // 16 images: all 8 flip and transpose combinations, each with a translation of up to twice the
    // image (several reflections); square for the transposes, then a non-square batch without them.
    for (auto [h, w] : {std::pair<int64_t, int64_t>{6, 6}, {5, 9}}) {
        CAPTURE(h);
        CAPTURE(w);
        const int64_t n = 16, c = 2;
        const std::vector<double> x = random_images({n, c, h, w}, 70 + h).to_vector();
        std::mt19937 gen(71);
        std::vector<int32_t> params;
        for (int64_t i = 0; i < n; ++i) {
            const int32_t tx = int32_t(gen() % (4 * w + 1)) - int32_t(2 * w);
            const int32_t ty = int32_t(gen() % (4 * h + 1)) - int32_t(2 * h);
            const int32_t flip_x = int32_t(i & 1), flip_y = int32_t((i >> 1) & 1);
            params.insert(params.end(), {flip_x, flip_y, int32_t(h == w && (i >> 2) & 1), tx, ty});
        }
        CHECK(blit(x, n, c, h, w, params) == ref_blit(x, n, c, h, w, params));
    }
}

TEST_CASE("augment cpu: the reference geometric transformation reproduces EDM's torch ops") {
    // The literal evaluation's golden values, and EDM's padding.
    const LiteralEvaluation e = literal_evaluation();
    CHECK(max_abs_diff(ref_geometric(e.x, 1, 1, e.h, e.w, e.g), e.want) < 1e-11);
    // The kernels' padding (cuda/augment_math.h) is EDM's.
    const augment::Padding pad = augment::padding(1, e.h, e.w, e.g.data());
    CHECK(std::array<int64_t, 4>{pad.x0, pad.y0, pad.x1, pad.y1} == ref_padding(1, e.h, e.w, e.g));
}

TEST_CASE_TEMPLATE("augment cpu: geometric against the reference on general warps", T, float, double) {
    // A batch whose images need different paddings, square and not, with 1 and 3 channels.
    for (auto [c, h, w] : {std::array<int64_t, 3>{3, 20, 24}, {1, 9, 7}, {2, 16, 16}}) {
        CAPTURE(h);
        CAPTURE(w);
        const int64_t n = 4;
        const std::vector<double> x = random_images({n, c, h, w}, 80 + h).to_vector(), g = general_warps(n);
        const augment::Padding pad = augment::padding(n, h, w, g.data());
        CHECK(std::array<int64_t, 4>{pad.x0, pad.y0, pad.x1, pad.y1} == ref_padding(n, h, w, g));
        const std::vector<double> want = ref_geometric(x, n, c, h, w, g);
        CHECK(rel_error(warp<T>(x, n, c, h, w, g), want) < (std::is_same_v<T, float> ? 1e-5 : 1e-12));
        CHECK(rel_error(want, x) > 0.1);  // the warp did something
    }
}

TEST_CASE_TEMPLATE("augment cpu: geometric, row sums computed once, is the per-pixel form bit for bit", T, float, double) {
    // The CPU kernel caches the row sums the per-pixel formulas (the CUDA kernel's) compute again for
    // every tap; the values and their summation order are the formulas', so the results are identical.
    // General warps, identities, an extreme zoom-out (most taps outside the upsampled image) and a warp
    // that moves the whole image out of view (no tap inside).
    std::vector<double> g = general_warps(4);
    for (const double m : {1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0,         // identity
                           6.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 1.0,         // zoom out
                           1.0, 0.0, 500.0, 0.0, 1.0, -700.0, 0.0, 0.0, 1.0})  // out of view
        g.push_back(m);
    const int64_t n = 7;
    for (auto [c, h, w] : {std::array<int64_t, 3>{3, 20, 24}, {1, 9, 7}, {1, 32, 32}}) {
        CAPTURE(h);
        CAPTURE(w);
        const std::vector<double> x = random_images({n, c, h, w}, 90 + h).to_vector();
        const augment::Padding pad = augment::padding(n, h, w, g.data());
        std::vector<T> xt(x.begin(), x.end()), gt(g.begin(), g.end()), fast(x.size()), slow(x.size());
        cpu::augment_geometric<T>(n, c, h, w, gt.data(), pad.x0, pad.y0, pad.x1, pad.y1, xt.data(), fast.data());
        cpu::augment_geometric_per_pixel<T>(n, c, h, w, gt.data(), pad.x0, pad.y0, pad.x1, pad.y1, xt.data(), slow.data());
        CHECK(fast == slow);
        CHECK(rel_error(std::vector<double>(fast.begin(), fast.end()), x) > 0.1);  // the warps did something
    }
}

TEST_CASE("augment cpu: an identity warp reproduces the image (sym6 is orthonormal)") {
    const int64_t n = 2, c = 3, h = 32, w = 32;
    const std::vector<double> x = random_images({n, c, h, w}, 3).to_vector();
    const augment::Padding pad = augment::padding(n, h, w, identity_matrices(n).data());
    CHECK(pad.x0 == 6);  // 2 * filter pad beyond the corners, as EDM
    CHECK(pad.y1 == 6);
    const double err_f = max_abs_diff(warp<float>(x, n, c, h, w, identity_matrices(n)), x);
    const double err_d = max_abs_diff(warp<double>(x, n, c, h, w, identity_matrices(n)), x);
    MESSAGE("identity warp, 32x32 N(0,1) images: max |error| float " << err_f << ", double " << err_d);
    CHECK(err_f < 2e-6);
    CHECK(err_d < 1e-10);  // the published coefficients are orthonormal to about 1e-12

    // non-square images too. (Below 6 pixels a side EDM's padding, clamped to w - 1, no longer covers
    // the filters' reach, and the identity warp is no longer exact there, in EDM as here.)
    const std::vector<std::pair<int64_t, int64_t>> sizes = {{6, 9}, {11, 7}};
    for (auto [hh, ww] : sizes) {
        const std::vector<double> xs = random_images({1, 2, hh, ww}, 4).to_vector();
        CHECK(max_abs_diff(warp<double>(xs, 1, 2, hh, ww, identity_matrices(1)), xs) < 1e-10);
    }
}

TEST_CASE("augment cpu: matches a literal step-by-step evaluation of EDM's resampling") {
    const LiteralEvaluation e = literal_evaluation();
    CHECK(max_abs_diff(warp<double>(e.x, 1, 1, e.h, e.w, e.g), e.want) < 1e-11);
    CHECK(max_abs_diff(warp<float>(e.x, 1, 1, e.h, e.w, e.g), e.want) < 1e-5);
}

TEST_CASE("augment cpu: a whole-pixel translation is the reflect-padded shift") {
    const int64_t h = 12, w = 10;
    const std::vector<double> x = random_images({1, 1, h, w}, 5).to_vector();
    // G maps output to input: output (y, x) reads input (y + 1, x - 2); the blit reads (y + ty, x - tx)
    const std::vector<double> g = {1, 0, -2, 0, 1, 1, 0, 0, 1};
    std::vector<double> want(x.size());
    for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) want[y * w + xx] = x[mirror(y + 1, h) * w + mirror(xx - 2, w)];
    CHECK(max_abs_diff(warp<double>(x, 1, 1, h, w, g), want) < 1e-10);
    CHECK(max_abs_diff(warp<float>(x, 1, 1, h, w, g), want) < 2e-6);
    CHECK(blit(x, 1, 1, h, w, {0, 0, 0, 2, 1}) == std::vector<double>(want.begin(), want.end()));
}

TEST_CASE("augment cpu: a 90-degree rotation, exact by blitting and close by resampling") {
    // 3x3 asymmetric image; a quarter turn counter-clockwise as displayed (numpy's rot90):
    // out[r][c] = in[c][w - 1 - r]
    const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const std::vector<double> rot90 = {3, 6, 9, 2, 5, 8, 1, 4, 7};
    // EDM's rotate_int w = 1: x-flip then transpose
    CHECK(blit(x, 1, 1, 3, 3, {1, 0, 1, 0, 0}) == rot90);
    // w = 2 (both flips): half turn; w = 3 (y-flip, transpose): three quarter turns
    CHECK(blit(x, 1, 1, 3, 3, {1, 1, 0, 0, 0}) == std::vector<double>{9, 8, 7, 6, 5, 4, 3, 2, 1});
    CHECK(blit(x, 1, 1, 3, 3, {0, 1, 1, 0, 0}) == std::vector<double>{7, 4, 1, 8, 5, 2, 9, 6, 3});

    // The same quarter turn through the resampling chain: EDM's rotate_frac with w = pi / 2 composes
    // G = rotate2d(w). Close, not exact: sym6 is only nearly symmetric (its centre of mass is at tap
    // 5.10, not 5.5), so any mirroring part of G lands about 0.1 pixel off, in EDM as here.
    const int64_t s = 16;
    const std::vector<double> img = smooth_plane(s, s, 0.3);
    std::vector<double> want(img.size());
    for (int64_t r = 0; r < s; ++r)
        for (int64_t cc = 0; cc < s; ++cc) want[r * s + cc] = img[cc * s + (s - 1 - r)];
    const double cs = std::cos(kPi / 2), sn = std::sin(kPi / 2);
    const std::vector<double> g = {cs, -sn, 0, sn, cs, 0, 0, 0, 1};
    const std::vector<double> got = warp<double>(img, 1, 1, s, s, g);
    const double err = max_abs_diff(got, want);
    MESSAGE("90-degree rotation by resampling, smooth 16x16 image: max |error| " << err);
    CHECK(err < 0.08);
    // and it is a rotation the other way round it is not
    std::vector<double> cw(img.size());
    for (int64_t r = 0; r < s; ++r)
        for (int64_t cc = 0; cc < s; ++cc) cw[r * s + cc] = img[(s - 1 - cc) * s + r];
    CHECK(max_abs_diff(got, cw) > 0.5);
}

TEST_CASE("augment cpu: integer translation reflects at the borders (hand-worked)") {
    const std::vector<double> row = {0, 1, 2, 3, 4};
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, 2, 0}) == std::vector<double>{2, 1, 0, 1, 2});
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, -2, 0}) == std::vector<double>{2, 3, 4, 3, 2});
    // periodic beyond one reflection: shift 6 on 5 pixels (period 8) reads x - 6 = -6 .. -2
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, 6, 0}) == std::vector<double>{2, 3, 4, 3, 2});
    const std::vector<double> col = {0, 1, 2, 3, 4};  // a column: y reads y + ty
    CHECK(blit(col, 1, 1, 5, 1, {0, 0, 0, 0, 1}) == std::vector<double>{1, 2, 3, 4, 3});
}

TEST_CASE("augment cpu: float and double agree on general warps") {
    const int64_t n = 4, c = 3, h = 20, w = 24;
    const std::vector<double> x = random_images({n, c, h, w}, 61).to_vector();
    const std::vector<double> g = general_warps(n);  // rotation, anisotropic scale, fractional shift
    const std::vector<double> yf = warp<float>(x, n, c, h, w, g), yd = warp<double>(x, n, c, h, w, g);
    const double err = rel_error(yf, yd);
    MESSAGE("geometric kernel, float vs double: relative error " << err);
    CHECK(err < 1e-5);
    // and the warp did something
    CHECK(rel_error(yd, x) > 0.1);
}

// =================================================================================================
// (c) The CUDA kernels against the CPU twin, then the whole pipeline (diffusion/augment.h) on both
// devices with every transform active. The random parameters are drawn on the CPU in both runs, so the
// labels must agree exactly, blitting bit for bit, and resampled images to ||cuda - cpu|| / ||cpu||
// < 1e-5.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

// A CUDA tensor whose every byte is 0xFF (NaN as float32), so an element a kernel misses shows.
Tensor poisoned_cuda(const Shape& shape) {
    Tensor t = ops::empty(shape, DType::F32, Device::cuda());
    std::vector<unsigned char> ff(static_cast<size_t>(t.numel()) * sizeof(float), 0xFF);
    cuda::copy_host_to_device(t.raw_data(), ff.data(), ff.size());
    return t;
}

AugmentOptions everything(double p) {
    AugmentOptions o;
    o.p = p;
    o.xflip = o.yflip = o.rotate_int = o.translate_int = 1;
    o.scale = o.rotate_frac = o.aniso = o.translate_frac = 1;
    o.brightness = o.contrast = o.lumaflip = o.hue = o.saturation = 1;
    return o;
}

// Random matrices in EDM's range: rotation, scale and anisotropy, and a translation, per image.
std::vector<float> random_matrices(int64_t n, uint64_t seed) {
    Generator g(seed);
    const std::vector<double> u = ops::rand({n, 5}, g).to_vector();
    std::vector<float> m;
    for (int64_t i = 0; i < n; ++i) {
        const double* r = &u[5 * i];
        const double t = (2 * r[0] - 1) * 3.14159, s = std::exp2(0.6 * (r[1] - 0.5)), a = std::exp2(0.4 * (r[2] - 0.5));
        const double tx = 6 * (r[3] - 0.5), ty = 6 * (r[4] - 0.5);
        const double v[9] = {std::cos(t) * s * a, -std::sin(t) * s / a, tx, std::sin(t) * s * a, std::cos(t) * s / a,
                             ty, 0, 0, 1};
        m.insert(m.end(), v, v + 9);
    }
    return m;
}

}  // namespace

TEST_CASE("augment cuda: geometric and blit match the CPU twins" * needs_gpu()) {
    const std::vector<std::array<int64_t, 4>> shapes = {{5, 3, 32, 32}, {3, 2, 7, 13}, {2, 1, 64, 48}};
    for (auto [n, c, h, w] : shapes) {
        CAPTURE(n);
        CAPTURE(h);
        CAPTURE(w);
        Tensor x = random_images({n, c, h, w}, 100 + h);
        const std::vector<float> mats = random_matrices(n, 200 + w);
        const augment::Padding pad = augment::padding(n, h, w, mats.data());

        std::vector<float> want(static_cast<size_t>(x.numel()));
        cpu::augment_geometric<float>(n, c, h, w, mats.data(), pad.x0, pad.y0, pad.x1, pad.y1, x.data<float>(),
                                      want.data());
        Tensor xd = ops::to(x, Device::cuda());
        Tensor md = ops::from_vector(std::vector<double>(mats.begin(), mats.end()), {n, 3, 3}, DType::F32,
                                     Device::cuda());
        Tensor yd = poisoned_cuda({n, c, h, w});
        cuda::augment_geometric(n, c, h, w, md.data<float>(), pad.x0, pad.y0, pad.x1, pad.y1, xd.data<float>(),
                                yd.data<float>());
        const double err = rel_error(yd.to_vector(), std::vector<double>(want.begin(), want.end()));
        MESSAGE("geometric kernel " << n << "x" << c << "x" << h << "x" << w << ": relative error " << err);
        CHECK(err < 1e-5);

        // blit: flips, transposes (square only) and translations, bit for bit
        std::vector<int32_t> params;
        for (int64_t i = 0; i < n; ++i)
            params.insert(params.end(), {int32_t(i % 2), int32_t((i / 2) % 2), int32_t(h == w && i % 3 == 1),
                                         int32_t(i * 3 - 4), int32_t(5 - 2 * i)});
        std::vector<float> blit_want(want.size());
        cpu::augment_blit<float>(n, c, h, w, params.data(), x.data<float>(), blit_want.data());
        auto* pd = static_cast<int32_t*>(cuda::malloc(params.size() * sizeof(int32_t)));
        cuda::copy_host_to_device(pd, params.data(), params.size() * sizeof(int32_t));
        Tensor bd = poisoned_cuda({n, c, h, w});
        cuda::augment_blit(n, c, h, w, pd, xd.data<float>(), bd.data<float>());
        const std::vector<double> got = bd.to_vector();
        cuda::free(pd);
        CHECK(got == std::vector<double>(blit_want.begin(), blit_want.end()));
    }
}

TEST_CASE("augment cuda: the pipeline, CUDA against CPU with every transform active (p = 1)" * needs_gpu()) {
    const AugmentOptions presets[] = {AugmentOptions::cifar10(1.0), everything(1.0)};
    for (const AugmentOptions& o : presets) {
        AugmentPipe pipe(o);
        CAPTURE(pipe.label_dim());
        Tensor x = random_images({5, 3, 32, 32}, 300);
        Generator g_cpu(301), g_cuda(301);
        auto on_cpu = pipe.apply(x, g_cpu);
        auto on_cuda = pipe.apply(ops::to(x, Device::cuda()), g_cuda);
        CHECK(on_cuda.images.device().is_cuda());
        CHECK(on_cuda.labels.device().is_cuda());
        CHECK(on_cuda.labels.shape() == Shape{5, pipe.label_dim()});
        CHECK(g_cpu.offset() == g_cuda.offset());
        CHECK(on_cuda.labels.to_vector() == on_cpu.labels.to_vector());
        const double err = rel_error(on_cuda.images.to_vector(), on_cpu.images.to_vector());
        MESSAGE("pipeline with " << pipe.label_dim() << " labels: CUDA vs CPU relative error " << err);
        CHECK(err < 1e-5);
        CHECK(rel_error(on_cpu.images.to_vector(), x.to_vector()) > 0.1);  // it did transform them
    }
}

TEST_CASE("augment cuda: the pipeline, p = 0 on CUDA is the identity, and a timing" * needs_gpu()) {
    AugmentPipe none(AugmentOptions::cifar10(0.0));
    Tensor x = ops::to(random_images({4, 3, 32, 32}, 400), Device::cuda());
    Generator g(401);
    auto r = none.apply(x, g);
    CHECK(r.images.to_vector() == x.to_vector());

    // EDM's CIFAR-10 setting at a training batch of 512 (informational).
    AugmentPipe pipe(AugmentOptions::cifar10(0.12));
    Tensor batch = ops::to(random_images({512, 3, 32, 32}, 402), Device::cuda());
    Generator gb(403);
    pipe.apply(batch, gb);  // warm-up
    cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 10;
    for (int i = 0; i < reps; ++i) pipe.apply(batch, gb);
    cuda::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    MESSAGE("AugmentPipe::apply, CIFAR-10 preset p = 0.12, 512 x 3 x 32 x 32 on CUDA: " << ms << " ms");
}

#endif  // STF_WITH_CUDA
