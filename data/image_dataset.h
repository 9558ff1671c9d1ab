// EDM's image datasets (training/dataset.py ImageFolderDataset, written by its dataset_tool.py): PNG files
// in a ZIP archive or in a directory tree, taken in the sorted order of their paths, with class labels in a
// `dataset.json` at the root holding {"labels": [[path, class], ...]} or {"labels": null}.
// EDM's dataset_tool stores the archive uncompressed and names image k "KKKKK/imgKKKKKKKK.png" (k with 8
// digits, the directory its first 5); any names and either ZIP method are read here.
#pragma once
#include <string>

#include "data/dataset.h"

namespace stf::data {

// Most classes a dataset.json may use (labels 0 .. kMaxClasses - 1): a class becomes one input of the
// network's label embedding, and ImageNet-21k, the largest labelled set in use, has 21,841.
inline constexpr int kMaxClasses = 1 << 16;

// True when the file starts with a ZIP signature (a local file header, or the end record of an empty archive).
bool is_zip_file(const std::string& path);
// True when the directory holds a dataset.json or a .png file anywhere below it.
bool is_image_folder(const std::string& dir);

// Reads every image into memory, decoding the PNGs in parallel (OpenMP). All images must share one size
// and 1 (grey) or 3 (RGB) channels of 8 bits. Throws stf::Error naming the archive or folder and the
// file inside it for: not a ZIP, no PNG images, an image that is not a PNG or of another size, channel
// count or bit depth, other image formats beside the PNGs, a dataset.json that is not
// {"labels": null | [[path, class], ...]}, a label naming a file the dataset does not hold, an image
// without a label, a class outside 0 .. kMaxClasses - 1, and sizes beyond what the file can hold.
ImageDataset load_image_zip(const std::string& path);
ImageDataset load_image_folder(const std::string& dir);

// Writes images as EDM's dataset_tool.py does: uncompressed PNGs named KKKKK/imgKKKKKKKK.png and a
// dataset.json with their labels (null when the dataset has none); x-flipped images are not written.
// A path ending in .zip gives an uncompressed (stored) ZIP archive, written to a temporary file and renamed;
// anything else a directory, which must not exist or be empty.
void write_image_dataset(const std::string& path, const ImageDataset& images);

}  // namespace stf::data
