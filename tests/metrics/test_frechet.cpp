// The Fréchet distance against closed forms: diagonal covariances, identical sets, a rotated 2-D case,
// invariance under a common rotation; the LAPACK eigendecomposition it rests on; scipy's values on
// seeded statistics; the batched accumulator FID uses.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "metrics/frechet.h"
#include "metrics/inception.h"  // seeded_uniform
#include "tensor/ops.h"

using namespace stf;
using namespace stf::metrics;

namespace {

FeatureStats stats_of(std::vector<double> mean, std::vector<double> cov) {
    FeatureStats s;
    s.dim = static_cast<int64_t>(mean.size());
    s.count = 100;
    s.mean = std::move(mean);
    s.cov = std::move(cov);
    return s;
}

std::vector<double> diagonal(const std::vector<double>& d) {
    size_t n = d.size();
    std::vector<double> m(n * n, 0.0);
    for (size_t i = 0; i < n; ++i) m[i * n + i] = d[i];
    return m;
}

std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t n) {
    std::vector<double> c(n * n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k)
            for (int64_t j = 0; j < n; ++j) c[i * n + j] += a[i * n + k] * b[k * n + j];
    return c;
}

std::vector<double> transpose(const std::vector<double>& a, int64_t n) {
    std::vector<double> t(n * n);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) t[j * n + i] = a[i * n + j];
    return t;
}

// A random orthogonal matrix: Gram-Schmidt on a seeded Gaussian matrix.
std::vector<double> random_rotation(int64_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::vector<double> q(n * n);
    for (double& v : q) v = normal(rng);
    for (int64_t c = 0; c < n; ++c) {
        for (int64_t p = 0; p < c; ++p) {
            double dot = 0;
            for (int64_t i = 0; i < n; ++i) dot += q[i * n + c] * q[i * n + p];
            for (int64_t i = 0; i < n; ++i) q[i * n + c] -= dot * q[i * n + p];
        }
        double norm = 0;
        for (int64_t i = 0; i < n; ++i) norm += q[i * n + c] * q[i * n + c];
        for (int64_t i = 0; i < n; ++i) q[i * n + c] /= std::sqrt(norm);
    }
    return q;
}

// A random symmetric positive definite matrix with eigenvalues in [0.1, 3].
std::vector<double> random_spd(int64_t n, unsigned seed) {
    std::vector<double> q = random_rotation(n, seed), d(n);
    for (int64_t i = 0; i < n; ++i) d[i] = 0.1 + 2.9 * static_cast<double>(i) / static_cast<double>(n);
    return matmul(matmul(q, diagonal(d), n), transpose(q, n), n);
}

}  // namespace

TEST_CASE("feature_stats: mean and unbiased covariance of a small set") {
    // Three 2-D points: (0, 0), (2, 0), (1, 3): mean (1, 1); cov [[1, 0], [0, 3]].
    FeatureStats s = feature_stats({0, 0, 2, 0, 1, 3}, 3, 2);
    CHECK(s.mean[0] == doctest::Approx(1));
    CHECK(s.mean[1] == doctest::Approx(1));
    CHECK(s.cov[0] == doctest::Approx(1));
    CHECK(s.cov[1] == doctest::Approx(0));
    CHECK(s.cov[2] == doctest::Approx(0));
    CHECK(s.cov[3] == doctest::Approx(3));
    Tensor t = ops::from_vector({0, 0, 2, 0, 1, 3}, {3, 2});
    CHECK(feature_stats(t).cov[3] == doctest::Approx(3));
    CHECK_THROWS_WITH_AS(feature_stats({1, 2}, 1, 2), doctest::Contains("at least 2"), Error);
}

