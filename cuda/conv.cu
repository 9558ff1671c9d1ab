// 2-D convolution (NCHW, float32 or bfloat16) on cuDNN's legacy convolution API. bf16 operands (mixed
// precision, cuda/bf16.h) run on tensor cores with float32 accumulation, whatever the TF32 setting.
//
// cuDNN offers several algorithms for each direction (implicit GEMM, explicit GEMM, FFT, Winograd, ...)
// and which one is fastest depends on the shape and the GPU. Choosing costs a benchmark, so we do it
// once per shape and direction, then cache the winner together with the cuDNN descriptors that
// describe the shape: a steady-state call is one map lookup and one cuDNN launch.
//
// Algorithm selection policy (choose_algorithm below):
//   1. Benchmark every algorithm with cudnnFind*AlgorithmEx on the caller's own buffers (their outputs
//      are overwritten anyway) and a temporary workspace as large as the hungriest algorithm that fits
//      kWorkspaceCap (4 GiB) needs.
//   2. Keep the algorithms that ran successfully, fit the cap and honour the TF32 setting
//      (cuda/math_mode.h): with TF32 off only CUDNN_FMA_MATH ones, i.e. true float32 arithmetic.
//   3. Forward: take the fastest (every forward algorithm is deterministic).
//      Backward data and backward filter: take the fastest, unless it is non-deterministic (it sums
//      partial results with atomics, so the last bits change from run to run) and a deterministic
//      one is within kDeterminismSlack of its time; then that one. Reproducible gradients make
//      training runs comparable and bugs repeatable, and at that margin they are nearly free.
//
// Workspace: one buffer shared by all convolutions, grown to the largest need seen so far and kept.
// Everything runs on stf::cuda::stream(), so reusing it across calls needs no synchronisation.
#include <algorithm>
#include <cstdio>
#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/math_mode.h"
#include "cuda/runtime.h"

