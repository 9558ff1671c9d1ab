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
    // Online softmax over the chunks: one kernel rescales what earlier chunks accumulated to the new row
    // max (exp(-inf) = 0 on the first chunk) and turns the chunk's distances into weights; a GEMM adds
    // the chunk's weighted references.
    StreamedSoftmax st{full({b}, -INFINITY, y.dtype(), y.device()), zeros({b}, y.dtype(), y.device()),
                       zeros({b}, y.dtype(), y.device()), zeros({b, d}, y.dtype(), y.device())};
    Tensor coef_rows = contiguous(reshape(coef, {b}));
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t len = std::min(chunk, n - start);
        Tensor xc = narrow(xs, 0, start, len);
        Tensor p = sq_distances(ys, xc);  // [b, len], weights after the next line
        stf_softmax_chunk_(p, coef_rows, st);
        binary_(BinaryOp::Add, st.acc, matmul(p, xc));
    }
    Tensor target = reshape(div(st.acc, reshape(st.weight_sum, {b, 1})), y.shape());
    Tensor ess = div(unary(UnaryOp::Square, st.weight_sum), st.weight_sq_sum);
    return {target, ess};
}

StfTarget stf_target(const Tensor& y, const Tensor& sigma, const ReferenceSet& reference, int64_t chunk) {
    reference.check(y, "stf_target");
    const int64_t b = y.size(0), d = b ? y.numel() / b : 0;
    STF_CHECK(sigma.numel() == b, "stf_target: " << sigma.numel() << " sigmas for " << b << " samples");
    STF_CHECK(chunk >= 1, "stf_target: chunk must be positive");
    NoGradGuard no_grad;
    Tensor ys = contiguous(reshape(y, {b, d}));
    Tensor coef = contiguous(unary(UnaryOp::RDivScalar, unary(UnaryOp::Square, reshape(sigma, {b})), -0.5));
    // The streamed softmax of stf_target above, over the set's chunks: the batch first (each sample's own
    // image gives its row a finite maximum at once), then the dataset (+inf distances at the skipped rows
    // become weights of exactly 0).
    StreamedSoftmax st{full({b}, -INFINITY, y.dtype(), y.device()), zeros({b}, y.dtype(), y.device()),
                       zeros({b}, y.dtype(), y.device()), zeros({b, d}, y.dtype(), y.device())};
    for_each_reference_chunk(ys, reference, chunk, [&](const ReferenceChunk& c) {
        Tensor p = c.dist;
        stf_softmax_chunk_(p, coef, st);
        binary_(BinaryOp::Add, st.acc, matmul(p, c.images));
    });
    Tensor target = reshape(div(st.acc, reshape(st.weight_sum, {b, 1})), y.shape());
    Tensor ess = div(unary(UnaryOp::Square, st.weight_sum), st.weight_sq_sum);
    return {target, ess};
}

}  // namespace stf::diffusion
