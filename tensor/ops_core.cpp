// Raw ops: creation, movement, views, elementwise and reductions. See tensor/ops.h.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace stf::ops {

using detail::check_same;
using detail::dispatch;
using detail::launch_cuda;
using detail::layout_of;

// ---- creation --------------------------------------------------------------------------------------

Tensor empty(const Shape& shape, DType dtype, Device device) { return Tensor::empty(shape, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
    if (dtype == DType::BF16) return to(full(shape, value, DType::F32, device), DType::BF16);
    Tensor t = empty(shape, dtype, device);
    int64_t n = t.numel();
    dispatch(t, "full", [&]<class T>() { cpu::fill<T>(n, t.data<T>(), static_cast<T>(value)); },
             [&] { cuda::fill(n, t.data<float>(), static_cast<float>(value)); });
    return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
    STF_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
              "from_vector: " << values.size() << " values for shape " << shape_str(shape));
    Tensor host = empty(shape, DType::F64, Device::cpu());
    std::copy(values.begin(), values.end(), host.data<double>());
    return to(to(host, dtype), device);
}

Tensor arange(int64_t n, DType dtype, Device device) {
    std::vector<double> v(n);
    std::iota(v.begin(), v.end(), 0.0);
    return from_vector(v, {n}, dtype, device);
}

// One op's stream; a keyed generator gives each row (sample) of the draw its own (tensor/random.h).
// A generator keyed to a row key in memory (tensor/random.h) draws only on the key's device.
static Generator::Stream draw_stream(const Shape& shape, Generator& gen, Device device) {
    const RowKey* key = gen.row_key();
    STF_CHECK(!key || key->device() == device, "a draw on " << device.str() << " from a generator keyed to a row key on "
                                                            << key->device().str()
                                                            << ": the key must live on the draw's device");
    int64_t rows = !shape.empty() && shape[0] > 0 ? shape[0] : 1;
    return gen.next_draw(shape_numel(shape), rows);
}
static Generator::Stream draw_stream(const Tensor& t, Generator& gen) { return draw_stream(t.shape(), gen, t.device()); }

DropoutStream dropout_stream(const Shape& shape, double p, Generator& gen, Device device) {
    STF_CHECK(p > 0 && p < 1, "dropout_stream: probability " << p << " outside (0, 1)");
    const uint64_t seed = gen.seed();
    const Generator::Stream st = draw_stream(shape, gen, device);
    return {1.0 - p, 1.0 / (1.0 - p), seed, st.offset, st.row_len, st.row_stride, st.offset_base};
}

void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
    STF_CHECK(t.is_contiguous(), "uniform_: tensor must be contiguous, got " << describe(t));
    const uint64_t seed = gen.seed();
    const Generator::Stream st = draw_stream(t, gen);
    int64_t n = t.numel();
    dispatch(
        t, "uniform_",
        [&]<class T>() { cpu::uniform<T>(n, t.data<T>(), lo, hi, seed, st.offset, st.row_len, st.row_stride, st.offset_base); },
        [&] {
            cuda::uniform(n, t.data<float>(), static_cast<float>(lo), static_cast<float>(hi), seed, st.offset,
                          st.row_len, st.row_stride, st.offset_base);
        });
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
    STF_CHECK(t.is_contiguous(), "normal_: tensor must be contiguous, got " << describe(t));
    const uint64_t seed = gen.seed();
    const Generator::Stream st = draw_stream(t, gen);
    int64_t n = t.numel();
    dispatch(
        t, "normal_",
        [&]<class T>() { cpu::normal<T>(n, t.data<T>(), mean, std, seed, st.offset, st.row_len, st.row_stride, st.offset_base); },
        [&] {
            cuda::normal(n, t.data<float>(), static_cast<float>(mean), static_cast<float>(std), seed, st.offset,
                         st.row_len, st.row_stride, st.offset_base);
        });
}

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    uniform_(t, 0.0, 1.0, gen);
    return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    normal_(t, 0.0, 1.0, gen);
    return t;
}

