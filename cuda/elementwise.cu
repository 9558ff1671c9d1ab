// Elementwise kernels: fill, unary and binary maps, where, strided copies and bf16 conversion.
//
// Every kernel here is memory bound: each element is loaded, touched by a few arithmetic instructions
// and stored. What matters is that consecutive threads touch consecutive addresses (coalescing), and
// that enough threads are in flight to hide memory latency. All kernels use a grid-stride loop, so one
// launch of a bounded grid covers any n, and 64-bit indices, so n may exceed 2^31 (the IndexMap
// kernels below use 32-bit ones, and are chosen only where n and every offset fit).
//
// When every operand is contiguous the launchers take a flat path, and for unary and binary maps a
// float4 path that moves 16 bytes per load and store. Strided operands (broadcasts, slices, transposes)
// go through an IndexMap (cuda/layout.h): dimensions merged where the layouts allow, 32-bit indices and
// divisions by multiply-and-shift, so the index arithmetic stays below the memory time. Only when an
// offset would not fit in 31 bits do they fall back to StridedLayout::offset, a 64-bit division per
// dimension and operand, several times slower (measured on an H100: docs/perf-history.md, version 2).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/check.h"
#include "cuda/elementwise_math.h"
#include "cuda/grid_stride.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- fill -----------------------------------------------------------------------------------------

__global__ void fill_kernel(int64_t n, float* out, float value) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = value;
}

// ---- the op formulas (cuda/elementwise_math.h, shared with the CPU twins) ---------------------------

using elementwise_math::apply_binary;
using elementwise_math::apply_unary;
using elementwise_math::where_takes_a;

// ---- unary ----------------------------------------------------------------------------------------

__global__ void unary_strided_kernel(UnaryOp op, int64_t n, float* out, const float* x, StridedLayout lx, float alpha,
                                     float beta) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = apply_unary(op, x[lx.offset(i)], alpha, beta);
}

__global__ void unary_mapped_kernel(UnaryOp op, uint32_t n, float* out, const float* x, IndexMap<1> map, float alpha,
                                    float beta) {
    for (uint32_t i = global_thread(); i < n; i += grid_threads()) {
        uint32_t off[1];
        map.offsets(i, off);
        out[i] = apply_unary(op, x[off[0]], alpha, beta);
    }
}

__global__ void unary_contiguous_kernel(UnaryOp op, int64_t n, float* out, const float* x, float alpha, float beta) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = apply_unary(op, x[i], alpha, beta);
}

// n4 groups of four floats; both pointers 16-byte aligned (the caller checks).
__global__ void unary_vec4_kernel(UnaryOp op, int64_t n4, float4* out, const float4* x, float alpha, float beta) {
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        float4 v = x[i];
        v.x = apply_unary(op, v.x, alpha, beta);
        v.y = apply_unary(op, v.y, alpha, beta);
        v.z = apply_unary(op, v.z, alpha, beta);
        v.w = apply_unary(op, v.w, alpha, beta);
        out[i] = v;
    }
}

// ---- binary ---------------------------------------------------------------------------------------

__global__ void binary_strided_kernel(BinaryOp op, int64_t n, float* out, const float* a, StridedLayout la,
                                      const float* b, StridedLayout lb, float alpha, float beta) {
    for (int64_t i = global_thread(); i < n; i += grid_threads())
        out[i] = apply_binary(op, a[la.offset(i)], b[lb.offset(i)], alpha, beta);
}

__global__ void binary_mapped_kernel(BinaryOp op, uint32_t n, float* out, const float* a, const float* b,
                                     IndexMap<2> map, float alpha, float beta) {
    for (uint32_t i = global_thread(); i < n; i += grid_threads()) {
        uint32_t off[2];
        map.offsets(i, off);
        out[i] = apply_binary(op, a[off[0]], b[off[1]], alpha, beta);
    }
}

__global__ void binary_contiguous_kernel(BinaryOp op, int64_t n, float* out, const float* a, const float* b,
                                         float alpha, float beta) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = apply_binary(op, a[i], b[i], alpha, beta);
}

__global__ void binary_vec4_kernel(BinaryOp op, int64_t n4, float4* out, const float4* a, const float4* b, float alpha,
                                   float beta) {
    for (int64_t i = global_thread(); i < n4; i += grid_threads()) {
        float4 u = a[i], v = b[i], r;
        r.x = apply_binary(op, u.x, v.x, alpha, beta);
        r.y = apply_binary(op, u.y, v.y, alpha, beta);
        r.z = apply_binary(op, u.z, v.z, alpha, beta);
        r.w = apply_binary(op, u.w, v.w, alpha, beta);
        out[i] = r;
    }
}

// ---- where ----------------------------------------------------------------------------------------

__global__ void where_strided_kernel(int64_t n, float* out, const float* cond, StridedLayout lc, const float* a,
                                     StridedLayout la, const float* b, StridedLayout lb) {
    for (int64_t i = global_thread(); i < n; i += grid_threads())
        out[i] = where_takes_a(cond[lc.offset(i)]) ? a[la.offset(i)] : b[lb.offset(i)];
}

