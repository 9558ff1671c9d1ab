// Consecutive Philox blocks, scalar and eight at a time with AVX2 (why: philox_blocks.h).
#include "tensor/cpu/philox_blocks.h"

#include "cuda/philox.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STF_PHILOX_AVX2 1
#else
#define STF_PHILOX_AVX2 0
#endif

namespace stf::cpu {

void philox_blocks_scalar(uint64_t first, int64_t count, uint64_t offset, uint64_t seed, uint32_t* words) {
    for (int64_t j = 0; j < count; ++j) {
        const philox::Words w = philox::philox4x32_10(first + static_cast<uint64_t>(j), offset, seed);
        for (int k = 0; k < 4; ++k) words[4 * j + k] = w.w[k];
    }
}

#if STF_PHILOX_AVX2
namespace {

// Lane i of each register holds one 32-bit word of block (first + i): c0..c3 the counter words, k0 and
// k1 the key. The rounds are philox4x32_10's, written on eight lanes.
struct Lanes {
    __m256i c0, c1, c2, c3, k0, k1;
};

// mulhilo on eight lanes: _mm256_mul_epu32 multiplies the even lanes into 64-bit products; the odd
// lanes are shifted down and multiplied in a second call. hi and lo are then put back in lane order.
__attribute__((target("avx2"))) inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
    const __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

__attribute__((target("avx2"))) inline void rounds(Lanes& s) {
    const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
    const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
    const __m256i w0 = _mm256_set1_epi32(static_cast<int>(0x9E3779B9u));
    const __m256i w1 = _mm256_set1_epi32(static_cast<int>(0xBB67AE85u));
    for (int round = 0; round < 10; ++round) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo8(s.c0, m0, hi0, lo0);
        mulhilo8(s.c2, m1, hi1, lo1);
        const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, s.c1), s.k0);
        const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, s.c3), s.k1);
        s.c0 = n0, s.c1 = lo1, s.c2 = n2, s.c3 = lo0;
        s.k0 = _mm256_add_epi32(s.k0, w0);
        s.k1 = _mm256_add_epi32(s.k1, w1);
    }
}

__attribute__((target("avx2"))) __m256i broadcast(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }

// Blocks first .. first + 7: the low counter word is first's plus the lane; a lane whose low word
// wrapped past 2^32 carries one into its high word (unsigned compare: flip the sign bits).
__attribute__((target("avx2"))) Lanes start(uint64_t first, uint64_t offset, uint64_t seed) {
    const __m256i low = broadcast(static_cast<uint32_t>(first));
    const __m256i c0 = _mm256_add_epi32(low, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i sign = broadcast(0x80000000u);
    const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(low, sign), _mm256_xor_si256(c0, sign));
    return {c0,
            _mm256_sub_epi32(broadcast(static_cast<uint32_t>(first >> 32)), wrapped),  // wrapped lanes are -1
            broadcast(static_cast<uint32_t>(offset)),
            broadcast(static_cast<uint32_t>(offset >> 32)),
            broadcast(static_cast<uint32_t>(seed)),
            broadcast(static_cast<uint32_t>(seed >> 32))};
}

// Lane i of c0..c3 is block i's words 0..3: transposed to words[4 i + k], block after block.
__attribute__((target("avx2"))) void store(const Lanes& s, uint32_t* out) {
    const __m256i c01_low = _mm256_unpacklo_epi32(s.c0, s.c1), c01_high = _mm256_unpackhi_epi32(s.c0, s.c1);
    const __m256i c23_low = _mm256_unpacklo_epi32(s.c2, s.c3), c23_high = _mm256_unpackhi_epi32(s.c2, s.c3);
    const __m256i b04 = _mm256_unpacklo_epi64(c01_low, c23_low), b15 = _mm256_unpackhi_epi64(c01_low, c23_low);
    const __m256i b26 = _mm256_unpacklo_epi64(c01_high, c23_high), b37 = _mm256_unpackhi_epi64(c01_high, c23_high);
    auto* o = reinterpret_cast<__m256i*>(out);
    _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(b04, b15, 0x20));  // blocks 0, 1
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(b26, b37, 0x20));  // blocks 2, 3
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(b04, b15, 0x31));  // blocks 4, 5
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(b26, b37, 0x31));  // blocks 6, 7
}

__attribute__((target("avx2"))) int64_t philox_blocks_avx2(uint64_t first, int64_t count, uint64_t offset,
                                                           uint64_t seed, uint32_t* words) {
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) {
        Lanes s = start(first + static_cast<uint64_t>(j), offset, seed);
        rounds(s);
        store(s, words + 4 * j);
    }
    return j;
}

}  // namespace

bool philox_blocks_vectorised() {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    return avx2;
}

void philox_blocks(uint64_t first, int64_t count, uint64_t offset, uint64_t seed, uint32_t* words) {
    const int64_t done = philox_blocks_vectorised() ? philox_blocks_avx2(first, count, offset, seed, words) : 0;
    philox_blocks_scalar(first + static_cast<uint64_t>(done), count - done, offset, seed, words + 4 * done);
}

#else

bool philox_blocks_vectorised() { return false; }

void philox_blocks(uint64_t first, int64_t count, uint64_t offset, uint64_t seed, uint32_t* words) {
    philox_blocks_scalar(first, count, offset, seed, words);
}

#endif

}  // namespace stf::cpu
