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

// Rows `rows` of t (along dim 0) in that order, as few copies as the runs of consecutive rows allow.
static Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& rows) {
    std::vector<Tensor> parts;
    for (size_t k = 0; k < rows.size();) {
        size_t end = k + 1;
        while (end < rows.size() && rows[end] == rows[end - 1] + 1) ++end;
        parts.push_back(narrow(t, 0, rows[k], static_cast<int64_t>(end - k)));
        k = end;
    }
    return parts.size() == 1 ? contiguous(parts[0]) : cat(parts, 0);
}

StfTarget stf_target_grouped(const Tensor& y, const Tensor& sigma, const Tensor& reference,
                             const std::vector<ReferenceGroup>& groups, int64_t chunk) {
    STF_CHECK(y.ndim() >= 1 && reference.ndim() == y.ndim(),
              "stf_target_grouped: samples " << describe(y) << " and reference " << describe(reference)
                                             << " differ in rank");
    const int64_t b = y.size(0), n = reference.size(0);
    // Where each sample's target row ends up: (group, position in the group).
    std::vector<std::pair<int64_t, int64_t>> place(static_cast<size_t>(b), {-1, -1});
    for (size_t g = 0; g < groups.size(); ++g) {
        const ReferenceGroup& grp = groups[g];
        STF_CHECK(!grp.rows.empty() && grp.start >= 0 && grp.length >= static_cast<int64_t>(grp.rows.size()) &&
                      grp.start + grp.length <= n,
                  "stf_target_grouped: group " << g << " (" << grp.rows.size() << " samples, references " << grp.start
                                               << " .. " << grp.start + grp.length << ") does not fit a reference batch of "
                                               << n << " holding its samples");
        for (size_t k = 0; k < grp.rows.size(); ++k) {
            const int64_t r = grp.rows[k];
            STF_CHECK(r >= 0 && r < b && place[static_cast<size_t>(r)].first < 0,
                      "stf_target_grouped: sample " << r << " is out of range or in two groups (" << b << " samples)");
            place[static_cast<size_t>(r)] = {static_cast<int64_t>(g), static_cast<int64_t>(k)};
        }
    }
    for (int64_t r = 0; r < b; ++r)
        STF_CHECK(place[static_cast<size_t>(r)].first >= 0, "stf_target_grouped: sample " << r << " is in no group");
    NoGradGuard no_grad;
    std::vector<StfTarget> parts;
    for (const ReferenceGroup& grp : groups)
        parts.push_back(stf_target(gather_rows(y, grp.rows), gather_rows(sigma, grp.rows),
                                   narrow(reference, 0, grp.start, grp.length), chunk));
    std::vector<Tensor> target_rows, ess_rows;
    for (auto [g, k] : place) {
        target_rows.push_back(narrow(parts[static_cast<size_t>(g)].target, 0, k, 1));
        ess_rows.push_back(narrow(parts[static_cast<size_t>(g)].ess, 0, k, 1));
    }
    return {cat(target_rows, 0), cat(ess_rows, 0)};
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
