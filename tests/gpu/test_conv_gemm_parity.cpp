// cuBLAS GEMM and cuDNN convolutions against their CPU twins on random data.
//
// With TF32 off both backends compute in float32, so they must agree to float32 rounding: relative
// error ||gpu - cpu|| / ||cpu|| below 1e-5. Every GPU output is poisoned with NaN first, so an element
// the GPU forgot to write shows up as a failure instead of passing on stale data.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/math_mode.h"
#include "cuda/runtime.h"
#include "tensor/cpu/kernels.h"

namespace {

constexpr double kFp32Tolerance = 1e-5;
// TF32 keeps 10 mantissa bits: products are off by about 1e-3 relative.
constexpr double kTf32Tolerance = 1e-2;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// float32 device memory for one test, freed on every exit path (a failed REQUIRE throws).
class DeviceFloats {
public:
    explicit DeviceFloats(size_t count)
        : count_(count), ptr_(static_cast<float*>(stf::cuda::malloc((count > 0 ? count : 1) * sizeof(float)))) {}
    explicit DeviceFloats(const std::vector<float>& host) : DeviceFloats(host.size()) { upload(host); }
    ~DeviceFloats() { stf::cuda::free(ptr_); }
    DeviceFloats(const DeviceFloats&) = delete;
    DeviceFloats& operator=(const DeviceFloats&) = delete;

