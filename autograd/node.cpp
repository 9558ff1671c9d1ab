// Grad mode, graph recording and the reverse-mode engine.
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace stf {

namespace {
thread_local bool g_grad_mode = true;
}

bool grad_mode_enabled() { return g_grad_mode; }
NoGradGuard::NoGradGuard() : previous_(g_grad_mode) { g_grad_mode = false; }
NoGradGuard::~NoGradGuard() { g_grad_mode = previous_; }

// A second TensorImpl over the same storage, so that graph state set on one is not seen on the other.
static Tensor alias(const Tensor& t) {
    return Tensor::view_of(t.storage(), t.shape(), t.strides(), t.offset(), t.dtype());
}

Tensor detach(const Tensor& t) { return alias(t); }

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, Node::BackwardFn backward_fn) {
    if (!grad_mode_enabled()) return out;
    bool any = false;
    for (const Tensor& in : inputs) any = any || (in.defined() && in.requires_grad());
    if (!any) return out;
    // Raw ops may hand back an input unchanged (contiguous, to); the output needs its own graph state.
    for (const Tensor& in : inputs)
        if (in.defined() && in.same(out)) out = alias(out);
    auto node = std::make_shared<Node>();
    node->name = name;
    node->backward_fn = std::move(backward_fn);
    for (const Tensor& in : inputs) {
        Edge e;
        if (in.defined() && in.requires_grad()) {
            if (in.grad_fn()) e.node = in.grad_fn();
            else e.leaf = in.impl_ptr();
        }
        node->edges.push_back(std::move(e));
    }
    out.impl().grad_fn = std::move(node);
    out.impl().requires_grad = true;
    return out;
}

// The sum of two gradients reaching one node. bf16 ones (mixed precision) are added in float32 and
// rounded once, as the ops that made them would have done.
static Tensor add_gradients(const Tensor& a, const Tensor& b) {
    if (a.dtype() != DType::BF16 && b.dtype() != DType::BF16) return ops::add(a, b);
    return ops::to(ops::add(ops::to(a, DType::F32), ops::to(b, DType::F32)), a.dtype());
}

static void accumulate_into_leaf(TensorImpl& leaf, const Tensor& g) {
    STF_CHECK(g.shape() == leaf.sizes, "backward: gradient " << describe(g) << " does not match its leaf of shape "
                                                             << shape_str(leaf.sizes));
    Tensor gc = g.dtype() == leaf.dtype ? g : ops::to(g, leaf.dtype);
    if (!leaf.grad) {
        leaf.grad = ops::clone(gc).impl_ptr();  // a copy: g may be shared with other edges
        return;
    }
    Tensor acc(leaf.grad);
    if (!acc.is_contiguous()) {
        acc = ops::contiguous(acc);
        leaf.grad = acc.impl_ptr();
    }
    ops::binary_(BinaryOp::Add, acc, gc);
}

static std::vector<Node*> topological_order(Node* root, std::unordered_map<Node*, int>& consumers) {
    std::vector<Node*> stack{root}, order;
    std::unordered_set<Node*> seen{root};
    while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        order.push_back(n);
        for (const Edge& e : n->edges)
            if (e.node) {
                consumers[e.node.get()]++;
                if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
            }
    }
    return order;
}

void backward(const Tensor& root, const Tensor& seed_in) {
    STF_CHECK(root.defined() && root.requires_grad(),
              "backward: " << describe(root) << " does not require grad (no parameter reaches it)");
    Tensor seed = seed_in;
    if (!seed.defined()) {
        STF_CHECK(root.numel() == 1, "backward: a seed gradient is needed for non-scalar " << describe(root));
        seed = ops::ones(root.shape(), root.dtype(), root.device());
    }
    STF_CHECK(seed.shape() == root.shape(), "backward: seed " << describe(seed) << " vs root " << describe(root));
    NoGradGuard no_grad;
    if (!root.grad_fn()) {
        accumulate_into_leaf(root.impl(), seed);
        return;
    }
    // Kahn's algorithm: a node runs once every node that feeds it a gradient has run.
    std::unordered_map<Node*, int> consumers;
    topological_order(root.grad_fn().get(), consumers);
    std::unordered_map<Node*, Tensor> pending;
    pending[root.grad_fn().get()] = seed;
    std::vector<std::shared_ptr<Node>> ready{root.grad_fn()};
    while (!ready.empty()) {
        std::shared_ptr<Node> node = ready.back();
        ready.pop_back();
        Tensor g = pending[node.get()];
        pending.erase(node.get());
        // A node whose consumers sent no gradient still releases its inputs, so they can run.
        std::vector<Tensor> grads(node->edges.size());
        if (g.defined()) {
            STF_CHECK(node->backward_fn, "backward: the graph through '" << node->name
                                                                         << "' was already used by a backward pass");
            grads = node->backward_fn(g);
            node->backward_fn = nullptr;  // frees the tensors it saved
            STF_CHECK(grads.size() == node->edges.size(), "backward: '" << node->name << "' returned "
                                                                        << grads.size() << " gradients for "
                                                                        << node->edges.size() << " inputs");
        }
        for (size_t i = 0; i < grads.size(); ++i) {
            const Edge& e = node->edges[i];
            if (!e.active()) continue;
            if (e.leaf) {
                if (grads[i].defined()) accumulate_into_leaf(*e.leaf, grads[i]);
                continue;
            }
            Node* next = e.node.get();
            if (grads[i].defined()) {
                Tensor& slot = pending[next];
                slot = slot.defined() ? add_gradients(slot, grads[i]) : grads[i];
            }
            if (--consumers[next] == 0) ready.push_back(e.node);
        }
    }
}

}  // namespace stf
