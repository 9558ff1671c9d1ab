// cuda/runtime.h for a build without CUDA: there is never a device. The queries answer "none"; anything
// that would need a device throws, naming the function, so a misrouted call is easy to trace.
#include <stdexcept>
#include <string>

#include "cuda/runtime.h"

namespace stf::cuda {
namespace {
[[noreturn]] void no_cuda(const char* function) {
    throw std::runtime_error(std::string("stf was built without CUDA: ") + function);
}
}  // namespace

bool built_with_cuda() { return false; }
bool available() { return false; }
int device_count() { return 0; }
void set_device(int) { no_cuda("set_device"); }
int current_device() { return 0; }
std::string device_name() { no_cuda("device_name"); }

void* malloc(size_t) { no_cuda("malloc"); }
void free(void*) { no_cuda("free"); }
AllocatorStats allocator_stats() { return {}; }
void reset_peak() { no_cuda("reset_peak"); }
void empty_cache() { no_cuda("empty_cache"); }

void copy_host_to_device(void*, const void*, size_t) { no_cuda("copy_host_to_device"); }
void copy_device_to_host(void*, const void*, size_t) { no_cuda("copy_device_to_host"); }
void copy_device_to_device(void*, const void*, size_t) { no_cuda("copy_device_to_device"); }
void memset_zero(void*, size_t) { no_cuda("memset_zero"); }
void synchronize() { no_cuda("synchronize"); }
void profiler_start() { no_cuda("profiler_start"); }
void profiler_stop() { no_cuda("profiler_stop"); }

Graph::~Graph() = default;
void Graph::begin_capture() { no_cuda("Graph::begin_capture"); }
void Graph::end_capture() { no_cuda("Graph::end_capture"); }
void Graph::replay() { no_cuda("Graph::replay"); }
void Graph::discard() {}
bool capturing() { return false; }

void* stream() { no_cuda("stream"); }
void* cublas_handle() { no_cuda("cublas_handle"); }
void* cudnn_handle() { no_cuda("cudnn_handle"); }

}  // namespace stf::cuda
