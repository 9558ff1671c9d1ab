// EDM's augmentation kernels on the CPU: pixel blitting and the geometric transformation (reflect
// padding, sym6 2x upsampling, bilinear sampling, sym6 2x downsampling). The formulas live in
// cuda/augment_math.h, shared with the CUDA kernels; these loops walk the pixels, and the geometric
// one keeps the intermediate sums the per-pixel formulas would compute again and again.
#include <algorithm>
#include <cmath>
#include <vector>
#include "cuda/augment_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T>
void augment_blit(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const T* x, T* y) {
    const int64_t hw = h * w;
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < n * c; ++plane) {
        const int32_t* p = params + (plane / c) * augment::kBlitParams;
        const T* src = x + plane * hw;
        T* dst = y + plane * hw;
        for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) dst[i * w + j] = src[augment::blit_source(p, h, w, i, j)];
    }
}

namespace {

// The per-pixel form (augment::sampled for every point of the sampler's grid) computes each tap of U
// from its 6 x 6 padded pixels, and each grid point reads four taps, so every value of U is computed
// about four times, 36 multiply-adds each, and each output pixel's 144-tap downsampling filter
// recomputes the rows its neighbours computed. This twin computes each needed row sum once:
//   1. the box of U the grid's taps can reach (the map is affine, so its extremes over the grid are at
//      the grid's corners);
//   2. for each padded row k feeding that box, upsampled_row at every column of the box;
//   3. U over the box from those rows (upsampled_from), then the bilinear grid (sampled_from);
//   4. downsampled_row for every row of the grid, then each output pixel (downsampled_from).
// The caches hold the values the per-pixel formulas compute, summed in the same order, so the result
// is the per-pixel form's bit for bit (tests/kernels/test_augment.cpp). On the CPU row's STF step with
// augmentation (2-core AMD EPYC, 2026-12-04, perf) its share fell from 9.8% to 0.7%.
template <class T> struct PlaneScratch {
    std::vector<T> s, up_rows, u, down_rows;
};

// Index range [lo, hi] of U's axis of `size` taps that samples in [v_lo, v_hi] read (floor(v) and the
// tap after it), clipped to U; empty (lo > hi) if none.
template <class T> std::pair<int64_t, int64_t> tap_range(T v_lo, T v_hi, int64_t size) {
    v_lo = std::max(v_lo, T(-1));
    v_hi = std::min(v_hi, T(size));
    return {std::max<int64_t>(0, static_cast<int64_t>(std::floor(v_lo))),
            std::min<int64_t>(size - 1, static_cast<int64_t>(std::floor(v_hi)) + 1)};
}

template <class T>
void geometric_plane(const T* src, int64_t h, int64_t w, const augment::Padding& pad, const augment::SampleMap<T>& map,
                     T* dst, PlaneScratch<T>& scratch) {
    const int64_t hp = h + pad.y0 + pad.y1, wp = w + pad.x0 + pad.x1;
    const int64_t rows = augment::sampled_rows(h), cols = augment::sampled_cols(w);
    T ux_lo = INFINITY, ux_hi = -INFINITY, uy_lo = INFINITY, uy_hi = -INFINITY;
    for (const int64_t i : {int64_t(0), rows - 1})
        for (const int64_t j : {int64_t(0), cols - 1}) {
            const T ux = augment::sample_x(map, i, j), uy = augment::sample_y(map, i, j);
            ux_lo = std::min(ux_lo, ux), ux_hi = std::max(ux_hi, ux);
            uy_lo = std::min(uy_lo, uy), uy_hi = std::max(uy_hi, uy);
        }
    const bool finite = std::isfinite(ux_lo) && std::isfinite(ux_hi) && std::isfinite(uy_lo) && std::isfinite(uy_hi);
    const auto [uj0, uj1] = finite ? tap_range(ux_lo, ux_hi, 2 * wp) : std::pair<int64_t, int64_t>{0, -1};
    const auto [ui0, ui1] = finite ? tap_range(uy_lo, uy_hi, 2 * hp) : std::pair<int64_t, int64_t>{0, -1};
    const int64_t box_w = std::max<int64_t>(uj1 - uj0 + 1, 0), box_h = std::max<int64_t>(ui1 - ui0 + 1, 0);

    // 2. Rows k0..k1 of the padded image, filtered along x at the box's columns.
    const int64_t k0 = std::max<int64_t>(0, (ui0 + 5) / 2 - (augment::kTaps / 2 - 1));
    const int64_t k1 = std::min<int64_t>(hp - 1, (ui1 + 5) / 2);
    scratch.up_rows.resize(size_t(std::max<int64_t>(k1 - k0 + 1, 0) * box_w));
    for (int64_t k = k0; k <= k1 && box_w > 0; ++k)
        for (int64_t uj = uj0; uj <= uj1; ++uj)
            scratch.up_rows[size_t((k - k0) * box_w + (uj - uj0))] = augment::upsampled_row(src, h, w, pad, k, uj);

    // 3. U over the box, then the grid. A tap outside the box (none, by step 1) would be computed directly.
    scratch.u.resize(size_t(box_h * box_w));
    for (int64_t ui = ui0; ui <= ui1; ++ui)
        for (int64_t uj = uj0; uj <= uj1; ++uj) {
            const T* column = scratch.up_rows.data() + (uj - uj0);
            const auto up_rows = [column, k0, box_w](int64_t k) { return column[(k - k0) * box_w]; };
            scratch.u[size_t((ui - ui0) * box_w + (uj - uj0))] = augment::upsampled_from<T>(up_rows, hp, wp, ui, uj);
        }
    const auto u_at = [&](int64_t ui, int64_t uj) {
        if (ui >= ui0 && ui <= ui1 && uj >= uj0 && uj <= uj1) return scratch.u[size_t((ui - ui0) * box_w + (uj - uj0))];
        return augment::upsampled(src, h, w, pad, ui, uj);
    };
    scratch.s.resize(size_t(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) scratch.s[size_t(i * cols + j)] = augment::sampled_from(u_at, hp, wp, map, i, j);

    // 4. Every grid row the output reads (rows 1 .. 2 (h - 1) + kTaps), filtered along x, then along y.
    const int64_t last_row = 2 * (h - 1) + augment::kTaps;
    scratch.down_rows.resize(size_t((last_row + 1) * w));
    for (int64_t r = 1; r <= last_row; ++r)
        for (int64_t x = 0; x < w; ++x) scratch.down_rows[size_t(r * w + x)] = augment::downsampled_row(scratch.s.data(), w, r, x);
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            const T* column = scratch.down_rows.data() + x;
            const auto down_rows = [column, w](int64_t r) { return column[r * w]; };
            dst[y * w + x] = augment::downsampled_from<T>(down_rows, y);
        }
}

}  // namespace

