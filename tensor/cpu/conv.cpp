// 2-D convolution by im2col + GEMM: every double convolution, and the float ones where stf is built
// without oneDNN or where oneDNN does not take the shape (conv_onednn.h). The *_im2col functions are also the
// twins the tests compare the oneDNN path with.
//
// im2col unrolls one image into a matrix col [c*r*s, p*q]: row (ci, kr, ks) holds, for every output
// position (oh, ow), the input pixel that kernel tap (kr, ks) of channel ci sees there (0 in the
// padding). The weight [k, c/groups, r, s] is already a row-major matrix [k, (c/groups)*r*s], so for
// each group
//   forward:          y_g [k/G, pq]    = W_g [k/G, K]      @ col_g [K, pq]          (K = (c/G)*r*s)
//   backward data:    dcol_g [K, pq]   = W_g^T [K, k/G]    @ dy_g [k/G, pq], then col2im
//                     (stride 1, one group: a forward convolution of dy, see backward_data_as_forward)
//   backward weight:  dW_g [k/G, K]   += dy_g [k/G, pq]    @ col_g^T [pq, K]   summed over images
// col2im is the adjoint of im2col: it adds every column entry back onto the pixel it was read from.
//
// Images are unrolled a chunk at a time (OpenMP over images and channels). The forward GEMMs then run
// one per image in an OpenMP loop (each single-threaded: OpenBLAS's OpenMP build does not nest); the
// backward GEMMs run serially, each one threaded by OpenBLAS, so the weight gradient is summed in image
// order whatever the thread count.
// Stride-1 rows are copied as blocks (only the padding is written element by element), and 1x1
// convolutions skip the unrolling: an image [c, h, w] already is its col matrix.
#include <algorithm>
#include <vector>
#include <type_traits>
#include "tensor/cpu/conv_onednn.h"
#include "tensor/cpu/kernels.h"

namespace stf::cpu {
namespace {

// At most this many elements in the unrolled-columns buffer (16 MiB in float): big enough to batch
// many small images into one pass, small enough to stay modest for large ones.
constexpr int64_t kColBudget = int64_t(1) << 22;

struct Geometry {
    int64_t p, q, pq;  // output height, width, and their product
    int64_t image;     // c*h*w, elements of one input image
    int64_t rows;      // c*r*s, rows of one image's col matrix
    int64_t cpg, kpg;  // input and output channels per group
    int64_t k_gemm;    // (c/groups)*r*s, the GEMM's inner dimension
    int64_t chunk;     // images unrolled per pass
    bool pointwise;    // 1x1, stride 1, no padding: the image already is its col matrix [c, h*w]

