// Raw ops: matmul, convolution, group norm, softmax, concatenation and padding. See tensor/ops.h.
#include <climits>
#include <cmath>
#include <cstring>
#include <set>

#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace stf::ops {

using detail::Backend;
using detail::backend_of;
using detail::check_same;
using detail::dispatch;
using detail::launch_cuda;

// ---- linear algebra --------------------------------------------------------------------------------

// A GEMM operand as it lies in memory: the tensor itself when its rows are contiguous and evenly
// strided (row stride at least the row length, one batch stride), else a contiguous copy. ld and batch
// are the row and batch strides in elements.
struct GemmOperand {
    Tensor t;
    int64_t ld, batch;
};
static GemmOperand gemm_operand(const Tensor& x) {
    const int nd = x.ndim();
    const Shape& st = x.strides();
    const int64_t cols = x.size(-1), rows = x.size(-2);
    const int64_t ld = rows == 1 ? cols : st[nd - 2];
    const bool rows_ok = (cols == 1 || st[nd - 1] == 1) && ld >= cols && ld <= INT32_MAX;  // BLAS ints
    const bool batch_ok = nd == 2 || x.size(0) == 1 || st[0] >= ld * rows;
    if (cols > 0 && rows > 0 && rows_ok && batch_ok) return {x, ld, nd == 3 && x.size(0) > 1 ? st[0] : rows * ld};
    Tensor c = contiguous(x);
    return {c, cols, rows * cols};
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b, double alpha) {
    check_same(a_in, b_in, "matmul");
    STF_CHECK((a_in.ndim() == 2 && b_in.ndim() == 2) || (a_in.ndim() == 3 && b_in.ndim() == 3),
              "matmul: expected two 2-D or two 3-D tensors, got " << describe(a_in) << " and " << describe(b_in));
    const GemmOperand ga = gemm_operand(a_in), gb = gemm_operand(b_in);
    const Tensor &a = ga.t, &b = gb.t;
    bool batched = a.ndim() == 3;
    int64_t batch = batched ? a.size(0) : 1;
    STF_CHECK(!batched || b.size(0) == batch,
              "matmul: batch sizes differ: " << describe(a) << " and " << describe(b));
    int64_t m = trans_a ? a.size(-1) : a.size(-2), k = trans_a ? a.size(-2) : a.size(-1);
    int64_t kb = trans_b ? b.size(-1) : b.size(-2), n = trans_b ? b.size(-2) : b.size(-1);
    STF_CHECK(k == kb, "matmul: inner sizes differ (" << k << " vs " << kb << ") for " << describe(a)
                                                      << (trans_a ? "^T" : "") << " x " << describe(b)
                                                      << (trans_b ? "^T" : ""));
    Shape out_shape = batched ? Shape{batch, m, n} : Shape{m, n};
    Tensor c = empty(out_shape, a.dtype(), a.device());
    if (c.numel() == 0) return c;
    if (k == 0) return zeros(out_shape, a.dtype(), a.device());
    const int64_t lda = ga.ld, ldb = gb.ld, ldc = n;
    const int64_t sa = ga.batch, sb = gb.batch, sc = m * n;
    dispatch(
        a, "matmul",
        [&]<class T>() {
            cpu::gemm<T>(trans_a, trans_b, m, n, k, static_cast<T>(alpha), a.data<T>(), lda, b.data<T>(), ldb, T(0),
                         c.data<T>(), ldc, batch, sa, sb, sc);
        },
        [&] {
            cuda::gemm(trans_a, trans_b, m, n, k, static_cast<float>(alpha), a.data<float>(), lda, b.data<float>(),
                       ldb, 0.f, c.data<float>(), ldc, batch, sa, sb, sc);
        });
    return c;
}

// ---- convolution -----------------------------------------------------------------------------------

ConvShape conv_shape(const Shape& x, const Shape& w, int stride, int padding, int groups, const char* op) {
    STF_CHECK(x.size() == 4 && w.size() == 4, op << ": expected input [n, c, h, w] and weight [k, c/groups, r, s], got "
                                                 << shape_str(x) << " and " << shape_str(w));
    STF_CHECK(stride >= 1 && padding >= 0 && groups >= 1,
              op << ": bad stride " << stride << ", padding " << padding << " or groups " << groups);
    ConvShape s;
    s.n = x[0]; s.c = x[1]; s.h = x[2]; s.w = x[3];
    s.k = w[0]; s.r = w[2]; s.s = w[3];
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = padding;
    s.groups = groups;
    STF_CHECK(s.c % groups == 0 && s.k % groups == 0 && w[1] * groups == s.c,
              op << ": input " << shape_str(x) << " and weight " << shape_str(w) << " do not match with groups "
                 << groups << " (need weight[1] * groups == channels, and groups dividing both channel counts)");
    STF_CHECK(s.h + 2 * padding >= s.r && s.w + 2 * padding >= s.s,
              op << ": kernel " << s.r << "x" << s.s << " larger than padded input " << shape_str(x));
    return s;
}

