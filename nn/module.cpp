#include "nn/module.h"

#include <cmath>

#include <sstream>

namespace stf::nn {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
    t.set_requires_grad(true);
    params_.emplace_back(name, t);
    return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
    buffers_.emplace_back(name, t);
    return t;
}

void Module::collect(const std::string& prefix, NamedTensors& out, bool params, bool buffers) const {
    if (params)
        for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
    if (buffers)
        for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, params, buffers);
}

NamedTensors Module::named_parameters() const {
    NamedTensors out;
    collect("", out, true, false);
    return out;
}

NamedTensors Module::named_buffers() const {
    NamedTensors out;
    collect("", out, false, true);
    return out;
}

// PyTorch's state_dict() order: at each module its parameters, then its buffers, then its children.
NamedTensors Module::state_dict() const {
    NamedTensors out;
    collect("", out, true, true);
    return out;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [name, t] : named_parameters()) out.push_back(t);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (auto& [name, t] : named_parameters()) n += t.numel();
    return n;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state) {
    NamedTensors mine = state_dict();
    std::vector<std::string> missing, mismatched, unexpected;
    std::map<std::string, bool> known;
    for (const auto& [name, t] : mine) {
        known[name] = true;
        auto it = state.find(name);
        if (it == state.end()) missing.push_back(name);
        else if (it->second.shape() != t.shape())
            mismatched.push_back(name + " (file " + shape_str(it->second.shape()) + ", model " + shape_str(t.shape()) + ")");
    }
    for (const auto& [name, t] : state)
        if (!known.count(name)) unexpected.push_back(name);
    if (!missing.empty() || !mismatched.empty() || !unexpected.empty()) {
        std::ostringstream os;
        os << "load_state_dict: the weights do not match this network";
        auto list = [&](const char* what, const std::vector<std::string>& names) {
            if (names.empty()) return;
            os << "\n  " << names.size() << " " << what << ":";
            for (size_t i = 0; i < names.size() && i < 5; ++i) os << " " << names[i] << (i + 1 < names.size() ? "," : "");
            if (names.size() > 5) os << " ...";
        };
        list("missing", missing);
        list("with other shapes", mismatched);
        list("unexpected", unexpected);
        throw Error(os.str());
    }
    NoGradGuard no_grad;
    for (auto& [name, t] : mine) {
        Tensor dst = t;
        ops::copy_(dst, state.at(name));
    }
}

void Module::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

void Module::set_activation_dtype(DType dtype) {
    STF_CHECK(dtype == DType::F32 || dtype == DType::BF16,
              "set_activation_dtype: " << dtype_name(dtype) << " (expected f32, or bf16 for mixed precision)");
    activation_dtype_ = dtype;
    for (auto& [name, child] : children_) child->set_activation_dtype(dtype);
}

void Module::zero_grad() {
    for (auto& [name, t] : named_parameters()) t.set_grad(Tensor());
}

// Points an existing TensorImpl at new data, so every handle to it sees the change.
static void replace_data(Tensor& t, const Tensor& fresh) {
    TensorImpl& impl = t.impl();
    impl.storage = fresh.storage();
    impl.offset = fresh.offset();
    impl.strides = fresh.strides();
    impl.device = fresh.device();
    impl.dtype = fresh.dtype();
    impl.grad.reset();
}

void Module::to(Device device) {
    for (auto& [name, t] : state_dict())
        if (t.device() != device) replace_data(t, ops::to(t, device));
}

void Module::to(DType dtype) {
    for (auto& [name, t] : state_dict())
        if (t.dtype() != dtype) replace_data(t, ops::to(t, dtype));
}

Device Module::device() const {
    NamedTensors all = state_dict();
    return all.empty() ? Device::cpu() : all.front().second.device();
}

std::string first_non_finite(const NamedTensors& tensors) {
    for (const auto& [name, t] : tensors) {
        if (!t.defined()) continue;
        for (double v : t.to_vector())
            if (!std::isfinite(v)) return name;
    }
    return "";
}

}  // namespace stf::nn
