#include "train/sigma_bands.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace stf::train {

// ---- SigmaBands ------------------------------------------------------------------------------------

int SigmaBands::band(double sigma) {
    int b = 0;
    while (b < 3 && sigma >= kEdges[b]) ++b;
    return b;
}

void SigmaBands::add(const std::vector<double>& sigma, const std::vector<double>& loss, const std::vector<double>& ess) {
    for (size_t i = 0; i < sigma.size(); ++i) {
        const int b = band(sigma[i]);
        count[b] += 1;
        loss_sum[b] += loss[i];
        loss_sq[b] += loss[i] * loss[i];
        if (!ess.empty()) ess_sum[b] += ess[i], ess_count[b] += 1;
    }
}

double SigmaBands::loss_mean(int b) const { return count[b] ? loss_sum[b] / count[b] : NAN; }

double SigmaBands::loss_var(int b) const {
    if (count[b] < 2) return NAN;
    const double m = loss_mean(b);
    return std::max(0.0, (loss_sq[b] - count[b] * m * m) / (count[b] - 1));
}

double SigmaBands::ess_mean(int b) const { return ess_count[b] ? ess_sum[b] / ess_count[b] : NAN; }

double SigmaBands::total_loss() const {
    double s = 0;
    for (int b = 0; b < kBands; ++b) s += loss_sum[b];
    return s;
}

double SigmaBands::total_count() const {
    double s = 0;
    for (int b = 0; b < kBands; ++b) s += count[b];
    return s;
}

// ---- SigmaBandSums ---------------------------------------------------------------------------------

// The rows of sum_: what is summed plainly (SigmaBands' fields but loss_sq, which comes from m2_).
enum Row { kCount, kLossSum, kEssSum, kEssCount, kRows };

void SigmaBandSums::allocate(const Tensor& like) {
    const DType dtype = like.dtype();
    const Device device = like.device();
    sum_ = ops::zeros({kRows, SigmaBands::kBands}, dtype, device);
    sum_low_ = ops::zeros({kRows, SigmaBands::kBands}, dtype, device);
    mean_ = ops::zeros({SigmaBands::kBands}, dtype, device);
    m2_ = ops::zeros({SigmaBands::kBands}, dtype, device);
    m2_low_ = ops::zeros({SigmaBands::kBands}, dtype, device);
    edges_ = ops::from_vector({SigmaBands::kEdges[0], SigmaBands::kEdges[1], SigmaBands::kEdges[2]}, {3, 1}, dtype, device);
    band_ids_ = ops::from_vector({0, 1, 2, 3}, {SigmaBands::kBands, 1}, dtype, device);
    zero_ = ops::zeros({1}, dtype, device);
    one_ = ops::ones({1}, dtype, device);
}

// Kahan's compensated sum += x in place, low holding what sum's rounding lost: y = x - low;
// t = sum + y; low = (t - sum) - y; sum = t. Every term here is >= 0 or not finite; a non-finite sum
// stays non-finite (an infinite one turns NaN from the next round on, through low), which is all the
// divergence check needs.
static void kahan_add_(Tensor& sum, Tensor& low, const Tensor& x) {
    const Tensor y = ops::sub(x, low);
    const Tensor t = ops::add(sum, y);
    ops::copy_(low, ops::sub(ops::sub(t, sum), y));
    ops::copy_(sum, t);
}