    float* get() const { return ptr_; }
    void upload(const std::vector<float>& host) {
        REQUIRE(host.size() == count_);
        stf::cuda::copy_host_to_device(ptr_, host.data(), count_ * sizeof(float));
    }
    void poison() { upload(std::vector<float>(count_, kNaN)); }
    std::vector<float> download() const {
        std::vector<float> host(count_);
        stf::cuda::copy_device_to_host(host.data(), ptr_, count_ * sizeof(float));
        return host;
    }

private:
    size_t count_;
    float* ptr_;
};

// Sets the TF32 switch for one test and restores it afterwards, so tests do not leak it to each other.
class Tf32Scope {
public:
    explicit Tf32Scope(bool allow) : saved_(stf::cuda::allow_tf32()) { stf::cuda::set_allow_tf32(allow); }
    ~Tf32Scope() { stf::cuda::set_allow_tf32(saved_); }
    Tf32Scope(const Tf32Scope&) = delete;
    Tf32Scope& operator=(const Tf32Scope&) = delete;

private:
    bool saved_;
};

std::vector<float> random_floats(size_t count, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(count);
    for (float& x : v) x = dist(gen);
    return v;
}

// ||gpu - ref|| / ||ref||; NaN (and so a failed check) if the GPU left any element NaN. An all-zero
// reference must be matched exactly.
template <class T>
double relative_error(const std::vector<float>& gpu, const std::vector<T>& ref) {
    REQUIRE(gpu.size() == ref.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < gpu.size(); ++i) {
        const double d = double(gpu[i]) - double(ref[i]);
        diff += d * d;
        norm += double(ref[i]) * double(ref[i]);
    }
    if (norm == 0) return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    return std::sqrt(diff) / std::sqrt(norm);
}

bool same_or_both_nan(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// ---- GEMM --------------------------------------------------------------------------------------------

struct GemmCase {
    bool trans_a = false, trans_b = false;
    int64_t m = 1, n = 1, k = 1;
    int64_t batch = 1;
    bool broadcast_b = false;  // stride_b = 0: one B shared by every batch entry, as a linear layer's weight
    float alpha = 1.0f, beta = 0.0f;
};

std::string describe(const GemmCase& g) {
    return std::string("trans_a ") + (g.trans_a ? "1" : "0") + ", trans_b " + (g.trans_b ? "1" : "0") + ", m " +
           std::to_string(g.m) + ", n " + std::to_string(g.n) + ", k " + std::to_string(g.k) + ", batch " +
           std::to_string(g.batch) + (g.broadcast_b ? " (B broadcast)" : "") + ", alpha " + std::to_string(g.alpha) +
           ", beta " + std::to_string(g.beta);
}

// Runs one GEMM on both backends with padded leading dimensions and batch strides (so that a mix-up
// between ld and the logical width shows), and returns the relative error over C's logical elements.
// Also checks that the GPU left the padding of C alone.
double gemm_error(const GemmCase& g, uint32_t seed) {
    const int64_t rows_a = g.trans_a ? g.k : g.m, cols_a = g.trans_a ? g.m : g.k;
    const int64_t rows_b = g.trans_b ? g.n : g.k, cols_b = g.trans_b ? g.k : g.n;
    const int64_t lda = cols_a + 3, ldb = cols_b + 2, ldc = g.n + 1;
    const int64_t stride_a = rows_a * lda + 7;
    const int64_t stride_b = g.broadcast_b ? 0 : rows_b * ldb + 5;
    const int64_t stride_c = g.m * ldc + 3;
    const auto span = [&](int64_t rows, int64_t ld, int64_t stride) {
        return size_t((g.batch - 1) * stride + rows * ld);
    };

    const std::vector<float> a = random_floats(span(rows_a, lda, stride_a), seed);
    const std::vector<float> b = random_floats(span(rows_b, ldb, stride_b), seed + 1);
    // beta == 0 must ignore C entirely, so the GPU's C starts as NaN; the CPU's starts as zeros.
    const size_t c_count = span(g.m, ldc, stride_c);
    const std::vector<float> c_init_cpu = g.beta == 0.0f ? std::vector<float>(c_count, 0.0f) : random_floats(c_count, seed + 2);
    const std::vector<float> c_init_gpu = g.beta == 0.0f ? std::vector<float>(c_count, kNaN) : c_init_cpu;

    std::vector<float> c_cpu = c_init_cpu;
    stf::cpu::gemm<float>(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta,
                          c_cpu.data(), ldc, g.batch, stride_a, stride_b, stride_c);

    DeviceFloats da(a), db(b), dc(c_init_gpu);
    stf::cuda::gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, da.get(), lda, db.get(), ldb, g.beta, dc.get(), ldc,
                    g.batch, stride_a, stride_b, stride_c);
    const std::vector<float> c_gpu = dc.download();

    std::vector<bool> logical(c_count, false);
    std::vector<float> gpu_values, cpu_values;
    for (int64_t bi = 0; bi < g.batch; ++bi)
        for (int64_t i = 0; i < g.m; ++i)
            for (int64_t j = 0; j < g.n; ++j) {
                const size_t at = size_t(bi * stride_c + i * ldc + j);
                logical[at] = true;
                gpu_values.push_back(c_gpu[at]);
                cpu_values.push_back(c_cpu[at]);
            }
    size_t padding_written = 0;
    for (size_t i = 0; i < c_count; ++i)
        if (!logical[i] && !same_or_both_nan(c_gpu[i], c_init_gpu[i])) ++padding_written;
    CHECK_MESSAGE(padding_written == 0, "GPU wrote outside C's logical elements: ", describe(g));
    return relative_error(gpu_values, cpu_values);
}

// ---- convolution ---------------------------------------------------------------------------------

struct ConvCase {
    const char* name;
    stf::ConvShape shape;
};

stf::ConvShape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s,
                          int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t groups) {
    stf::ConvShape cs;
    cs.n = n, cs.c = c, cs.h = h, cs.w = w, cs.k = k, cs.r = r, cs.s = s;
    cs.stride_h = stride_h, cs.stride_w = stride_w, cs.pad_h = pad_h, cs.pad_w = pad_w, cs.groups = groups;
    return cs;
}

std::vector<ConvCase> conv_cases() {
    return {
        {"EDM 3x3, pad 1, stride 1", conv_shape(2, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1)},
        {"1x1", conv_shape(2, 32, 8, 8, 16, 1, 1, 1, 1, 0, 0, 1)},
        {"3x3 stride 2 downsampling", conv_shape(2, 8, 16, 16, 16, 3, 3, 2, 2, 1, 1, 1)},
        {"depthwise 2x2 stride 2 (EDM [1,1] resample)", conv_shape(2, 16, 16, 16, 16, 2, 2, 2, 2, 0, 0, 16)},
        {"depthwise 4x4 stride 2 pad 1 (EDM [1,3,3,1] resample)", conv_shape(2, 16, 16, 16, 16, 4, 4, 2, 2, 1, 1, 16)},
        {"grouped, 2 in / 3 out channels per group", conv_shape(2, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 4)},
        // 15 rows with stride 2: the last input row is covered by no output, so its dx must be 0.
        {"non-square input and kernel, mixed strides", conv_shape(3, 5, 15, 12, 6, 3, 2, 2, 1, 1, 0, 1)},
    };
}

