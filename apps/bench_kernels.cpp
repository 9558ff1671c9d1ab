// bench_kernels: every kernel of cuda/kernels.h, checked against its CPU twin (tensor/cpu/kernels.h)
// run in float64 on the same inputs, timed, and set against a measured ceiling, in one table.
//
// Rows are named "<family> <kernel>[, variant]": the family is a section of cuda/kernels.h and a lesson,
// tests/kernels/test_<family>.cpp, so --filter <family> selects exactly that file's kernels; the kernel
// is the launcher's name without the family in front (group_norm_forward is "group_norm forward",
// conv2d_backward_data "conv backward_data").
// The convolution rows are the distinct cuDNN convolutions of EDM's DDPM++ on CIFAR-10 (nn/song_unet.cpp)
// at batch 64, in all three directions.
//
// For each kernel we count the fewest bytes it must move (each input read once, each output written
// once) or, for the STF distances, its arithmetic; bytes over the measured copy bandwidth (or FLOPs over
// the measured sgemm rate) is the floor, and the "% of peak" column says how close the kernel gets.
// Ceilings: a device-to-device copy of a large buffer (bytes read + bytes written) and a large float32
// GEMM through cuBLAS (TF32 off). Without a GPU the float32 CPU twins are timed instead, against a
// parallel memcpy and OpenBLAS's sgemm, and checked against the float64 twins.
//
// Exact kernels (copies, conversions, blitting, Bernoulli draws, the gradient guard) are checked against
// the float32 twin. Where the float64 twin would cost too much at full size (the convolutions at batch
// 64), it checks the first images of the batch: the forward and data-gradient outputs of an image
// depend on that image alone, and the weight gradient is checked in a call whose output gradient is
// zero beyond those images (then timed with the whole batch's).
//
// Versions: where a kernel was tuned, its first, naive version is kept beside the tuned one
// (cuda/kernels.h, the *_v1 launchers; docs/kernels.md tells what changed and what it measured).
// --version 1 times those first versions, and only the rows that have one; the default is the tuned
// version of every kernel. The CPU twins have one version: on the CPU --version 1 prints the same rows
// timing the same twins, to check the rows, not to compare.
//
// Timing: warm-up calls first, then 5 timings of --reps back-to-back calls (CUDA events on stf's
// stream; a host clock on the CPU); the median is reported (for the two ceilings, the best). Outputs
// are poisoned with NaN before the checked call, so an element the kernel forgot to write shows up as
// a NaN error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "cuda/augment_math.h"
#include "cuda/elementwise_math.h"
#include "cuda/kernels.h"
#include "cuda/math_mode.h"
#include "cuda/runtime.h"
#include "nn/network.h"
#include "tensor/cpu/kernels.h"
#include "tensor/tensor.h"

#if STF_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace stf;

namespace {

const char* kUsage = R"(usage: bench_kernels [--size S] [--reps N] [--filter TEXT] [--version 1|2] [--device cpu|cuda]

Runs each hand-written CUDA kernel and its CPU twin on the same random inputs, reports the relative
error ||out - ref|| / ||ref|| against the float64 CPU twin, the time per call, the bytes moved (or FLOPs)
and the achieved GB/s (or TFLOP/s) as a share of the measured copy bandwidth (or sgemm rate). Without a
GPU (or with --device cpu) the float32 CPU twins are timed instead. Exits 1 if a kernel misses the
tolerance 1e-5.

