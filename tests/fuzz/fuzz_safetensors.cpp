// libFuzzer harness: load_safetensors on arbitrary bytes. See docs/contributing.md (Fuzzing).
#include <cstdint>

#include "nn/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string path = stf::fuzz::write_input(data, size, "input.safetensors");
    try {
        stf::nn::SafetensorsFile f = stf::nn::load_safetensors(path);
        for (const auto& [name, t] : f.tensors) (void)t.numel();
    } catch (const stf::Error&) {
    }
    return 0;
}
