// The target-variance estimator (experiments/target_variance.h) against closed forms: a two-point dataset
// (copies of two images a and b), where the DSM trace is p(1-p)||a-b||^2 and the STF target moves along
// a-b with a hypergeometric count of a's in the reference batch; the sigma -> 0 and sigma -> infinity
// limits; and the CSV a small end-to-end run writes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "experiments/target_variance.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::experiments;

namespace {

double log_choose(int64_t n, int64_t k) {
    return std::lgamma(double(n) + 1) - std::lgamma(double(k) + 1) - std::lgamma(double(n - k) + 1);
}

// P(h successes) drawing `draws` without replacement from `total` items of which `succ` are successes.
double hypergeom(int64_t total, int64_t succ, int64_t draws, int64_t h) {
    if (h < 0 || h > succ || h > draws || draws - h > total - succ) return 0;
    return std::exp(log_choose(succ, h) + log_choose(total - succ, draws - h) - log_choose(total, draws));
}

// Exact trace Cov[STF target | y] on a dataset of `count_a` copies of a and N - count_a copies of b, with
// relative likelihoods e_a, e_b of y and reference size n: T = b + lambda (a - b),
// lambda = c_a e_a / (c_a e_a + c_b e_b), c_a the number of a's in the reference batch.
double two_point_stf_trace(int64_t N, int64_t count_a, double e_a, double e_b, int64_t n, double ab2) {
    double p = count_a * e_a / (count_a * e_a + (N - count_a) * e_b);
    double m1 = 0, m2 = 0;
    auto add = [&](double weight, int64_t c_a) {
        double lambda = c_a * e_a / (c_a * e_a + (n - c_a) * e_b);
        m1 += weight * lambda;
        m2 += weight * lambda * lambda;
    };
    for (int64_t h = 0; h <= n - 1; ++h) {
        add(p * hypergeom(N - 1, count_a - 1, n - 1, h), 1 + h);  // x' = a
        add((1 - p) * hypergeom(N - 1, count_a, n - 1, h), h);    // x' = b
    }
    return (m2 - m1 * m1) * ab2;
}

void mean_se(const std::vector<double>& v, double& mean, double& se) {
    double s = 0, ss = 0, n = double(v.size());
    for (double x : v) s += x;
    mean = s / n;
    for (double x : v) ss += (x - mean) * (x - mean);
    se = std::sqrt(ss / (n - 1) / n);
}

Tensor uniform_images(int64_t n, Shape item, uint64_t seed, DType dtype) {
    Generator gen(seed);
    Shape shape{n};
    shape.insert(shape.end(), item.begin(), item.end());
    return ops::add_scalar(ops::mul_scalar(ops::rand(shape, gen, dtype), 2.0), -1.0);
}

}  // namespace

