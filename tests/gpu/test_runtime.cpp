// The CUDA runtime and the caching allocator on a real device: device queries, handles, copies and
// memset, and the allocator's cache, counters and peak. (The kernels themselves are tests/kernels/.)
#include <doctest/doctest.h>

// A build without CUDA has no stf::cuda runtime to link against; its GPU suite is main.cpp's skip.
#if !defined(STF_WITH_CUDA) || STF_WITH_CUDA

#include <vector>

#include "cuda/runtime.h"
#include "tests/kernels/kernel_test.h"

using stf::kernel_test::DeviceArray;
using stf::kernel_test::random_floats;

TEST_CASE("runtime: device queries, handles, copies and memset") {
    CHECK(stf::cuda::built_with_cuda());
    CHECK(stf::cuda::device_count() >= 1);
    CHECK(!stf::cuda::device_name().empty());
    CHECK(stf::cuda::stream() != nullptr);
    CHECK(stf::cuda::cublas_handle() != nullptr);
    CHECK(stf::cuda::cudnn_handle() != nullptr);

    std::vector<float> host = random_floats(4099, -1.0f, 1.0f, 11);
    DeviceArray<float> a(host), b(4099);
    CHECK(a.download() == host);
    b.poison();
    stf::cuda::copy_device_to_device(b.get(), a.get(), a.bytes());
    CHECK(b.download() == host);
    stf::cuda::memset_zero(b.get(), b.bytes());
    CHECK(b.download() == std::vector<float>(4099, 0.0f));
    stf::cuda::synchronize();
}

TEST_CASE("allocator: a freed block is served again from the cache, not from cudaMalloc") {
    const size_t bytes = 123457;  // rounded up to a multiple of 512
    void* first = stf::cuda::malloc(bytes);
    stf::cuda::free(first);
    stf::AllocatorStats before = stf::cuda::allocator_stats();
    void* second = stf::cuda::malloc(bytes);
    stf::AllocatorStats after = stf::cuda::allocator_stats();
    CHECK(second == first);
    CHECK(after.cache_hits == before.cache_hits + 1);
    CHECK(after.backend_allocs == before.backend_allocs);
    CHECK(after.reserved == before.reserved);
    CHECK(after.allocated == before.allocated + stf::CachingAllocator::round_size(bytes));
    stf::cuda::free(second);
}

TEST_CASE("allocator: peak_allocated keeps the high-water mark until reset_peak; empty_cache releases") {
    stf::cuda::reset_peak();
    stf::AllocatorStats base = stf::cuda::allocator_stats();
    CHECK(base.peak_allocated == base.allocated);

    const size_t big = 3u << 20, small = 1000;
    void* p = stf::cuda::malloc(big);
    void* q = stf::cuda::malloc(small);
    stf::AllocatorStats during = stf::cuda::allocator_stats();
    size_t expected = stf::CachingAllocator::round_size(big) + stf::CachingAllocator::round_size(small);
    CHECK(during.allocated == base.allocated + expected);
    CHECK(during.peak_allocated == during.allocated);
    stf::cuda::free(p);
    stf::cuda::free(q);

    stf::AllocatorStats freed = stf::cuda::allocator_stats();
    CHECK(freed.allocated == base.allocated);
    CHECK(freed.peak_allocated == during.peak_allocated);
    stf::cuda::reset_peak();
    CHECK(stf::cuda::allocator_stats().peak_allocated == base.allocated);

    stf::cuda::empty_cache();
    stf::AllocatorStats emptied = stf::cuda::allocator_stats();
    CHECK(emptied.reserved == emptied.allocated);  // nothing cached any more
    void* r = stf::cuda::malloc(big);
    CHECK(stf::cuda::allocator_stats().backend_allocs == emptied.backend_allocs + 1);
    stf::cuda::free(r);
}

#endif  // STF_WITH_CUDA
