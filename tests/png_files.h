// Reads a PNG back with stb_image, for tests of what the writers wrote. Include it in one source file
// per test program (it holds stb_image's implementation, with internal linkage).
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image.h>
#pragma GCC diagnostic pop

namespace stf::test {

// The pixels as h * w * c bytes; w, h and c are set from the file.
inline std::vector<uint8_t> read_png(const std::string& path, int& w, int& h, int& c) {
    unsigned char* p = stbi_load(path.c_str(), &w, &h, &c, 0);
    REQUIRE_MESSAGE(p != nullptr, "stbi_load failed for " << path);
    std::vector<uint8_t> out(p, p + static_cast<size_t>(w) * h * c);
    stbi_image_free(p);
    return out;
}

}  // namespace stf::test
