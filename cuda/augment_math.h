// The per-pixel arithmetic of EDM's augmentation pipeline (Karras et al. 2022, after Karras et al.
// 2020, "Training GANs with limited data"), shared by the CPU kernels (tensor/cpu/augment.cpp) and the
// CUDA kernels (cuda/augment.cu) so that both backends evaluate the same formulas in the same order.
// Header only, usable from host and device code, like cuda/philox.h.
//
// Pixel blitting (exact). Per image five integers {flip_x, flip_y, transpose, tx, ty}. Output pixel
// (y, x) reads, in order: the translated position (reflect_periodic(y + ty), reflect_periodic(x - tx))
// (EDM's signs), swapped when `transpose`, then mirrored in y when flip_y and in x when flip_x. This
// is EDM's x-flip, y-flip, 90-degree rotation (flips then transpose) and integer translation, applied
// in that order, folded into one gather.
//
// Geometric transformation (resampled). Per image a 3x3 matrix G that maps an output pixel's
// coordinates to the input coordinates it samples, both measured from the image centre
// ((w - 1) / 2, (h - 1) / 2), x right and y down (EDM's G_inv). The image is then
//   1. reflect-padded by (x0, y0, x1, y1) pixels (one padding for the whole batch, from padding()),
//   2. upsampled 2x: zeros interleaved, then convolved with the sym6 wavelet low-pass filter h
//      (12 taps) along x and along y, which gives  U[j] = sum_k h[j + 5 - 2k] P[k]  per axis,
//   3. sampled bilinearly (zero outside U) on a (2h + 12) x (2w + 12) grid, S[i][j] = U(G2 (j, i)),
//      with G2 the matrix G carried into U's pixel grid (sample_map()),
//   4. downsampled 2x with the same filter and cropped to h x w:
//      out[y][x] = sum_a sum_b h[a] h[b] S[2y + 1 + a][2x + 1 + b].
// Because h is an orthonormal wavelet filter (sum_b h[b] h[b - 2m] = 1 if m == 0 else 0), an identity
// G (or a whole-pixel translation) reproduces the input up to float rounding.
#pragma once
#include <cmath>
#include <cstdint>
#include "cuda/layout.h"

#if defined(__CUDACC__)
#define STF_AUGMENT_UNROLL _Pragma("unroll")
#else
#define STF_AUGMENT_UNROLL
#endif