template <class T>
void augment_geometric(int64_t n, int64_t c, int64_t h, int64_t w, const T* matrices, int64_t pad_x0, int64_t pad_y0,
                       int64_t pad_x1, int64_t pad_y1, const T* x, T* y) {
    const augment::Padding pad{pad_x0, pad_y0, pad_x1, pad_y1};
#pragma omp parallel
    {
        PlaneScratch<T> scratch;
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < n * c; ++plane) {
            const augment::SampleMap<T> map = augment::sample_map(matrices + (plane / c) * 9, h, w, pad);
            geometric_plane(x + plane * h * w, h, w, pad, map, y + plane * h * w, scratch);
        }
    }
}

// The per-pixel form: every grid point and output pixel from the formulas alone, as the CUDA kernels
// compute them. The test compares augment_geometric with it bit for bit.
template <class T>
void augment_geometric_per_pixel(int64_t n, int64_t c, int64_t h, int64_t w, const T* matrices, int64_t pad_x0,
                                 int64_t pad_y0, int64_t pad_x1, int64_t pad_y1, const T* x, T* y) {
    const augment::Padding pad{pad_x0, pad_y0, pad_x1, pad_y1};
    const int64_t rows = augment::sampled_rows(h), cols = augment::sampled_cols(w);
    std::vector<T> s(static_cast<size_t>(rows * cols));
    for (int64_t plane = 0; plane < n * c; ++plane) {
        const augment::SampleMap<T> map = augment::sample_map(matrices + (plane / c) * 9, h, w, pad);
        const T* src = x + plane * h * w;
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < cols; ++j) s[i * cols + j] = augment::sampled(src, h, w, pad, map, i, j);
        T* dst = y + plane * h * w;
        for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) dst[i * w + j] = augment::downsampled(s.data(), w, i, j);
    }
}

#define STF_INSTANTIATE(T)                                                                                    \
    template void augment_blit<T>(int64_t, int64_t, int64_t, int64_t, const int32_t*, const T*, T*);         \
    template void augment_geometric<T>(int64_t, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, int64_t, \
                                       int64_t, const T*, T*);                                                \
    template void augment_geometric_per_pixel<T>(int64_t, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, \
                                                 int64_t, int64_t, const T*, T*);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
