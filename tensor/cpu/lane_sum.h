// A sum in double over eight interleaved partial sums, added up in a fixed order at the end, for the CPU
// kernels' long reductions (GroupNorm's statistics and gradients, reduce.cpp's contiguous sums).
//
// Why: a single running sum is a chain of dependent adds, four cycles each, that the compiler must not
// reorder; eight lanes can live in vector registers, and since the order is fixed the result still does
// not depend on the thread count or the machine.
#pragma once
#include <cstdint>

namespace stf::cpu {

// term(0) + ... + term(count - 1): term(i) goes to lane i % 8 (the tail to lane 0), then lanes 0..7.
template <class F> double lane_sum(int64_t count, F term) {
    constexpr int kLanes = 8;
    double lanes[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= count; i += kLanes)
        for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
    for (; i < count; ++i) lanes[0] += term(i);
    double sum = 0.0;
    for (int l = 0; l < kLanes; ++l) sum += lanes[l];
    return sum;
}

}  // namespace stf::cpu
