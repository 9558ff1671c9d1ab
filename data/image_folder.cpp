#include "data/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "tensor/tensor.h"  // stf::Error, STF_CHECK

// stb_image with every function static, so that it cannot clash with another copy (tests/png_files.h).
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_NO_PNM
#define STBI_NO_GIF
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace fs = std::filesystem;

namespace stf::data {

std::vector<std::string> list_image_files(const std::string& dir) {
    std::error_code ec;
    STF_CHECK(fs::is_directory(dir, ec), "list_image_files: '" << dir << "' is not a directory");
    std::vector<std::string> relative;
    for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec)) {
        if (!e.is_regular_file()) continue;
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
        if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tga")
            relative.push_back(fs::relative(e.path(), dir).string());
    }
    STF_CHECK(!ec, "list_image_files: cannot read '" << dir << "': " << ec.message());
    std::sort(relative.begin(), relative.end());
    std::vector<std::string> paths;
    paths.reserve(relative.size());
    for (const std::string& r : relative) paths.push_back((fs::path(dir) / r).string());
    return paths;
}

namespace {

std::string stb_reason() {
    const char* r = stbi_failure_reason();
    return r ? r : "unknown error";
}

// stb_image takes an int length; larger buffers are refused before the cast.
int stb_length(size_t size, const std::string& where) {
    STF_CHECK(size <= static_cast<size_t>(std::numeric_limits<int>::max()),
              "decode_image: " << where << " has " << size << " bytes, more than an image file may have");
    return static_cast<int>(size);
}

}  // namespace

ImageHeader read_image_header(const uint8_t* bytes, size_t size) {
    ImageHeader h;
    if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
        h.error = "too large";
        return h;
    }
    int w = 0, ht = 0, c = 0;
    const int len = static_cast<int>(size);
    if (!stbi_info_from_memory(bytes, len, &w, &ht, &c)) {
        h.error = stb_reason();
        return h;
    }
    h.ok = true;
    h.width = w, h.height = ht, h.channels = c;
    h.sixteen_bit = stbi_is_16_bit_from_memory(bytes, len) != 0;
    return h;
}

DecodedImage decode_image(const uint8_t* bytes, size_t size, const std::string& where) {
    const int len = stb_length(size, where);
    int w = 0, h = 0, c = 0;
    STF_CHECK(stbi_info_from_memory(bytes, len, &w, &h, &c) == 1,
              "cannot read " << where << " as an image: " << stb_reason());
    const int want = c <= 2 ? 1 : 3;
    unsigned char* pixels = stbi_load_from_memory(bytes, len, &w, &h, &c, want);
    STF_CHECK(pixels != nullptr, "cannot decode " << where << ", a corrupt image: " << stb_reason());
    DecodedImage img;
    img.channels = want;
    img.height = h;
    img.width = w;
    img.chw.resize(static_cast<size_t>(want) * h * w);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < want; ++ch)
                img.chw[(static_cast<size_t>(ch) * h + y) * w + x] = pixels[(static_cast<size_t>(y) * w + x) * want + ch];
    stbi_image_free(pixels);
    return img;
}

DecodedImage read_image(const std::string& path) {
    // Only regular files: a FIFO or device would block the read.
    std::error_code ec;
    STF_CHECK(fs::is_regular_file(path, ec), "read_image: '" << path << "' is not a regular file");
    std::ifstream in(path, std::ios::binary);
    STF_CHECK(in, "read_image: cannot open '" << path << "'");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    STF_CHECK(!in.bad(), "read_image: cannot read '" << path << "'");
    return decode_image(bytes.data(), bytes.size(), "'" + path + "'");
}

}  // namespace stf::data
