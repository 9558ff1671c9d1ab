// EDM's augmentation pipeline (diffusion/augment.h) and its CPU kernels (tensor/cpu/augment.cpp):
// p = 0 is the identity, bit for bit; the resampling chain reproduces an image under an identity warp
// and a whole-pixel translation; flips, quarter turns and integer translations against index
// formulas written out here; label statistics against EDM's probabilities; determinism; colour
// transforms; float against double; the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "cuda/augment_math.h"
#include "diffusion/augment.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"

using namespace stf;
using namespace stf::diffusion;

namespace {

constexpr double kPi = std::numbers::pi;

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

double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return std::sqrt(num / den);
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

// Every EDM transform enabled, probability multipliers 1.
AugmentOptions everything(double p) {
    AugmentOptions o;
    o.p = p;
    o.xflip = o.yflip = o.rotate_int = o.translate_int = 1;
    o.scale = o.rotate_frac = o.aniso = o.translate_frac = 1;
    o.brightness = o.contrast = o.lumaflip = o.hue = o.saturation = 1;
    return o;
}

}  // namespace

TEST_CASE("augment: options, presets and label dimensions") {
    AugmentOptions d;
    CHECK(d.p == 1);
    CHECK(d.translate_int_max == 0.125);
    CHECK(d.scale_std == 0.2);
    CHECK(d.rotate_frac_max == 1);
    CHECK(d.aniso_std == 0.2);
    CHECK(d.aniso_rotate_prob == 0.5);
    CHECK(d.translate_frac_std == 0.125);
    CHECK(d.contrast_std == 0.5);
    CHECK(AugmentPipe(d).label_dim() == 0);

    AugmentOptions c = AugmentOptions::cifar10();
    CHECK(c.p == 0.12);
    CHECK(c.xflip == 1e8);
    CHECK(c.yflip == 1);
    CHECK(c.rotate_int == 0);
    CHECK(c.translate_int == 0);
    CHECK(c.scale == 1);
    CHECK(c.rotate_frac == 1);
    CHECK(c.aniso == 1);
    CHECK(c.translate_frac == 1);
    CHECK(c.brightness == 0);
    CHECK(AugmentPipe(c).label_dim() == 9);  // EDM's augment_dim for CIFAR-10
    CHECK(AugmentPipe(everything(1)).label_dim() == 9 + 4 + 6);
}

TEST_CASE("augment: p = 0 returns the images unchanged, bit for bit, with zero labels") {
    for (const AugmentOptions& o : {AugmentOptions::cifar10(0.0), everything(0.0)}) {
        AugmentPipe pipe(o);
        Tensor x = random_images({6, 3, 8, 8}, 1);
        Generator gen(7);
        auto r = pipe.apply(x, gen);
        CHECK(r.images.shape() == x.shape());
        CHECK_FALSE(r.images.same(x));  // a new tensor
        CHECK(r.images.to_vector() == x.to_vector());
        CHECK(r.labels.shape() == Shape{6, pipe.label_dim()});
        CHECK(r.labels.dtype() == DType::F32);
        for (double v : r.labels.to_vector()) CHECK(v == 0);
    }
    // no transform enabled at all: labels [n, 0]
    AugmentPipe none{AugmentOptions{}};
    Generator gen(1);
    Tensor x = random_images({2, 1, 4, 4}, 2);
    auto r = none.apply(x, gen);
    CHECK(r.images.to_vector() == x.to_vector());
    CHECK(r.labels.shape() == Shape{2, 0});
    // an empty batch
    AugmentPipe cifar(AugmentOptions::cifar10());
    auto e = cifar.apply(ops::zeros({0, 3, 8, 8}), gen);
    CHECK(e.images.shape() == Shape{0, 3, 8, 8});
    CHECK(e.labels.shape() == Shape{0, 9});
}