Tensor bernoulli(const Shape& shape, double p, Generator& gen, DType dtype, Device device) {
    STF_CHECK(p >= 0 && p <= 1, "bernoulli: probability " << p << " outside [0, 1]");
    Tensor t = empty(shape, dtype, device);
    const uint64_t seed = gen.seed();
    const Generator::Stream st = draw_stream(t, gen);
    int64_t n = t.numel();
    dispatch(
        t, "bernoulli",
        [&]<class T>() { cpu::bernoulli<T>(n, t.data<T>(), p, seed, st.offset, st.row_len, st.row_stride, st.offset_base); },
        [&] {
            cuda::bernoulli(n, t.data<float>(), static_cast<float>(p), seed, st.offset, st.row_len, st.row_stride,
                            st.offset_base);
        });
    return t;
}

// ---- movement and conversion -----------------------------------------------------------------------

static void copy_layouts(const Tensor& dst, const StridedLayout& ld, const Tensor& src, const StridedLayout& ls) {
    int64_t n = ld.numel();
    if (n == 0) return;
    size_t es = dtype_size(dst.dtype());
    if (dst.device().is_cpu()) cpu::copy_strided(n, es, dst.raw_data(), ld, src.raw_data(), ls);
    else launch_cuda("copy", [&] { cuda::copy_strided(n, es, dst.raw_data(), ld, src.raw_data(), ls); });
}

Tensor contiguous(const Tensor& t) {
    if (t.is_contiguous()) return t;
    Tensor out = empty(t.shape(), t.dtype(), t.device());
    copy_layouts(out, layout_of(out), t, layout_of(t));
    return out;
}

Tensor clone(const Tensor& t) {
    Tensor out = empty(t.shape(), t.dtype(), t.device());
    copy_layouts(out, layout_of(out), t, layout_of(t));
    return out;
}

static StridedLayout broadcast_layout(const Tensor& t, const Shape& out, const char* op) {
    Tensor e = expand(t, out);
    (void)op;
    return layout_of(e);
}

void zero_(Tensor& t) {
    STF_CHECK(t.is_contiguous(), "zero_: tensor must be contiguous, got " << describe(t));
    const size_t bytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    if (t.device().is_cuda())
        cuda::memset_zero(t.raw_data(), bytes);
    else if (bytes > 0)
        std::memset(t.raw_data(), 0, bytes);  // +0.0 in every dtype stf has
}

void copy_(Tensor& dst, const Tensor& src) {
    Tensor s = src;
    if (s.device() != dst.device()) s = to(s, dst.device());
    if (s.dtype() != dst.dtype()) s = to(s, dst.dtype());
    copy_layouts(dst, layout_of(dst), s, broadcast_layout(s, dst.shape(), "copy_"));
}

Tensor to(const Tensor& t, Device device) {
    if (t.device() == device) return t;
    Tensor src = contiguous(t);
    Tensor out = empty(t.shape(), t.dtype(), device);
    size_t bytes = t.numel() * dtype_size(t.dtype());
    if (bytes == 0) return out;
    if (device.is_cuda() && src.device().is_cpu()) cuda::copy_host_to_device(out.raw_data(), src.raw_data(), bytes);
    else if (device.is_cpu() && src.device().is_cuda()) cuda::copy_device_to_host(out.raw_data(), src.raw_data(), bytes);
    else cuda::copy_device_to_device(out.raw_data(), src.raw_data(), bytes);
    return out;
}

Tensor to(const Tensor& t, DType dtype) {
    if (t.dtype() == dtype) return t;
    Tensor src = contiguous(t);
    Tensor out = empty(t.shape(), dtype, t.device());
    int64_t n = t.numel();
    if (t.device().is_cpu()) {
        cpu::convert(n, out.raw_data(), static_cast<int>(dtype), src.raw_data(), static_cast<int>(t.dtype()));
        return out;
    }
    if (t.dtype() == DType::F32 && dtype == DType::BF16)
        launch_cuda("to", [&] { cuda::f32_to_bf16(n, out.data<uint16_t>(), src.data<float>()); });
    else if (t.dtype() == DType::BF16 && dtype == DType::F32)
        launch_cuda("to", [&] { cuda::bf16_to_f32(n, out.data<float>(), src.data<uint16_t>()); });
    else
        throw Error(std::string("to: conversion ") + dtype_name(t.dtype()) + " -> " + dtype_name(dtype) +
                    " is not supported on CUDA (float64 is CPU only)");
    return out;
}

