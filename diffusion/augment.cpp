// EDM's augmentation pipeline: random parameters drawn on the CPU, per-image blit parameters and
// matrices composed on the host, the pixels moved by the kernels of cuda/augment.cu and
// tensor/cpu/augment.cpp. See diffusion/augment.h.
#include "diffusion/augment.h"

#include <array>
#include <cmath>
#include <numbers>
#include <vector>

#include "cuda/augment_math.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"
#include "tensor/ops.h"

namespace stf::diffusion {
namespace {

constexpr const char* kOp = "AugmentPipe::apply";
constexpr double kPi = std::numbers::pi;

// ---- random draws (CPU, one generator offset per call, as EDM's one torch call per tensor) ---------
// Each draw is [n, k], image i's k values in row i, so a row-keyed generator (tensor/random.h) gives
// every image the same augmentation whichever batch or process it is drawn in.

std::vector<double> uniform(Generator& gen, int64_t n, int64_t k = 1) { return ops::rand({n, k}, gen).to_vector(); }
std::vector<double> normal(Generator& gen, int64_t n, int64_t k = 1) { return ops::randn({n, k}, gen).to_vector(); }

// Whether a draw u (float32 in [0, 1)) falls under probability `prob`, compared in float32 as torch
// compares a float32 tensor with a Python scalar.
bool happens(double u, double prob) { return static_cast<float>(u) < static_cast<float>(prob); }

// An integer in [0, k) from a uniform draw (EDM's torch.randint(k)).
int32_t int_below(double u, int k) { return static_cast<int32_t>(std::floor(u * k)); }

// u * 2 - 1 in float32, exact for 24-bit uniforms: a uniform in [-1, 1).
double symmetric(double u) { return static_cast<double>(static_cast<float>(u) * 2.0f - 1.0f); }

enum class Dist { Uniform, Normal };

// The parameter most transforms draw, one per image as EDM does: a value from `dist` mapped by `f`,
// kept with probability `prob` and 0 otherwise (the value is drawn before the keep decision).
template <class F> std::vector<double> gated(Generator& gen, int64_t n, Dist dist, double prob, F f) {
    const std::vector<double> v = dist == Dist::Normal ? normal(gen, n) : uniform(gen, n), keep = uniform(gen, n);
    std::vector<double> w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) w[i] = happens(keep[i], prob) ? f(v[i]) : 0.0;
    return w;
}
double as_is(double v) { return v; }

// ---- small host matrices ---------------------------------------------------------------------------

template <int N> struct Mat {
    std::array<double, N * N> a{};
    static Mat identity() {
        Mat m;
        for (int i = 0; i < N; ++i) m.a[i * N + i] = 1;
        return m;
    }
    double& operator()(int r, int c) { return a[r * N + c]; }
    double operator()(int r, int c) const { return a[r * N + c]; }
    bool is_identity() const { return a == identity().a; }
};
template <int N> Mat<N> operator*(const Mat<N>& x, const Mat<N>& y) {
    Mat<N> z;
    for (int r = 0; r < N; ++r)
        for (int c = 0; c < N; ++c) {
            double s = 0;
            for (int k = 0; k < N; ++k) s += x(r, k) * y(k, c);
            z(r, c) = s;
        }
    return z;
}
using Mat3 = Mat<3>;
using Mat4 = Mat<4>;

Mat3 scale2d(double sx, double sy) {
    Mat3 m = Mat3::identity();
    m(0, 0) = sx;
    m(1, 1) = sy;
    return m;
}
Mat3 rotate2d(double theta) {  // counter-clockwise in x-right, y-up terms; x right, y down in pixels
    Mat3 m = Mat3::identity();
    m(0, 0) = std::cos(theta);
    m(0, 1) = -std::sin(theta);
    m(1, 0) = std::sin(theta);
    m(1, 1) = std::cos(theta);
    return m;
}
Mat3 translate2d(double tx, double ty) {
    Mat3 m = Mat3::identity();
    m(0, 2) = tx;
    m(1, 2) = ty;
    return m;
}

// Colour matrices act on [r, g, b, 1]. The luma axis is (1, 1, 1) / sqrt(3).
const double kLuma = 1.0 / std::sqrt(3.0);
Mat4 luma_projection() {  // a a^T with a the luma axis
    Mat4 m;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) m(r, c) = kLuma * kLuma;
    return m;
}
Mat4 translate3d(double t) {
    Mat4 m = Mat4::identity();
    for (int r = 0; r < 3; ++r) m(r, 3) = t;
    return m;
}
Mat4 scale3d(double s) {
    Mat4 m = Mat4::identity();
    for (int r = 0; r < 3; ++r) m(r, r) = s;
    return m;
}
// Rotation by theta about the luma axis (Rodrigues: cos I + sin [a]x + (1 - cos) a a^T).
Mat4 rotate_luma(double theta) {
    const double c = std::cos(theta), s = std::sin(theta), k = kLuma * s;
    Mat4 m = Mat4::identity();
    const Mat4 p = luma_projection();
    for (int r = 0; r < 3; ++r)
        for (int col = 0; col < 3; ++col) m(r, col) = (r == col ? c : 0.0) + (1 - c) * p(r, col);
    // the cross-product matrix of the luma axis, scaled by sin
    m(0, 1) -= k; m(0, 2) += k;
    m(1, 0) += k; m(1, 2) -= k;
    m(2, 0) -= k; m(2, 1) += k;
    return m;
}

