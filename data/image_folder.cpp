#include "data/image_folder.h"

#include <algorithm>
#include <filesystem>

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

DecodedImage read_image(const std::string& path) {
    int w = 0, h = 0, c = 0;
    STF_CHECK(stbi_info(path.c_str(), &w, &h, &c) == 1,
              "read_image: cannot read '" << path << "' as an image: " << stbi_failure_reason());
    const int want = c <= 2 ? 1 : 3;
    unsigned char* pixels = stbi_load(path.c_str(), &w, &h, &c, want);
    STF_CHECK(pixels != nullptr, "read_image: cannot decode '" << path << "': " << stbi_failure_reason());
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

}  // namespace stf::data
