// The CUDA runtime behind cuda/runtime.h: one caching allocator, one stream, one cuBLAS and one cuDNN
// handle, all created on first use.
//
// Everything stf launches goes to a single non-blocking stream. Work on one stream runs in order, so a
// block freed back to the allocator can be handed to the next op straight away: any kernel that reads
// the new owner's data is queued after every kernel that used the old owner's data.
//
// The globals below are created with `new` and never destroyed. At process exit the CUDA runtime may
// already be torn down when static destructors run, and cudaFree/cublasDestroy would then fail inside
// a destructor; the driver reclaims everything when the process ends anyway.
#include "cuda/runtime.h"

#include <mutex>
#include <stdexcept>
#include <string>

#include <cuda_profiler_api.h>

#include "cuda/check.h"

namespace stf::cuda {
namespace {

// cudaMalloc's out-of-memory is reported as nullptr so the allocator can empty its cache and retry.
void* raw_alloc(size_t bytes) {
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // not a sticky error: clear it so later checks don't report it again
        return nullptr;
    }
    STF_CUDA_CHECK(err);
    return ptr;
}

void raw_free(void* ptr) { STF_CUDA_CHECK(cudaFree(ptr)); }

CachingAllocator& allocator() {
    static CachingAllocator* instance = new CachingAllocator(raw_alloc, raw_free);
    return *instance;
}

// Guards the lazy creation of the stream and the library handles.
std::mutex g_init_mutex;
cudaStream_t g_stream = nullptr;
cublasHandle_t g_cublas = nullptr;
cudnnHandle_t g_cudnn = nullptr;

cudaStream_t get_stream() {
    std::lock_guard<std::mutex> lock(g_init_mutex);
    // Non-blocking: our stream does not wait for (or block) the legacy default stream, which a
    // library might use behind our back.
    if (!g_stream) STF_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    return g_stream;
}

}  // namespace

bool built_with_cuda() { return true; }

bool available() {
    // Asked once: the answer cannot change while the process runs.
    static const bool answer = [] {
        int count = 0;
        cudaError_t err = cudaGetDeviceCount(&count);
        if (err != cudaSuccess) {
            // No driver, no device, or a driver older than the runtime: report "no device".
            cudaGetLastError();
            return false;
        }
        return count > 0;
    }();
    return answer;
}

void set_device(int device) {
    if (device < 0 || device >= device_count())
        throw std::runtime_error("CUDA device " + std::to_string(device) + " does not exist (" +
                                 std::to_string(device_count()) + " visible)");
    STF_CUDA_CHECK(cudaSetDevice(device));
}

int current_device() {
    int device = 0;
    STF_CUDA_CHECK(cudaGetDevice(&device));
    return device;
}

int device_count() {
    if (!available()) return 0;
    int count = 0;
    STF_CUDA_CHECK(cudaGetDeviceCount(&count));
    return count;
}

std::string device_name() {
    int device = 0;
    STF_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    STF_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    return prop.name;
}

void* malloc(size_t bytes) { return allocator().allocate(bytes); }
void free(void* ptr) { allocator().release(ptr); }
AllocatorStats allocator_stats() { return allocator().stats(); }
void reset_peak() { allocator().reset_peak(); }
void empty_cache() { allocator().empty_cache(); }

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    // From pageable host memory the copy is staged before the call returns, so the caller may reuse
    // `src` at once.
    STF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, get_stream()));
}

// Host waits inside a capture would invalidate it with an unhelpful error.
static void refuse_inside_capture(const char* what) {
    if (capturing())
        throw std::runtime_error(std::string(what) + " inside a CUDA graph capture: a captured step must not wait "
                                 "for the device (read results after replay(), outside the capture)");
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    refuse_inside_capture("copy_device_to_host");
    cudaStream_t s = get_stream();
    STF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    // The caller reads `dst` next: wait until the data (and every kernel queued before it) is there.
    STF_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    STF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, get_stream()));
}

void memset_zero(void* dst, size_t bytes) {
    if (bytes == 0) return;
    STF_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, get_stream()));
}

void synchronize() {
    refuse_inside_capture("synchronize");
    STF_CUDA_CHECK(cudaStreamSynchronize(get_stream()));
}
void profiler_start() { STF_CUDA_CHECK(cudaProfilerStart()); }
void profiler_stop() { STF_CUDA_CHECK(cudaProfilerStop()); }

// ---- graphs ----------------------------------------------------------------------------------------
// A capture is open exactly while the allocator serves a capture pool (Graph opens and closes both).
bool capturing() { return allocator().capturing() != 0; }

void Graph::begin_capture() {
    if (capturing()) throw std::runtime_error("Graph::begin_capture: a capture is already open");
    discard();
    cudaStream_t s = get_stream();
    cublas_handle();  // the library handles are created before the capture, not inside it
    cudnn_handle();
    pool_ = allocator().begin_capture();
    // Thread-local mode: this thread's unsafe calls (a synchronising cudaFree, say) fail the capture;
    // other threads' work is not affected.
    const cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) {
        allocator().end_capture();
        allocator().release_pool(pool_);
        pool_ = 0;
        STF_CUDA_CHECK(err);
    }
}

void Graph::end_capture() {
    if (!capturing()) throw std::runtime_error("Graph::end_capture without begin_capture");
    cudaGraph_t graph = nullptr;
    const cudaError_t err = cudaStreamEndCapture(get_stream(), &graph);
    allocator().end_capture();
    graph_ = graph;
    if (err != cudaSuccess) {
        cudaGetLastError();
        discard();
        throw std::runtime_error(std::string("CUDA graph capture failed: ") + cudaGetErrorString(err) +
                                 " (an operation inside the capture is not allowed in a graph)");
    }
    cudaGraphExec_t exec = nullptr;
    STF_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    exec_ = exec;
}

void Graph::replay() {
    if (!exec_) throw std::runtime_error("Graph::replay: nothing captured");
    STF_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), get_stream()));
}

void Graph::discard() {
    if (exec_ || graph_ || pool_) STF_CUDA_CHECK(cudaStreamSynchronize(get_stream()));  // no replay in flight
    if (exec_) STF_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_)));
    if (graph_) STF_CUDA_CHECK(cudaGraphDestroy(static_cast<cudaGraph_t>(graph_)));
    if (pool_) allocator().release_pool(pool_);
    exec_ = graph_ = nullptr;
    pool_ = 0;
}

Graph::~Graph() {
    try {
        discard();
    } catch (const std::exception&) {
        // A destructor must not throw; at process exit the runtime may already be gone.
    }
}

void* stream() { return get_stream(); }

void* cublas_handle() {
    cudaStream_t s = get_stream();  // takes the mutex itself, so call it before locking
    std::lock_guard<std::mutex> lock(g_init_mutex);
    if (!g_cublas) {
        STF_CUBLAS_CHECK(cublasCreate(&g_cublas));
        STF_CUBLAS_CHECK(cublasSetStream(g_cublas, s));
    }
    return g_cublas;
}

void* cudnn_handle() {
    cudaStream_t s = get_stream();
    std::lock_guard<std::mutex> lock(g_init_mutex);
    if (!g_cudnn) {
        STF_CUDNN_CHECK(cudnnCreate(&g_cudnn));
        STF_CUDNN_CHECK(cudnnSetStream(g_cudnn, s));
    }
    return g_cudnn;
}

}  // namespace stf::cuda
