// Shared by the libFuzzer harnesses: the readers under test take paths, so each input is written to a
// file of this process first. Only stf::Error is an expected outcome; anything else (a crash, a sanitizer
// report, another exception such as std::bad_alloc from an unbounded allocation) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace stf::fuzz {

// `name` inside a directory of this process under the system's temporary directory; the name matters to
// readers that detect formats by it (".bin", "idx3").
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
    static const std::filesystem::path dir = [] {
        auto d = std::filesystem::temp_directory_path() / ("stf_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        return d;
    }();
    std::string path = (dir / name).string();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
    return path;
}

}  // namespace stf::fuzz