TEST_CASE("symmetric_eigen reconstructs the matrix; sqrt_psd squares back") {
    const int64_t n = 24;
    std::vector<double> a = random_spd(n, 7);
    SymmetricEigen e = symmetric_eigen(a, n);
    for (int64_t k = 1; k < n; ++k) CHECK(e.values[k - 1] <= e.values[k]);
    CHECK(e.values.front() == doctest::Approx(0.1).epsilon(1e-10));
    CHECK(e.values.back() == doctest::Approx(0.1 + 2.9 * 23 / 24).epsilon(1e-10));
    double worst = 0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double v = 0;
            for (int64_t k = 0; k < n; ++k) v += e.vectors[i * n + k] * e.values[k] * e.vectors[j * n + k];
            worst = std::max(worst, std::abs(v - a[i * n + j]));
        }
    CHECK(worst < 1e-12);
    std::vector<double> r = sqrt_psd(a, n), rr = matmul(r, r, n);
    worst = 0;
    for (int64_t i = 0; i < n * n; ++i) worst = std::max(worst, std::abs(rr[i] - a[i]));
    CHECK(worst < 1e-12);
    // Rounding-negative eigenvalues count as 0.
    CHECK(trace_sqrt_psd(diagonal({4, -1e-18, 9}), 3) == doctest::Approx(5));
}

