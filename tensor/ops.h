// The raw tensor ops: no autograd, dispatched by device to the CPU kernels (tensor/cpu/) or the CUDA
// kernels (cuda/). Differentiable versions of these live in autograd/functions.h. Listed in one place.
//
// Dtypes: CPU computes in float32 and float64; CUDA computes in float32. bfloat16 is a storage dtype
// (convert with to()) that the mixed-precision ops also take: conv2d and its gradients, group_norm and
// scaled_residual (arithmetic in float32; on the CPU by widening, so the results are the float ones
// rounded). Binary ops broadcast like NumPy. Errors throw stf::Error naming the op and the shapes.
#pragma once
#include <optional>
#include <utility>
#include <vector>
#include "cuda/group_norm_math.h"
#include "cuda/layout.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace stf::ops {

// ---- creation --------------------------------------------------------------------------------------
Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor zeros_like(const Tensor& t);
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::F32,
                   Device device = Device::cpu());
Tensor arange(int64_t n, DType dtype = DType::F32, Device device = Device::cpu());
Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::F32, Device device = Device::cpu());
Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32, Device device = Device::cpu());
Tensor bernoulli(const Shape& shape, double p, Generator& gen, DType dtype = DType::F32,
                 Device device = Device::cpu());
// The mask stream of dropout with probability p on a tensor of `shape`: the draw ops::bernoulli(shape,
// 1 - p) would make (it advances gen the same way), for kernels that draw the mask themselves. device:
// where the mask is drawn (a generator keyed to a row key in memory must have it there).
DropoutStream dropout_stream(const Shape& shape, double p, Generator& gen, Device device);
void uniform_(Tensor& t, double lo, double hi, Generator& gen);  // t contiguous
void normal_(Tensor& t, double mean, double std, Generator& gen);

// ---- movement and conversion -----------------------------------------------------------------------
Tensor to(const Tensor& t, Device device);  // returns t itself when already there
Tensor to(const Tensor& t, DType dtype);
Tensor contiguous(const Tensor& t);  // returns t itself when already contiguous
Tensor clone(const Tensor& t);
void copy_(Tensor& dst, const Tensor& src);  // src broadcast into dst (dst may be a strided view)
// All zeros in place (contiguous t): one memset, no allocation, so a captured CUDA graph may follow it.
void zero_(Tensor& t);

// ---- views (share storage) -------------------------------------------------------------------------
Tensor reshape(const Tensor& t, Shape shape);  // one -1 allowed; copies only when no view exists
Tensor narrow(const Tensor& t, int dim, int64_t start, int64_t length);
Tensor permute(const Tensor& t, const std::vector<int>& dims);
Tensor transpose(const Tensor& t, int d0, int d1);
Tensor expand(const Tensor& t, const Shape& shape);  // size-1 dims (and new leading dims) broadcast
Tensor unsqueeze(const Tensor& t, int dim);
Tensor squeeze(const Tensor& t, int dim);

// ---- elementwise -----------------------------------------------------------------------------------
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0, double beta = 0);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 0, double beta = 0);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// In place on a contiguous tensor; b broadcasts to a's shape.
void unary_(UnaryOp op, Tensor& x, double alpha = 0, double beta = 0);
void binary_(BinaryOp op, Tensor& a, const Tensor& b, double alpha = 0, double beta = 0);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
inline Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
inline Tensor mul_scalar(const Tensor& x, double s) { return unary(UnaryOp::MulScalar, x, s); }
inline Tensor add_scalar(const Tensor& x, double s) { return unary(UnaryOp::AddScalar, x, s); }

