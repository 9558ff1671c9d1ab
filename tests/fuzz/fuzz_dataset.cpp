// libFuzzer harness: the dataset readers on arbitrary bytes. The input's first byte picks the reader (an
// IDX image file loaded with or without padding and --max-images, a CIFAR-10 batch, an IDX1 label file,
// an EDM dataset ZIP read directly or through the path dispatch with padding and --max-images); the rest is
// the file, gzipped or not (the ZIP: its PNGs and dataset.json, stored or deflated). Every image of a loaded dataset is read, so a size that passed
// the checks but does not match the bytes shows up under ASan. See docs/contributing.md (Fuzzing).
#include <cstdint>
#include <cstdlib>

#include "data/dataset.h"
#include "data/image_dataset.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

void touch(const stf::data::ImageDataset& d) {
    unsigned sum = 0;
    for (int64_t i = 0; i < d.size(); ++i) {
        const uint8_t* p = d.image(i);
        sum += p[0] + p[d.image_bytes() - 1] + static_cast<unsigned>(d.label(i));
    }
    if (sum == 0xdeadbeef) std::abort();  // keeps the reads
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0] % 7;
    ++data, --size;
    try {
        using stf::data::ImageDataset;
        switch (mode) {
            case 0: touch(ImageDataset::load(stf::fuzz::write_input(data, size, "train-images-idx3-ubyte"), 0)); break;
            case 1: touch(ImageDataset::load(stf::fuzz::write_input(data, size, "train-images-idx3-ubyte"), 32, 3)); break;
            case 2: touch(ImageDataset::load(stf::fuzz::write_input(data, size, "data_batch_1.bin"), 32)); break;
            case 3: (void)stf::data::load_labels(stf::fuzz::write_input(data, size, "other-labels-idx1-ubyte")); break;
            case 4: touch(ImageDataset::load(stf::fuzz::write_input(data, size, "data_batch_1.bin.gz"), 0, 2)); break;
            case 5: touch(stf::data::load_image_zip(stf::fuzz::write_input(data, size, "dataset.zip"))); break;
            case 6: touch(ImageDataset::load(stf::fuzz::write_input(data, size, "images.zip"), 32, 3)); break;
        }
    } catch (const stf::Error&) {
    }
    return 0;
}
