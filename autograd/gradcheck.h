// Gradient check: compares backward() against central differences, in float64 on the CPU.
#pragma once
#include <functional>
#include <string>
#include <vector>
#include "tensor/tensor.h"

namespace stf {

struct GradcheckResult {
    bool ok = true;
    double max_abs_error = 0;  // over all inputs and elements
    double max_rel_error = 0;
    std::string report;        // which input and element failed, with both values
};

// f maps float64 CPU inputs to a tensor. The scalar checked is sum(f(x) * r) for a fixed random r, so
// every output element contributes. An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          double eps = 1e-6, double atol = 1e-6, double rtol = 1e-4);

}  // namespace stf
