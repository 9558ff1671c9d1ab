#include "metrics/snapshot_fid.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "report/plot.h"

namespace stf::metrics {

int64_t fid_metric_images(const std::string& metric) {
    const std::string error = "--metrics: '" + metric + "' is not a FID metric (expected fid50k, fid10k or fidN, N images >= 2)";
    STF_CHECK(metric.size() > 3 && metric.compare(0, 3, "fid") == 0, error);
    std::string count = metric.substr(3);
    int64_t scale = 1;
    if (count.back() == 'k') scale = 1000, count.pop_back();
    STF_CHECK(!count.empty() && count.size() <= 9 && count.find_first_not_of("0123456789") == std::string::npos, error);
    const int64_t images = std::stoll(count) * scale;
    STF_CHECK(images >= 2, error);
    return images;
}

SnapshotFid::SnapshotFid(const std::string& metric, const std::string& reference_path,
                         const std::string& inception_path, Device device, const std::string& outdir, int64_t batch)
    : metric_(metric),
      outdir_(outdir),
      images_(fid_metric_images(metric)),
      batch_(batch),
      device_(device),
      inception_(InceptionV3::load(inception_path, device)),
      reference_(load_fid_reference(reference_path)) {
    STF_CHECK(batch >= 1, "--fid-batch must be positive, got " << batch);
    STF_CHECK(reference_.dim == InceptionV3::kFeatures, "--fid-ref '" << reference_path << "' has statistics of dimension "
                                                                      << reference_.dim << ", Inception's are "
                                                                      << InceptionV3::kFeatures);
}

std::map<std::string, double> SnapshotFid::operator()(const nn::Precond& ema, double kimg) {
    auto start = std::chrono::steady_clock::now();
    const double fid = network_fid(ema, device_, inception_, reference_, images_, batch_);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s %.4f at kimg %.1f (%.0f s)\n", metric_.c_str(), fid, kimg, secs);
    std::fflush(stdout);
    kimg_.push_back(kimg);
    fid_.push_back(fid);
    report::write_line_plot_png((std::filesystem::path(outdir_) / "fid.png").string(),
                                {{metric_, kimg_, fid_, {214, 39, 40}}},
                                report::PlotOptions{.title = metric_ + " of the EMA network (Heun, 18 steps)",
                                                    .x_label = "kimg", .y_label = "FID", .log_y = true});
    return {{metric_, fid}};
}

}  // namespace stf::metrics