  --size S      scale of every problem (default 1 on CUDA: 2^26 floats, 256 MiB per elementwise buffer,
                far beyond the H100's 50 MiB L2, and the convolutions at batch 64; 1/16 on the CPU)
  --reps N      calls per timing (default 20 on CUDA, 2 on the CPU); 5 timings, median reported
  --filter TEXT only the rows whose name starts with TEXT: a family (elementwise, reduce, softmax,
                group_norm, residual, random, optim, stf, blas, conv, augment, pool, resize: the kernels of
                tests/kernels/test_<family>.cpp) or a family and kernel ("conv backward_weight")
  --version N   2 (default): every kernel as tuned; 1: the first, naive version of the kernels that
                were tuned (elementwise strided binary and copy, group_norm forward and backward, optim
                *_many, stf sq_distances and softmax_chunk; docs/kernels.md), only those rows
  --device      cuda (default when a GPU is usable) or cpu
)";

// The kernel families, as cuda/kernels.h and tests/kernels/ divide them; every row's name starts with one.
const char* const kFamilies[] = {"elementwise", "reduce", "softmax", "group_norm", "residual", "random",
                                 "optim",       "stf",    "blas",    "conv",       "augment", "pool",
                                 "resize",      "topk"};

constexpr double kTolerance = 1e-5;
// Rows whose outputs are stored in bf16 (mixed precision; the row name ends in "bf16"): rounding to
// 8 significant bits moves each value by up to 2^-9 of it, so the relative L2 error against float64 is
// about 1e-3; a wrong value gives errors of order 1.
constexpr double kBf16Tolerance = 4e-3;
bool g_gpu = false;

// The kernel versions: 2 is every kernel as tuned, 1 the first version of those that were tuned.
constexpr int kLatestVersion = 2;
// The rows whose kernel has a first version (cuda/kernels.h, the *_v1 launchers).
const char* const kFirstVersionRows[] = {"elementwise binary mul, channel broadcast", "elementwise copy_strided, transpose",
                                         "group_norm forward",  "group_norm backward",
                                         "optim adam_update_many, DDPM++", "optim ema_update_many, DDPM++",
                                         "optim nan_to_num_many, DDPM++",  "stf sq_distances",
                                         "stf sq_distances, training size", "stf softmax_chunk"};

// Calls the CUDA kernel on the GPU, else the float32 CPU twin; both take the same pointers. TWIN_V
// calls the CUDA kernel's first version (fn_v1) when `version` is 1.
#if STF_WITH_CUDA
#define TWIN(fn, ...) (g_gpu ? cuda::fn(__VA_ARGS__) : cpu::fn<float>(__VA_ARGS__))
#define TWIN_V(version, fn, ...) \
    (g_gpu ? ((version) == 1 ? cuda::fn##_v1(__VA_ARGS__) : cuda::fn(__VA_ARGS__)) : cpu::fn<float>(__VA_ARGS__))
#else
#define TWIN(fn, ...) cpu::fn<float>(__VA_ARGS__)
#define TWIN_V(version, fn, ...) cpu::fn<float>(__VA_ARGS__)
#endif

// ---- buffers on the device under test --------------------------------------------------------------

// Device memory on the GPU, host memory on the CPU; same interface either way.
class Buf {
public:
    explicit Buf(size_t bytes) : bytes_(bytes) {
        if (g_gpu) ptr_ = cuda::malloc(bytes);
        else host_.resize(bytes), ptr_ = host_.data();
    }
    ~Buf() {
        if (g_gpu && ptr_) cuda::free(ptr_);
    }
    Buf(Buf&& o) noexcept : bytes_(o.bytes_), ptr_(o.ptr_), host_(std::move(o.host_)) { o.ptr_ = nullptr; }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
    template <class T> static Buf of(const std::vector<T>& v) {
        Buf b(v.size() * sizeof(T));
        b.upload(v.data());
        return b;
    }
    template <class T = float> T* as() const { return static_cast<T*>(ptr_); }
    float* f() const { return as<float>(); }
    void upload(const void* src) {
        if (g_gpu) cuda::copy_host_to_device(ptr_, src, bytes_);
        else std::memcpy(ptr_, src, bytes_);
    }
    template <class T = float> std::vector<T> download() const {
        std::vector<T> v(bytes_ / sizeof(T));
        if (g_gpu) cuda::copy_device_to_host(v.data(), ptr_, bytes_);
        else std::memcpy(v.data(), ptr_, bytes_);
        return v;
    }
    // All bytes 0xFF: NaN as float32 and as bfloat16.
    void poison() {
        std::vector<unsigned char> nan(bytes_, 0xFF);
        upload(nan.data());
    }

private:
    size_t bytes_;
    void* ptr_ = nullptr;
    std::vector<unsigned char> host_;
};

// ---- inputs, references, errors ----------------------------------------------------------------------

uint64_t g_offset = 0;  // a fresh Philox stream for every input

std::vector<float> uniform_floats(int64_t n, float lo = -1, float hi = 1) {
    std::vector<float> v(static_cast<size_t>(n));
    cpu::uniform<float>(n, v.data(), lo, hi, 2024, g_offset++);
    return v;
}

std::vector<double> to_f64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// bf16 copies of float values (rounded), and float values of bf16 ones (exact).
std::vector<bf16> to_bf16(const std::vector<float>& v) {
    std::vector<bf16> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = bf16(v[i]);
    return out;
}
std::vector<float> to_f32(const std::vector<bf16>& v) { return std::vector<float>(v.begin(), v.end()); }

// ||got - ref|| / ||ref|| (0 when both are 0); NaN anywhere in got gives NaN.
double rel_error(const std::vector<float>& got, const std::vector<double>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        double d = static_cast<double>(got[i]) - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

StridedLayout contiguous_layout(std::vector<int64_t> sizes) {
    StridedLayout l;
    l.ndim = static_cast<int>(sizes.size());
    int64_t stride = 1;
    for (int d = l.ndim - 1; d >= 0; --d) l.sizes[d] = sizes[d], l.strides[d] = stride, stride *= sizes[d];
    return l;
}

// ---- timing ----------------------------------------------------------------------------------------

// Median over 5 timings of `reps` back-to-back calls, in milliseconds per call; with `best`, the fastest
// timing (for the ceilings, which are what the device can do at best).
double time_ms(const std::function<void()>& run, int reps, bool best = false) {
    for (int i = 0; i < 2; ++i) run();  // warm-up: first-launch costs, page faults, thread pool
    std::vector<double> per_call;
    for (int t = 0; t < 5; ++t) {
#if STF_WITH_CUDA
        if (g_gpu) {
            auto stream = static_cast<cudaStream_t>(cuda::stream());
            cudaEvent_t start, stop;
            cudaEventCreate(&start);
            cudaEventCreate(&stop);
            cudaEventRecord(start, stream);
            for (int i = 0; i < reps; ++i) run();
            cudaEventRecord(stop, stream);
            STF_CHECK(cudaEventSynchronize(stop) == cudaSuccess, "CUDA error while timing: "
                                                                     << cudaGetErrorString(cudaGetLastError()));
            float ms = 0;
            cudaEventElapsedTime(&ms, start, stop);
            cudaEventDestroy(start);
            cudaEventDestroy(stop);
            per_call.push_back(ms / reps);
            continue;
        }
#endif
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) run();
        per_call.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                           reps);
    }
    std::sort(per_call.begin(), per_call.end());
    return best ? per_call[0] : per_call[2];
}

// ---- the table -------------------------------------------------------------------------------------

struct Row {
    std::string kernel, shape;
    double err = 0, ms = 0, bytes = 0, flops = 0;  // per call; flops > 0 rates the row by arithmetic
    bool bf16_output = false;                      // judged against kBf16Tolerance
    double tolerance() const { return bf16_output ? kBf16Tolerance : kTolerance; }
};

struct Bench {
    double size = 1;
    int reps = 20;
    std::string filter;
    int version = kLatestVersion;
    double peak_gbs = 0, peak_tflops = 0;  // measured ceilings
    std::vector<Row> rows;

    // Rows are selected by the start of their name: a family, or a family and kernel; under --version 1,
    // only the rows whose kernel has a first version.
    bool wants(const std::string& kernel) const {
        if (kernel.compare(0, filter.size(), filter) != 0) return false;
        return version == kLatestVersion ||
               std::any_of(std::begin(kFirstVersionRows), std::end(kFirstVersionRows),
                           [&](const char* row) { return kernel == row; });
    }
    // Elements per elementwise buffer: 2^26 x size, a multiple of 4096, at least 2^16 so every shape below is whole.
    int64_t elems() const { return std::max<int64_t>(1 << 16, static_cast<int64_t>(size * (int64_t{1} << 26))) / 4096 * 4096; }

    // Poisons the outputs, runs once and checks with `error`, then (after `before_timing`, if any: the
    // timed inputs where the checked call used others) times `run`.
    void measure(Row row, std::vector<Buf*> outputs, const std::function<void()>& run,
                 const std::function<double()>& error, const std::function<void()>& before_timing = {}) {
        for (Buf* out : outputs) out->poison();
        run();
        row.err = error();
        if (before_timing) before_timing();
        row.ms = time_ms(run, reps);
        rows.push_back(row);
        print(rows.back());
    }

    static void header() {
        std::printf("%-42s %-26s %9s %4s %10s %10s %16s %7s\n", "kernel", "shape", "rel err", "ok", "us/call",
                    "moved", "achieved", "% peak");
    }
    void print(const Row& r) const {
        bool ok = r.err <= r.tolerance();  // false for NaN
        char moved[32], rate[32];
        double share;
        if (r.flops > 0) {
            std::snprintf(moved, sizeof(moved), "%.2f GF", r.flops / 1e9);
            double tflops = r.flops / (r.ms / 1e3) / 1e12;
            std::snprintf(rate, sizeof(rate), "%.3g TFLOP/s", tflops);
            share = 100 * tflops / peak_tflops;
        } else {
            std::snprintf(moved, sizeof(moved), "%.1f MB", r.bytes / 1e6);
            double gbs = r.bytes / (r.ms / 1e3) / 1e9;
            std::snprintf(rate, sizeof(rate), "%.0f GB/s", gbs);
            share = 100 * gbs / peak_gbs;
        }
        std::printf("%-42s %-26s %9.2e %4s %10.1f %10s %16s %6.1f%%\n", r.kernel.c_str(), r.shape.c_str(), r.err,
                    ok ? "ok" : "FAIL", r.ms * 1e3, moved, rate, share);
        std::fflush(stdout);
    }
};

std::string dims(std::initializer_list<int64_t> d) {
    std::string s;
    for (int64_t v : d) s += (s.empty() ? "" : "x") + std::to_string(v);
    return s;
}

// ---- ceilings --------------------------------------------------------------------------------------

// Copy bandwidth: (bytes read + bytes written) per second of a large buffer copy.
double measure_copy_gbs(Bench& b) {
    const int64_t n = b.elems();
    Buf src = Buf::of(uniform_floats(n)), dst(n * sizeof(float));
    const size_t bytes = n * sizeof(float);
    double ms = time_ms(
        [&] {
            if (g_gpu) {
                cuda::copy_device_to_device(dst.f(), src.f(), bytes);
                return;
            }
            // Both cores copy, as the OpenMP CPU twins run.
            const int64_t chunks = 64, per = n / chunks;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < chunks; ++c) std::memcpy(dst.f() + c * per, src.f() + c * per, per * sizeof(float));
        },
        b.reps, true);
    return 2.0 * bytes / (ms / 1e3) / 1e9;
}

// float32 GEMM rate of a large square product (cuBLAS with TF32 off, or OpenBLAS).
double measure_sgemm_tflops(Bench& b) {
    const int64_t n = g_gpu ? 8192 : 1024;
    Buf a = Buf::of(uniform_floats(n * n)), c(n * n * sizeof(float));
    double ms = time_ms([&] { TWIN(gemm, false, false, n, n, n, 1.0f, a.f(), n, a.f(), n, 0.0f, c.f(), n, 1, 0, 0, 0); },
                        std::max(1, b.reps / 4), true);
    return 2.0 * n * n * n / (ms / 1e3) / 1e12;
}

// ---- the kernels -----------------------------------------------------------------------------------

void elementwise_cases(Bench& b) {
    const int64_t n = b.elems();
    const std::string shape = dims({n});
    const StridedLayout flat = contiguous_layout({n});
    if (b.wants("elementwise fill")) {
        Buf out(n * 4);
        std::vector<double> ref(n);
        cpu::fill<double>(n, ref.data(), 0.5);
        b.measure({"elementwise fill", shape, 0, 0, 4.0 * n}, {&out}, [&] { TWIN(fill, n, out.f(), 0.5f); },
                  [&] { return rel_error(out.download(), ref); });
    }
    struct U {
        const char* name;
        UnaryOp op;
    };
    for (U u : {U{"elementwise unary silu", UnaryOp::Silu}, U{"elementwise unary exp", UnaryOp::Exp}}) {
        if (!b.wants(u.name)) continue;
        std::vector<float> x = uniform_floats(n, -4, 4);
        std::vector<double> ref(n);
        cpu::unary<double>(u.op, n, ref.data(), to_f64(x).data(), flat, 0, 0);
        Buf in = Buf::of(x), out(n * 4);
        b.measure({u.name, shape, 0, 0, 8.0 * n}, {&out}, [&] { TWIN(unary, u.op, n, out.f(), in.f(), flat, 0, 0); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("elementwise unary identity, transposed")) {
        // Reads a [rows, cols] matrix column by column: the strided path of every elementwise kernel.
        const int64_t rows = 4096, cols = n / rows;
        StridedLayout t = contiguous_layout({cols, rows});
        t.strides[0] = 1, t.strides[1] = cols;
        std::vector<float> x = uniform_floats(n);
        std::vector<double> ref(n);
        cpu::unary<double>(UnaryOp::Identity, n, ref.data(), to_f64(x).data(), t, 0, 0);
        Buf in = Buf::of(x), out(n * 4);
        b.measure({"elementwise unary identity, transposed", dims({rows, cols}) + "^T", 0, 0, 8.0 * n}, {&out},
                  [&] { TWIN(unary, UnaryOp::Identity, n, out.f(), in.f(), t, 0, 0); },
                  [&] { return rel_error(out.download(), ref); });
    }
    struct B {
        const char* name;
        BinaryOp op;
        double alpha;
    };
    for (B op : {B{"elementwise binary add", BinaryOp::Add, 0}, B{"elementwise binary add_scaled", BinaryOp::AddScaled, -0.01}}) {
        if (!b.wants(op.name)) continue;
        std::vector<float> x = uniform_floats(n), y = uniform_floats(n);
        std::vector<double> ref(n);
        cpu::binary<double>(op.op, n, ref.data(), to_f64(x).data(), flat, to_f64(y).data(), flat, op.alpha, 0);
        Buf bx = Buf::of(x), by = Buf::of(y), out(n * 4);
        b.measure({op.name, shape, 0, 0, 12.0 * n}, {&out},
                  [&] { TWIN(binary, op.op, n, out.f(), bx.f(), flat, by.f(), flat, op.alpha, 0); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("elementwise binary mul, channel broadcast")) {
        // [batch, 256, 1024] times [1, 256, 1]: a per-channel scale, as a bias or a norm's gamma.
        const int64_t c = 256, hw = 1024, batch = std::max<int64_t>(1, n / (c * hw)), n = batch * c * hw;
        StridedLayout lx = contiguous_layout({batch, c, hw}), lc = contiguous_layout({batch, c, hw});
        lc.strides[0] = 0, lc.strides[1] = 1, lc.strides[2] = 0;
        std::vector<float> x = uniform_floats(n), s = uniform_floats(c);
        std::vector<double> ref(n);
        cpu::binary<double>(BinaryOp::Mul, n, ref.data(), to_f64(x).data(), lx, to_f64(s).data(), lc, 0, 0);
        Buf bx = Buf::of(x), bs = Buf::of(s), out(n * 4);
        b.measure({"elementwise binary mul, channel broadcast", dims({batch, c, hw}), 0, 0, 8.0 * n + 4.0 * c}, {&out},
                  [&] { TWIN_V(b.version, binary, BinaryOp::Mul, n, out.f(), bx.f(), lx, bs.f(), lc, 0, 0); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("elementwise where")) {
        std::vector<float> cond = uniform_floats(n, 0, 1), x = uniform_floats(n), y = uniform_floats(n);
        for (float& v : cond) v = v < 0.5f ? 0.0f : 1.0f;
        std::vector<double> ref(n);
        cpu::where<double>(n, ref.data(), to_f64(cond).data(), flat, to_f64(x).data(), flat, to_f64(y).data(), flat);
        Buf bc = Buf::of(cond), bx = Buf::of(x), by = Buf::of(y), out(n * 4);
        b.measure({"elementwise where", shape, 0, 0, 16.0 * n}, {&out},
                  [&] { TWIN(where, n, out.f(), bc.f(), flat, bx.f(), flat, by.f(), flat); },
                  [&] { return rel_error(out.download(), ref); });
    }
}

// Copies and conversions are exact: the reference is the CPU twin itself.
void copy_cases(Bench& b) {
    const int64_t n = b.elems();
    if (b.wants("elementwise copy_strided, transpose")) {
        const int64_t rows = 4096, cols = n / rows;
        StridedLayout src = contiguous_layout({cols, rows}), dst = contiguous_layout({cols, rows});
        src.strides[0] = 1, src.strides[1] = cols;
        std::vector<float> x = uniform_floats(n), ref(n);
        cpu::copy_strided(n, 4, ref.data(), dst, x.data(), src);
        Buf in = Buf::of(x), out(n * 4);
        b.measure({"elementwise copy_strided, transpose", dims({rows, cols}) + "^T", 0, 0, 8.0 * n}, {&out},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1) return cuda::copy_strided_v1(n, 4, out.f(), dst, in.f(), src);
                      if (g_gpu) return cuda::copy_strided(n, 4, out.f(), dst, in.f(), src);
#endif
                      cpu::copy_strided(n, 4, out.f(), dst, in.f(), src);
                  },
                  [&] { return rel_error(out.download(), to_f64(ref)); });
    }
    const int f32 = static_cast<int>(DType::F32), bf16 = static_cast<int>(DType::BF16);
    std::vector<float> x = uniform_floats(n, -100, 100);
    std::vector<uint16_t> h(n);
    cpu::convert(n, h.data(), bf16, x.data(), f32);
    if (b.wants("elementwise f32_to_bf16")) {
        std::vector<float> ref(n);
        cpu::convert(n, ref.data(), f32, h.data(), bf16);
        Buf in = Buf::of(x), out(n * 2);
        b.measure({"elementwise f32_to_bf16", dims({n}), 0, 0, 6.0 * n}, {&out},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu) return cuda::f32_to_bf16(n, out.as<uint16_t>(), in.f());
#endif
                      cpu::convert(n, out.as<uint16_t>(), bf16, in.f(), f32);
                  },
                  [&] {
                      std::vector<uint16_t> got = out.download<uint16_t>();
                      std::vector<float> back(n);
                      cpu::convert(n, back.data(), f32, got.data(), bf16);
                      return rel_error(back, to_f64(ref));
                  });
    }
    if (b.wants("elementwise bf16_to_f32")) {
        std::vector<float> ref(n);
        cpu::convert(n, ref.data(), f32, h.data(), bf16);
        Buf in = Buf::of(h), out(n * 4);
        b.measure({"elementwise bf16_to_f32", dims({n}), 0, 0, 6.0 * n}, {&out},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu) return cuda::bf16_to_f32(n, out.f(), in.as<uint16_t>());
#endif
                      cpu::convert(n, out.f(), f32, in.as<uint16_t>(), bf16);
                  },
                  [&] { return rel_error(out.download(), to_f64(ref)); });
    }
}

void reduce_cases(Bench& b) {
    const int64_t n = b.elems();
    struct R {
        const char* name;
        ReduceOp op;
        int64_t outer, r, inner;
    };
    // Rows of 1024 (a loss per image), the middle axis (a max over channels), the batch axis (bias gradients).
    for (R c : {R{"reduce sum, last axis", ReduceOp::Sum, n / 1024, 1024, 1},
                R{"reduce max, middle axis", ReduceOp::Max, 64, 256, n / (64 * 256)},
                R{"reduce sum, first axis", ReduceOp::Sum, 1, 256, n / 256}}) {
        if (!b.wants(c.name)) continue;
        std::vector<float> x = uniform_floats(n);
        std::vector<double> ref(c.outer * c.inner);
        cpu::reduce<double>(c.op, c.outer, c.r, c.inner, ref.data(), to_f64(x).data());
        Buf in = Buf::of(x), out(c.outer * c.inner * 4);
        b.measure({c.name, dims({c.outer, c.r, c.inner}), 0, 0, 4.0 * (n + c.outer * c.inner)}, {&out},
                  [&] { TWIN(reduce, c.op, c.outer, c.r, c.inner, out.f(), in.f()); },
                  [&] { return rel_error(out.download(), ref); });
    }
}

void softmax_cases(Bench& b) {
    // Rows of 256: attention over the 16x16 pixels of DDPM++.
    const int64_t cols = 256, rows = b.elems() / cols, n = rows * cols;
    std::vector<float> x = uniform_floats(n, -8, 8), y(n), dy = uniform_floats(n);
    cpu::softmax_rows<float>(rows, cols, y.data(), x.data(), false);
    if (b.wants("softmax rows")) {
        std::vector<double> ref(n);
        cpu::softmax_rows<double>(rows, cols, ref.data(), to_f64(x).data(), false);
        Buf in = Buf::of(x), out(n * 4);
        b.measure({"softmax rows", dims({rows, cols}), 0, 0, 8.0 * n}, {&out},
                  [&] { TWIN(softmax_rows, rows, cols, out.f(), in.f(), false); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("softmax rows_backward")) {
        std::vector<double> ref(n);
        cpu::softmax_rows_backward<double>(rows, cols, ref.data(), to_f64(dy).data(), to_f64(y).data(), false);
        Buf bdy = Buf::of(dy), by = Buf::of(y), out(n * 4);
        b.measure({"softmax rows_backward", dims({rows, cols}), 0, 0, 12.0 * n}, {&out},
                  [&] { TWIN(softmax_rows_backward, rows, cols, out.f(), bdy.f(), by.f(), false); },
                  [&] { return rel_error(out.download(), ref); });
    }
}

// One GroupNorm variant: plain, or fused as in EDM's blocks (offset [n, c] added first, SiLU and
// dropout 0.13 after, the mask drawn in the kernels).
// With `bf16`, x, y, dy and dx are stored in bf16 (mixed precision): x is rounded first, so the float64
// reference sees the same input, and the outputs' rounding is what the error measures.
void group_norm_variant(Bench& b, bool fused, bool bf16_storage) {
    // DDPM++'s 32x32 activations: 256 channels in 32 groups, batch from --size.
    const int64_t c = 256, hw = 1024, g = 32, batch = std::max<int64_t>(1, b.elems() / (c * hw)), n = batch * c * hw;
    const std::string shape = dims({batch, c, hw}) + " g" + std::to_string(g);
    // "group_norm forward", "group_norm backward, silu+dropout, bf16", ...: a name ending in "bf16" is a
    // row whose outputs are stored in bf16 (tests/e2e/bench.sh holds those to kBf16Tolerance).
    const std::string suffix = std::string(fused ? ", silu+dropout" : "") + (bf16_storage ? ", bf16" : "");
    const std::string forward = "group_norm forward" + suffix, backward = "group_norm backward" + suffix;
    const double bytes = bf16_storage ? 2.0 : 4.0;  // per stored activation value
    std::vector<float> x = uniform_floats(n, -2, 3), gamma = uniform_floats(c, 0.5, 1.5), beta = uniform_floats(c);
    if (bf16_storage) x = to_f32(to_bf16(x));
    std::vector<float> offset = uniform_floats(batch * c);
    std::vector<double> xd = to_f64(x), gd = to_f64(gamma), bd = to_f64(beta), od = to_f64(offset);
    DropoutStream dropout;
    if (fused) dropout = {0.87, 1 / 0.87, 3, 11, 0, 0};
    const GroupNormFusion<double> fusion_d{fused ? od.data() : nullptr, fused, dropout};
    std::vector<double> y(n), mean(batch * g), rstd(batch * g);
    cpu::group_norm_forward<double>(batch, c, hw, g, 1e-6, xd.data(), gd.data(), bd.data(), fusion_d, y.data(),
                                    mean.data(), rstd.data());
    Buf bx = bf16_storage ? Buf::of(to_bf16(x)) : Buf::of(x), bg = Buf::of(gamma), bb = Buf::of(beta),
        bo = Buf::of(offset), out(static_cast<size_t>(n * bytes)), bm(batch * g * 4), br(batch * g * 4);
    // The output as float, whatever its storage.
    auto out_values = [&] { return bf16_storage ? to_f32(out.download<bf16>()) : out.download(); };
    const GroupNormFusion<float> fusion{fused ? bo.f() : nullptr, fused, dropout};
    if (b.wants(forward)) {
        b.measure({forward, shape, 0, 0, 2 * bytes * n, 0, bf16_storage}, {&out, &bm, &br},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1)  // only the plain rows have a first version
                          return cuda::group_norm_forward_v1(batch, c, hw, g, 1e-6f, bx.f(), bg.f(), bb.f(), out.f(),
                                                             bm.f(), br.f());
#endif
                      if (bf16_storage)
                          TWIN(group_norm_forward, batch, c, hw, g, 1e-6f, bx.as<bf16>(), bg.f(), bb.f(), fusion,
                               out.as<bf16>(), bm.f(), br.f());
                      else
                          TWIN(group_norm_forward, batch, c, hw, g, 1e-6f, bx.f(), bg.f(), bb.f(), fusion, out.f(),
                               bm.f(), br.f());
                  },
                  [&] { return std::max(rel_error(out_values(), y), rel_error(br.download(), rstd)); });
    }
    if (b.wants(backward)) {
        std::vector<float> dy = uniform_floats(n);
        if (bf16_storage) dy = to_f32(to_bf16(dy));
        std::vector<double> dx(n), dgamma(c), dbeta(c);
        cpu::group_norm_backward<double>(batch, c, hw, g, xd.data(), gd.data(), bd.data(), fusion_d, mean.data(),
                                         rstd.data(), to_f64(dy).data(), dx.data(), dgamma.data(), dbeta.data());
        std::vector<float> mean_f(mean.begin(), mean.end()), rstd_f(rstd.begin(), rstd.end());
        bm.upload(mean_f.data());
        br.upload(rstd_f.data());
        Buf bdy = bf16_storage ? Buf::of(to_bf16(dy)) : Buf::of(dy), bdg(c * 4), bdb(c * 4);
        b.measure({backward, shape, 0, 0, 3 * bytes * n, 0, bf16_storage}, {&out, &bdg, &bdb},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1)
                          return cuda::group_norm_backward_v1(batch, c, hw, g, bx.f(), bg.f(), bm.f(), br.f(), bdy.f(),
                                                              out.f(), bdg.f(), bdb.f());
#endif
                      if (bf16_storage)
                          TWIN(group_norm_backward, batch, c, hw, g, bx.as<bf16>(), bg.f(), bb.f(), fusion, bm.f(),
                               br.f(), bdy.as<bf16>(), out.as<bf16>(), bdg.f(), bdb.f());
                      else
                          TWIN(group_norm_backward, batch, c, hw, g, bx.f(), bg.f(), bb.f(), fusion, bm.f(), br.f(),
                               bdy.f(), out.f(), bdg.f(), bdb.f());
                  },
                  [&] {
                      return std::max({rel_error(out_values(), dx), rel_error(bdg.download(), dgamma),
                                       rel_error(bdb.download(), dbeta)});
                  });
    }
}

