#include "data/sampler.h"

#include <algorithm>

#include "cuda/philox.h"
#include "tensor/tensor.h"  // STF_CHECK

namespace stf::data {

InfiniteSampler::InfiniteSampler(int64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {
    STF_CHECK(n > 0, "InfiniteSampler: needs at least one item, got " << n);
    STF_CHECK(n < (int64_t(1) << 32), "InfiniteSampler: " << n << " items is more than it supports (2^32 - 1)");
}

std::vector<int64_t> InfiniteSampler::permutation(int64_t epoch) const {
    STF_CHECK(epoch >= 0, "InfiniteSampler: negative epoch " << epoch);
    std::vector<int64_t> order(static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) order[static_cast<size_t>(i)] = i;
    if (!shuffle_) return order;
    // Fisher-Yates from the top: draw k (k = n-1-i) is 32-bit word k % 4 of Philox block k / 4 at counter
    // offset `epoch` with key `seed`, mapped to 0..i by a multiply-shift.
    philox::Words words{};
    for (int64_t i = n_ - 1, k = 0; i >= 1; --i, ++k) {
        if (k % 4 == 0) words = philox::philox4x32_10(static_cast<uint64_t>(k / 4), static_cast<uint64_t>(epoch), seed_);
        uint64_t w = words.w[k % 4];
        int64_t j = static_cast<int64_t>((w * static_cast<uint64_t>(i + 1)) >> 32);
        std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
    }
    return order;
}

std::vector<int64_t> InfiniteSampler::next(int64_t count) {
    STF_CHECK(count >= 0, "InfiniteSampler::next: negative count " << count);
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(count));
    while (static_cast<int64_t>(out.size()) < count) {
        if (state_.position >= n_) {
            ++state_.epoch;
            state_.position = 0;
        }
        if (cached_epoch_ != state_.epoch) {
            order_ = permutation(state_.epoch);
            cached_epoch_ = state_.epoch;
        }
        int64_t take = std::min(count - static_cast<int64_t>(out.size()), n_ - state_.position);
        out.insert(out.end(), order_.begin() + state_.position, order_.begin() + state_.position + take);
        state_.position += take;
    }
    return out;
}

std::vector<int64_t> InfiniteSampler::take(int64_t position, int64_t count) {
    STF_CHECK(position >= 0, "InfiniteSampler::take: negative position " << position);
    state_ = {position / n_, position % n_};
    return next(count);
}

void InfiniteSampler::set_state(const State& s) {
    STF_CHECK(s.epoch >= 0 && s.position >= 0 && s.position <= n_,
              "InfiniteSampler::set_state: bad state (epoch " << s.epoch << ", position " << s.position << ") for "
                                                              << n_ << " items");
    state_ = s;
}

}  // namespace stf::data
