// Differentiable ops: forward through the raw ops, backward recorded as a closure over what it needs.
// Saved outputs are detached first, so a node never keeps its own output alive (no cycles).
#include "autograd/functions.h"

#include <numeric>

namespace stf {

using Grads = std::vector<Tensor>;

static bool needs_grad(const Tensor& t) { return grad_mode_enabled() && t.defined() && t.requires_grad(); }

// ---- movement and views ------------------------------------------------------------------------------

Tensor to(const Tensor& x, Device device) {
    Device from = x.device();
    return record("to_device", ops::to(x, device), {x}, [from](const Tensor& g) { return Grads{ops::to(g, from)}; });
}

Tensor to(const Tensor& x, DType dtype) {
    DType from = x.dtype();
    return record("to_dtype", ops::to(x, dtype), {x}, [from](const Tensor& g) { return Grads{ops::to(g, from)}; });
}

Tensor contiguous(const Tensor& x) {
    return record("contiguous", ops::contiguous(x), {x}, [](const Tensor& g) { return Grads{g}; });
}

Tensor reshape(const Tensor& x, Shape shape) {
    Shape from = x.shape();
    return record("reshape", ops::reshape(x, std::move(shape)), {x},
                  [from](const Tensor& g) { return Grads{ops::reshape(g, from)}; });
}

Tensor flatten(const Tensor& x, int start_dim) {
    int s = normalize_dim(start_dim, std::max(x.ndim(), 1), "flatten");
    Shape shape(x.shape().begin(), x.shape().begin() + std::min(s, x.ndim()));
    shape.push_back(-1);
    return reshape(x, shape);
}

Tensor narrow(const Tensor& x, int dim, int64_t start, int64_t length) {
    Shape from = x.shape();
    int d = normalize_dim(dim, x.ndim(), "narrow");
    DType dt = x.dtype();
    Device dev = x.device();
    return record("narrow", ops::narrow(x, d, start, length), {x}, [=](const Tensor& g) {
        Tensor full = ops::zeros(from, dt, dev);
        Tensor slot = ops::narrow(full, d, start, length);
        ops::copy_(slot, g);
        return Grads{full};
    });
}

Tensor permute(const Tensor& x, const std::vector<int>& dims) {
    std::vector<int> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inverse[normalize_dim(dims[i], x.ndim(), "permute")] = static_cast<int>(i);
    return record("permute", ops::permute(x, dims), {x},
                  [inverse](const Tensor& g) { return Grads{ops::permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int d0, int d1) {
    return record("transpose", ops::transpose(x, d0, d1), {x},
                  [d0, d1](const Tensor& g) { return Grads{ops::transpose(g, d0, d1)}; });
}

Tensor expand(const Tensor& x, const Shape& shape) {
    Shape from = x.shape();
    return record("expand", ops::expand(x, shape), {x},
                  [from](const Tensor& g) { return Grads{ops::sum_to_shape(g, from)}; });
}

Tensor unsqueeze(const Tensor& x, int dim) {
    Shape from = x.shape();
    return record("unsqueeze", ops::unsqueeze(x, dim), {x},
                  [from](const Tensor& g) { return Grads{ops::reshape(g, from)}; });
}

Tensor squeeze(const Tensor& x, int dim) {
    Shape from = x.shape();
    return record("squeeze", ops::squeeze(x, dim), {x},
                  [from](const Tensor& g) { return Grads{ops::reshape(g, from)}; });
}

Tensor cat(const std::vector<Tensor>& xs, int dim) {
    Tensor out = ops::cat(xs, dim);
    int d = normalize_dim(dim, out.ndim(), "cat");
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) sizes.push_back(x.shape()[d]);
    return record("cat", out, xs, [d, sizes](const Tensor& g) {
        Grads grads;
        int64_t at = 0;
        for (int64_t s : sizes) {
            grads.push_back(ops::narrow(g, d, at, s));
            at += s;
        }
        return grads;
    });
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
    int d = normalize_dim(dim, x.ndim(), "split");
    int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    STF_CHECK(total == x.shape()[d], "split: sizes sum to " << total << " but dim " << d << " of " << describe(x)
                                                            << " is " << x.shape()[d]);
    std::vector<Tensor> parts;
    int64_t at = 0;
    for (int64_t s : sizes) {
        parts.push_back(narrow(x, d, at, s));
        at += s;
    }
    return parts;
}

Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value) {
    Shape from = x.shape();
    return record("pad", ops::pad(x, pads, value), {x}, [from, pads](const Tensor& g) {
        Tensor inner = g;
        for (size_t d = 0; d < pads.size(); ++d) inner = ops::narrow(inner, static_cast<int>(d), pads[d].first, from[d]);
        return Grads{inner};
    });
}

// ---- elementwise -------------------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b) {
    Shape sa = a.shape(), sb = b.shape();
    return record("add", ops::add(a, b), {a, b}, [sa, sb](const Tensor& g) {
        return Grads{ops::sum_to_shape(g, sa), ops::sum_to_shape(g, sb)};
    });
}

Tensor sub(const Tensor& a, const Tensor& b) {
    Shape sa = a.shape(), sb = b.shape();
    return record("sub", ops::sub(a, b), {a, b}, [sa, sb](const Tensor& g) {
        return Grads{ops::sum_to_shape(g, sa), ops::sum_to_shape(ops::neg(g), sb)};
    });
}

Tensor mul(const Tensor& a, const Tensor& b) {
    bool ga = needs_grad(a), gb = needs_grad(b);
    return record("mul", ops::mul(a, b), {a, b}, [a = detach(a), b = detach(b), ga, gb](const Tensor& g) {
        return Grads{ga ? ops::sum_to_shape(ops::mul(g, b), a.shape()) : Tensor(),
                     gb ? ops::sum_to_shape(ops::mul(g, a), b.shape()) : Tensor()};
    });
}

Tensor div(const Tensor& a, const Tensor& b) {
    bool ga = needs_grad(a), gb = needs_grad(b);
    return record("div", ops::div(a, b), {a, b}, [a = detach(a), b = detach(b), ga, gb](const Tensor& g) {
        Tensor da, db;
        if (ga) da = ops::sum_to_shape(ops::div(g, b), a.shape());
        if (gb) db = ops::sum_to_shape(ops::neg(ops::div(ops::mul(g, a), ops::mul(b, b))), b.shape());
        return Grads{da, db};
    });
}

// Elementwise max/min: the gradient goes to the chosen input; on ties to a.
static Tensor select_grad(const char* name, BinaryOp op, BinaryOp loses, const Tensor& a, const Tensor& b) {
    return record(name, ops::binary(op, a, b), {a, b}, [a = detach(a), b = detach(b), loses](const Tensor& g) {
        Tensor b_wins = ops::binary(loses, a, b);
        Tensor a_wins = ops::unary(UnaryOp::RSubScalar, b_wins, 1.0);
        return Grads{ops::sum_to_shape(ops::mul(g, a_wins), a.shape()), ops::sum_to_shape(ops::mul(g, b_wins), b.shape())};
    });
}
Tensor maximum(const Tensor& a, const Tensor& b) { return select_grad("maximum", BinaryOp::Maximum, BinaryOp::Lt, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return select_grad("minimum", BinaryOp::Minimum, BinaryOp::Gt, a, b); }

Tensor add(const Tensor& a, double s) {
    return record("add_scalar", ops::unary(UnaryOp::AddScalar, a, s), {a}, [](const Tensor& g) { return Grads{g}; });
}

Tensor mul(const Tensor& a, double s) {
    return record("mul_scalar", ops::unary(UnaryOp::MulScalar, a, s), {a},
                  [s](const Tensor& g) { return Grads{ops::mul_scalar(g, s)}; });
}

Tensor rsub(const Tensor& a, double s) {
    return record("rsub_scalar", ops::unary(UnaryOp::RSubScalar, a, s), {a},
                  [](const Tensor& g) { return Grads{ops::neg(g)}; });
}

Tensor rdiv(const Tensor& a, double s) {
    Tensor y = ops::unary(UnaryOp::RDivScalar, a, s);
    // d(s/a) = -s/a^2 = -y^2/s; written with a so that s = 0 stays well defined.
    return record("rdiv_scalar", y, {a}, [a = detach(a), s](const Tensor& g) {
        return Grads{ops::mul_scalar(ops::div(g, ops::unary(UnaryOp::Square, a)), -s)};
    });
}

Tensor neg(const Tensor& x) {
    return record("neg", ops::neg(x), {x}, [](const Tensor& g) { return Grads{ops::neg(g)}; });
}

Tensor exp(const Tensor& x) {
    Tensor y = ops::unary(UnaryOp::Exp, x);
    return record("exp", y, {x}, [y = detach(y)](const Tensor& g) { return Grads{ops::mul(g, y)}; });
}

Tensor log(const Tensor& x) {
    return record("log", ops::unary(UnaryOp::Log, x), {x}, [x = detach(x)](const Tensor& g) { return Grads{ops::div(g, x)}; });
}

Tensor sqrt(const Tensor& x) {
    Tensor y = ops::unary(UnaryOp::Sqrt, x);
    return record("sqrt", y, {x}, [y = detach(y)](const Tensor& g) {
        return Grads{ops::mul_scalar(ops::div(g, y), 0.5)};
    });
}

Tensor rsqrt(const Tensor& x) {
    Tensor y = ops::unary(UnaryOp::Rsqrt, x);
    return record("rsqrt", y, {x}, [y = detach(y)](const Tensor& g) {
        return Grads{ops::mul_scalar(ops::mul(g, ops::unary(UnaryOp::Pow, y, 3.0)), -0.5)};
    });
}

Tensor square(const Tensor& x) {
    return record("square", ops::unary(UnaryOp::Square, x), {x},
                  [x = detach(x)](const Tensor& g) { return Grads{ops::mul_scalar(ops::mul(g, x), 2.0)}; });
}

Tensor abs(const Tensor& x) {
    return record("abs", ops::unary(UnaryOp::Abs, x), {x}, [x = detach(x)](const Tensor& g) {
        Tensor sign = ops::sub(ops::binary(BinaryOp::Gt, x, ops::zeros({}, x.dtype(), x.device())),
                               ops::binary(BinaryOp::Lt, x, ops::zeros({}, x.dtype(), x.device())));
        return Grads{ops::mul(g, sign)};
    });
}

Tensor pow(const Tensor& x, double p) {
    return record("pow", ops::unary(UnaryOp::Pow, x, p), {x}, [x = detach(x), p](const Tensor& g) {
        return Grads{ops::mul_scalar(ops::mul(g, ops::unary(UnaryOp::Pow, x, p - 1)), p)};
    });
}

Tensor silu(const Tensor& x) {
    return record("silu", ops::unary(UnaryOp::Silu, x), {x},
                  [x = detach(x)](const Tensor& g) { return Grads{ops::binary(BinaryOp::SiluBackward, g, x)}; });
}

Tensor sigmoid(const Tensor& x) {
    Tensor y = ops::unary(UnaryOp::Sigmoid, x);
    return record("sigmoid", y, {x},
                  [y = detach(y)](const Tensor& g) { return Grads{ops::binary(BinaryOp::SigmoidBackward, g, y)}; });
}

Tensor sin(const Tensor& x) {
    return record("sin", ops::unary(UnaryOp::Sin, x), {x},
                  [x = detach(x)](const Tensor& g) { return Grads{ops::mul(g, ops::unary(UnaryOp::Cos, x))}; });
}

Tensor cos(const Tensor& x) {
    return record("cos", ops::unary(UnaryOp::Cos, x), {x}, [x = detach(x)](const Tensor& g) {
        return Grads{ops::neg(ops::mul(g, ops::unary(UnaryOp::Sin, x)))};
    });
}

Tensor clamp(const Tensor& x, double lo, double hi) {
    STF_CHECK(lo <= hi, "clamp: lower bound " << lo << " above upper bound " << hi);
    return record("clamp", ops::unary(UnaryOp::Clamp, x, lo, hi), {x}, [x = detach(x), lo, hi](const Tensor& g) {
        return Grads{ops::binary(BinaryOp::ClampBackward, g, x, lo, hi)};
    });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
    Shape sa = a.shape(), sb = b.shape();
    return record("where", ops::where(cond, a, b), {Tensor(), a, b}, [c = detach(cond), sa, sb](const Tensor& g) {
        Tensor zero = ops::zeros({}, g.dtype(), g.device());
        return Grads{Tensor(), ops::sum_to_shape(ops::where(c, g, zero), sa),
                     ops::sum_to_shape(ops::where(c, zero, g), sb)};
    });
}

Tensor nan_to_num(const Tensor& x, double inf_value) { return ops::unary(UnaryOp::NanToNum, x, inf_value); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(a, s); }

// ---- reductions --------------------------------------------------------------------------------------

// The reduced shape with size-1 dims kept, so a gradient can be expanded back over the reduced dims.
static Shape keepdim_shape(const Shape& shape, std::vector<int> dims) {
    int nd = static_cast<int>(shape.size());
    if (dims.empty())
        for (int d = 0; d < nd; ++d) dims.push_back(d);
    Shape kept = shape;
    for (int d : dims) kept[normalize_dim(d, nd, "reduce")] = 1;
    return kept;
}

Tensor sum(const Tensor& x, std::vector<int> dims, bool keepdim) {
    Shape from = x.shape(), kept = keepdim_shape(x.shape(), dims);
    return record("sum", ops::sum(x, dims, keepdim), {x}, [from, kept](const Tensor& g) {
        return Grads{ops::expand(ops::reshape(g, kept), from)};
    });
}

Tensor mean(const Tensor& x, std::vector<int> dims, bool keepdim) {
    Shape from = x.shape(), kept = keepdim_shape(x.shape(), dims);
    double scale = static_cast<double>(shape_numel(kept)) / static_cast<double>(std::max<int64_t>(x.numel(), 1));
    return record("mean", ops::mean(x, dims, keepdim), {x}, [from, kept, scale](const Tensor& g) {
        return Grads{ops::expand(ops::mul_scalar(ops::reshape(g, kept), scale), from)};
    });
}

Tensor max(const Tensor& x, std::vector<int> dims, bool keepdim) {
    Tensor y = ops::max(x, dims, keepdim);
    Shape kept = keepdim_shape(x.shape(), dims);
    return record("max", y, {x}, [x = detach(x), y = detach(y), kept, dims](const Tensor& g) {
        Tensor is_max = ops::binary(BinaryOp::Eq, x, ops::reshape(y, kept));
        Tensor ties = ops::sum(is_max, dims, true);
        return Grads{ops::div(ops::mul(is_max, ops::reshape(g, kept)), ties)};
    });
}

// ---- linear algebra ----------------------------------------------------------------------------------

Tensor matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
    bool ga = needs_grad(a), gb = needs_grad(b);
    // With C = op(A) op(B): d op(A) = G op(B)^T and d op(B) = op(A)^T G, transposed back where op transposes.
    return record("matmul", ops::matmul(a, b, ta, tb), {a, b},
                  [a = detach(a), b = detach(b), ta, tb, ga, gb](const Tensor& g) {
                      Tensor da, db;
                      if (ga) da = ta ? ops::matmul(b, g, tb, true) : ops::matmul(g, b, false, !tb);
                      if (gb) db = tb ? ops::matmul(g, a, true, ta) : ops::matmul(a, g, !ta, false);
                      return Grads{da, db};
                  });
}

Tensor self_attention(const Tensor& qkv_in, int num_heads) {
    STF_CHECK(qkv_in.ndim() == 4 && num_heads >= 1 && qkv_in.size(1) % (3 * num_heads) == 0,
              "self_attention: expected qkv [n, 3c, h, w] with c divisible by " << num_heads << " heads, got "
                                                                                << describe(qkv_in));
    const int64_t n = qkv_in.size(0), c = qkv_in.size(1) / 3, hw = qkv_in.size(2) * qkv_in.size(3);
    const int64_t heads = num_heads, ch = c / heads;
    const double scale = 1 / std::sqrt(static_cast<double>(ch));
    Tensor qkv = ops::reshape(qkv_in, {n * heads, ch, 3, hw});  // contiguous
    // q, k, v [n * heads, ch, hw]: slices of qkv, rows contiguous, used in place by the GEMMs.
    auto part = [qkv](int64_t i) { return ops::squeeze(ops::narrow(qkv, 2, i, 1), 2); };
    Tensor w = ops::softmax(ops::matmul(part(0), part(1), true, false, scale), 2);  // [n*heads, queries, keys]
    Tensor a = ops::matmul(part(2), w, false, true);                                // a[c, q] = sum_k v[c, k] w[q, k]
    Shape out_shape{n, c, qkv_in.size(2), qkv_in.size(3)}, in_shape = qkv_in.shape();
    return record("self_attention", ops::reshape(a, out_shape), {qkv_in},
                  [w, part, scale, n, heads, ch, hw, in_shape](const Tensor& g) {
                      Tensor da = ops::reshape(g, {n * heads, ch, hw});
                      Tensor q = part(0), k = part(1), v = part(2);
                      // a = v w^T: dv = da w, dw = da^T v; logits = scale q^T k: dq = scale k dl^T, dk = scale q dl.
                      Tensor dv = ops::matmul(da, w);
                      Tensor dl = ops::softmax_backward(ops::matmul(da, v, true, false), w, 2);
                      Tensor dq = ops::matmul(k, dl, false, true, scale), dk = ops::matmul(q, dl, false, false, scale);
                      Tensor dqkv = ops::empty({n * heads, ch, 3, hw}, g.dtype(), g.device());
                      int64_t i = 0;
                      for (const Tensor* d : {&dq, &dk, &dv}) {
                          Tensor slot = ops::squeeze(ops::narrow(dqkv, 2, i++, 1), 2);
                          ops::copy_(slot, *d);
                      }
                      return Grads{ops::reshape(dqkv, in_shape)};
                  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    STF_CHECK(x.ndim() == 2 && weight.ndim() == 2 && x.size(1) == weight.size(1),
              "linear: input " << describe(x) << " and weight " << describe(weight) << " (expected [n, in] and [out, in])");
    Tensor y = matmul(x, weight, false, true);
    if (!bias.defined()) return y;
    STF_CHECK(bias.shape() == Shape{weight.size(0)}, "linear: bias " << describe(bias) << " should be ["
                                                                      << weight.size(0) << "]");
    return add(y, bias);
}

// ---- convolution -------------------------------------------------------------------------------------

static Tensor add_channel_bias(const Tensor& y, const Tensor& bias, const char* op) {
    if (!bias.defined()) return y;
    STF_CHECK(bias.shape() == Shape{y.size(1)}, op << ": bias " << describe(bias) << " should be [" << y.size(1) << "]");
    return add(y, reshape(bias, {1, y.size(1), 1, 1}));
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding, int groups) {
    bool gx = needs_grad(x), gw = needs_grad(weight);
    Tensor y = record("conv2d", ops::conv2d(x, weight, stride, padding, groups), {x, weight},
                      [x = detach(x), w = detach(weight), stride, padding, groups, gx, gw](const Tensor& g) {
                          Tensor dx, dw;
                          if (gx) dx = ops::conv2d_backward_data(g, w, x.shape(), stride, padding, groups);
                          if (gw) dw = ops::conv2d_backward_weight(x, g, w.shape(), stride, padding, groups);
                          return Grads{dx, dw};
                      });
    return add_channel_bias(y, bias, "conv2d");
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int stride, int padding, int groups) {
    STF_CHECK(x.ndim() == 4 && weight.ndim() == 4 && weight.size(0) == x.size(1),
              "conv_transpose2d: input " << describe(x) << " and weight " << describe(weight)
                                         << " (expected [n, c_in, h, w] and [c_in, c_out / groups, r, s])");
    Shape y_shape{x.size(0), weight.size(1) * groups, (x.size(2) - 1) * stride - 2 * padding + weight.size(2),
                  (x.size(3) - 1) * stride - 2 * padding + weight.size(3)};
    STF_CHECK(y_shape[2] > 0 && y_shape[3] > 0, "conv_transpose2d: empty output for " << describe(x));
    bool gx = needs_grad(x), gw = needs_grad(weight);
    // The transposed convolution is conv2d's data gradient with input and output swapped.
    Tensor y = record("conv_transpose2d", ops::conv2d_backward_data(x, weight, y_shape, stride, padding, groups),
                      {x, weight},
                      [x = detach(x), w = detach(weight), stride, padding, groups, gx, gw](const Tensor& g) {
                          Tensor dx, dw;
                          if (gx) dx = ops::conv2d(g, w, stride, padding, groups);
                          if (gw) dw = ops::conv2d_backward_weight(g, x, w.shape(), stride, padding, groups);
                          return Grads{dx, dw};
                      });
    return add_channel_bias(y, bias, "conv_transpose2d");
}

// ---- normalisation, softmax, dropout, losses ---------------------------------------------------------

// group_norm and its fused forms (cuda/group_norm_math.h): one op, named for what it fuses.
static Tensor fused_group_norm(const char* name, const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta,
                               double eps, const Tensor& offset, bool silu, const DropoutStream& dropout,
                               std::optional<DType> y_dtype = std::nullopt) {
    ops::FusedGroupNorm fused{offset.defined() ? detach(offset) : Tensor(), silu, dropout, y_dtype};
    ops::GroupNormOut o = ops::group_norm(x, gamma, beta, groups, eps, fused);
    bool g_offset = needs_grad(offset);
    const DType offset_dtype = offset.defined() ? offset.dtype() : x.dtype();
    return record(name, o.y, {x, gamma, beta, offset},
                  [x = detach(x), gamma = gamma.defined() ? detach(gamma) : Tensor(),
                   beta = beta.defined() ? detach(beta) : Tensor(), fused, mean = o.mean, rstd = o.rstd, groups,
                   g_offset, offset_dtype](const Tensor& g) {
                      ops::GroupNormGrads d = ops::group_norm_backward(g, x, gamma, beta, mean, rstd, groups, fused);
                      // x' = x + offset[n, c]: the offset's gradient is dx summed over each channel's positions
                      // (in float32 when dx is stored as bf16, like the offset).
                      Tensor d_offset;
                      if (g_offset)
                          d_offset = ops::sum(ops::reshape(ops::to(d.dx, offset_dtype), {x.size(0), x.size(1), -1}), {2});
                      return Grads{d.dx, d.dgamma, d.dbeta, d_offset};
                  });
}

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps) {
    return fused_group_norm("group_norm", x, groups, gamma, beta, eps, Tensor(), false, DropoutStream{});
}

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps, DType y_dtype) {
    return fused_group_norm("group_norm", x, groups, gamma, beta, eps, Tensor(), false, DropoutStream{}, y_dtype);
}

Tensor group_norm_silu(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps,
                       const Tensor& offset, std::optional<DType> y_dtype) {
    return fused_group_norm("group_norm_silu", x, groups, gamma, beta, eps, offset, true, DropoutStream{}, y_dtype);
}

Tensor group_norm_silu_dropout(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps,
                               const Tensor& offset, double p, bool train, Generator& gen,
                               std::optional<DType> y_dtype) {
    STF_CHECK(p >= 0 && p < 1, "dropout: probability " << p << " outside [0, 1)");
    DropoutStream dropout;  // inactive unless training with p > 0, as dropout()
    if (train && p > 0) dropout = ops::dropout_stream(x.shape(), p, gen, x.device());
    return fused_group_norm("group_norm_silu_dropout", x, groups, gamma, beta, eps, offset, true, dropout, y_dtype);
}

Tensor scaled_residual(const Tensor& a, const Tensor& b, const Tensor& bias, double scale) {
    bool g_bias = needs_grad(bias);
    return record("scaled_residual", ops::scaled_residual(a, b, bias, scale), {a, b, bias},
                  [scale, g_bias, a_dtype = a.dtype(), b_dtype = b.dtype()](const Tensor& g) {
                      Tensor ga = ops::mul_scalar(g, scale);  // a and b share one gradient tensor...
                      Tensor gbias;
                      if (g_bias) {
                          std::vector<int> dims{0};
                          for (int d = 2; d < g.ndim(); ++d) dims.push_back(d);
                          gbias = ops::sum(ga, dims);
                      }
                      // ...stored like each of them (bf16 for a convolution's output under mixed precision),
                      // converted once when both are bf16.
                      Tensor for_a = ops::to(ga, a_dtype);
                      return Grads{for_a, b_dtype == a_dtype ? for_a : ops::to(ga, b_dtype), gbias};
                  });
}

static Tensor softmax_impl(const char* name, const Tensor& x, int dim, bool log) {
    Tensor y = ops::softmax(x, dim, log);
    return record(name, y, {x}, [y = detach(y), dim, log](const Tensor& g) {
        return Grads{ops::softmax_backward(g, y, dim, log)};
    });
}
Tensor softmax(const Tensor& x, int dim) { return softmax_impl("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int dim) { return softmax_impl("log_softmax", x, dim, true); }

Tensor dropout(const Tensor& x, double p, bool train, Generator& gen) {
    STF_CHECK(p >= 0 && p < 1, "dropout: probability " << p << " outside [0, 1)");
    if (!train || p == 0) return x;
    Tensor mask = ops::bernoulli(x.shape(), 1 - p, gen, x.dtype(), x.device());
    ops::unary_(UnaryOp::MulScalar, mask, 1.0 / (1.0 - p));
    return record("dropout", ops::mul(x, mask), {x}, [mask](const Tensor& g) { return Grads{ops::mul(g, mask)}; });
}

Tensor squared_error_per_sample(const Tensor& prediction, const Tensor& target) {
    STF_CHECK(prediction.shape() == target.shape(), "squared_error_per_sample: prediction "
                                                        << describe(prediction) << " vs target " << describe(target));
    STF_CHECK(prediction.ndim() >= 1, "squared_error_per_sample: expected a batch dim, got " << describe(prediction));
    std::vector<int> dims;
    for (int d = 1; d < prediction.ndim(); ++d) dims.push_back(d);
    Tensor sq = square(sub(prediction, target));
    return dims.empty() ? sq : sum(sq, dims);
}

Tensor mse_loss(const Tensor& prediction, const Tensor& target) {
    STF_CHECK(prediction.shape() == target.shape(),
              "mse_loss: prediction " << describe(prediction) << " vs target " << describe(target));
    return mean(square(sub(prediction, target)));
}

}  // namespace stf