    explicit Geometry(const ConvShape& s)
        : p(s.out_h()), q(s.out_w()), pq(p * q), image(s.c * s.h * s.w), rows(s.c * s.r * s.s), cpg(s.c / s.groups),
          kpg(s.k / s.groups), k_gemm(cpg * s.r * s.s),
          chunk(std::clamp<int64_t>(kColBudget / std::max<int64_t>(rows * pq, 1), 1, std::max<int64_t>(s.n, 1))),
          pointwise(s.r == 1 && s.s == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0) {
        if (pointwise) chunk = std::max<int64_t>(s.n, 1);  // nothing is unrolled: one pass
    }
};

// For stride 1, the output columns ow whose tap ks reads inside the image, [lo, hi): a contiguous
// run, so rows are copied (or added back) as blocks with zeros only at the edges.
struct Run {
    int64_t lo, hi;
};
inline Run inside_columns(const ConvShape& s, const Geometry& g, int64_t ks) {
    const int64_t shift = ks - s.pad_w;  // iw = ow + shift
    return {std::clamp<int64_t>(-shift, 0, g.q), std::clamp<int64_t>(s.w - shift, 0, g.q)};
}

// Unrolls channel ci of one image (x_c is its h*w plane) into its r*s rows of col (col_c).
template <class T> void im2col_channel(const ConvShape& s, const Geometry& g, const T* x_c, T* col_c) {
    for (int64_t kr = 0; kr < s.r; ++kr)
        for (int64_t ks = 0; ks < s.s; ++ks) {
            T* row = col_c + (kr * s.s + ks) * g.pq;
            const Run run = inside_columns(s, g, ks);
            for (int64_t oh = 0; oh < g.p; ++oh) {
                const int64_t ih = oh * s.stride_h - s.pad_h + kr;
                T* out = row + oh * g.q;
                if (ih < 0 || ih >= s.h) {
                    std::fill(out, out + g.q, T(0));
                } else if (s.stride_w == 1) {
                    const T* in = x_c + ih * s.w + (ks - s.pad_w);
                    std::fill(out, out + run.lo, T(0));
                    std::copy(in + run.lo, in + run.hi, out + run.lo);
                    std::fill(out + run.hi, out + g.q, T(0));
                } else {
                    for (int64_t ow = 0; ow < g.q; ++ow) {
                        const int64_t iw = ow * s.stride_w - s.pad_w + ks;
                        out[ow] = iw >= 0 && iw < s.w ? x_c[ih * s.w + iw] : T(0);
                    }
                }
            }
        }
}

// The adjoint of im2col_channel: overwrites the plane dx_c with the sum of every col entry read from
// each pixel. Pixels are only touched by this channel's rows, so channels can run in parallel.
template <class T> void col2im_channel(const ConvShape& s, const Geometry& g, const T* col_c, T* dx_c) {
    std::fill(dx_c, dx_c + s.h * s.w, T(0));
    for (int64_t kr = 0; kr < s.r; ++kr)
        for (int64_t ks = 0; ks < s.s; ++ks) {
            const T* row = col_c + (kr * s.s + ks) * g.pq;
            const Run run = inside_columns(s, g, ks);
            for (int64_t oh = 0; oh < g.p; ++oh) {
                const int64_t ih = oh * s.stride_h - s.pad_h + kr;
                if (ih < 0 || ih >= s.h) continue;
                const T* in = row + oh * g.q;
                if (s.stride_w == 1) {
                    T* out = dx_c + ih * s.w + (ks - s.pad_w);
                    for (int64_t ow = run.lo; ow < run.hi; ++ow) out[ow] += in[ow];
                } else {
                    for (int64_t ow = 0; ow < g.q; ++ow) {
                        const int64_t iw = ow * s.stride_w - s.pad_w + ks;
                        if (iw >= 0 && iw < s.w) dx_c[ih * s.w + iw] += in[ow];
                    }
                }
            }
        }
}

// col holds `count` images back to back, each [rows, pq].
template <class T> void im2col_batch(const ConvShape& s, const Geometry& g, int64_t count, const T* x, T* col) {
    const int64_t plane = s.h * s.w, taps = s.r * s.s;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t img = 0; img < count; ++img)
        for (int64_t ci = 0; ci < s.c; ++ci)
            im2col_channel(s, g, x + img * g.image + ci * plane, col + (img * g.rows + ci * taps) * g.pq);
}

template <class T> void col2im_batch(const ConvShape& s, const Geometry& g, int64_t count, const T* col, T* dx) {
    const int64_t plane = s.h * s.w, taps = s.r * s.s;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t img = 0; img < count; ++img)
        for (int64_t ci = 0; ci < s.c; ++ci)
            col2im_channel(s, g, col + (img * g.rows + ci * taps) * g.pq, dx + img * g.image + ci * plane);
}

} // namespace

// The unrolled-columns buffer, kept between calls: allocating (and zeroing) up to 16 MiB for every
// convolution cost more than some of the convolutions. Every element used is written before it is read.
template <class T> T* workspace(const Geometry& g) {
    static thread_local std::vector<T> buffer;
    const auto n = static_cast<size_t>(g.chunk * g.rows * g.pq);
    if (buffer.size() < n) buffer.resize(n);
    return buffer.data();
}

// The col matrices of images n0 .. n0 + count - 1: the input itself for a pointwise convolution,
// else unrolled into the workspace.
template <class T> const T* columns(const ConvShape& s, const Geometry& g, int64_t n0, int64_t count, const T* x) {
    if (g.pointwise) return x + n0 * g.image;
    T* col = workspace<T>(g);
    im2col_batch(s, g, count, x + n0 * g.image, col);
    return col;
}

template <class T> void conv2d_forward_im2col(const ConvShape& s, const T* x, const T* w, T* y) {
    const Geometry g(s);
    for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
        const int64_t count = std::min(g.chunk, s.n - n0);
        const T* col = columns(s, g, n0, count, x);
        // Images in parallel, one GEMM per image and group (the weight shared by all). Inside the
        // parallel region OpenBLAS's OpenMP build runs each GEMM on its calling thread: for these small
        // GEMMs (e.g. 32 x 1024 x 288) that beats one multi-threaded GEMM after another, which
        // synchronises its threads for every image.
#pragma omp parallel for schedule(static) if (count > 1)
        for (int64_t img = 0; img < count; ++img)
            for (int64_t gi = 0; gi < s.groups; ++gi)
                gemm<T>(false, false, g.kpg, g.pq, g.k_gemm, T(1), w + gi * g.kpg * g.k_gemm, g.k_gemm,
                        col + img * g.rows * g.pq + gi * g.k_gemm * g.pq, g.pq, T(0),
                        y + ((n0 + img) * s.k + gi * g.kpg) * g.pq, g.pq, 1, 0, 0, 0);
    }
}

