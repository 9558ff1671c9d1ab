// The differentiable ops: every op a model is built from, each recording its backward in the graph
// (autograd/node.h). Forward work is done by the raw ops in tensor/ops.h on either device.
#pragma once
#include <optional>
#include <utility>
#include <vector>
#include "autograd/node.h"
#include "tensor/ops.h"

namespace stf {

// ---- leaves ------------------------------------------------------------------------------------------
// Creation ops (ops::zeros, ops::randn, ...) give leaves; mark parameters with set_requires_grad().

// ---- movement and views ------------------------------------------------------------------------------
Tensor to(const Tensor& x, Device device);
Tensor to(const Tensor& x, DType dtype);
Tensor contiguous(const Tensor& x);
Tensor reshape(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x, int start_dim = 0);  // dims from start_dim on merged into one
Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length);
Tensor permute(const Tensor& x, const std::vector<int>& dims);
Tensor transpose(const Tensor& x, int d0, int d1);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int dim);
Tensor squeeze(const Tensor& x, int dim);
Tensor cat(const std::vector<Tensor>& xs, int dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);
Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value = 0);

// ---- elementwise (binary ops broadcast) --------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(const Tensor& a, double s);  // s - a
Tensor rdiv(const Tensor& a, double s);  // s / a
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor silu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond is not differentiated
Tensor nan_to_num(const Tensor& x, double inf_value = 1e5);         // not differentiated

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// ---- reductions --------------------------------------------------------------------------------------
Tensor sum(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, std::vector<int> dims = {}, bool keepdim = false);  // ties share the gradient

// ---- linear algebra ----------------------------------------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);  // 2-D or batched 3-D
// EDM's self-attention core from its qkv convolution's output [n, 3c, h, w] (channel 3 * j + i holds q,
// k or v (i = 0, 1, 2) of channel j, heads of c / num_heads channels): per head, w = softmax over keys of
// q^T k / sqrt(c / heads), and the output [n, c, h, w] is v w^T. One node: q, k and v are read in place
// from qkv, and the backward pass writes their gradients into one tensor shaped like qkv.
Tensor self_attention(const Tensor& qkv, int num_heads);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);  // x [n, in], weight [out, in]

// ---- convolution -------------------------------------------------------------------------------------
// x [n, c, h, w], weight [k, c / groups, r, s], bias [k] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride = 1, int padding = 0,
              int groups = 1);
// The adjoint of conv2d: weight [c_in, c_out / groups, r, s]; output size (h - 1) * stride - 2 * padding + r.
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride = 1, int padding = 0,
                        int groups = 1);

// ---- normalisation, softmax, dropout, losses ---------------------------------------------------------
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);
// The same with the output stored as y_dtype: bf16 from a float32 x for mixed precision (the rounding
// fused into the store; the backward pass takes a bf16 gradient and returns a float32 one).
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps, DType y_dtype);
// silu(group_norm(x + offset[:, :, None, None])) as one kernel each way (cuda/group_norm_math.h), without
// keeping the normalised tensor for the backward pass: it is recomputed from x there. offset [n, c] (a
// convolution's bias plus the noise embedding, in EDM's blocks) may be undefined.
// x may be bf16 (mixed precision), and y_dtype (default: x's) bf16 for a float32 x, as group_norm.
Tensor group_norm_silu(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps = 1e-5,
                       const Tensor& offset = Tensor(), std::optional<DType> y_dtype = std::nullopt);
// dropout(group_norm_silu(...), p, train, gen) with the mask drawn inside the kernels and drawn again
// in the backward pass: the same mask and values as the two ops (same generator draw), no mask tensor.
Tensor group_norm_silu_dropout(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps,
                               const Tensor& offset, double p, bool train, Generator& gen,
                               std::optional<DType> y_dtype = std::nullopt);
// (a + b + bias[c]) * scale in one pass: a residual connection and its skip scale, with the biases of
// the convolutions that made a and b folded into bias. a and b [n, c, ...] of one shape; bias [c] or
// undefined. a or b may be bf16 (mixed precision): the output is then float32, and each gradient is
// stored like its input.
Tensor scaled_residual(const Tensor& a, const Tensor& b, const Tensor& bias, double scale);
Tensor softmax(const Tensor& x, int dim);
Tensor log_softmax(const Tensor& x, int dim);
// Zeroes each element with probability p and scales the rest by 1 / (1 - p); identity when !train or p == 0.
Tensor dropout(const Tensor& x, double p, bool train, Generator& gen);
// Squared error summed over all elements but the first dim, per sample: [n].
Tensor squared_error_per_sample(const Tensor& prediction, const Tensor& target);
Tensor mse_loss(const Tensor& prediction, const Tensor& target);  // mean over all elements

}  // namespace stf
