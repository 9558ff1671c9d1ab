#include "diffusion/knn_target.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include "autograd/node.h"

namespace stf::diffusion {

using namespace stf::ops;

KnnProposal knn_proposal(const std::vector<double>& nearest_logits, int64_t set_size) {
    const int64_t k = static_cast<int64_t>(nearest_logits.size());
    STF_CHECK(k >= 1 && k <= set_size, "knn_proposal: " << k << " neighbours in a set of " << set_size);
    // Relative to the nearest one's weight: e^{l_j - l_1} in (0, 1], m = e^{l_(k) - l_1}.
    const double top = nearest_logits.front(), m = std::exp(nearest_logits.back() - top);
    KnnProposal q;
    std::vector<double> excess(static_cast<size_t>(k));
    double above = 0;  // sum over K of e^{l_j} - e^{l_(k)}, relative
    for (int64_t j = 0; j < k; ++j) above += excess[j] = std::max(0.0, std::exp(nearest_logits[j] - top) - m);
    const double floor_mass = static_cast<double>(set_size) * m;
    q.uniform_mass = floor_mass / (above + floor_mass);
    if (above > 0) {
        q.neighbour_cdf.resize(static_cast<size_t>(k));
        double cum = 0;
        for (int64_t j = 0; j < k; ++j) q.neighbour_cdf[j] = (cum += excess[j]) / above;
        q.neighbour_cdf.back() = 1;
    } else {
        q.uniform_mass = 1;
    }
    return q;
}

int64_t knn_draw(const KnnProposal& q, double u, double u2, int64_t set_size) {
    if (u < q.uniform_mass || q.neighbour_cdf.empty())
        return std::min(set_size - 1, static_cast<int64_t>(u2 * static_cast<double>(set_size)));
    const auto it = std::upper_bound(q.neighbour_cdf.begin(), q.neighbour_cdf.end(), u2);
    const int64_t m = std::min<int64_t>(it - q.neighbour_cdf.begin(), static_cast<int64_t>(q.neighbour_cdf.size()) - 1);
    return -1 - m;
}

namespace {

struct Neighbour {
    double dist;
    int64_t column;
    bool operator<(const Neighbour& o) const { return dist < o.dist || (dist == o.dist && column < o.column); }
};

// The logit -d / (2 sigma^2) as the device computes it (d times the float coefficient, rounded to the
// dtype), so that the k-th nearest one's weight e^{l - l_(k)} comes out as exactly 1 there.
double logit_as(DType dtype, double dist, double coef) {
    if (dtype == DType::F32) return static_cast<double>(static_cast<float>(dist) * static_cast<float>(coef));
    return dist * coef;
}

// Where a drawn column lies in a chunk: its position there, or -1. A column the batch replaces belongs to
// the lead chunk (the batch image), never to the dataset chunk that holds the row itself.
struct ChunkColumns {
    const ReferenceChunk& chunk;
    int64_t len;
    const std::unordered_map<int64_t, int64_t>& lead_position;
    int64_t position(int64_t column) const {
        auto it = lead_position.find(column);
        if (chunk.columns) return it == lead_position.end() ? -1 : it->second;
        if (it != lead_position.end() || column < chunk.first || column >= chunk.first + len) return -1;
        return column - chunk.first;
    }
};

// A [b, len] tensor of log-counts of the chunk's columns (log c, -inf where nothing was drawn), on `device`.
Tensor log_counts(const std::vector<std::vector<std::pair<int64_t, int64_t>>>& drawn, const ChunkColumns& where,
                  DType dtype, Device device) {
    const int64_t b = static_cast<int64_t>(drawn.size()), len = where.len;
    Tensor t = Tensor::empty({b, len}, dtype, Device::cpu());
    auto fill = [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        std::fill(p, p + b * len, -std::numeric_limits<T>::infinity());
        for (int64_t i = 0; i < b; ++i)
            for (const auto& drawn_column : drawn[i]) {
                const int64_t j = where.position(drawn_column.first);
                if (j >= 0) p[i * len + j] = static_cast<T>(std::log(static_cast<double>(drawn_column.second)));
            }
    };
    if (dtype == DType::F64) fill(t.data<double>());
    else fill(t.data<float>());
    return to(t, device);
}

}  // namespace

KnnTarget knn_target(const Tensor& y, const Tensor& sigma, const ReferenceSet& reference, int64_t k, int64_t n,
                     Generator& gen, int64_t chunk, int64_t keep_distances) {
    reference.check(y, "knn_target");
    const int64_t b = y.size(0), d = b ? y.numel() / b : 0, set_size = reference.size();
    STF_CHECK(sigma.numel() == b, "knn_target: " << sigma.numel() << " sigmas for " << b << " samples");
    STF_CHECK(k >= 1 && k <= set_size,
              "knn_target: k " << k << " neighbours is not in 1.." << set_size << " (the reference set's size)");
    STF_CHECK(n >= 1, "knn_target: need at least one draw from the proposal, got n " << n);
    STF_CHECK(chunk >= 1, "knn_target: chunk must be positive");
    NoGradGuard no_grad;
    const DType dtype = y.dtype();
    const Device device = y.device();
    Tensor ys = contiguous(reshape(y, {b, d}));
    Tensor coef = contiguous(unary(UnaryOp::RDivScalar, unary(UnaryOp::Square, reshape(sigma, {b})), -0.5));
    const std::vector<double> coef_host = coef.to_vector();

    // Pass 1: each sample's k nearest references, merged over the chunks on the host (by distance, then
    // column: the set's order, so ties resolve as one top-k over the whole set would).
    const bool keep = b * (reference.size() + reference.lead.size(0)) <= keep_distances;
    std::vector<ReferenceChunk> kept;
    std::vector<std::vector<Neighbour>> nearest(static_cast<size_t>(b));
    for_each_reference_chunk(ys, reference, chunk, [&](const ReferenceChunk& c) {
        const int64_t len = c.dist.size(1);
        RowTopK top = row_topk(c.dist, std::min(k, len));
        for (int64_t i = 0; i < b; ++i) {
            std::vector<Neighbour>& best = nearest[i];
            std::vector<Neighbour> merged;
            merged.reserve(best.size() + static_cast<size_t>(top.k));
            std::vector<Neighbour> part(static_cast<size_t>(top.k));
            for (int64_t j = 0; j < top.k; ++j) part[j] = {top.values[i * top.k + j], c.column(top.indices[i * top.k + j])};
            std::sort(part.begin(), part.end());  // the lead's columns are the batch's rows, in any order
            std::merge(best.begin(), best.end(), part.begin(), part.end(), std::back_inserter(merged));
            if (static_cast<int64_t>(merged.size()) > k) merged.resize(static_cast<size_t>(k));
            best.swap(merged);
        }
        if (keep) kept.push_back(c);
    });

    // The proposal and the n draws of each sample, on the host.
    const std::vector<double> u = ops::rand({b, 2 * n}, gen, DType::F64).to_vector();
    std::vector<std::vector<std::pair<int64_t, int64_t>>> drawn(static_cast<size_t>(b));  // (column, count)
    std::vector<double> kth_logit(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
        const std::vector<Neighbour>& best = nearest[i];
        STF_CHECK(static_cast<int64_t>(best.size()) == k && std::isfinite(best.back().dist),
                  "knn_target: sample " << i << " has fewer than " << k << " references at a finite distance");
        std::vector<double> logits(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) logits[j] = logit_as(dtype, best[j].dist, coef_host[i]);
        kth_logit[i] = logits.back();
        const KnnProposal q = knn_proposal(logits, set_size);
        std::vector<int64_t> columns(static_cast<size_t>(n));
        for (int64_t r = 0; r < n; ++r) {
            const int64_t pick = knn_draw(q, u[(i * n + r) * 2], u[(i * n + r) * 2 + 1], set_size);
            columns[r] = pick < 0 ? best[-1 - pick].column : pick;
        }
        std::sort(columns.begin(), columns.end());
        for (int64_t c : columns) {
            if (drawn[i].empty() || drawn[i].back().first != c) drawn[i].push_back({c, 0});
            ++drawn[i].back().second;
        }
    }

    // Pass 2: T = softmax over the drawn columns of min(0, l_j - l_(k)) + log c_j, weighted sum of their
    // images. The streamed softmax of the STF target runs on these logits with coefficient 1; its running
    // maximum starts at the lowest finite value, not -inf, so that a chunk where a sample drew nothing
    // (all -inf) leaves its state untouched instead of making it NaN.
    Tensor kth = from_vector(kth_logit, {b, 1}, dtype, device), coef_col = reshape(coef, {b, 1});
    Tensor ones_b = ones({b}, dtype, device);
    const double lowest = dtype == DType::F64 ? std::numeric_limits<double>::lowest() : std::numeric_limits<float>::lowest();
    StreamedSoftmax st{full({b}, lowest, dtype, device), zeros({b}, dtype, device), zeros({b}, dtype, device),
                       zeros({b, d}, dtype, device)};
    std::unordered_map<int64_t, int64_t> lead_position;
    for (size_t j = 0; j < reference.rows.size(); ++j) lead_position[reference.rows[j]] = static_cast<int64_t>(j);
    auto weigh = [&](const ReferenceChunk& c) {
        const ChunkColumns where{c, c.dist.size(1), lead_position};
        bool any = false;
        for (int64_t i = 0; i < b && !any; ++i)
            for (const auto& drawn_column : drawn[i]) any = any || where.position(drawn_column.first) >= 0;
        if (!any) return;
        Tensor h = unary(UnaryOp::Clamp, sub(mul(c.dist, coef_col), kth), -INFINITY, 0.0);
        h = contiguous(add(h, log_counts(drawn, where, dtype, device)));
        stf_softmax_chunk_(h, ones_b, st);
        binary_(BinaryOp::Add, st.acc, matmul(h, c.images));
    };
    if (keep) {
        for (const ReferenceChunk& c : kept) weigh(c);
    } else {
        for_each_reference_chunk(ys, reference, chunk, weigh);
    }
    Tensor target = reshape(div(st.acc, reshape(st.weight_sum, {b, 1})), y.shape());
    Tensor ess = div(unary(UnaryOp::Square, st.weight_sum), st.weight_sq_sum);
    return {target, ess};
}

}  // namespace stf::diffusion
