// Images and arrays on disk: PNG (stb_image_write), image grids, sample folders laid out like EDM's
// generate.py (so `fid.py calc --images=DIR` reads them), and .npy arrays (NPY format 1.0).
// Every writer writes a temporary file beside the target and renames it into place.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace stf::data {

// hwc: h * w * c bytes, rows top to bottom; c is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
void write_png(const std::string& path, const uint8_t* hwc, int h, int w, int c);

// One image [C, H, W] (any device, float32/float64/bfloat16) in [-1, 1] to HWC bytes the way EDM does:
// x * 127.5 + 128 in float32, clipped to [0, 255], truncated (NaN gives 0).
std::vector<uint8_t> to_uint8_hwc(const Tensor& image_chw);
// The same for a batch [N, C, H, W]: N images of H * W * C bytes one after another.
std::vector<uint8_t> to_uint8_nhwc(const Tensor& images);

// images [N, C, H, W] in [-1, 1] tiled row by row into one PNG, `cols` per row (0: ceil(sqrt(N))),
// no spacing; cells past the last image are black.
void write_image_grid(const std::string& path, const Tensor& images, int64_t cols = 0);

// One PNG per image named by its seed, as EDM's generate.py --subdirs lays them out:
// dir/000000/000123.png, dir/001000/001234.png (subdirectory seed - seed % 1000, both 6-digit zero padded);
// with subdirs false, all directly in dir. Creates directories as needed.
void write_images_to_dir(const std::string& dir, const Tensor& images, const std::vector<int64_t>& seeds,
                         bool subdirs = true);

// .npy (format 1.0): '<f4' or '<f8' (bfloat16 is written as float32), C order, header padded with spaces
// and ended by '\n' so the data starts at a multiple of 64 bytes.
void write_npy(const std::string& path, const Tensor& t);
// Reads '<f4' or '<f8' arrays with fortran_order False (format 1.0, 2.0 or 3.0) into a CPU tensor.
// Throws stf::Error naming the file for bad magic, other dtypes, Fortran order, truncation.
Tensor read_npy(const std::string& path);
// The same on bytes in memory (an .npz member); `name` stands for the file in errors. And the bytes
// write_npy writes (`name` for errors).
Tensor parse_npy(const std::string& bytes, const std::string& name);
std::string npy_bytes(const Tensor& t, const std::string& name);

// Writes bytes to path through a temporary file in the same directory and a rename.
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace stf::data
