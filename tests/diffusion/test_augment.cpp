// EDM's augmentation pipeline (diffusion/augment.h): p = 0 is the identity, bit for bit; flips,
// quarter turns and integer translations through the pipeline against index formulas written out
// here; label statistics against EDM's probabilities; determinism; colour transforms; the errors.
// The kernels it runs (blitting and the geometric resampling) are tests/kernels/test_augment.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "diffusion/augment.h"
#include "tensor/ops.h"

using namespace stf;
using namespace stf::diffusion;

namespace {

Tensor random_images(const Shape& shape, uint64_t seed) {
    Generator g(seed);
    return ops::randn(shape, g);
}

// Reflect about the edge pixels (no repeat), valid for one reflection: -(n - 1) <= i <= 2 (n - 1).
int64_t mirror(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
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