// ---- reductions ------------------------------------------------------------------------------------
// Over `dims` (empty: all dims). keepdim keeps reduced dims as size 1.
Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor sum(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
// Sums a broadcast gradient back down to `shape` (the reverse of expand).
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

// ---- linear algebra --------------------------------------------------------------------------------
// a [m, k] (or [k, m] with trans_a) times b [k, n] (or [n, k] with trans_b); 3-D inputs are batched
// with equal batch sizes.
// alpha scales the product (folded into the GEMM). Operands whose rows are contiguous (last stride 1)
// are used in place with their row and batch strides, e.g. slices of a larger tensor; others are copied.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false, double alpha = 1.0);

// ---- convolution (NCHW, weight [k, c / groups, r, s], no bias; float32, float64 or bf16) -----------
ConvShape conv_shape(const Shape& x, const Shape& w, int stride, int padding, int groups, const char* op);
Tensor conv2d(const Tensor& x, const Tensor& w, int stride = 1, int padding = 0, int groups = 1);
Tensor conv2d_backward_data(const Tensor& dy, const Tensor& w, const Shape& x_shape, int stride, int padding,
                            int groups);
Tensor conv2d_backward_weight(const Tensor& x, const Tensor& dy, const Shape& w_shape, int stride, int padding,
                              int groups);

// ---- normalisation and softmax ---------------------------------------------------------------------
struct GroupNormOut {
    Tensor y, mean, rstd;  // mean and rstd [n, groups]
};
// What the kernels fuse around the normalisation (cuda/group_norm_math.h): an offset [n, c] added to x
// before the statistics (a convolution's bias plus the noise embedding), and SiLU on the output.
struct FusedGroupNorm {
    Tensor offset;  // [n, c] or undefined
    bool silu = false;
    DropoutStream dropout;  // from dropout_stream(); inactive by default
    // y's dtype where it differs from x's: BF16 for a float32 x whose output feeds a bf16 convolution
    // (mixed precision), rounded as it is stored.
    std::optional<DType> y_dtype;
};
// x [n, c, ...]; gamma and beta [c] or undefined. x may be bf16 (mixed precision; then y is too): the
// arithmetic, gamma, beta, the offset, mean and rstd are float32, and dx is stored like x, dy like y.
GroupNormOut group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, double eps,
                        const FusedGroupNorm& fused = {});
struct GroupNormGrads {
    Tensor dx, dgamma, dbeta;  // dx is also the offset's gradient before its sum over positions
};
// The forward's x, gamma, beta, fusion and statistics; dgamma if gamma is defined, dbeta if beta is.
GroupNormGrads group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                   const Tensor& mean, const Tensor& rstd, int groups, const FusedGroupNorm& fused = {});
Tensor softmax(const Tensor& x, int dim, bool log = false);
// (a + b + bias[c]) * scale in one pass: a and b [n, c, ...] of one shape, bias [c] or undefined. Either
// of a and b may be bf16 (a convolution's output under mixed precision) with the other float32: the
// result is then float32 (the residual stream), as is bias.
Tensor scaled_residual(const Tensor& a, const Tensor& b, const Tensor& bias, double scale);
Tensor softmax_backward(const Tensor& dy, const Tensor& y, int dim, bool log = false);

// ---- optimiser steps (fused, for nn/optim.h) ---------------------------------------------------------
struct AdamStep {
    double lr, beta1, beta2, eps;
    int64_t t;  // the step number, from 1
};
// One Adam step in place on p and its moments m and v from the gradient g (all contiguous, same shape,
// dtype and device).
void adam_update_(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamStep& step);
// ema = net + beta * (ema - net), in place (both contiguous, same shape, dtype and device).
void ema_update_(Tensor& ema, const Tensor& net, double beta);
// The same over many tensors at once (entry i as above): when all are on one CUDA device with one dtype
// and in distinct storages, a few launches in all instead of one per tensor (cuda/tensor_lists.h).
void adam_update_many_(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                       const std::vector<Tensor>& v, const AdamStep& step);
void ema_update_many_(const std::vector<Tensor>& ema, const std::vector<Tensor>& net, double beta);
// Graph-ready forms of the two (nn/optim.h, Adam::stage): the step's constants are read from memory
// when the update runs, so one captured CUDA graph serves every step. `constants` holds the seven
// values of optim::AdamConstants (cuda/optim_math.h) in p's dtype, on p's device, as
// write_adam_constants_ fills it; `beta` holds one value of ema's dtype. Results are bit for bit those
// of the forms above.
constexpr int64_t kAdamConstants = 7;
void write_adam_constants_(Tensor& constants, const AdamStep& step);
void adam_update_many_(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                       const std::vector<Tensor>& v, const Tensor& constants);
void ema_update_many_(const std::vector<Tensor>& ema, const std::vector<Tensor>& net, const Tensor& beta);
// The gradient guard in place over contiguous tensors: NaN -> 0, +-inf -> +-inf_value (torch.nan_to_num).
void nan_to_num_many_(const std::vector<Tensor>& xs, double inf_value);

