// What the GPU suite's files share: the measure of agreement, ||got - want|| / ||want|| (absolute when
// want is all zeros; any NaN or infinity in got fails it outright), device arrays for the kernel-level
// cases and their random inputs.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/runtime.h"
#include "tensor/tensor.h"

namespace stf::test {

inline double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i]) || std::isnan(want[i])) return INFINITY;
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline double rel_error(const Tensor& got, const Tensor& want) { return rel_error(got.to_vector(), want.to_vector()); }

// n elements of T in device memory from stf::cuda::malloc, returned to the allocator on scope exit.
template <class T> class DeviceArray {
public:
    explicit DeviceArray(int64_t n) : n_(n), ptr_(static_cast<T*>(stf::cuda::malloc(bytes()))) {}
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

inline std::vector<float> random_floats(int64_t n, float lo, float hi, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(gen);
    return v;
}

}  // namespace stf::test
