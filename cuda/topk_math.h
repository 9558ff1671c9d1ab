// The order the per-row top-k kernels sort by, shared by the CPU twin (tensor/cpu/topk.cpp) and the CUDA
// kernel (cuda/topk.cu) so that both pick the same elements, ties included.
//
// A value's key is an unsigned integer whose order is IEEE 754's total order: flip the sign bit of a
// positive value, flip every bit of a negative one (so -0 sorts just below +0). Every NaN maps to the
// largest key, so NaNs come last whatever their sign or payload. Elements with equal keys are ordered by
// column: the top-k of a row is then one definite set of k columns.
#pragma once
#include <stdint.h>
#include <string.h>

#include "cuda/layout.h"

namespace stf::topk {

// The CUDA kernel sorts a row's k picks in shared memory (8 bytes each, padded to a power of two): 32 KB.
constexpr int64_t kMaxK = 4096;

template <class T> struct KeyOf;
template <> struct KeyOf<float> {
    using type = uint32_t;
};
template <> struct KeyOf<double> {
    using type = uint64_t;
};

template <class T> STF_HD typename KeyOf<T>::type order_key(T v) {
    using K = typename KeyOf<T>::type;
    constexpr K sign = K(1) << (sizeof(K) * 8 - 1);
    if (v != v) return ~K(0);
    K bits;
    memcpy(&bits, &v, sizeof(K));
    return (bits & sign) ? ~bits : (bits | sign);
}

}  // namespace stf::topk