// ---- views -----------------------------------------------------------------------------------------

static Tensor make_view(const Tensor& t, Shape sizes, Shape strides, int64_t offset) {
    return Tensor::view_of(t.storage(), std::move(sizes), std::move(strides), offset, t.dtype());
}

Tensor reshape(const Tensor& t, Shape shape) {
    int64_t known = 1;
    int infer = -1;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] == -1) {
            STF_CHECK(infer < 0, "reshape: more than one -1 in " << shape_str(shape));
            infer = static_cast<int>(d);
        } else {
            STF_CHECK(shape[d] >= 0, "reshape: negative size in " << shape_str(shape));
            known *= shape[d];
        }
    }
    if (infer >= 0) {
        STF_CHECK(known > 0 && t.numel() % known == 0,
                  "reshape: cannot reshape " << describe(t) << " into " << shape_str(shape));
        shape[infer] = t.numel() / known;
    }
    STF_CHECK(shape_numel(shape) == t.numel(), "reshape: cannot reshape " << describe(t) << " (" << t.numel()
                                                                           << " elements) into " << shape_str(shape));
    Tensor src = contiguous(t);
    return make_view(src, shape, contiguous_strides(shape), src.offset());
}

Tensor narrow(const Tensor& t, int dim, int64_t start, int64_t length) {
    int d = normalize_dim(dim, t.ndim(), "narrow");
    STF_CHECK(start >= 0 && length >= 0 && start + length <= t.shape()[d],
              "narrow: range [" << start << ", " << start + length << ") outside dim " << d << " of " << describe(t));
    Shape sizes = t.shape();
    sizes[d] = length;
    return make_view(t, sizes, t.strides(), t.offset() + start * t.strides()[d]);
}

Tensor permute(const Tensor& t, const std::vector<int>& dims) {
    STF_CHECK(static_cast<int>(dims.size()) == t.ndim(),
              "permute: " << dims.size() << " dims given for " << describe(t));
    std::vector<bool> seen(t.ndim(), false);
    Shape sizes(t.ndim()), strides(t.ndim());
    for (int i = 0; i < t.ndim(); ++i) {
        int d = normalize_dim(dims[i], t.ndim(), "permute");
        STF_CHECK(!seen[d], "permute: dim " << d << " repeated");
        seen[d] = true;
        sizes[i] = t.shape()[d];
        strides[i] = t.strides()[d];
    }
    return make_view(t, sizes, strides, t.offset());
}

Tensor transpose(const Tensor& t, int d0, int d1) {
    std::vector<int> dims(t.ndim());
    std::iota(dims.begin(), dims.end(), 0);
    std::swap(dims[normalize_dim(d0, t.ndim(), "transpose")], dims[normalize_dim(d1, t.ndim(), "transpose")]);
    return permute(t, dims);
}

Tensor expand(const Tensor& t, const Shape& shape) {
    int nd = static_cast<int>(shape.size()), lead = nd - t.ndim();
    STF_CHECK(lead >= 0, "expand: cannot expand " << describe(t) << " to fewer dims " << shape_str(shape));
    Shape strides(nd, 0);
    for (int d = 0; d < t.ndim(); ++d) {
        int64_t have = t.shape()[d], want = shape[lead + d];
        STF_CHECK(have == want || have == 1,
                  "expand: cannot broadcast " << describe(t) << " to " << shape_str(shape));
        strides[lead + d] = have == want ? t.strides()[d] : 0;
    }
    return make_view(t, shape, strides, t.offset());
}

Tensor unsqueeze(const Tensor& t, int dim) {
    int d = normalize_dim(dim, t.ndim() + 1, "unsqueeze");
    Shape sizes = t.shape(), strides = t.strides();
    int64_t st = d < t.ndim() ? t.strides()[d] * t.shape()[d] : 1;
    sizes.insert(sizes.begin() + d, 1);
    strides.insert(strides.begin() + d, st);
    return make_view(t, sizes, strides, t.offset());
}

