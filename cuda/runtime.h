// The CUDA runtime as the rest of stf sees it: device memory through the caching allocator, copies,
// synchronisation, and the library handles. Plain C++ declarations (no CUDA headers), so tensor/ can
// include it in any build. In a build without CUDA, runtime_stub.cpp answers "no device".
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include "cuda/caching_allocator.h"

namespace stf::cuda {

bool built_with_cuda();
// True when built with CUDA and at least one device is present and usable.
bool available();
int device_count();
std::string device_name();
// Makes `device` this process's GPU (data-parallel ranks sharing a machine each take one). Call it
// before any other CUDA work: streams and handles belong to the device current when they are made.
void set_device(int device);
int current_device();

void* malloc(size_t bytes);  // from the caching allocator; never returns null (throws on failure)
void free(void* ptr);        // back to the allocator's free list
AllocatorStats allocator_stats();
void reset_peak();
void empty_cache();          // returns cached blocks to the driver

void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);  // waits for the copy
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void memset_zero(void* dst, size_t bytes);
void synchronize();
// Brackets the region an external profiler records when started with profiling off (Nsight Compute's
// `ncu --profile-from-start off`); without a profiler attached both are no-ops.
void profiler_start();
void profiler_stop();

// CUDA graphs. Between begin_capture() and end_capture() the kernels and copies queued on stf's stream
// are recorded instead of run; replay() runs the recording again, with the arguments and addresses it
// was captured with, for the cost of one launch. Allocations made while capturing come from the
// graph's own pool of the caching allocator, which keeps them until the graph is destroyed
// (cuda/caching_allocator.h), so replays never write memory eager code has been given since. Inside
// a capture nothing may wait for the device: copy_device_to_host and synchronize throw instead.
class Graph {
public:
    Graph() = default;
    ~Graph();  // waits for the stream, destroys the graph, hands its pool back to the general cache
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;

    void begin_capture();
    void end_capture();  // instantiates the recording; throws (and discards it) if the capture failed
    // begin_capture, work(), end_capture. If work throws, the capture is ended and its recording
    // discarded (a part of the work must never be replayed), and work's error is the one that propagates.
    void capture(const std::function<void()>& work);
    void replay();       // queued on stf's stream like any kernel
    bool ready() const { return exec_ != nullptr; }

private:
    void discard();
    void* graph_ = nullptr;  // cudaGraph_t
    void* exec_ = nullptr;   // cudaGraphExec_t
    uint64_t pool_ = 0;      // the allocator's capture pool, 0 once released
};
bool capturing();  // a Graph's capture is open on this process's stream

inline void Graph::capture(const std::function<void()>& work) {
    begin_capture();
    try {
        work();
    } catch (...) {
        try {
            end_capture();
            discard();
        } catch (const std::exception&) {
            // The capture is broken already; work's error is the one to report.
        }
        throw;
    }
    end_capture();
}

// Opaque handles (cudaStream_t, cublasHandle_t, cudnnHandle_t) for the .cu files.
void* stream();
void* cublas_handle();
void* cudnn_handle();

} // namespace stf::cuda