// bf16 convolutions (mixed precision): on CUDA, cuDNN's bf16 kernels, which accumulate in float. The
// CPU emulates them: the operands widen to float exactly, the float convolution runs, and its result
// is rounded once to bf16, which is what the GPU computes up to the order of its float sums. The GPU
// does the same where cuDNN has no bf16 algorithm for a shape.
static bool is_bf16(const Tensor& t) { return t.dtype() == DType::BF16; }
static Tensor widened(const Tensor& t) { return to(t, DType::F32); }
static Tensor rounded(const Tensor& t) { return to(t, DType::BF16); }

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, int stride, int padding, int groups) {
    check_same(x_in, w_in, "conv2d");
    ConvShape s = conv_shape(x_in.shape(), w_in.shape(), stride, padding, groups, "conv2d");
    Tensor x = contiguous(x_in), w = contiguous(w_in);
    auto in_float = [&] { return rounded(conv2d(widened(x), widened(w), stride, padding, groups)); };
    if (is_bf16(x) && x.device().is_cpu()) return in_float();
    Tensor y = empty({s.n, s.k, s.out_h(), s.out_w()}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    if (is_bf16(x)) {
        const bool done = launch_cuda(
            "conv2d", [&] { return cuda::conv2d_forward(s, x.data<bf16>(), w.data<bf16>(), y.data<bf16>()); });
        return done ? y : in_float();
    }
    dispatch(x, "conv2d", [&]<class T>() { cpu::conv2d_forward<T>(s, x.data<T>(), w.data<T>(), y.data<T>()); },
             [&] { cuda::conv2d_forward(s, x.data<float>(), w.data<float>(), y.data<float>()); });
    return y;
}

Tensor conv2d_backward_data(const Tensor& dy_in, const Tensor& w_in, const Shape& x_shape, int stride, int padding,
                            int groups) {
    check_same(dy_in, w_in, "conv2d_backward_data");
    ConvShape s = conv_shape(x_shape, w_in.shape(), stride, padding, groups, "conv2d_backward_data");
    STF_CHECK(dy_in.shape() == (Shape{s.n, s.k, s.out_h(), s.out_w()}),
              "conv2d_backward_data: gradient " << describe(dy_in) << " does not match the output of input "
                                                << shape_str(x_shape) << " and weight " << shape_str(w_in.shape()));
    Tensor dy = contiguous(dy_in), w = contiguous(w_in);
    auto in_float = [&] {
        return rounded(conv2d_backward_data(widened(dy), widened(w), x_shape, stride, padding, groups));
    };
    if (is_bf16(dy) && dy.device().is_cpu()) return in_float();
    Tensor dx = empty(x_shape, dy.dtype(), dy.device());
    if (dx.numel() == 0) return dx;
    if (dy.numel() == 0) return zeros(x_shape, dy.dtype(), dy.device());
    if (is_bf16(dy)) {
        const bool done = launch_cuda("conv2d_backward_data", [&] {
            return cuda::conv2d_backward_data(s, dy.data<bf16>(), w.data<bf16>(), dx.data<bf16>());
        });
        return done ? dx : in_float();
    }
    dispatch(
        dy, "conv2d_backward_data",
        [&]<class T>() { cpu::conv2d_backward_data<T>(s, dy.data<T>(), w.data<T>(), dx.data<T>()); },
        [&] { cuda::conv2d_backward_data(s, dy.data<float>(), w.data<float>(), dx.data<float>()); });
    return dx;
}

Tensor conv2d_backward_weight(const Tensor& x_in, const Tensor& dy_in, const Shape& w_shape, int stride, int padding,
                              int groups) {
    check_same(x_in, dy_in, "conv2d_backward_weight");
    ConvShape s = conv_shape(x_in.shape(), w_shape, stride, padding, groups, "conv2d_backward_weight");
    STF_CHECK(dy_in.shape() == (Shape{s.n, s.k, s.out_h(), s.out_w()}),
              "conv2d_backward_weight: gradient " << describe(dy_in) << " does not match the output of input "
                                                  << describe(x_in) << " and weight " << shape_str(w_shape));
    Tensor x = contiguous(x_in), dy = contiguous(dy_in);
    auto in_float = [&] {
        return rounded(conv2d_backward_weight(widened(x), widened(dy), w_shape, stride, padding, groups));
    };
    if (is_bf16(x) && x.device().is_cpu()) return in_float();
    if (dy.numel() == 0) return zeros(w_shape, x.dtype(), x.device());
    Tensor dw = empty(w_shape, x.dtype(), x.device());
    if (is_bf16(x)) {
        const bool done = launch_cuda("conv2d_backward_weight", [&] {
            return cuda::conv2d_backward_weight(s, x.data<bf16>(), dy.data<bf16>(), dw.data<bf16>());
        });
        return done ? dw : in_float();
    }
    dispatch(
        x, "conv2d_backward_weight",
        [&]<class T>() { cpu::conv2d_backward_weight<T>(s, x.data<T>(), dy.data<T>(), dw.data<T>()); },
        [&] { cuda::conv2d_backward_weight(s, x.data<float>(), dy.data<float>(), dw.data<float>()); });
    return dw;
}

// ---- group norm ------------------------------------------------------------------------------------

struct GroupNormDims {
    int64_t n, c, hw, g;
};

// The dtype a mixed-precision op computes in and keeps its parameters and statistics in: float32 for
// bf16 activations, else the activations' own.
static DType arithmetic_dtype(const Tensor& x) { return is_bf16(x) ? DType::F32 : x.dtype(); }

// A parameter (or offset) of an op on x: same device, and x's arithmetic dtype.
static void check_parameter(const Tensor& x, const Tensor& p, const char* op) {
    STF_CHECK(p.device() == x.device(), op << ": tensors on different devices: " << describe(x) << " and " << describe(p));
    STF_CHECK(p.dtype() == arithmetic_dtype(x), op << ": " << describe(p) << " should be "
                                                   << dtype_name(arithmetic_dtype(x)) << " for input " << describe(x));
}

static GroupNormDims group_norm_dims(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups) {
    STF_CHECK(x.ndim() >= 2, "group_norm: expected input [n, c, ...], got " << describe(x));
    int64_t c = x.size(1);
    STF_CHECK(groups >= 1 && c % groups == 0,
              "group_norm: " << groups << " groups do not divide the " << c << " channels of " << describe(x));
    for (const Tensor* p : {&gamma, &beta})
        if (p->defined()) {
            check_parameter(x, *p, "group_norm");
            STF_CHECK(p->shape() == Shape{c}, "group_norm: affine parameter " << describe(*p) << " should be [" << c << "]");
        }
    return {x.size(0), c, x.numel() / std::max<int64_t>(x.size(0) * c, 1), groups};
}

template <class T> static const T* opt(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <class T> static T* opt_mut(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
static Tensor opt_contiguous(const Tensor& t) { return t.defined() ? contiguous(t) : Tensor(); }

// The offset, checked against x and made contiguous.
static Tensor fused_offset(const FusedGroupNorm& fused, const Tensor& x, const GroupNormDims& d) {
    if (!fused.offset.defined()) return Tensor();
    check_parameter(x, fused.offset, "group_norm");
    STF_CHECK(fused.offset.shape() == (Shape{d.n, d.c}),
              "group_norm: fused offset " << describe(fused.offset) << " should be [" << d.n << ", " << d.c
                                          << "] for input " << describe(x));
    return contiguous(fused.offset);
}

template <class T> static GroupNormFusion<T> kernel_fusion(const Tensor& offset, const FusedGroupNorm& fused) {
    return {opt<T>(offset), fused.silu, fused.dropout};
}

// y's dtype: x's, or bf16 for a float32 x when the fusion asks for it.
static DType group_norm_y_dtype(const Tensor& x, const FusedGroupNorm& fused) {
    const DType y = fused.y_dtype.value_or(x.dtype());
    STF_CHECK(y == x.dtype() || (x.dtype() == DType::F32 && y == DType::BF16),
              "group_norm: output dtype " << dtype_name(y) << " for input " << describe(x)
                                          << " (expected the input's, or bf16 for a float32 input)");
    return y;
}

// The float32-arithmetic kernels on either device: x stored as TX, y as TY (float, or bf16 for mixed
// precision). float64 runs only on the CPU, in group_norm itself.
template <class TX, class TY>
static void run_group_norm(const GroupNormDims& d, double eps, const Tensor& x, const Tensor& gamma,
                             const Tensor& beta, const Tensor& offset, const FusedGroupNorm& fused, GroupNormOut& o) {
    const GroupNormFusion<float> f = kernel_fusion<float>(offset, fused);
    if (x.device().is_cpu())
        cpu::group_norm_forward<float, TX, TY>(d.n, d.c, d.hw, d.g, eps, x.data<TX>(), opt<float>(gamma),
                                               opt<float>(beta), f, o.y.data<TY>(), o.mean.data<float>(),
                                               o.rstd.data<float>());
    else
        launch_cuda("group_norm", [&] {
            cuda::group_norm_forward<TX, TY>(d.n, d.c, d.hw, d.g, static_cast<float>(eps), x.data<TX>(),
                                             opt<float>(gamma), opt<float>(beta), f, o.y.data<TY>(),
                                             o.mean.data<float>(), o.rstd.data<float>());
        });
}

template <class TX, class TY>
static void run_group_norm_backward(const GroupNormDims& d, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                      const Tensor& offset, const FusedGroupNorm& fused, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& dy, GroupNormGrads& g) {
    const GroupNormFusion<float> f = kernel_fusion<float>(offset, fused);
    if (x.device().is_cpu())
        cpu::group_norm_backward<float, TX, TY>(d.n, d.c, d.hw, d.g, x.data<TX>(), opt<float>(gamma), opt<float>(beta),
                                                f, mean.data<float>(), rstd.data<float>(), dy.data<TY>(),
                                                g.dx.data<TX>(), opt_mut<float>(g.dgamma), opt_mut<float>(g.dbeta));
    else
        launch_cuda("group_norm_backward", [&] {
            cuda::group_norm_backward<TX, TY>(d.n, d.c, d.hw, d.g, x.data<TX>(), opt<float>(gamma), opt<float>(beta),
                                              f, mean.data<float>(), rstd.data<float>(), dy.data<TY>(),
                                              g.dx.data<TX>(), opt_mut<float>(g.dgamma), opt_mut<float>(g.dbeta));
        });
}

GroupNormOut group_norm(const Tensor& x_in, const Tensor& gamma_in, const Tensor& beta_in, int groups, double eps,
                        const FusedGroupNorm& fused) {
    GroupNormDims d = group_norm_dims(x_in, gamma_in, beta_in, groups);
    Tensor x = contiguous(x_in), gamma = opt_contiguous(gamma_in), beta = opt_contiguous(beta_in);
    Tensor offset = fused_offset(fused, x, d);
    const DType y_dtype = group_norm_y_dtype(x, fused), stats = arithmetic_dtype(x);
    GroupNormOut o{empty(x.shape(), y_dtype, x.device()), empty({d.n, d.g}, stats, x.device()),
                   empty({d.n, d.g}, stats, x.device())};
    if (x.numel() == 0) return o;
    if (is_bf16(x))
        run_group_norm<bf16, bf16>(d, eps, x, gamma, beta, offset, fused, o);
    else if (backend_of(x, "group_norm") == Backend::CpuF64)
        cpu::group_norm_forward<double>(d.n, d.c, d.hw, d.g, eps, x.data<double>(), opt<double>(gamma),
                                        opt<double>(beta), kernel_fusion<double>(offset, fused), o.y.data<double>(),
                                        o.mean.data<double>(), o.rstd.data<double>());
    else if (y_dtype == DType::BF16)
        run_group_norm<float, bf16>(d, eps, x, gamma, beta, offset, fused, o);
    else
        run_group_norm<float, float>(d, eps, x, gamma, beta, offset, fused, o);
    return o;
}

GroupNormGrads group_norm_backward(const Tensor& dy_in, const Tensor& x_in, const Tensor& gamma_in,
                                   const Tensor& beta_in, const Tensor& mean, const Tensor& rstd, int groups,
                                   const FusedGroupNorm& fused) {
    GroupNormDims d = group_norm_dims(x_in, gamma_in, beta_in, groups);
    const DType y_dtype = group_norm_y_dtype(x_in, fused);
    STF_CHECK(dy_in.device() == x_in.device() && dy_in.dtype() == y_dtype && dy_in.shape() == x_in.shape(),
              "group_norm_backward: gradient " << describe(dy_in) << " for input " << describe(x_in)
                                               << " (expected the forward output's shape, device and dtype "
                                               << dtype_name(y_dtype) << ")");
    for (const Tensor* t : {&mean, &rstd}) {
        check_parameter(x_in, *t, "group_norm_backward");
        STF_CHECK(t->shape() == (Shape{d.n, d.g}), "group_norm_backward: statistics " << describe(*t) << " should be ["
                                                                                      << d.n << ", " << d.g << "]");
    }
    Tensor x = contiguous(x_in), dy = contiguous(dy_in);
    Tensor gamma = opt_contiguous(gamma_in), beta = opt_contiguous(beta_in);
    Tensor m = contiguous(mean), rs = contiguous(rstd);
    Tensor offset = fused_offset(fused, x, d);
    const DType params = arithmetic_dtype(x);
    GroupNormGrads g{empty(x.shape(), x.dtype(), x.device()), Tensor(), Tensor()};
    if (gamma.defined()) g.dgamma = empty({d.c}, params, x.device());
    if (beta.defined()) g.dbeta = empty({d.c}, params, x.device());
    if (x.numel() == 0) {
        for (Tensor* t : {&g.dgamma, &g.dbeta})
            if (t->defined()) *t = zeros({d.c}, params, x.device());  // empty sums
        return g;
    }
    if (is_bf16(x))
        run_group_norm_backward<bf16, bf16>(d, x, gamma, beta, offset, fused, m, rs, dy, g);
    else if (backend_of(x, "group_norm_backward") == Backend::CpuF64)
        cpu::group_norm_backward<double>(d.n, d.c, d.hw, d.g, x.data<double>(), opt<double>(gamma), opt<double>(beta),
                                         kernel_fusion<double>(offset, fused), m.data<double>(), rs.data<double>(),
                                         dy.data<double>(), g.dx.data<double>(), opt_mut<double>(g.dgamma),
                                         opt_mut<double>(g.dbeta));
    else if (y_dtype == DType::BF16)
        run_group_norm_backward<float, bf16>(d, x, gamma, beta, offset, fused, m, rs, dy, g);
    else
        run_group_norm_backward<float, float>(d, x, gamma, beta, offset, fused, m, rs, dy, g);
    return g;
}

// ---- fused residual ----------------------------------------------------------------------------------

// The float32-arithmetic kernels on either device: a stored as TA, b as TB (float, or bf16 for mixed
// precision), y float. float64 runs only on the CPU, in scaled_residual itself.
template <class TA, class TB>
static void run_scaled_residual(int64_t n, int64_t c, int64_t inner, const Tensor& a, const Tensor& b,
                                  const Tensor& bias, double scale, Tensor& y) {
    if (a.device().is_cpu())
        cpu::scaled_residual<float, TA, TB>(n, c, inner, a.data<TA>(), b.data<TB>(), opt<float>(bias),
                                            static_cast<float>(scale), y.data<float>());
    else
        launch_cuda("scaled_residual", [&] {
            cuda::scaled_residual<TA, TB>(n, c, inner, a.data<TA>(), b.data<TB>(), opt<float>(bias),
                                          static_cast<float>(scale), y.data<float>());
        });
}

Tensor scaled_residual(const Tensor& a_in, const Tensor& b_in, const Tensor& bias_in, double scale) {
    // a + b is b + a exactly, so a bf16 b with a float32 a swaps to the one mixed kernel (bf16, float).
    if (is_bf16(b_in) && !is_bf16(a_in)) return scaled_residual(b_in, a_in, bias_in, scale);
    const bool mixed = is_bf16(a_in);
    STF_CHECK(a_in.device() == b_in.device() &&
                  (a_in.dtype() == b_in.dtype() || (mixed && b_in.dtype() == DType::F32)),
              "scaled_residual: inputs " << describe(a_in) << " and " << describe(b_in)
                                         << " (expected one device and one dtype, or bf16 with float32)");
    STF_CHECK(a_in.ndim() >= 2 && a_in.shape() == b_in.shape(),
              "scaled_residual: expected two inputs [n, c, ...] of one shape, got " << describe(a_in) << " and "
                                                                                    << describe(b_in));
    const int64_t n = a_in.size(0), c = a_in.size(1), inner = a_in.numel() / std::max<int64_t>(n * c, 1);
    if (bias_in.defined()) {
        check_parameter(a_in, bias_in, "scaled_residual");
        STF_CHECK(bias_in.shape() == Shape{c}, "scaled_residual: bias " << describe(bias_in) << " should be [" << c
                                                                        << "] for inputs " << describe(a_in));
    }
    Tensor a = contiguous(a_in), b = contiguous(b_in), bias = opt_contiguous(bias_in);
    Tensor y = empty(a.shape(), arithmetic_dtype(a), a.device());
    if (a.numel() == 0) return y;
    if (mixed && is_bf16(b))
        run_scaled_residual<bf16, bf16>(n, c, inner, a, b, bias, scale, y);
    else if (mixed)
        run_scaled_residual<bf16, float>(n, c, inner, a, b, bias, scale, y);
    else if (backend_of(a, "scaled_residual") == Backend::CpuF64)
        cpu::scaled_residual<double>(n, c, inner, a.data<double>(), b.data<double>(), opt<double>(bias), scale,
                                     y.data<double>());
    else
        run_scaled_residual<float, float>(n, c, inner, a, b, bias, scale, y);
    return y;
}

// ---- softmax ---------------------------------------------------------------------------------------

// Softmax runs over contiguous rows; another dim is first swapped to the end.
Tensor softmax(const Tensor& x_in, int dim, bool log) {
    int d = normalize_dim(dim, x_in.ndim(), "softmax");
    bool last = d == x_in.ndim() - 1;
    Tensor x = contiguous(last ? x_in : transpose(x_in, d, -1));
    Tensor y = empty(x.shape(), x.dtype(), x.device());
    int64_t cols = x.ndim() ? x.size(-1) : 1, rows = cols ? x.numel() / cols : 0;
    if (x.numel() > 0)
        dispatch(x, "softmax", [&]<class T>() { cpu::softmax_rows<T>(rows, cols, y.data<T>(), x.data<T>(), log); },
                 [&] { cuda::softmax_rows(rows, cols, y.data<float>(), x.data<float>(), log); });
    return last ? y : contiguous(transpose(y, d, -1));
}

Tensor softmax_backward(const Tensor& dy_in, const Tensor& y_in, int dim, bool log) {
    check_same(dy_in, y_in, "softmax_backward");
    int d = normalize_dim(dim, y_in.ndim(), "softmax_backward");
    bool last = d == y_in.ndim() - 1;
    Tensor dy = contiguous(last ? dy_in : transpose(dy_in, d, -1));
    Tensor y = contiguous(last ? y_in : transpose(y_in, d, -1));
    Tensor dx = empty(y.shape(), y.dtype(), y.device());
    int64_t cols = y.ndim() ? y.size(-1) : 1, rows = cols ? y.numel() / cols : 0;
    if (y.numel() > 0)
        dispatch(
            y, "softmax_backward",
            [&]<class T>() { cpu::softmax_rows_backward<T>(rows, cols, dx.data<T>(), dy.data<T>(), y.data<T>(), log); },
            [&] { cuda::softmax_rows_backward(rows, cols, dx.data<float>(), dy.data<float>(), y.data<float>(), log); });
    return last ? dx : contiguous(transpose(dx, d, -1));
}

// ---- distances -------------------------------------------------------------------------------------

Tensor sq_distances(const Tensor& y_in, const Tensor& x_in) {
    check_same(y_in, x_in, "sq_distances");
    STF_CHECK(y_in.ndim() == 2 && x_in.ndim() == 2 && y_in.size(1) == x_in.size(1),
              "sq_distances: expected y [b, d] and x [n, d], got " << describe(y_in) << " and " << describe(x_in));
    Tensor y = contiguous(y_in), x = contiguous(x_in);
    int64_t b = y.size(0), n = x.size(0), d = y.size(1);
    Tensor out = empty({b, n}, y.dtype(), y.device());
    if (out.numel() == 0) return out;
    dispatch(
        y, "sq_distances", [&]<class T>() { cpu::sq_distances<T>(b, n, d, y.data<T>(), x.data<T>(), out.data<T>()); },
        [&] { cuda::sq_distances(b, n, d, y.data<float>(), x.data<float>(), out.data<float>()); });
    return out;
}

void stf_softmax_chunk_(Tensor& dist, const Tensor& coef, StreamedSoftmax& st) {
    STF_CHECK(dist.ndim() == 2 && dist.is_contiguous(), "stf_softmax_chunk_: expected contiguous distances [b, len], got "
                                                            << describe(dist));
    const int64_t b = dist.size(0), len = dist.size(1);
    for (const Tensor* t : std::initializer_list<const Tensor*>{&coef, &st.row_max, &st.weight_sum, &st.weight_sq_sum}) {
        check_same(dist, *t, "stf_softmax_chunk_");
        STF_CHECK(t->is_contiguous() && t->numel() == b,
                  "stf_softmax_chunk_: " << describe(*t) << " should be a contiguous [" << b << "]");
    }
    check_same(dist, st.acc, "stf_softmax_chunk_");
    STF_CHECK(st.acc.ndim() == 2 && st.acc.size(0) == b && st.acc.is_contiguous(),
              "stf_softmax_chunk_: accumulator " << describe(st.acc) << " should be a contiguous [" << b << ", d]");
    const int64_t d = st.acc.size(1);
    dispatch(
        dist, "stf_softmax_chunk_",
        [&]<class T>() {
            cpu::stf_softmax_chunk<T>(b, len, d, coef.data<T>(), dist.data<T>(), st.row_max.data<T>(),
                                      st.weight_sum.data<T>(), st.weight_sq_sum.data<T>(), st.acc.data<T>());
        },
        [&] {
            cuda::stf_softmax_chunk(b, len, d, coef.data<float>(), dist.data<float>(), st.row_max.data<float>(),
                                    st.weight_sum.data<float>(), st.weight_sq_sum.data<float>(),
                                    st.acc.data<float>());
        });
}

// ---- joining and padding ---------------------------------------------------------------------------

Tensor cat(const std::vector<Tensor>& xs, int dim) {
    STF_CHECK(!xs.empty(), "cat: no tensors given");
    const Tensor& first = xs[0];
    int d = normalize_dim(dim, first.ndim(), "cat");
    Shape shape = first.shape();
    shape[d] = 0;
    for (const Tensor& x : xs) {
        check_same(first, x, "cat");
        bool match = x.ndim() == first.ndim();
        for (int i = 0; match && i < x.ndim(); ++i) match = i == d || x.shape()[i] == first.shape()[i];
        STF_CHECK(match, "cat: " << describe(x) << " does not match " << describe(first) << " outside dim " << d);
        shape[d] += x.shape()[d];
    }
    Tensor out = empty(shape, first.dtype(), first.device());
    int64_t at = 0;
    for (const Tensor& x : xs) {
        Tensor slot = narrow(out, d, at, x.shape()[d]);
        copy_(slot, x);
        at += x.shape()[d];
    }
    return out;
}

Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads, double value) {
    STF_CHECK(static_cast<int>(pads.size()) <= x.ndim(), "pad: " << pads.size() << " pads for " << describe(x));
    Shape shape = x.shape();
    for (size_t d = 0; d < pads.size(); ++d) {
        STF_CHECK(pads[d].first >= 0 && pads[d].second >= 0, "pad: negative padding on dim " << d);
        shape[d] += pads[d].first + pads[d].second;
    }
    Tensor out = full(shape, value, x.dtype(), x.device());
    Tensor inner = out;
    for (size_t d = 0; d < pads.size(); ++d) inner = narrow(inner, static_cast<int>(d), pads[d].first, x.shape()[d]);
    copy_(inner, x);
    return out;
}

// ---- optimiser steps -------------------------------------------------------------------------------

static void check_optimiser_operand(const Tensor& t, const Tensor& like, const char* op, const char* what) {
    check_same(t, like, op);
    STF_CHECK(t.shape() == like.shape(), op << ": " << what << " " << describe(t) << " does not match " << describe(like));
    STF_CHECK(t.is_contiguous(), op << ": " << what << " must be contiguous, got " << describe(t));
}

// One Adam operand set: p contiguous, and g, m, v of p's shape, dtype and device, contiguous too.
static void check_adam_operands(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const char* op) {
    check_optimiser_operand(p, p, op, "parameter");
    check_optimiser_operand(g, p, op, "gradient");
    check_optimiser_operand(m, p, op, "first moment");
    check_optimiser_operand(v, p, op, "second moment");
}

static void check_ema_operands(const Tensor& ema, const Tensor& net, const char* op) {
    check_optimiser_operand(ema, ema, op, "EMA tensor");
    check_optimiser_operand(net, ema, op, "network tensor");
}

static void check_adam_lists(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                             const std::vector<Tensor>& v, const char* op) {
    STF_CHECK(g.size() == p.size() && m.size() == p.size() && v.size() == p.size(),
              op << ": " << p.size() << " parameters, " << g.size() << " gradients, " << m.size() << " and " << v.size()
                 << " moments");
}

static void check_ema_lists(const std::vector<Tensor>& ema, const std::vector<Tensor>& net, const char* op) {
    STF_CHECK(net.size() == ema.size(), op << ": " << ema.size() << " EMA tensors, " << net.size() << " network tensors");
}

template <class T> static optim::AdamConstants<T> adam_constants(const AdamStep& s) {
    const double t = static_cast<double>(s.t);
    const double bias1 = 1 - std::pow(s.beta1, t), bias2 = 1 - std::pow(s.beta2, t);
    return {static_cast<T>(s.beta1), static_cast<T>(1 - s.beta1), static_cast<T>(s.beta2),
            static_cast<T>(1 - s.beta2), static_cast<T>(1 / bias2),  static_cast<T>(-s.lr / bias1),
            static_cast<T>(s.eps)};
}

void adam_update_(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamStep& step) {
    const char* op = "adam_update_";
    STF_CHECK(step.t >= 1, op << ": step number " << step.t << " must be at least 1");
    check_adam_operands(p, g, m, v, op);
    const int64_t n = p.numel();
    dispatch(
        p, op,
        [&]<class T>() {
            cpu::adam_update<T>(n, p.data<T>(), g.data<T>(), m.data<T>(), v.data<T>(), adam_constants<T>(step));
        },
        [&] {
            cuda::adam_update(n, p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(),
                              adam_constants<float>(step));
        });
}

// Whether one multi-tensor launch can update these tensors in place: all on one CUDA device with one
// dtype, and in distinct storages (a parameter listed twice, or two views of one tensor, would race
// within the launch). Otherwise the *_many_ ops run the per-tensor op on each.
static bool one_cuda_launch(const std::vector<Tensor>& ts) {
    std::set<const void*> seen;
    for (const Tensor& t : ts)
        if (!t.device().is_cuda() || t.device() != ts[0].device() || t.dtype() != ts[0].dtype() ||
            !seen.insert(t.storage().get()).second)
            return false;
    return true;
}

void adam_update_many_(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                       const std::vector<Tensor>& v, const AdamStep& step) {
    const char* op = "adam_update_many_";
    check_adam_lists(p, g, m, v, op);
    if (p.empty()) return;
    if (!one_cuda_launch(p)) {
        for (size_t i = 0; i < p.size(); ++i) {
            Tensor pi = p[i], mi = m[i], vi = v[i];
            adam_update_(pi, g[i], mi, vi, step);
        }
        return;
    }
    STF_CHECK(step.t >= 1, op << ": step number " << step.t << " must be at least 1");
    std::vector<cuda::AdamOperands> table;
    for (size_t i = 0; i < p.size(); ++i) {
        check_adam_operands(p[i], g[i], m[i], v[i], op);
        table.push_back({p[i].data<float>(), g[i].data<float>(), m[i].data<float>(), v[i].data<float>(), p[i].numel()});
    }
    STF_CHECK(backend_of(p[0], op) == Backend::CudaF32, op << ": CUDA tensors must be float32");
    launch_cuda(op, [&] {
        cuda::adam_update_many(table.data(), static_cast<int64_t>(table.size()), adam_constants<float>(step));
    });
}

void ema_update_many_(const std::vector<Tensor>& ema, const std::vector<Tensor>& net, double beta) {
    const char* op = "ema_update_many_";
    check_ema_lists(ema, net, op);
    if (ema.empty()) return;
    if (!one_cuda_launch(ema)) {
        for (size_t i = 0; i < ema.size(); ++i) {
            Tensor e = ema[i];
            ema_update_(e, net[i], beta);
        }
        return;
    }
    std::vector<cuda::EmaOperands> table;
    for (size_t i = 0; i < ema.size(); ++i) {
        check_ema_operands(ema[i], net[i], op);
        table.push_back({ema[i].data<float>(), net[i].data<float>(), ema[i].numel()});
    }
    STF_CHECK(backend_of(ema[0], op) == Backend::CudaF32, op << ": CUDA tensors must be float32");
    launch_cuda(op, [&] {
        cuda::ema_update_many(table.data(), static_cast<int64_t>(table.size()), static_cast<float>(beta));
    });
}

// ---- the graph-ready forms: constants read from memory --------------------------------------------

static_assert(sizeof(optim::AdamConstants<float>) == kAdamConstants * sizeof(float) &&
                  sizeof(optim::AdamConstants<double>) == kAdamConstants * sizeof(double),
              "AdamConstants is read from a tensor of kAdamConstants values");

static void check_constants(const Tensor& constants, const Tensor& like, int64_t count, const char* op,
                            const char* what) {
    STF_CHECK(constants.defined() && constants.device() == like.device() && constants.dtype() == like.dtype() &&
                  constants.is_contiguous() && constants.numel() == count,
              op << ": " << what << " must be a contiguous tensor of " << count << " values of the updated tensors' "
                 << "dtype and device (" << describe(like) << "), got "
                 << (constants.defined() ? describe(constants) : std::string("an undefined tensor")));
}

template <class T> static optim::AdamConstants<T> constants_on_host(const Tensor& constants) {
    optim::AdamConstants<T> k;
    std::memcpy(&k, constants.data<T>(), sizeof k);
    return k;
}

static const optim::AdamConstants<float>* constants_on_device(const Tensor& constants) {
    return reinterpret_cast<const optim::AdamConstants<float>*>(constants.data<float>());
}

void write_adam_constants_(Tensor& constants, const AdamStep& step) {
    const char* op = "write_adam_constants_";
    STF_CHECK(step.t >= 1, op << ": step number " << step.t << " must be at least 1");
    STF_CHECK(constants.defined() && constants.is_contiguous() && constants.numel() == kAdamConstants,
              op << ": needs a contiguous tensor of " << kAdamConstants << " values, got "
                 << (constants.defined() ? describe(constants) : std::string("an undefined tensor")));
    dispatch(
        constants, op,
        [&]<class T>() {
            const optim::AdamConstants<T> k = adam_constants<T>(step);
            std::memcpy(constants.data<T>(), &k, sizeof k);
        },
        [&] {
            const optim::AdamConstants<float> k = adam_constants<float>(step);
            cuda::copy_host_to_device(constants.data<float>(), &k, sizeof k);
        });
}

void adam_update_many_(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                       const std::vector<Tensor>& v, const Tensor& constants) {
    const char* op = "adam_update_many_";
    check_adam_lists(p, g, m, v, op);
    if (p.empty()) return;
    check_constants(constants, p[0], kAdamConstants, op, "the Adam constants");
    std::vector<cuda::AdamOperands> table;
    for (size_t i = 0; i < p.size(); ++i) {
        check_same(p[i], p[0], op);
        check_adam_operands(p[i], g[i], m[i], v[i], op);
    }
    const bool one_launch = one_cuda_launch(p);
    for (size_t i = 0; i < p.size(); ++i) {
        const int64_t n = p[i].numel();
        dispatch(
            p[i], op,
            [&]<class T>() {
                cpu::adam_update<T>(n, p[i].data<T>(), g[i].data<T>(), m[i].data<T>(), v[i].data<T>(),
                                    constants_on_host<T>(constants));
            },
            [&] {
                table.push_back({p[i].data<float>(), g[i].data<float>(), m[i].data<float>(), v[i].data<float>(), n});
                // A tensor listed twice (or sharing storage) is updated twice, one launch after the other.
                if (!one_launch) cuda::adam_update_many(&table.back(), 1, constants_on_device(constants));
            });
    }
    if (one_launch)
        launch_cuda(op, [&] {
            cuda::adam_update_many(table.data(), static_cast<int64_t>(table.size()), constants_on_device(constants));
        });
}

void ema_update_many_(const std::vector<Tensor>& ema, const std::vector<Tensor>& net, const Tensor& beta) {
    const char* op = "ema_update_many_";
    check_ema_lists(ema, net, op);
    if (ema.empty()) return;
    check_constants(beta, ema[0], 1, op, "beta");
    for (size_t i = 0; i < ema.size(); ++i) {
        check_same(ema[i], ema[0], op);
        check_ema_operands(ema[i], net[i], op);
    }
    std::vector<cuda::EmaOperands> table;
    const bool one_launch = one_cuda_launch(ema);
    for (size_t i = 0; i < ema.size(); ++i) {
        const int64_t n = ema[i].numel();
        dispatch(
            ema[i], op, [&]<class T>() { cpu::ema_update<T>(n, ema[i].data<T>(), net[i].data<T>(), *beta.data<T>()); },
            [&] {
                table.push_back({ema[i].data<float>(), net[i].data<float>(), n});
                if (!one_launch) cuda::ema_update_many(&table.back(), 1, beta.data<float>());
            });
    }
    if (one_launch)
        launch_cuda(op, [&] { cuda::ema_update_many(table.data(), static_cast<int64_t>(table.size()), beta.data<float>()); });
}

void nan_to_num_many_(const std::vector<Tensor>& xs, double inf_value) {
    const char* op = "nan_to_num_many_";
    if (xs.empty()) return;
    if (!one_cuda_launch(xs)) {
        for (const Tensor& x : xs) {
            Tensor t = x;
            STF_CHECK(t.is_contiguous(), op << ": tensors must be contiguous, got " << describe(t));
            unary_(UnaryOp::NanToNum, t, inf_value);
        }
        return;
    }
    std::vector<cuda::GuardOperands> table;
    for (const Tensor& x : xs) {
        STF_CHECK(x.is_contiguous(), op << ": tensors must be contiguous, got " << describe(x));
        table.push_back({x.data<float>(), x.numel()});
    }
    STF_CHECK(backend_of(xs[0], op) == Backend::CudaF32, op << ": CUDA tensors must be float32");
    launch_cuda(op, [&] {
        cuda::nan_to_num_many(table.data(), static_cast<int64_t>(table.size()), static_cast<float>(inf_value));
    });
}

void ema_update_(Tensor& ema, const Tensor& net, double beta) {
    const char* op = "ema_update_";
    check_ema_operands(ema, net, op);
    const int64_t n = ema.numel();
    dispatch(ema, op, [&]<class T>() { cpu::ema_update<T>(n, ema.data<T>(), net.data<T>(), static_cast<T>(beta)); },
             [&] { cuda::ema_update(n, ema.data<float>(), net.data<float>(), static_cast<float>(beta)); });
}

}  // namespace stf::ops
