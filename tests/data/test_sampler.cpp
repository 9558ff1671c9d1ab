// The training order: seeded permutations per epoch, random access by stream position, exact resume.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "data/sampler.h"
#include "tests/expect_error.h"

using namespace stf;
using namespace stf::data;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

TEST_CASE("InfiniteSampler: seeded permutations per epoch, exact resume") {
    const int64_t n = 23;
    InfiniteSampler a(n, 7), b(n, 7), other(n, 8);
    std::vector<int64_t> sa = a.next(5 * n), sb = b.next(5 * n), so = other.next(5 * n);
    CHECK(sa == sb);
    CHECK(sa != so);
    std::set<std::vector<int64_t>> epochs;
    for (int e = 0; e < 5; ++e) {
        std::vector<int64_t> ep(sa.begin() + e * n, sa.begin() + (e + 1) * n);
        CHECK(ep == a.permutation(e));
        std::vector<int64_t> sorted = ep;
        std::sort(sorted.begin(), sorted.end());
        for (int64_t i = 0; i < n; ++i) REQUIRE(sorted[i] == i);
        epochs.insert(ep);
    }
    CHECK(epochs.size() == 5);  // every epoch reshuffled

    // Stop part way through an epoch, resume in a new sampler, and continue identically.
    InfiniteSampler run(n, 99);
    run.next(37);
    InfiniteSampler::State st = run.state();
    CHECK(st.epoch == 1);
    CHECK(st.position == 14);
    std::vector<int64_t> cont = run.next(50);
    InfiniteSampler resumed(n, 99);
    resumed.set_state(st);
    CHECK(resumed.next(50) == cont);
    CHECK(resumed.state() == run.state());

    // Random access: position p of the stream, across epoch boundaries, is what next() reaches there.
    InfiniteSampler direct(n, 7);
    CHECK(direct.take(40, 30) == std::vector<int64_t>(sa.begin() + 40, sa.begin() + 70));
    CHECK(direct.take(3, 2) == std::vector<int64_t>(sa.begin() + 3, sa.begin() + 5));

    InfiniteSampler ordered(5, 1, /*shuffle=*/false);
    CHECK(ordered.next(7) == std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1});
    CHECK(has(error_of([&] { resumed.set_state({0, n + 1}); }), "bad state"));
    CHECK(has(error_of([] { InfiniteSampler(0, 1); }), "at least one"));
}