void group_norm_cases(Bench& b) {
    group_norm_variant(b, false, false);
    group_norm_variant(b, true, false);
    group_norm_variant(b, true, true);  // norm1 of a block under mixed precision
}

// EDM's residual tail, (conv1 + skip + biases) * skip_scale, at the 32x32 activations' shape; and its
// mixed-precision form, both convolutions' outputs in bf16 and the float32 residual stream out.
void residual_cases(Bench& b) {
    const int64_t c = 256, hw = 1024, batch = std::max<int64_t>(1, b.elems() / (c * hw)), n = batch * c * hw;
    for (bool bf16_inputs : {false, true}) {
        const std::string name = bf16_inputs ? "residual scaled_residual, bf16 inputs" : "residual scaled_residual";
        if (!b.wants(name)) continue;
        std::vector<float> a = uniform_floats(n), bv = uniform_floats(n), bias = uniform_floats(c);
        if (bf16_inputs) a = to_f32(to_bf16(a)), bv = to_f32(to_bf16(bv));
        std::vector<double> ref(n);
        cpu::scaled_residual<double>(batch, c, hw, to_f64(a).data(), to_f64(bv).data(), to_f64(bias).data(),
                                     0.7071067811865476, ref.data());
        Buf ba = bf16_inputs ? Buf::of(to_bf16(a)) : Buf::of(a), bb = bf16_inputs ? Buf::of(to_bf16(bv)) : Buf::of(bv),
            bbias = Buf::of(bias), out(n * 4);
        // The output is float32 either way, so the float tolerance applies.
        b.measure({name, dims({batch, c, hw}), 0, 0, (bf16_inputs ? 8.0 : 12.0) * n}, {&out},
                  [&] {
                      if (bf16_inputs)
                          TWIN(scaled_residual, batch, c, hw, ba.as<bf16>(), bb.as<bf16>(), bbias.f(), 0.70710678f,
                               out.f());
                      else
                          TWIN(scaled_residual, batch, c, hw, ba.f(), bb.f(), bbias.f(), 0.70710678f, out.f());
                  },
                  [&] { return rel_error(out.download(), ref); });
    }
}

