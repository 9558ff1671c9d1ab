// The toy experiment behind ./toy_stf: a small MLP denoiser trained with DSM or STF targets on a Gaussian
// mixture (experiments/gaussian_mixture.h), whose ideal denoiser is exact, and the three measurements the
// tool reports per noise-level band: the trained denoiser's error against the exact one, the variance of
// the loss gradient, and the bias of the STF target.
#pragma once
#include <functional>
#include <memory>
#include <vector>
#include "experiments/gaussian_mixture.h"
#include "nn/layers.h"

namespace stf::experiments {

// D(y; sigma) = c_skip y + c_out F([c_in y, c_noise]), EDM's preconditioning with sigma_data; F an MLP of
// `depth` hidden layers of `hidden` SiLU units and a linear output layer (`out`, the "last layer").
class ToyDenoiser : public nn::Module {
public:
    ToyDenoiser(int64_t dim, int64_t hidden, int depth, double sigma_data, Generator& gen);
    // y [b, d] f32, sigma [b] f32; differentiable. Returns [b, d].
    Tensor forward(const Tensor& y, const Tensor& sigma) const;
    double sigma_data;
    std::vector<std::shared_ptr<nn::Linear>> hidden_layers;
    std::shared_ptr<nn::Linear> out;
};

struct ToyTrainOptions {
    int64_t steps = 2000, batch = 64;
    int64_t rbatch = 0;  // 0: DSM; n >= batch: STF with a reference batch of n (the batch + n - batch fresh draws)
    int64_t hidden = 128;
    int depth = 3;
    double lr = 1e-3;
    uint64_t seed = 0;
};

// One loss evaluation, as in training: lambda(sigma) ||D(x + sigma eps) - target||^2 summed over dims,
// mean over the batch. sigma: one per row (training draws them from EDM's log-normal). rbatch as above.
Tensor toy_loss(const ToyDenoiser& net, const GaussianMixture& mix, const Tensor& x, const std::vector<double>& sigma,
                int64_t rbatch, Generator& gen);

struct ToyTrainResult {
    std::shared_ptr<ToyDenoiser> net;
    std::vector<double> losses;  // one per step
};
// Fresh mixture samples each step, EDM's noise levels (ln sigma ~ N(-1.2, 1.2^2), sigma_data = mix.data_std()),
// Adam with constant lr and the NaN guard. on_step(step, loss) is called after each step when given.
ToyTrainResult train_toy(const GaussianMixture& mix, const ToyTrainOptions& o,
                         const std::function<void(int64_t, double)>& on_step = {});

// ---- measurements per sigma band [lo, hi): sigma drawn log-uniformly within the band ------------------
// Mean over `samples` fresh x of ||D(y) - E[x|y]||^2 / d (per-dimension mean squared error).
double toy_denoiser_error(const ToyDenoiser& net, const GaussianMixture& mix, double lo, double hi, int64_t samples,
                          Generator& gen);
// Trace of the covariance, across `minibatches` independent mini-batches of `batch`, of the gradient of the
// loss with respect to the last layer's weights (at the net's current weights).
double toy_grad_variance(ToyDenoiser& net, const GaussianMixture& mix, double lo, double hi, int64_t batch,
                         int64_t rbatch, int64_t minibatches, Generator& gen);
// The STF target at fixed noisy samples y = x + sigma eps (`points` of them, x fresh draws), over `draws`
// reference batches of n images each: with include_own, as in training, the sample's own clean image drawn
// from p(x | y) plus n - 1 draws of p(x); without it, n draws of p(x) (a plain self-normalised importance
// sampling estimate of E[x|y]). n = 1 with include_own is the DSM target (the own image alone).
struct ToyTargetStats {
    // ||E[target | y] - E[x|y]||^2 / d, averaged over the points. The Monte Carlo term trace(Cov)/draws is
    // subtracted, so the estimate is unbiased and may be slightly negative when the bias is below the noise.
    double bias2 = 0;
    double variance = 0;  // trace Cov[target | y] / d, averaged over the points
};
ToyTargetStats toy_target_stats(const GaussianMixture& mix, double lo, double hi, int64_t n, bool include_own,
                                int64_t points, int64_t draws, Generator& gen);

}  // namespace stf::experiments
