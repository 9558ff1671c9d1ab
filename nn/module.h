// Module: a named tree of parameters, buffers and submodules, with EDM's state_dict() names
// ("model.enc.32x32_conv.weight"): a module's own parameters, then its own buffers, then each child
// in registration order, names joined with dots.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/functions.h"

namespace stf::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The name of the first tensor holding a NaN or an infinity, "" when every value is finite. Checked
// before weights are written or used: a non-finite checkpoint must never replace a good one.
std::string first_non_finite(const NamedTensors& tensors);

class Module {
public:
    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    NamedTensors named_parameters() const;
    NamedTensors named_buffers() const;
    NamedTensors state_dict() const;  // EDM's order: own parameters, own buffers, then children
    std::vector<Tensor> parameters() const;
    int64_t num_parameters() const;

    // Copies values into this module's tensors (shapes must match). Missing, unexpected or mis-shaped
    // names throw an error listing the first few of each.
    void load_state_dict(const std::map<std::string, Tensor>& state);

    void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }
    // Mixed precision: the dtype in which the layers that support it keep activations, F32 (the
    // default) or BF16. Parameters stay float32 (the master weights); UNetBlock then runs its
    // convolutions in bf16 and the GroupNorms before them store bf16 (docs/perf.md, "The bf16 mode").
    // Set on a whole tree, like train().
    void set_activation_dtype(DType dtype);
    DType activation_dtype() const { return activation_dtype_; }
    void zero_grad();
    // Moves every parameter and buffer in place: handles held by layers stay valid.
    void to(Device device);
    void to(DType dtype);  // e.g. float64 for gradient checks
    Device device() const;

protected:
    Tensor register_parameter(const std::string& name, Tensor t);
    Tensor register_buffer(const std::string& name, Tensor t);
    template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        children_.emplace_back(name, m);
        return m;
    }
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

private:
    void collect(const std::string& prefix, NamedTensors& out, bool params, bool buffers) const;
    NamedTensors params_, buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
    DType activation_dtype_ = DType::F32;
};

}  // namespace stf::nn