TEST_CASE("augment kernel: an identity warp reproduces the image (sym6 is orthonormal)") {
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

TEST_CASE("augment kernel: matches a literal step-by-step evaluation of EDM's resampling") {
    // Golden values from an independent, deliberately literal evaluation (plain Python, double) of the
    // chain as EDM runs it with torch ops: reflect pad, zero interleave and sym6 convolution along each
    // axis, affine_grid + grid_sample (bilinear, zero padding, align_corners=False), stride-2 sym6
    // convolution with padding 5 and a crop of 3 per side. Image x[i][j] = sin(1.3 i + 0.7 j) + 0.1 j,
    // 5 x 6; G = [[cos a / 1.2, -0.9 sin a, 0.4], [sin a / 1.2, 0.9 cos a, -0.7]], a = 0.5.
    const int64_t h = 5, w = 6;
    std::vector<double> x(h * w);
    for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) x[i * w + j] = std::sin(1.3 * i + 0.7 * j) + 0.1 * j;
    const double a = 0.5;
    const std::vector<double> g = {std::cos(a) / 1.2, -std::sin(a) * 0.9, 0.4, std::sin(a) / 1.2, std::cos(a) * 0.9, -0.7,
                                   0, 0, 1};
    const std::vector<double> want = {
        0.356289075138, 0.433709916837,  0.642166803002,  0.585235555111,  -0.012623368911, -0.286613871034,
        1.006433846084, 1.169178061045,  0.984993894244,  0.069662069726,  -0.564981533842, -0.321129788145,
        0.907389631925, 0.949849925065,  0.151534526540,  -0.581067644672, -0.374171961953, 0.677224014476,
        1.004040497188, 0.373969208426,  -0.481403106134, -0.635655719045, 0.057722233711,  1.110945365749,
        0.491318563516, -0.410616510720, -0.831660395238, -0.259613767319, 0.813125032358,  1.316502845217};
    CHECK(max_abs_diff(warp<double>(x, 1, 1, h, w, g), want) < 1e-11);
    CHECK(max_abs_diff(warp<float>(x, 1, 1, h, w, g), want) < 1e-5);
}

TEST_CASE("augment kernel: a whole-pixel translation is the reflect-padded shift") {
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

TEST_CASE("augment kernel: a 90-degree rotation, exact by blitting and close by resampling") {
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

TEST_CASE("augment kernel: integer translation reflects at the borders (hand-worked)") {
    const std::vector<double> row = {0, 1, 2, 3, 4};
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, 2, 0}) == std::vector<double>{2, 1, 0, 1, 2});
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, -2, 0}) == std::vector<double>{2, 3, 4, 3, 2});
    // periodic beyond one reflection: shift 6 on 5 pixels (period 8) reads x - 6 = -6 .. -2
    CHECK(blit(row, 1, 1, 1, 5, {0, 0, 0, 6, 0}) == std::vector<double>{2, 3, 4, 3, 2});
    const std::vector<double> col = {0, 1, 2, 3, 4};  // a column: y reads y + ty
    CHECK(blit(col, 1, 1, 5, 1, {0, 0, 0, 0, 1}) == std::vector<double>{1, 2, 3, 4, 3});
}

TEST_CASE("augment: x-flips and y-flips are exact mirrors, as the labels say") {
    AugmentOptions o;
    o.xflip = 1;
    o.yflip = 1;
    AugmentPipe pipe(o);
    const int64_t n = 32, c = 2, h = 5, w = 7;
    Tensor x = random_images({n, c, h, w}, 9);
    Generator gen(11);
    auto r = pipe.apply(x, gen);
    const std::vector<double> in = x.to_vector(), out = r.images.to_vector(), lab = r.labels.to_vector();
    int seen[2][2] = {};
    for (int64_t i = 0; i < n; ++i) {
        const int fx = static_cast<int>(lab[2 * i]), fy = static_cast<int>(lab[2 * i + 1]);
        REQUIRE((fx == 0 || fx == 1));
        REQUIRE((fy == 0 || fy == 1));
        ++seen[fx][fy];
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t y = 0; y < h; ++y)
                for (int64_t xx = 0; xx < w; ++xx) {
                    const int64_t sy = fy ? h - 1 - y : y, sx = fx ? w - 1 - xx : xx;
                    REQUIRE(out[((i * c + ch) * h + y) * w + xx] == in[((i * c + ch) * h + sy) * w + sx]);
                }
    }
    CHECK(seen[0][0] > 0);
    CHECK(seen[1][0] > 0);
    CHECK(seen[0][1] > 0);
    CHECK(seen[1][1] > 0);
}

