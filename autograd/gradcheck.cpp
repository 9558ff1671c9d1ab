#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/functions.h"

namespace stf {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          double eps, double atol, double rtol) {
    for (const Tensor& x : inputs)
        STF_CHECK(x.dtype() == DType::F64 && x.device().is_cpu(),
                  "gradcheck: inputs must be float64 on the CPU, got " << describe(x));
    // Fresh leaves, so the caller's tensors keep no gradients.
    std::vector<Tensor> leaves;
    for (const Tensor& x : inputs) leaves.push_back(ops::clone(x).set_requires_grad(true));

    Tensor out = f(leaves);
    Generator gen(1234);
    Tensor weights = ops::rand(out.shape(), gen, DType::F64);
    // L(x) = sum(f(x) * r): every output element weighs in with a different coefficient.
    auto loss_value = [&](const std::vector<Tensor>& xs) {
        NoGradGuard no_grad;
        return ops::sum(ops::mul(f(xs), weights)).item();
    };
    backward(sum(mul(out, weights)));

    GradcheckResult result;
    std::ostringstream report;
    for (size_t i = 0; i < leaves.size(); ++i) {
        Tensor analytic = leaves[i].grad();
        std::vector<double> a = analytic.defined() ? analytic.to_vector() : std::vector<double>(leaves[i].numel(), 0.0);
        double* p = leaves[i].data<double>();
        for (int64_t j = 0; j < leaves[i].numel(); ++j) {
            double saved = p[j];
            p[j] = saved + eps;
            double up = loss_value(leaves);
            p[j] = saved - eps;
            double down = loss_value(leaves);
            p[j] = saved;
            double numeric = (up - down) / (2 * eps);
            double err = std::abs(a[j] - numeric);
            result.max_abs_error = std::max(result.max_abs_error, err);
            if (std::abs(numeric) > 0) result.max_rel_error = std::max(result.max_rel_error, err / std::abs(numeric));
            if (!(err <= atol + rtol * std::abs(numeric))) {
                if (result.ok)
                    report << "input " << i << " element " << j << ": analytic " << a[j] << ", numeric " << numeric;
                result.ok = false;
            }
        }
    }
    result.report = result.ok ? "ok" : report.str();
    return result;
}

}  // namespace stf
