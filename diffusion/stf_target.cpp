#include "diffusion/stf_target.h"

#include <cmath>

#include "autograd/node.h"

namespace stf::diffusion {

using namespace stf::ops;

StfTarget stf_target(const Tensor& y, const Tensor& sigma, const Tensor& reference, int64_t chunk) {
    STF_CHECK(y.ndim() >= 1 && reference.ndim() == y.ndim(),
              "stf_target: samples " << describe(y) << " and reference " << describe(reference) << " differ in rank");
    int64_t b = y.size(0), n = reference.size(0), d = b ? y.numel() / b : 0;
    STF_CHECK(reference.numel() == n * d && n >= 1,
              "stf_target: reference " << describe(reference) << " does not hold images shaped like " << describe(y));
    STF_CHECK(sigma.numel() == b, "stf_target: " << sigma.numel() << " sigmas for " << b << " samples");
    STF_CHECK(chunk >= 1, "stf_target: chunk must be positive");
    NoGradGuard no_grad;  // a target: no gradient flows into it
    Tensor ys = reshape(y, {b, d}), xs = reshape(reference, {n, d});
    // logit_ij = ||y_i - x_j||^2 * (-1 / (2 sigma_i^2))
    Tensor s2 = reshape(unary(UnaryOp::Square, sigma), {b, 1});
    Tensor coef = unary(UnaryOp::RDivScalar, s2, -0.5);
    if (n <= chunk) {  // one chunk: a plain row softmax, no running rescale (fewer, larger kernels)
        Tensor w = softmax(mul(sq_distances(ys, xs), coef), 1);
        Tensor ess = unary(UnaryOp::RDivScalar, sum(unary(UnaryOp::Square, w), {1}), 1.0);
        return {reshape(matmul(w, xs), y.shape()), ess};
    }
    Tensor row_max = full({b, 1}, -INFINITY, y.dtype(), y.device());
    Tensor weight_sum = zeros({b, 1}, y.dtype(), y.device());
    Tensor weight_sq_sum = zeros({b, 1}, y.dtype(), y.device());
    Tensor acc = zeros({b, d}, y.dtype(), y.device());
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t len = std::min(chunk, n - start);
        Tensor xc = narrow(xs, 0, start, len);
        Tensor logits = mul(sq_distances(ys, xc), coef);  // [b, len]
        Tensor new_max = binary(BinaryOp::Maximum, row_max, max(logits, {1}, true));
        // Rescale what earlier chunks accumulated to the new row max (exp(-inf) = 0 on the first chunk).
        Tensor rescale = unary(UnaryOp::Exp, sub(row_max, new_max));
        Tensor p = unary(UnaryOp::Exp, sub(logits, new_max));
        weight_sum = add(mul(weight_sum, rescale), sum(p, {1}, true));
        weight_sq_sum = add(mul(weight_sq_sum, unary(UnaryOp::Square, rescale)), sum(unary(UnaryOp::Square, p), {1}, true));
        acc = add(mul(acc, rescale), matmul(p, xc));
        row_max = new_max;
    }
    Tensor target = reshape(div(acc, weight_sum), y.shape());
    Tensor ess = reshape(div(unary(UnaryOp::Square, weight_sum), weight_sq_sum), {b});
    return {target, ess};
}

}  // namespace stf::diffusion