TEST_CASE("augment: quarter turns and integer translations through the pipeline") {
    AugmentOptions o;
    o.rotate_int = 1;
    o.translate_int = 1;
    o.translate_int_max = 0.25;
    AugmentPipe pipe(o);
    CHECK(pipe.label_dim() == 4);
    const int64_t n = 40, s = 8;
    Tensor x = random_images({n, 1, s, s}, 12);
    Generator gen(13);
    auto r = pipe.apply(x, gen);
    const std::vector<double> in = x.to_vector(), out = r.images.to_vector(), lab = r.labels.to_vector();
    int turns_seen[4] = {}, shifted = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int a = static_cast<int>(lab[4 * i]), b = static_cast<int>(lab[4 * i + 1]);
        const int q = a && !b ? 1 : (a && b ? 2 : (!a && b ? 3 : 0));  // labels [w in {1,2}, w in {2,3}]
        ++turns_seen[q];
        const double tx_f = lab[4 * i + 2] * s * 0.25, ty_f = lab[4 * i + 3] * s * 0.25;
        const int64_t tx = std::lround(tx_f), ty = std::lround(ty_f);
        REQUIRE(std::fabs(tx_f - tx) < 1e-6);
        REQUIRE(std::abs(tx) <= 2);
        REQUIRE(std::abs(ty) <= 2);
        shifted += tx != 0 || ty != 0;
        const double* src = in.data() + i * s * s;
        for (int64_t y = 0; y < s; ++y)
            for (int64_t xx = 0; xx < s; ++xx) {
                // translation first in the gather (it was applied last), then q quarter turns
                int64_t yy = mirror(y + ty, s), xr = mirror(xx - tx, s);
                for (int k = 0; k < q; ++k) {  // undo one counter-clockwise turn: out[r][c] = in[c][s-1-r]
                    const int64_t ny = xr, nx = s - 1 - yy;
                    yy = ny;
                    xr = nx;
                }
                REQUIRE(out[i * s * s + y * s + xx] == src[yy * s + xr]);
            }
    }
    for (int q = 0; q < 4; ++q) CHECK(turns_seen[q] > 0);
    CHECK(shifted > 0);
}

TEST_CASE("augment: label statistics follow EDM's probabilities (CIFAR-10 preset, p = 0.12)") {
    AugmentPipe pipe(AugmentOptions::cifar10(0.12));
    const int64_t n = 5000;
    Tensor x = random_images({n, 1, 4, 4}, 21);
    Generator gen(22);
    auto r = pipe.apply(x, gen);
    // EDM's CIFAR-10 setting draws 14 tensors: two for each flip, scale, rotation and translation, four
    // for anisotropy.
    CHECK(gen.offset() == 14);
    const std::vector<double> lab = r.labels.to_vector();
    REQUIRE(lab.size() == static_cast<size_t>(n * 9));
    auto fraction = [&](auto pred) {
        int64_t k = 0;
        for (int64_t i = 0; i < n; ++i) k += pred(&lab[9 * i]);
        return double(k) / n;
    };
    auto near = [&](double got, double want) {
        const double sigma = std::sqrt(want * (1 - want) / n);
        INFO("fraction " << got << ", expected " << want);
        CHECK(std::fabs(got - want) < 4 * sigma);
    };
    // columns: xflip, yflip, scale, rotate (cos - 1, sin), aniso (w cos r, w sin r), translate (x, y)
    for (int64_t i = 0; i < n; ++i) {
        const double* l = &lab[9 * i];
        REQUIRE((l[0] == 0 || l[0] == 1));
        REQUIRE((l[1] == 0 || l[1] == 1));
        REQUIRE(std::fabs((l[3] + 1) * (l[3] + 1) + l[4] * l[4] - 1) < 1e-5);  // cos^2 + sin^2
        REQUIRE(std::fabs(l[4]) <= 1);
    }
    near(fraction([](const double* l) { return l[0] != 0; }), 0.5);          // xflip * p >= 1: a coin flip
    near(fraction([](const double* l) { return l[1] != 0; }), 0.12 * 0.5);   // yflip: p, then a coin flip
    near(fraction([](const double* l) { return l[2] != 0; }), 0.12);         // scale
    near(fraction([](const double* l) { return l[4] != 0; }), 0.12);         // rotation
    near(fraction([](const double* l) { return l[5] != 0; }), 0.12);         // anisotropy
    near(fraction([](const double* l) { return l[6] != 0; }), 0.12 * 0.5);  // ... in a rotated frame
    near(fraction([](const double* l) { return l[7] != 0; }), 0.12);         // translation
    // translation applies to x and y together
    CHECK(fraction([](const double* l) { return (l[7] != 0) != (l[8] != 0); }) == 0);
    // the scale label is a standard normal where it applies
    double sum = 0, sq = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i)
        if (lab[9 * i + 2] != 0) {
            sum += lab[9 * i + 2];
            sq += lab[9 * i + 2] * lab[9 * i + 2];
            ++k;
        }
    CHECK(std::fabs(sum / k) < 0.2);
    CHECK(std::fabs(sq / k - 1) < 0.2);
}