void SigmaBandSums::add(const Tensor& sigma_in, const Tensor& loss_given, const Tensor& ess_in) {
    // bf16 is a storage dtype (tensor/ops.h): its sums run in float32.
    const Tensor loss_in = loss_given.dtype() == DType::BF16 ? ops::to(loss_given, DType::F32) : loss_given;
    STF_CHECK(loss_in.ndim() == 1 && sigma_in.shape() == loss_in.shape() &&
                  (!ess_in.defined() || ess_in.shape() == loss_in.shape()),
              "SigmaBandSums::add: sigma, loss and ess must be [b] alike, got " << describe(sigma_in) << ", "
                                                                                 << describe(loss_in)
                                                                                 << (ess_in.defined() ? ", " + describe(ess_in) : ""));
    if (!sum_.defined()) allocate(loss_in);
    STF_CHECK(loss_in.device() == sum_.device() && loss_in.dtype() == sum_.dtype(),
              "SigmaBandSums::add: the losses " << describe(loss_in) << " are not on the device and in the dtype of "
                                                << "the earlier rounds (" << describe(sum_) << ")");
    const int64_t b = loss_in.size(0);
    if (b == 0) return;
    const DType dtype = sum_.dtype();
    const int64_t bands = SigmaBands::kBands;
    const Tensor sigma = ops::reshape(ops::to(sigma_in, dtype), {1, b});
    const Tensor loss = ops::reshape(loss_in, {1, b});

    // band = the number of edges sigma reaches, as (sigma > e) + (sigma == e): NaN reaches none.
    const Tensor reached = ops::add(ops::binary(BinaryOp::Gt, sigma, edges_), ops::binary(BinaryOp::Eq, sigma, edges_));
    const Tensor band = ops::sum(reached, {0}, true);                   // [1, b]
    const Tensor member = ops::binary(BinaryOp::Eq, band, band_ids_);  // [bands, b]: 1 or 0
    // where, never a product with member: a NaN loss must stay in its own band, as the host's sums keep it.
    auto band_sums = [&](const Tensor& values /* [rows, b] or [rows, bands, b] */, int64_t rows) {
        return ops::sum(ops::where(ops::reshape(member, {1, bands, b}), ops::reshape(values, {rows, -1, b}), zero_), {2});
    };

    const Tensor ones = ops::ones({1, b}, dtype, sum_.device());
    const Tensor ess = ess_in.defined() ? ops::reshape(ops::to(ess_in, dtype), {1, b}) : ops::zeros({1, b}, dtype, sum_.device());
    const Tensor round = band_sums(ops::cat({ones, loss, ess, ess_in.defined() ? ones : ess}, 0), kRows);  // [rows, bands]

    // The loss's squared deviations, merged as Chan, Golub & LeVeque's parallel variance: the round's
    // own M2 about its band means, plus delta^2 n n_r / (n + n_r) for the shift between the means. Sums
    // of l^2 would cancel catastrophically in float32 when a band's losses spread little around a large
    // mean (tiny networks: mean 1,300, standard deviation 9).
    const Tensor n_before = ops::narrow(sum_, 0, kCount, 1);                          // [1, bands]
    const Tensor n_round = ops::narrow(round, 0, kCount, 1);
    const Tensor mean_round = ops::div(ops::narrow(round, 0, kLossSum, 1), ops::binary(BinaryOp::Maximum, n_round, one_));
    const Tensor deviation = ops::sub(loss, ops::reshape(mean_round, {bands, 1}));    // [bands, b]
    const Tensor m2_round = ops::reshape(band_sums(ops::mul(deviation, deviation), 1), {bands});
    const Tensor weight = ops::reshape(
        ops::div(n_round, ops::binary(BinaryOp::Maximum, ops::add(n_before, n_round), one_)), {bands});  // n_r / n'
    const Tensor delta = ops::sub(ops::reshape(mean_round, {bands}), mean_);
    const Tensor shift = ops::mul(ops::mul(ops::mul(delta, delta), ops::reshape(n_before, {bands})), weight);
    kahan_add_(m2_, m2_low_, ops::add(m2_round, shift));
    ops::copy_(mean_, ops::add(mean_, ops::mul(delta, weight)));
    kahan_add_(sum_, sum_low_, round);
}

SigmaBands SigmaBandSums::read_and_reset() {
    SigmaBands bands;
    if (!sum_.defined()) return bands;
    // The tick's one read from the device.
    const std::vector<double> v = ops::cat({ops::reshape(sum_, {-1}), m2_}, 0).to_vector();
    const int64_t n = SigmaBands::kBands;
    double* fields[kRows] = {bands.count, bands.loss_sum, bands.ess_sum, bands.ess_count};
    for (int f = 0; f < kRows; ++f)
        for (int b = 0; b < n; ++b) fields[f][b] = v[static_cast<size_t>(f * n + b)];
    // loss_sq as the host sums it, rebuilt in float64 from the deviations: M2 + n mean^2. The host's
    // variance (loss_sq - n mean^2) / (n - 1) then cancels in float64, not float32.
    for (int b = 0; b < n; ++b) {
        const double m2 = v[static_cast<size_t>(kRows * n + b)];
        bands.loss_sq[b] = bands.count[b] ? m2 + bands.loss_sum[b] * bands.loss_sum[b] / bands.count[b] : 0;
    }
    for (Tensor* t : {&sum_, &sum_low_, &mean_, &m2_, &m2_low_}) ops::copy_(*t, zero_);
    return bands;
}

}  // namespace stf::train