TEST_CASE("two-point dataset: DSM trace is p(1-p)||a-b||^2, STF matches its hypergeometric closed form") {
    const int64_t N = 24, d = 3, S = 16;
    const std::vector<double> a{1.0, 0.5, -0.2}, b{-0.6, 0.1, 0.4};
    std::vector<double> pix;
    int64_t count_a = 0;
    for (int64_t i = 0; i < N; ++i) {
        bool is_a = i % 8 < 3;  // 9 a's spread through the dataset
        count_a += is_a;
        pix.insert(pix.end(), is_a ? a.begin() : b.begin(), is_a ? a.end() : b.end());
    }
    Tensor images = ops::from_vector(pix, {N, 1, 1, d}, DType::F64);
    const double sigma = 0.8;
    const std::vector<double> y1{0.25, 0.2, 0.05};  // near the midpoint: both images keep posterior mass
    std::vector<double> ys;
    for (int64_t s = 0; s < S; ++s) ys.insert(ys.end(), y1.begin(), y1.end());
    Tensor y = ops::from_vector(ys, {S, 1, 1, d}, DType::F64);

    double da = 0, db = 0, ab2 = 0;
    for (int k = 0; k < d; ++k) {
        da += (y1[k] - a[k]) * (y1[k] - a[k]);
        db += (y1[k] - b[k]) * (y1[k] - b[k]);
        ab2 += (a[k] - b[k]) * (a[k] - b[k]);
    }
    const double e_a = std::exp(-da / (2 * sigma * sigma)), e_b = std::exp(-db / (2 * sigma * sigma));
    const double p = count_a * e_a / (count_a * e_a + (N - count_a) * e_b);
    REQUIRE(p > 0.2);
    REQUIRE(p < 0.8);
    const double dsm = p * (1 - p) * ab2;

    DatasetPosterior post = dataset_posterior(images, y, sigma, 5);  // a chunk that does not divide N
    REQUIRE(post.dsm_trace.size() == size_t(S));
    for (int64_t s = 0; s < S; ++s) {
        CHECK(post.dsm_trace[s] == doctest::Approx(dsm).epsilon(1e-10));
        double mass_a = 0, total = 0;
        for (int64_t j = 0; j < N; ++j) {
            total += post.prob[s * N + j];
            if (j % 8 < 3) mass_a += post.prob[s * N + j];
        }
        CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(mass_a == doctest::Approx(p).epsilon(1e-12));
    }

    // The closed form: n = 1 is DSM, n = N is 0 (the whole dataset: E[x | y] itself), strictly between
    // and falling with n.
    CHECK(two_point_stf_trace(N, count_a, e_a, e_b, 1, ab2) == doctest::Approx(dsm).epsilon(1e-12));
    CHECK(std::abs(two_point_stf_trace(N, count_a, e_a, e_b, N, ab2)) < 1e-14);
    double previous = dsm;
    for (int64_t n : {2, 4, 8, 16}) {
        double exact = two_point_stf_trace(N, count_a, e_a, e_b, n, ab2);
        CAPTURE(n);
        CHECK(exact < previous);
        CHECK(exact > 0);
        previous = exact;
    }

    // Monte Carlo against it.
    for (int64_t n : {1, 2, 4, 8, 16, 24}) {
        CAPTURE(n);
        std::vector<double> v = stf_trace_cov(images, post, n, 128, 1000 + n);
        double mean, se;
        mean_se(v, mean, se);
        double exact = two_point_stf_trace(N, count_a, e_a, e_b, n, ab2);
        CAPTURE(mean);
        CAPTURE(exact);
        CAPTURE(se);
        if (n == N) {
            CHECK(mean < 1e-20);  // the reference is the whole dataset: T = E[x | y]
        } else if (n == 1) {
            CHECK(mean == doctest::Approx(dsm).epsilon(1e-12));  // T = x', summed over exactly
        } else {
            CHECK(std::abs(mean - exact) < 4 * se);
            CHECK(se < 0.05 * exact);  // the check above has teeth
        }
    }
}

TEST_CASE("sigma -> 0: both traces vanish; sigma -> infinity: DSM is the dataset's spread, STF that of an n-subset mean") {
    const int64_t N = 40;
    Tensor images = uniform_images(N, {2, 3, 3}, 5, DType::F64);  // d = 18: images far apart
    std::vector<double> x = images.to_vector();
    const int64_t d = 18;
    std::vector<double> mean(d, 0.0);
    for (int64_t j = 0; j < N; ++j)
        for (int64_t k = 0; k < d; ++k) mean[k] += x[j * d + k] / N;
    double spread = 0;  // (1/N) sum_j ||x_j - mean||^2
    for (int64_t j = 0; j < N; ++j)
        for (int64_t k = 0; k < d; ++k) spread += (x[j * d + k] - mean[k]) * (x[j * d + k] - mean[k]) / N;

    VarianceOptions o;
    o.sigmas = {1e-3, 1e5};
    o.rbatch = {1, 4, 16, N};
    o.samples = 32;
    o.draws = 24;
    o.seed = 3;
    o.chunk = 7;
    std::vector<VarianceRow> rows = target_variance(images, o);
    REQUIRE(rows.size() == 2 * (1 + o.rbatch.size()));
    for (const VarianceRow& r : rows) {
        CAPTURE(r.sigma);
        CAPTURE(r.method);
        CAPTURE(r.n);
        CAPTURE(r.trace_cov);
        CAPTURE(r.standard_error);
        CHECK(r.trace_cov >= 0);
        if (r.sigma < 1) {
            CHECK(r.trace_cov < 1e-12);  // the posterior sits on the sample's own image
        } else if (r.method == "dsm") {
            CHECK(r.trace_cov == doctest::Approx(spread).epsilon(2e-3));  // the posterior is uniform
        } else if (r.n == N) {
            CHECK(r.trace_cov == 0);
            CHECK(r.standard_error == 0);
        } else {
            // A uniform n-subset's mean, sampled without replacement: spread / n * (N - n) / (N - 1).
            double exact = spread / double(r.n) * double(N - r.n) / double(N - 1);
            CHECK(std::abs(r.trace_cov - exact) < 4 * r.standard_error + 2e-3 * exact);
            CHECK(r.standard_error < 0.1 * exact);
        }
    }
}

