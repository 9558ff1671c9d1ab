#include "cuda/caching_allocator.h"

#include <stdexcept>
#include <string>

namespace stf {

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

CachingAllocator::~CachingAllocator() {
    for (auto& [id, pool] : pools_) return_to_backend(pool.free_lists);
    return_to_backend(free_lists_);
}

void CachingAllocator::return_to_backend(std::map<size_t, std::vector<void*>>& lists) {
    for (auto& [size, blocks] : lists)
        for (void* b : blocks) {
            raw_free_(b);
            stats_.reserved -= size;
        }
    lists.clear();
}

size_t CachingAllocator::round_size(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = 2u << 20, kSmallLimit = 1u << 20;
    if (bytes == 0) bytes = 1;
    size_t unit = bytes < kSmallLimit ? kSmall : kLarge;
    return (bytes + unit - 1) / unit * unit;
}

void* CachingAllocator::take_cached(std::map<size_t, std::vector<void*>>& lists, size_t size) {
    auto it = lists.find(size);
    if (it == lists.end() || it->second.empty()) return nullptr;
    void* ptr = it->second.back();
    it->second.pop_back();
    stats_.cache_hits++;
    return ptr;
}

void* CachingAllocator::take_from_backend(size_t size) {
    void* ptr = raw_alloc_(size);
    if (!ptr && capturing_ == 0) {
        // Out of memory: give the cache back and try once more before failing. Not while capturing:
        // freeing device memory is not allowed inside a CUDA graph capture.
        return_to_backend(free_lists_);
        ptr = raw_alloc_(size);
    }
    if (!ptr)
        throw std::runtime_error("CachingAllocator: out of memory allocating " + std::to_string(size) + " bytes (" +
                                 std::to_string(stats_.allocated) + " bytes in use" +
                                 (capturing_ ? ", while capturing a CUDA graph: its blocks cannot come from the "
                                               "general cache; turn graphs off or use a smaller batch)"
                                             : ")"));
    stats_.reserved += size;
    stats_.backend_allocs++;
    return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
    size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    if (capturing_) {
        Pool& pool = pools_.at(capturing_);
        ptr = take_cached(pool.free_lists, size);
        if (!ptr) {
            ptr = take_from_backend(size);
            pool.reserved += size;
        }
    } else {
        ptr = take_cached(free_lists_, size);
        if (!ptr) ptr = take_from_backend(size);
    }
    live_[ptr] = Block{size, capturing_};
    stats_.allocated += size;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return ptr;
}

void CachingAllocator::release(void* ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) throw std::runtime_error("CachingAllocator: release of a pointer it did not allocate");
    Block block = it->second;
    live_.erase(it);
    stats_.allocated -= block.size;
    if (block.pool == 0 && capturing_) {  // a general block freed inside a capture: the graph's from now on
        block.pool = capturing_;
        pools_.at(capturing_).reserved += block.size;
    }
    if (block.pool == 0)
        free_lists_[block.size].push_back(ptr);
    else
        pools_.at(block.pool).free_lists[block.size].push_back(ptr);
}

CachingAllocator::PoolId CachingAllocator::begin_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (capturing_) throw std::runtime_error("CachingAllocator: a capture is already open (one at a time)");
    capturing_ = next_pool_++;
    pools_[capturing_];
    return capturing_;
}

void CachingAllocator::end_capture() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!capturing_) throw std::runtime_error("CachingAllocator: end_capture without begin_capture");
    capturing_ = 0;
}

CachingAllocator::PoolId CachingAllocator::capturing() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return capturing_;
}

void CachingAllocator::release_pool(PoolId id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(id);
    if (it == pools_.end()) throw std::runtime_error("CachingAllocator: release_pool of an unknown pool");
    if (id == capturing_) throw std::runtime_error("CachingAllocator: release_pool of the pool being captured");
    for (auto& [size, blocks] : it->second.free_lists)
        for (void* b : blocks) free_lists_[size].push_back(b);
    for (auto& [ptr, block] : live_)
        if (block.pool == id) block.pool = 0;
    pools_.erase(it);
}

size_t CachingAllocator::pool_reserved(PoolId id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(id);
    return it == pools_.end() ? 0 : it->second.reserved;
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (capturing_) return;  // freeing device memory would break the capture; the cache stays
    return_to_backend(free_lists_);
}

void CachingAllocator::reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated = stats_.allocated;
}

AllocatorStats CachingAllocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

} // namespace stf
