// A reference set too large to copy every step: a whole dataset resident on the device, with the rows the
// training batch was drawn from replaced by the batch's images as trained on. The whole-dataset targets (STF
// with --rbatch all, diffusion/stf_target.h; the nearest-neighbour target, diffusion/knn_target.h) run over it.
//
// Why the batch's own images stand in for their rows: a training image must be among its own references (at
// small sigma the target is then that image, as DSM's), and no image may count twice. With augmentation off
// the batch images are those rows, so the set is exactly the dataset and the STF target is E[x | y] over it.
// With augmentation on the set is the augmented batch plus the other images un-augmented: not the augmented
// data distribution that the reference code's random, augmented reference batch samples (docs/experiments.md).
//
// Columns are dataset rows, whatever the batch: the set's element u is row u (lead[i] at rows[i]), so a
// sample's draws over the set (the kNN target's) do not depend on which other images share its batch.
#pragma once
#include <functional>
#include <vector>

#include "tensor/ops.h"

namespace stf::diffusion {

struct ReferenceSet {
    Tensor lead;                 // [b, ...]: the training batch, as trained on
    Tensor rest;                 // [N, ...]: the dataset, on lead's device
    std::vector<int64_t> rows;   // [b]: the distinct dataset rows lead[i] was drawn from (and replaces)

    int64_t size() const { return rest.size(0); }
    // Throws stf::Error unless lead and rest hold images of y's shape on y's device and dtype, and rows are
    // b distinct rows of rest.
    void check(const Tensor& y, const char* what) const;
};

// One chunk of a streamed pass over a reference set: the squared distances [b, len] from the samples to the
// chunk's images (+inf at rows the batch replaces, so that they weigh nothing), the images [len, d], and
// their columns: `columns` when given (the lead: rows), else first, first + 1, ...
struct ReferenceChunk {
    Tensor dist, images;
    int64_t first = 0;
    const std::vector<int64_t>* columns = nullptr;
    int64_t column(int64_t j) const { return columns ? (*columns)[static_cast<size_t>(j)] : first + j; }
};
// Calls `visit` for the lead (first: each sample's own image gives its row a finite distance at once) and
// then for rest in chunks of `chunk` rows; ys [b, d] are the flattened samples.
void for_each_reference_chunk(const Tensor& ys, const ReferenceSet& refs, int64_t chunk,
                              const std::function<void(const ReferenceChunk&)>& visit);

}  // namespace stf::diffusion
