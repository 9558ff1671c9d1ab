#include "train/graph_step.h"

#include "autograd/functions.h"

namespace stf::train {

GraphStep::GraphStep(Parts parts, Device device, bool capture)
    : p_(parts), device_(device), capture_(capture), params_(parts.net.parameters()),
      key_(std::make_shared<RowKey>(device)) {
    STF_CHECK(!capture || device.is_cuda(), "CUDA graphs need --device cuda");
}

void GraphStep::begin_step() {
    // Zeroed in place, not dropped: a round's backward then adds into the same tensors every time. The
    // first step creates them (no gradient is defined before it).
    for (Tensor& p : params_) {
        Tensor g = p.grad();
        if (g.defined()) ops::zero_(g);
    }
}

// A tensor of the round kept at its address: the first round allocates it, later ones copy into it.
static void hold_tensor(Tensor& fixed, const Tensor& now, bool first, const char* what) {
    STF_CHECK(first || fixed.defined() == now.defined(),
              "--cuda-graph: the rounds' " << what << (now.defined() ? " appeared" : " disappeared")
                                           << " after the first round; every round must feed the loss the same inputs");
    if (!now.defined()) return;
    if (first) {
        fixed = ops::clone(now);
        return;
    }
    STF_CHECK(fixed.shape() == now.shape() && fixed.dtype() == now.dtype(),
              "--cuda-graph: every round must have the same shapes, but its " << what << " was " << describe(fixed)
                                                                               << " and is now " << describe(now));
    ops::copy_(fixed, now);
}

void GraphStep::hold(const diffusion::LossBatch& batch, const diffusion::NoiseLevels& levels) {
    STF_CHECK(batch.groups.empty(), "--cuda-graph: class-grouped reference batches (--cond with STF) differ from "
                                    "round to round and cannot be replayed; use --cuda-graph off");
    const bool first = !held_;
    hold_tensor(fixed_.images, batch.images, first, "images");
    hold_tensor(fixed_.class_labels, batch.class_labels, first, "class labels");
    hold_tensor(fixed_.augment_labels, batch.augment_labels, first, "augmentation labels");
    hold_tensor(fixed_.reference, batch.reference, first, "reference batch");
    hold_tensor(fixed_.levels.sigma, levels.sigma, first, "noise levels");
    hold_tensor(fixed_.levels.weight, levels.weight, first, "loss weights");
    held_ = true;
}

void GraphStep::run(cuda::Graph& graph, const std::function<void()>& work) {
    if (!capture_ || steps_done_ == 0) {  // eager; on CUDA the first step warms up what a capture must not do
        work();
        return;
    }
    if (!graph.ready()) graph.capture(work);  // recorded, not run: the replay below runs it
    graph.replay();
    ++replays_;
}

diffusion::LossTerms GraphStep::round(const diffusion::LossBatch& batch, int64_t step, int64_t first_sample,
                                      Generator& noise, Generator& dropout) {
    const int64_t b = batch.images.size(0);
    // The noise levels are the noise generator's draw 0, made on the host as the plain loss makes it.
    noise.key_rows(static_cast<uint64_t>(step), static_cast<uint64_t>(first_sample));
    const diffusion::NoiseLevels levels = diffusion::sample_noise_levels(p_.loss, b, noise, device_);
    hold(batch, levels);
    key_->set(static_cast<uint64_t>(step), static_cast<uint64_t>(first_sample));
    run(round_graph_, [&] {
        noise.key_rows(key_, 1);  // the noise is draw 1
        dropout.key_rows(key_, 0);
        terms_ = diffusion::diffusion_loss(p_.net, fixed_, p_.loss, noise, dropout);
        backward(mul(sum(terms_.loss), p_.loss_scale));
        p_.bands.add(terms_.sigma, terms_.loss, terms_.ess);
    });
    return terms_;
}

void GraphStep::end_step(double lr, double ema_beta) {
    p_.adam.stage(lr);  // host-to-device copies, before the graph that reads them
    p_.ema.stage(ema_beta);
    run(optimizer_graph_, [&] {
        nn::nan_to_num_grads(params_);
        p_.adam.apply_staged();
        p_.ema.apply_staged();
    });
    ++steps_done_;
}

}  // namespace stf::train
