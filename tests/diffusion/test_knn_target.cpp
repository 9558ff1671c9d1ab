// The nearest-neighbour target (diffusion/knn_target.h) against a float64 evaluation of its definition
// written out independently (all distances, a full sort, the proposal from its closed form, the same
// uniforms), its proposal's law, its limits in sigma, k and n, and per-sample random streams.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "diffusion/knn_target.h"
#include "tests/expect_error.h"

using namespace stf;
using diffusion::ReferenceSet;

namespace {

double rel(const std::vector<double>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) num += (got[i] - want[i]) * (got[i] - want[i]), den += want[i] * want[i];
    return std::sqrt(num / den);
}

Tensor images(int64_t n, int64_t d, uint64_t seed, DType dtype = DType::F64) {
    Generator gen(seed);
    return ops::add_scalar(ops::mul_scalar(ops::rand({n, d}, gen, dtype), 2.0), -1.0);
}

// The set's images by column: the dataset's rows, the batch's images at their rows.
std::vector<std::vector<double>> columns_of(const ReferenceSet& s) {
    const int64_t d = s.rest.numel() / s.rest.size(0);
    std::vector<double> lead = s.lead.to_vector(), rest = s.rest.to_vector();
    std::vector<std::vector<double>> x;
    for (int64_t r = 0; r < s.rest.size(0); ++r) x.emplace_back(rest.begin() + r * d, rest.begin() + (r + 1) * d);
    for (size_t i = 0; i < s.rows.size(); ++i)
        x[s.rows[i]] = std::vector<double>(lead.begin() + static_cast<int64_t>(i) * d, lead.begin() + static_cast<int64_t>(i + 1) * d);
    return x;
}

// The estimator in float64 from its definition, with the uniforms u [b, 2n] the implementation draws.
void reference(const std::vector<double>& y, const std::vector<double>& sigma, const std::vector<std::vector<double>>& x, int64_t k,
               int64_t n, const std::vector<double>& u, std::vector<double>& target, std::vector<double>& ess) {
    const int64_t b = static_cast<int64_t>(sigma.size()), d = static_cast<int64_t>(y.size()) / b;
    const int64_t N = static_cast<int64_t>(x.size());
    std::vector<int64_t> present(static_cast<size_t>(N));
    std::iota(present.begin(), present.end(), int64_t{0});
    target.assign(static_cast<size_t>(b * d), 0);
    ess.assign(static_cast<size_t>(b), 0);
    for (int64_t i = 0; i < b; ++i) {
        std::vector<double> l(x.size(), -INFINITY);
        for (int64_t c : present) {
            double dist = 0;
            for (int64_t q = 0; q < d; ++q) dist += (y[i * d + q] - x[c][q]) * (y[i * d + q] - x[c][q]);
            l[c] = -dist / (2 * sigma[i] * sigma[i]);
        }
        std::vector<int64_t> order = present;  // nearest first, equal distances by column
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return l[a] > l[c]; });
        const double lk = l[order[k - 1]], l1 = l[order[0]];
        // pi = N e^{lk} / Z, Z = sum_K e^{l_j} + (N - k) e^{lk}; Q_K(j) ∝ e^{l_j} - e^{lk}
        double zk = 0;
        for (int64_t j = 0; j < k; ++j) zk += std::exp(l[order[j]] - l1);
        const double mk = std::exp(lk - l1), pi = N * mk / (zk + (N - k) * mk), above = zk - k * mk;
        std::vector<double> count(x.size(), 0.0);
        for (int64_t r = 0; r < n; ++r) {
            const double u1 = u[(i * n + r) * 2], u2 = u[(i * n + r) * 2 + 1];
            int64_t c;
            if (u1 < pi || above <= 0) {
                c = std::min(N - 1, static_cast<int64_t>(u2 * N));
            } else {
                double cum = 0;
                int64_t m = 0;
                for (; m < k - 1; ++m) {
                    cum += (std::exp(l[order[m]] - l1) - mk) / above;
                    if (cum > u2) break;
                }
                c = order[m];
            }
            count[c] += 1;
        }
        // Weights c_j p_j / q_j ∝ c_j e^{min(0, l_j - l_(k))}, relative to the largest drawn one (far draws at
        // small sigma would underflow to 0 in absolute terms).
        double top = -INFINITY;
        for (size_t c = 0; c < x.size(); ++c)
            if (count[c] > 0) top = std::max(top, std::min(0.0, l[c] - lk) + std::log(count[c]));
        std::vector<double> weight(x.size(), 0.0);
        for (size_t c = 0; c < x.size(); ++c)
            if (count[c] > 0) weight[c] = std::exp(std::min(0.0, l[c] - lk) + std::log(count[c]) - top);
        double w = 0, w2 = 0;
        for (double v : weight) w += v, w2 += v * v;
        for (int64_t c = 0; c < static_cast<int64_t>(weight.size()); ++c)
            for (int64_t q = 0; q < d && weight[c] > 0; ++q) target[i * d + q] += weight[c] / w * x[c][q];
        ess[i] = w * w / w2;
    }
}

