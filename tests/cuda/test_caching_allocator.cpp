// The caching allocator's bookkeeping, run with host malloc as its backend.
#include <doctest/doctest.h>

#include <cstdlib>
#include <set>
#include <string>

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

TEST_CASE("a capture pool never shares blocks with eager code until it is released") {
    CountingBackend backend;
    {
        CachingAllocator a = backend.make();
        void* eager_cached = a.allocate(1000);
        a.release(eager_cached);  // in the general cache
        void* before = a.allocate(3000);  // allocated before the capture, freed inside it

        const CachingAllocator::PoolId pool = a.begin_capture();
        CHECK(pool != 0);
        CHECK(a.capturing() == pool);
        void* inside = a.allocate(1000);  // same size class as the cached block, which it must not take
        CHECK(inside != eager_cached);
        a.release(inside);
        CHECK(a.allocate(1000) == inside);  // reuse within the capture: replay keeps the captured order
        a.release(inside);
        a.release(before);                  // the graph may read it: it now belongs to the pool
        void* output = a.allocate(100);     // alive after the capture (a graph output)
        CHECK(a.pool_reserved(pool) == 1024 + 3072 + 512);
        a.empty_cache();                    // nothing may be freed while capturing
        CHECK(backend.frees == 0);
        a.end_capture();
        CHECK(a.capturing() == 0);

        // Eager allocations after the capture: the general cache and the backend, never the pool.
        void* e1 = a.allocate(1000);
        CHECK(e1 == eager_cached);
        void* e2 = a.allocate(1000);
        CHECK(e2 != inside);
        void* e3 = a.allocate(3000);
        CHECK(e3 != before);
        a.release(output);  // back to the pool, not the general cache
        void* e4 = a.allocate(100);
        CHECK(e4 != output);
        a.empty_cache();    // leaves the pool's blocks with the pool
        CHECK(backend.live.count(before) == 1);
        CHECK(backend.live.count(output) == 1);

        // The graph is destroyed: its blocks serve eager code again.
        a.release_pool(pool);
        CHECK(a.pool_reserved(pool) == 0);
        CHECK(a.allocate(1000) == inside);
        void* again = inside;
        for (void* p : {e1, e2, e3, e4, again}) a.release(p);
        CHECK(a.stats().allocated == 0);
    }
    CHECK(backend.live.empty());  // the destructor returns pool and general blocks alike
}

TEST_CASE("a graph output released after its pool returns to the general cache") {
    CountingBackend backend;
    CachingAllocator a = backend.make();
    const CachingAllocator::PoolId pool = a.begin_capture();
    void* output = a.allocate(2048);
    a.end_capture();
    a.release_pool(pool);
    a.release(output);
    void* again = a.allocate(2048);
    CHECK(again == output);
    a.release(again);
    CHECK_THROWS_AS(a.release_pool(pool), std::runtime_error);  // already released
}

TEST_CASE("capture pools refuse misuse and out of memory inside a capture fails without freeing") {
    int live = 0;
    std::set<void*> freed;
    CachingAllocator a(
        [&](size_t n) -> void* {
            if (live >= 2) return nullptr;
            live++;
            return std::malloc(n);
        },
        [&](void* p) {
            live--;
            freed.insert(p);
            std::free(p);
        });
    void* cached = a.allocate(512);
    a.release(cached);  // general cache: one live backend block
    CHECK_THROWS_AS(a.end_capture(), std::runtime_error);
    const CachingAllocator::PoolId pool = a.begin_capture();
    CHECK_THROWS_AS(a.begin_capture(), std::runtime_error);
    CHECK_THROWS_AS(a.release_pool(pool), std::runtime_error);
    void* p = a.allocate(1024);
    try {
        a.allocate(4096);  // the backend is full, and the cache may not be emptied inside a capture
        FAIL("expected an out-of-memory error");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("capturing a CUDA graph") != std::string::npos);
    }
    CHECK(freed.empty());
    a.end_capture();
    a.release(p);
    a.release_pool(pool);
}

TEST_CASE("the CUDA runtime reports its availability without throwing") {
    bool avail = stf::cuda::available();
    if (!stf::cuda::built_with_cuda()) CHECK_FALSE(avail);
    CHECK(stf::cuda::device_count() >= (avail ? 1 : 0));
}
