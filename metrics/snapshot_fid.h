// FID during training (train_cifar --metrics fid50k --fid-ref ref.npz): at each network snapshot, the EMA
// network's FID over `images` samples (EDM's Heun sampler, 18 steps, seeds 0 .. images-1, on the training
// device), returned for stats.jsonl under the metric's name and drawn into fid.png in the run directory,
// as EDM2's training reports it. The Inception weights and the reference are loaded when this is made,
// so a bad file fails before training starts.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "metrics/fid.h"

namespace stf::metrics {

// "fid50k" -> 50000, "fid10k" -> 10000, "fid1000" -> 1000 (EDM's metric names); throws stf::Error
// naming the text for anything else or fewer than 2 images.
int64_t fid_metric_images(const std::string& metric);

class SnapshotFid {
public:
    SnapshotFid(const std::string& metric, const std::string& reference_path, const std::string& inception_path,
                Device device, const std::string& outdir, int64_t batch);
    // {metric name: FID}; appends to fid.png.
    std::map<std::string, double> operator()(const nn::Precond& ema, double kimg);

private:
    std::string metric_, outdir_;
    int64_t images_, batch_;
    Device device_;
    InceptionV3 inception_;
    FeatureStats reference_;
    std::vector<double> kimg_, fid_;
};

}  // namespace stf::metrics