// For a stride-1, single-group convolution, the data gradient is itself a stride-1 convolution: of dy
// with the weight's spatial flip, input and output channels swapped, and padding r-1-pad. That runs as
// a forward pass (im2col gather of dy, one GEMM into dx [c, pq]) instead of a GEMM into the 9x larger
// dcol [c*r*s, pq], which OpenBLAS first zeroes, and col2im's scatter-add back onto dx.
template <class T> bool backward_data_as_forward(const ConvShape& s, const T* dy, const T* w, T* dx) {
    if (s.groups != 1 || s.stride_h != 1 || s.stride_w != 1 || s.pad_h > s.r - 1 || s.pad_w > s.s - 1) return false;
    if (s.r == 1 && s.s == 1) return false;  // pointwise: the GEMM already writes dx directly
    ConvShape f = s;
    f.c = s.k;
    f.k = s.c;
    f.h = s.out_h();
    f.w = s.out_w();
    f.pad_h = s.r - 1 - s.pad_h;
    f.pad_w = s.s - 1 - s.pad_w;
    std::vector<T> flipped(static_cast<size_t>(s.c * s.k * s.r * s.s));  // [c, k, r, s]
    for (int64_t ko = 0; ko < s.k; ++ko)
        for (int64_t ci = 0; ci < s.c; ++ci)
            for (int64_t a = 0; a < s.r; ++a)
                for (int64_t b = 0; b < s.s; ++b)
                    flipped[((ci * s.k + ko) * s.r + a) * s.s + b] =
                        w[((ko * s.c + ci) * s.r + (s.r - 1 - a)) * s.s + (s.s - 1 - b)];
    conv2d_forward_im2col(f, dy, flipped.data(), dx);
    return true;
}

template <class T> void conv2d_backward_data_im2col(const ConvShape& s, const T* dy, const T* w, T* dx) {
    if (backward_data_as_forward(s, dy, w, dx)) return;
    const Geometry g(s);
    for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
        const int64_t count = std::min(g.chunk, s.n - n0);
        // A pointwise convolution's col2im is the identity: the GEMM writes dx directly.
        T* dcol = g.pointwise ? dx + n0 * g.image : workspace<T>(g);
        for (int64_t gi = 0; gi < s.groups; ++gi)
            gemm<T>(true, false, g.k_gemm, g.pq, g.kpg, T(1), w + gi * g.kpg * g.k_gemm, g.k_gemm,
                    dy + (n0 * s.k + gi * g.kpg) * g.pq, g.pq, T(0), dcol + gi * g.k_gemm * g.pq, g.pq, count, 0,
                    s.k * g.pq, g.rows * g.pq);
        if (!g.pointwise) col2im_batch(s, g, count, dcol, dx + n0 * g.image);
    }
}

// dw starts at zero and every image's GEMM adds onto it (beta = 1) serially in image order, so dw is
// the same whatever the thread count.
template <class T> void conv2d_backward_weight_im2col(const ConvShape& s, const T* x, const T* dy, T* dw) {
    const Geometry g(s);
    std::fill(dw, dw + s.k * g.k_gemm, T(0));
    for (int64_t n0 = 0; n0 < s.n; n0 += g.chunk) {
        const int64_t count = std::min(g.chunk, s.n - n0);
        const T* col = columns(s, g, n0, count, x);
        for (int64_t img = 0; img < count; ++img)
            for (int64_t gi = 0; gi < s.groups; ++gi)
                gemm<T>(false, true, g.kpg, g.k_gemm, g.pq, T(1), dy + ((n0 + img) * s.k + gi * g.kpg) * g.pq, g.pq,
                        col + (img * g.rows + gi * g.k_gemm) * g.pq, g.pq, T(1), dw + gi * g.kpg * g.k_gemm,
                        g.k_gemm);
    }
}

// The kernels ops call: oneDNN for float where it is built in and takes the shape, else im2col.
template <class T> void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
    if constexpr (std::is_same_v<T, float>)
        if (onednn::conv2d_forward(s, x, w, y)) return;
    conv2d_forward_im2col(s, x, w, y);
}

template <class T> void conv2d_backward_data(const ConvShape& s, const T* dy, const T* w, T* dx) {
    if constexpr (std::is_same_v<T, float>)
        if (onednn::conv2d_backward_data(s, dy, w, dx)) return;
    conv2d_backward_data_im2col(s, dy, w, dx);
}

template <class T> void conv2d_backward_weight(const ConvShape& s, const T* x, const T* dy, T* dw) {
    if constexpr (std::is_same_v<T, float>)
        if (onednn::conv2d_backward_weight(s, x, dy, dw)) return;
    conv2d_backward_weight_im2col(s, x, dy, dw);
}

#define STF_INSTANTIATE(T)                                                                    \
    template void conv2d_forward<T>(const ConvShape&, const T*, const T*, T*);               \
    template void conv2d_backward_data<T>(const ConvShape&, const T*, const T*, T*);         \
    template void conv2d_backward_weight<T>(const ConvShape&, const T*, const T*, T*);       \
    template void conv2d_forward_im2col<T>(const ConvShape&, const T*, const T*, T*);        \
    template void conv2d_backward_data_im2col<T>(const ConvShape&, const T*, const T*, T*);  \
    template void conv2d_backward_weight_im2col<T>(const ConvShape&, const T*, const T*, T*);
STF_INSTANTIATE(float)
STF_INSTANTIATE(double)
#undef STF_INSTANTIATE

} // namespace stf::cpu
