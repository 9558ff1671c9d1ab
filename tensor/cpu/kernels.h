// Every CPU kernel in stf: the reference twins of cuda/kernels.h, same names and meanings, templated
// on float and double (double for gradient checks). Simple loops, OpenMP over the outer dimension,
// double accumulators for sums; BLAS (OpenBLAS) for GEMM.
#pragma once
#include <cstddef>
#include <cstdint>
#include "cuda/bf16.h"
#include "cuda/group_norm_math.h"
#include "cuda/layout.h"
#include "cuda/optim_math.h"

namespace stf::cpu {

// --- elementwise.cpp ------------------------------------------------------------------------------
template <class T> void fill(int64_t n, T* out, T value);
template <class T>
void unary(UnaryOp op, int64_t n, T* out, const T* x, const StridedLayout& lx, double alpha, double beta);
template <class T>
void binary(BinaryOp op, int64_t n, T* out, const T* a, const StridedLayout& la, const T* b, const StridedLayout& lb,
            double alpha, double beta);
template <class T>
void where(int64_t n, T* out, const T* cond, const StridedLayout& lc, const T* a, const StridedLayout& la, const T* b,
           const StridedLayout& lb);
void copy_strided(int64_t n, size_t elem_size, void* dst, const StridedLayout& ldst, const void* src,
                  const StridedLayout& lsrc);
// Conversions between the storage dtypes (contiguous). bf16 rounds to nearest even.
void convert(int64_t n, void* dst, int dst_dtype, const void* src, int src_dtype);  // dtypes as stf::DType

// --- reduce.cpp -----------------------------------------------------------------------------------
template <class T> void reduce(ReduceOp op, int64_t outer, int64_t r, int64_t inner, T* out, const T* x);

// --- softmax.cpp ----------------------------------------------------------------------------------
template <class T> void softmax_rows(int64_t rows, int64_t cols, T* y, const T* x, bool log);
template <class T> void softmax_rows_backward(int64_t rows, int64_t cols, T* dx, const T* dy, const T* y, bool log);

// --- group_norm.cpp (fusion: cuda/group_norm_math.h) -------------------------------------------------
// T is the arithmetic and parameter type (float or double); x and dx are stored as TX, y and dy as TY
// (T, or bf16 with T = float: the values are converted as loaded and rounded as stored, so the result
// is the float one rounded to bfloat16).
template <class T, class TX = T, class TY = T>
void group_norm_forward(int64_t n, int64_t c, int64_t hw, int64_t g, double eps, const TX* x, const T* gamma,
                        const T* beta, GroupNormFusion<T> fusion, TY* y, T* mean, T* rstd);
// beta is needed (with gamma) only to recompute the SiLU's input; dgamma and dbeta may be null.
template <class T, class TX = T, class TY = T>
void group_norm_backward(int64_t n, int64_t c, int64_t hw, int64_t g, const TX* x, const T* gamma, const T* beta,
                         GroupNormFusion<T> fusion, const T* mean, const T* rstd, const TY* dy, TX* dx, T* dgamma,
                         T* dbeta);

// --- residual.cpp ---------------------------------------------------------------------------------
// y = ((a + b) + bias[ch]) * scale over contiguous [n, c, inner]; bias [c] may be null. a and b are
// stored as TA and TB (T, or bf16 with T = float), y as T.
template <class T, class TA = T, class TB = T>
void scaled_residual(int64_t n, int64_t c, int64_t inner, const TA* a, const TB* b, const T* bias, T scale, T* y);

// --- random.cpp -----------------------------------------------------------------------------------
// row_len/row_stride split the draw into rows with their own streams (cuda/philox.h); 0 means one stream.
// offset_base, when given, is a word in memory added to offset when the kernel runs (a row key,
// tensor/random.h), as the CUDA kernels do for graph replays.
template <class T> void uniform(int64_t n, T* out, double lo, double hi, uint64_t seed, uint64_t offset,
                                int64_t row_len = 0, uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);
template <class T> void normal(int64_t n, T* out, double mean, double std, uint64_t seed, uint64_t offset,
                               int64_t row_len = 0, uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);
template <class T> void bernoulli(int64_t n, T* out, double p, uint64_t seed, uint64_t offset, int64_t row_len = 0,
                                  uint64_t row_stride = 0, const uint64_t* offset_base = nullptr);

// --- optim.cpp (arithmetic in cuda/optim_math.h) -------------------------------------------------
template <class T> void adam_update(int64_t n, T* p, const T* g, T* m, T* v, const optim::AdamConstants<T>& k);
template <class T> void ema_update(int64_t n, T* ema, const T* net, T beta);

// --- stf.cpp --------------------------------------------------------------------------------------
template <class T> void sq_distances(int64_t b, int64_t n, int64_t d, const T* y, const T* x, T* out);
template <class T>
void stf_softmax_chunk(int64_t b, int64_t len, int64_t d, const T* coef, T* dist, T* row_max, T* weight_sum,
                       T* weight_sq_sum, T* acc);

// --- topk.cpp -------------------------------------------------------------------------------------
template <class T> void topk_rows(int64_t rows, int64_t cols, int64_t k, const T* x, T* values, int64_t* indices);

// --- blas.cpp -------------------------------------------------------------------------------------
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, int64_t batch = 1, int64_t stride_a = 0, int64_t stride_b = 0,
          int64_t stride_c = 0);

// --- conv.cpp (oneDNN for float where built in, conv_onednn.h; else im2col + GEMM) -------------------
template <class T> void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y);
template <class T> void conv2d_backward_data(const ConvShape& s, const T* dy, const T* w, T* dx);
template <class T> void conv2d_backward_weight(const ConvShape& s, const T* x, const T* dy, T* dw);
// The im2col + GEMM path alone: the reference the oneDNN path is tested against.
template <class T> void conv2d_forward_im2col(const ConvShape& s, const T* x, const T* w, T* y);
template <class T> void conv2d_backward_data_im2col(const ConvShape& s, const T* dy, const T* w, T* dx);
template <class T> void conv2d_backward_weight_im2col(const ConvShape& s, const T* x, const T* dy, T* dw);

// --- augment.cpp ----------------------------------------------------------------------------------
template <class T>
void augment_blit(int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* params, const T* x, T* y);
template <class T>
void augment_geometric(int64_t n, int64_t c, int64_t h, int64_t w, const T* matrices, int64_t pad_x0, int64_t pad_y0,
                       int64_t pad_x1, int64_t pad_y1, const T* x, T* y);
// The same from the per-pixel formulas alone, as the CUDA kernel computes it: the naive first version,
// which augment_geometric (row sums computed once) equals bit for bit.
template <class T>
void augment_geometric_per_pixel(int64_t n, int64_t c, int64_t h, int64_t w, const T* matrices, int64_t pad_x0,
                                 int64_t pad_y0, int64_t pad_x1, int64_t pad_y1, const T* x, T* y);

// --- pool.cpp, resize.cpp (inference only; index arithmetic in cuda/pool_math.h) -----------------
template <class T>
void max_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, const T* x, T* y);
template <class T>
void avg_pool2d(int64_t planes, int64_t h, int64_t w, int kernel, int stride, int padding, bool count_include_pad,
                const T* x, T* y);
template <class T>
void resize_bilinear(int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w, bool half_pixel, const T* x,
                     T* y);

} // namespace stf::cpu
