// Every CUDA kernel launcher in stf, on raw device pointers and sizes, float32 unless noted.
// Each has a CPU twin of the same name and meaning in tensor/cpu/kernels.h; the GPU suite checks
// one against the other. All launches go to stf::cuda::stream() and are checked with file and line.
#pragma once
#include <cstddef>
#include <cstdint>
#include "cuda/bf16.h"
#include "cuda/group_norm_math.h"
#include "cuda/layout.h"
#include "cuda/optim_math.h"

namespace stf::cuda {

// --- elementwise.cu -------------------------------------------------------------------------------
void fill(int64_t n, float* out, float value);
// out (contiguous, n elements in x's layout order) = op(x)
void unary(UnaryOp op, int64_t n, float* out, const float* x, const StridedLayout& lx, float alpha, float beta);
// out (contiguous) = op(a, b); la and lb share out's sizes (broadcast dims have stride 0)
void binary(BinaryOp op, int64_t n, float* out, const float* a, const StridedLayout& la, const float* b,
            const StridedLayout& lb, float alpha, float beta);
// out = cond != 0 ? a : b
void where(int64_t n, float* out, const float* cond, const StridedLayout& lc, const float* a, const StridedLayout& la,
           const float* b, const StridedLayout& lb);
// dst[ldst.offset(i)] = src[lsrc.offset(i)] for elements of elem_size bytes (2, 4 or 8)
void copy_strided(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                  const StridedLayout& lsrc);
// The first versions of the strided path, kept as lessons (docs/kernels.md; bench_kernels --version 1):
// every strided operand through StridedLayout::offset, a 64-bit division per dimension and element.
void binary_v1(BinaryOp op, int64_t n, float* out, const float* a, const StridedLayout& la, const float* b,
               const StridedLayout& lb, float alpha, float beta);
void copy_strided_v1(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                     const StridedLayout& lsrc);
void f32_to_bf16(int64_t n, uint16_t* out, const float* x);  // round to nearest even
void bf16_to_f32(int64_t n, float* out, const uint16_t* x);

// --- reduce.cu ------------------------------------------------------------------------------------
// x viewed as contiguous [outer, r, inner] -> out [outer, inner]
void reduce(ReduceOp op, int64_t outer, int64_t r, int64_t inner, float* out, const float* x);

// --- softmax.cu -----------------------------------------------------------------------------------
// Row-wise over contiguous [rows, cols]; log selects log_softmax.
void softmax_rows(int64_t rows, int64_t cols, float* y, const float* x, bool log);
// dx from dy and the forward output y
void softmax_rows_backward(int64_t rows, int64_t cols, float* dx, const float* dy, const float* y, bool log);

// --- group_norm.cu --------------------------------------------------------------------------------
// x [n, c, hw] contiguous, groups g dividing c; mean and rstd are [n, g]; gamma/beta [c] (may be null);
// the fused offset and SiLU as in cuda/group_norm_math.h.
// x (and dx) are TX, y (and dy) TY: float, or bf16 where activations are stored in bfloat16 (cuda/bf16.h;
// the arithmetic stays float). Instantiated for (float, float), (bf16, bf16) and (float, bf16).
template <class TX, class TY>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const TX* x, const float* gamma,
                        const float* beta, GroupNormFusion<float> fusion, TY* y, float* mean, float* rstd);
// beta is needed (with gamma) only to recompute the SiLU's input; dgamma and dbeta may be null
template <class TX, class TY>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x, const float* gamma,
                         const float* beta, GroupNormFusion<float> fusion, const float* mean, const float* rstd,
                         const TY* dy, TX* dx, float* dgamma, float* dbeta);
// The first versions (float, no fusion), kept as lessons (docs/kernels.md; bench_kernels --version 1):
// every pass over a group reads it from memory again, and dgamma/dbeta take a second kernel over x and dy.
void group_norm_forward_v1(int64_t n, int64_t c, int64_t hw, int64_t g, float eps, const float* x,
                           const float* gamma, const float* beta, float* y, float* mean, float* rstd);