Tensor squeeze(const Tensor& t, int dim) {
    int d = normalize_dim(dim, t.ndim(), "squeeze");
    STF_CHECK(t.shape()[d] == 1, "squeeze: dim " << d << " of " << describe(t) << " is not 1");
    Shape sizes = t.shape(), strides = t.strides();
    sizes.erase(sizes.begin() + d);
    strides.erase(strides.begin() + d);
    return make_view(t, sizes, strides, t.offset());
}

// ---- elementwise -----------------------------------------------------------------------------------

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    size_t nd = std::max(a.size(), b.size());
    Shape out(nd);
    for (size_t i = 0; i < nd; ++i) {
        int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
        int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
        STF_CHECK(da == db || da == 1 || db == 1,
                  op << ": shapes " << shape_str(a) << " and " << shape_str(b) << " do not broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

static void run_unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha, double beta) {
    int64_t n = out.numel();
    if (n == 0) return;
    StridedLayout lx = layout_of(x);
    dispatch(
        x, "unary", [&]<class T>() { cpu::unary<T>(op, n, out.data<T>(), x.data<T>(), lx, alpha, beta); },
        [&] {
            cuda::unary(op, n, out.data<float>(), x.data<float>(), lx, static_cast<float>(alpha),
                        static_cast<float>(beta));
        });
}

static void run_binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha, double beta) {
    int64_t n = out.numel();
    if (n == 0) return;
    StridedLayout la = broadcast_layout(a, out.shape(), "binary"), lb = broadcast_layout(b, out.shape(), "binary");
    dispatch(
        a, "binary",
        [&]<class T>() { cpu::binary<T>(op, n, out.data<T>(), a.data<T>(), la, b.data<T>(), lb, alpha, beta); },
        [&] {
            cuda::binary(op, n, out.data<float>(), a.data<float>(), la, b.data<float>(), lb,
                         static_cast<float>(alpha), static_cast<float>(beta));
        });
}

Tensor unary(UnaryOp op, const Tensor& x, double alpha, double beta) {
    Tensor out = empty(x.shape(), x.dtype(), x.device());
    run_unary(op, out, x, alpha, beta);
    return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha, double beta) {
    check_same(a, b, "binary op");
    Tensor out = empty(broadcast_shapes(a.shape(), b.shape(), "binary op"), a.dtype(), a.device());
    run_binary(op, out, a, b, alpha, beta);
    return out;
}

void unary_(UnaryOp op, Tensor& x, double alpha, double beta) {
    STF_CHECK(x.is_contiguous(), "in-place unary op needs a contiguous tensor, got " << describe(x));
    run_unary(op, x, x, alpha, beta);
}

void binary_(BinaryOp op, Tensor& a, const Tensor& b, double alpha, double beta) {
    check_same(a, b, "in-place binary op");
    STF_CHECK(a.is_contiguous(), "in-place binary op needs a contiguous tensor, got " << describe(a));
    STF_CHECK(broadcast_shapes(a.shape(), b.shape(), "in-place binary op") == a.shape(),
              "in-place binary op: " << describe(b) << " does not broadcast to " << describe(a));
    run_binary(op, a, a, b, alpha, beta);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
    check_same(a, b, "where");
    check_same(cond, a, "where");
    Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
    Tensor out = empty(shape, a.dtype(), a.device());
    int64_t n = out.numel();
    if (n == 0) return out;
    StridedLayout lc = broadcast_layout(cond, shape, "where"), la = broadcast_layout(a, shape, "where"),
                  lb = broadcast_layout(b, shape, "where");
    dispatch(
        a, "where",
        [&]<class T>() { cpu::where<T>(n, out.data<T>(), cond.data<T>(), lc, a.data<T>(), la, b.data<T>(), lb); },
        [&] {
            cuda::where(n, out.data<float>(), cond.data<float>(), lc, a.data<float>(), la, b.data<float>(), lb);
        });
    return out;
}

// ---- reductions ------------------------------------------------------------------------------------

