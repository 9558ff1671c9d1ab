#include "diffusion/reference_set.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace stf::diffusion {

void ReferenceSet::check(const Tensor& y, const char* what) const {
    STF_CHECK(lead.defined() && rest.defined(), what << ": the reference set needs the training batch and the dataset");
    STF_CHECK(y.ndim() >= 1 && lead.ndim() == y.ndim() && rest.ndim() == y.ndim(),
              what << ": samples " << describe(y) << ", batch " << describe(lead) << " and dataset " << describe(rest)
                   << " differ in rank");
    const int64_t b = y.size(0), d = b ? y.numel() / b : 0;
    STF_CHECK(lead.numel() == lead.size(0) * d && rest.numel() == rest.size(0) * d,
              what << ": the batch " << describe(lead) << " and dataset " << describe(rest)
                   << " do not hold images shaped like the samples " << describe(y));
    STF_CHECK(lead.device() == y.device() && rest.device() == y.device() && lead.dtype() == y.dtype() &&
                  rest.dtype() == y.dtype(),
              what << ": samples " << describe(y) << ", batch " << describe(lead) << " and dataset " << describe(rest)
                   << " must share device and dtype");
    STF_CHECK(static_cast<int64_t>(rows.size()) == lead.size(0),
              what << ": " << rows.size() << " dataset rows for a batch of " << lead.size(0) << " images");
    std::set<int64_t> seen;
    for (int64_t r : rows)
        STF_CHECK(r >= 0 && r < rest.size(0) && seen.insert(r).second,
                  what << ": batch row " << r << " is out of range or repeated (dataset of " << rest.size(0) << ")");
}

void for_each_reference_chunk(const Tensor& ys, const ReferenceSet& refs, int64_t chunk,
                              const std::function<void(const ReferenceChunk&)>& visit) {
    const int64_t d = ys.size(1), lead_rows = refs.lead.size(0), n = refs.rest.size(0);
    Tensor lead = ops::reshape(refs.lead, {lead_rows, d}), rest = ops::reshape(refs.rest, {n, d});
    if (lead_rows > 0) visit({ops::sq_distances(ys, lead), lead, 0, &refs.rows});
    std::vector<int64_t> replaced = refs.rows;
    std::sort(replaced.begin(), replaced.end());
    for (int64_t start = 0; start < n; start += chunk) {
        const int64_t len = std::min(chunk, n - start);
        Tensor xc = ops::narrow(rest, 0, start, len);
        Tensor dist = ops::sq_distances(ys, xc);
        auto lo = std::lower_bound(replaced.begin(), replaced.end(), start);
        auto hi = std::lower_bound(replaced.begin(), replaced.end(), start + len);
        if (lo != hi) {  // +inf at the replaced rows: a [1, len] row added to every sample's distances
            std::vector<double> bias(static_cast<size_t>(len), 0.0);
            for (auto it = lo; it != hi; ++it) bias[static_cast<size_t>(*it - start)] = INFINITY;
            ops::binary_(BinaryOp::Add, dist, ops::from_vector(bias, {1, len}, dist.dtype(), dist.device()));
        }
        visit({dist, xc, start, nullptr});
    }
}

}  // namespace stf::diffusion