void random_cases(Bench& b) {
    const int64_t n = b.elems();
    const uint64_t seed = 5, offset = 77;
    if (b.wants("random uniform")) {
        std::vector<double> ref(n);
        cpu::uniform<double>(n, ref.data(), -1, 1, seed, offset);
        Buf out(n * 4);
        b.measure({"random uniform", dims({n}), 0, 0, 4.0 * n}, {&out}, [&] { TWIN(uniform, n, out.f(), -1.0f, 1.0f, seed, offset); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("random normal")) {
        std::vector<double> ref(n);
        cpu::normal<double>(n, ref.data(), 0, 1, seed, offset);
        Buf out(n * 4);
        b.measure({"random normal", dims({n}), 0, 0, 4.0 * n}, {&out}, [&] { TWIN(normal, n, out.f(), 0.0f, 1.0f, seed, offset); },
                  [&] { return rel_error(out.download(), ref); });
    }
    if (b.wants("random bernoulli")) {
        // 0 or 1 from a threshold: the float32 twin is the reference (float64 may round across it).
        std::vector<float> ref(n);
        cpu::bernoulli<float>(n, ref.data(), 0.87, seed, offset);
        Buf out(n * 4);
        b.measure({"random bernoulli", dims({n}), 0, 0, 4.0 * n}, {&out}, [&] { TWIN(bernoulli, n, out.f(), 0.87f, seed, offset); },
                  [&] { return rel_error(out.download(), to_f64(ref)); });
    }
}

// ---- optim ----------------------------------------------------------------------------------------

// Adam's step 7 at lr 2e-3 with EDM's betas, as optim::AdamConstants (the host computes them once).
template <class T> optim::AdamConstants<T> adam_step_constants() {
    const double t = 7, lr = 2e-3;
    return {T(0.9), T(0.1), T(0.999), T(0.001), T(1 / (1 - std::pow(0.999, t))), T(-lr / (1 - std::pow(0.9, t))), T(1e-8)};
}

// DDPM++'s parameter tensors (EDM's CIFAR-10 network, 55.7 M parameters), each scaled by --size: what the
// optimiser's multi-tensor launches walk every step.
std::vector<int64_t> ddpmpp_parameter_sizes(double size) {
    Generator gen(0);
    std::shared_ptr<nn::Precond> net = nn::make_network(nn::NetworkConfig::preset("ddpmpp"), gen);
    std::vector<int64_t> sizes;
    for (const auto& [name, t] : net->named_parameters())
        sizes.push_back(std::max<int64_t>(1, static_cast<int64_t>(std::llround(static_cast<double>(t.numel()) * size))));
    return sizes;
}

// Many tensors in one buffer per operand, each starting on a 512-byte boundary as the allocator's blocks do.
struct TensorList {
    std::vector<int64_t> sizes, offsets;
    int64_t total = 0;
    explicit TensorList(std::vector<int64_t> s) : sizes(std::move(s)) {
        for (int64_t n : sizes) offsets.push_back(total), total += (n + 127) / 128 * 128;
    }
    int64_t elements() const {
        int64_t e = 0;
        for (int64_t n : sizes) e += n;
        return e;
    }
};

// Adam and the EMA over n elements, in place: the first call is checked against the float64 twin, the
// timed calls keep stepping the same state (the same work). Then the multi-tensor forms over DDPM++'s
// parameters, and the gradient guard (nan_to_num_many, exact: checked against the float32 twin).
void optim_cases(Bench& b) {
    const int64_t n = b.elems();
    const optim::AdamConstants<float> k = adam_step_constants<float>();
    const optim::AdamConstants<double> kd = adam_step_constants<double>();
    if (b.wants("optim adam_update")) {
        std::vector<float> p = uniform_floats(n), g = uniform_floats(n, -1e-3f, 1e-3f), m = uniform_floats(n, -1e-3f, 1e-3f),
                           v = uniform_floats(n, 0, 1e-6f);
        std::vector<double> rp = to_f64(p), rm = to_f64(m), rv = to_f64(v);
        cpu::adam_update<double>(n, rp.data(), to_f64(g).data(), rm.data(), rv.data(), kd);
        Buf bp = Buf::of(p), bg = Buf::of(g), bm = Buf::of(m), bv = Buf::of(v);
        b.measure({"optim adam_update", dims({n}), 0, 0, 28.0 * n}, {},
                  [&] { TWIN(adam_update, n, bp.f(), bg.f(), bm.f(), bv.f(), k); },
                  [&] {
                      return std::max({rel_error(bp.download(), rp), rel_error(bm.download(), rm),
                                       rel_error(bv.download(), rv)});
                  });
    }
    if (b.wants("optim ema_update")) {
        std::vector<float> ema = uniform_floats(n), net = uniform_floats(n);
        std::vector<double> ref = to_f64(ema);
        cpu::ema_update<double>(n, ref.data(), to_f64(net).data(), 0.999);
        Buf be = Buf::of(ema), bn = Buf::of(net);
        b.measure({"optim ema_update", dims({n}), 0, 0, 12.0 * n}, {}, [&] { TWIN(ema_update, n, be.f(), bn.f(), 0.999f); },
                  [&] { return rel_error(be.download(), ref); });
    }
    const bool adam_many = b.wants("optim adam_update_many, DDPM++"), ema_many = b.wants("optim ema_update_many, DDPM++"),
               guard_many = b.wants("optim nan_to_num_many, DDPM++");
    if (!adam_many && !ema_many && !guard_many) return;
    const TensorList list(ddpmpp_parameter_sizes(b.size));
    const int64_t count = static_cast<int64_t>(list.sizes.size()), total = list.total, e = list.elements();
    const std::string shape = std::to_string(count) + " tensors, " + std::to_string(e);
    std::vector<float> p = uniform_floats(total), g = uniform_floats(total, -1e-3f, 1e-3f),
                       m = uniform_floats(total, -1e-3f, 1e-3f), v = uniform_floats(total, 0, 1e-6f),
                       ema = uniform_floats(total);
    Buf bp = Buf::of(p), bg = Buf::of(g), bm = Buf::of(m), bv = Buf::of(v), be = Buf::of(ema);
    // The launches' operand lists, pointing into the buffers (device pointers on the GPU).
    std::vector<cuda::AdamOperands> adam;
    std::vector<cuda::EmaOperands> emas;
    std::vector<cuda::GuardOperands> guards;
    for (int64_t t = 0; t < count; ++t) {
        const int64_t at = list.offsets[t], len = list.sizes[t];
        adam.push_back({bp.f() + at, bg.f() + at, bm.f() + at, bv.f() + at, len});
        emas.push_back({be.f() + at, bp.f() + at, len});
        guards.push_back({bg.f() + at, len});
    }
    if (adam_many) {
        std::vector<double> rp = to_f64(p), rm = to_f64(m), rv = to_f64(v);
        const std::vector<double> rg = to_f64(g);
        for (int64_t t = 0; t < count; ++t) {
            const int64_t at = list.offsets[t];
            cpu::adam_update<double>(list.sizes[t], rp.data() + at, rg.data() + at, rm.data() + at, rv.data() + at, kd);
        }
        b.measure({"optim adam_update_many, DDPM++", shape, 0, 0, 28.0 * e}, {},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1) return cuda::adam_update_many_v1(adam.data(), count, k);
                      if (g_gpu) return cuda::adam_update_many(adam.data(), count, k);
#endif
                      for (const cuda::AdamOperands& o : adam) cpu::adam_update<float>(o.n, o.p, o.g, o.m, o.v, k);
                  },
                  [&] {
                      // Padding between tensors is never written: it stays as uploaded on both sides.
                      return std::max({rel_error(bp.download(), rp), rel_error(bm.download(), rm),
                                       rel_error(bv.download(), rv)});
                  });
    }
    if (ema_many) {
        const std::vector<double> net = to_f64(bp.download());  // the parameters as they are now
        std::vector<double> ref = to_f64(ema);
        for (int64_t t = 0; t < count; ++t)
            cpu::ema_update<double>(list.sizes[t], ref.data() + list.offsets[t], net.data() + list.offsets[t], 0.999);
        b.measure({"optim ema_update_many, DDPM++", shape, 0, 0, 12.0 * e}, {},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1) return cuda::ema_update_many_v1(emas.data(), count, 0.999f);
                      if (g_gpu) return cuda::ema_update_many(emas.data(), count, 0.999f);
#endif
                      for (const cuda::EmaOperands& o : emas) cpu::ema_update<float>(o.n, o.ema, o.net, 0.999f);
                  },
                  [&] { return rel_error(be.download(), ref); });
    }
    if (guard_many) {
        // About every 1000th gradient NaN or infinite; the guard is exact, so the reference is its definition.
        std::vector<double> ref(g.begin(), g.end());
        for (int64_t t = 0; t < count; ++t)
            for (int64_t i = list.offsets[t]; i < list.offsets[t] + list.sizes[t]; i += 997) {
                g[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
                ref[i] = elementwise_math::nan_to_num(static_cast<double>(g[i]), 1e5);
            }
        bg.upload(g.data());
        b.measure({"optim nan_to_num_many, DDPM++", shape, 0, 0, 8.0 * e}, {},
                  [&] {
#if STF_WITH_CUDA
                      if (g_gpu && b.version == 1) return cuda::nan_to_num_many_v1(guards.data(), count, 1e5f);
                      if (g_gpu) return cuda::nan_to_num_many(guards.data(), count, 1e5f);
#endif
                      for (const cuda::GuardOperands& o : guards)
                          cpu::unary<float>(UnaryOp::NanToNum, o.n, o.x, o.x, contiguous_layout({o.n}), 1e5, 0);
                  },
                  [&] { return rel_error(bg.download(), ref); });
    }
}

