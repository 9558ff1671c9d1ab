// A caching allocator: freed blocks go to per-size-class free lists instead of back to the driver,
// because cudaMalloc/cudaFree synchronise the device and cost far more than a training step's kernels.
// The backend (raw allocate/release) is pluggable, so the same logic is tested on the CPU with malloc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace stf {

struct AllocatorStats {
    size_t allocated = 0;       // bytes handed out and not yet freed (rounded sizes)
    size_t reserved = 0;        // bytes obtained from the backend (allocated + cached)
    size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset_peak()
    size_t backend_allocs = 0;  // calls to the backend's allocate, to see reuse
    size_t cache_hits = 0;      // allocations served from a free list
};

class CachingAllocator {
public:
    using RawAlloc = std::function<void*(size_t)>;
    using RawFree = std::function<void(void*)>;

    CachingAllocator(RawAlloc raw_alloc, RawFree raw_free);
    ~CachingAllocator();
    CachingAllocator(const CachingAllocator&) = delete;
    CachingAllocator& operator=(const CachingAllocator&) = delete;

    void* allocate(size_t bytes);
    void release(void* ptr);
    void empty_cache();
    void reset_peak();
    AllocatorStats stats() const;

    // Size classes: multiples of 512 B below 1 MiB, multiples of 2 MiB above. Rounding keeps
    // the free lists few and lets a block of a slightly different size be reused.
    static size_t round_size(size_t bytes);

private:
    RawAlloc raw_alloc_;
    RawFree raw_free_;
    mutable std::mutex mutex_;
    std::map<size_t, std::vector<void*>> free_lists_;  // rounded size -> cached blocks
    std::unordered_map<void*, size_t> live_;           // block -> rounded size
    AllocatorStats stats_;
};

} // namespace stf