struct Problem {
    ReferenceSet set;
    Tensor y, sigma;
};
// Noisy samples of the batch (an augmented copy of dataset rows when `augmented`), as in training.
Problem problem(int64_t b, int64_t n, int64_t d, std::vector<double> sig, bool augmented, uint64_t seed) {
    Tensor rest = images(n, d, seed);
    std::vector<int64_t> rows;
    std::vector<Tensor> picked;
    for (int64_t i = 0; i < b; ++i) {
        rows.push_back((i * 37 + 5) % n);
        Tensor x = ops::narrow(rest, 0, rows.back(), 1);
        picked.push_back(augmented ? ops::mul_scalar(x, -0.9) : x);
    }
    Tensor lead = ops::cat(picked, 0);
    Generator gen(seed + 1);
    Tensor sigma = ops::from_vector(sig, {b}, DType::F64);
    Tensor y = ops::add(lead, ops::mul(ops::randn({b, d}, gen, DType::F64), ops::reshape(sigma, {b, 1})));
    return {{lead, rest, rows}, y, sigma};
}

Problem to_f32(const Problem& p) {
    return {{ops::to(p.set.lead, DType::F32), ops::to(p.set.rest, DType::F32), p.set.rows}, ops::to(p.y, DType::F32),
            ops::to(p.sigma, DType::F32)};
}

}  // namespace

TEST_CASE("kNN proposal: the mixture is q_j ∝ exp(max(l_j, l_(k))); k = N gives the posterior; equal logits give U") {
    const int64_t N = 9;
    std::vector<double> l{-0.1, -0.3, -0.35, -1.2, -2.0, -2.5, -4.0, -7.0, -9.0};  // nearest first
    for (int64_t k : {1, 3, 5, 9}) {
        CAPTURE(k);
        diffusion::KnnProposal q = diffusion::knn_proposal(std::vector<double>(l.begin(), l.begin() + k), N);
        std::vector<double> want(N);
        double z = 0;
        for (int64_t j = 0; j < N; ++j) z += want[j] = std::exp(std::max(l[j], l[k - 1]));
        for (int64_t j = 0; j < N; ++j) {
            double neighbour = j < k && !q.neighbour_cdf.empty() ? q.neighbour_cdf[j] - (j ? q.neighbour_cdf[j - 1] : 0) : 0;
            CHECK(q.uniform_mass / N + (1 - q.uniform_mass) * neighbour == doctest::Approx(want[j] / z).epsilon(1e-12));
        }
    }
    diffusion::KnnProposal flat = diffusion::knn_proposal({-1.0, -1.0, -1.0}, 100);
    CHECK(flat.uniform_mass == 1);
    CHECK(flat.neighbour_cdf.empty());
    CHECK(diffusion::knn_draw(flat, 0.99, 0.999, 100) == 99);
    CHECK(test::has(test::error_of([] { diffusion::knn_proposal({0.0, 0.0}, 1); }), "2 neighbours in a set of 1"));
}

