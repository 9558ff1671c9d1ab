#include "experiments/target_variance.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>

#include "autograd/node.h"
#include "diffusion/knn_target.h"

namespace stf::experiments {

namespace {

constexpr int64_t kStfHead = 64;  // posterior modes summed over exactly per sample (stf_trace_cov)

// ---- host-side random numbers (index draws): the same on every device -------------------------------
uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }
// Uniform in 0..k-1 (Lemire's multiply-shift; the bias is below 2^-40 for the sizes used here).
uint64_t below(std::mt19937_64& rng, uint64_t k) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(rng()) * k) >> 64);
}
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// ---- the images as host rows [N, d], for gathers -----------------------------------------------------
struct HostImages {
    Tensor t;  // CPU, contiguous, [N, d]
    int64_t n = 0, d = 0;
};

void check_images(const Tensor& images, const char* op) {
    STF_CHECK(images.defined() && images.ndim() >= 2 && images.size(0) >= 1 && images.numel() > 0,
              op << ": expected images [N, ...] with N >= 1, got " << (images.defined() ? describe(images) : "none"));
    STF_CHECK(images.dtype() == DType::F32 || (images.dtype() == DType::F64 && images.device().is_cpu()),
              op << ": images must be float32 (or float64 on the CPU), got " << describe(images));
}

void check_samples(const Tensor& images, const Tensor& y, const char* op) {
    check_images(images, op);
    int64_t d = images.numel() / images.size(0);
    STF_CHECK(y.defined() && y.ndim() >= 1 && y.size(0) >= 1 && y.numel() == y.size(0) * d,
              op << ": samples " << (y.defined() ? describe(y) : "none") << " are not shaped like the images "
                 << describe(images));
    STF_CHECK(y.device() == images.device() && y.dtype() == images.dtype(),
              op << ": samples " << describe(y) << " and images " << describe(images) << " differ in device or dtype");
}

HostImages host_images(const Tensor& images) {
    HostImages h;
    h.n = images.size(0);
    h.d = images.numel() / h.n;
    h.t = ops::contiguous(ops::reshape(ops::to(images, Device::cpu()), {h.n, h.d}));
    return h;
}

// The rows `idx` of the images, as a new [idx.size(), d] tensor on `device`.
Tensor gather_rows(const HostImages& h, const std::vector<int64_t>& idx, Device device) {
    int64_t b = static_cast<int64_t>(idx.size());
    Tensor out = Tensor::empty({b, h.d}, h.t.dtype(), Device::cpu());
    size_t row = static_cast<size_t>(h.d) * dtype_size(h.t.dtype());
    const char* src = static_cast<const char*>(h.t.raw_data());
    char* dst = static_cast<char*>(out.raw_data());
    for (int64_t k = 0; k < b; ++k) std::memcpy(dst + k * row, src + idx[static_cast<size_t>(k)] * row, row);
    return ops::to(out, device);
}

void mean_and_error(const std::vector<double>& v, double& mean, double& error) {
    double n = static_cast<double>(v.size()), s = 0, ss = 0;
    for (double x : v) s += x;
    mean = s / n;
    for (double x : v) ss += (x - mean) * (x - mean);
    error = v.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0;
}

}  // namespace