std::string describe(const stf::ConvShape& s) {
    return "x [" + std::to_string(s.n) + ", " + std::to_string(s.c) + ", " + std::to_string(s.h) + ", " +
           std::to_string(s.w) + "], k " + std::to_string(s.k) + ", kernel " + std::to_string(s.r) + "x" +
           std::to_string(s.s) + ", stride " + std::to_string(s.stride_h) + "x" + std::to_string(s.stride_w) +
           ", pad " + std::to_string(s.pad_h) + "x" + std::to_string(s.pad_w) + ", groups " + std::to_string(s.groups);
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

struct ConvErrors {
    double forward = 0, backward_data = 0, backward_weight = 0;
};

// All three directions of one shape against the CPU twin in double (so the error measured is the
// GPU's alone). Each GPU direction runs twice: the first call benchmarks and caches an algorithm,
// the second takes the cached path; both must be right. Reports the worse of the two.
ConvErrors conv_errors(const stf::ConvShape& s, uint32_t seed) {
    const size_t x_count = size_t(s.n * s.c * s.h * s.w);
    const size_t w_count = size_t(s.k * (s.c / s.groups) * s.r * s.s);
    const size_t y_count = size_t(s.n * s.k * s.out_h() * s.out_w());
    const std::vector<float> x = random_floats(x_count, seed);
    const std::vector<float> w = random_floats(w_count, seed + 1);
    const std::vector<float> dy = random_floats(y_count, seed + 2);

    const std::vector<double> xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
    std::vector<double> y_ref(y_count), dx_ref(x_count), dw_ref(w_count);
    stf::cpu::conv2d_forward<double>(s, xd.data(), wd.data(), y_ref.data());
    stf::cpu::conv2d_backward_data<double>(s, dyd.data(), wd.data(), dx_ref.data());
    stf::cpu::conv2d_backward_weight<double>(s, xd.data(), dyd.data(), dw_ref.data());

    DeviceFloats dx_in(x), dw_in(w), ddy(dy);
    DeviceFloats y_out(y_count), dx_out(x_count), dw_out(w_count);
    ConvErrors e;
    for (int run = 0; run < 2; ++run) {
        y_out.poison();
        stf::cuda::conv2d_forward(s, dx_in.get(), dw_in.get(), y_out.get());
        e.forward = std::max(e.forward, relative_error(y_out.download(), y_ref));

        dx_out.poison();
        stf::cuda::conv2d_backward_data(s, ddy.get(), dw_in.get(), dx_out.get());
        e.backward_data = std::max(e.backward_data, relative_error(dx_out.download(), dx_ref));

        dw_out.poison();
        stf::cuda::conv2d_backward_weight(s, dx_in.get(), ddy.get(), dw_out.get());
        e.backward_weight = std::max(e.backward_weight, relative_error(dw_out.download(), dw_ref));
    }
    return e;
}

}  // namespace

TEST_CASE("gemm parity: cuBLAS matches cpu::gemm for every transpose pair and odd sizes") {
    Tf32Scope fp32(false);
    const int64_t sizes[][3] = {{1, 1, 1}, {17, 33, 65}, {128, 257, 300}, {5, 1, 9}, {1, 7, 3}};
    uint32_t seed = 100;
    for (const auto& mnk : sizes)
        for (int t = 0; t < 4; ++t) {
            GemmCase g;
            g.trans_a = (t & 1) != 0;
            g.trans_b = (t & 2) != 0;
            g.m = mnk[0], g.n = mnk[1], g.k = mnk[2];
            const double err = gemm_error(g, seed += 10);
            INFO(describe(g));
            CHECK(err < kFp32Tolerance);
        }
}

TEST_CASE("gemm parity: alpha scales and beta accumulates into C") {
    Tf32Scope fp32(false);
    uint32_t seed = 200;
    for (int t = 0; t < 4; ++t) {
        GemmCase g;
        g.trans_a = (t & 1) != 0;
        g.trans_b = (t & 2) != 0;
        g.m = 17, g.n = 33, g.k = 65;
        g.alpha = 0.5f;
        g.beta = -2.0f;
        const double err = gemm_error(g, seed += 10);
        INFO(describe(g));
        CHECK(err < kFp32Tolerance);
    }
}

