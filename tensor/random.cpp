#include "tensor/random.h"

#include "tensor/tensor.h"

namespace stf {

void Generator::key_rows(uint64_t step, uint64_t first_row) {
    STF_CHECK(step < (uint64_t(1) << 32), "per-sample random streams: step " << step << " is past 2^32");
    STF_CHECK(first_row < kRowKeyedSamples,
              "per-sample random streams: sample index " << first_row << " is past " << kRowKeyedSamples);
    keyed_ = true;
    step_ = step;
    first_row_ = first_row;
    draws_ = 0;
}

Generator::Stream Generator::next_draw(int64_t numel, int64_t rows) {
    if (!keyed_) return {next_stream(), 0, 0};
    STF_CHECK(rows >= 1 && numel % rows == 0,
              "per-sample random streams: a draw of " << numel << " values cannot be split into " << rows << " rows");
    STF_CHECK(first_row_ + static_cast<uint64_t>(rows) <= kRowKeyedSamples,
              "per-sample random streams: samples " << first_row_ << ".." << first_row_ + rows - 1 << " pass "
                                                    << kRowKeyedSamples);
    STF_CHECK(draws_ < kRowKeyedDraws, "per-sample random streams: more than " << kRowKeyedDraws
                                                                               << " draws since the last key_rows");
    uint64_t offset = (step_ << 32) | (first_row_ << 11) | draws_++;
    return {offset, numel / rows, kRowKeyedDraws};
}

Generator& default_generator() {
    static Generator gen(0);
    return gen;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

}  // namespace stf