// ---- stf ------------------------------------------------------------------------------------------

void stf_cases(Bench& b) {
    // The STF target's distances at B 256, n 2048, d 3072 (fewer queries with a smaller --size), and at
    // the training size, B 64 and n 1024: 16 output tiles of 64 x 64, where splitting the features over
    // more blocks matters most (docs/kernels.md).
    struct S {
        const char* name;
        int64_t q, n;
    };
    for (S c : {S{"stf sq_distances", std::max<int64_t>(16, static_cast<int64_t>(256 * b.size)), 2048},
                S{"stf sq_distances, training size", 64, 1024}}) {
        if (!b.wants(c.name)) continue;
        const int64_t q = c.q, n = c.n, d = 3072;
        std::vector<float> y = uniform_floats(q * d), x = uniform_floats(n * d);
        std::vector<double> ref(q * n);
        cpu::sq_distances<double>(q, n, d, to_f64(y).data(), to_f64(x).data(), ref.data());
        Buf by = Buf::of(y), bx = Buf::of(x), out(q * n * 4);
        // 3 FLOPs per (i, j, k): a difference and a multiply-add.
        b.measure({c.name, dims({q, n, d}), 0, 0, 4.0 * (q * d + n * d + q * n), 3.0 * q * n * d}, {&out},
                  [&] { TWIN_V(b.version, sq_distances, q, n, d, by.f(), bx.f(), out.f()); },
                  [&] { return rel_error(out.download(), ref); });
    }
}

