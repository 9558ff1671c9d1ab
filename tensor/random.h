// Generator: Philox4x32-10 state (seed, offset). Every random op takes the current offset as its
// stream and advances it by one, so the same seed gives the same numbers on CPU and CUDA.
#pragma once
#include <cstdint>

namespace stf {

class Generator {
public:
    explicit Generator(uint64_t seed = 0) : seed_(seed) {}
    uint64_t seed() const { return seed_; }
    uint64_t offset() const { return offset_; }
    void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
    uint64_t next_stream() { return offset_++; }  // the offset one op uses

private:
    uint64_t seed_ = 0;
    uint64_t offset_ = 0;
};

// The process-wide generator used when an op is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace stf
