// fid: Fréchet Inception Distance as EDM's fid.py computes it, without Python (metrics/fid.h).
//   fid ref  --data DATA --dest ref.npz          reference statistics of a dataset
//   fid calc --images DIR|samples.npy --ref ref.npz   FID of generated images against them
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/common/flags.h"
#include "cuda/runtime.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/image_io.h"
#include "metrics/fid.h"
#include "report/progress.h"
#include "tensor/ops.h"
#include "train/precision.h"

using namespace stf;

namespace {

const char* kUsage = R"(usage: fid ref  --data DATA --dest ref.npz [options]
       fid calc --images DIR|samples.npy --ref ref.npz [--num 50000] [options]

ref   Inception statistics (mu, sigma in float64, EDM's .npz format) of every image of a dataset, read
      as train_cifar's --data reads it: EDM's dataset ZIP or a folder in its layout (PNGs, dataset.json),
      a CIFAR-10 binary directory or batch file, IDX files (padded to 32x32, as train_cifar trains on them).
calc  FID of generated images against reference statistics (yours, or EDM's fid-refs/*.npz): a folder
      tree of PNGs (as ./sample --outdir writes; sorted by path) or a .npy in [-1, 1] (./sample
      --out-npy), converted to 8-bit pixels as the PNGs would hold them. Uses the first --num images
      (default 50000) and fails with fewer, as EDM's fid.py does. Prints the FID.

options
  --net FILE      Inception weights in stf's format (default inception-2015-12-05.safetensors): convert
                  EDM's inception-2015-12-05.pkl or pytorch-fid's pt_inception-2015-12-05-6726825d.pth
                  once with tools/inception_to_safetensors.py (docs/fid.md says where to get them)
  --batch N       images per network call (default 250 on CUDA, 8 on the CPU)
  --device cpu|cuda  (default cuda when a GPU is usable)
  --precision fp32|tf32  network arithmetic (default fp32, as the reference implementations)
)";

Tensor dataset_pixels(const data::ImageDataset& ds, int64_t start, int64_t n) {
    const int64_t per = ds.image_bytes();
    std::vector<double> v(static_cast<size_t>(n * per));
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* img = ds.image(start + i);
        for (int64_t j = 0; j < per; ++j) v[i * per + j] = img[j];
    }
    return ops::from_vector(v, {n, ds.channels(), ds.height(), ds.width()});
}

Tensor folder_pixels(const std::vector<std::string>& files, int64_t start, int64_t n) {
    std::vector<double> v;
    int64_t c = 0, h = 0, w = 0;
    for (int64_t i = start; i < start + n; ++i) {
        data::DecodedImage img = data::read_image(files[i]);
        if (i == start) c = img.channels, h = img.height, w = img.width;
        STF_CHECK(img.channels == c && img.height == h && img.width == w,
                  "fid: '" << files[i] << "' is " << img.channels << "x" << img.height << "x" << img.width << ", '"
                           << files[start] << "' " << c << "x" << h << "x" << w << ": all images must share one size");
        v.insert(v.end(), img.chw.begin(), img.chw.end());
    }
    return ops::from_vector(v, {n, c, h, w});
}

}  // namespace