// One chunk of the STF target's streamed softmax at the n = 50,000 target's shape (64 rows, chunks of
// 8192, d 3072), from a state as an earlier chunk leaves it. In place: the first call is checked, the
// timed calls keep updating the same state (the same work).
void stf_chunk_cases(Bench& b) {
    if (!b.wants("stf softmax_chunk")) return;
    const int64_t rows = 64, len = std::max<int64_t>(512, static_cast<int64_t>(8192 * b.size)), d = 3072;
    std::vector<float> dist = uniform_floats(rows * len, 5000, 7000), coef = uniform_floats(rows, -0.02f, -0.001f);
    std::vector<float> row_max = uniform_floats(rows, -20, -5), wsum = uniform_floats(rows, 1, 3),
                       wsq = uniform_floats(rows, 0.5, 1), acc = uniform_floats(rows * d);
    std::vector<double> r_dist = to_f64(dist), r_max = to_f64(row_max), r_sum = to_f64(wsum), r_sq = to_f64(wsq),
                        r_acc = to_f64(acc);
    cpu::stf_softmax_chunk<double>(rows, len, d, to_f64(coef).data(), r_dist.data(), r_max.data(), r_sum.data(),
                                   r_sq.data(), r_acc.data());
    Buf bd = Buf::of(dist), bc = Buf::of(coef), bm = Buf::of(row_max), bs = Buf::of(wsum), bq = Buf::of(wsq),
        ba = Buf::of(acc);
    b.measure({"stf softmax_chunk", dims({rows, len}) + " d" + std::to_string(d), 0, 0, 8.0 * rows * (len + d)}, {},
              [&] { TWIN_V(b.version, stf_softmax_chunk, rows, len, d, bc.f(), bd.f(), bm.f(), bs.f(), bq.f(), ba.f()); },
              [&] {
                  return std::max({rel_error(bd.download(), r_dist), rel_error(bm.download(), r_max),
                                   rel_error(bs.download(), r_sum), rel_error(bq.download(), r_sq),
                                   rel_error(ba.download(), r_acc)});
              });
}

// ---- blas ---------------------------------------------------------------------------------------

// cuBLAS (OpenBLAS on the CPU) at two of the network's products: attention's scores q^T k at 16x16
// (256 pixels, 256 channels, one product per image of the batch), and the STF target's weighted sum of
// one chunk of references (64 samples, 8192 references of 3072 values). TF32 off, as the ceiling.
void blas_cases(Bench& b) {
    struct G {
        const char* name;
        bool trans_a, trans_b;
        int64_t m, n, k, batch;
    };
    const int64_t images = std::max<int64_t>(1, std::llround(64 * b.size));
    const int64_t chunk = std::max<int64_t>(512, static_cast<int64_t>(8192 * b.size));
    for (G g : {G{"blas gemm, attention q^T k", true, false, 256, 256, 256, images},
                G{"blas gemm, STF target chunk", false, false, 64, 3072, chunk, 1}}) {
        if (!b.wants(g.name)) continue;
        // Row-major, no padding: A [m, k] (stored [k, m] when transposed), B [k, n], C [m, n], per batch entry.
        const int64_t lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n, ldc = g.n;
        const int64_t sa = g.m * g.k, sb = g.k * g.n, sc = g.m * g.n;
        std::vector<float> a = uniform_floats(g.batch * sa), bm = uniform_floats(g.batch * sb);
        std::vector<double> ref(g.batch * sc);
        cpu::gemm<double>(g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0, to_f64(a).data(), lda, to_f64(bm).data(), ldb, 0.0,
                          ref.data(), ldc, g.batch, sa, sb, sc);
        Buf ba = Buf::of(a), bb = Buf::of(bm), out(g.batch * sc * 4);
        const std::string shape = (g.batch > 1 ? std::to_string(g.batch) + "x " : "") + dims({g.m, g.n, g.k});
        b.measure({g.name, shape, 0, 0, 4.0 * g.batch * (sa + sb + sc), 2.0 * g.batch * g.m * g.n * g.k}, {&out},
                  [&] {
                      TWIN(gemm, g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0f, ba.f(), lda, bb.f(), ldb, 0.0f, out.f(), ldc,
                           g.batch, sa, sb, sc);
                  },
                  [&] { return rel_error(out.download(), ref); });
    }
}

// ---- conv -----------------------------------------------------------------------------------------

ConvShape conv_shape(int64_t n, int64_t c, int64_t res, int64_t k, int64_t kernel, int64_t stride = 1,
                     int64_t groups = 1) {
    ConvShape s;
    s.n = n, s.c = c, s.h = res, s.w = res, s.k = k, s.r = kernel, s.s = kernel;
    s.stride_h = s.stride_w = stride;
    s.pad_h = s.pad_w = stride == 1 ? kernel / 2 : 0;
    s.groups = groups;
    return s;
}

