// How much the training target varies for a fixed noisy sample: the evidence behind STF's claim
// (Xu, Tong & Jaakkola 2023) that its target has far lower covariance than the DSM target where several
// data points share the posterior, falling roughly as 1/(n-1) with the reference-batch size n.
//
// Setting: a dataset x_1..x_N (uniform prior), a noisy sample y = x + sigma * eps of a random image x.
// Given y the clean image has the posterior p_j = softmax_j(-||y - x_j||^2 / (2 sigma^2)).
//  - DSM's target is the clean image itself, so trace Cov[target | y] = sum_j p_j ||x_j - m||^2 with
//    m = sum_j p_j x_j: computed exactly against the whole dataset.
//  - STF's target is sum_j w_j x_j over a reference batch: the sample's own image x' (drawn from p) and
//    n - 1 other images drawn uniformly without replacement from the rest of the dataset (as the training
//    loop draws them), with w from diffusion/stf_target.h. Its covariance given y (over x' and the others)
//    is estimated by Monte Carlo (exact over x' for the posterior's main modes). With n = N the reference is the whole dataset whatever x' is, so the
//    target is E[x | y] itself and its covariance is exactly 0.
//  - The nearest-neighbour target (diffusion/knn_target.h: k neighbours, n draws from its proposal over the
//    whole dataset) does not depend on x' at all, only on y and its draws; it is biased for finite n, so
//    besides trace Cov[T | y] its squared bias ||E[T | y] - m||^2 is reported; their sum is E||T - m||^2.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/ops.h"

namespace stf::experiments {

// The posterior over the dataset of the clean image, for noisy samples y at one sigma.
struct DatasetPosterior {
    int64_t samples = 0, images = 0;
    std::vector<double> prob;       // [samples * images]: p_sj, each row sums to 1
    std::vector<double> mean;       // [samples * d]: m_s = sum_j p_sj x_j = E[x | y_s]
    std::vector<double> dsm_trace;  // [samples]: trace Cov[x | y_s] = sum_j p_sj ||x_j - m_s||^2
};

// images [N, ...] and y [S, ...] (same trailing shape, same device, float32, or float64 on the CPU).
// Squared distances come from ops::sq_distances on the images' device in chunks of `chunk` images (small
// chunks stay in cache), the posterior means m_s from ops::matmul, and the trace from a second distance
// pass, ||x_j - m_s||^2, so that no digits cancel; the softmax and the sums are taken in float64 on the host.
DatasetPosterior dataset_posterior(const Tensor& images, const Tensor& y, double sigma, int64_t chunk = 256);

// Per sample y_s of `post`: an unbiased Monte Carlo estimate of trace Cov[STF target | y_s] with reference
// size n (1 <= n <= N), averaged over `draws` >= 1 draws of the n - 1 others. The STF target for reference
// {x'} + R is T = sum_j w_j x_j with w_j = softmax over the reference of -||y - x_j||^2 / (2 sigma^2),
// i.e. p_j / sum_{reference} p (what diffusion/stf_target.h computes); E[T | y] = m_s, so the trace is
// E||T - m_s||^2. Each draw takes R (n - 1 images uniform over the dataset; where it holds x' itself, x' is
// swapped for a uniform image from the rest, which gives exactly the training loop's law), forms
// sum_{j in R} p_j x_j with ops::matmul on the images' device, and then sums ||T - m_s||^2 over x' exactly
// for the posterior's 64 most probable images (weights p) and samples x' once from the rest (weight: its
// mass). Summing over x' instead of drawing it sees a posterior's small modes, which plain sampling misses
// at small sigma (where STF equals DSM). Deterministic for a given seed whatever the device.
std::vector<double> stf_trace_cov(const Tensor& images, const DatasetPosterior& post, int64_t n, int64_t draws,
                                  uint64_t seed);

// Per sample y_s of `post`, for the nearest-neighbour target with k neighbours (1 <= k <= N) and n >= 1 draws
// over the whole dataset: the trace of Cov[T | y_s] and the squared bias ||E[T | y_s] - m_s||^2, from `draws`
// >= 2 independent targets (the unbiased sample covariance's trace, and ||mean - m_s||^2 - trace / draws,
// unbiased, so small negative values occur). In float64 on the host from the exact posterior: its k most
// probable images (ties by index) are the neighbours, the proposal and draws are diffusion::knn_proposal and
// knn_draw, a draw's weight is min(1, p_j / p_(k)). Deterministic for a given seed.
struct KnnVariance {
    std::vector<double> trace_cov, bias2;  // [samples]
};
KnnVariance knn_trace_cov(const Tensor& images, const DatasetPosterior& post, int64_t k, int64_t n, int64_t draws,
                          uint64_t seed);

struct VarianceOptions {
    std::vector<double> sigmas;    // noise levels, each > 0
    std::vector<int64_t> rbatch;   // STF reference sizes, each in 1..N (N: the whole dataset): a stf row each
    std::vector<int64_t> knn_k;    // kNN neighbour counts, each in 1..N: a knn row per k and entry of knn_draws
    std::vector<int64_t> knn_draws;  // kNN draws per target, each >= 1
    int64_t samples = 128;         // noisy samples y per sigma (>= 2)
    int64_t draws = 16;            // Monte Carlo reference batches per sample for STF (>= 1)
    uint64_t seed = 0;
    int64_t chunk = 256;           // dataset images per distance chunk
};

struct VarianceRow {
    double sigma = 0;
    std::string method;            // "dsm", "stf" or "knn"
    int64_t n = 0;                 // reference size for stf, draws for knn; 0 for dsm
    double trace_cov = 0;          // mean over the samples y of trace Cov[target | y]
    double standard_error = 0;     // of that mean (standard deviation over the samples / sqrt(samples))
    double seconds = 0;            // time this row took
    int64_t k = 0;                 // neighbours for knn; 0 otherwise
    double bias2 = 0;              // mean over y of ||E[target | y] - E[x | y]||^2: 0 for dsm and stf by construction
};

// Twelve noise levels spaced evenly in log sigma from 0.01 to 80.
std::vector<double> default_variance_sigmas();

// For each sigma: `samples` noisy samples y = x_i + sigma * eps (x_i uniform over the images, eps from a
// Philox generator on the images' device), one dsm row, then one stf row per entry of rbatch (n = N is
// exactly 0 without Monte Carlo), then one knn row per k of knn_k and entry of knn_draws (o.draws targets
// per sample, at least 2). on_row, when given, sees each row as it is finished.
std::vector<VarianceRow> target_variance(const Tensor& images, const VarianceOptions& o,
                                         const std::function<void(const VarianceRow&)>& on_row = {});

// "sigma,method,n,trace_cov,stderr,k,bias2" and one line per row.
std::string variance_csv(const std::vector<VarianceRow>& rows);
void write_variance_csv(const std::string& path, const std::vector<VarianceRow>& rows);  // throws stf::Error

}  // namespace stf::experiments