namespace stf::cuda {
namespace {

// FFT algorithms can ask for far more. Winograd's transform buffers grow with the batch: a 3x3
// convolution of 256 channels at 32x32 needs about 1.2 GB at batch 256. With a 1 GiB cap cuDNN chose
// an implicit GEMM there that took 63% of a batch-256 network evaluation on an H100 (docs/perf.md).
constexpr size_t kWorkspaceCap = size_t(4) << 30;
constexpr float kDeterminismSlack = 1.10f;          // a deterministic algorithm may be up to 10% slower
// Benchmarks are noisy for tiny convolutions; below this many milliseconds of difference, a
// deterministic algorithm counts as just as fast.
constexpr float kDeterminismSlackMs = 0.005f;
// After benchmarking with a temporary workspace larger than this, return the allocator's cached
// blocks to the driver so that the one-off allocation is not left stranded in its free lists.
constexpr size_t kReleaseAfterFindBytes = size_t(64) << 20;

enum class Direction { Forward, BackwardData, BackwardFilter };
enum class Element { F32, BF16 };  // the element type of x, w and y (and their gradients)

cudnnDataType_t cudnn_type(Element t) { return t == Element::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }
size_t element_size(Element t) { return t == Element::BF16 ? 2 : 4; }

const char* direction_name(Direction d) {
    switch (d) {
        case Direction::Forward: return "forward";
        case Direction::BackwardData: return "backward data";
        case Direction::BackwardFilter: return "backward filter";
    }
    return "?";
}

std::string describe(const ConvShape& s) {
    std::ostringstream os;
    os << "x [" << s.n << ", " << s.c << ", " << s.h << ", " << s.w << "], weight [" << s.k << ", "
       << (s.groups > 0 ? s.c / s.groups : 0) << ", " << s.r << ", " << s.s << "], stride (" << s.stride_h << ", "
       << s.stride_w << "), pad (" << s.pad_h << ", " << s.pad_w << "), groups " << s.groups;
    return os.str();
}

// Shape errors are the caller's, so they are std::invalid_argument and say which shape.
void validate(const ConvShape& s) {
    auto fail = [&](const char* why) {
        throw std::invalid_argument(std::string("conv2d: ") + why + ": " + describe(s));
    };
    if (s.n < 0 || s.c <= 0 || s.h <= 0 || s.w <= 0 || s.k <= 0 || s.r <= 0 || s.s <= 0)
        fail("sizes must be positive (n may be 0)");
    if (s.stride_h <= 0 || s.stride_w <= 0 || s.pad_h < 0 || s.pad_w < 0) fail("bad stride or padding");
    if (s.groups <= 0 || s.c % s.groups != 0 || s.k % s.groups != 0) fail("groups must divide c and k");
    if (s.out_h() <= 0 || s.out_w() <= 0) fail("kernel larger than the padded input");
    // cuDNN's legacy descriptors hold int sizes and strides; PyTorch splits batches for the same reason.
    const int64_t biggest = std::max({s.n * s.c * s.h * s.w, s.n * s.k * s.out_h() * s.out_w(), s.k * s.c * s.r * s.s});
    if (biggest > INT_MAX || s.pad_h > INT_MAX || s.pad_w > INT_MAX || s.stride_h > INT_MAX || s.stride_w > INT_MAX)
        fail("a tensor has more than 2^31 - 1 elements; split the batch");
}

// Everything that determines the cuDNN problem, so equal keys can share one algorithm choice.
struct PlanKey {
    int64_t n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, groups;
    Direction direction;
    Element element;
    bool tf32;  // false for bf16, which always runs on tensor cores
    auto operator<=>(const PlanKey&) const = default;
};

// The descriptors of one shape and the algorithm chosen for one direction on it.
struct Plan {
    cudnnTensorDescriptor_t x = nullptr;  // input (or dx)
    cudnnTensorDescriptor_t y = nullptr;  // output (or dy)
    cudnnFilterDescriptor_t w = nullptr;  // weight (or dw)
    cudnnConvolutionDescriptor_t conv = nullptr;
    int algo = 0;                // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, by direction; -1: none (bf16)
    size_t workspace_bytes = 0;  // what `algo` needs

    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {  // destructors must not throw: statuses ignored
        if (conv) cudnnDestroyConvolutionDescriptor(conv);
        if (w) cudnnDestroyFilterDescriptor(w);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (x) cudnnDestroyTensorDescriptor(x);
    }
};

struct ConvState {
    std::mutex mutex;  // guards the cache and the shared workspace
    std::map<PlanKey, std::unique_ptr<Plan>> plans;
    void* workspace = nullptr;
    size_t workspace_bytes = 0;
};

// Deliberately never destroyed: at process exit the allocator and the CUDA context may already be
// gone, and freeing into them from a static destructor would crash. The OS reclaims everything.
ConvState& state() {
    static ConvState* s = new ConvState;
    return *s;
}

// The buffers of one call. Which are set depends on the direction:
//   forward:          x, w      -> out = y
//   backward data:    dy, w     -> out = dx
//   backward filter:  x, dy     -> out = dw
struct Operands {
    const void* x = nullptr;
    const void* w = nullptr;
    const void* dy = nullptr;
    void* out = nullptr;
};

std::unique_ptr<Plan> make_descriptors(const ConvShape& s, Element t, bool tf32) {
    auto p = std::make_unique<Plan>();  // owns each descriptor as soon as it exists, even if a later call throws
    STF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    STF_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    STF_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    STF_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));

    const int n = int(s.n), c = int(s.c), h = int(s.h), w = int(s.w), k = int(s.k);
    const int p_out = int(s.out_h()), q_out = int(s.out_w());
    STF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, cudnn_type(t), n, c, h, w));
    // A grouped convolution's filter holds only c / groups input channels per output channel.
    STF_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, cudnn_type(t), CUDNN_TENSOR_NCHW, k, int(s.c / s.groups),
                                               int(s.r), int(s.s)));
    // CROSS_CORRELATION is what deep learning calls convolution (no kernel flip); compute in float32
    // (for bf16 operands too: cuDNN's BFLOAT16 configuration accumulates in float).
    STF_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, int(s.pad_h), int(s.pad_w), int(s.stride_h),
                                                    int(s.stride_w), /*dilation*/ 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
    STF_CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->conv, int(s.groups)));
    // The math type set before the search decides which kernels Find considers. FMA_MATH excludes
    // every tensor-core (TF32) kernel; TENSOR_OP_MATH lets TF32 kernels compete, and is what bf16 needs.
    const bool tensor_ops = tf32 || t == Element::BF16;
    STF_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

    // ConvShape and cuDNN must agree on the output size, or every index below is wrong.
    int on = 0, oc = 0, oh = 0, ow = 0;
    STF_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow));
    if (on != n || oc != k || oh != p_out || ow != q_out) {
        std::ostringstream os;
        os << "conv2d: cuDNN output [" << on << ", " << oc << ", " << oh << ", " << ow << "] differs from ConvShape's ["
           << n << ", " << k << ", " << p_out << ", " << q_out << "] for " << describe(s);
        throw std::logic_error(os.str());
    }
    STF_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, cudnn_type(t), n, k, p_out, q_out));
    return p;
}