__global__ void where_mapped_kernel(uint32_t n, float* out, const float* cond, const float* a, const float* b,
                                   IndexMap<3> map) {
    for (uint32_t i = global_thread(); i < n; i += grid_threads()) {
        uint32_t off[3];
        map.offsets(i, off);
        out[i] = where_takes_a(cond[off[0]]) ? a[off[1]] : b[off[2]];
    }
}

__global__ void where_contiguous_kernel(int64_t n, float* out, const float* cond, const float* a, const float* b) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = where_takes_a(cond[i]) ? a[i] : b[i];
}

// ---- strided copy ---------------------------------------------------------------------------------
// Copies raw bits: T is an unsigned integer of the element's size, so NaN payloads and bf16 values
// pass through untouched.

template <class T>
__global__ void copy_strided_kernel(int64_t n, T* dst, StridedLayout ldst, const T* src, StridedLayout lsrc) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) dst[ldst.offset(i)] = src[lsrc.offset(i)];
}

template <class T>
__global__ void copy_mapped_kernel(uint32_t n, T* dst, const T* src, IndexMap<2> map) {
    for (uint32_t i = global_thread(); i < n; i += grid_threads()) {
        uint32_t off[2];
        map.offsets(i, off);
        dst[off[0]] = src[off[1]];
    }
}

template <class T>
void launch_copy_strided(int64_t n, void* dst, const StridedLayout& ldst, const void* src, const StridedLayout& lsrc) {
    IndexMap<2> map;
    if (make_index_map<2>({&ldst, &lsrc}, map))
        copy_mapped_kernel<T><<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(
            static_cast<uint32_t>(n), static_cast<T*>(dst), static_cast<const T*>(src), map);
    else
        copy_strided_kernel<T><<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(
            n, static_cast<T*>(dst), ldst, static_cast<const T*>(src), lsrc);
    STF_CUDA_CHECK_LAUNCH();
}

// ---- bf16 (the conversions themselves: cuda/bf16.h) -----------------------------------------------

__global__ void f32_to_bf16_kernel(int64_t n, uint16_t* out, const float* x) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = bf16_bits_from_float(x[i]);
}

__global__ void bf16_to_f32_kernel(int64_t n, float* out, const uint16_t* x) {
    for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = float_from_bf16_bits(x[i]);
}

}  // namespace

// ---- launchers ------------------------------------------------------------------------------------

void fill(int64_t n, float* out, float value) {
    if (n <= 0) return;
    fill_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, value);
    STF_CUDA_CHECK_LAUNCH();
}

void unary(UnaryOp op, int64_t n, float* out, const float* x, const StridedLayout& lx, float alpha, float beta) {
    if (n <= 0) return;
    cudaStream_t s = current_stream();
    if (!lx.is_contiguous()) {
        IndexMap<1> map;
        if (make_index_map<1>({&lx}, map))
            unary_mapped_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(op, static_cast<uint32_t>(n), out, x, map,
                                                                           alpha, beta);
        else
            unary_strided_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(op, n, out, x, lx, alpha, beta);
        STF_CUDA_CHECK_LAUNCH();
        return;
    }
    int64_t done = 0;  // elements handled by the float4 kernel
    if (is_aligned16(out) && is_aligned16(x) && n >= 4) {
        int64_t n4 = n / 4;
        unary_vec4_kernel<<<blocks_for(n4), kGridStrideThreads, 0, s>>>(op, n4, reinterpret_cast<float4*>(out),
                                                              reinterpret_cast<const float4*>(x), alpha, beta);
        STF_CUDA_CHECK_LAUNCH();
        done = 4 * n4;
    }
    if (done < n) {  // the whole array when unaligned, else the last n % 4 elements
        unary_contiguous_kernel<<<blocks_for(n - done), kGridStrideThreads, 0, s>>>(op, n - done, out + done, x + done, alpha,
                                                                           beta);
        STF_CUDA_CHECK_LAUNCH();
    }
}

void binary(BinaryOp op, int64_t n, float* out, const float* a, const StridedLayout& la, const float* b,
            const StridedLayout& lb, float alpha, float beta) {
    if (n <= 0) return;
    cudaStream_t s = current_stream();
    if (!la.is_contiguous() || !lb.is_contiguous()) {
        IndexMap<2> map;
        if (make_index_map<2>({&la, &lb}, map))
            binary_mapped_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(op, static_cast<uint32_t>(n), out, a, b, map,
                                                                            alpha, beta);
        else
            binary_strided_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(op, n, out, a, la, b, lb, alpha, beta);
        STF_CUDA_CHECK_LAUNCH();
        return;
    }
    int64_t done = 0;
    if (is_aligned16(out) && is_aligned16(a) && is_aligned16(b) && n >= 4) {
        int64_t n4 = n / 4;
        binary_vec4_kernel<<<blocks_for(n4), kGridStrideThreads, 0, s>>>(op, n4, reinterpret_cast<float4*>(out),
                                                               reinterpret_cast<const float4*>(a),
                                                               reinterpret_cast<const float4*>(b), alpha, beta);
        STF_CUDA_CHECK_LAUNCH();
        done = 4 * n4;
    }
    if (done < n) {
        binary_contiguous_kernel<<<blocks_for(n - done), kGridStrideThreads, 0, s>>>(op, n - done, out + done, a + done,
                                                                            b + done, alpha, beta);
        STF_CUDA_CHECK_LAUNCH();
    }
}

