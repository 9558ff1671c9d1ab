// ./dataset_tool: writes any dataset stf reads (CIFAR-10 binary, IDX, EDM's ZIP or PNG folder) in EDM's
// dataset_tool.py layout, a ZIP or folder of PNGs with a dataset.json, so EDM's and STF's Python code, and
// stf itself, read the same images and labels.
#include <cstdio>

#include "apps/common/flags.h"
#include "data/dataset.h"
#include "data/image_dataset.h"

using namespace stf;

static const char* kUsage = R"(usage: dataset_tool --source PATH --dest OUT.zip|DIR [options]

Converts a dataset to EDM's dataset format (what EDM's dataset_tool.py writes and train.py --data reads):
uncompressed PNGs named 00000/img00000000.png, 00000/img00000001.png, ... and a dataset.json with their
class labels ({"labels": [[name, class], ...]}, null when the source has none).

  --source PATH      anything train_cifar --data reads: a CIFAR-10 binary directory (cifar-10-batches-bin),
                     IDX images (.gz or not, labels from the file beside them), an EDM ZIP or PNG folder
  --dest PATH        a .zip (stored, as EDM writes it) or a directory that does not exist or is empty
  --max-images N     only the first N images (default: all)
  --res R            pad smaller images with zeros to R x R, centred (default 0: keep their size; EDM's
                     networks need a power of two, e.g. --res 32 for 28x28 MNIST)
)";

int main(int argc, char** argv) {
    return apps::run_program("dataset_tool", argc, argv, kUsage, [&](apps::Flags& f) {
        std::string source = f.str("source", ""), dest = f.str("dest", "");
        int64_t max_images = f.integer("max-images", 0), res = f.integer("res", 0);
        f.check_all_used();
        STF_CHECK(!source.empty() && !dest.empty(), "give --source PATH and --dest OUT.zip|DIR");
        STF_CHECK(max_images >= 0 && res >= 0, "--max-images and --res must not be negative");
        data::ImageDataset d = data::ImageDataset::load(source, res);
        if (max_images > 0) d = d.subset(max_images);
        std::printf("read %s\n", d.source().c_str());
        data::write_image_dataset(dest, d);
        std::printf("wrote %s: %lld images %lldx%lldx%lld, %s\n", dest.c_str(), (long long)d.size(),
                    (long long)d.channels(), (long long)d.height(), (long long)d.width(),
                    d.has_labels() ? ("labels 0.." + std::to_string(d.num_classes() - 1)).c_str() : "no labels");
    });
}
