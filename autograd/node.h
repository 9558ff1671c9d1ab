// The autograd graph: each differentiable op's output points at a Node that knows how to turn the
// gradient of that output into gradients of the op's inputs.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include "tensor/tensor.h"

namespace stf {

// Where an input's gradient goes: to the node that produced it, or (for a leaf that requires grad)
// into that leaf's .grad.
struct Edge {
    std::shared_ptr<Node> node;
    std::shared_ptr<TensorImpl> leaf;
    bool active() const { return node || leaf; }
};

struct Node {
    using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
    std::string name;         // the op, for error messages and graph dumps
    std::vector<Edge> edges;  // one per input, in the order backward_fn returns gradients
    BackwardFn backward_fn;   // returns one gradient per input (undefined where none flows)
};

// Gradients are recorded only while grad mode is on (the default); NoGradGuard turns it off for a scope.
bool grad_mode_enabled();
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

// Attaches a Node to `out` when grad mode is on and any input requires grad; returns `out`.
// Ops call this after computing their output with the raw ops.
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, Node::BackwardFn backward_fn);

// Reverse-mode sweep from `root`. The seed gradient defaults to ones (root must then have one element).
// Gradients accumulate into the .grad of leaves that require grad.
void backward(const Tensor& root, const Tensor& seed = Tensor());

// A tensor sharing root's data but outside the graph.
Tensor detach(const Tensor& t);

}  // namespace stf
