// What the GPU suite's files share: the measure of agreement, ||got - want|| / ||want|| (absolute when
// want is all zeros; any NaN or infinity in got fails it outright). The kernel-level cases and their
// device arrays are in tests/kernels/.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "tensor/tensor.h"

namespace stf::test {

inline double rel_error(const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i]) || std::isnan(want[i])) return INFINITY;
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline double rel_error(const Tensor& got, const Tensor& want) { return rel_error(got.to_vector(), want.to_vector()); }

}  // namespace stf::test
