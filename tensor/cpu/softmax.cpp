// Row-wise softmax and log-softmax over a contiguous [rows, cols] array, one row per loop iteration.
#include <cmath>
#include <limits>
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;

// Same combine as the CUDA kernel (from -inf, keep x only when greater), so the twins agree.
template <class T> T row_max(const T* x, int64_t cols) {
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < cols; ++j) m = x[j] > m ? x[j] : m;
    return m;
}

// softmax(x) = softmax(x - max(x)); after the shift every exponent is <= 0, so exp cannot overflow
// even for logits like 1000.
template <class T> void softmax_row(int64_t cols, T* y, const T* x, bool log) {
    if (cols == 0) return;
    const T m = row_max(x, cols);
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
        T e = std::exp(x[j] - m);
        sum += e;
        if (!log) y[j] = e;  // kept so the second pass need not recompute exp
    }
    if (log) {
        const T log_sum = static_cast<T>(std::log(sum));
        for (int64_t j = 0; j < cols; ++j) y[j] = x[j] - m - log_sum;
    } else {
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j < cols; ++j) y[j] = static_cast<T>(y[j] * inv);
    }
}

// With y = softmax(x), dy/dx = diag(y) - y y^T, so dx = y * (dy - <dy, y>).
// With y = log_softmax(x), dy/dx = I - 1 softmax^T, so dx = dy - exp(y) * sum(dy).
template <class T> void softmax_row_backward(int64_t cols, T* dx, const T* dy, const T* y, bool log) {
    double acc = 0.0;
    for (int64_t j = 0; j < cols; ++j) acc += log ? double(dy[j]) : double(dy[j]) * double(y[j]);
    const T s = static_cast<T>(acc);
    for (int64_t j = 0; j < cols; ++j) dx[j] = log ? dy[j] - std::exp(y[j]) * s : y[j] * (dy[j] - s);
}

} // namespace

template <class T> void softmax_rows(int64_t rows, int64_t cols, T* y, const T* x, bool log) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
    for (int64_t i = 0; i < rows; ++i) softmax_row(cols, y + i * cols, x + i * cols, log);
}

template <class T> void softmax_rows_backward(int64_t rows, int64_t cols, T* dx, const T* dy, const T* y, bool log) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
    for (int64_t i = 0; i < rows; ++i) softmax_row_backward(cols, dx + i * cols, dy + i * cols, y + i * cols, log);
}

template void softmax_rows<float>(int64_t, int64_t, float*, const float*, bool);
template void softmax_rows<double>(int64_t, int64_t, double*, const double*, bool);
template void softmax_rows_backward<float>(int64_t, int64_t, float*, const float*, const float*, bool);
template void softmax_rows_backward<double>(int64_t, int64_t, double*, const double*, const double*, bool);

} // namespace stf::cpu
