// The caching allocator's bookkeeping, run with host malloc as its backend.
#include <doctest/doctest.h>

#include <cstdlib>
#include <set>

#include "cuda/caching_allocator.h"
#include "cuda/runtime.h"

using stf::CachingAllocator;

namespace {
struct CountingBackend {
    int allocs = 0, frees = 0;
    std::set<void*> live;
    CachingAllocator make() {
        return CachingAllocator(
            [this](size_t n) {
                allocs++;
                void* p = std::malloc(n);
                live.insert(p);
                return p;
            },
            [this](void* p) {
                frees++;
                live.erase(p);
                std::free(p);
            });
    }
};
}  // namespace

TEST_CASE("size classes round to 512 B below 1 MiB and to 2 MiB above") {
    CHECK(CachingAllocator::round_size(0) == 512);
    CHECK(CachingAllocator::round_size(1) == 512);
    CHECK(CachingAllocator::round_size(512) == 512);
    CHECK(CachingAllocator::round_size(513) == 1024);
    CHECK(CachingAllocator::round_size((1 << 20) - 1) == (1 << 20));
    CHECK(CachingAllocator::round_size((1 << 20) + 1) == (2 << 20));
    CHECK(CachingAllocator::round_size((5 << 20)) == (6 << 20));
}

TEST_CASE("freed blocks are reused and counters track allocated, reserved and peak") {
    CountingBackend backend;
    {
        CachingAllocator a = backend.make();
        void* p = a.allocate(1000);  // 1024-byte class
        CHECK(a.stats().allocated == 1024);
        CHECK(a.stats().reserved == 1024);
        a.release(p);
        CHECK(a.stats().allocated == 0);
        CHECK(a.stats().reserved == 1024);  // cached, not returned
        void* q = a.allocate(900);          // same class: served from the cache
        CHECK(q == p);
        CHECK(a.stats().cache_hits == 1);
        CHECK(a.stats().backend_allocs == 1);
        void* r = a.allocate(3000);
        CHECK(a.stats().allocated == 1024 + 3072);
        CHECK(a.stats().peak_allocated == 1024 + 3072);
        a.release(q);
        a.release(r);
        CHECK(a.stats().peak_allocated == 1024 + 3072);
        a.reset_peak();
        CHECK(a.stats().peak_allocated == 0);
        a.empty_cache();
        CHECK(a.stats().reserved == 0);
        CHECK(backend.frees == 2);
        CHECK_THROWS_WITH_AS(a.release(reinterpret_cast<void*>(0x1234)), doctest::Contains("did not allocate"),
                             std::runtime_error);
    }
    CHECK(backend.live.empty());
}

TEST_CASE("out of memory empties the cache and retries before failing") {
    int budget = 2;  // the backend refuses after two live blocks
    int live = 0;
    CachingAllocator a(
        [&](size_t n) -> void* {
            if (live >= budget) return nullptr;
            live++;
            return std::malloc(n);
        },
        [&](void* p) {
            live--;
            std::free(p);
        });
    void* p = a.allocate(512);
    void* q = a.allocate(2048);
    a.release(p);             // cached, still counted by the backend
    void* r = a.allocate(4096);  // needs the cache emptied first
    CHECK(r != nullptr);
    CHECK_THROWS_AS(a.allocate(8192), std::runtime_error);
    a.release(q);
    a.release(r);
}

TEST_CASE("the CUDA runtime reports its availability without throwing") {
    bool avail = stf::cuda::available();
    if (!stf::cuda::built_with_cuda()) CHECK_FALSE(avail);
    CHECK(stf::cuda::device_count() >= (avail ? 1 : 0));
}
