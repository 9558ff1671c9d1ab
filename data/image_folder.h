// Image folders as EDM's fid.py reads them (its dataset.ImageFolderDataset): every image file under a
// directory, at any depth, in the order of their sorted relative paths, e.g. the tree ./sample --outdir
// writes (DIR/000000/000000.png, ...). PNG (and JPEG, BMP, TGA: what stb_image decodes).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace stf::data {

// The image files under `dir` (.png .jpg .jpeg .bmp .tga, any case), sorted by path relative to `dir`.
// Throws stf::Error when `dir` is not a directory.
std::vector<std::string> list_image_files(const std::string& dir);

// One decoded image, bytes CHW: 1 channel for grey (and grey + alpha) files, 3 for colour (alpha dropped).
struct DecodedImage {
    int64_t channels = 0, height = 0, width = 0;
    std::vector<uint8_t> chw;
};
// Throws stf::Error naming the file when it cannot be read or decoded.
DecodedImage read_image(const std::string& path);

}  // namespace stf::data
