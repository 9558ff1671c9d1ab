// libstf_dist.so: the MPI (and, in CUDA builds, NCCL) side of train/distributed.h, behind the C
// interface of train/distributed_plugin.h. Built only when CMake finds MPI.
//
// Every collective is started non-blocking and polled against a deadline, so that a rank which died
// or stopped answering turns into an error on the others rather than a hang. Sums of host buffers are
// reduced at rank 0 and broadcast, which makes them bit-identical on every rank whatever algorithm the
// MPI library would use for an all-reduce; NCCL's ring all-reduce already is.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>

#include "train/distributed_plugin.h"

#ifdef STF_DIST_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace {

double g_timeout_s = 600;
int g_rank = 0, g_size = 1;

int fail(char* err, int err_len, const char* format, ...) {
    va_list args;
    va_start(args, format);
    std::vsnprintf(err, static_cast<size_t>(err_len), format, args);
    va_end(args);
    return 1;
}

std::string mpi_error(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return std::string(text, static_cast<size_t>(len));
}

using Clock = std::chrono::steady_clock;

// Polls until `done()` says the operation finished, backing off from spinning to short sleeps so a
// waiting rank does not steal the cores of a rank that is still computing.
template <class Done> int wait_until(Done done, const char* what, char* err, int err_len) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(g_timeout_s);
    for (int polls = 0;; ++polls) {
        int rc = done();
        if (rc < 0) return 1;  // `done` wrote the error
        if (rc > 0) return 0;
        if (Clock::now() > deadline)
            return fail(err, err_len,
                        "%s: no answer from every rank after %.0f s (rank %d of %d waiting); another rank has "
                        "failed or stopped (raise the limit with --dist-timeout if steps are that slow)",
                        what, g_timeout_s, g_rank, g_size);
        if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 100000 ? 1000 : 50));
    }
}

int wait_request(MPI_Request* request, const char* what, char* err, int err_len) {
    return wait_until(
        [&] {
            int finished = 0;
            int rc = MPI_Test(request, &finished, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) {
                fail(err, err_len, "%s: %s", what, mpi_error(rc).c_str());
                return -1;
            }
            return finished ? 1 : 0;
        },
        what, err, err_len);
}

int check(int rc, const char* what, char* err, int err_len) {
    return rc == MPI_SUCCESS ? 0 : fail(err, err_len, "%s: %s", what, mpi_error(rc).c_str());
}

// MPI counts are int: long buffers go in slices.
constexpr int64_t kSlice = int64_t(1) << 30;

template <class T> int reduce_then_broadcast(T* data, int64_t n, MPI_Datatype type, char* err, int err_len) {
    for (int64_t at = 0; at < n; at += kSlice) {
        const int count = static_cast<int>(std::min(kSlice, n - at));
        MPI_Request request;
        const void* send = g_rank == 0 ? MPI_IN_PLACE : data + at;
        if (check(MPI_Ireduce(send, data + at, count, type, MPI_SUM, 0, MPI_COMM_WORLD, &request), "all-reduce",
                  err, err_len) ||
            wait_request(&request, "all-reduce (sum at rank 0)", err, err_len))
            return 1;
        if (check(MPI_Ibcast(data + at, count, type, 0, MPI_COMM_WORLD, &request), "all-reduce", err, err_len) ||
            wait_request(&request, "all-reduce (broadcast from rank 0)", err, err_len))
            return 1;
    }
    return 0;
}

int init(double timeout_s, int* rank, int* size, int* local_rank, char* err, int err_len) {
    g_timeout_s = timeout_s;
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
        int provided = 0;
        if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return fail(err, err_len, "MPI_Init failed");
    }
    // Errors come back as codes (reported with the collective's name) instead of aborting inside MPI.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm node;
    if (check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node),
              "finding the ranks on this machine", err, err_len))
        return 1;
    MPI_Comm_rank(node, local_rank);
    MPI_Comm_free(&node);
    *rank = g_rank;
    *size = g_size;
    return 0;
}

int all_reduce_sum_f32(float* data, int64_t n, char* err, int err_len) {
    return reduce_then_broadcast(data, n, MPI_FLOAT, err, err_len);
}

int all_reduce_sum_f64(double* data, int64_t n, char* err, int err_len) {
    return reduce_then_broadcast(data, n, MPI_DOUBLE, err, err_len);
}