// ---- running the kernels ---------------------------------------------------------------------------

// int32 parameters where the kernel reads them: the host vector itself for the CPU, a copy in device
// memory for CUDA (released to the caching allocator, stream-ordered, when this goes out of scope).
class KernelInts {
public:
    KernelInts(const std::vector<int32_t>& host, Device device) : host_(host.data()) {
        if (!device.is_cuda()) return;
        const size_t bytes = host.size() * sizeof(int32_t);
        device_ = static_cast<int32_t*>(cuda::malloc(bytes));
        cuda::copy_host_to_device(device_, host.data(), bytes);
    }
    ~KernelInts() {
        if (device_) cuda::free(device_);
    }
    KernelInts(const KernelInts&) = delete;
    KernelInts& operator=(const KernelInts&) = delete;
    const int32_t* get() const { return device_ ? device_ : host_; }

private:
    const int32_t* host_;
    int32_t* device_ = nullptr;
};

[[maybe_unused]] [[noreturn]] void no_cuda() { throw Error(std::string(kOp) + ": stf was built without CUDA"); }

Tensor blit(const Tensor& x, const std::vector<int32_t>& params) {
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    Tensor y = ops::empty(x.shape(), DType::F32, x.device());
    KernelInts p(params, x.device());
    if (x.device().is_cpu()) {
        cpu::augment_blit<float>(n, c, h, w, p.get(), x.data<float>(), y.data<float>());
    } else {
#if STF_WITH_CUDA
        cuda::augment_blit(n, c, h, w, p.get(), x.data<float>(), y.data<float>());
#else
        no_cuda();
#endif
    }
    return y;
}

Tensor geometric(const Tensor& x, const std::vector<Mat3>& g) {
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    std::vector<double> flat;
    flat.reserve(9 * g.size());
    for (const Mat3& m : g) flat.insert(flat.end(), m.a.begin(), m.a.end());
    const augment::Padding pad = augment::padding(n, h, w, flat.data());
    Tensor matrices = ops::from_vector(flat, {n, 3, 3}, DType::F32, x.device());
    Tensor y = ops::empty(x.shape(), DType::F32, x.device());
    if (x.device().is_cpu()) {
        cpu::augment_geometric<float>(n, c, h, w, matrices.data<float>(), pad.x0, pad.y0, pad.x1, pad.y1,
                                      x.data<float>(), y.data<float>());
    } else {
#if STF_WITH_CUDA
        cuda::augment_geometric(n, c, h, w, matrices.data<float>(), pad.x0, pad.y0, pad.x1, pad.y1, x.data<float>(),
                                y.data<float>());
#else
        no_cuda();
#endif
    }
    return y;
}