void group_norm_backward_v1(int64_t n, int64_t c, int64_t hw, int64_t g, const float* x, const float* gamma,
                            const float* mean, const float* rstd, const float* dy, float* dx, float* dgamma,
                            float* dbeta);

// --- residual.cu ----------------------------------------------------------------------------------
// y = ((a + b) + bias[ch]) * scale over contiguous [n, c, inner]; bias [c] may be null. a and b are
// float or bf16 (activations stored in bfloat16), y is float: instantiated for (float, float),
// (bf16, float) and (bf16, bf16).
template <class TA, class TB>
void scaled_residual(int64_t n, int64_t c, int64_t inner, const TA* a, const TB* b, const float* bias, float scale,
                     float* y);

// --- random.cu (Philox stream convention in cuda/philox.h) ----------------------------------------
// row_len/row_stride split the draw into rows with their own streams (cuda/philox.h); 0 means one stream.
// offset_base, when given, is a word in device memory that each thread adds to offset when the kernel
// runs (a row key, tensor/random.h): what a replayed CUDA graph needs to draw each step's numbers.
void uniform(int64_t n, float* out, float lo, float hi, uint64_t seed, uint64_t offset, int64_t row_len = 0,
             uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);
void normal(int64_t n, float* out, float mean, float std, uint64_t seed, uint64_t offset, int64_t row_len = 0,
            uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);
// 1 with probability p, else 0
void bernoulli(int64_t n, float* out, float p, uint64_t seed, uint64_t offset, int64_t row_len = 0,
               uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);

// --- optim.cu (arithmetic in cuda/optim_math.h) ---------------------------------------------------
// One Adam step over a tensor's n elements: p, m and v updated in place from the gradient g.
void adam_update(int64_t n, float* p, const float* g, float* m, float* v, const optim::AdamConstants<float>& k);
// ema = net + beta * (ema - net)
void ema_update(int64_t n, float* ema, const float* net, float beta);
// The same over `count` tensors in a few launches (cuda/tensor_lists.h), tensor t of n elements; and the
// gradient guard (UnaryOp::NanToNum, elementwise_math::nan_to_num) in place over many tensors.
struct AdamOperands {
    float* p;
    const float* g;
    float* m;
    float* v;
    int64_t n;
};
void adam_update_many(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>& k);
struct EmaOperands {
    float* ema;
    const float* net;
    int64_t n;
};
void ema_update_many(const EmaOperands* tensors, int64_t count, float beta);
// The same with the step's constants read from device memory when the kernel runs, not passed by
// value: a captured CUDA graph replays its launches with the arguments it recorded, so only values in
// memory can change from one replay to the next (nn/optim.h, Adam::stage and Ema::stage).
void adam_update_many(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>* k_device);
void ema_update_many(const EmaOperands* tensors, int64_t count, const float* beta_device);
struct GuardOperands {
    float* x;
    int64_t n;
};
void nan_to_num_many(const GuardOperands* tensors, int64_t count, float inf_value);
// The first versions, kept as lessons (docs/kernels.md; bench_kernels --version 1): one launch per tensor.
void adam_update_many_v1(const AdamOperands* tensors, int64_t count, const optim::AdamConstants<float>& k);
void ema_update_many_v1(const EmaOperands* tensors, int64_t count, float beta);
void nan_to_num_many_v1(const GuardOperands* tensors, int64_t count, float inf_value);

// --- stf.cu --------------------------------------------------------------------------------------
// out[i, j] = sum_k (y[i, k] - x[j, k])^2 for y [b, d] and x [n, d], computed from the differences
// (not from norms and a dot product) so that tiny distances at small sigma suffer no cancellation.
void sq_distances(int64_t b, int64_t n, int64_t d, const float* y, const float* x, float* out);
// One chunk of the STF target's streamed softmax (diffusion/stf_target.cpp), in place, for each row i
// of b: the chunk's logits l = dist[i, :] * coef[i] (dist [b, len]), m' = max(row_max[i], max l),
// r = exp(row_max[i] - m'); dist[i, :] becomes the weights exp(l - m'); weight_sum[i] = weight_sum[i] *
// r + their sum, weight_sq_sum[i] = weight_sq_sum[i] * r^2 + the sum of their squares; acc[i, :] *= r
// (acc [b, d]); row_max[i] = m'. A GEMM then adds weights @ x_chunk to acc.
void stf_softmax_chunk(int64_t b, int64_t len, int64_t d, const float* coef, float* dist, float* row_max,
                       float* weight_sum, float* weight_sq_sum, float* acc);