DatasetPosterior dataset_posterior(const Tensor& images, const Tensor& y, double sigma, int64_t chunk) {
    check_samples(images, y, "dataset_posterior");
    STF_CHECK(std::isfinite(sigma) && sigma > 0, "dataset_posterior: sigma must be positive, got " << sigma);
    STF_CHECK(chunk >= 1, "dataset_posterior: chunk must be positive, got " << chunk);
    NoGradGuard no_grad;
    const int64_t N = images.size(0), d = images.numel() / N, S = y.size(0);
    const Device device = images.device();
    const DType dtype = images.dtype();
    Tensor X = ops::reshape(ops::contiguous(images), {N, d});
    Tensor Y = ops::contiguous(ops::reshape(y, {S, d}));

    // ||y_s - x_j||^2 against the whole dataset, chunk by chunk, on the images' device.
    std::vector<double> dist(static_cast<size_t>(S * N));
    for (int64_t start = 0; start < N; start += chunk) {
        int64_t len = std::min(chunk, N - start);
        std::vector<double> v = ops::sq_distances(Y, ops::narrow(X, 0, start, len)).to_vector();
        for (int64_t s = 0; s < S; ++s)
            std::copy(v.begin() + s * len, v.begin() + (s + 1) * len, dist.begin() + s * N + start);
    }

    DatasetPosterior post;
    post.samples = S;
    post.images = N;
    post.prob.resize(static_cast<size_t>(S * N));
    const double coef = -0.5 / (sigma * sigma);
    for (int64_t s = 0; s < S; ++s) {
        const double* ds = dist.data() + s * N;
        double* ps = post.prob.data() + s * N;
        double mx = -INFINITY;
        for (int64_t j = 0; j < N; ++j) mx = std::max(mx, coef * ds[j]);
        double z = 0;
        for (int64_t j = 0; j < N; ++j) z += ps[j] = std::exp(coef * ds[j] - mx);
        for (int64_t j = 0; j < N; ++j) ps[j] /= z;
    }

    // Posterior means m_s = sum_j p_sj x_j: GEMMs on the device.
    Tensor m = ops::zeros({S, d}, dtype, device);
    const int64_t gemm_chunk = 8192;
    for (int64_t start = 0; start < N; start += gemm_chunk) {
        int64_t len = std::min(gemm_chunk, N - start);
        std::vector<double> p(static_cast<size_t>(S * len));
        for (int64_t s = 0; s < S; ++s)
            std::copy(post.prob.begin() + s * N + start, post.prob.begin() + s * N + start + len, p.begin() + s * len);
        m = ops::add(m, ops::matmul(ops::from_vector(p, {S, len}, dtype, device), ops::narrow(X, 0, start, len)));
    }
    post.mean = m.to_vector();

    // trace Cov = sum_j p_sj ||x_j - m_s||^2: a second distance pass, from the means, so that every term is
    // non-negative and nothing cancels (the float32 rounding of m_s adds only ||m_s error||^2). Chunks where
    // every p_sj is exactly 0 contribute exactly 0 and are skipped (most of them at small sigma).
    post.dsm_trace.assign(static_cast<size_t>(S), 0.0);
    for (int64_t start = 0; start < N; start += chunk) {
        int64_t len = std::min(chunk, N - start);
        bool any = false;
        for (int64_t s = 0; s < S && !any; ++s)
            for (int64_t j = start; j < start + len && !any; ++j) any = post.prob[s * N + j] > 0;
        if (!any) continue;
        std::vector<double> v = ops::sq_distances(m, ops::narrow(X, 0, start, len)).to_vector();
        for (int64_t s = 0; s < S; ++s) {
            double acc = 0;
            for (int64_t j = 0; j < len; ++j) acc += post.prob[s * N + start + j] * v[s * len + j];
            post.dsm_trace[s] += acc;
        }
    }
    return post;
}