// RGB: each pixel [r, g, b] becomes M[:3, :3] [r, g, b] + M[:3, 3]. One channel: EDM's reduction,
// the mean of the three rows, so the pixel v becomes v * sum(row[:3]) + row[3].
Tensor colour(const Tensor& x, const std::vector<Mat4>& m) {
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const Device dev = x.device();
    if (c == 3) {
        std::vector<double> lin, bias;
        for (const Mat4& mi : m)
            for (int r = 0; r < 3; ++r) {
                for (int k = 0; k < 3; ++k) lin.push_back(mi(r, k));
                bias.push_back(mi(r, 3));
            }
        Tensor a = ops::from_vector(lin, {n, 3, 3}, DType::F32, dev);
        Tensor b = ops::from_vector(bias, {n, 3, 1}, DType::F32, dev);
        Tensor y = ops::add(ops::matmul(a, ops::reshape(x, {n, 3, h * w})), b);
        return ops::reshape(y, {n, c, h, w});
    }
    std::vector<double> gain, bias;
    for (const Mat4& mi : m) {
        double row[4] = {0, 0, 0, 0};
        for (int r = 0; r < 3; ++r)
            for (int k = 0; k < 4; ++k) row[k] += mi(r, k) / 3;
        gain.push_back(row[0] + row[1] + row[2]);
        bias.push_back(row[3]);
    }
    Tensor gn = ops::from_vector(gain, {n, 1, 1, 1}, DType::F32, dev);
    Tensor bs = ops::from_vector(bias, {n, 1, 1, 1}, DType::F32, dev);
    return ops::add(ops::mul(x, gn), bs);
}

}  // namespace

AugmentOptions AugmentOptions::cifar10(double p) {
    AugmentOptions o;
    o.p = p;
    o.xflip = 1e8;
    o.yflip = 1;
    o.scale = 1;
    o.rotate_frac = 1;
    o.aniso = 1;
    o.translate_frac = 1;
    return o;
}

AugmentPipe::AugmentPipe(AugmentOptions o) : o_(o) {
    const double values[] = {o.p, o.xflip, o.yflip, o.rotate_int, o.translate_int, o.translate_int_max, o.scale,
                             o.rotate_frac, o.aniso, o.translate_frac, o.scale_std, o.rotate_frac_max, o.aniso_std,
                             o.aniso_rotate_prob, o.translate_frac_std, o.brightness, o.contrast, o.lumaflip, o.hue,
                             o.saturation, o.brightness_std, o.contrast_std, o.hue_max, o.saturation_std};
    for (double v : values) STF_CHECK(std::isfinite(v), "AugmentPipe: every option must be finite, got " << v);
}

int64_t AugmentPipe::label_dim() const {
    int64_t d = 0;
    d += o_.xflip > 0;
    d += o_.yflip > 0;
    d += 2 * (o_.rotate_int > 0);
    d += 2 * (o_.translate_int > 0);
    d += o_.scale > 0;
    d += 2 * (o_.rotate_frac > 0);
    d += 2 * (o_.aniso > 0);
    d += 2 * (o_.translate_frac > 0);
    d += o_.brightness > 0;
    d += o_.contrast > 0;
    d += o_.lumaflip > 0;
    d += 2 * (o_.hue > 0);
    d += o_.saturation > 0;
    return d;
}