TEST_CASE("augment: in a transformed batch, untransformed images still come back close") {
    // EDM resamples the whole batch once any image is transformed; the identity warp is near exact.
    AugmentOptions o = AugmentOptions::cifar10(0.5);
    o.xflip = 0;
    AugmentPipe pipe(o);
    const int64_t n = 24;
    Tensor x = random_images({n, 3, 16, 16}, 31);
    Generator gen(32);
    auto r = pipe.apply(x, gen);
    const std::vector<double> in = x.to_vector(), out = r.images.to_vector(), lab = r.labels.to_vector();
    const int64_t d = pipe.label_dim(), per = 3 * 16 * 16;
    int untouched = 0, touched = 0;
    for (int64_t i = 0; i < n; ++i) {
        bool any = false;
        for (int64_t k = 0; k < d; ++k) any = any || lab[i * d + k] != 0;
        std::vector<double> a(in.begin() + i * per, in.begin() + (i + 1) * per);
        std::vector<double> b(out.begin() + i * per, out.begin() + (i + 1) * per);
        if (any) {
            ++touched;
        } else {
            ++untouched;
            CHECK(max_abs_diff(a, b) < 2e-6);
        }
    }
    CHECK(touched > 0);
    CHECK(untouched > 0);
}

TEST_CASE("augment: the same generator state gives the same augmentation") {
    AugmentPipe pipe(everything(0.7));
    Tensor x = random_images({5, 3, 8, 8}, 41);
    Generator g1(42), g2(42), g3(43);
    auto a = pipe.apply(x, g1);
    auto b = pipe.apply(x, g2);
    CHECK(a.images.to_vector() == b.images.to_vector());
    CHECK(a.labels.to_vector() == b.labels.to_vector());
    CHECK(g1.offset() == g2.offset());
    auto c = pipe.apply(x, g3);
    CHECK(c.labels.to_vector() != a.labels.to_vector());
    // the generator moved on: a second call differs
    auto d = pipe.apply(x, g1);
    CHECK(d.labels.to_vector() != a.labels.to_vector());
    // a strided (non-contiguous) view of the same images gives the same result
    Tensor t = ops::contiguous(ops::transpose(x, 2, 3));
    Generator g4(42);
    auto e = pipe.apply(ops::transpose(t, 2, 3), g4);
    CHECK(e.images.to_vector() == a.images.to_vector());
}

TEST_CASE("augment: with per-sample streams an image gets the same augmentation in any batch") {
    // Data-parallel training keys the generator to (step, sample); images 2..5 of step 7 augmented
    // as one batch of 6 must match images 0..1 and 2..3 of batches keyed at samples 2 and 4.
    AugmentPipe pipe(everything(0.9));
    Tensor x = random_images({6, 3, 8, 8}, 61);
    Generator whole(3), first(3), second(3);
    whole.key_rows(7, 0);
    first.key_rows(7, 2);
    second.key_rows(7, 4);
    auto all = pipe.apply(x, whole);
    auto a = pipe.apply(ops::narrow(x, 0, 2, 2), first);
    auto b = pipe.apply(ops::narrow(x, 0, 4, 2), second);
    CHECK(ops::narrow(all.images, 0, 2, 2).to_vector() == a.images.to_vector());
    CHECK(ops::narrow(all.images, 0, 4, 2).to_vector() == b.images.to_vector());
    CHECK(ops::narrow(all.labels, 0, 2, 2).to_vector() == a.labels.to_vector());
    CHECK(ops::narrow(all.labels, 0, 4, 2).to_vector() == b.labels.to_vector());
    CHECK(a.labels.to_vector() != b.labels.to_vector());
}

