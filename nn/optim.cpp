#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace stf::nn {

// ---- gradient guard and learning rate --------------------------------------------------------------

void nan_to_num_grads(const std::vector<Tensor>& params, double inf_value) {
    NoGradGuard no_grad;
    std::vector<Tensor> contiguous_grads;
    for (const Tensor& p : params) {
        Tensor g = p.grad();
        if (!g.defined()) continue;
        // In place needs a contiguous tensor; a strided gradient is fixed through a copy into its own storage.
        if (g.is_contiguous()) contiguous_grads.push_back(g);
        else ops::copy_(g, ops::unary(UnaryOp::NanToNum, g, inf_value));
    }
    ops::nan_to_num_many_(contiguous_grads, inf_value);  // on CUDA a few launches instead of one per tensor
}

double edm_learning_rate(double base_lr, double cur_nimg, double rampup_kimg) {
    return base_lr * std::min(cur_nimg / std::max(rampup_kimg * 1000, 1e-8), 1.0);
}

// ---- Adam ------------------------------------------------------------------------------------------

Adam::Adam(std::vector<Tensor> params, Options o) : params_(std::move(params)), opt_(o) {
    for (size_t i = 0; i < params_.size(); ++i) {
        const Tensor& p = params_[i];
        STF_CHECK(p.defined(), "Adam: parameter " << i << " is undefined");
        STF_CHECK(p.is_contiguous(), "Adam: parameter " << i << " must be contiguous, got " << describe(p));
        exp_avg_.push_back(ops::zeros_like(p));
        exp_avg_sq_.push_back(ops::zeros_like(p));
    }
}

Adam::Operands Adam::with_gradients() const {
    Operands out;
    for (size_t i = 0; i < params_.size(); ++i) {
        Tensor gi = params_[i].grad();
        if (!gi.defined()) continue;
        STF_CHECK(gi.shape() == params_[i].shape(),
                  "Adam: gradient " << describe(gi) << " does not match parameter " << i << " " << describe(params_[i]));
        out.p.push_back(params_[i]);
        out.g.push_back(ops::contiguous(gi));
        out.m.push_back(exp_avg_[i]);
        out.v.push_back(exp_avg_sq_[i]);
    }
    return out;
}

void Adam::step(double lr) {
    NoGradGuard no_grad;
    ++steps_;
    Operands o = with_gradients();
    // On CUDA a few launches for all the tensors.
    ops::adam_update_many_(o.p, o.g, o.m, o.v, ops::AdamStep{lr, opt_.beta1, opt_.beta2, opt_.eps, steps_});
}

// The small tensor a stage() writes: n values in the dtype and on the device of the updated tensors,
// kept at its address from step to step (a captured graph reads it there).
static void keep_staged(Tensor& staged, const std::vector<Tensor>& updated, int64_t n, const char* who) {
    STF_CHECK(!updated.empty(), who << ": no tensors to update");
    const Tensor& like = updated[0];
    if (!staged.defined() || staged.device() != like.device() || staged.dtype() != like.dtype())
        staged = ops::empty({n}, like.dtype(), like.device());
}

void Adam::stage(double lr) {
    keep_staged(staged_, params_, ops::kAdamConstants, "Adam::stage");
    ++steps_;
    ops::write_adam_constants_(staged_, ops::AdamStep{lr, opt_.beta1, opt_.beta2, opt_.eps, steps_});
}

void Adam::apply_staged() {
    STF_CHECK(staged_.defined(), "Adam::apply_staged: call stage(lr) first");
    NoGradGuard no_grad;
    Operands o = with_gradients();
    ops::adam_update_many_(o.p, o.g, o.m, o.v, staged_);
}

NamedTensors Adam::state() const {
    NamedTensors out;
    // Copies, so that a saved state does not move on with later steps.
    for (size_t i = 0; i < params_.size(); ++i) {
        out.emplace_back("exp_avg." + std::to_string(i), ops::clone(exp_avg_[i]));
        out.emplace_back("exp_avg_sq." + std::to_string(i), ops::clone(exp_avg_sq_[i]));
    }
    out.emplace_back("step", ops::from_vector({static_cast<double>(steps_)}, {1}, DType::F64));
    return out;
}