void where(int64_t n, float* out, const float* cond, const StridedLayout& lc, const float* a, const StridedLayout& la,
           const float* b, const StridedLayout& lb) {
    if (n <= 0) return;
    cudaStream_t s = current_stream();
    IndexMap<3> map;
    if (lc.is_contiguous() && la.is_contiguous() && lb.is_contiguous())
        where_contiguous_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(n, out, cond, a, b);
    else if (make_index_map<3>({&lc, &la, &lb}, map))
        where_mapped_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(static_cast<uint32_t>(n), out, cond, a, b, map);
    else
        where_strided_kernel<<<blocks_for(n), kGridStrideThreads, 0, s>>>(n, out, cond, lc, a, la, b, lb);
    STF_CUDA_CHECK_LAUNCH();
}

void copy_strided(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                  const StridedLayout& lsrc) {
    if (elem_size != 2 && elem_size != 4 && elem_size != 8)
        throw std::invalid_argument("stf::cuda::copy_strided: element size must be 2, 4 or 8, got " +
                                    std::to_string(elem_size));
    if (n <= 0) return;
    if (ldst.is_contiguous() && lsrc.is_contiguous()) {
        // Both flat: the copy engine does it as one block transfer.
        STF_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * elem_size, cudaMemcpyDeviceToDevice,
                                       current_stream()));
        return;
    }
    switch (elem_size) {
        case 2: launch_copy_strided<uint16_t>(n, dst, ldst, src, lsrc); break;
        case 4: launch_copy_strided<uint32_t>(n, dst, ldst, src, lsrc); break;
        default: launch_copy_strided<uint64_t>(n, dst, ldst, src, lsrc); break;  // 8, checked above
    }
}

// ---- version 1 of the strided path (kept as a lesson; bench_kernels --version 1) --------------------
// Every non-contiguous operand through the 64-bit StridedLayout kernels above: per element and operand,
// a 64-bit division and remainder per dimension. Version 2 (binary, copy_strided) first builds an
// IndexMap: size-1 dimensions dropped, neighbours merged where every operand allows (a per-channel
// broadcast over NCHW becomes 3 dimensions), 32-bit indices and divisions by multiply-and-shift. On the
// H100 (80GB HBM3, 2026-11-27) the channel-broadcast multiply in bench_kernels went from 790 to 2,260
// GB/s, and a DDPM++ step's strided binary and copy kernels from 14.9 + 14.5 ms to 5.6 + 4.4 ms
// (docs/kernels.md). Contiguous operands take the same flat and float4 paths in both versions.

void binary_v1(BinaryOp op, int64_t n, float* out, const float* a, const StridedLayout& la, const float* b,
               const StridedLayout& lb, float alpha, float beta) {
    if (n <= 0) return;
    if (la.is_contiguous() && lb.is_contiguous()) return binary(op, n, out, a, la, b, lb, alpha, beta);
    binary_strided_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(op, n, out, a, la, b, lb, alpha,
                                                                                      beta);
    STF_CUDA_CHECK_LAUNCH();
}

void copy_strided_v1(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                     const StridedLayout& lsrc) {
    if (n <= 0 || (elem_size != 2 && elem_size != 4 && elem_size != 8) || (ldst.is_contiguous() && lsrc.is_contiguous()))
        return copy_strided(n, elem_size, dst, ldst, src, lsrc);  // its checks, and the flat copy
    auto launch = [&](auto element) {
        using T = decltype(element);
        copy_strided_kernel<T><<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(
            n, static_cast<T*>(dst), ldst, static_cast<const T*>(src), lsrc);
    };
    if (elem_size == 2) launch(uint16_t{});
    else if (elem_size == 4) launch(uint32_t{});
    else launch(uint64_t{});
    STF_CUDA_CHECK_LAUNCH();
}

void f32_to_bf16(int64_t n, uint16_t* out, const float* x) {
    if (n <= 0) return;
    f32_to_bf16_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, x);
    STF_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(int64_t n, float* out, const uint16_t* x) {
    if (n <= 0) return;
    bf16_to_f32_kernel<<<blocks_for(n), kGridStrideThreads, 0, current_stream()>>>(n, out, x);
    STF_CUDA_CHECK_LAUNCH();
}

}  // namespace stf::cuda