TEST_CASE("augment: colour transforms") {
    const int64_t n = 16, h = 4, w = 4, hw = h * w;
    Tensor x = random_images({n, 3, h, w}, 51);
    const std::vector<double> in = x.to_vector();

    SUBCASE("brightness adds w * brightness_std to every channel") {
        AugmentOptions o;
        o.brightness = 1;
        Generator gen(52);
        auto r = AugmentPipe(o).apply(x, gen);
        const std::vector<double> out = r.images.to_vector(), lab = r.labels.to_vector();
        for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < 3 * hw; ++k)
                REQUIRE(out[i * 3 * hw + k] == doctest::Approx(in[i * 3 * hw + k] + 0.2 * lab[i]).epsilon(1e-5));
    }
    SUBCASE("hue rotation and saturation keep each pixel's luma (channel mean)") {
        AugmentOptions o;
        o.hue = 1;
        o.saturation = 1;
        Generator gen(53);
        auto r = AugmentPipe(o).apply(x, gen);
        const std::vector<double> out = r.images.to_vector(), lab = r.labels.to_vector();
        int changed = 0;
        for (int64_t i = 0; i < n; ++i) {
            changed += lab[3 * i] != 0 || lab[3 * i + 1] != 0 || lab[3 * i + 2] != 0;
            for (int64_t k = 0; k < hw; ++k) {
                const double* a = &in[i * 3 * hw + k];
                const double* b = &out[i * 3 * hw + k];
                REQUIRE((b[0] + b[hw] + b[2 * hw]) == doctest::Approx(a[0] + a[hw] + a[2 * hw]).epsilon(1e-4).scale(1));
            }
        }
        CHECK(changed > 0);
    }
    SUBCASE("luma flip negates the luma and keeps the chroma; one channel images too") {
        AugmentOptions o;
        o.lumaflip = 1;
        Generator gen(54);
        auto r = AugmentPipe(o).apply(x, gen);
        const std::vector<double> out = r.images.to_vector(), lab = r.labels.to_vector();
        for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < hw; ++k) {
                const double* a = &in[i * 3 * hw + k];
                const double* b = &out[i * 3 * hw + k];
                const double la = (a[0] + a[hw] + a[2 * hw]) / 3, lb = (b[0] + b[hw] + b[2 * hw]) / 3;
                const double sign = lab[i] != 0 ? -1 : 1;
                REQUIRE(lb == doctest::Approx(sign * la).scale(1).epsilon(1e-5));
                REQUIRE(b[0] - lb == doctest::Approx(a[0] - la).scale(1).epsilon(1e-5));
            }
        Tensor grey = random_images({n, 1, h, w}, 55);
        Generator gen1(54);
        auto g = AugmentPipe(o).apply(grey, gen1);
        const std::vector<double> gi = grey.to_vector(), go = g.images.to_vector();
        for (int64_t i = 0; i < n; ++i)
            for (int64_t k = 0; k < hw; ++k)
                REQUIRE(go[i * hw + k] == doctest::Approx((lab[i] != 0 ? -1 : 1) * gi[i * hw + k]).scale(1).epsilon(1e-5));
    }
}

TEST_CASE("augment kernel: float and double agree on general warps") {
    const int64_t n = 4, c = 3, h = 20, w = 24;
    const std::vector<double> x = random_images({n, c, h, w}, 61).to_vector();
    std::vector<double> g;
    for (int64_t i = 0; i < n; ++i) {  // rotation, anisotropic scale, fractional shift
        const double t = 0.4 + 0.9 * i, s = 0.7 + 0.25 * i;
        g.insert(g.end(), {std::cos(t) / s, -std::sin(t) * s, 1.3 - i, std::sin(t) / s, std::cos(t) * s, -0.6 * i, 0, 0, 1});
    }
    const std::vector<double> yf = warp<float>(x, n, c, h, w, g), yd = warp<double>(x, n, c, h, w, g);
    const double err = rel_error(yf, yd);
    MESSAGE("geometric kernel, float vs double: relative error " << err);
    CHECK(err < 1e-5);
    // and the warp did something
    CHECK(rel_error(yd, x) > 0.1);
}

TEST_CASE("augment: errors name the op and the shapes") {
    AugmentPipe pipe(AugmentOptions::cifar10());
    Generator gen(1);
    auto message_of = [&](const AugmentPipe& p, const Tensor& t) {
        try {
            p.apply(t, gen);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    std::string m = message_of(pipe, random_images({3, 8, 8}, 1));
    CHECK(m.find("AugmentPipe::apply") != std::string::npos);
    CHECK(m.find("[3, 8, 8]") != std::string::npos);
    m = message_of(pipe, ops::zeros({2, 3, 8, 8}, DType::F64));
    CHECK(m.find("f64") != std::string::npos);
    CHECK(message_of(pipe, Tensor()).find("undefined") != std::string::npos);

    AugmentOptions rot;
    rot.rotate_int = 1;
    m = message_of(AugmentPipe(rot), random_images({2, 3, 8, 6}, 1));
    CHECK(m.find("square") != std::string::npos);
    CHECK(m.find("[2, 3, 8, 6]") != std::string::npos);

    AugmentOptions col;
    col.hue = 1;
    m = message_of(AugmentPipe(col), random_images({2, 2, 8, 8}, 1));
    CHECK(m.find("channel") != std::string::npos);

    AugmentOptions bad;
    bad.p = NAN;
    CHECK_THROWS_AS(AugmentPipe{bad}, Error);
}
