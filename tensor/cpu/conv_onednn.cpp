// oneDNN convolutions behind conv.cpp's kernel interface (why and at what cost: conv_onednn.h).
//
// One primitive per (pass, layout, shape), built on first use and kept per thread, so a training step
// builds none. Reorders between NCHW and the primitive's layouts, and the primitives' scratchpads, go
// through four per-thread buffers shared by every cached primitive (calls on one thread are serial),
// so their memory is that of the largest shape, not the sum over shapes.
#include "tensor/cpu/conv_onednn.h"

#if STF_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

// Another threading runtime (TBB, threadpool) would bring a second pool of threads spinning against
// libgomp's, which our kernels and OpenBLAS use: build with -DSTF_ONEDNN=OFF rather than that.
static_assert(DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP, "stf needs oneDNN built on OpenMP (DNNL_CPU_RUNTIME OMP)");

namespace stf::cpu::onednn {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

enum class Pass { forward, backward_data, backward_weight };

dnnl::engine& engine() {
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
}

dnnl::stream& stream() {
    thread_local dnnl::stream s(engine());
    return s;
}

// A growable, 64-byte aligned buffer (oneDNN's JIT kernels load whole cache lines).
class Buffer {
public:
    void* reserve(size_t bytes) {
        if (bytes > size_) {
            data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
            if (!data_) throw std::bad_alloc();
            size_ = bytes;
        }
        return data_.get();
    }

private:
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> data_;
    size_t size_ = 0;
};

// The user's NCHW tensors and the convolution's geometry in oneDNN's terms.
struct Geometry {
    memory::desc x, w, y;  // plain: nchw input, (g)oihw weight, nchw output
    memory::dims strides, pad_l, pad_r;
};

// Empty where oneDNN cannot express the shape as given: an empty tensor, or a stride that leaves
// input rows beyond the last window (a negative right padding).
std::optional<Geometry> geometry(const ConvShape& s) {
    const int64_t p = s.out_h(), q = s.out_w();
    const int64_t pad_b = (p - 1) * s.stride_h + s.r - s.h - s.pad_h;
    const int64_t pad_r = (q - 1) * s.stride_w + s.s - s.w - s.pad_w;
    if (s.n <= 0 || s.c <= 0 || s.k <= 0 || p <= 0 || q <= 0 || s.groups < 1 || pad_b < 0 || pad_r < 0)
        return std::nullopt;
    const auto f32 = memory::data_type::f32;
    Geometry g;
    g.x = memory::desc({s.n, s.c, s.h, s.w}, f32, Tag::nchw);
    g.y = memory::desc({s.n, s.k, p, q}, f32, Tag::nchw);
    g.w = s.groups == 1 ? memory::desc({s.k, s.c, s.r, s.s}, f32, Tag::oihw)
                        : memory::desc({s.groups, s.k / s.groups, s.c / s.groups, s.r, s.s}, f32, Tag::goihw);
    g.strides = {s.stride_h, s.stride_w};
    g.pad_l = {s.pad_h, s.pad_w};
    g.pad_r = {pad_b, pad_r};
    return g;
}

// The descriptor a primitive is asked to work on: the user's own, or "any" to let oneDNN choose.
memory::desc chosen(const memory::desc& user, bool any) {
    return any ? memory::desc(user.dims(), user.data_type(), Tag::any) : user;
}

// One argument of a primitive: the user's memory and, where the primitive wants another layout, the
// memory it works on (in a shared buffer) with the reorder between the two.
struct Operand {
    int arg = 0;
    memory user, inner;
    dnnl::reorder reorder;  // user -> inner for an input, inner -> user for the output
    bool reordered = false;
    int slot = 0;           // which per-thread buffer inner lives in

    Operand(int arg_, const memory::desc& user_md, const memory::desc& want, bool output, int slot_)
        : arg(arg_), user(user_md, engine(), DNNL_MEMORY_NONE), reordered(want != user_md), slot(slot_) {
        if (!reordered) return;
        inner = memory(want, engine(), DNNL_MEMORY_NONE);
        reorder = output ? dnnl::reorder(inner, user) : dnnl::reorder(user, inner);
    }
};

// Slots 0-2: the operands' reordered copies; slot 3: the scratchpad.
constexpr int kScratchpadSlot = 3;

Buffer& buffer(int slot) {
    thread_local std::array<Buffer, 4> buffers;
    return buffers[static_cast<size_t>(slot)];
}

// A primitive with its two inputs, its output and its scratchpad. The argument map holds handles to
// those memories, so pointing them at this call's data updates it.
struct Conv {
    dnnl::primitive primitive;
    Operand a, b, out;
    memory scratchpad;
    std::unordered_map<int, memory> args;

