// The per-row top-k op (tensor/ops.h, row_topk): dispatch to the CPU twin or the CUDA kernel, results
// read back to the host.
#include "cuda/topk_math.h"
#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace stf::ops {

namespace {

#if STF_WITH_CUDA
// The CUDA kernel into device buffers, then both read back.
void topk_on_cuda(const Tensor& x, RowTopK& out) {
    const int64_t rows = out.rows, cols = x.size(1), k = out.k;
    Tensor values = empty({rows, k}, DType::F32, x.device());
    struct DeviceIndices {
        void* ptr;
        ~DeviceIndices() { cuda::free(ptr); }
    } indices{cuda::malloc(static_cast<size_t>(rows * k) * sizeof(int64_t))};
    cuda::topk_rows(rows, cols, k, x.data<float>(), values.data<float>(), static_cast<int64_t*>(indices.ptr));
    out.values = values.to_vector();
    cuda::copy_device_to_host(out.indices.data(), indices.ptr, out.indices.size() * sizeof(int64_t));
}
#endif

}  // namespace

RowTopK row_topk(const Tensor& x_in, int64_t k) {
    STF_CHECK(x_in.ndim() == 2, "row_topk: expected a matrix [rows, cols], got " << describe(x_in));
    const int64_t rows = x_in.size(0), cols = x_in.size(1);
    STF_CHECK(k >= 1 && k <= cols, "row_topk: k " << k << " is not in 1.." << cols << " (the row length)");
    Tensor x = contiguous(x_in);
    RowTopK out;
    out.rows = rows;
    out.k = k;
    out.values.resize(static_cast<size_t>(rows * k));
    out.indices.resize(static_cast<size_t>(rows * k));
    if (rows == 0) return out;
    detail::dispatch(
        x, "row_topk",
        [&]<class T>() {
            std::vector<T> values(out.values.size());
            cpu::topk_rows<T>(rows, cols, k, x.data<T>(), values.data(), out.indices.data());
            out.values.assign(values.begin(), values.end());
        },
        [&] {
#if STF_WITH_CUDA  // topk_on_cuda exists only there; dispatch never calls this in a CPU-only build
            STF_CHECK(k <= topk::kMaxK, "row_topk: k " << k << " is above the CUDA kernel's " << topk::kMaxK);
            topk_on_cuda(x, out);
#endif
        });
    return out;
}

}  // namespace stf::ops
