// CPU convolutions through oneDNN (Debian's libdnnl), the library PyTorch's CPU backend runs its
// convolutions on.
//
// Why: on the U-Net's shapes (3x3 and 1x1, stride 1, 8..64 channels, 8x8..32x32 pixels) the im2col +
// OpenBLAS path of conv.cpp spends much of its time unrolling and in GEMMs too thin for OpenBLAS's
// kernels; oneDNN's JIT direct convolutions keep the image in registers and blocks of 8 channels
// instead. What it costs: a runtime dependency (optional: without it, or with STF_ONEDNN=OFF, every
// convolution takes the im2col path), a primitive built per shape on first use (cached, so a training
// step creates none), and results that differ from the im2col twin by rounding only (another
// summation order). fp32 only: oneDNN has no f64 convolutions, so the float64 gradient checks stay on
// the im2col path, which remains the reference the tests compare these functions with.
//
// Layout: the tensors stay NCHW in memory. Each call reorders what the chosen primitive wants in
// another layout (see Layout) and reorders the result back; the buffers for that are kept with the
// cached primitive.
//
// Threads: Debian builds oneDNN on OpenMP (libgomp), the same runtime as our kernels and as the
// OpenMP build of OpenBLAS that CMakeLists.txt links, so all three share one thread pool; a primitive
// is called from serial code and runs its own parallel region.
#pragma once
#include "cuda/layout.h"

namespace stf::cpu::onednn {

// What each primitive is built on. plain: NCHW/OIHW everywhere, no reorders (oneDNN then picks its
// GEMM-based implementation). blocked_weights: NCHW activations, weights in the layout oneDNN prefers.
// blocked: activations and weights in the layouts oneDNN prefers (nChw8c on AVX2), reordered on every
// call, for its direct (JIT) convolutions. by_shape: blocked for kernels wider than 1x1, blocked_weights
// for 1x1 ones, which are GEMMs on NCHW already and lose more to the reorders than the direct
// kernel gains, measured with bench_conv_cpu at DDPM++-small's shapes (docs/perf.md). Its weight
// gradients run over fixed chunks of images added in order, so the sum over a batch does not depend
// on how the batch is split over data-parallel ranks (why: conv_onednn.cpp).
enum class Layout { plain, blocked_weights, blocked, by_shape };

// True when stf was built with oneDNN.
bool available();

// Each computes what the conv.cpp kernel of the same name computes (fp32, NCHW, OIHW weights) and
// returns true, or returns false (doing nothing) where oneDNN is not built in or the shape is not one
// it takes; the caller then runs the im2col path.
bool conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y, Layout layout = Layout::by_shape);
bool conv2d_backward_data(const ConvShape& s, const float* dy, const float* w, float* dx,
                          Layout layout = Layout::by_shape);
bool conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw,
                            Layout layout = Layout::by_shape);

}  // namespace stf::cpu::onednn