int main(int argc, char** argv) {
    std::string command = argc >= 2 ? argv[1] : "";
    const bool known = command == "ref" || command == "calc";
    return apps::run_program("fid", known ? argc - 1 : argc, known ? argv + 1 : argv, kUsage, [&](apps::Flags& f) {
        STF_CHECK(known, "expected a command, ref or calc, as the first argument");
        std::string net_path = f.str("net", "inception-2015-12-05.safetensors");
        Device device = Device::parse(f.str("device", cuda::available() ? "cuda" : "cpu"));
        int64_t batch = f.integer("batch", device.is_cuda() ? 250 : 8);
        std::string precision = f.str("precision", "fp32");
        std::string data_path, dest, images, ref;
        int64_t num = 50000;
        if (command == "ref") {
            data_path = f.str("data", "");
            dest = f.str("dest", "");
        } else {
            images = f.str("images", "");
            ref = f.str("ref", "");
            num = f.integer("num", 50000);
        }
        f.check_all_used();
        STF_CHECK(batch >= 1, "--batch must be positive");
        STF_CHECK(precision == "fp32" || precision == "tf32", "--precision must be fp32 or tf32");
        STF_CHECK(!device.is_cuda() || cuda::available(),
                  "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                                : "stf was built without CUDA (use --device cpu)"));
        if (command == "ref") STF_CHECK(!data_path.empty() && !dest.empty(), "fid ref needs --data DATA and --dest FILE.npz");
        else STF_CHECK(!images.empty() && !ref.empty() && num >= 2, "fid calc needs --images, --ref and --num >= 2");
        STF_CHECK(std::filesystem::exists(net_path),
                  "Inception weights '" << net_path << "' not found: give --net FILE (convert EDM's "
                                           "inception-2015-12-05.pkl or pytorch-fid's .pth with "
                                           "tools/inception_to_safetensors.py; see docs/fid.md)");
        // Read the reference before the long part, so that a bad file fails at once.
        metrics::FeatureStats reference;
        if (command == "calc") reference = metrics::load_fid_reference(ref);

        std::string arithmetic = train::set_precision(precision, device);
        metrics::InceptionV3 net = metrics::InceptionV3::load(net_path, device);
        std::printf("Inception-v3 from %s on %s (%s)\n", net_path.c_str(), device.str().c_str(), arithmetic.c_str());

        int64_t count = 0;
        std::function<Tensor(int64_t, int64_t)> pixels;
        data::ImageDataset dataset;
        std::vector<std::string> files;
        Tensor npy;
        if (command == "ref") {
            dataset = data::ImageDataset::load(data_path);
            count = dataset.size();
            std::printf("%s\n", dataset.source().c_str());
            pixels = [&](int64_t s, int64_t n) { return dataset_pixels(dataset, s, n); };
        } else if (std::filesystem::is_directory(images)) {
            files = data::list_image_files(images);
            STF_CHECK(static_cast<int64_t>(files.size()) >= num,
                      "fid: found " << files.size() << " images in '" << images << "', but expected at least " << num
                                    << " (--num)");
            count = num;
            pixels = [&](int64_t s, int64_t n) { return folder_pixels(files, s, n); };
        } else {
            npy = data::read_npy(images);
            STF_CHECK(npy.ndim() == 4, "fid: '" << images << "' holds " << describe(npy) << ", expected [N, C, H, W]");
            STF_CHECK(npy.size(0) >= num, "fid: found " << npy.size(0) << " images in '" << images
                                                        << "', but expected at least " << num << " (--num)");
            count = num;
            pixels = [&](int64_t s, int64_t n) { return metrics::samples_to_pixels(ops::narrow(npy, 0, s, n)); };
        }
        std::printf("computing Inception statistics of %lld images\n", (long long)count);
        auto start = std::chrono::steady_clock::now();
        report::ProgressBar bar(count, "images");
        metrics::FeatureStats stats = metrics::inception_stats(net, count, batch, pixels, [&](int64_t d) { bar.update(d); });
        bar.finish();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("%.1f s, %.1f img/s\n", secs, static_cast<double>(count) / secs);
        if (command == "ref") {
            std::filesystem::path parent = std::filesystem::path(dest).parent_path();
            if (!parent.empty()) std::filesystem::create_directories(parent);
            metrics::save_fid_reference(dest, stats);
            std::printf("wrote %s\n", dest.c_str());
        } else {
            STF_CHECK(reference.dim == stats.dim, "fid: reference '" << ref << "' has dimension " << reference.dim
                                                                     << ", the network's features " << stats.dim);
            std::printf("FID: %.4f\n", metrics::frechet_distance(stats, reference));
        }
    });
}
