// Reduction over the middle dimension of a contiguous [outer, r, inner] array.
//
// Any single-axis reduction of a contiguous tensor has this shape: outer = product of the sizes
// before the axis, r = the axis, inner = product of the sizes after it.
#include <algorithm>
#include <limits>
#include "tensor/cpu/kernels.h"
#include "tensor/cpu/lane_sum.h"

namespace stf::cpu {
namespace {

// Columns are reduced kTile at a time: each step down the r axis then reads kTile neighbouring
// values (one cache-friendly run) instead of jumping `inner` elements per value.
constexpr int64_t kTile = 256;
constexpr int64_t kParallelMin = 1 << 15;

// Sums in double so that long reductions in float lose no more than one final rounding.
template <class T> void sum_tile(const T* x, int64_t r, int64_t inner, int64_t len, T* out) {
    if (inner == 1) {  // a contiguous run (a reduction over the last dims, or a bias gradient's dims moved last)
        out[0] = static_cast<T>(lane_sum(r, [x](int64_t k) { return double(x[k]); }));
        return;
    }
    double acc[kTile] = {};
    for (int64_t k = 0; k < r; ++k) {
        const T* row = x + k * inner;
        for (int64_t j = 0; j < len; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < len; ++j) out[j] = static_cast<T>(acc[j]);
}

// Starts from -inf and keeps v only when v > max, exactly as the CUDA kernel combines values, so the
// twins agree even on NaN inputs: a NaN never compares greater, so it is skipped.
template <class T> void max_tile(const T* x, int64_t r, int64_t inner, int64_t len, T* out) {
    T acc[kTile];
    for (int64_t j = 0; j < len; ++j) acc[j] = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < r; ++k) {
        const T* row = x + k * inner;
        for (int64_t j = 0; j < len; ++j) acc[j] = row[j] > acc[j] ? row[j] : acc[j];
    }
    for (int64_t j = 0; j < len; ++j) out[j] = acc[j];
}

} // namespace

template <class T> void reduce(ReduceOp op, int64_t outer, int64_t r, int64_t inner, T* out, const T* x) {
    const int64_t tiles = (inner + kTile - 1) / kTile;
    // Each task owns a disjoint tile of the output and sums it in a fixed order, so the result is
    // the same for any number of threads.
#pragma omp parallel for schedule(static) if (outer * r * inner >= kParallelMin)
    for (int64_t task = 0; task < outer * tiles; ++task) {
        const int64_t o = task / tiles, j0 = (task % tiles) * kTile;
        const int64_t len = std::min(kTile, inner - j0);
        const T* src = x + o * r * inner + j0;
        T* dst = out + o * inner + j0;
        if (op == ReduceOp::Sum)
            sum_tile(src, r, inner, len, dst);
        else
            max_tile(src, r, inner, len, dst);
    }
}

template void reduce<float>(ReduceOp, int64_t, int64_t, int64_t, float*, const float*);
template void reduce<double>(ReduceOp, int64_t, int64_t, int64_t, double*, const double*);

} // namespace stf::cpu
