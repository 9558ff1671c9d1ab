// Generator: Philox4x32-10 state (seed, offset). Every random op takes the current offset as its
// stream and advances it by one, so the same seed gives the same numbers on CPU and CUDA.
//
// Per-sample streams. Data-parallel training must draw the same noise, noise level, dropout mask and
// augmentation for a sample whichever process or chunk of the batch holds it. While a generator is
// keyed to (step, first_row), an op drawing a tensor whose first dimension has b rows gives row r the
// stream of sample first_row + r in that step, for the op's position in the sequence of draws made
// since the key was set. Offsets are laid out as step << 32 | sample << 11 | draw.
#pragma once
#include <cstdint>

namespace stf {

class Generator {
public:
    static constexpr uint64_t kRowKeyedSamples = uint64_t(1) << 21;  // sample indices per step
    static constexpr uint64_t kRowKeyedDraws = uint64_t(1) << 11;    // draws per sample between keys

    explicit Generator(uint64_t seed = 0) : seed_(seed) {}
    uint64_t seed() const { return seed_; }
    uint64_t offset() const { return offset_; }
    void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
    uint64_t next_stream() { return offset_++; }  // the offset one op uses

    // Per-sample streams (see the top of this file); key_rows restarts the draw counter.
    void key_rows(uint64_t step, uint64_t first_row);
    void unkey_rows() { keyed_ = false; }
    bool rows_keyed() const { return keyed_; }

    // What one op drawing `numel` values in `rows` leading rows uses: element i takes element
    // i % row_len of the stream at offset + (i / row_len) * row_stride (cuda/philox.h). Unkeyed: one
    // stream (row_len 0) at the next offset.
    struct Stream {
        uint64_t offset = 0;
        int64_t row_len = 0;
        uint64_t row_stride = 0;
    };
    Stream next_draw(int64_t numel, int64_t rows);

private:
    uint64_t seed_ = 0;
    uint64_t offset_ = 0;
    bool keyed_ = false;
    uint64_t step_ = 0, first_row_ = 0, draws_ = 0;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace stf
