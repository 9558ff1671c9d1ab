// bfloat16 as a storage type, one definition for the CPU twins and the CUDA kernels.
//
// bfloat16 is the top half of a float32: the same sign and 8-bit exponent, 7 stored mantissa bits.
// stf stores activations in it for mixed precision (docs/perf.md, "The bf16 mode") and always computes in
// float32: a kernel converts each value to float as it loads it and rounds once as it stores it.
// Rounding is to nearest, ties to even, as cuDNN, cuBLAS and PyTorch do.
#pragma once
#include <stdint.h>
#include <string.h>

#include "cuda/layout.h"  // STF_HD

namespace stf {

STF_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

STF_HD float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// Round to nearest even: add just under half of the dropped range, plus one when the kept part is
// odd. A carry out of the mantissa bumps the exponent, which is the correct rounding (the largest
// floats round to infinity, as they should). A NaN keeps its sign and top payload bits and gets the
// quiet bit, since rounding could carry a payload held in the low half into infinity.
STF_HD uint16_t bf16_bits_from_float(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
    const uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return static_cast<uint16_t>(u >> 16);
}

STF_HD float float_from_bf16_bits(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

// The element type of DType::BF16 tensors in kernels. It converts to float implicitly (every use is
// arithmetic in float) and from float only explicitly, since that conversion rounds.
struct bf16 {
    uint16_t bits;
    bf16() = default;
    STF_HD explicit bf16(float f) : bits(bf16_bits_from_float(f)) {}
    STF_HD operator float() const { return float_from_bf16_bits(bits); }
};
static_assert(sizeof(bf16) == 2, "bf16 must be two bytes: tensors of it are arrays of uint16_t");

// A value of type T from a float: the identity for float, rounding for bf16.
template <class T> STF_HD T from_float(float v) { return static_cast<T>(v); }

}  // namespace stf

#if defined(__CUDACC__)
namespace stf {

// Four consecutive elements as one vector access: a float4 (16 bytes) or four bf16 (8 bytes). The
// element index i must be a multiple of 4 and the pointer aligned to the vector's size.
__device__ __forceinline__ float4 load4(const float* p, int64_t i) { return *reinterpret_cast<const float4*>(p + i); }
__device__ __forceinline__ float4 load4(const bf16* p, int64_t i) {
    const uint2 w = *reinterpret_cast<const uint2*>(p + i);
    return make_float4(float_from_bits(w.x << 16), float_from_bits(w.x & 0xffff0000u), float_from_bits(w.y << 16),
                       float_from_bits(w.y & 0xffff0000u));
}
__device__ __forceinline__ void store4(float* p, int64_t i, float4 v) { *reinterpret_cast<float4*>(p + i) = v; }
__device__ __forceinline__ void store4(bf16* p, int64_t i, float4 v) {
    const uint32_t lo = bf16_bits_from_float(v.x) | (static_cast<uint32_t>(bf16_bits_from_float(v.y)) << 16);
    const uint32_t hi = bf16_bits_from_float(v.z) | (static_cast<uint32_t>(bf16_bits_from_float(v.w)) << 16);
    *reinterpret_cast<uint2*>(p + i) = make_uint2(lo, hi);
}
// The alignment load4 and store4 need.
template <class T> constexpr size_t vec4_alignment() { return 4 * sizeof(T); }

}  // namespace stf
#endif
