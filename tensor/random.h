// Generator: Philox4x32-10 state (seed, offset). Every random op takes the current offset as its
// stream and advances it by one, so the same seed gives the same numbers on CPU and CUDA.
//
// Per-sample streams. Data-parallel training must draw the same noise, noise level, dropout mask and
// augmentation for a sample whichever process or chunk of the batch holds it. While a generator is
// keyed to (step, first_row), an op drawing a tensor whose first dimension has b rows gives row r the
// stream of sample first_row + r in that step, for the op's position in the sequence of draws made
// since the key was set. Offsets are laid out as step << 32 | sample << 11 | draw.
//
// Row keys in memory (CUDA graphs). A captured graph replays its launches with the arguments they were
// recorded with, so a key passed by value would repeat the captured step's random numbers forever.
// key_rows(RowKey) keys the generator to a word in memory on the draw's device instead: each draw's
// stream offset is then that word (step << 32 | first_row << 11, written by RowKey::set before the
// graph runs) plus the draw's position, added by the kernel when it runs. The numbers are those of
// key_rows(step, first_row), bit for bit.
#pragma once
#include <cstdint>
#include <memory>

#include "tensor/tensor.h"

namespace stf {

class RowKey {
public:
    explicit RowKey(Device device);
    ~RowKey();
    RowKey(const RowKey&) = delete;
    RowKey& operator=(const RowKey&) = delete;

    // Writes step << 32 | first_row << 11: a plain store on the CPU, a host-to-device copy on CUDA
    // (made before the graph that reads it is replayed, never inside a capture).
    void set(uint64_t step, uint64_t first_row);
    const uint64_t* data() const { return word_; }  // in the device's memory
    Device device() const { return device_; }
    uint64_t first_row() const { return first_row_; }  // as last set, for the host's checks

private:
    Device device_;
    uint64_t* word_ = nullptr;
    uint64_t first_row_ = 0;
};

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
    // step << 32 | first_row << 11, the offset of a keyed row's first draw; throws past the limits.
    static uint64_t row_key_word(uint64_t step, uint64_t first_row);
    void unkey_rows() {
        keyed_ = false;
        memory_key_.reset();
    }
    bool rows_keyed() const { return keyed_; }

    // What one op drawing `numel` values in `rows` leading rows uses: element i takes element
    // i % row_len of the stream at offset + (i / row_len) * row_stride (cuda/philox.h). Unkeyed: one
    // stream (row_len 0) at the next offset.
    struct Stream {
        uint64_t offset = 0;
        int64_t row_len = 0;
        uint64_t row_stride = 0;
        const uint64_t* offset_base = nullptr;  // a RowKey's word, added to offset when the kernel runs
    };
    Stream next_draw(int64_t numel, int64_t rows);

    // Keyed to a row key in memory (see the top of this file) until the next key_rows or unkey_rows,
    // its draws counted from first_draw (draws made before under the same key by value, say on the
    // host). The generator holds the key; draws must be made on the key's device.
    void key_rows(std::shared_ptr<const RowKey> key, uint64_t first_draw = 0);
    const RowKey* row_key() const { return memory_key_.get(); }

private:
    uint64_t seed_ = 0;
    uint64_t offset_ = 0;
    bool keyed_ = false;
    uint64_t key_word_ = 0, first_row_ = 0, draws_ = 0;  // key_word_: row_key_word(step, first_row)
    std::shared_ptr<const RowKey> memory_key_;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace stf
