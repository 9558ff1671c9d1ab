// What the kernel lessons (tests/kernels/test_<family>.cpp) share: random inputs, strided layouts, the
// two measures of agreement, and (CUDA builds) device arrays.
//
// Each test_<family>.cpp has three sections, in this order:
//   (a) the family's naive reference: the textbook formula as plain loops in long double (or double),
//   (b) the CPU twin (tensor/cpu/kernels.h) against that reference, in float and double,
//   (c) the CUDA kernels (cuda/kernels.h) against the CPU twin, compiled only with CUDA and tagged
//       `* stf::test::needs_gpu()`, so that CTest's kernels_gpu runs them and kernels leaves them out.
// A disagreement in (b) points at the CPU kernel, one in (c) at the CUDA kernel.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "cuda/layout.h"
#include "cuda/math_mode.h"
#include "cuda/runtime.h"
#include "tensor/tensor.h"
#include "tests/requirements.h"

// Its own namespace: the GPU suite's tests/gpu/parity.h has an op-level rel_error of its own in stf::test.
namespace stf::kernel_test {

using stf::test::needs_gpu;

// ---- inputs ---------------------------------------------------------------------------------------

// n values uniform in [lo, hi), drawn in double and stored as T.
template <class T> std::vector<T> random_vector(size_t n, double lo, double hi, unsigned seed) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<T> v(n);
    for (auto& e : v) e = static_cast<T>(dist(gen));
    return v;
}

// n floats uniform in [lo, hi), drawn in float (the GPU cases' inputs).
inline std::vector<float> random_floats(int64_t n, float lo, float hi, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(gen);
    return v;
}

// Sizes that are not multiples of any block or vector width, so the tails of grid-stride loops, float4
// paths and reductions get exercised.
inline constexpr int64_t kSizes[] = {1, 7, 1000, 4099, 65537};

// ---- layouts --------------------------------------------------------------------------------------

// Sizes with explicit strides, or row-major contiguous strides when none are given.
inline StridedLayout make_layout(const std::vector<int64_t>& sizes, std::vector<int64_t> strides = {}) {
    StridedLayout l;
    l.ndim = static_cast<int>(sizes.size());
    if (strides.empty()) {
        strides.assign(sizes.size(), 1);
        for (int d = l.ndim - 2; d >= 0; --d) strides[d] = strides[d + 1] * sizes[d + 1];
    }
    for (int d = 0; d < l.ndim; ++d) {
        l.sizes[d] = sizes[d];
        l.strides[d] = strides[d];
    }
    return l;
}

inline StridedLayout contiguous(const std::vector<int64_t>& sizes) { return make_layout(sizes); }

// ---- agreement ------------------------------------------------------------------------------------

// CPU twin against the reference: a float kernel is a few ulps (~1e-7) from the truth, double near exact.
template <class T> constexpr double tol() { return std::is_same_v<T, float> ? 1e-5 : 1e-12; }

// Largest error over the elements, relative for |want| > 1 and absolute below (so zeros are fine).
// NaN anywhere in got fails it.
template <class T, class W> double max_err(const std::vector<T>& got, const std::vector<W>& want) {
    REQUIRE(got.size() == want.size());
    double worst = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double w = static_cast<double>(want[i]);
        const double e = std::abs(static_cast<double>(got[i]) - w) / std::max(1.0, std::abs(w));
        if (!(e <= worst)) worst = e;  // also catches NaN
    }
    return worst;
}

// CUDA against the CPU twin: ||got - want|| / ||want|| (the absolute norm when want is all zeros). NaN
// is accepted only where both sides are NaN and infinities must match exactly; anything else gives
// infinity, so an output element a kernel forgot to write (poisoned with NaN) fails.
template <class G, class W> double rel_error(const std::vector<G>& got, const std::vector<W>& want) {
    REQUIRE(got.size() == want.size());
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
        if (std::isnan(g) || std::isnan(w)) {
            if (std::isnan(g) && std::isnan(w)) continue;
            return std::numeric_limits<double>::infinity();
        }
        if (std::isinf(g) || std::isinf(w)) {
            if (g == w) continue;
            return std::numeric_limits<double>::infinity();
        }
        diff += (g - w) * (g - w);
        norm += w * w;
    }
    return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

inline double rel_error(const Tensor& got, const Tensor& want) { return rel_error(got.to_vector(), want.to_vector()); }

// <a, b> accumulated in long double.
template <class A, class B> double dot(const std::vector<A>& a, const std::vector<B>& b) {
    REQUIRE(a.size() == b.size());
    long double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<long double>(a[i]) * static_cast<long double>(b[i]);
    return static_cast<double>(s);
}

// ---- device memory (CUDA builds) -----------------------------------------------------------------

#if STF_WITH_CUDA
// Sets cuBLAS's and cuDNN's TF32 switch for one test and restores it afterwards, so tests do not leak
// it to each other.
class Tf32Scope {
public:
    explicit Tf32Scope(bool allow) : saved_(stf::cuda::allow_tf32()) { stf::cuda::set_allow_tf32(allow); }
    ~Tf32Scope() { stf::cuda::set_allow_tf32(saved_); }
    Tf32Scope(const Tf32Scope&) = delete;
    Tf32Scope& operator=(const Tf32Scope&) = delete;

private:
    bool saved_;
};

// n elements of T in device memory from stf::cuda::malloc, returned to the allocator on scope exit
// (also when a failed REQUIRE throws).
template <class T> class DeviceArray {
public:
    explicit DeviceArray(int64_t n) : n_(n), ptr_(static_cast<T*>(stf::cuda::malloc(std::max<size_t>(bytes(), 1)))) {}
    explicit DeviceArray(const std::vector<T>& host) : DeviceArray(static_cast<int64_t>(host.size())) { upload(host); }
    ~DeviceArray() { stf::cuda::free(ptr_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    T* get() const { return ptr_; }
    size_t bytes() const { return static_cast<size_t>(n_) * sizeof(T); }
    void upload(const std::vector<T>& host) {
        REQUIRE(host.size() == static_cast<size_t>(n_));
        stf::cuda::copy_host_to_device(ptr_, host.data(), bytes());
    }
    std::vector<T> download() const {
        std::vector<T> host(static_cast<size_t>(n_));
        stf::cuda::copy_device_to_host(host.data(), ptr_, bytes());
        return host;
    }
    // Every byte 0xFF: a NaN as float32 and as bf16, so an element a kernel does not write fails.
    void poison() {
        std::vector<unsigned char> ff(bytes(), 0xFF);
        stf::cuda::copy_host_to_device(ptr_, ff.data(), bytes());
    }

private:
    int64_t n_;
    T* ptr_;
};
#endif

}  // namespace stf::kernel_test