    Conv(dnnl::primitive p, Operand a_, Operand b_, Operand out_, const memory::desc& scratchpad_md)
        : primitive(std::move(p)), a(std::move(a_)), b(std::move(b_)), out(std::move(out_)),
          scratchpad(scratchpad_md, engine(), DNNL_MEMORY_NONE) {
        for (Operand* op : {&a, &b, &out}) args[op->arg] = op->reordered ? op->inner : op->user;
        args[DNNL_ARG_SCRATCHPAD] = scratchpad;
    }

    void run(const void* a_ptr, const void* b_ptr, void* out_ptr) {
        auto& s = stream();
        for (auto [op, ptr] : {std::pair{&a, const_cast<void*>(a_ptr)}, std::pair{&b, const_cast<void*>(b_ptr)},
                               std::pair{&out, out_ptr}}) {
            op->user.set_data_handle(ptr);
            if (op->reordered) op->inner.set_data_handle(buffer(op->slot).reserve(op->inner.get_desc().get_size()));
        }
        scratchpad.set_data_handle(buffer(kScratchpadSlot).reserve(std::max<size_t>(scratchpad.get_desc().get_size(), 1)));
        for (Operand* in : {&a, &b})
            if (in->reordered) in->reorder.execute(s, in->user, in->inner);
        primitive.execute(s, args);
        if (out.reordered) out.reorder.execute(s, out.inner, out.user);
        s.wait();
    }
};

using Key = std::tuple<Pass, Layout, std::array<int64_t, 12>>;

Key key(Pass pass, Layout layout, const ConvShape& s) {
    return {pass, layout, {s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.groups}};
}

// Each primitive takes its scratchpad from us (the shared slot) rather than keeping its own.
const dnnl::primitive_attr& attributes() {
    static const dnnl::primitive_attr attr = [] {
        dnnl::primitive_attr a;
        a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        return a;
    }();
    return attr;
}

dnnl::convolution_forward::primitive_desc forward_pd(const Geometry& g, Layout layout) {
    const bool any_act = layout == Layout::blocked, any_w = layout != Layout::plain;
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                      chosen(g.x, any_act), chosen(g.w, any_w), chosen(g.y, any_act), g.strides,
                                      g.pad_l, g.pad_r);
    return {d, attributes(), engine()};
}

std::unique_ptr<Conv> build(Pass pass, Layout layout, const Geometry& g) {
    const bool any_act = layout == Layout::blocked, any_w = layout != Layout::plain;
    const auto fwd = forward_pd(g, layout);
    switch (pass) {
    case Pass::forward:
        return std::make_unique<Conv>(dnnl::convolution_forward(fwd),
                                           Operand(DNNL_ARG_SRC, g.x, fwd.src_desc(), false, 0),
                                           Operand(DNNL_ARG_WEIGHTS, g.w, fwd.weights_desc(), false, 1),
                                           Operand(DNNL_ARG_DST, g.y, fwd.dst_desc(), true, 2), fwd.scratchpad_desc());
    case Pass::backward_data: {
        dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, chosen(g.x, any_act),
                                                chosen(g.w, any_w), chosen(g.y, any_act), g.strides, g.pad_l, g.pad_r);
        dnnl::convolution_backward_data::primitive_desc pd(d, attributes(), engine(), fwd);
        return std::make_unique<Conv>(dnnl::convolution_backward_data(pd),
                                           Operand(DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), false, 0),
                                           Operand(DNNL_ARG_WEIGHTS, g.w, pd.weights_desc(), false, 1),
                                           Operand(DNNL_ARG_DIFF_SRC, g.x, pd.diff_src_desc(), true, 2), pd.scratchpad_desc());
    }
    case Pass::backward_weight: {
        dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, chosen(g.x, any_act),
                                                   chosen(g.w, any_w), chosen(g.y, any_act), g.strides, g.pad_l,
                                                   g.pad_r);
        dnnl::convolution_backward_weights::primitive_desc pd(d, attributes(), engine(), fwd);
        return std::make_unique<Conv>(dnnl::convolution_backward_weights(pd),
                                           Operand(DNNL_ARG_SRC, g.x, pd.src_desc(), false, 0),
                                           Operand(DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), false, 1),
                                           Operand(DNNL_ARG_DIFF_WEIGHTS, g.w, pd.diff_weights_desc(), true, 2), pd.scratchpad_desc());
    }
    }
    return nullptr;
}

