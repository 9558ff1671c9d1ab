// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), counter based.
// Header only and usable from host and device code, so the CPU and CUDA backends draw identical bits.
//
// Stream convention (shared by every random op on both devices): an op run with generator state
// (seed, offset) gives element i the word i % 4 of philox(counter = {i / 4, offset}, key = seed).
// Each op then advances the generator's offset by one, so ops never share a counter.
//
// Row streams (per-sample randomness for data-parallel training): a draw may be split into rows of
// row_len elements; element i then takes element i % row_len of the stream at offset
// offset + (i / row_len) * row_stride. A row's numbers so depend only on its own offset, not on which
// rows were drawn beside it. row_len 0 means one row (the plain convention above).
#pragma once
#include <cstdint>
#include <math.h>
#include "cuda/layout.h"

namespace stf::philox {

struct Words { uint32_t w[4]; };

STF_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    uint64_t p = static_cast<uint64_t>(a) * b;
    hi = static_cast<uint32_t>(p >> 32);
    lo = static_cast<uint32_t>(p);
}

STF_HD Words philox4x32_10(uint64_t block, uint64_t offset, uint64_t seed) {
    uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
    uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, hi0, lo0);
        mulhilo(0xCD9E8D57u, c2, hi1, lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return {{c0, c1, c2, c3}};
}

// 24 random bits scaled into [0, 1): exactly representable in float, so both devices agree bit for bit.
STF_HD float to_unit(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }
// Same bits shifted into (0, 1], safe under log() for Box-Muller.
STF_HD float to_unit_open0(uint32_t w) { return static_cast<float>((w >> 8) + 1u) * (1.0f / 16777216.0f); }

// The stream offset a draw uses: its own, plus a row key's word in memory when it has one, read when the
// kernel runs (tensor/random.h: what lets a replayed CUDA graph draw each step's numbers).
STF_HD uint64_t stream_offset(uint64_t offset, const uint64_t* offset_base) {
    return offset_base ? offset + *offset_base : offset;
}

// The stream element and stream offset of element i of a row-split draw.
struct RowElement { uint64_t index, offset; };
STF_HD RowElement row_element(uint64_t i, uint64_t offset, uint64_t row_len, uint64_t row_stride) {
    if (row_len == 0) return {i, offset};
    return {i % row_len, offset + (i / row_len) * row_stride};
}

// Element k (0..3) of a block: elements 4b..4b+3 of a stream share block b, so a loop that walks
// elements in order can compute each block once (the CPU kernels do).
STF_HD float uniform_of(const Words& r, unsigned k) { return to_unit(r.w[k]); }

// Box-Muller: pairs (4b, 4b+1) and (4b+2, 4b+3) take the cos and sin of one (u1, u2) draw.
STF_HD float normal_of(const Words& r, unsigned k) {
    unsigned pair = k / 2;
    float u1 = to_unit_open0(r.w[2 * pair]);
    float u2 = to_unit(r.w[2 * pair + 1]);
    float radius = sqrtf(-2.0f * logf(u1));
    float angle = 6.28318530717958647692f * u2;
    return (k % 2 == 0) ? radius * cosf(angle) : radius * sinf(angle);
}

STF_HD float uniform(uint64_t i, uint64_t offset, uint64_t seed) {
    return uniform_of(philox4x32_10(i / 4, offset, seed), static_cast<unsigned>(i % 4));
}

STF_HD float normal(uint64_t i, uint64_t offset, uint64_t seed) {
    return normal_of(philox4x32_10(i / 4, offset, seed), static_cast<unsigned>(i % 4));
}

} // namespace stf::philox