TEST_CASE("gemm parity: strided batched, including a broadcast operand") {
    Tf32Scope fp32(false);
    uint32_t seed = 300;
    for (bool broadcast : {false, true})
        for (int t = 0; t < 4; ++t) {
            GemmCase g;
            g.trans_a = (t & 1) != 0;
            g.trans_b = (t & 2) != 0;
            g.m = 17, g.n = 33, g.k = 65;
            g.batch = 5;
            g.broadcast_b = broadcast;
            g.beta = t == 3 ? 1.0f : 0.0f;
            const double err = gemm_error(g, seed += 10);
            INFO(describe(g));
            CHECK(err < kFp32Tolerance);
        }
}

TEST_CASE("gemm parity: k == 0 leaves beta * C (zeros for beta == 0, whatever C held)") {
    Tf32Scope fp32(false);
    uint32_t seed = 350;
    for (float beta : {0.0f, 0.5f, 1.0f})
        for (int64_t batch : {1, 3}) {
            GemmCase g;
            g.trans_a = batch == 3;
            g.m = 7, g.n = 5, g.k = 0;
            g.batch = batch;
            g.beta = beta;
            const double err = gemm_error(g, seed += 10);
            INFO(describe(g));
            CHECK(err == 0.0);
        }
}

TEST_CASE("gemm parity: with TF32 allowed the result stays within TF32 accuracy") {
    Tf32Scope tf32(true);
    GemmCase g;
    g.m = 128, g.n = 257, g.k = 300;
    g.batch = 2;
    const double err = gemm_error(g, 400);
    INFO(describe(g));
    CHECK(err < kTf32Tolerance);
}

TEST_CASE("conv parity: cuDNN matches cpu::conv2d_* in all three directions") {
    Tf32Scope fp32(false);
    uint32_t seed = 500;
    for (const ConvCase& c : conv_cases()) {
        const ConvErrors e = conv_errors(c.shape, seed += 10);
        INFO(c.name, ": ", describe(c.shape));
        CHECK(e.forward < kFp32Tolerance);
        CHECK(e.backward_data < kFp32Tolerance);
        CHECK(e.backward_weight < kFp32Tolerance);
    }
}

// For a shape this small cuDNN may well find a non-tensor-core kernel fastest even with TF32 allowed
// (on an H100 it did), so this checks the accuracy bound and the switch back, not that TF32 ran.
// On 8x256x32x32 -> 256, 3x3, TF32 showed errors of about 3e-4 and float32 about 4e-6.
TEST_CASE("conv parity: with TF32 allowed the result stays within TF32 accuracy") {
    Tf32Scope tf32(true);
    const stf::ConvShape s = conv_shape(2, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1);
    const ConvErrors e = conv_errors(s, 600);
    INFO(describe(s));
    CHECK(e.forward < kTf32Tolerance);
    CHECK(e.backward_data < kTf32Tolerance);
    CHECK(e.backward_weight < kTf32Tolerance);
    // Switching back must select the float32 plans again, not reuse the TF32 ones.
    stf::cuda::set_allow_tf32(false);
    const ConvErrors fp32 = conv_errors(s, 601);
    CHECK(fp32.forward < kFp32Tolerance);
    CHECK(fp32.backward_data < kFp32Tolerance);
    CHECK(fp32.backward_weight < kFp32Tolerance);
}

TEST_CASE("conv parity: groups that do not divide the channels are rejected") {
    // Validation happens before any device work, so null pointers are fine here.
    const stf::ConvShape bad_c = conv_shape(1, 6, 8, 8, 8, 3, 3, 1, 1, 1, 1, 4);
    const stf::ConvShape bad_k = conv_shape(1, 8, 8, 8, 6, 3, 3, 1, 1, 1, 1, 4);
    float* none = nullptr;
    CHECK_THROWS_AS(stf::cuda::conv2d_forward(bad_c, none, none, none), std::invalid_argument);
    CHECK_THROWS_AS(stf::cuda::conv2d_backward_data(bad_k, none, none, none), std::invalid_argument);
    CHECK_THROWS_AS(stf::cuda::conv2d_backward_weight(bad_c, none, none, none), std::invalid_argument);
    stf::bf16* none16 = nullptr;  // the bf16 entry points validate the same way
    CHECK_THROWS_AS(stf::cuda::conv2d_forward(bad_c, none16, none16, none16), std::invalid_argument);
}
