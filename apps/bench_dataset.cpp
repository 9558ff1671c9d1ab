// bench_dataset: how long EDM's dataset format takes to load. Writes a ZIP of random images in
// dataset_tool's layout (uncompressed PNGs, stored entries, labels), then times ImageDataset::load on it.
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/common/flags.h"
#include "cuda/philox.h"
#include "data/dataset.h"
#include "data/image_dataset.h"

using namespace stf;

static const char* kUsage = R"(usage: bench_dataset [options]

Writes --images random images of --res x --res x --channels as EDM's dataset_tool would (a ZIP of
uncompressed PNGs with a dataset.json of 10 classes), then loads it --reps times with the reader
train_cifar --data uses (PNG decoding in parallel over OpenMP's threads) and prints the times.

  --images N       (default 50000, CIFAR-10's training set)
  --res R          (default 32)
  --channels C     1 or 3 (default 3)
  --reps N         loads to time (default 3)
  --zip FILE       where the archive goes (default: a temporary file, removed at the end); an existing
                   FILE is loaded as it is, not rewritten
)";

int main(int argc, char** argv) {
    return apps::run_program("bench_dataset", argc, argv, kUsage, [&](apps::Flags& f) {
        const int64_t n = f.integer("images", 50000), res = f.integer("res", 32), c = f.integer("channels", 3);
        const int reps = static_cast<int>(f.integer("reps", 3));
        std::string zip = f.str("zip", "");
        f.check_all_used();
        STF_CHECK(n >= 1 && res >= 1 && (c == 1 || c == 3) && reps >= 1,
                  "--images, --res and --reps must be positive and --channels 1 or 3");
        const bool temporary = zip.empty();
        if (temporary)
            zip = (std::filesystem::temp_directory_path() / ("stf_bench_dataset_" + std::to_string(::getpid()) + ".zip"))
                      .string();
        using clock = std::chrono::steady_clock;
        if (!std::filesystem::exists(zip)) {
            std::vector<uint8_t> px(static_cast<size_t>(n * c * res * res));
            std::vector<int> labels(static_cast<size_t>(n));
            for (size_t i = 0; i < px.size(); i += 4) {
                philox::Words w = philox::philox4x32_10(i / 4, 0, 1234);
                for (size_t k = 0; k < 4 && i + k < px.size(); ++k) px[i + k] = static_cast<uint8_t>(w.w[k]);
            }
            for (int64_t k = 0; k < n; ++k) labels[static_cast<size_t>(k)] = static_cast<int>(k % 10);
            data::ImageDataset d(std::move(px), std::move(labels), n, c, res, res, "random");
            auto start = clock::now();
            data::write_image_dataset(zip, d);
            std::printf("wrote %s (%.1f MB) in %.2f s\n", zip.c_str(), std::filesystem::file_size(zip) / 1e6,
                        std::chrono::duration<double>(clock::now() - start).count());
        }
        std::printf("loading with %d OpenMP threads\n", omp_get_max_threads());
        double best = 1e30;
        for (int r = 0; r < reps; ++r) {
            auto start = clock::now();
            data::ImageDataset d = data::ImageDataset::load(zip, 0);
            double secs = std::chrono::duration<double>(clock::now() - start).count();
            best = std::min(best, secs);
            std::printf("load %d: %.3f s, %.0f img/s (%s)\n", r + 1, secs, d.size() / secs, d.source().c_str());
        }
        std::printf("best: %.3f s\n", best);
        if (temporary) std::filesystem::remove(zip);
    });
}