namespace {

// Squared distance between a double vector and an image row.
template <class T> double sq_dist(const double* a, const T* x, int64_t d) {
    double acc = 0;
    for (int64_t k = 0; k < d; ++k) {
        double diff = a[k] - static_cast<double>(x[k]);
        acc += diff * diff;
    }
    return acc;
}

template <class T>
std::vector<double> stf_trace_cov_impl(const HostImages& h, Device device, const DatasetPosterior& post, int64_t n,
                                       int64_t draws, uint64_t seed) {
    const int64_t N = h.n, d = h.d, S = post.samples, others = n - 1;
    const T* X = h.t.data<T>();
    const int64_t head_max = std::min<int64_t>(N, kStfHead);
    std::mt19937_64 rng(mix(seed, 0x5354465641520001ull));

    // perm holds 0..N-1 in some order: a partial Fisher-Yates shuffle puts a uniform (n-1)-subset R of the
    // dataset in perm[0, n-1) and its complement in perm[n-1, N). mark[j] == stamp says j is in R.
    std::vector<int64_t> perm(static_cast<size_t>(N)), mark(static_cast<size_t>(N), -1), order(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) perm[j] = j;
    std::vector<double> out(static_cast<size_t>(S)), tail_cdf(static_cast<size_t>(N)), t(static_cast<size_t>(d)),
        v(static_cast<size_t>(d)), a(static_cast<size_t>(d));
    std::vector<float> wf;
    std::vector<double> wd;
    std::vector<int64_t> ridx(static_cast<size_t>(others));
    int64_t stamp = 0;

    for (int64_t s = 0; s < S; ++s) {
        const double* p = post.prob.data() + s * N;
        const double* m = post.mean.data() + s * d;
        // The head: the (up to) kStfHead most probable images with p > 0, whose x' is summed over exactly.
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + head_max, order.end(),
                          [&](int64_t i, int64_t j) { return p[i] > p[j] || (p[i] == p[j] && i < j); });
        std::vector<int64_t> head;
        for (int64_t c = 0; c < head_max && p[order[c]] > 0; ++c) head.push_back(order[c]);
        // The tail: everything else, sampled (one x' per draw) with weight tau = its posterior mass.
        std::vector<char> in_head(static_cast<size_t>(N), 0);
        for (int64_t c : head) in_head[c] = 1;
        double tau = 0;
        for (int64_t j = 0; j < N; ++j) tail_cdf[j] = tau += in_head[j] ? 0.0 : p[j];
        // u_c = x_c - m and ||u_c||^2 for the head.
        const int64_t H = static_cast<int64_t>(head.size());
        std::vector<double> u(static_cast<size_t>(H * d)), uu(static_cast<size_t>(H));
        for (int64_t c = 0; c < H; ++c) {
            const T* xc = X + head[c] * d;
            double acc = 0;
            for (int64_t k = 0; k < d; ++k) {
                u[c * d + k] = static_cast<double>(xc[k]) - m[k];
                acc += u[c * d + k] * u[c * d + k];
            }
            uu[c] = acc;
        }

        double total = 0;
        for (int64_t k = 0; k < draws; ++k) {
            ++stamp;
            for (int64_t i = 0; i < others; ++i) {
                std::swap(perm[i], perm[i + static_cast<int64_t>(below(rng, static_cast<uint64_t>(N - i)))]);
                ridx[i] = perm[i];
                mark[perm[i]] = stamp;
            }
            // a = sum_{j in R} p_j x_j and Z = sum_{j in R} p_j: the weighted sum on the images' device, with the
            // weights scaled by their largest so that none underflows in float32.
            double z = 0, top = 0;
            for (int64_t i = 0; i < others; ++i) z += p[ridx[i]], top = std::max(top, p[ridx[i]]);
            std::fill(a.begin(), a.end(), 0.0);
            if (top > 0) {
                Tensor w;
                if (h.t.dtype() == DType::F64) {
                    wd.resize(static_cast<size_t>(others));
                    for (int64_t i = 0; i < others; ++i) wd[i] = p[ridx[i]] / top;
                    w = Tensor::empty({1, others}, DType::F64, Device::cpu());
                    std::memcpy(w.raw_data(), wd.data(), wd.size() * sizeof(double));
                } else {
                    wf.resize(static_cast<size_t>(others));
                    for (int64_t i = 0; i < others; ++i) wf[i] = static_cast<float>(p[ridx[i]] / top);
                    w = Tensor::empty({1, others}, DType::F32, Device::cpu());
                    std::memcpy(w.raw_data(), wf.data(), wf.size() * sizeof(float));
                }
                std::vector<double> sum = ops::matmul(ops::to(w, device), gather_rows(h, ridx, device)).to_vector();
                for (int64_t c = 0; c < d; ++c) a[c] = sum[c] * top;
            }
            // ||T - m||^2 for the reference R + {j} (j not in R): T = (a + p_j x_j) / (Z + p_j).
            auto u_direct = [&](int64_t j) {
                const T* xj = X + j * d;
                double den = z + p[j];
                if (den == 0) return sq_dist(m, xj, d);  // nothing in the reference carries weight: T = x_j
                for (int64_t c = 0; c < d; ++c) t[c] = (a[c] + p[j] * static_cast<double>(xj[c])) / den - m[c];
                double acc = 0;
                for (int64_t c = 0; c < d; ++c) acc += t[c] * t[c];
                return acc;
            };
            // x' = j: the reference is {j} + n-1 others uniform over the rest. R is uniform over the whole
            // dataset; when j is in R, R - {j} + {r} with r uniform from the complement has the right law.
            auto reference_extra = [&](int64_t j) {
                return mark[j] == stamp ? perm[others + static_cast<int64_t>(below(rng, static_cast<uint64_t>(N - others)))]
                                        : j;
            };
            if (z > 0)
                for (int64_t c = 0; c < d; ++c) v[c] = a[c] / z - m[c];
            double vv = 0;
            for (int64_t c = 0; c < d; ++c) vv += z > 0 ? v[c] * v[c] : 0.0;
            double est = 0;
            for (int64_t c = 0; c < H; ++c) {
                int64_t j = head[c];
                double uc;
                if (mark[j] == stamp) {
                    uc = u_direct(reference_extra(j));
                } else if (z > 0) {
                    // T - m = alpha u_c + (1 - alpha) v with alpha = p_c / (p_c + Z), v = a / Z - m.
                    double alpha = p[j] / (p[j] + z), uv = 0;
                    const double* uc_row = u.data() + c * d;
                    for (int64_t q = 0; q < d; ++q) uv += uc_row[q] * v[q];
                    uc = alpha * alpha * uu[c] + 2 * alpha * (1 - alpha) * uv + (1 - alpha) * (1 - alpha) * vv;
                } else {
                    uc = uu[c];  // nothing else in the reference carries weight: T = x_c
                }
                est += p[j] * uc;
            }
            if (tau > 0) {
                double r = uniform01(rng) * tau;
                int64_t j = std::min<int64_t>(std::upper_bound(tail_cdf.begin(), tail_cdf.end(), r) - tail_cdf.begin(), N - 1);
                while (j > 0 && (in_head[j] || p[j] == 0)) --j;  // only by rounding at the very end
                est += tau * u_direct(reference_extra(j));
            }
            total += est;
        }
        out[s] = total / static_cast<double>(draws);
    }
    return out;
}

}  // namespace

