// Many consecutive Philox4x32-10 blocks at once (cuda/philox.h), for the CPU kernels that draw a whole
// run of a stream: the fused dropout mask of GroupNorm, drawn in the forward pass and again in the
// backward pass instead of being kept.
//
// Why: one block is ten rounds, each waiting on the last (two 32x32->64-bit multiplies and the XORs
// that need them), so a block costs about 50 cycles of latency and the scalar loop about 3 ns per
// 32-bit word on the 2-core AMD EPYC of docs/perf.md. The blocks of a run are independent: AVX2 holds
// eight of them in one register and _mm256_mul_epu32 multiplies four lanes at a time, so eight blocks
// cost about as much as one (1.0 ns per word, 2026-12-04; tests/kernels/test_random.cpp checks them
// against the scalar version word for word). Machines without AVX2 run the scalar version.
#pragma once
#include <cstdint>

namespace stf::cpu {

// words[4 * j + k] = word k of philox4x32_10(first + j, offset, seed), for j < count.
void philox_blocks(uint64_t first, int64_t count, uint64_t offset, uint64_t seed, uint32_t* words);

// The same, one block after another through cuda/philox.h: the reference the AVX2 version is checked
// against, and the path on CPUs without AVX2.
void philox_blocks_scalar(uint64_t first, int64_t count, uint64_t offset, uint64_t seed, uint32_t* words);

// True where philox_blocks runs the AVX2 version.
bool philox_blocks_vectorised();

}  // namespace stf::cpu
