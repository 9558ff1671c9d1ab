// A tick's per-sample statistics split by noise level: the training loss (mean and variance, which
// shows how noisy each band's target is) and, with STF or kNN, the effective sample size of the
// reference weights. stats.jsonl's "loss_bands" and "ess" entries and the ess[...] part of a tick's
// log line come from here.
//
// SigmaBands holds a tick's sums on the host, in float64. SigmaBandSums builds them on the tensors'
// device without reading anything back: each round adds its per-band sums into two fixed buffers with
// tensor ops, and the host reads the buffers once per tick. A step then never waits for the GPU to
// hand over its losses, so the host can queue the next round while the GPU still runs this one.
//
// Precision: the buffers have the losses' dtype (float32 on a GPU, where there is no float64
// arithmetic). A round's band sums are float32 reductions over at most batch_gpu values; the rounds are
// added with Kahan's compensated summation, whose error stays about one float32 rounding of the tick's
// sum however many rounds a tick has (a plain float32 running sum loses up to rounds x eps). The
// variance is not taken from a sum of squares, which cancels catastrophically in float32 when losses
// spread little around a large mean: each round's squared deviations about its own band means are
// merged as in Chan, Golub & LeVeque's parallel algorithm, and read back as the sum of squares the host
// would have had (in float64). Band membership is exact: sigma >= 0.2 in float64 holds exactly when the
// float32 sigma >= float(0.2), the nearest float32 above 0.2.
#pragma once
#include <array>
#include <vector>

#include "tensor/tensor.h"

namespace stf::train {

// The noise-level bands of stats.jsonl's "loss_bands" and "ess" entries, in order.
inline constexpr std::array<const char*, 4> kSigmaBandNames = {"sigma<0.2", "0.2<=sigma<1", "1<=sigma<5", "sigma>=5"};

struct SigmaBands {
    static constexpr double kEdges[3] = {0.2, 1.0, 5.0};
    static constexpr int kBands = 4;
    // The fields in the order SigmaBandSums lays them out, each [kBands].
    double count[kBands] = {}, loss_sum[kBands] = {}, loss_sq[kBands] = {}, ess_sum[kBands] = {},
           ess_count[kBands] = {};

    // The band of sigma: the number of edges it reaches (NaN reaches none: band 0).
    static int band(double sigma);
    // One round's samples on the host (ess empty: no reference weights, as with DSM).
    void add(const std::vector<double>& sigma, const std::vector<double>& loss, const std::vector<double>& ess);
    // NaN marks a band that saw no samples this tick (JSON writes it as null).
    double loss_mean(int b) const;
    double loss_var(int b) const;
    double ess_mean(int b) const;
    // Every band's loss together: the tick's loss sum and number of samples.
    double total_loss() const;
    double total_count() const;
};

class SigmaBandSums {
public:
    // Adds one round: sigma, loss and (when defined) ess, each [b], on one device. Queues tensor ops
    // only; nothing is read back. The first call fixes the device and dtype (loss's; float32 for a bf16
    // loss) of the sums; sigma and ess are converted to that dtype.
    void add(const Tensor& sigma, const Tensor& loss, const Tensor& ess);
    // The sums since the last read (one read from the device), then zeroes them. All zeros before any add.
    SigmaBands read_and_reset();

private:
    void allocate(const Tensor& like);

    Tensor sum_, sum_low_;  // [4, kBands]: count, loss_sum, ess_sum, ess_count; and Kahan's low-order parts
    Tensor mean_;           // [kBands]: the running mean loss that m2_ is about
    Tensor m2_, m2_low_;    // [kBands]: the sum of squared deviations from mean_, and its low-order part
    Tensor edges_;          // [3, 1]: SigmaBands::kEdges
    Tensor band_ids_;       // [kBands, 1]: 0, 1, 2, 3
    Tensor zero_, one_;     // [1]
};

}  // namespace stf::train
