// Multi-tensor launches: one kernel over many tensors. A network has hundreds of parameter tensors,
// most of them small; one optimiser launch per tensor makes launching, not moving bytes, the cost. Here
// each tensor is cut into chunks of `chunk` elements, one block per chunk, and a launch takes up to
// `max_tensors` tensors and `max_blocks` blocks, whose tables travel in the kernel's arguments (cuda/optim.cu).
// This header plans the launches on the host (and is tested on the CPU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace stf::cuda {

struct TensorListLaunch {
    std::vector<int64_t> tensors;        // slot -> index into the caller's tensors
    std::vector<int> slot_of_block;      // block -> slot
    std::vector<int64_t> chunk_of_block; // block -> chunk of its tensor (elements [chunk * size, ...))
};

// Every (tensor, chunk) pair of the non-empty tensors in exactly one block of one launch, in order. A
// tensor whose chunks do not fit the current launch continues in the next, in a new slot.
inline std::vector<TensorListLaunch> plan_tensor_lists(const std::vector<int64_t>& sizes, int max_tensors,
                                                       int max_blocks, int64_t chunk) {
    std::vector<TensorListLaunch> launches(1);
    for (size_t t = 0; t < sizes.size(); ++t) {
        int slot = -1;  // the tensor's slot in the current launch, none yet
        for (int64_t c = 0; c * chunk < sizes[t]; ++c) {
            TensorListLaunch* cur = &launches.back();
            const bool tensors_full = slot < 0 && static_cast<int>(cur->tensors.size()) == max_tensors;
            if (static_cast<int>(cur->slot_of_block.size()) == max_blocks || tensors_full) {
                launches.emplace_back();
                cur = &launches.back();
                slot = -1;
            }
            if (slot < 0) {
                slot = static_cast<int>(cur->tensors.size());
                cur->tensors.push_back(static_cast<int64_t>(t));
            }
            cur->slot_of_block.push_back(slot);
            cur->chunk_of_block.push_back(c);
        }
    }
    if (launches.back().slot_of_block.empty()) launches.pop_back();
    return launches;
}

}  // namespace stf::cuda