std::vector<double> stf_trace_cov(const Tensor& images, const DatasetPosterior& post, int64_t n, int64_t draws,
                                  uint64_t seed) {
    check_images(images, "stf_trace_cov");
    const int64_t N = images.size(0), d = images.numel() / N, S = post.samples;
    STF_CHECK(n >= 1 && n <= N, "stf_trace_cov: reference size " << n << " is not in 1.." << N << " (the dataset size)");
    STF_CHECK(draws >= 1, "stf_trace_cov: need at least 1 draw, got " << draws);
    STF_CHECK(post.images == N && S >= 1 && post.prob.size() == static_cast<size_t>(S * N) &&
                  post.mean.size() == static_cast<size_t>(S * d),
              "stf_trace_cov: the posterior (" << post.samples << " samples over " << post.images
                                               << " images) does not belong to images " << describe(images));
    NoGradGuard no_grad;
    HostImages h = host_images(images);
    if (h.t.dtype() == DType::F64) return stf_trace_cov_impl<double>(h, images.device(), post, n, draws, seed);
    return stf_trace_cov_impl<float>(h, images.device(), post, n, draws, seed);
}

namespace {

template <class T>
KnnVariance knn_trace_cov_impl(const HostImages& h, const DatasetPosterior& post, int64_t k, int64_t n, int64_t draws,
                               uint64_t seed) {
    const int64_t N = h.n, d = h.d, S = post.samples;
    const T* X = h.t.data<T>();
    std::mt19937_64 rng(mix(seed, 0x4B4E4E5641520001ull));
    KnnVariance out{std::vector<double>(static_cast<size_t>(S)), std::vector<double>(static_cast<size_t>(S))};
    std::vector<int64_t> order(static_cast<size_t>(N));
    std::vector<double> t(static_cast<size_t>(d)), plain(static_cast<size_t>(d)), sum(static_cast<size_t>(d)),
        targets(static_cast<size_t>(draws * d));
    for (int64_t s = 0; s < S; ++s) {
        const double* p = post.prob.data() + s * N;
        const double* m = post.mean.data() + s * d;
        std::iota(order.begin(), order.end(), int64_t{0});
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int64_t i, int64_t j) { return p[i] > p[j] || (p[i] == p[j] && i < j); });
        std::vector<double> logits(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) logits[j] = std::log(p[order[j]]);  // -inf where p underflowed
        const diffusion::KnnProposal q = diffusion::knn_proposal(logits, N);
        const double pk = p[order[k - 1]];
        for (int64_t r = 0; r < draws; ++r) {
            std::fill(t.begin(), t.end(), 0.0);
            std::fill(plain.begin(), plain.end(), 0.0);
            double total = 0;
            for (int64_t c = 0; c < n; ++c) {
                const double u = uniform01(rng), u2 = uniform01(rng);
                const int64_t pick = diffusion::knn_draw(q, u, u2, N);
                const int64_t j = pick < 0 ? order[-1 - pick] : pick;
                // p_j / q_j up to a constant: 1 in the neighbourhood, p_j / p_(k) outside it.
                const double v = pk > 0 ? std::min(1.0, p[j] / pk) : 1.0;
                total += v;
                const T* xj = X + j * d;
                for (int64_t q2 = 0; q2 < d; ++q2) {
                    t[q2] += v * static_cast<double>(xj[q2]);
                    plain[q2] += static_cast<double>(xj[q2]);
                }
            }
            // Every weight is 0 only when all n draws came from the floor and landed on images whose posterior
            // probability underflows in float64; their relative weights are then unknown here, and the draws
            // count equally.
            for (int64_t q2 = 0; q2 < d; ++q2)
                targets[r * d + q2] = total > 0 ? t[q2] / total : plain[q2] / static_cast<double>(n);
        }
        std::fill(sum.begin(), sum.end(), 0.0);
        for (int64_t r = 0; r < draws; ++r)
            for (int64_t q2 = 0; q2 < d; ++q2) sum[q2] += targets[r * d + q2];
        double spread = 0, bias = 0;
        for (int64_t q2 = 0; q2 < d; ++q2) {
            const double mean = sum[q2] / static_cast<double>(draws);
            for (int64_t r = 0; r < draws; ++r) spread += (targets[r * d + q2] - mean) * (targets[r * d + q2] - mean);
            bias += (mean - m[q2]) * (mean - m[q2]);
        }
        out.trace_cov[s] = spread / static_cast<double>(draws - 1);
        out.bias2[s] = bias - out.trace_cov[s] / static_cast<double>(draws);
    }
    return out;
}

}  // namespace