// The distinct convolutions of EDM's DDPM++ on CIFAR-10 (nn/song_unet.cpp: model_channels 128,
// channel_mult [2, 2, 2], 4 blocks per level, attention at 16x16, resample filter [1, 1]) at batch n:
// {input channels, output channels, kernel, resolution, stride, groups}.
struct UNetConv {
    int64_t c, k, kernel, res, stride = 1, groups = 1;
};
const UNetConv kDdpmppConvs[] = {
    {3, 128, 3, 32},                 // the encoder's first convolution
    {128, 256, 3, 32}, {128, 256, 1, 32},  // 32x32 block 0: conv0 and its skip
    {256, 256, 3, 32}, {256, 256, 3, 16}, {256, 256, 3, 8},  // every block's conv1, the up/down blocks' conv0
    {256, 256, 1, 32}, {256, 256, 1, 16}, {256, 256, 1, 8},  // up/down blocks' skips, attention's proj
    {256, 768, 1, 16}, {256, 768, 1, 8},                     // attention's qkv (16x16, and the decoder's 8x8 in0)
    {512, 256, 3, 32}, {512, 256, 3, 16}, {512, 256, 3, 8},  // decoder blocks: x concatenated with a skip
    {512, 256, 1, 32}, {512, 256, 1, 16}, {512, 256, 1, 8},  // ... and their skips
    {384, 256, 3, 32}, {384, 256, 1, 32},                    // the last decoder block (256 + the first conv's 128)
    {256, 3, 3, 32},                                         // aux_conv, the output
    {256, 256, 2, 32, 2, 256}, {256, 256, 2, 16, 2, 256},    // down/up-sampling: the [1, 1] filter per channel
};

// cuDNN (im2col + OpenBLAS on the CPU) in all three directions at the U-Net's shapes, batch 64 x --size.
// Rated by arithmetic against the sgemm rate, every direction 2 n k (c / groups) r s p q FLOPs, except
// the depthwise resampling (rated by bytes against the copy bandwidth). The float64 twin checks the
// first images of the batch (see the file's header).
void conv_cases(Bench& b) {
    if (!b.wants("conv")) return;
    const int64_t n = std::max<int64_t>(1, std::llround(64 * b.size)), checked = std::min<int64_t>(n, 2);
    const bool tf32 = cuda::allow_tf32();
    cuda::set_allow_tf32(false);  // float32 arithmetic, as the sgemm ceiling
    for (const UNetConv& u : kDdpmppConvs) {
        const ConvShape s = conv_shape(n, u.c, u.res, u.k, u.kernel, u.stride, u.groups);
        ConvShape sc = s;
        sc.n = checked;
        const int64_t p = s.out_h(), q = s.out_w();
        const int64_t x_image = s.c * s.h * s.w, y_image = s.k * p * q, w_count = s.k * (s.c / s.groups) * s.r * s.s;
        // Depthwise resampling does 4 multiply-adds per output: memory-bound, so rated by its bytes.
        const double flops = s.groups > 1 ? 0 : 2.0 * n * s.k * (s.c / s.groups) * s.r * s.s * p * q;
        std::string shape = dims({n, s.c, s.h, s.w}) + ">" + std::to_string(s.k) + " " + std::to_string(s.r) + "x" +
                            std::to_string(s.s);
        if (s.stride_h > 1) shape += "/" + std::to_string(s.stride_h);
        if (s.groups > 1) shape += " dw";
        std::vector<float> x = uniform_floats(n * x_image), w = uniform_floats(w_count), dy = uniform_floats(n * y_image);
        // The float64 twin on the checked images.
        const std::vector<double> xc(x.begin(), x.begin() + checked * x_image), wd = to_f64(w),
            dyc(dy.begin(), dy.begin() + checked * y_image);
        Buf bx = Buf::of(x), bw = Buf::of(w), bdy = Buf::of(dy);
        // The first `count` values of an output, as float.
        auto first = [](const Buf& out, int64_t count) {
            std::vector<float> v = out.download();
            v.resize(static_cast<size_t>(count));
            return v;
        };
        if (b.wants("conv forward")) {
            std::vector<double> ref(checked * y_image);
            cpu::conv2d_forward<double>(sc, xc.data(), wd.data(), ref.data());
            Buf y(n * y_image * 4);
            b.measure({"conv forward", shape, 0, 0, 4.0 * (n * (x_image + y_image) + w_count), flops}, {&y},
                      [&] { TWIN(conv2d_forward, s, bx.f(), bw.f(), y.f()); },
                      [&] { return rel_error(first(y, checked * y_image), ref); });
        }
        if (b.wants("conv backward_data")) {
            std::vector<double> ref(checked * x_image);
            cpu::conv2d_backward_data<double>(sc, dyc.data(), wd.data(), ref.data());
            Buf dx(n * x_image * 4);
            b.measure({"conv backward_data", shape, 0, 0, 4.0 * (n * (x_image + y_image) + w_count), flops}, {&dx},
                      [&] { TWIN(conv2d_backward_data, s, bdy.f(), bw.f(), dx.f()); },
                      [&] { return rel_error(first(dx, checked * x_image), ref); });
        }
        if (b.wants("conv backward_weight")) {
            // Checked with dy zero beyond the checked images, so that dw is theirs alone; timed with all of dy.
            std::vector<double> ref(w_count);
            cpu::conv2d_backward_weight<double>(sc, xc.data(), dyc.data(), ref.data());
            std::vector<float> dy_checked(dy.size(), 0.0f);
            std::copy(dy.begin(), dy.begin() + checked * y_image, dy_checked.begin());
            bdy.upload(dy_checked.data());
            Buf dw(w_count * 4);
            b.measure({"conv backward_weight", shape, 0, 0, 4.0 * (n * (x_image + y_image) + w_count), flops}, {&dw},
                      [&] { TWIN(conv2d_backward_weight, s, bx.f(), bdy.f(), dw.f()); },
                      [&] { return rel_error(dw.download(), ref); }, [&] { bdy.upload(dy.data()); });
        }
    }
    cuda::set_allow_tf32(tf32);
}

// ---- augment --------------------------------------------------------------------------------------

// Per-row top-k at the nearest-neighbour target's shape: 128 noisy samples' distances to Fashion-MNIST's
// 60,000 training images, the 2048 nearest of each (8 rows at the CPU's 1/16). Distances share their top
// byte, the case the radix select's histograms see in training. Checked against the float64 twin: the same
// columns, or the row fails.
void topk_cases(Bench& b) {
    if (!b.wants("topk rows")) return;
    const int64_t rows = std::max<int64_t>(4, static_cast<int64_t>(128 * b.size)), cols = 60000, k = 2048;
    std::vector<float> x = uniform_floats(rows * cols, 1500, 2500);
    std::vector<double> ref(rows * k);
    std::vector<int64_t> ref_idx(rows * k);
    cpu::topk_rows<double>(rows, cols, k, to_f64(x).data(), ref.data(), ref_idx.data());
    Buf bx = Buf::of(x), values(rows * k * 4), indices(rows * k * 8);
    b.measure({"topk rows", dims({rows, cols}) + " k" + std::to_string(k), 0, 0, 4.0 * rows * cols + 12.0 * rows * k},
              {&values}, [&] { TWIN(topk_rows, rows, cols, k, bx.f(), values.f(), indices.as<int64_t>()); },
              [&] { return indices.download<int64_t>() == ref_idx ? rel_error(values.download(), ref) : INFINITY; });
}

void augment_cases(Bench& b) {
    // 16384 CIFAR images at size 1 (200 MB in and out, beyond L2); the training step's 1024 at the CPU's 1/16.
    const int64_t images = std::max<int64_t>(64, static_cast<int64_t>(16384 * b.size)), c = 3, h = 32, w = 32, n = images * c * h * w;
    const std::string shape = dims({images, c, h, w});
    std::vector<float> x = uniform_floats(n);
    if (b.wants("augment blit")) {
        // Blitting is exact: the float32 twin is the reference.
        std::vector<int32_t> params(images * 5);
        for (int64_t i = 0; i < images; ++i) {
            int32_t p[5] = {int32_t(i % 2), int32_t(i / 2 % 2), int32_t(i / 4 % 2), int32_t(i % 7) - 3, int32_t(i % 5) - 2};
            std::copy(p, p + 5, params.begin() + i * 5);
        }
        std::vector<float> ref(n);
        cpu::augment_blit<float>(images, c, h, w, params.data(), x.data(), ref.data());
        Buf bp = Buf::of(params), bx = Buf::of(x), out(n * 4);
        b.measure({"augment blit", shape, 0, 0, 8.0 * n}, {&out},
                  [&] { TWIN(augment_blit, images, c, h, w, bp.as<int32_t>(), bx.f(), out.f()); },
                  [&] { return rel_error(out.download(), to_f64(ref)); });
    }
    if (b.wants("augment geometric")) {
        // Each image rotated by its own small angle and scaled a little: every image is resampled.
        std::vector<float> m(images * 9);
        for (int64_t i = 0; i < images; ++i) {
            double a = 0.3 * std::sin(static_cast<double>(i)), s = 1 + 0.1 * std::cos(static_cast<double>(i));
            float g[9] = {float(s * std::cos(a)), float(-s * std::sin(a)), 0.5f, float(s * std::sin(a)), float(s * std::cos(a)),
                          -0.25f, 0, 0, 1};
            std::copy(g, g + 9, m.begin() + i * 9);
        }
        augment::Padding pad = augment::padding<float>(images, h, w, m.data());
        std::vector<double> ref(n);
        cpu::augment_geometric<double>(images, c, h, w, to_f64(m).data(), pad.x0, pad.y0, pad.x1, pad.y1,
                                       to_f64(x).data(), ref.data());
        Buf bm = Buf::of(m), bx = Buf::of(x), out(n * 4);
        b.measure({"augment geometric", shape, 0, 0, 8.0 * n}, {&out},
                  [&] { TWIN(augment_geometric, images, c, h, w, bm.f(), pad.x0, pad.y0, pad.x1, pad.y1, bx.f(), out.f()); },
                  [&] { return rel_error(out.download(), ref); });
    }
}

