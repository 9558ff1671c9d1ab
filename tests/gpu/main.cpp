// The GPU suite's entry point. On a machine without a usable CUDA device (or a build without CUDA) the
// suite reports itself skipped and succeeds, so `ctest` passes on CPU-only machines.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "cuda/runtime.h"

int main(int argc, char** argv) {
    if (!stf::cuda::available()) {
        std::printf("GPU suite: no CUDA device available, skipped\n");
        return 0;
    }
    std::printf("GPU suite on %s\n", stf::cuda::device_name().c_str());
    doctest::Context context;
    context.applyCommandLine(argc, argv);
    return context.run();
}
