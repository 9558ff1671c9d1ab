// A network evaluation replayed as a CUDA graph, for the samplers (./sample --cuda-graph on,
// bench_sample). Heun with 18 steps evaluates the network 35 times per batch with the same shapes, and
// each evaluation is hundreds of launches whose host cost, at small batches, is most of its time.
//
// The first call for a set of input shapes runs eagerly (cuDNN's algorithm search, the allocator's
// blocks), the second is captured and replayed, later ones are replays. A replay reuses the recorded
// addresses, so the inputs are copied into tensors kept per set of shapes, and the output is the same
// tensor every time: use it (copy it to the host, say) before the next call with those shapes. With
// capture off (the CPU, or --cuda-graph off) every call is forward(inputs), nothing kept.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "tensor/tensor.h"

namespace stf::nn {

class GraphForward {
public:
    // forward: the evaluation on the kept inputs (undefined inputs stay undefined), e.g. a network's
    // forward under NoGradGuard. It must not read anything back to the host.
    using Forward = std::function<Tensor(const std::vector<Tensor>& inputs)>;
    GraphForward(Forward forward, bool capture);

    Tensor operator()(const std::vector<Tensor>& inputs);
    int64_t replays() const { return replays_; }
    int64_t graphs() const;  // sets of shapes captured so far

private:
    struct Entry {
        std::vector<Tensor> inputs;
        Tensor output;
        int64_t calls = 0;
        cuda::Graph graph;
    };
    Forward forward_;
    bool capture_;
    int64_t replays_ = 0;
    std::map<std::string, Entry> entries_;  // by the inputs' shapes, dtypes and devices
};

}  // namespace stf::nn