int algorithm_count(cudnnHandle_t handle, Direction d) {
    int count = 0;
    switch (d) {
        case Direction::Forward: STF_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count)); break;
        case Direction::BackwardData:
            STF_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count));
            break;
        case Direction::BackwardFilter:
            STF_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count));
            break;
    }
    return count;
}

// The workspace `algo` needs with the plan's current math type. Not wrapped in STF_CUDNN_CHECK: an
// algorithm that does not support the shape answers with an error status, which here is an answer
// (false), not a failure.
bool workspace_size(cudnnHandle_t handle, const Plan& p, Direction d, int algo, size_t* bytes) {
    cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
    switch (d) {
        case Direction::Forward:
            st = cudnnGetConvolutionForwardWorkspaceSize(handle, p.x, p.w, p.conv, p.y,
                                                         static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes);
            break;
        case Direction::BackwardData:
            st = cudnnGetConvolutionBackwardDataWorkspaceSize(handle, p.w, p.y, p.conv, p.x,
                                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), bytes);
            break;
        case Direction::BackwardFilter:
            st = cudnnGetConvolutionBackwardFilterWorkspaceSize(
                handle, p.x, p.y, p.conv, p.w, static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), bytes);
            break;
    }
    return st == CUDNN_STATUS_SUCCESS;
}

// One benchmarked algorithm, whatever the direction (the three cuDNN perf structs share these fields).
struct Candidate {
    int algo;
    float time_ms;
    size_t memory;
    bool deterministic;
    cudnnMathType_t math;
};

template <class Perf>
std::vector<Candidate> usable(const std::vector<Perf>& perf, int returned, size_t workspace_bytes, bool fma_only) {
    std::vector<Candidate> out;
    for (int i = 0; i < returned; ++i) {
        const Perf& r = perf[size_t(i)];
        if (r.status != CUDNN_STATUS_SUCCESS || r.time < 0 || r.memory > workspace_bytes) continue;
        // With TF32 off the descriptor asked for FMA math, so this only guards against a surprise.
        if (fma_only && r.mathType != CUDNN_FMA_MATH) continue;
        out.push_back({int(r.algo), r.time, r.memory, r.determinism == CUDNN_DETERMINISTIC, r.mathType});
    }
    return out;
}

// Times every algorithm on the real buffers. Host-blocking, but it runs once per shape. With
// `unsupported_ok` (bf16), a search cuDNN refuses outright counts as finding nothing.
std::vector<Candidate> benchmark(cudnnHandle_t handle, const Plan& p, Direction d, const Operands& o, void* ws,
                                 size_t ws_bytes, bool fma_only, bool unsupported_ok) {
    auto found = [&](cudnnStatus_t st) {
        // A launch that failed inside the search must not linger for the next launch check to report.
        (void)cudaGetLastError();
        // cuDNN 9 numbers its statuses by family: 2000s bad parameters, 3000s not supported.
        const int family = static_cast<int>(st) / 1000;
        if (unsupported_ok && (family == CUDNN_STATUS_BAD_PARAM / 1000 || family == CUDNN_STATUS_NOT_SUPPORTED / 1000)) {
            std::fprintf(stderr, "conv2d: cuDNN's bfloat16 search: %s\n", cudnnGetErrorString(st));
            return false;
        }
        STF_CUDNN_CHECK(st);
        return true;
    };
    const int requested = algorithm_count(handle, d);
    int returned = 0;
    switch (d) {
        case Direction::Forward: {
            std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(requested, 1)));
            if (!found(cudnnFindConvolutionForwardAlgorithmEx(handle, p.x, o.x, p.w, o.w, p.conv, p.y, o.out, requested,
                                                              &returned, perf.data(), ws, ws_bytes)))
                return {};
            return usable(perf, returned, ws_bytes, fma_only);
        }
        case Direction::BackwardData: {
            std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(requested, 1)));
            if (!found(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, p.w, o.w, p.y, o.dy, p.conv, p.x, o.out,
                                                                   requested, &returned, perf.data(), ws, ws_bytes)))
                return {};
            return usable(perf, returned, ws_bytes, fma_only);
        }
        case Direction::BackwardFilter: {
            std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(requested, 1)));
            if (!found(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, p.x, o.x, p.y, o.dy, p.conv, p.w, o.out,
                                                                     requested, &returned, perf.data(), ws, ws_bytes)))
                return {};
            return usable(perf, returned, ws_bytes, fma_only);
        }
    }
    return {};
}