TEST_CASE("Frechet distance: diagonal covariances give sum (sqrt a - sqrt b)^2 plus the mean term") {
    std::vector<double> a = {1, 4, 9, 0.25}, b = {4, 1, 16, 1};
    FeatureStats s1 = stats_of({0, 1, 2, 3}, diagonal(a)), s2 = stats_of({1, 1, 0, 3}, diagonal(b));
    double want = 1 + 0 + 4 + 0;  // |mu1 - mu2|^2
    for (size_t i = 0; i < a.size(); ++i) want += std::pow(std::sqrt(a[i]) - std::sqrt(b[i]), 2);
    CHECK(frechet_distance(s1, s2) == doctest::Approx(want).epsilon(1e-12));
    CHECK(frechet_distance(s2, s1) == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("Frechet distance: identical feature sets give 0") {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> normal;
    const int64_t count = 300, dim = 32;
    std::vector<double> f(count * dim);
    for (double& v : f) v = normal(rng) * 2 + 1;
    FeatureStats s = feature_stats(f, count, dim);
    CHECK(std::abs(frechet_distance(s, s)) < 1e-9);
}

TEST_CASE("Frechet distance: a rotated 2-D case in closed form, and invariance under a common rotation") {
    // S1 = diag(a1, a2), S2 = R diag(b1, b2) R^T. For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)),
    // with M = S1^1/2 S2 S1^1/2: tr M = tr(S1 S2), det M = a1 a2 b1 b2.
    double a1 = 2, a2 = 0.5, b1 = 3, b2 = 0.2, theta = 0.7;
    double c = std::cos(theta), s = std::sin(theta);
    std::vector<double> rot = {c, -s, s, c};
    std::vector<double> s1 = diagonal({a1, a2});
    std::vector<double> s2 = matmul(matmul(rot, diagonal({b1, b2}), 2), transpose(rot, 2), 2);
    double tr12 = 0;
    std::vector<double> p = matmul(s1, s2, 2);
    tr12 = p[0] + p[3];
    double want = (a1 + a2) + (b1 + b2) - 2 * std::sqrt(tr12 + 2 * std::sqrt(a1 * a2 * b1 * b2));
    CHECK(frechet_distance(stats_of({0, 0}, s1), stats_of({0, 0}, s2)) == doctest::Approx(want).epsilon(1e-12));

    const int64_t n = 16;
    std::vector<double> c1 = random_spd(n, 11), c2 = random_spd(n, 12), q = random_rotation(n, 13);
    std::vector<double> m1(n, 0.5), m2(n, -0.25);
    double before = frechet_distance(stats_of(m1, c1), stats_of(m2, c2));
    auto rotate = [&](const std::vector<double>& m) { return matmul(matmul(q, m, n), transpose(q, n), n); };
    std::vector<double> rm1(n, 0.0), rm2(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            rm1[i] += q[i * n + j] * m1[j];
            rm2[i] += q[i * n + j] * m2[j];
        }
    double after = frechet_distance(stats_of(rm1, rotate(c1)), stats_of(rm2, rotate(c2)));
    CHECK(after == doctest::Approx(before).epsilon(1e-10));
    CHECK(before > 0);
    CHECK_THROWS_WITH_AS(frechet_distance(stats_of({0}, {1}), stats_of({0, 0}, diagonal({1, 1}))),
                         doctest::Contains("dimensions differ"), Error);
}

// Seeded statistics as tools/inception_fixture.py makes them (frechet_fixture): count x dim values
// u * linspace(0.5, 2, dim)[d] (+ linspace(0, 0.3, dim)[d] for the second set), u from
// metrics::seeded_uniform. The tool computed their FD as EDM's fid.py does, with scipy.linalg.sqrtm of
// S1 S2 (a general matrix square root), independently of our symmetric route.
static std::vector<double> fixture_features(const std::string& tag, int64_t dim, int64_t count) {
    std::vector<double> f(static_cast<size_t>(count * dim));
    const std::string name = "frechet_" + tag + "_" + std::to_string(dim);
    for (int64_t i = 0; i < count; ++i)
        for (int64_t d = 0; d < dim; ++d) {
            double t = static_cast<double>(d) / static_cast<double>(dim - 1);
            f[i * dim + d] = seeded_uniform(name, 2015, i * dim + d) * (0.5 + 1.5 * t) + (tag == "b" ? 0.3 * t : 0.0);
        }
    return f;
}

TEST_CASE("Frechet distance agrees with scipy's sqrtm route (EDM's fid.py) on seeded statistics") {
    struct Case {
        int64_t dim, count;
        double scipy;  // printed by tools/inception_fixture.py
    };
    for (Case c : {Case{8, 20, 0.7223591385361334}, Case{64, 100, 4.8621483851922385}}) {
        CAPTURE(c.dim);
        FeatureStats a = feature_stats(fixture_features("a", c.dim, c.count), c.count, c.dim);
        FeatureStats b = feature_stats(fixture_features("b", c.dim, c.count), c.count, c.dim);
        CHECK(frechet_distance(a, b) == doctest::Approx(c.scipy).epsilon(1e-9));
    }
}

TEST_CASE("FeatureAccumulator: batches in any split give feature_stats' mean and covariance") {
    const int64_t dim = 16, count = 50;
    std::vector<double> f = fixture_features("a", dim, count);
    FeatureStats want = feature_stats(f, count, dim);
    FeatureAccumulator acc(dim);
    Tensor all = ops::from_vector(f, {count, dim});  // float32, as the network's features are
    acc.add(ops::narrow(all, 0, 0, 7));
    acc.add(ops::narrow(all, 0, 7, 1));
    acc.add(ops::narrow(all, 0, 8, count - 8));
    FeatureStats got = acc.finish();
    CHECK(got.count == count);
    FeatureStats want32 = feature_stats(all);  // the same float32-rounded values
    for (int64_t i = 0; i < dim; ++i) CHECK(got.mean[i] == doctest::Approx(want32.mean[i]).epsilon(1e-12));
    for (int64_t i = 0; i < dim * dim; ++i) CHECK(got.cov[i] == doctest::Approx(want32.cov[i]).epsilon(1e-9).scale(1));
    CHECK(std::abs(got.cov[0] - want.cov[0]) < 1e-6);
    CHECK_THROWS_WITH_AS(acc.add(ops::zeros({3, dim + 1})), doctest::Contains("[b, 16]"), Error);
    CHECK_THROWS_WITH_AS(FeatureAccumulator(4).finish(), doctest::Contains("at least 2"), Error);
    FeatureStats bad = want;
    bad.cov.resize(3);
    CHECK_THROWS_WITH_AS(frechet_distance(want, bad), doctest::Contains("covariance of 3 values"), Error);
}
