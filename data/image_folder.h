// Image files and folders, and the one place images are decoded (stb_image) for every reader: EDM's
// fid.py image folders (its dataset.ImageFolderDataset: every image file under a directory, at any depth,
// in the order of their sorted relative paths, e.g. the tree ./sample --outdir writes,
// DIR/000000/000000.png, ...) and EDM's training datasets (data/image_dataset.h: a ZIP or folder of PNGs
// with a dataset.json). PNG, and JPEG, BMP, TGA: what stb_image decodes.
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

// An encoded image's header, read without decoding. ok is false when the bytes are no image stb_image
// reads, with the reason in `error`.
struct ImageHeader {
    bool ok = false;
    int64_t width = 0, height = 0, channels = 0;  // channels as stored: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    bool sixteen_bit = false;                     // a 16-bit PNG
    std::string error;
};
ImageHeader read_image_header(const uint8_t* bytes, size_t size);

// Decodes an image held in memory as read_image does; `where` names it in the error (e.g. "'a.png' in
// 'data.zip'").
DecodedImage decode_image(const uint8_t* bytes, size_t size, const std::string& where);

}  // namespace stf::data