// Step 3 of the policy at the top of the file.
const Candidate* choose(std::vector<Candidate>& cands, Direction d) {
    if (cands.empty()) return nullptr;
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Candidate& a, const Candidate& b) { return a.time_ms < b.time_ms; });
    const Candidate& fastest = cands.front();
    if (d == Direction::Forward || fastest.deterministic) return &fastest;
    for (const Candidate& c : cands) {
        if (!c.deterministic) continue;
        const bool close = c.time_ms <= fastest.time_ms * kDeterminismSlack ||
                           c.time_ms - fastest.time_ms <= kDeterminismSlackMs;
        return close ? &c : &fastest;  // the first deterministic one is the fastest deterministic one
    }
    return &fastest;
}

// A device buffer for the duration of the search, handed back to the allocator on every exit path.
struct ScratchBuffer {
    void* ptr = nullptr;
    ~ScratchBuffer() {
        if (ptr) cuda::free(ptr);
    }
};

std::unique_ptr<Plan> build_plan(cudnnHandle_t handle, const ConvShape& s, Direction d, const Operands& o, Element t,
                                 bool tf32) {
    auto plan = make_descriptors(s, t, tf32);
    const bool fma_only = t == Element::F32 && !tf32;

    // Size the benchmark workspace for the hungriest algorithm under the cap.
    size_t find_bytes = 0;
    for (int a = 0, count = algorithm_count(handle, d); a < count; ++a) {
        size_t bytes = 0;
        if (workspace_size(handle, *plan, d, a, &bytes) && bytes <= kWorkspaceCap) find_bytes = std::max(find_bytes, bytes);
    }
    ScratchBuffer scratch;
    // If memory is short, benchmark fewer algorithms (those needing less) rather than fail.
    while (find_bytes > 0 && !scratch.ptr) {
        try {
            scratch.ptr = cuda::malloc(find_bytes);
        } catch (const std::exception&) {
            // Make sure no failed cudaMalloc lingers as the runtime's "last error", where the next
            // launch check would find it and blame an innocent kernel.
            (void)cudaGetLastError();
            find_bytes /= 2;
        }
    }
    if (!scratch.ptr) find_bytes = 0;

    const bool bf16 = t == Element::BF16;
    std::vector<Candidate> cands = benchmark(handle, *plan, d, o, scratch.ptr, find_bytes, fma_only, bf16);
    const Candidate* best = choose(cands, d);
    if (!best && bf16) {
        // Not an error: the caller computes this shape in float32 instead (tensor/ops_nn.cpp). Said
        // once per shape and direction, since it costs speed.
        std::fprintf(stderr, "conv2d: cuDNN has no bfloat16 %s algorithm for %s; it runs in float32\n",
                     direction_name(d), describe(s).c_str());
        plan->algo = -1;
        return plan;
    }
    if (!best) {
        throw std::runtime_error(std::string("conv2d: cuDNN found no usable ") + direction_name(d) + " algorithm" +
                                 (fma_only ? " with float32 (FMA) math" : "") + " for " + describe(s));
    }

    // Find reports the best (algorithm, math type) pair; the descriptor must carry that math type
    // when the algorithm runs, or cuDNN may pick a different (slower or less exact) kernel for it.
    plan->algo = best->algo;
    STF_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv, best->math));
    size_t need = 0;
    if (!workspace_size(handle, *plan, d, plan->algo, &need)) need = 0;
    plan->workspace_bytes = std::max(need, best->memory);

    if (scratch.ptr && find_bytes > kReleaseAfterFindBytes) {
        cuda::free(scratch.ptr);
        scratch.ptr = nullptr;
        cuda::empty_cache();
    }
    return plan;
}