// ---- distances -------------------------------------------------------------------------------------
// [b, n] squared Euclidean distances between the rows of y [b, d] and x [n, d], from the differences.
Tensor sq_distances(const Tensor& y, const Tensor& x);
// The running state of the STF target's streamed softmax over chunks of the reference batch (b rows).
struct StreamedSoftmax {
    Tensor row_max, weight_sum, weight_sq_sum;  // [b]: -inf, 0, 0 before the first chunk
    Tensor acc;                                 // [b, d]: the unnormalised weighted sum of references
};
// One chunk, in place (cuda/kernels.h, stf_softmax_chunk): dist [b, len] (the chunk's squared
// distances) becomes its weights exp(dist * coef - new row max); the state is rescaled and updated, except
// acc, which the caller then adds dist @ x_chunk to. coef [b] (-1 / (2 sigma^2)).
void stf_softmax_chunk_(Tensor& dist, const Tensor& coef, StreamedSoftmax& state);
// Each row's k smallest entries of x [rows, cols] in ascending order and their columns (cuda/kernels.h,
// topk_rows: IEEE total order, NaNs last, equal values by column), read back to the host, row-major
// [rows, k]: their consumers (the nearest-neighbour target's proposal) sample on the host. 1 <= k <= cols;
// on CUDA also k <= topk::kMaxK (cuda/topk_math.h).
struct RowTopK {
    int64_t rows = 0, k = 0;
    std::vector<double> values;
    std::vector<int64_t> indices;
};
RowTopK row_topk(const Tensor& x, int64_t k);

// ---- joining and padding ---------------------------------------------------------------------------
Tensor cat(const std::vector<Tensor>& xs, int dim);
// Zero padding: pads[d] = {before, after} for each dim d (missing trailing entries mean no padding).
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value = 0);

// ---- pooling, resizing, per-axis padding (inference only) -----------------------------------------
// The FID feature network's ops (metrics/inception.h). Inference only: raw ops with no autograd and no
// backward kernels. x [n, c, h, w], float32 on either device or float64 on the CPU; windows kernel x
// kernel, output (in + 2 padding - kernel) / stride + 1 (PyTorch's ceil_mode=False); padding at most
// kernel / 2, as PyTorch requires. Index arithmetic: cuda/pool_math.h.
// Max pooling: the padding never wins (it is -inf), NaN propagates.
Tensor max_pool2d(const Tensor& x, int kernel, int stride, int padding = 0);
// Average pooling: count_include_pad false divides by the pixels inside the image (TensorFlow's
// average pooling, Inception-v3's), true by kernel^2 (PyTorch's default).
Tensor avg_pool2d(const Tensor& x, int kernel, int stride, int padding = 0, bool count_include_pad = true);
// Bilinear resize to [n, c, out_h, out_w]: half_pixel true as F.interpolate(mode='bilinear',
// align_corners=False), false as TensorFlow 1's tf.image.resize_bilinear (what EDM's detector emulates).
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool half_pixel);
// conv2d (one group, no bias) with its own zero padding per axis: pad_h rows above and below, pad_w
// columns left and right (Inception's 1x7, 7x1, 1x3 and 3x1 kernels).
Tensor conv2d_hw(const Tensor& x, const Tensor& w, int stride, int pad_h, int pad_w);

}  // namespace stf::ops