int all_gather_bytes(const void* send, int64_t bytes, void* recv, char* err, int err_len) {
    if (bytes > std::numeric_limits<int>::max())
        return fail(err, err_len, "all-gather of %lld bytes per rank is more than MPI counts allow",
                    static_cast<long long>(bytes));
    MPI_Request request;
    const int count = static_cast<int>(bytes);
    if (check(MPI_Iallgather(send, count, MPI_BYTE, recv, count, MPI_BYTE, MPI_COMM_WORLD, &request), "all-gather",
              err, err_len))
        return 1;
    return wait_request(&request, "all-gather", err, err_len);
}

#ifdef STF_DIST_NCCL

ncclComm_t g_nccl = nullptr;

int nccl_fail(ncclResult_t rc, const char* what, char* err, int err_len) {
    return fail(err, err_len, "%s: NCCL error %s (%s)", what, ncclGetErrorString(rc), ncclGetLastError(g_nccl));
}

// Waits for the communicator's pending work, and with `stream` for the stream, under the deadline;
// on timeout the communicator is aborted so no kernel waits forever for a dead peer.
int wait_nccl(cudaStream_t stream, const char* what, char* err, int err_len) {
    int rc = wait_until(
        [&] {
            ncclResult_t state = ncclSuccess;
            ncclResult_t q = ncclCommGetAsyncError(g_nccl, &state);
            if (q != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
                nccl_fail(q != ncclSuccess ? q : state, what, err, err_len);
                return -1;
            }
            if (state == ncclInProgress) return 0;
            if (!stream) return 1;
            cudaError_t s = cudaStreamQuery(stream);
            if (s == cudaErrorNotReady) return 0;
            if (s != cudaSuccess) {
                fail(err, err_len, "%s: CUDA error %s", what, cudaGetErrorString(s));
                return -1;
            }
            return 1;
        },
        what, err, err_len);
    if (rc != 0 && g_nccl) {
        ncclCommAbort(g_nccl);
        g_nccl = nullptr;
    }
    return rc;
}

int ensure_nccl(char* err, int err_len) {
    if (g_nccl) return 0;
    ncclUniqueId id{};
    if (g_rank == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess) return nccl_fail(rc, "ncclGetUniqueId", err, err_len);
    }
    MPI_Request request;
    if (check(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD, &request), "sharing the NCCL id", err,
              err_len) ||
        wait_request(&request, "sharing the NCCL id", err, err_len))
        return 1;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // so that a missing peer times out in wait_nccl instead of blocking here
    ncclResult_t rc = ncclCommInitRankConfig(&g_nccl, g_size, id, g_rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) return nccl_fail(rc, "ncclCommInitRank", err, err_len);
    return wait_nccl(nullptr, "ncclCommInitRank", err, err_len);
}

int gpu_all_reduce_sum_f32(float* data, int64_t n, void* stream, char* err, int err_len) {
    if (ensure_nccl(err, err_len)) return 1;
    auto s = static_cast<cudaStream_t>(stream);
    ncclResult_t rc = ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, g_nccl, s);
    if (rc != ncclSuccess && rc != ncclInProgress) return nccl_fail(rc, "ncclAllReduce", err, err_len);
    return wait_nccl(s, "ncclAllReduce", err, err_len);
}

int gpu_all_gather_f32(const float* send, int64_t n, float* recv, void* stream, char* err, int err_len) {
    if (ensure_nccl(err, err_len)) return 1;
    auto s = static_cast<cudaStream_t>(stream);
    ncclResult_t rc = ncclAllGather(send, recv, static_cast<size_t>(n), ncclFloat, g_nccl, s);
    if (rc != ncclSuccess && rc != ncclInProgress) return nccl_fail(rc, "ncclAllGather", err, err_len);
    return wait_nccl(s, "ncclAllGather", err, err_len);
}

#endif  // STF_DIST_NCCL

void abort_job(int code) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
}

void finalize() {
#ifdef STF_DIST_NCCL
    if (g_nccl) ncclCommDestroy(g_nccl);
    g_nccl = nullptr;
#endif
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Finalize();
}

const StfDistPlugin kPlugin = {
    STF_DIST_ABI,
    init,
    all_reduce_sum_f32,
    all_reduce_sum_f64,
    all_gather_bytes,
#ifdef STF_DIST_NCCL
    gpu_all_reduce_sum_f32,
    gpu_all_gather_f32,
#else
    nullptr,
    nullptr,
#endif
    abort_job,
    finalize,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const StfDistPlugin* stf_dist_plugin(void) { return &kPlugin; }
