// EDM's optimiser pieces: the gradient NaN guard, the learning-rate ramp, Adam, and the EMA of weights.
// All update tensors in place with the raw ops (tensor/ops.h) under NoGradGuard, so handles that layers
// hold to the parameters stay valid.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/module.h"

namespace stf::nn {

// EDM replaces non-finite gradients before the step: nan -> 0, +inf -> inf_value, -inf -> -inf_value.
// In place on each parameter's .grad(); parameters without a gradient are skipped.
void nan_to_num_grads(const std::vector<Tensor>& params, double inf_value = 1e5);

// base_lr * min(cur_nimg / (rampup_kimg * 1000), 1), where cur_nimg counts the images seen before
// this step (EDM's linear warm-up).
double edm_learning_rate(double base_lr, double cur_nimg, double rampup_kimg);

// Adam's hyperparameters (EDM's values are the defaults). Declared outside Adam because GCC rejects a
// nested struct with member initialisers as a default argument of its enclosing class's constructor.
struct AdamOptions {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// torch.optim.Adam without weight decay. One step count is shared by all parameters (PyTorch counts
// per parameter; the two differ only if a parameter misses a gradient on some steps).
class Adam {
public:
    using Options = AdamOptions;
    Adam(std::vector<Tensor> params, Options o = {});

    // One update with learning rate lr from the parameters' .grad(); parameters without one are skipped.
    void step(double lr);
    int64_t steps() const { return steps_; }

    // The step split in two for CUDA graphs, whose replays reuse the arguments they captured:
    // stage(lr) counts the step and writes its constants into a small tensor on the parameters' device
    // (a copy from the host, made before the graph runs); apply_staged() updates the parameters that
    // have a gradient, reading the constants from that tensor, and is what a graph captures.
    // stage(lr) then apply_staged() is bit for bit step(lr).
    void stage(double lr);
    void apply_staged();

    // Copies of the moments as "exp_avg.<i>" and "exp_avg_sq.<i>", and the step count as a
    // one-element F64 tensor "step".
    NamedTensors state() const;
    // Restores what state() returned; a wrong count, missing name or shape throws stf::Error.
    void load_state(const NamedTensors& state);

    const std::vector<Tensor>& params() const { return params_; }
    const Options& options() const { return opt_; }

private:
    struct Operands {
        std::vector<Tensor> p, g, m, v;
    };
    Operands with_gradients() const;

    std::vector<Tensor> params_, exp_avg_, exp_avg_sq_;
    Options opt_;
    int64_t steps_ = 0;
    Tensor staged_;  // ops::kAdamConstants values for apply_staged()
};

// Exponential moving average of the network's weights (EDM's ema_halflife_kimg / ema_rampup_ratio).
class Ema {
public:
    Ema(std::vector<Tensor> net_params, std::vector<Tensor> ema_params);

    // 0.5 ** (batch_size / halflife_nimg), where halflife_nimg = halflife_kimg * 1000, capped at
    // cur_nimg * rampup_ratio when rampup_ratio > 0. cur_nimg counts the images seen after this step.
    static double beta(double batch_size, double cur_nimg, double halflife_kimg, double rampup_ratio);

    // ema = net + beta * (ema - net), in place on the EMA tensors.
    void update(double beta);
    // The update split in two for CUDA graphs, as Adam::stage: stage(beta) writes beta to the device,
    // apply_staged() reads it there. Together bit for bit update(beta).
    void stage(double beta);
    void apply_staged();

private:
    std::vector<Tensor> contiguous_net() const;

    std::vector<Tensor> net_, ema_;
    Tensor staged_;  // beta, one value
};

}  // namespace stf::nn
