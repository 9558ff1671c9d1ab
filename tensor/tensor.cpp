#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>
#include <iomanip>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cuda/bf16.h"
#include "cuda/runtime.h"
#include "tensor/ops.h"

namespace stf {

size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32: return 4;
        case DType::F64: return 8;
        case DType::BF16: return 2;
    }
    return 0;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "f32";
        case DType::F64: return "f64";
        case DType::BF16: return "bf16";
    }
    return "?";
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Device Device::parse(const std::string& name) {
    if (name == "cpu") return cpu();
    if (name == "cuda") return cuda(0);
    if (name.rfind("cuda:", 0) == 0) {
        char* end = nullptr;
        long idx = std::strtol(name.c_str() + 5, &end, 10);
        if (end && *end == '\0' && idx >= 0) return cuda(static_cast<int>(idx));
    }
    throw Error("unknown device '" + name + "' (expected cpu, cuda or cuda:N)");
}

std::string shape_str(const Shape& s) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    os << "]";
    return os.str();
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
    STF_CHECK(a >= 0 && b >= 0, what << ": negative size (" << a << " x " << b << ")");
    int64_t out = 0;
    STF_CHECK(!__builtin_mul_overflow(a, b, &out), what << ": " << a << " x " << b << " overflows 64 bits");
    return out;
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s)
        if (d == 0) return 0;
    for (int64_t d : s)
        if (__builtin_mul_overflow(n, d, &n)) throw Error("shape " + shape_str(s) + ": element count overflows 64 bits");
    return n;
}

Shape contiguous_strides(const Shape& s) {
    Shape strides(s.size());
    int64_t st = 1;
    for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
        strides[d] = st;
        if (__builtin_mul_overflow(st, std::max<int64_t>(s[d], 1), &st))
            throw Error("shape " + shape_str(s) + ": a stride overflows 64 bits");
    }
    return strides;
}

int normalize_dim(int dim, int ndim, const char* op) {
    int d = dim < 0 ? dim + ndim : dim;
    STF_CHECK(d >= 0 && d < ndim, op << ": dim " << dim << " out of range for a tensor of " << ndim << " dims");
    return d;
}

// ---- Storage ---------------------------------------------------------------------------------------

namespace {

// glibc serves a block above its mmap threshold (128 KiB at first, raised as such blocks are freed)
// with a fresh mapping, and gives a freed block back to the kernel, as it gives back free memory at
// the top of the heap above its trim threshold. A training step allocates and frees its activations
// every step, so on the CPU every step faulted in its activations' pages again, zeroed by the kernel:
// 500k page faults in 10 steps of the CPU row (perf stat, 2026-12-04). Raised once, before the first
// host tensor, the thresholds keep blocks up to 32 MiB (glibc's limit for this setting) in the heap
// and its free memory there for the next step; peak resident memory does not grow (docs/perf.md).
void keep_host_blocks_in_heap() {
#if defined(__GLIBC__)
    static const bool done = [] {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        return true;
    }();
    (void)done;
#endif
}

}  // namespace

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (device.is_cpu()) {
        keep_host_blocks_in_heap();
        size_t rounded = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
        data_ = std::aligned_alloc(64, rounded);
        if (!data_) throw Error("out of host memory allocating " + std::to_string(nbytes) + " bytes");
    } else {
        STF_CHECK(cuda::available(), "cannot allocate on " << device.str() << ": "
                                         << (cuda::built_with_cuda() ? "no CUDA device is available"
                                                                     : "stf was built without CUDA"));
        data_ = cuda::malloc(nbytes);
    }
}

Storage::~Storage() {
    if (device_.is_cpu()) std::free(data_);
    else cuda::free(data_);
}

// ---- Tensor ----------------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    for (int64_t d : shape) STF_CHECK(d >= 0, "empty: negative size in shape " << shape_str(shape));
    auto impl = std::make_shared<TensorImpl>();
    impl->strides = contiguous_strides(shape);
    int64_t nbytes = checked_mul(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)),
                                 "empty: bytes of shape " + shape_str(shape));
    impl->storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), device);
    impl->sizes = shape;
    impl->dtype = dtype;
    impl->device = device;
    return Tensor(std::move(impl));
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, Shape sizes, Shape strides, int64_t offset, DType dtype) {
    auto impl = std::make_shared<TensorImpl>();
    impl->device = storage->device();
    impl->storage = std::move(storage);
    impl->sizes = std::move(sizes);
    impl->strides = std::move(strides);
    impl->offset = offset;
    impl->dtype = dtype;
    return Tensor(std::move(impl));
}

TensorImpl& Tensor::impl() const {
    if (!impl_) throw Error("use of an undefined tensor");
    return *impl_;
}

int64_t Tensor::size(int dim) const { return shape()[normalize_dim(dim, ndim(), "size")]; }

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (int d = ndim() - 1; d >= 0; --d) {
        if (shape()[d] != 1 && strides()[d] != expected) return false;
        expected *= shape()[d];
    }
    return true;
}

void* Tensor::raw_data() const {
    return static_cast<char*>(impl().storage->data()) + impl().offset * dtype_size(impl().dtype);
}

template <class T> static constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::BF16; }
template <> constexpr DType dtype_of<bf16>() { return DType::BF16; }

template <class T> T* Tensor::data() const {
    STF_CHECK(dtype() == dtype_of<T>(), "data<" << dtype_name(dtype_of<T>()) << ">() on a tensor of dtype "
                                                << dtype_name(dtype()));
    return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template uint16_t* Tensor::data<uint16_t>() const;
template bf16* Tensor::data<bf16>() const;

std::vector<double> Tensor::to_vector() const {
    Tensor host = ops::contiguous(ops::to(ops::to(*this, Device::cpu()), DType::F64));
    const double* p = host.data<double>();
    return std::vector<double>(p, p + host.numel());
}

double Tensor::item() const {
    STF_CHECK(numel() == 1, "item: tensor " << describe(*this) << " does not have exactly one element");
    return to_vector()[0];
}

Tensor& Tensor::set_requires_grad(bool on) {
    STF_CHECK(!on || dtype() != DType::BF16, "set_requires_grad: bf16 tensors are storage only");
    impl().requires_grad = on;
    return *this;
}

std::string describe(const Tensor& t) {
    if (!t.defined()) return "undefined tensor";
    return std::string(dtype_name(t.dtype())) + shape_str(t.shape()) + " on " + t.device().str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
    os << "Tensor(" << describe(t);
    if (!t.defined()) return os << ")";
    constexpr int64_t kShown = 16;
    std::vector<double> v = t.to_vector();
    os << ", values [";
    for (int64_t i = 0; i < std::min<int64_t>(kShown, v.size()); ++i) os << (i ? ", " : "") << std::setprecision(6) << v[i];
    if (static_cast<int64_t>(v.size()) > kShown) os << ", ... (" << v.size() << " total)";
    return os << "])";
}

}  // namespace stf
