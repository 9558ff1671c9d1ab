// The index arithmetic of the strided CUDA kernels (cuda/layout.h), checked on the host: division by
// multiply-and-shift, and IndexMap's merged dimensions against StridedLayout::offset.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/layout.h"

using stf::FastDivider;
using stf::IndexMap;
using stf::StridedLayout;

namespace {

StridedLayout layout(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
    StridedLayout l;
    l.ndim = static_cast<int>(sizes.size());
    for (int d = 0; d < l.ndim; ++d) {
        l.sizes[d] = sizes[d];
        l.strides[d] = strides[d];
    }
    return l;
}

// Every element's offsets through the map equal StridedLayout::offset in 64-bit arithmetic.
template <int N>
void check_offsets(const StridedLayout* const (&layouts)[N], const IndexMap<N>& map) {
    const int64_t n = layouts[0]->numel();
    for (int64_t i = 0; i < n; ++i) {
        uint32_t off[N];
        map.offsets(static_cast<uint32_t>(i), off);
        for (int k = 0; k < N; ++k) {
            CAPTURE(i);
            CAPTURE(k);
            REQUIRE(off[k] == layouts[k]->offset(i));
        }
    }
}

}  // namespace

TEST_CASE("FastDivider divides exactly for divisors and dividends below 2^31") {
    std::mt19937 rng(7);
    const uint32_t max = (uint32_t(1) << 31) - 1;
    std::vector<uint32_t> divisors = {1, 2, 3, 5, 7, 31, 32, 33, 100, 1000, 3072, 65535, 65536, 65537,
                                      (1u << 20) + 1, 1u << 30, (1u << 30) + 3, max};
    for (int i = 0; i < 50; ++i) divisors.push_back(1 + rng() % max);
    for (uint32_t d : divisors) {
        FastDivider div(d);
        std::vector<uint32_t> dividends = {0, 1, d - 1, d, max, max - 1};
        if (d < max) dividends.push_back(d + 1);
        if (d <= max / 7) dividends.push_back(7 * d), dividends.push_back(7 * d - 1);
        for (int i = 0; i < 2000; ++i) dividends.push_back(rng() % (max + 1u));
        for (uint32_t n : dividends) {
            CAPTURE(d);
            CAPTURE(n);
            REQUIRE(div.div(n) == n / d);
        }
    }
}

// Builds the map of `layouts`, checks that it merged them into `ndim` dimensions and that every offset
// is the layouts' own.
template <int N> void expect_merged(const StridedLayout* const (&layouts)[N], int ndim) {
    IndexMap<N> map;
    REQUIRE(stf::make_index_map<N>(layouts, map));
    CHECK(map.ndim == ndim);
    check_offsets<N>(layouts, map);
}

TEST_CASE("IndexMap merges what the layouts allow and reproduces every offset") {
    SUBCASE("a per-channel broadcast over [n, c, h, w] is three dimensions") {
        StridedLayout a = layout({4, 6, 5, 7}, {210, 35, 7, 1}), b = layout({4, 6, 5, 7}, {0, 1, 0, 0});
        expect_merged<2>({&a, &b}, 3);
    }
    SUBCASE("a copy into a channel slice of a concatenation is two dimensions") {
        StridedLayout dst = layout({4, 6, 5, 7}, {350, 35, 7, 1}), src = layout({4, 6, 5, 7}, {210, 35, 7, 1});
        expect_merged<2>({&dst, &src}, 2);
    }
    SUBCASE("size-1 dimensions drop out; contiguous operands merge into one dimension") {
        StridedLayout a = layout({3, 1, 4, 1}, {4, 99, 1, 5}), b = layout({3, 1, 4, 1}, {4, 1, 1, 1});
        expect_merged<2>({&a, &b}, 1);
    }
    SUBCASE("a permutation, a scalar and a contiguous operand: nothing merges") {
        StridedLayout a = layout({5, 3, 2}, {1, 10, 3}), b = layout({5, 3, 2}, {0, 0, 0}), c = layout({5, 3, 2}, {6, 2, 1});
        expect_merged<3>({&a, &b, &c}, 3);
    }
    SUBCASE("a 0-d scalar has no dimensions and offset 0") {
        StridedLayout a = layout({}, {});
        expect_merged<1>({&a}, 0);
    }
}

TEST_CASE("IndexMap refuses what 32-bit arithmetic cannot address, leaving the 64-bit path") {
    IndexMap<2> map;
    StridedLayout ok = layout({6}, {1});
    StridedLayout other_sizes = layout({7}, {1}), reversed = layout({6}, {-1});
    CHECK_FALSE(stf::make_index_map<2>({&ok, &other_sizes}, map));
    CHECK_FALSE(stf::make_index_map<2>({&ok, &reversed}, map));
    StridedLayout big = layout({1 << 16, 1 << 15}, {1 << 15, 1});  // 2^31 elements
    CHECK_FALSE(stf::make_index_map<2>({&big, &big}, map));
    StridedLayout small = layout({2, 3}, {3, 1}), far = layout({2, 3}, {int64_t(1) << 31, 1});
    CHECK_FALSE(stf::make_index_map<2>({&small, &far}, map));
    StridedLayout just_fits = layout({2, 3}, {(int64_t(1) << 31) - 3, 1});
    CHECK(stf::make_index_map<2>({&small, &just_fits}, map));
}
