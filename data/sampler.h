// The order in which training sees a dataset: an endless, seeded stream of image indices, each epoch a
// fresh permutation, addressable by position so that a resumed run draws exactly what an
// uninterrupted one would.
#pragma once
#include <cstdint>
#include <vector>

namespace stf::data {

// An endless stream of indices into 0..n-1: each epoch is a fresh permutation computed from
// (seed, epoch) alone (Fisher-Yates driven by Philox4x32-10 with key = seed, counter offset = epoch),
// so a stream resumed from its State continues exactly as an uninterrupted one.
class InfiniteSampler {
public:
    struct State {
        int64_t epoch = 0;
        int64_t position = 0;  // indices of this epoch already handed out
        bool operator==(const State& o) const { return epoch == o.epoch && position == o.position; }
    };

    InfiniteSampler(int64_t n, uint64_t seed, bool shuffle = true);
    std::vector<int64_t> next(int64_t count);
    // The `count` indices from stream position `position` on (epoch position / size), leaving the
    // sampler there: random access for streams addressed by training step.
    std::vector<int64_t> take(int64_t position, int64_t count);
    State state() const { return state_; }
    void set_state(const State& s);
    // The order of one epoch (the identity when shuffle is off).
    std::vector<int64_t> permutation(int64_t epoch) const;
    int64_t size() const { return n_; }
    uint64_t seed() const { return seed_; }

private:
    int64_t n_;
    uint64_t seed_;
    bool shuffle_;
    State state_;
    int64_t cached_epoch_ = -1;
    std::vector<int64_t> order_;
};

}  // namespace stf::data