KnnVariance knn_trace_cov(const Tensor& images, const DatasetPosterior& post, int64_t k, int64_t n, int64_t draws,
                          uint64_t seed) {
    check_images(images, "knn_trace_cov");
    const int64_t N = images.size(0), d = images.numel() / N, S = post.samples;
    STF_CHECK(k >= 1 && k <= N, "knn_trace_cov: k " << k << " is not in 1.." << N << " (the dataset size)");
    STF_CHECK(n >= 1, "knn_trace_cov: need at least 1 draw per target, got " << n);
    STF_CHECK(draws >= 2, "knn_trace_cov: need at least 2 targets per sample for a covariance, got " << draws);
    STF_CHECK(post.images == N && S >= 1 && post.prob.size() == static_cast<size_t>(S * N) &&
                  post.mean.size() == static_cast<size_t>(S * d),
              "knn_trace_cov: the posterior (" << post.samples << " samples over " << post.images
                                               << " images) does not belong to images " << describe(images));
    NoGradGuard no_grad;
    HostImages h = host_images(images);
    if (h.t.dtype() == DType::F64) return knn_trace_cov_impl<double>(h, post, k, n, draws, seed);
    return knn_trace_cov_impl<float>(h, post, k, n, draws, seed);
}

std::vector<double> default_variance_sigmas() {
    std::vector<double> s;
    const int count = 12;
    for (int i = 0; i < count; ++i) s.push_back(0.01 * std::pow(80 / 0.01, i / double(count - 1)));
    return s;
}