TEST_CASE("intermediate sigma on random images: STF with n = 1 is DSM, larger n lower, n = N zero") {
    const int64_t N = 48;
    Tensor images = uniform_images(N, {1, 2, 2}, 11, DType::F32);  // d = 4: neighbours share the posterior
    VarianceOptions o;
    o.sigmas = {0.3};
    o.rbatch = {1, 3, 12, N};
    o.samples = 48;
    o.draws = 32;
    o.seed = 7;
    std::vector<VarianceRow> rows = target_variance(images, o);
    REQUIRE(rows.size() == 5);
    const VarianceRow& dsm = rows[0];
    REQUIRE(dsm.method == "dsm");
    CHECK(dsm.trace_cov > 0.05);  // several images share the posterior here
    CHECK(rows[1].trace_cov == doctest::Approx(dsm.trace_cov).epsilon(1e-5));  // n = 1: the target is x'
    CHECK(rows[2].standard_error < 0.1 * rows[2].trace_cov);
    CHECK(rows[2].trace_cov < dsm.trace_cov);
    CHECK(rows[3].trace_cov < rows[2].trace_cov);
    CHECK(rows[4].trace_cov == 0);
    // Same seed, same numbers.
    std::vector<VarianceRow> again = target_variance(images, o);
    for (size_t i = 0; i < rows.size(); ++i) CHECK(again[i].trace_cov == rows[i].trace_cov);
}

TEST_CASE("variance.csv: header, one row per sigma and method, numbers that read back; bad options throw") {
    const int64_t N = 12;
    Tensor images = uniform_images(N, {1, 4, 4}, 2, DType::F32);
    VarianceOptions o;
    o.sigmas = {0.05, 2.0};
    o.rbatch = {3, N};
    o.samples = 4;
    o.draws = 3;
    int seen = 0;
    std::vector<VarianceRow> rows = target_variance(images, o, [&](const VarianceRow&) { ++seen; });
    CHECK(seen == 6);
    std::string csv = variance_csv(rows);
    std::istringstream in(csv);
    std::string line;
    REQUIRE(std::getline(in, line));
    CHECK(line == "sigma,method,n,trace_cov,stderr,k,bias2");
    std::vector<std::string> methods;
    std::vector<long long> ns;
    int count = 0;
    while (std::getline(in, line)) {
        CAPTURE(line);
        std::vector<std::string> f;
        std::stringstream ls(line);
        std::string field;
        while (std::getline(ls, field, ',')) f.push_back(field);
        REQUIRE(f.size() == 7);
        CHECK(f[5] == "0");
        CHECK(f[6] == "0");
        double sigma = std::stod(f[0]), trace = std::stod(f[3]), se = std::stod(f[4]);
        CHECK(sigma == doctest::Approx(o.sigmas[count / 3]));
        CHECK((f[1] == "dsm" || f[1] == "stf"));
        CHECK(trace >= 0);
        CHECK(se >= 0);
        methods.push_back(f[1]);
        ns.push_back(std::stoll(f[2]));
        ++count;
    }
    CHECK(count == 6);
    CHECK(methods == std::vector<std::string>{"dsm", "stf", "stf", "dsm", "stf", "stf"});
    CHECK(ns == std::vector<long long>{0, 3, 12, 0, 3, 12});

    test::TempDir dir("stf_variance_test");
    write_variance_csv(dir.file("variance.csv"), rows);
    CHECK(test::read_bytes(dir.file("variance.csv")) == csv);
    CHECK_THROWS_AS(write_variance_csv(dir.file("missing/variance.csv"), rows), Error);

    VarianceOptions bad = o;
    bad.rbatch = {N + 1};
    CHECK_THROWS_WITH_AS(target_variance(images, bad), doctest::Contains("reference size 13"), Error);
    bad = o;
    bad.sigmas = {1.0, 0.0};
    CHECK_THROWS_AS(target_variance(images, bad), Error);
    bad = o;
    bad.samples = 1;
    CHECK_THROWS_AS(target_variance(images, bad), Error);
    bad = o;
    bad.draws = 0;
    CHECK_THROWS_AS(target_variance(images, bad), Error);
    CHECK_THROWS_AS(dataset_posterior(images, ops::zeros({2, 3}), 1.0), Error);  // not shaped like the images
}