TEST_CASE("kNN target matches a float64 evaluation of its definition: chunks, both passes, float32 and float64") {
    struct Case {
        int64_t b, n, d, k, draws;
        bool augmented;
    };
    for (Case c : {Case{3, 20, 5, 4, 16, false}, Case{6, 300, 24, 40, 64, true}, Case{5, 500, 12, 500, 32, false},
                   Case{4, 257, 16, 1, 8, true}}) {
        std::vector<double> sig{0.01, 0.3, 1.0, 3.0, 20.0, 0.6};
        sig.resize(c.b);
        Problem p = problem(c.b, c.n, c.d, sig, c.augmented, static_cast<uint64_t>(c.n));
        const int64_t k = std::min(c.k, p.set.size());
        std::vector<double> u;
        {
            Generator g(77);
            u = ops::rand({c.b, 2 * c.draws}, g, DType::F64).to_vector();
        }
        std::vector<double> want, want_ess;
        reference(p.y.to_vector(), sig, columns_of(p.set), k, c.draws, u, want, want_ess);
        for (int64_t chunk : {int64_t{7}, int64_t{100000}})
            for (int64_t keep : {int64_t{0}, diffusion::kKnnKeepDistances}) {
                CAPTURE(c.n);
                CAPTURE(chunk);
                CAPTURE(keep);
                Generator g64(77), g32(77);
                diffusion::KnnTarget t64 = diffusion::knn_target(p.y, p.sigma, p.set, k, c.draws, g64, chunk, keep);
                CHECK(rel(t64.target.to_vector(), want) < 1e-12);
                CHECK(rel(t64.ess.to_vector(), want_ess) < 1e-12);
                Problem f = to_f32(p);
                diffusion::KnnTarget t32 = diffusion::knn_target(f.y, f.sigma, f.set, k, c.draws, g32, chunk, keep);
                CHECK(t32.target.dtype() == DType::F32);
                CHECK(rel(t32.target.to_vector(), want) < 1e-5);
                CHECK(rel(t32.ess.to_vector(), want_ess) < 1e-4);
            }
    }
}

TEST_CASE("kNN target: one draw is one image distributed as the proposal; many draws give E[x | y]") {
    // n = 1: T is the drawn image itself, so its mean over seeds is sum_j q_j x_j (the proposal's mean).
    const int64_t n = 40, d = 3, k = 5;
    Problem p = problem(1, n, d, {0.8}, false, 9);
    std::vector<double> x = p.set.rest.to_vector(), y = p.y.to_vector();
    std::vector<double> l(n);
    for (int64_t j = 0; j < n; ++j) {
        double dist = 0;
        for (int64_t q = 0; q < d; ++q) dist += (y[q] - x[j * d + q]) * (y[q] - x[j * d + q]);
        l[j] = -dist / (2 * 0.8 * 0.8);
    }
    std::vector<double> sorted = l;
    std::sort(sorted.rbegin(), sorted.rend());
    std::vector<double> q_mean(d, 0), post_mean(d, 0);
    double zq = 0, zp = 0;
    for (int64_t j = 0; j < n; ++j) {
        const double wq = std::exp(std::max(l[j], sorted[k - 1]) - sorted[0]), wp = std::exp(l[j] - sorted[0]);
        zq += wq, zp += wp;
        for (int64_t q = 0; q < d; ++q) q_mean[q] += wq * x[j * d + q], post_mean[q] += wp * x[j * d + q];
    }
    for (int64_t q = 0; q < d; ++q) q_mean[q] /= zq, post_mean[q] /= zp;
    // Many independent draws at once: the same noisy sample repeated (the set's lead need not match y's rows).
    const int64_t trials = 4000;
    Tensor ys = ops::contiguous(ops::expand(p.y, {trials, d})), sigmas = ops::full({trials}, 0.8, DType::F64);
    Generator g1(1000);
    std::vector<double> v = diffusion::knn_target(ys, sigmas, p.set, k, 1, g1).target.to_vector();
    std::vector<double> mean(d, 0), sq(d, 0);
    for (int64_t t = 0; t < trials; ++t)
        for (int64_t q = 0; q < d; ++q) mean[q] += v[t * d + q] / trials, sq[q] += v[t * d + q] * v[t * d + q] / trials;
    double apart = 0;  // how far the proposal's mean is from the posterior's, in standard errors
    for (int64_t q = 0; q < d; ++q) {
        const double se = std::sqrt((sq[q] - mean[q] * mean[q]) / trials);
        CAPTURE(q);
        CHECK(std::abs(mean[q] - q_mean[q]) < 4 * se);
        apart = std::max(apart, std::abs(q_mean[q] - post_mean[q]) / se);
    }
    CHECK(apart > 8);  // so the check above tells the proposal from the posterior
    // n large: self-normalised importance sampling converges to the posterior mean.
    Generator g(5);
    std::vector<double> many = diffusion::knn_target(p.y, p.sigma, p.set, k, 200000, g).target.to_vector();
    for (int64_t q = 0; q < d; ++q) CHECK(many[q] == doctest::Approx(post_mean[q]).epsilon(0.01));
}

