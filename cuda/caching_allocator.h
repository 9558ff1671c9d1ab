// A caching allocator: freed blocks go to per-size-class free lists instead of back to the driver,
// because cudaMalloc/cudaFree synchronise the device and cost far more than a training step's kernels.
// The backend (raw allocate/release) is pluggable, so the same logic is tested on the CPU with malloc.
//
// Capture pools, for CUDA graphs. A captured graph replays its kernels on the addresses they were
// recorded with, so every block the capture touched must stay the graph's for as long as the graph
// lives: handed to eager code in between, a replay would overwrite it. While a capture pool is open,
// allocations come from that pool alone (its own free lists or the backend, never the general cache),
// and a block freed during the capture joins the pool even when it was allocated before it (captured
// kernels may read it before the free). After the capture the pool keeps its blocks: later frees of
// them return to the pool, eager allocations never see them, empty_cache() leaves them. Only
// release_pool(), once the graph is destroyed, gives them back to the general cache. Within one
// capture a freed block may be reused: the graph replays its nodes in the order they were captured.
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
    void empty_cache();  // the general cache only; nothing while a capture is open
    void reset_peak();
    AllocatorStats stats() const;

    // Size classes: multiples of 512 B below 1 MiB, multiples of 2 MiB above. Rounding keeps
    // the free lists few and lets a block of a slightly different size be reused.
    static size_t round_size(size_t bytes);

    using PoolId = uint64_t;  // 0 is the general cache
    // Opens a new capture pool; allocations until end_capture() come from it. One at a time.
    PoolId begin_capture();
    void end_capture();
    PoolId capturing() const;
    // The pool's graph is gone: its cached blocks move to the general cache, and blocks of it still
    // in use (a graph's outputs) return there when released.
    void release_pool(PoolId pool);
    size_t pool_reserved(PoolId pool) const;  // bytes the pool holds, in use or cached

private:
    struct Pool {
        std::map<size_t, std::vector<void*>> free_lists;
        size_t reserved = 0;
    };
    struct Block {
        size_t size;
        PoolId pool;
    };
    void* take_cached(std::map<size_t, std::vector<void*>>& lists, size_t size);
    void* take_from_backend(size_t size);
    void return_to_backend(std::map<size_t, std::vector<void*>>& lists);  // frees every block; caller holds the lock


    RawAlloc raw_alloc_;
    RawFree raw_free_;
    mutable std::mutex mutex_;
    std::map<size_t, std::vector<void*>> free_lists_;  // general cache: rounded size -> cached blocks
    std::unordered_map<void*, Block> live_;            // block -> rounded size and owner
    std::map<PoolId, Pool> pools_;                     // capture pools not yet released
    PoolId capturing_ = 0, next_pool_ = 1;
    AllocatorStats stats_;
};

} // namespace stf
