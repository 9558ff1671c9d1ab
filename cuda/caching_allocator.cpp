#include "cuda/caching_allocator.h"

#include <stdexcept>
#include <string>

namespace stf {

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free)
    : raw_alloc_(std::move(raw_alloc)), raw_free_(std::move(raw_free)) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

size_t CachingAllocator::round_size(size_t bytes) {
    constexpr size_t kSmall = 512, kLarge = 2u << 20, kSmallLimit = 1u << 20;
    if (bytes == 0) bytes = 1;
    size_t unit = bytes < kSmallLimit ? kSmall : kLarge;
    return (bytes + unit - 1) / unit * unit;
}

void* CachingAllocator::allocate(size_t bytes) {
    size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto it = free_lists_.find(size);
    if (it != free_lists_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        stats_.cache_hits++;
    } else {
        ptr = raw_alloc_(size);
        if (!ptr) {
            // Out of memory: give the cache back and try once more before failing.
            for (auto& [sz, blocks] : free_lists_)
                for (void* b : blocks) { raw_free_(b); stats_.reserved -= sz; }
            free_lists_.clear();
            ptr = raw_alloc_(size);
            if (!ptr)
                throw std::runtime_error("CachingAllocator: out of memory allocating " + std::to_string(size) +
                                         " bytes (" + std::to_string(stats_.allocated) + " bytes in use)");
        }
        stats_.reserved += size;
        stats_.backend_allocs++;
    }
    live_[ptr] = size;
    stats_.allocated += size;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return ptr;
}

void CachingAllocator::release(void* ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) throw std::runtime_error("CachingAllocator: release of a pointer it did not allocate");
    size_t size = it->second;
    live_.erase(it);
    stats_.allocated -= size;
    free_lists_[size].push_back(ptr);
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_lists_)
        for (void* b : blocks) { raw_free_(b); stats_.reserved -= size; }
    free_lists_.clear();
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