TEST_CASE("kNN target variance against its exact law: all draw sequences of a 5-image dataset, and k = N") {
    // N = 5, n = 2: enumerate the 25 ordered draw pairs with probability q_i q_j, T = (v_i x_i + v_j x_j) / (v_i + v_j).
    const int64_t N = 5, d = 2, k = 2, n = 2;
    Tensor images = uniform_images(N, {1, 1, 2}, 21, DType::F64);
    std::vector<double> x = images.to_vector();
    const double sigma = 0.6;
    Tensor y = ops::add(ops::narrow(images, 0, 1, 1), ops::from_vector({0.2, -0.3}, {1, 1, 1, 2}, DType::F64));
    DatasetPosterior post = dataset_posterior(images, y, sigma);
    const double* p = post.prob.data();
    std::vector<int64_t> order{0, 1, 2, 3, 4};
    std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return p[i] > p[j] || (p[i] == p[j] && i < j); });
    const double pk = p[order[k - 1]];
    std::vector<double> q(N), v(N);
    double z = 0;
    for (int64_t j = 0; j < N; ++j) z += q[j] = std::max(p[j], pk);
    for (int64_t j = 0; j < N; ++j) q[j] /= z, v[j] = std::min(1.0, p[j] / pk);
    double mean[d] = {0, 0}, second = 0;
    for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double t[d], tt = 0;
            for (int64_t c = 0; c < d; ++c) t[c] = (v[i] * x[i * d + c] + v[j] * x[j * d + c]) / (v[i] + v[j]);
            for (int64_t c = 0; c < d; ++c) mean[c] += q[i] * q[j] * t[c], tt += t[c] * t[c];
            second += q[i] * q[j] * tt;
        }
    const double exact_cov = second - mean[0] * mean[0] - mean[1] * mean[1];
    const double exact_bias2 = (mean[0] - post.mean[0]) * (mean[0] - post.mean[0]) + (mean[1] - post.mean[1]) * (mean[1] - post.mean[1]);
    REQUIRE(exact_bias2 > 1e-4);  // the estimator is biased at n = 2: the test can tell
    KnnVariance est = knn_trace_cov(images, post, k, n, 40000, 9);
    CHECK(est.trace_cov[0] == doctest::Approx(exact_cov).epsilon(0.03));
    CHECK(est.bias2[0] == doctest::Approx(exact_bias2).epsilon(0.1));
    // k = N: the proposal is the posterior and every weight 1, so with n = 1 T is a posterior draw: DSM's trace, no bias.
    KnnVariance all = knn_trace_cov(images, post, N, 1, 40000, 10);
    CHECK(all.trace_cov[0] == doctest::Approx(post.dsm_trace[0]).epsilon(0.03));
    CHECK(std::abs(all.bias2[0]) < 0.01 * post.dsm_trace[0]);
    // k = N with n draws: T is the mean of n independent posterior draws, so its mean is STF over the whole
    // dataset, E[x | y], and its trace DSM's divided by n (the 1/n law with no bias at any sigma).
    KnnVariance all4 = knn_trace_cov(images, post, N, 4, 40000, 11);
    CHECK(all4.trace_cov[0] == doctest::Approx(post.dsm_trace[0] / 4).epsilon(0.03));
    CHECK(std::abs(all4.bias2[0]) < 0.01 * post.dsm_trace[0] / 4);
    CHECK_THROWS_WITH_AS(knn_trace_cov(images, post, N + 1, 1, 4, 1), doctest::Contains("k 6 is not in 1..5"), Error);
    CHECK_THROWS_WITH_AS(knn_trace_cov(images, post, 2, 1, 1, 1), doctest::Contains("at least 2 targets"), Error);
}

TEST_CASE("target_variance with kNN rows: k and draws in the CSV, more draws vary less, sigma -> 0 is exact") {
    const int64_t N = 40;
    Tensor images = uniform_images(N, {1, 2, 2}, 13, DType::F32);
    VarianceOptions o;
    o.sigmas = {1e-3, 0.4};
    o.knn_k = {8};
    o.knn_draws = {4, 64};  // draws may exceed the dataset size
    o.samples = 24;
    o.draws = 16;
    o.seed = 4;
    std::vector<VarianceRow> rows = target_variance(images, o);
    REQUIRE(rows.size() == 2 * 3);
    CHECK(rows[1].method == "knn");
    CHECK(rows[1].k == 8);
    CHECK(rows[1].n == 4);
    CHECK(rows[2].n == 64);
    CHECK(rows[1].trace_cov < 1e-12);  // sigma 1e-3: the own image is drawn every time
    CHECK(std::abs(rows[1].bias2) < 1e-12);
    CHECK(rows[4].trace_cov > 0);
    CHECK(rows[5].trace_cov < rows[4].trace_cov);  // 64 draws vary less than 4
    CHECK(rows[5].trace_cov < rows[3].trace_cov);  // and less than DSM
    CHECK(variance_csv(rows).find("0.4,knn,64,") != std::string::npos);
}