namespace {
const Tensor& lookup(const std::map<std::string, Tensor>& by_name, const std::string& name) {
    auto it = by_name.find(name);
    STF_CHECK(it != by_name.end(), "Adam::load_state: missing \"" << name << "\"");
    return it->second;
}
}  // namespace

void Adam::load_state(const NamedTensors& state) {
    STF_CHECK(state.size() == 2 * params_.size() + 1, "Adam::load_state: " << state.size() << " tensors for "
                                                      << params_.size() << " parameters (expected "
                                                      << 2 * params_.size() + 1 << ")");
    std::map<std::string, Tensor> by_name(state.begin(), state.end());
    const Tensor& step = lookup(by_name, "step");
    STF_CHECK(step.numel() == 1, "Adam::load_state: \"step\" must have one element, got " << describe(step));
    // Check everything before copying anything, so a failed load leaves the optimiser as it was.
    for (size_t i = 0; i < params_.size(); ++i)
        for (const char* kind : {"exp_avg.", "exp_avg_sq."}) {
            std::string name = kind + std::to_string(i);
            const Tensor& src = lookup(by_name, name);
            STF_CHECK(src.shape() == params_[i].shape(), "Adam::load_state: \"" << name << "\" is " << describe(src)
                                                         << ", expected shape " << shape_str(params_[i].shape()));
        }
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
        // copy_ converts to the parameter's device and dtype (a state saved on CPU loads onto CUDA).
        ops::copy_(exp_avg_[i], by_name.at("exp_avg." + std::to_string(i)));
        ops::copy_(exp_avg_sq_[i], by_name.at("exp_avg_sq." + std::to_string(i)));
    }
    steps_ = static_cast<int64_t>(step.item());
}

// ---- EMA -------------------------------------------------------------------------------------------

Ema::Ema(std::vector<Tensor> net_params, std::vector<Tensor> ema_params)
    : net_(std::move(net_params)), ema_(std::move(ema_params)) {
    STF_CHECK(net_.size() == ema_.size(),
              "Ema: " << net_.size() << " network tensors but " << ema_.size() << " EMA tensors");
    for (size_t i = 0; i < net_.size(); ++i) {
        STF_CHECK(net_[i].shape() == ema_[i].shape() && net_[i].dtype() == ema_[i].dtype() &&
                      net_[i].device() == ema_[i].device(),
                  "Ema: tensor " << i << " is " << describe(net_[i]) << " in the network but " << describe(ema_[i])
                                 << " in the EMA");
        STF_CHECK(ema_[i].is_contiguous(), "Ema: EMA tensor " << i << " must be contiguous");
    }
}

double Ema::beta(double batch_size, double cur_nimg, double halflife_kimg, double rampup_ratio) {
    double halflife_nimg = halflife_kimg * 1000;
    // Early in training the ramp shortens the half-life so the EMA does not remember the random init.
    if (rampup_ratio > 0) halflife_nimg = std::min(halflife_nimg, cur_nimg * rampup_ratio);
    return std::pow(0.5, batch_size / std::max(halflife_nimg, 1e-8));
}

std::vector<Tensor> Ema::contiguous_net() const {
    std::vector<Tensor> net;
    for (const Tensor& t : net_) net.push_back(ops::contiguous(t));
    return net;
}

void Ema::update(double beta) {
    NoGradGuard no_grad;
    ops::ema_update_many_(ema_, contiguous_net(), beta);  // net + beta * (ema - net); on CUDA a few launches in all
}

void Ema::stage(double beta) {
    keep_staged(staged_, ema_, 1, "Ema::stage");
    ops::copy_(staged_, ops::full({1}, beta, staged_.dtype()));
}

void Ema::apply_staged() {
    STF_CHECK(staged_.defined(), "Ema::apply_staged: call stage(beta) first");
    NoGradGuard no_grad;
    ops::ema_update_many_(ema_, contiguous_net(), staged_);
}

}  // namespace stf::nn
