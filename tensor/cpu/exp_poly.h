// exp(x) in float as a polynomial the compiler can vectorise, for the SiLU that the CPU GroupNorm
// kernels fuse (tensor/cpu/group_norm.cpp).
//
// Why: a loop that calls expf makes one libm call per element (glibc's vector expf needs -ffast-math),
// and the fused GroupNorm + SiLU spent 3-4% of the CPU row's training step inside expf (perf,
// 2026-12-04). Written with arithmetic and bit moves only, the same loop runs four or eight elements
// per instruction.
//
// How (Cody and Waite's range reduction, the polynomial of Cephes' expf): x = n ln2 + r with n the
// nearest integer to x / ln2 and |r| <= ln2 / 2, so exp(x) = 2^n exp(r). n comes from adding 1.5 * 2^23,
// which leaves it in the low bits of the float without a float-to-int conversion; ln2 is split in two
// so n ln2 is subtracted without rounding; exp(r) is a degree-6 polynomial; 2^n is built in the
// exponent bits. Error: within 2 ulp of exp over [-87, 88] (tests/kernels/test_group_norm.cpp measures
// it against std::exp in double over the whole range). x is clamped to [-87.3, 88] first, so the result
// stays a normal finite float (exp(88) = 1.65e38): for the SiLU, whose arguments reach such sizes only
// in a diverging run, silu(x) = x / (1 + exp(-x)) is then within a float of its true value, and a NaN
// passes through (every comparison with it is false, so the clamps keep it).
#pragma once
#include <bit>
#include <cstdint>

namespace stf::cpu {

inline float exp_poly(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const float shifted = x * 1.44269504088896341f + kRound;
    const int32_t n = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
    const float nf = shifted - kRound;
    float r = x - nf * 0.693359375f;  // ln2's high part: 9 bits, so nf * it is exact
    r = r - nf * -2.12194440e-4f;     // and its low part
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const float two_n = std::bit_cast<float>((n + 127) << 23);
    return p * two_n;
}

}  // namespace stf::cpu
