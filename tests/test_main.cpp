// The entry point of every doctest suite. A suite (or the part of one that CTest runs as its own test)
// may need what a machine lacks: `--requires=gpu` (a usable CUDA device) or `--requires=fashion-mnist`
// (Debian's dataset-fashion-mnist). When it is missing the program says so and exits with 77, which
// CTest reports as "Skipped" (SKIP_RETURN_CODE), never as passed. Other arguments go to doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "tests/requirements.h"

namespace {

constexpr int kSkipped = 77;

// "" when `what` is available here, else why not.
std::string missing(const std::string& what) {
    if (what == "gpu") {
        if (!stf::cuda::built_with_cuda()) return "stf was built without CUDA";
        if (!stf::cuda::available()) return "no CUDA device is available";
        return "";
    }
    if (what == "fashion-mnist") {
        const std::string dir = stf::test::fashion_mnist_dir();
        if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz") ||
            !std::filesystem::exists(std::filesystem::path(dir) / "t10k-labels-idx1-ubyte.gz"))
            return "Fashion-MNIST not found at " + dir + " (Debian: apt-get install dataset-fashion-mnist)";
        return "";
    }
    return "unknown requirement '" + what + "' (expected gpu or fashion-mnist)";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<char*> rest;
    bool gpu = false;
    for (int i = 0; i < argc; ++i) {
        const char* prefix = "--requires=";
        if (i > 0 && std::strncmp(argv[i], prefix, std::strlen(prefix)) == 0) {
            const std::string why = missing(argv[i] + std::strlen(prefix));
            if (!why.empty()) {
                std::printf("skipped: %s\n", why.c_str());
                return kSkipped;
            }
            gpu = gpu || std::strcmp(argv[i] + std::strlen(prefix), "gpu") == 0;
            continue;
        }
        rest.push_back(argv[i]);
    }
    if (gpu) std::printf("CUDA device: %s\n", stf::cuda::device_name().c_str());
    doctest::Context context;
    context.applyCommandLine(static_cast<int>(rest.size()), rest.data());
    return context.run();
}
