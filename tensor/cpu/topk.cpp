// Per-row top-k, the CPU twin of cuda/topk.cu: each row's (order key, column) pairs (cuda/topk_math.h),
// the k smallest found with nth_element and then sorted, so ties and NaNs land exactly where the CUDA
// kernel puts them. Rows run in parallel.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cuda/topk_math.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {

template <class T> void topk_rows(int64_t rows, int64_t cols, int64_t k, const T* x, T* values, int64_t* indices) {
    if (rows <= 0) return;
    if (k < 1 || k > cols)
        throw std::runtime_error("topk_rows: need 1 <= k <= cols, got k " + std::to_string(k) + ", cols " +
                                 std::to_string(cols));
    using Key = typename topk::KeyOf<T>::type;
#pragma omp parallel for schedule(dynamic) if (rows * cols >= (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * cols;
        std::vector<std::pair<Key, int64_t>> order(static_cast<size_t>(cols));
        for (int64_t j = 0; j < cols; ++j) order[j] = {topk::order_key(xr[j]), j};
        std::nth_element(order.begin(), order.begin() + (k - 1), order.end());
        std::sort(order.begin(), order.begin() + k);
        for (int64_t i = 0; i < k; ++i) {
            values[r * k + i] = xr[order[i].second];
            indices[r * k + i] = order[i].second;
        }
    }
}

template void topk_rows<float>(int64_t, int64_t, int64_t, const float*, float*, int64_t*);
template void topk_rows<double>(int64_t, int64_t, int64_t, const double*, double*, int64_t*);

}  // namespace stf::cpu
