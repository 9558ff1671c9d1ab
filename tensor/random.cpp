#include "tensor/random.h"

#include "cuda/runtime.h"
#include "tensor/tensor.h"

namespace stf {

uint64_t Generator::row_key_word(uint64_t step, uint64_t first_row) {
    STF_CHECK(step < (uint64_t(1) << 32), "per-sample random streams: step " << step << " is past 2^32");
    STF_CHECK(first_row < kRowKeyedSamples,
              "per-sample random streams: sample index " << first_row << " is past " << kRowKeyedSamples);
    return (step << 32) | (first_row << 11);
}

void Generator::key_rows(uint64_t step, uint64_t first_row) {
    key_word_ = row_key_word(step, first_row);
    keyed_ = true;
    memory_key_.reset();
    first_row_ = first_row;
    draws_ = 0;
}

RowKey::RowKey(Device device) : device_(device) {
    word_ = device.is_cuda() ? static_cast<uint64_t*>(cuda::malloc(sizeof(uint64_t))) : new uint64_t(0);
    set(0, 0);
}

RowKey::~RowKey() {
    if (device_.is_cuda())
        cuda::free(word_);
    else
        delete word_;
}

void RowKey::set(uint64_t step, uint64_t first_row) {
    const uint64_t word = Generator::row_key_word(step, first_row);
    first_row_ = first_row;
    if (device_.is_cuda())
        cuda::copy_host_to_device(word_, &word, sizeof word);
    else
        *word_ = word;
}

void Generator::key_rows(std::shared_ptr<const RowKey> key, uint64_t first_draw) {
    STF_CHECK(key != nullptr, "Generator::key_rows: no row key");
    STF_CHECK(first_draw < kRowKeyedDraws, "Generator::key_rows: first draw " << first_draw << " is past "
                                                                              << kRowKeyedDraws);
    keyed_ = true;
    memory_key_ = std::move(key);
    draws_ = first_draw;
}

Generator::Stream Generator::next_draw(int64_t numel, int64_t rows) {
    if (!keyed_) return {next_stream(), 0, 0};
    STF_CHECK(rows >= 1 && numel % rows == 0,
              "per-sample random streams: a draw of " << numel << " values cannot be split into " << rows << " rows");
    const uint64_t first_row = memory_key_ ? memory_key_->first_row() : first_row_;
    STF_CHECK(first_row + static_cast<uint64_t>(rows) <= kRowKeyedSamples,
              "per-sample random streams: samples " << first_row << ".." << first_row + rows - 1 << " pass "
                                                    << kRowKeyedSamples);
    STF_CHECK(draws_ < kRowKeyedDraws, "per-sample random streams: more than " << kRowKeyedDraws
                                                                               << " draws since the last key_rows");
    // With a key in memory the kernel adds the key's word when it runs: the same offset, bit for bit.
    if (memory_key_) return {draws_++, numel / rows, kRowKeyedDraws, memory_key_->data()};
    return {key_word_ | draws_++, numel / rows, kRowKeyedDraws};
}

Generator& default_generator() {
    static Generator gen(0);
    return gen;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

}  // namespace stf
