// Training images: CIFAR-10 binary batches, IDX files (MNIST, Fashion-MNIST) and EDM's PNG datasets (a ZIP
// or a folder, data/image_dataset.h), held as uint8 [N, C, H, W] with int labels. data/sampler.h walks them
// epoch by epoch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace stf::data {

class ImageDataset {
public:
    ImageDataset() = default;
    // pixels holds n * channels * height * width bytes (NCHW); labels holds n entries or none.
    ImageDataset(std::vector<uint8_t> pixels, std::vector<int> labels, int64_t n, int64_t channels, int64_t height,
                 int64_t width, std::string source);

    // Loads, detecting the format from what `path` is:
    //  - a directory holding data_batch_1.bin .. data_batch_5.bin (CIFAR-10 binary: records of one label
    //    byte and 3072 bytes CHW), or a directory whose cifar-10-batches-bin/ does;
    //  - a CIFAR-10 batch file itself (*.bin, a whole number of 3073-byte records);
    //  - an IDX image file (magic 0x00000803), gzipped or not, with its labels read from the file beside
    //    it when present (train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz]);
    //  - a directory holding IDX image files (train-images-idx3-ubyte[.gz] preferred);
    //  - a ZIP archive (by its signature or a .zip name) or a directory of PNG images in EDM's dataset_tool
    //    layout, labels from its dataset.json (data/image_dataset.h).
    // Images smaller than pad_to x pad_to are padded with zeros to that size, centred (28x28 IDX -> 32x32,
    // 2 pixels each side); larger ones are kept as they are; 0 turns padding off.
    // max_images > 0 keeps only the first max_images images, taken before padding.
    // Throws stf::Error naming the file for missing paths, unknown contents, bad magic and sizes.
    static ImageDataset load(const std::string& path, int64_t pad_to = 32, int64_t max_images = 0);
    // Where Debian's dataset-fashion-mnist package puts its files.
    static std::string default_fashion_mnist_path();
    // The held-out split that goes with a training set at `path` (a directory, or a file inside one):
    // t10k-images-idx3-ubyte[.gz] for IDX, test_batch.bin for CIFAR-10 (there or in cifar-10-batches-bin/).
    // "" when there is none.
    static std::string test_split_path(const std::string& path);

    // Images training sees: the stored ones, and with x-flips on as many mirrored ones after them.
    int64_t size() const { return xflip_ ? 2 * n_ : n_; }
    int64_t stored_size() const { return n_; }
    // EDM's --xflip: index i >= stored_size() is stored image i - stored_size() mirrored left to right, with
    // its label. Nothing is copied: batch() mirrors as it converts.
    void set_xflip(bool on) { xflip_ = on; }
    bool xflip() const { return xflip_; }
    int64_t channels() const { return c_; }
    int64_t height() const { return h_; }
    int64_t width() const { return w_; }
    int64_t image_bytes() const { return c_ * h_ * w_; }
    bool has_labels() const { return !labels_.empty(); }
    int num_classes() const { return num_classes_; }  // largest label + 1; 0 without labels
    const uint8_t* image(int64_t i) const;             // CHW bytes of stored image i (i < stored_size())
    int label(int64_t i) const;                         // 0 without labels; i < size()
    const std::vector<uint8_t>& pixels() const { return pixels_; }
    const std::vector<int>& labels() const { return labels_; }
    // What was loaded and from where, e.g. "IDX /usr/share/.../train-images-idx3-ubyte.gz: 60000 x 1x32x32".
    const std::string& source() const { return source_; }

    // The images at `indices` (0 .. size() - 1, x-flips included) as float32 [B, C, H, W] scaled to [-1, 1]
    // (x / 127.5 - 1), on `device`.
    Tensor batch(const std::vector<int64_t>& indices, Device device = Device::cpu()) const;
    // Their labels one-hot as float32 [B, label_dim] on `device` (all zeros without labels).
    Tensor label_batch(const std::vector<int64_t>& indices, int64_t label_dim, Device device = Device::cpu()) const;
    // The first min(max_images, stored_size()) stored images, x-flips off (EDM applies max_size before xflip).
    ImageDataset subset(int64_t max_images) const;

private:
    std::vector<uint8_t> pixels_;
    std::vector<int> labels_;
    int64_t n_ = 0, c_ = 0, h_ = 0, w_ = 0;
    int num_classes_ = 0;
    bool xflip_ = false;
    std::string source_;
};

// Labels alone, one int per image: an IDX1 label file (magic 0x00000801, gzipped or not), or a CIFAR-10
// batch file, whose label is the first byte of each 3073-byte record. Throws stf::Error naming the file for
// a missing file, bad magic, truncation or trailing data, a size that is not whole records, or an empty file.
std::vector<int> load_labels(const std::string& path);

}  // namespace stf::data