namespace stf::augment {

constexpr int kTaps = 12;      // sym6 has 12 coefficients
constexpr int kFilterPad = 3;  // taps / 4: the sampler's grid is (h + 2 * 3) * 2 rows by (w + 2 * 3) * 2 columns

// The sym6 (least-asymmetric Daubechies, 6 vanishing moments) decomposition low-pass filter, as
// published with PyWavelets. Its coefficients sum to sqrt(2): upsampling by zero insertion halves the
// level once per axis and downsampling doubles it back.
template <class T> STF_HD T sym6(int t) {
    switch (t) {
        case 0: return T(0.015404109327027373);
        case 1: return T(0.0034907120842174702);
        case 2: return T(-0.11799011114819057);
        case 3: return T(-0.048311742585633);
        case 4: return T(0.4910559419267466);
        case 5: return T(0.787641141030194);
        case 6: return T(0.3379294217276218);
        case 7: return T(-0.07263752278646252);
        case 8: return T(-0.021060292512300564);
        case 9: return T(0.04472490177066578);
        case 10: return T(0.0017677118642428036);
        default: return T(-0.007800708325034148);
    }
}

// Reflect padding (the edge pixel is not repeated): index i of an axis of n pixels, for
// -(n - 1) <= i <= 2 (n - 1).
STF_HD int64_t reflect(int64_t i, int64_t n) {
    if (n == 1) return 0;
    if (i < 0) i = -i;
    if (i > n - 1) i = 2 * (n - 1) - i;
    return i;
}

// The same mirror extended periodically to any i (period 2n - 2): EDM's integer translation.
STF_HD int64_t reflect_periodic(int64_t i, int64_t n) {
    if (n == 1) return 0;
    const int64_t period = 2 * n - 2;
    int64_t m = i % period;
    if (m < 0) m += period;
    return reflect(m, n);
}

// ---- pixel blitting --------------------------------------------------------------------------------

struct Blit {
    int32_t flip_x, flip_y, transpose, tx, ty;
};
constexpr int kBlitParams = 5;

// The input offset (y * w + x within the plane) that output pixel (y, x) copies. With transpose,
// h == w.
STF_HD int64_t blit_source(const int32_t* p, int64_t h, int64_t w, int64_t y, int64_t x) {
    int64_t yt = reflect_periodic(y + p[4], h);
    int64_t xt = reflect_periodic(x - p[3], w);
    int64_t ys = p[2] ? xt : yt, xs = p[2] ? yt : xt;
    if (p[1]) ys = h - 1 - ys;
    if (p[0]) xs = w - 1 - xs;
    return ys * w + xs;
}

// ---- geometric transformation ----------------------------------------------------------------------

struct Padding {
    int64_t x0, y0, x1, y1;  // reflect padding left, top, right, bottom
};

// EDM's padding for a batch of n row-major 3x3 matrices G: enough that every image's transformed
// corners, widened by twice the filter pad, stay on reflected pixels, and at most (w - 1, h - 1) so
// reflection stays valid. Host code; the kernels receive the result.
template <class T> Padding padding(int64_t n, int64_t h, int64_t w, const T* g) {
    const double cx = (w - 1) / 2.0, cy = (h - 1) / 2.0;
    const double corners[4][2] = {{-cx, -cy}, {cx, -cy}, {cx, cy}, {-cx, cy}};
    double need[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};  // left, top, right, bottom
    for (int64_t b = 0; b < n; ++b) {
        const T* m = g + 9 * b;
        for (const auto& c : corners) {
            double x = double(m[0]) * c[0] + double(m[1]) * c[1] + double(m[2]);
            double y = double(m[3]) * c[0] + double(m[4]) * c[1] + double(m[5]);
            need[0] = std::fmax(need[0], -x);
            need[1] = std::fmax(need[1], -y);
            need[2] = std::fmax(need[2], x);
            need[3] = std::fmax(need[3], y);
        }
    }
    auto side = [](double v, double centre, int64_t limit) {
        v = std::fmin(std::fmax(v + 2 * kFilterPad - centre, 0.0), double(limit));
        return static_cast<int64_t>(std::ceil(v));
    };
    return {side(need[0], cx, w - 1), side(need[1], cy, h - 1), side(need[2], cx, w - 1), side(need[3], cy, h - 1)};
}

// Rows and columns of the bilinear sampler's output grid.
STF_HD int64_t sampled_rows(int64_t h) { return 2 * (h + 2 * kFilterPad); }
STF_HD int64_t sampled_cols(int64_t w) { return 2 * (w + 2 * kFilterPad); }

// Where sampler pixel (i, j) reads U: (ux, uy) = (xx * j + xy * i + x0, yx * j + yy * i + y0), in U's
// pixel units (pixel k covers [k - 0.5, k + 0.5)).
template <class T> struct SampleMap {
    T xx, xy, x0, yx, yy, y0;
};

// G carried into U's grid. With A = G's 2x2 part and t its translation, padding shifts the centre by
// d = ((x0 - x1) / 2, (y0 - y1) / 2); doubling the resolution, with pixel centres at half-integers of
// the doubled grid, gives the centred map  A p + 2 (t + d) + A (1/2, 1/2) - (1/2, 1/2).  Centring
// the sampler grid ((2w + 11) / 2) and U ((2 wp - 1) / 2) folds into the constant terms.
template <class T> STF_HD SampleMap<T> sample_map(const T* g, int64_t h, int64_t w, const Padding& p) {
    const int64_t hp = h + p.y0 + p.y1, wp = w + p.x0 + p.x1;
    const T bx = 2 * (g[2] + T(p.x0 - p.x1) / 2) + (g[0] + g[1]) / 2 - T(0.5);
    const T by = 2 * (g[5] + T(p.y0 - p.y1) / 2) + (g[3] + g[4]) / 2 - T(0.5);
    const T su = T(sampled_cols(w) - 1) / 2, sv = T(sampled_rows(h) - 1) / 2;  // sampler grid centre
    const T ux = T(2 * wp - 1) / 2, uy = T(2 * hp - 1) / 2;                    // U's centre
    return {g[0], g[1], bx + ux - g[0] * su - g[1] * sv, g[3], g[4], by + uy - g[3] * su - g[4] * sv};
}

// U[ui][uj]: the 2x-upsampled, reflect-padded input plane (h x w) at an integer position of its
// (2 hp) x (2 wp) grid; zero outside it. Per axis U[j] = sum_k h[j + 5 - 2k] P[k] over the 6 padded
// pixels k in range, P[k] = plane[reflect(k - pad)]. Written in two steps so that a CPU kernel can
// cache the first: upsampled_row, one padded row k filtered along x at column uj; upsampled_from, the
// rows filtered along y, rows(k) giving upsampled_row's value (computed on the spot or read from a
// cache, the same numbers either way).
template <class T>
STF_HD T upsampled_row(const T* plane, int64_t h, int64_t w, const Padding& p, int64_t k, int64_t uj) {
    const int64_t wp = w + p.x0 + p.x1;
    const int64_t l_last = (uj + 5) / 2;  // taps h[par + 2q] meet l = last - q
    const int par_j = static_cast<int>((uj + 5) % 2);
    const T* row = plane + reflect(k - p.y0, h) * w;
    T row_acc = T(0);
    STF_AUGMENT_UNROLL
    for (int q = 0; q < kTaps / 2; ++q) {
        const int64_t l = l_last - q;
        if (l < 0 || l >= wp) continue;
        const T coef = par_j ? sym6<T>(2 * q + 1) : sym6<T>(2 * q);
        row_acc += coef * row[reflect(l - p.x0, w)];
    }
    return row_acc;
}

template <class T, class Rows> STF_HD T upsampled_from(const Rows& rows, int64_t hp, int64_t wp, int64_t ui, int64_t uj) {
    if (ui < 0 || uj < 0 || ui >= 2 * hp || uj >= 2 * wp) return T(0);
    const int64_t k_last = (ui + 5) / 2;
    const int par_i = static_cast<int>((ui + 5) % 2);
    T acc = T(0);
    STF_AUGMENT_UNROLL
    for (int m = 0; m < kTaps / 2; ++m) {
        const int64_t k = k_last - m;
        if (k < 0 || k >= hp) continue;
        acc += (par_i ? sym6<T>(2 * m + 1) : sym6<T>(2 * m)) * rows(k);
    }
    return acc;
}

template <class T>
STF_HD T upsampled(const T* plane, int64_t h, int64_t w, const Padding& p, int64_t ui, int64_t uj) {
    const auto rows = [=](int64_t k) { return upsampled_row(plane, h, w, p, k, uj); };
    return upsampled_from<T>(rows, h + p.y0 + p.y1, w + p.x0 + p.x1, ui, uj);
}

template <class T> STF_HD T floor_of(T v) {
#if defined(__CUDA_ARCH__)
    return floor(v);
#else
    return std::floor(v);
#endif
}

// Where sampler pixel (i, j) reads U, in U's pixel units.
template <class T> STF_HD T sample_x(const SampleMap<T>& m, int64_t i, int64_t j) { return m.xx * T(j) + m.xy * T(i) + m.x0; }
template <class T> STF_HD T sample_y(const SampleMap<T>& m, int64_t i, int64_t j) { return m.yx * T(j) + m.yy * T(i) + m.y0; }

// S[i][j]: U sampled bilinearly at map(i, j), taps outside U reading zero (grid_sample's bilinear mode
// with zero padding and align_corners=False). Taps of weight zero are skipped. u(ui, uj) gives U's
// value at a tap inside U (upsampled, or a CPU kernel's cache of it).
template <class T, class UAt>
STF_HD T sampled_from(const UAt& u, int64_t hp, int64_t wp, const SampleMap<T>& m, int64_t i, int64_t j) {
    const T ux = sample_x(m, i, j), uy = sample_y(m, i, j);
    // Every tap outside U (this also keeps the integer conversions below in range, and NaN out).
    if (!(ux > -1 && uy > -1 && ux < T(2 * wp) && uy < T(2 * hp))) return T(0);
    const T fx0 = floor_of(ux), fy0 = floor_of(uy);
    const T wx = ux - fx0, wy = uy - fy0;
    const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
    T top = (1 - wx) * u(y0, x0);
    if (wx != 0) top += wx * u(y0, x0 + 1);
    T acc = (1 - wy) * top;
    if (wy != 0) {
        T bottom = (1 - wx) * u(y0 + 1, x0);
        if (wx != 0) bottom += wx * u(y0 + 1, x0 + 1);
        acc += wy * bottom;
    }
    return acc;
}

template <class T>
STF_HD T sampled(const T* plane, int64_t h, int64_t w, const Padding& p, const SampleMap<T>& m, int64_t i, int64_t j) {
    const auto u = [=](int64_t ui, int64_t uj) { return upsampled(plane, h, w, p, ui, uj); };
    return sampled_from(u, h + p.y0 + p.y1, w + p.x0 + p.x1, m, i, j);
}

// out[y][x] from the sampler's plane s (sampled_cols(w) columns): sym6 along x, then along y, stride 2.
// downsampled_row is row r of s filtered along x for output column x; downsampled_from filters those
// rows along y, rows(r) giving downsampled_row's value (on the spot, or a CPU kernel's cache).
template <class T> STF_HD T downsampled_row(const T* s, int64_t w, int64_t r, int64_t x) {
    const T* row = s + r * sampled_cols(w) + 2 * x + 1;
    T row_acc = T(0);
    STF_AUGMENT_UNROLL
    for (int b = 0; b < kTaps; ++b) row_acc += sym6<T>(b) * row[b];
    return row_acc;
}

template <class T, class Rows> STF_HD T downsampled_from(const Rows& rows, int64_t y) {
    T acc = T(0);
    STF_AUGMENT_UNROLL
    for (int a = 0; a < kTaps; ++a) acc += sym6<T>(a) * rows(2 * y + 1 + a);
    return acc;
}

template <class T> STF_HD T downsampled(const T* s, int64_t w, int64_t y, int64_t x) {
    const auto rows = [=](int64_t r) { return downsampled_row(s, w, r, x); };
    return downsampled_from<T>(rows, y);
}

}  // namespace stf::augment
