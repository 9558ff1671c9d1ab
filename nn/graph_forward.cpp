#include "nn/graph_forward.h"

#include "tensor/ops.h"

namespace stf::nn {

GraphForward::GraphForward(Forward forward, bool capture) : forward_(std::move(forward)), capture_(capture) {
    STF_CHECK(static_cast<bool>(forward_), "GraphForward: no forward function");
}

static std::string signature(const std::vector<Tensor>& inputs) {
    std::string key;
    for (const Tensor& t : inputs)
        key += t.defined() ? shape_str(t.shape()) + dtype_name(t.dtype()) + t.device().str() + ";" : "-;";
    return key;
}

int64_t GraphForward::graphs() const {
    int64_t n = 0;
    for (const auto& [key, e] : entries_) n += e.graph.ready() ? 1 : 0;
    return n;
}

Tensor GraphForward::operator()(const std::vector<Tensor>& inputs) {
    if (!capture_) return forward_(inputs);
    Entry& e = entries_[signature(inputs)];
    if (e.calls == 0) {
        for (const Tensor& t : inputs) e.inputs.push_back(t.defined() ? ops::clone(t) : Tensor());
    } else {
        for (size_t i = 0; i < inputs.size(); ++i)
            if (inputs[i].defined()) ops::copy_(e.inputs[i], inputs[i]);
    }
    if (e.calls++ == 0) return forward_(e.inputs);  // the warm-up
    if (!e.graph.ready()) e.graph.capture([&] { e.output = forward_(e.inputs); });  // recorded, not run
    e.graph.replay();
    ++replays_;
    return e.output;
}

}  // namespace stf::nn