AugmentPipe::Result AugmentPipe::apply(const Tensor& images, Generator& gen) const {
    STF_CHECK(images.defined(), kOp << ": images are undefined");
    STF_CHECK(images.ndim() == 4 && images.dtype() == DType::F32,
              kOp << ": expected float32 images [n, c, h, w], got " << describe(images));
    const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    STF_CHECK(c > 0 && h > 0 && w > 0, kOp << ": empty images " << describe(images));
    const bool colour_on = o_.brightness > 0 || o_.contrast > 0 || o_.lumaflip > 0 || o_.hue > 0 || o_.saturation > 0;
    STF_CHECK(!(o_.rotate_int > 0) || h == w,
              kOp << ": rotate_int needs square images, got " << describe(images));
    STF_CHECK(!colour_on || c == 3 || c == 1,
              kOp << ": colour transforms need 3 (RGB) or 1 channel, got " << describe(images));
    const Device dev = images.device();
    Tensor x = ops::contiguous(images);

    std::vector<std::vector<double>> label_cols;  // one column of n values per label
    auto add_label = [&](std::vector<double> col) { label_cols.push_back(std::move(col)); };
    const double p = o_.p;

    // ---- pixel blitting: {flip_x, flip_y, transpose, tx, ty} per image --------------------------
    std::vector<int32_t> bl(static_cast<size_t>(n * augment::kBlitParams), 0);
    auto blit_param = [&](int64_t i, int k) -> int32_t& { return bl[static_cast<size_t>(i * augment::kBlitParams + k)]; };

    auto coin = [](double u) { return static_cast<double>(int_below(u, 2)); };
    for (auto [prob, axis] : {std::pair{o_.xflip, 0}, std::pair{o_.yflip, 1}}) {
        if (!(prob > 0)) continue;
        std::vector<double> flip = gated(gen, n, Dist::Uniform, prob * p, coin);
        for (int64_t i = 0; i < n; ++i) blit_param(i, axis) ^= static_cast<int32_t>(flip[i]);
        add_label(flip);
    }
    if (o_.rotate_int > 0) {
        // w quarter turns counter-clockwise (as displayed): x-flip for w = 1, 2; y-flip for w = 2, 3;
        // then a transpose for w = 1, 3.
        const std::vector<double> turns =
            gated(gen, n, Dist::Uniform, o_.rotate_int * p, [](double u) { return double(int_below(u, 4)); });
        std::vector<double> lab0(n), lab1(n);
        for (int64_t i = 0; i < n; ++i) {
            const auto q = static_cast<int32_t>(turns[i]);
            const int32_t fx = q == 1 || q == 2, fy = q == 2 || q == 3;
            blit_param(i, 0) ^= fx;
            blit_param(i, 1) ^= fy;
            blit_param(i, 2) = q == 1 || q == 3;
            lab0[i] = fx;
            lab1[i] = fy;
        }
        add_label(lab0);
        add_label(lab1);
    }
    if (o_.translate_int > 0) {
        auto v = uniform(gen, n, 2), keep = uniform(gen, n);  // v: [n, 2], {x, y} per image
        std::vector<double> lab0(n), lab1(n);
        const double span_x = w * o_.translate_int_max, span_y = h * o_.translate_int_max;
        for (int64_t i = 0; i < n; ++i) {
            const bool on = happens(keep[i], o_.translate_int * p);
            const double wx = on ? symmetric(v[2 * i]) : 0.0, wy = on ? symmetric(v[2 * i + 1]) : 0.0;
            // rounded half to even, in float32 as EDM's tensors are
            const auto tx = static_cast<int32_t>(std::nearbyint(static_cast<float>(wx) * static_cast<float>(span_x)));
            const auto ty = static_cast<int32_t>(std::nearbyint(static_cast<float>(wy) * static_cast<float>(span_y)));
            blit_param(i, 3) = tx;
            blit_param(i, 4) = ty;
            lab0[i] = tx / span_x;
            lab1[i] = ty / span_y;
        }
        add_label(lab0);
        add_label(lab1);
    }
    bool any_blit = false;
    for (int32_t v : bl) any_blit = any_blit || v != 0;
    if (any_blit) x = blit(x, bl);

    // ---- geometric transformations: G maps output pixel coordinates to input coordinates ----------
    // Each factor is composed only where its parameter is non-zero, so untouched images keep an exact
    // identity (mathematically the factors would be the identity anyway).
    std::vector<Mat3> g(static_cast<size_t>(n), Mat3::identity());
    // An angle in [-pi * max, pi * max).
    auto angle = [](double max) { return [max](double u) { return symmetric(u) * kPi * max; }; };
    if (o_.scale > 0) {
        const std::vector<double> w_scale = gated(gen, n, Dist::Normal, o_.scale * p, as_is);
        for (int64_t i = 0; i < n; ++i) {
            if (w_scale[i] == 0) continue;
            const double s = std::exp2(w_scale[i] * o_.scale_std);
            g[i] = g[i] * scale2d(1 / s, 1 / s);
        }
        add_label(w_scale);
    }
    if (o_.rotate_frac > 0) {
        const std::vector<double> w_rot = gated(gen, n, Dist::Uniform, o_.rotate_frac * p, angle(o_.rotate_frac_max));
        std::vector<double> lab0(n), lab1(n);
        for (int64_t i = 0; i < n; ++i) {
            const double wi = w_rot[i];
            if (wi != 0) g[i] = g[i] * rotate2d(wi);  // the output is the input rotated by -wi
            lab0[i] = std::cos(wi) - 1;
            lab1[i] = std::sin(wi);
        }
        add_label(lab0);
        add_label(lab1);
    }
    if (o_.aniso > 0) {
        auto v = normal(gen, n), rv = uniform(gen, n), keep = uniform(gen, n), keep_r = uniform(gen, n);
        std::vector<double> lab0(n), lab1(n);
        for (int64_t i = 0; i < n; ++i) {
            const double wi = happens(keep[i], o_.aniso * p) ? v[i] : 0.0;
            const double r = happens(keep_r[i], o_.aniso_rotate_prob) ? symmetric(rv[i]) * kPi : 0.0;
            if (wi != 0) {
                // scale by (s, 1/s) along the frame rotated by r
                const double s = std::exp2(wi * o_.aniso_std);
                g[i] = g[i] * rotate2d(-r) * scale2d(1 / s, s) * rotate2d(r);
            }
            lab0[i] = wi * std::cos(r);
            lab1[i] = wi * std::sin(r);
        }
        add_label(lab0);
        add_label(lab1);
    }
    if (o_.translate_frac > 0) {
        auto v = normal(gen, n, 2), keep = uniform(gen, n);  // v: [n, 2], {x, y} per image
        std::vector<double> lab0(n), lab1(n);
        for (int64_t i = 0; i < n; ++i) {
            const bool on = happens(keep[i], o_.translate_frac * p);
            const double wx = on ? v[2 * i] : 0.0, wy = on ? v[2 * i + 1] : 0.0;
            if (wx != 0 || wy != 0)
                g[i] = g[i] * translate2d(-wx * w * o_.translate_frac_std, -wy * h * o_.translate_frac_std);
            lab0[i] = wx;
            lab1[i] = wy;
        }
        add_label(lab0);
        add_label(lab1);
    }
    bool any_geometric = false;
    for (const Mat3& m : g) any_geometric = any_geometric || !m.is_identity();
    if (any_geometric) x = geometric(x, g);

    // ---- colour transformations: M acts on [r, g, b, 1], later transforms multiply on the left ----
    std::vector<Mat4> m(static_cast<size_t>(n), Mat4::identity());
    if (o_.brightness > 0) {
        const std::vector<double> w_bright = gated(gen, n, Dist::Normal, o_.brightness * p, as_is);
        for (int64_t i = 0; i < n; ++i)
            if (w_bright[i] != 0) m[i] = translate3d(w_bright[i] * o_.brightness_std) * m[i];
        add_label(w_bright);
    }
    if (o_.contrast > 0) {
        const std::vector<double> w_contrast = gated(gen, n, Dist::Normal, o_.contrast * p, as_is);
        for (int64_t i = 0; i < n; ++i)
            if (w_contrast[i] != 0) m[i] = scale3d(std::exp2(w_contrast[i] * o_.contrast_std)) * m[i];
        add_label(w_contrast);
    }
    if (o_.lumaflip > 0) {
        const std::vector<double> flips = gated(gen, n, Dist::Uniform, o_.lumaflip * p, coin);
        for (int64_t i = 0; i < n; ++i) {
            if (flips[i] == 0) continue;
            // mirror the colour along the luma axis: I - 2 a a^T
            Mat4 flip = Mat4::identity();
            const Mat4 proj = luma_projection();
            for (int k = 0; k < 16; ++k) flip.a[k] -= 2 * proj.a[k];
            m[i] = flip * m[i];
        }
        add_label(flips);
    }
    if (o_.hue > 0) {
        const std::vector<double> w_hue = gated(gen, n, Dist::Uniform, o_.hue * p, angle(o_.hue_max));
        std::vector<double> lab0(n), lab1(n);
        for (int64_t i = 0; i < n; ++i) {
            const double wi = w_hue[i];
            if (wi != 0) m[i] = rotate_luma(wi) * m[i];
            lab0[i] = std::cos(wi) - 1;
            lab1[i] = std::sin(wi);
        }
        add_label(lab0);
        add_label(lab1);
    }
    if (o_.saturation > 0) {
        const std::vector<double> w_sat = gated(gen, n, Dist::Normal, o_.saturation * p, as_is);
        for (int64_t i = 0; i < n; ++i) {
            if (w_sat[i] == 0) continue;
            // keep the luma component, scale the chroma by 2^(w * std)
            const double s = std::exp2(w_sat[i] * o_.saturation_std);
            const Mat4 proj = luma_projection();
            Mat4 sat = Mat4::identity();
            for (int k = 0; k < 16; ++k) sat.a[k] = proj.a[k] + (sat.a[k] - proj.a[k]) * s;
            m[i] = sat * m[i];
        }
        add_label(w_sat);
    }
    bool any_colour = false;
    for (const Mat4& mi : m) any_colour = any_colour || !mi.is_identity();
    if (any_colour) x = colour(x, m);

    // ---- result -----------------------------------------------------------------------------------
    const int64_t d = static_cast<int64_t>(label_cols.size());
    std::vector<double> labels(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < d; ++k) labels[i * d + k] = label_cols[k][i];
    Result r;
    r.images = x.same(images) ? ops::clone(x) : x;
    r.labels = ops::from_vector(labels, {n, d}, DType::F32, dev);
    return r;
}

}  // namespace stf::diffusion