std::vector<VarianceRow> target_variance(const Tensor& images, const VarianceOptions& o,
                                         const std::function<void(const VarianceRow&)>& on_row) {
    check_images(images, "target_variance");
    const int64_t N = images.size(0), d = images.numel() / N;
    STF_CHECK(!o.sigmas.empty(), "target_variance: no noise levels given");
    for (double s : o.sigmas)
        STF_CHECK(std::isfinite(s) && s > 0, "target_variance: noise levels must be positive, got " << s);
    for (int64_t n : o.rbatch)
        STF_CHECK(n >= 1 && n <= N,
                  "target_variance: reference size " << n << " is not in 1.." << N << " (the dataset size)");
    for (int64_t k : o.knn_k)
        STF_CHECK(k >= 1 && k <= N, "target_variance: kNN k " << k << " is not in 1.." << N << " (the dataset size)");
    for (int64_t n : o.knn_draws) STF_CHECK(n >= 1, "target_variance: kNN needs at least 1 draw per target, got " << n);
    STF_CHECK(o.knn_k.empty() || o.draws >= 2, "target_variance: kNN rows need at least 2 draws per sample, got " << o.draws);
    STF_CHECK(o.samples >= 2, "target_variance: need at least 2 noisy samples per sigma, got " << o.samples);
    STF_CHECK(o.draws >= 1, "target_variance: need at least 1 reference draw per sample, got " << o.draws);
    NoGradGuard no_grad;
    const Device device = images.device();
    HostImages h = host_images(images);
    Generator gen(o.seed);
    std::mt19937_64 rng(mix(o.seed, 0x5354465641520000ull));
    std::vector<VarianceRow> rows;
    auto emit = [&](VarianceRow r) {
        rows.push_back(r);
        if (on_row) on_row(rows.back());
    };
    using clock = std::chrono::steady_clock;
    auto since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };

    for (size_t i = 0; i < o.sigmas.size(); ++i) {
        const double sigma = o.sigmas[i];
        auto t0 = clock::now();
        std::vector<int64_t> idx(static_cast<size_t>(o.samples));
        for (int64_t& j : idx) j = static_cast<int64_t>(below(rng, static_cast<uint64_t>(N)));
        Tensor noise = ops::randn({o.samples, d}, gen, images.dtype(), device);
        Tensor y = ops::add(gather_rows(h, idx, device), ops::mul_scalar(noise, sigma));
        DatasetPosterior post = dataset_posterior(images, y, sigma, o.chunk);
        VarianceRow dsm{sigma, "dsm", 0, 0, 0, 0};
        mean_and_error(post.dsm_trace, dsm.trace_cov, dsm.standard_error);
        dsm.seconds = since(t0);
        emit(dsm);
        for (int64_t n : o.rbatch) {
            auto t1 = clock::now();
            VarianceRow r{sigma, "stf", n, 0, 0, 0};
            if (n < N) {  // n = N: the reference is the whole dataset, the target E[x | y] is fixed: 0 exactly
                std::vector<double> v =
                    stf_trace_cov(images, post, n, o.draws, mix(mix(o.seed, i), static_cast<uint64_t>(n)));
                mean_and_error(v, r.trace_cov, r.standard_error);
            }
            r.seconds = since(t1);
            emit(r);
        }
        for (int64_t k : o.knn_k)
            for (int64_t n : o.knn_draws) {
                auto t1 = clock::now();
                KnnVariance v = knn_trace_cov(images, post, k, n, o.draws,
                                              mix(mix(o.seed, i), 0x4B4E4E00ull + static_cast<uint64_t>(k * 1000003 + n)));
                VarianceRow r{sigma, "knn", n, 0, 0, 0, k, 0};
                mean_and_error(v.trace_cov, r.trace_cov, r.standard_error);
                double bias_error = 0;
                mean_and_error(v.bias2, r.bias2, bias_error);
                r.seconds = since(t1);
                emit(r);
            }
    }
    return rows;
}

std::string variance_csv(const std::vector<VarianceRow>& rows) {
    std::string out = "sigma,method,n,trace_cov,stderr,k,bias2\n";
    char line[200];
    for (const VarianceRow& r : rows) {
        std::snprintf(line, sizeof(line), "%.6g,%s,%lld,%.6g,%.6g,%lld,%.6g\n", r.sigma, r.method.c_str(),
                      static_cast<long long>(r.n), r.trace_cov, r.standard_error, static_cast<long long>(r.k), r.bias2);
        out += line;
    }
    return out;
}

void write_variance_csv(const std::string& path, const std::vector<VarianceRow>& rows) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    STF_CHECK(f.good(), "cannot write " << path);
    std::string text = variance_csv(rows);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    STF_CHECK(f.good(), "error writing " << path);
}

}  // namespace stf::experiments