// ---- FID's feature network: pooling and resizing (inference-only kernels, cuda/pool.cu, cuda/resize.cu) ----
// Inception-v3's shapes: the stem's 3x3 stride-2 max pool over 64 channels at 147x147, the A blocks'
// 3x3 stride-1 average pool without padding counted over 288 channels at 35x35, and CIFAR's 32x32 images
// resized to 299x299. Batch from --size. Bytes: input read once, output written once.
void pool_resize_cases(Bench& b) {
    struct PoolRow {
        const char* name;
        int64_t c, h;
        int kernel, stride, padding;
        bool max;
    };
    for (PoolRow r : {PoolRow{"pool max 3x3/2", 64, 147, 3, 2, 0, true}, PoolRow{"pool avg 3x3/1 excl-pad", 288, 35, 3, 1, 1, false}}) {
        if (!b.wants(r.name)) continue;
        const int64_t planes = std::max<int64_t>(r.c, b.elems() / (r.h * r.h) / r.c * r.c);
        const int64_t out = (r.h + 2 * r.padding - r.kernel) / r.stride + 1, n_in = planes * r.h * r.h, n_out = planes * out * out;
        std::vector<float> x = uniform_floats(n_in);
        std::vector<double> ref(n_out);
        if (r.max) cpu::max_pool2d<double>(planes, r.h, r.h, r.kernel, r.stride, r.padding, to_f64(x).data(), ref.data());
        else cpu::avg_pool2d<double>(planes, r.h, r.h, r.kernel, r.stride, r.padding, false, to_f64(x).data(), ref.data());
        Buf bx = Buf::of(x), by(n_out * 4);
        b.measure({r.name, dims({planes, r.h, r.h}), 0, 0, 4.0 * (n_in + n_out)}, {&by},
                  [&] {
                      if (r.max) TWIN(max_pool2d, planes, r.h, r.h, r.kernel, r.stride, r.padding, bx.f(), by.f());
                      else TWIN(avg_pool2d, planes, r.h, r.h, r.kernel, r.stride, r.padding, false, bx.f(), by.f());
                  },
                  [&] { return rel_error(by.download(), ref); });
    }
    for (bool half_pixel : {true, false}) {
        const std::string name = half_pixel ? "resize bilinear half-pixel" : "resize bilinear tf1";
        if (!b.wants(name)) continue;
        const int64_t planes = std::max<int64_t>(3, b.elems() / (299 * 299) / 3 * 3), n_in = planes * 32 * 32,
                      n_out = planes * 299 * 299;
        std::vector<float> x = uniform_floats(n_in, 0, 255);
        std::vector<double> ref(n_out);
        cpu::resize_bilinear<double>(planes, 32, 32, 299, 299, half_pixel, to_f64(x).data(), ref.data());
        Buf bx = Buf::of(x), by(n_out * 4);
        b.measure({name, dims({planes, 32, 32}) + "->299", 0, 0, 4.0 * (n_in + n_out)}, {&by},
                  [&] { TWIN(resize_bilinear, planes, 32, 32, 299, 299, half_pixel, bx.f(), by.f()); },
                  [&] { return rel_error(by.download(), ref); });
    }
}
}  // namespace

int main(int argc, char** argv) {
    return apps::run_program("bench_kernels", argc, argv, kUsage, [&](apps::Flags& f) {
        Device device = Device::parse(f.str("device", cuda::available() ? "cuda" : "cpu"));
        g_gpu = device.is_cuda();
        STF_CHECK(!g_gpu || cuda::available(),
                  "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available" : "stf was built without CUDA"));
        Bench b;
        b.size = f.real("size", g_gpu ? 1.0 : 1.0 / 16);
        b.reps = static_cast<int>(f.integer("reps", g_gpu ? 20 : 2));
        b.filter = f.str("filter", "");
        b.version = static_cast<int>(f.integer("version", kLatestVersion));
        f.check_all_used();
        STF_CHECK(b.version == 1 || b.version == kLatestVersion,
                  "--version " << b.version << ": expected 1 (the first versions of the tuned kernels) or "
                               << kLatestVersion << " (every kernel as tuned)");
        STF_CHECK(b.size > 0 && b.reps >= 1, "--size and --reps must be positive");
        std::string families;  // a filter must name a family, or start one's name
        bool known = b.filter.empty();
        for (const std::string family : kFamilies) {
            families += (families.empty() ? "" : ", ") + family;
            known = known || family.compare(0, b.filter.size(), b.filter) == 0 ||
                    b.filter.compare(0, family.size(), family) == 0;
        }
        STF_CHECK(known, "--filter '" << b.filter << "': a row's name starts with its family (" << families
                                      << "), then the kernel");

        if (g_gpu) {
            std::printf("bench_kernels: CUDA kernels on %s against their float64 CPU twins\n", cuda::device_name().c_str());
        } else {
            std::printf("bench_kernels: no GPU in use (%s): timing the float32 CPU twins against the float64 twins "
                        "instead\n", cuda::available() ? "--device cpu" : cuda::built_with_cuda() ? "no CUDA device found"
                                                                                                   : "built without CUDA");
        }
        b.peak_gbs = measure_copy_gbs(b);
        b.peak_tflops = measure_sgemm_tflops(b);
        std::printf("ceilings (measured): copy %.0f GB/s (read + write, %s); sgemm %.3g TFLOP/s (%s)\n",
                    b.peak_gbs, g_gpu ? "cudaMemcpy device to device" : "parallel memcpy", b.peak_tflops,
                    g_gpu ? "cuBLAS 8192^3, TF32 off" : "OpenBLAS 1024^3");
        std::printf("size %g: %lld floats per elementwise buffer; %d calls per timing, median of 5\n", b.size,
                    (long long)b.elems(), b.reps);
        if (b.version == 1)
            std::printf("version 1: the first versions of the tuned kernels (docs/kernels.md), only their rows%s\n",
                        g_gpu ? "" : "; the CPU twins have one version, so these rows time the same twins as version 2");
        std::printf("\n");
        Bench::header();
        // In the order of kFamilies.
        elementwise_cases(b);
        copy_cases(b);
        reduce_cases(b);
        softmax_cases(b);
        group_norm_cases(b);
        residual_cases(b);
        random_cases(b);
        optim_cases(b);
        stf_cases(b);
        stf_chunk_cases(b);
        topk_cases(b);
        blas_cases(b);
        conv_cases(b);
        augment_cases(b);
        pool_resize_cases(b);
        STF_CHECK(!b.rows.empty(), "--filter '" << b.filter << "' matches no kernel of its family"
                                       << (b.version == 1 ? " that has a first version (--version 1)" : ""));
        int failed = 0;
        for (const Row& r : b.rows) failed += !(r.err <= r.tolerance());
        std::printf("\n%zu kernels, %d over the tolerance (%.0e; %.0e for outputs stored in bf16)\n", b.rows.size(),
                    failed, kTolerance, kBf16Tolerance);
        STF_CHECK(failed == 0, failed << " kernel(s) disagree with their float64 CPU twin");
    });
}
