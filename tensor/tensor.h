// Tensor: a strided view (shape, strides, offset) of a reference-counted Storage on one device.
// This class holds data and metadata only. Operations are free functions: raw ones in tensor/ops.h
// (stf::ops), differentiable ones in autograd/functions.h (stf::).
#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace stf {

// ---- errors ----------------------------------------------------------------------------------------
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Throws stf::Error with the message when cond is false. The message should name the op and the shapes.
#define STF_CHECK(cond, msg)                                      \
    do {                                                          \
        if (!(cond)) {                                            \
            std::ostringstream stf_check_os_;                     \
            stf_check_os_ << msg;                                 \
            throw ::stf::Error(stf_check_os_.str());              \
        }                                                         \
    } while (0)

// ---- dtype and device ------------------------------------------------------------------------------
enum class DType : uint8_t { F32 = 0, F64 = 1, BF16 = 2 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

enum class DeviceType : uint8_t { CPU, CUDA };
struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;
    static Device cpu() { return {DeviceType::CPU, 0}; }
    static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
    bool is_cpu() const { return type == DeviceType::CPU; }
    bool is_cuda() const { return type == DeviceType::CUDA; }
    bool operator==(const Device& o) const { return type == o.type && index == o.index; }
    bool operator!=(const Device& o) const { return !(*this == o); }
    std::string str() const;
    static Device parse(const std::string& name);  // "cpu", "cuda", "cuda:0"
};

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
// Sizes come from files and flags, so their products are checked: a product past int64 throws
// stf::Error naming the shape instead of wrapping to a small (even zero) count that would pass a
// later size check and then index past an allocation. A zero dim makes numel 0 whatever the others.
int64_t shape_numel(const Shape& s);
// Row-major strides; the dims other than a zero one still multiply, so they are checked too.
Shape contiguous_strides(const Shape& s);
// a * b for sizes >= 0; throws stf::Error naming `what` when one is negative or the product overflows.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);

// ---- storage ---------------------------------------------------------------------------------------
// Owns bytes on a device: host memory (64-byte aligned) or device memory from the caching allocator.
class Storage {
public:
    Storage(size_t nbytes, Device device);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    void* data() const { return data_; }
    size_t nbytes() const { return nbytes_; }
    Device device() const { return device_; }

private:
    void* data_ = nullptr;
    size_t nbytes_ = 0;
    Device device_;
};

struct Node;  // autograd graph node, defined in autograd/node.h

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    int64_t offset = 0;  // in elements
    Shape sizes;
    Shape strides;       // in elements
    DType dtype = DType::F32;
    Device device;
    // Autograd state, managed by autograd/: whether gradients flow to this tensor, its accumulated
    // gradient (leaves), and the node that produced it (non-leaves).
    bool requires_grad = false;
    std::shared_ptr<TensorImpl> grad;
    std::shared_ptr<Node> grad_fn;
};

class Tensor {
public:
    Tensor() = default;  // undefined: no storage
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
    // A new contiguous tensor with uninitialised contents.
    static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
    // A view of existing storage.
    static Tensor view_of(std::shared_ptr<Storage> storage, Shape sizes, Shape strides, int64_t offset, DType dtype);

    bool defined() const { return impl_ != nullptr; }
    const Shape& shape() const { return impl().sizes; }
    const Shape& strides() const { return impl().strides; }
    int64_t offset() const { return impl().offset; }
    int ndim() const { return static_cast<int>(impl().sizes.size()); }
    int64_t size(int dim) const;  // negative dims count from the end
    int64_t numel() const { return shape_numel(impl().sizes); }
    DType dtype() const { return impl().dtype; }
    Device device() const { return impl().device; }
    bool is_contiguous() const;
    const std::shared_ptr<Storage>& storage() const { return impl().storage; }

    // Pointer to the first element (storage + offset). data<T>() checks that T matches the dtype.
    void* raw_data() const;
    template <class T> T* data() const;

    // Reads a CPU or CUDA tensor back to the host as double (for tests, printing, logging).
    std::vector<double> to_vector() const;
    double item() const;  // the only element of a one-element tensor

    // Autograd state (see autograd/).
    bool requires_grad() const { return impl().requires_grad; }
    Tensor& set_requires_grad(bool on = true);
    Tensor grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
    void set_grad(const Tensor& g) { impl().grad = g.impl_; }
    const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
    bool is_leaf() const { return impl().grad_fn == nullptr; }

    TensorImpl& impl() const;
    const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
    bool same(const Tensor& o) const { return impl_ == o.impl_; }

private:
    std::shared_ptr<TensorImpl> impl_;
};

// Shape, dtype, device and (up to a limit) the values.
std::ostream& operator<<(std::ostream& os, const Tensor& t);

// One-line description for error messages: "f32[2, 3] on cpu".
std::string describe(const Tensor& t);

int normalize_dim(int dim, int ndim, const char* op);

}  // namespace stf