// Grows the shared workspace to at least `bytes`. Freeing the old buffer while queued convolutions
// may still use it is safe: all work is on the one stf stream, so whoever gets that memory next
// runs after them.
void* workspace(ConvState& st, size_t bytes) {
    if (bytes > st.workspace_bytes) {
        if (st.workspace) cuda::free(st.workspace);
        st.workspace = nullptr;
        st.workspace_bytes = 0;
        st.workspace = cuda::malloc(bytes);
        st.workspace_bytes = bytes;
    }
    return st.workspace;
}

// False when cuDNN has no algorithm for a bf16 problem (nothing was computed).
bool run(const ConvShape& s, Direction d, Element t, const Operands& o) {
    auto handle = static_cast<cudnnHandle_t>(cudnn_handle());
    ConvState& st = state();
    std::lock_guard<std::mutex> lock(st.mutex);
    // The handle is shared; set its stream on every call rather than trust whoever set it last.
    STF_CUDNN_CHECK(cudnnSetStream(handle, static_cast<cudaStream_t>(stream())));

    const bool tf32 = t == Element::F32 && allow_tf32();
    const PlanKey key{s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.groups, d, t, tf32};
    auto it = st.plans.find(key);
    if (it == st.plans.end()) it = st.plans.emplace(key, build_plan(handle, s, d, o, t, tf32)).first;
    const Plan& p = *it->second;
    if (p.algo < 0) return false;

    void* ws = workspace(st, p.workspace_bytes);
    // beta = 0 overwrites the output; cuDNN then never reads it, so it may hold garbage (even NaN).
    const float one = 1.0f, zero = 0.0f;
    switch (d) {
        case Direction::Forward:
            STF_CUDNN_CHECK(cudnnConvolutionForward(handle, &one, p.x, o.x, p.w, o.w, p.conv,
                                                    static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), ws,
                                                    p.workspace_bytes, &zero, p.y, o.out));
            break;
        case Direction::BackwardData:
            STF_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &one, p.w, o.w, p.y, o.dy, p.conv,
                                                         static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo), ws,
                                                         p.workspace_bytes, &zero, p.x, o.out));
            break;
        case Direction::BackwardFilter:
            STF_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &one, p.x, o.x, p.y, o.dy, p.conv,
                                                           static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo), ws,
                                                           p.workspace_bytes, &zero, p.w, o.out));
            break;
    }
    return true;
}

// The three directions for either storage type; false as run().
bool forward(const ConvShape& s, Element t, const void* x, const void* w, void* y) {
    validate(s);
    if (s.n == 0) return true;  // an empty batch has no output; cuDNN rejects zero-sized tensors
    Operands o;
    o.x = x;
    o.w = w;
    o.out = y;
    return run(s, Direction::Forward, t, o);
}

bool backward_data(const ConvShape& s, Element t, const void* dy, const void* w, void* dx) {
    validate(s);
    if (s.n == 0) return true;
    Operands o;
    o.dy = dy;
    o.w = w;
    o.out = dx;
    return run(s, Direction::BackwardData, t, o);
}

bool backward_weight(const ConvShape& s, Element t, const void* x, const void* dy, void* dw) {
    validate(s);
    if (s.n == 0) {  // a sum over an empty batch: the weight gradient is zero
        STF_CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(s.k * (s.c / s.groups) * s.r * s.s) * element_size(t),
                                       static_cast<cudaStream_t>(stream())));
        return true;
    }
    Operands o;
    o.x = x;
    o.dy = dy;
    o.out = dw;
    return run(s, Direction::BackwardFilter, t, o);
}

}  // namespace

// float32 always has an algorithm (build_plan throws otherwise).
void conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y) { forward(s, Element::F32, x, w, y); }
void conv2d_backward_data(const ConvShape& s, const float* dy, const float* w, float* dx) {
    backward_data(s, Element::F32, dy, w, dx);
}
void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw) {
    backward_weight(s, Element::F32, x, dy, dw);
}
bool conv2d_forward(const ConvShape& s, const bf16* x, const bf16* w, bf16* y) {
    return forward(s, Element::BF16, x, w, y);
}
bool conv2d_backward_data(const ConvShape& s, const bf16* dy, const bf16* w, bf16* dx) {
    return backward_data(s, Element::BF16, dy, w, dx);
}
bool conv2d_backward_weight(const ConvShape& s, const bf16* x, const bf16* dy, bf16* dw) {
    return backward_weight(s, Element::BF16, x, dy, dw);
}

}  // namespace stf::cuda
