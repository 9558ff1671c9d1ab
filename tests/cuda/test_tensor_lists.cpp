// The multi-tensor launch plan (cuda/tensor_lists.h): every chunk of every tensor exactly once, within
// the per-launch limits, in order.
#include <doctest/doctest.h>

#include <cstddef>
#include <map>
#include <utility>

#include "cuda/tensor_lists.h"

using stf::cuda::plan_tensor_lists;
using std::size_t;

namespace {

// Checks the plan for `sizes` and returns the number of launches.
size_t check_plan(const std::vector<int64_t>& sizes, int max_tensors, int max_blocks, int64_t chunk) {
    auto plan = plan_tensor_lists(sizes, max_tensors, max_blocks, chunk);
    std::map<std::pair<int64_t, int64_t>, int> seen;  // (tensor, chunk) -> times
    std::pair<int64_t, int64_t> previous{-1, -1};
    for (const auto& launch : plan) {
        REQUIRE(!launch.slot_of_block.empty());
        CHECK(static_cast<int>(launch.tensors.size()) <= max_tensors);
        CHECK(static_cast<int>(launch.slot_of_block.size()) <= max_blocks);
        REQUIRE(launch.slot_of_block.size() == launch.chunk_of_block.size());
        for (size_t b = 0; b < launch.slot_of_block.size(); ++b) {
            const int slot = launch.slot_of_block[b];
            REQUIRE(slot >= 0);
            REQUIRE(slot < static_cast<int>(launch.tensors.size()));
            const std::pair<int64_t, int64_t> key{launch.tensors[slot], launch.chunk_of_block[b]};
            CHECK(key > previous);  // in order: tensors, then chunks
            previous = key;
            ++seen[key];
        }
    }
    size_t expected = 0;
    for (size_t t = 0; t < sizes.size(); ++t)
        for (int64_t c = 0; c * chunk < sizes[t]; ++c) {
            ++expected;
            CHECK(seen[{static_cast<int64_t>(t), c}] == 1);
        }
    CHECK(seen.size() == expected);
    return plan.size();
}

}  // namespace

TEST_CASE("tensor lists: every chunk once, within the limits") {
    // Empty tensors take no block; a tensor of exactly one chunk takes one.
    CHECK(check_plan({}, 4, 8, 10) == 0);
    CHECK(check_plan({0, 0}, 4, 8, 10) == 0);
    CHECK(check_plan({10, 0, 1, 11}, 4, 8, 10) == 1);
    // More tensors than slots: a new launch per 4 tensors.
    CHECK(check_plan(std::vector<int64_t>(9, 5), 4, 8, 10) == 3);
    // A tensor larger than a launch's blocks continues in the next launches.
    CHECK(check_plan({3, 95, 4}, 4, 4, 10) == 3);
    // DDPM++-like: 425 tensors from 1 to 2.4 M elements, the optimiser's limits.
    std::vector<int64_t> sizes;
    for (int i = 0; i < 425; ++i) sizes.push_back(i % 3 == 0 ? 589824 : i % 3 == 1 ? 256 : 1 + i);
    CHECK(check_plan(sizes, 32, 256, 32768) > 1);
}
