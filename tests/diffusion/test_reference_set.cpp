// Reference sets (a dataset whose rows the training batch came from hold the batch's images) and the STF
// target over them: against the same STF target over the set written out, against the whole dataset in
// float64 when augmentation is off (the set is then the dataset itself), and bad sets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "diffusion/reference_set.h"
#include "diffusion/stf_target.h"
#include "tests/expect_error.h"

using namespace stf;
using diffusion::ReferenceSet;

namespace {

double rel(const std::vector<double>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) num += (got[i] - want[i]) * (got[i] - want[i]), den += want[i] * want[i];
    return std::sqrt(num / den);
}

// Images in [-1, 1].
Tensor images(int64_t n, int64_t d, uint64_t seed, DType dtype = DType::F64) {
    Generator gen(seed);
    return ops::add_scalar(ops::mul_scalar(ops::rand({n, d}, gen, dtype), 2.0), -1.0);
}

// The set written out: the dataset with row rows[i] replaced by lead[i].
Tensor explicit_set(const ReferenceSet& s) {
    std::vector<Tensor> parts;
    for (int64_t r = 0; r < s.rest.size(0); ++r) {
        auto it = std::find(s.rows.begin(), s.rows.end(), r);
        parts.push_back(it == s.rows.end() ? ops::narrow(s.rest, 0, r, 1) : ops::narrow(s.lead, 0, it - s.rows.begin(), 1));
    }
    return ops::cat(parts, 0);
}

}  // namespace

TEST_CASE("STF over a reference set equals STF over the set written out, for every chunk size") {
    const int64_t b = 4, n = 57, d = 9;
    Tensor rest = images(n, d, 3);
    const std::vector<int64_t> rows{11, 3, 40, 56};
    // An augmented batch: the dataset rows, changed (so the set is not the dataset).
    std::vector<Tensor> picked;
    for (int64_t r : rows) picked.push_back(ops::mul_scalar(ops::narrow(rest, 0, r, 1), -0.5));
    Tensor lead = ops::cat(picked, 0);
    ReferenceSet set{lead, rest, rows};
    Tensor all = explicit_set(set);
    REQUIRE(all.size(0) == set.size());
    Generator gen(4);
    Tensor sigma = ops::from_vector({0.01, 0.4, 2.0, 50.0}, {b}, DType::F64);
    Tensor y = ops::add(lead, ops::mul(ops::randn({b, d}, gen, DType::F64), ops::reshape(sigma, {b, 1})));
    diffusion::StfTarget want = diffusion::stf_target(y, sigma, all);
    for (int64_t chunk : {int64_t{1}, int64_t{5}, int64_t{56}, int64_t{1000}}) {
        CAPTURE(chunk);
        diffusion::StfTarget got = diffusion::stf_target(y, sigma, set, chunk);
        CHECK(rel(got.target.to_vector(), want.target.to_vector()) < 1e-12);
        CHECK(rel(got.ess.to_vector(), want.ess.to_vector()) < 1e-12);
    }
    // At sigma 0.01 the target is the sample's own (augmented) image; at 50 the set's mean.
    std::vector<double> t = diffusion::stf_target(y, sigma, set, 8).target.to_vector(), l = lead.to_vector();
    for (int64_t k = 0; k < d; ++k) CHECK(t[k] == doctest::Approx(l[k]).epsilon(1e-9));
    std::vector<double> mean = ops::mean(all, {0}).to_vector();
    for (int64_t k = 0; k < d; ++k) CHECK(t[3 * d + k] == doctest::Approx(mean[k]).epsilon(0.02));
}

TEST_CASE("STF over a reference set, augmentation off: the dataset itself, E[x | y], in float32 to 1e-5") {
    const int64_t b = 6, n = 300, d = 20;
    Tensor rest = images(n, d, 5);
    const std::vector<int64_t> rows{0, 7, 299, 150, 42, 8};
    std::vector<Tensor> picked;
    for (int64_t r : rows) picked.push_back(ops::narrow(rest, 0, r, 1));
    Tensor lead = ops::cat(picked, 0);
    Generator gen(6);
    Tensor sigma = ops::from_vector({0.002, 0.1, 0.5, 1.5, 4.0, 80.0}, {b}, DType::F64);
    Tensor y = ops::add(lead, ops::mul(ops::randn({b, d}, gen, DType::F64), ops::reshape(sigma, {b, 1})));
    diffusion::StfTarget exact = diffusion::stf_target(y, sigma, rest);  // the whole dataset, float64
    ReferenceSet set32{ops::to(lead, DType::F32), ops::to(rest, DType::F32), rows};
    diffusion::StfTarget got = diffusion::stf_target(ops::to(y, DType::F32), ops::to(sigma, DType::F32), set32, 64);
    CHECK(rel(got.target.to_vector(), exact.target.to_vector()) < 1e-5);
    CHECK(rel(got.ess.to_vector(), exact.ess.to_vector()) < 1e-4);
}

TEST_CASE("ReferenceSet: bad sets are refused by name") {
    Tensor rest = images(10, 4, 7), lead = images(2, 4, 8), y = images(2, 4, 9), sigma = ops::ones({2}, DType::F64);
    auto error = [&](const ReferenceSet& s) {
        return test::error_of([&] { diffusion::stf_target(y, sigma, s); });
    };
    CHECK(test::has(error({lead, rest, {1, 10}}), "batch row 10 is out of range or repeated"));
    CHECK(test::has(error({lead, rest, {3, 3}}), "batch row 3 is out of range or repeated"));
    CHECK(test::has(error({lead, rest, {3}}), "1 dataset rows for a batch of 2 images"));
    CHECK(test::has(error({lead, images(10, 5, 1), {0, 1}}), "do not hold images shaped like the samples"));
    CHECK(test::has(error({ops::to(lead, DType::F32), rest, {0, 1}}), "must share device and dtype"));
    CHECK(test::has(error({lead, Tensor(), {0, 1}}), "needs the training batch and the dataset"));
}
