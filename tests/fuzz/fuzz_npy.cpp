// libFuzzer harness: parse_npy on arbitrary bytes, and read_npz when the input's first byte is odd (the
// rest is then the archive). See docs/contributing.md (Fuzzing).
#include <cstdint>
#include <string>

#include "data/image_io.h"
#include "data/npz.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    try {
        if (data[0] & 1) {
            std::string path = stf::fuzz::write_input(data + 1, size - 1, "input.npz");
            for (const auto& [key, t] : stf::data::read_npz(path)) (void)t.numel();
        } else {
            stf::Tensor t = stf::data::parse_npy(std::string(reinterpret_cast<const char*>(data) + 1, size - 1), "input");
            (void)t.numel();
        }
    } catch (const stf::Error&) {
    }
    return 0;
}