// Their first versions, kept beside the tuned ones as lessons (docs/kernels.md; bench_kernels --version 1):
// one block per output tile over all features, and the chunk's bookkeeping in seven small kernels.
void sq_distances_v1(int64_t b, int64_t n, int64_t d, const float* y, const float* x, float* out);
void stf_softmax_chunk_v1(int64_t b, int64_t len, int64_t d, const float* coef, float* dist, float* row_max,
                          float* weight_sum, float* weight_sq_sum, float* acc);

// --- topk.cu -------------------------------------------------------------------------------------
// For each row of x [rows, cols] (cols < 2^31), its k smallest entries (1 <= k <= min(cols, topk::kMaxK))
// in ascending order: values [rows, k] and their columns indices [rows, k]. The order is IEEE 754's total
// order with every NaN last, equal values by column (cuda/topk_math.h), so the picked set is definite.
void topk_rows(int64_t rows, int64_t cols, int64_t k, const float* x, float* values, int64_t* indices);

// --- blas.cu (cuBLAS) -----------------------------------------------------------------------------
// Row-major C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, `batch` times with element strides.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int64_t batch = 1, int64_t stride_a = 0,
          int64_t stride_b = 0, int64_t stride_c = 0);

// --- conv.cu (cuDNN; algorithm chosen once per shape, one shared workspace) -----------------------
void conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y);
void conv2d_backward_data(const ConvShape& s, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw);
// bf16 operands with float32 accumulation (tensor cores; the TF32 setting does not apply). They return
// false, having computed nothing, when cuDNN has no bf16 algorithm for the shape (said once on stderr):
// the caller then computes it in float32.
bool conv2d_forward(const ConvShape& s, const bf16* x, const bf16* w, bf16* y);
bool conv2d_backward_data(const ConvShape& s, const bf16* dy, const bf16* w, bf16* dx);
bool conv2d_backward_weight(const ConvShape& s, const bf16* x, const bf16* dy, bf16* dw);

// --- augment.cu (EDM's augmentation pipeline; the per-pixel formulas are in cuda/augment_math.h) --
// x and y are [n, c, h, w] and must not overlap.
// Pixel blitting, exact: params [n, 5] int32 per image {flip_x, flip_y, transpose, tx, ty} (transpose
// needs h == w).
void augment_blit(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const float* x, float* y);
// Geometric transformation: matrices [n, 3, 3] (row-major) map each output pixel's coordinates to the
// input coordinates it samples, both measured from the image centre (EDM's G_inv); pad_* is the
// batch's reflect padding from augment::padding(). Reflect-pad, upsample 2x (sym6), sample
// bilinearly, downsample 2x (sym6).
void augment_geometric(int64_t n, int64_t c, int64_t h, int64_t w, const float* matrices, int64_t pad_x0,
                       int64_t pad_y0, int64_t pad_x1, int64_t pad_y1, const float* x, float* y);

// --- pool.cu, resize.cu (inference only: Inception-v3 for FID; index arithmetic in cuda/pool_math.h) -
// x [planes, h, w] contiguous -> y [planes, out_h, out_w], out = (in + 2 padding - kernel) / stride + 1.
// Max pooling never sees the padding (-inf); average pooling divides by the window's pixels inside the
// image unless count_include_pad (then by kernel^2).
void max_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, const float* x, float* y);
void avg_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, bool count_include_pad,
                const float* x, float* y);
// Bilinear resize of x [planes, h, w] to y [planes, out_h, out_w]: half-pixel centres (F.interpolate,
// align_corners=False) or TensorFlow 1's resize_bilinear alignment (half_pixel false).
void resize_bilinear(int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w, bool half_pixel,
                     const float* x, float* y);

} // namespace stf::cuda