// The cached primitive for this pass and shape; null where oneDNN has none (then cached as such, so
// the im2col path is taken without asking again).
Conv* primitive(Pass pass, Layout layout, const ConvShape& s) {
    thread_local std::map<Key, std::unique_ptr<Conv>> cache;
    const Key k = key(pass, layout, s);
    if (auto it = cache.find(k); it != cache.end()) return it->second.get();
    std::unique_ptr<Conv> conv;
    if (const auto g = geometry(s)) {
        try {
            conv = build(pass, layout, *g);
        } catch (const dnnl::error&) {
            conv = nullptr;  // unimplemented for this shape: the caller falls back
        }
    }
    return cache.emplace(k, std::move(conv)).first->second.get();
}

Layout resolve(Layout layout, const ConvShape& s) {
    if (layout != Layout::by_shape) return layout;
    return s.r == 1 && s.s == 1 ? Layout::blocked_weights : Layout::blocked;
}

// The weight gradient sums over the batch, and oneDNN sums in the order of its own blocked plan, so the
// same images split over data-parallel ranks (or --batch-gpu rounds) gave weights 2.1e-6 apart after
// three steps with one call per batch (tests/e2e/mpi.sh allows 1e-6; im2col, which sums image after
// image, 1.6e-7). By default it therefore runs over fixed chunks of kWeightChunk images, one call
// each, and adds the chunks' results in order: a chunk's sum depends only on its images, so a batch
// split at multiples of the chunk gives the same sums, added in the same order. Chunks of 8 cost
// nothing against one call per batch of 32 (bench_conv_cpu, 2026-12-04: the step's convolutions in
// 604 against 600 ms), and they put the 1x1 weight gradients on oneDNN too, which is faster than
// im2col at every 1x1 shape of the CPU row on a quiet machine.
constexpr int64_t kWeightChunk = 8;

bool run_primitive(Pass pass, Layout layout, const ConvShape& s, const float* a, const float* b, float* out) {
    Conv* conv = primitive(pass, layout, s);
    if (!conv) return false;
    try {
        conv->run(a, b, out);
    } catch (const dnnl::error& e) {
        throw std::runtime_error(std::string("oneDNN convolution failed: ") + e.what());
    }
    return true;
}

// dw = the sum over chunks of kWeightChunk images of each chunk's weight gradient, in chunk order.
bool weight_gradient_in_chunks(const ConvShape& s, const float* x, const float* dy, float* dw) {
    const Layout layout = resolve(Layout::by_shape, s);
    const int64_t x_image = s.c * s.h * s.w, y_image = s.k * s.out_h() * s.out_w();
    const size_t dw_size = static_cast<size_t>(s.k * (s.c / s.groups) * s.r * s.s);
    thread_local std::vector<float> part;
    for (int64_t first = 0; first < s.n; first += kWeightChunk) {
        ConvShape chunk = s;
        chunk.n = std::min(kWeightChunk, s.n - first);
        float* into = first == 0 ? dw : (part.resize(dw_size), part.data());
        if (!run_primitive(Pass::backward_weight, layout, chunk, x + first * x_image, dy + first * y_image, into)) {
            if (first == 0) return false;  // the first chunk decides; later chunks have its shape or a smaller n
            throw std::runtime_error("oneDNN has a weight-gradient primitive for one chunk but not the next");
        }
        if (first > 0)
            for (size_t i = 0; i < dw_size; ++i) dw[i] += part[i];
    }
    return true;
}

bool run(Pass pass, Layout layout, const ConvShape& s, const float* a, const float* b, float* out) {
    if (layout == Layout::by_shape && pass == Pass::backward_weight) {
        return weight_gradient_in_chunks(s, a, b, out);
    }
    return run_primitive(pass, resolve(layout, s), s, a, b, out);
}

}  // namespace

bool available() { return true; }

bool conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y, Layout layout) {
    return run(Pass::forward, layout, s, x, w, y);
}
bool conv2d_backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, Layout layout) {
    return run(Pass::backward_data, layout, s, dy, w, dx);
}
bool conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, Layout layout) {
    return run(Pass::backward_weight, layout, s, x, dy, dw);
}

}  // namespace stf::cpu::onednn

#else  // built without oneDNN: every convolution takes the im2col path

namespace stf::cpu::onednn {
bool available() { return false; }
bool conv2d_forward(const ConvShape&, const float*, const float*, float*, Layout) { return false; }
bool conv2d_backward_data(const ConvShape&, const float*, const float*, float*, Layout) { return false; }
bool conv2d_backward_weight(const ConvShape&, const float*, const float*, float*, Layout) { return false; }
}  // namespace stf::cpu::onednn

#endif
