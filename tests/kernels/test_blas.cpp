// Matrix products: row-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, with op a transpose or
// not, leading dimensions (row strides) and a batch of products at fixed element strides. cuBLAS on
// the GPU (cuda/blas.cu), OpenBLAS on the CPU (tensor/cpu/blas.cpp). Linear layers, attention's
// q^T k and v w^T, and the STF target's weighted sums of references are all this one call.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tensor/cpu/kernels.h"
#include "tests/kernels/kernel_test.h"
#if STF_WITH_CUDA
#include "cuda/kernels.h"
#endif

using namespace stf;
using namespace stf::kernel_test;

// =================================================================================================
// (a) The naive reference: three loops per product in long double, read through the strides.
// =================================================================================================
namespace {

// C (batch * stride_c elements, as stored) after the product; padding between rows is left as it was.
template <class T>
std::vector<double> ref_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                             const std::vector<T>& a, int64_t lda, const std::vector<T>& b, int64_t ldb, double beta,
                             const std::vector<T>& c, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                             int64_t stride_c) {
    std::vector<double> out(c.begin(), c.end());
    for (int64_t bi = 0; bi < batch; ++bi)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                long double acc = 0;
                for (int64_t l = 0; l < k; ++l) {
                    const long double av = trans_a ? a[bi * stride_a + l * lda + i] : a[bi * stride_a + i * lda + l];
                    const long double bv = trans_b ? b[bi * stride_b + j * ldb + l] : b[bi * stride_b + l * ldb + j];
                    acc += av * bv;
                }
                double& cv = out[size_t(bi * stride_c + i * ldc + j)];
                cv = static_cast<double>(alpha * acc + (beta == 0 ? 0.0L : beta * static_cast<long double>(cv)));
            }
    return out;
}

}  // namespace

// =================================================================================================
// (b) The CPU twin against the reference.
// =================================================================================================

TEST_CASE_TEMPLATE("blas cpu: gemm, all transpose combinations, padded leading dims, batched", T, float, double) {
    const int64_t m = 3, n = 4, k = 5, batch = 3;
    const T alpha = T(1.5), beta = T(-0.5);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            CAPTURE(ta);
            CAPTURE(tb);
            // Stored A is [m, k] (or [k, m] when transposed) with two padding columns; same for B.
            const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, lda = a_cols + 2;
            const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_cols + 1, ldc = n + 3;
            const int64_t sa = a_rows * lda + 1, sb = b_rows * ldb, sc = m * ldc + 2;
            const auto a = random_vector<T>(size_t(batch * sa), -1.0, 1.0, 15);
            const auto b = random_vector<T>(size_t(batch * sb), -1.0, 1.0, 16);
            auto c = random_vector<T>(size_t(batch * sc), -1.0, 1.0, 17);

            const std::vector<double> want =
                ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, batch, sa, sb, sc);
            cpu::gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc, batch, sa, sb, sc);
            CHECK(max_err(c, want) <= tol<T>());  // padding entries must be untouched too
        }
}

TEST_CASE("blas cpu: gemm with beta = 0 ignores NaN in C, k = 0 scales C") {
    const double a[] = {1, 2}, b[] = {3, 4};
    double c[] = {NAN, NAN, NAN, NAN};
    cpu::gemm<double>(false, false, 2, 2, 1, 1.0, a, 1, b, 2, 0.0, c, 2);
    CHECK(c[0] == 3.0);
    CHECK(c[3] == 8.0);
    cpu::gemm<double>(false, false, 2, 2, 0, 1.0, a, 0, b, 2, 2.0, c, 2);
    CHECK(c[3] == 16.0);
}

// One thread pool: our kernels, oneDNN (a static_assert in conv_onednn.cpp) and OpenBLAS all run on
// libgomp. OpenBLAS's pthread build would bring a second pool whose threads spin against OpenMP's on
// every GEMM; Debian's alternatives can point libopenblas.so.0 at it after the link (libopenblas0-pthread
// outranks the OpenMP build), which the RUNPATH to the OpenMP build's folder guards against. This
// checks the library the loader really gave us.
extern "C" int openblas_get_parallel(void);  // OpenBLAS: 0 sequential, 1 pthreads, 2 OpenMP

TEST_CASE("blas cpu: the OpenBLAS loaded runs on OpenMP, the pool our kernels use" *
          doctest::skip(!STF_OPENBLAS_OPENMP)) {
    CHECK(openblas_get_parallel() == 2);
}

// =================================================================================================
// (c) cuBLAS against the CPU twin. With TF32 off both compute in float32, so they must agree to
// float32 rounding: ||gpu - cpu|| / ||cpu|| below 1e-5. C is poisoned with NaN where beta is 0, so an
// element cuBLAS forgot to write, or a beta = 0 that still read C, shows.
// =================================================================================================
#if STF_WITH_CUDA
namespace {

constexpr double kFp32Tolerance = 1e-5;
// TF32 keeps 10 mantissa bits: products are off by about 1e-3 relative.
constexpr double kTf32Tolerance = 1e-2;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

bool same_or_both_nan(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

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

    const std::vector<float> a = random_floats(int64_t(span(rows_a, lda, stride_a)), -1, 1, seed);
    const std::vector<float> b = random_floats(int64_t(span(rows_b, ldb, stride_b)), -1, 1, seed + 1);
    // beta == 0 must ignore C entirely, so the GPU's C starts as NaN; the CPU's starts as zeros.
    const size_t c_count = span(g.m, ldc, stride_c);
    const std::vector<float> c_init_cpu = g.beta == 0.0f ? std::vector<float>(c_count, 0.0f)
                                                         : random_floats(int64_t(c_count), -1, 1, seed + 2);
    const std::vector<float> c_init_gpu = g.beta == 0.0f ? std::vector<float>(c_count, kNaN) : c_init_cpu;

    std::vector<float> c_cpu = c_init_cpu;
    stf::cpu::gemm<float>(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta,
                          c_cpu.data(), ldc, g.batch, stride_a, stride_b, stride_c);

    DeviceArray<float> da(a), db(b), dc(c_init_gpu);
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
    return rel_error(gpu_values, cpu_values);
}

}  // namespace

TEST_CASE("blas cuda: gemm, cuBLAS matches cpu::gemm for every transpose pair and odd sizes" * needs_gpu()) {
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

TEST_CASE("blas cuda: gemm, alpha scales and beta accumulates into C" * needs_gpu()) {
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

TEST_CASE("blas cuda: gemm, strided batched, including a broadcast operand" * needs_gpu()) {
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

TEST_CASE("blas cuda: gemm, k == 0 leaves beta * C (zeros for beta == 0, whatever C held)" * needs_gpu()) {
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

TEST_CASE("blas cuda: gemm, with TF32 allowed the result stays within TF32 accuracy" * needs_gpu()) {
    Tf32Scope tf32(true);
    GemmCase g;
    g.m = 128, g.n = 257, g.k = 300;
    g.batch = 2;
    const double err = gemm_error(g, 400);
    INFO(describe(g));
    CHECK(err < kTf32Tolerance);
}

#endif  // STF_WITH_CUDA