TEST_CASE("kNN target limits: small sigma gives the own image (ESS 1); large sigma weighs the draws equally") {
    Problem p = problem(3, 200, 16, {0.005, 0.01, 1000.0}, false, 11);
    Generator g(3);
    diffusion::KnnTarget t = diffusion::knn_target(p.y, p.sigma, p.set, 16, 64, g);
    std::vector<double> got = t.target.to_vector(), lead = p.set.lead.to_vector(), ess = t.ess.to_vector();
    for (int64_t q = 0; q < 32; ++q) CHECK(got[q] == doctest::Approx(lead[q]).epsilon(1e-9));
    CHECK(ess[0] == doctest::Approx(1.0));
    CHECK(ess[1] == doctest::Approx(1.0));
    // sigma 1000: every weight is ~1, so ESS is the number of draws up to repeats: 64 draws from 200 images.
    CHECK(ess[2] > 40);
    CHECK(ess[2] <= 64.0001);
}

TEST_CASE("kNN target: a sample's draws depend on its own random stream only, not on the batch around it") {
    Problem p = problem(4, 100, 8, {0.5, 1.0, 2.0, 4.0}, false, 13);
    Generator all(21), one(21);
    all.key_rows(3, 10);
    std::vector<double> whole = diffusion::knn_target(p.y, p.sigma, p.set, 10, 32, all).target.to_vector();
    one.key_rows(3, 12);  // sample 12 of step 3 is row 2 of the batch above
    ReferenceSet alone{ops::narrow(p.set.lead, 0, 2, 1), p.set.rest, {p.set.rows[2]}};
    std::vector<double> part = diffusion::knn_target(ops::narrow(p.y, 0, 2, 1), ops::narrow(p.sigma, 0, 2, 1), alone, 10, 32,
                                                     one)
                                   .target.to_vector();
    // The two sets differ (the other batch images and their rows) only where they coincide as images, with
    // augmentation off: the same set of images, in another column order. Row 2's target must agree.
    for (int64_t q = 0; q < 8; ++q) CHECK(part[q] == doctest::Approx(whole[2 * 8 + q]).epsilon(1e-12));
}

TEST_CASE("kNN target: bad k, n and sigma counts are refused by name") {
    Problem p = problem(2, 30, 4, {1.0, 2.0}, false, 17);
    Generator g(1);
    auto error = [&](int64_t k, int64_t n) { return test::error_of([&] { diffusion::knn_target(p.y, p.sigma, p.set, k, n, g); }); };
    CHECK(test::has(error(31, 4), "k 31 neighbours is not in 1..30"));
    CHECK(test::has(error(0, 4), "k 0 neighbours is not in 1..30"));
    CHECK(test::has(error(3, 0), "need at least one draw"));
    CHECK(test::has(test::error_of([&] { diffusion::knn_target(p.y, ops::ones({3}, DType::F64), p.set, 3, 4, g); }),
                    "3 sigmas for 2 samples"));
}