static std::vector<int> normalized_dims(std::vector<int> dims, int ndim, const char* op) {
    if (dims.empty()) {
        dims.resize(ndim);
        std::iota(dims.begin(), dims.end(), 0);
    }
    for (int& d : dims) d = normalize_dim(d, ndim, op);
    std::sort(dims.begin(), dims.end());
    STF_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op << ": repeated dim");
    return dims;
}

static void run_reduce(ReduceOp op, const Tensor& out, const Tensor& x, int64_t outer, int64_t r, int64_t inner) {
    dispatch(x, "reduce", [&]<class T>() { cpu::reduce<T>(op, outer, r, inner, out.data<T>(), x.data<T>()); },
             [&] { cuda::reduce(op, outer, r, inner, out.data<float>(), x.data<float>()); });
}

Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int> dims, bool keepdim) {
    const char* name = op == ReduceOp::Sum ? "sum" : "max";
    dims = normalized_dims(dims, x.ndim(), name);
    std::vector<bool> reduced(x.ndim(), false);
    for (int d : dims) reduced[d] = true;
    Shape out_shape, kept_shape;
    int64_t r = 1;
    for (int d = 0; d < x.ndim(); ++d) {
        if (reduced[d]) {
            r *= x.shape()[d];
            if (keepdim) out_shape.push_back(1);
        } else {
            out_shape.push_back(x.shape()[d]);
            kept_shape.push_back(x.shape()[d]);
        }
    }
    if (r == 0) {
        STF_CHECK(op == ReduceOp::Sum, "max: reduction over zero elements of " << describe(x));
        return zeros(out_shape, x.dtype(), x.device());
    }
    Tensor out = empty(out_shape, x.dtype(), x.device());
    if (out.numel() == 0) return out;
    // Adjacent reduced dims reduce in place as the middle of [outer, r, inner]; others are moved last first.
    bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == static_cast<int>(dims.size());
    if (adjacent) {
        Tensor xc = contiguous(x);
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < (dims.empty() ? x.ndim() : dims.front()); ++d) outer *= x.shape()[d];
        for (int d = dims.empty() ? x.ndim() : dims.back() + 1; d < x.ndim(); ++d) inner *= x.shape()[d];
        run_reduce(op, out, xc, outer, r, inner);
    } else {
        std::vector<int> order;
        for (int d = 0; d < x.ndim(); ++d)
            if (!reduced[d]) order.push_back(d);
        for (int d : dims) order.push_back(d);
        Tensor xc = contiguous(permute(x, order));
        run_reduce(op, out, xc, shape_numel(kept_shape), r, 1);
    }
    return out;
}

Tensor sum(const Tensor& x, std::vector<int> dims, bool keepdim) { return reduce(ReduceOp::Sum, x, dims, keepdim); }
Tensor max(const Tensor& x, std::vector<int> dims, bool keepdim) { return reduce(ReduceOp::Max, x, dims, keepdim); }

Tensor mean(const Tensor& x, std::vector<int> dims, bool keepdim) {
    std::vector<int> nd = normalized_dims(dims, x.ndim(), "mean");
    int64_t r = 1;
    for (int d : nd) r *= x.shape()[d];
    STF_CHECK(r > 0, "mean: reduction over zero elements of " << describe(x));
    Tensor s = sum(x, nd, keepdim);
    unary_(UnaryOp::MulScalar, s, 1.0 / static_cast<double>(r));
    return s;
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
    if (x.shape() == shape) return x;
    int lead = x.ndim() - static_cast<int>(shape.size());
    STF_CHECK(lead >= 0, "sum_to_shape: " << describe(x) << " has fewer dims than " << shape_str(shape));
    std::vector<int> dims;
    for (int d = 0; d < x.ndim(); ++d)
        if (d < lead || (shape[d - lead] == 1 && x.shape()[d] != 1)) dims.push_back(d);
        else STF_CHECK(shape[d - lead] == x.shape()[d], "sum_to_shape: " << describe(x) << " does not reduce to "
                                                                          << shape_str(shape));
    Tensor s = dims.empty() ? x : sum(x, dims, true);
    return reshape(s, shape);
}

}  // namespace stf::ops
