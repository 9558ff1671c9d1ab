#include "apps/common/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/common/image_io.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "cuda/runtime.h"
#include "diffusion/augment.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

namespace stf::apps {

using nlohmann::json;
namespace fs = std::filesystem;

// ---- options ---------------------------------------------------------------------------------------

std::string TrainOptions::to_json() const {
    json j = {{"data", data},         {"outdir", outdir},       {"max_images", max_images}, {"pad_to", pad_to},
              {"net", json::parse(net.to_json())},
              {"stf", stf},           {"rbatch", rbatch},       {"batch", batch},
              {"batch_gpu", batch_gpu}, {"duration_mimg", duration_mimg}, {"lr", lr},
              {"lr_rampup_mimg", lr_rampup_mimg}, {"ema_mimg", ema_mimg}, {"ema_rampup", ema_rampup},
              {"augment", augment},   {"seed", seed},           {"tick_kimg", tick_kimg},
              {"snap_ticks", snap_ticks}, {"dump_ticks", dump_ticks}, {"device", device}};
    return j.dump(2);
}

TrainOptions TrainOptions::from_json(const std::string& text) {
    TrainOptions o;
    try {
        json j = json::parse(text);
        o.data = j.at("data");
        o.outdir = j.at("outdir");
        o.max_images = j.at("max_images");
        o.pad_to = j.at("pad_to");
        o.net = nn::NetworkConfig::from_json(j.at("net").dump());
        o.stf = j.at("stf");
        o.rbatch = j.at("rbatch");
        o.batch = j.at("batch");
        o.batch_gpu = j.at("batch_gpu");
        o.duration_mimg = j.at("duration_mimg");
        o.lr = j.at("lr");
        o.lr_rampup_mimg = j.at("lr_rampup_mimg");
        o.ema_mimg = j.at("ema_mimg");
        o.ema_rampup = j.at("ema_rampup");
        o.augment = j.at("augment");
        o.seed = j.at("seed");
        o.tick_kimg = j.at("tick_kimg");
        o.snap_ticks = j.at("snap_ticks");
        o.dump_ticks = j.at("dump_ticks");
        o.device = j.at("device");
    } catch (const json::exception& e) {
        throw Error(std::string("training options: ") + e.what());
    }
    return o;
}

static void validate(const TrainOptions& o) {
    STF_CHECK(o.batch >= 1, "--batch must be positive, got " << o.batch);
    STF_CHECK(o.batch_gpu >= 1 && o.batch % o.batch_gpu == 0,
              "--batch-gpu " << o.batch_gpu << " must divide --batch " << o.batch);
    STF_CHECK(!o.stf || o.rbatch >= o.batch_gpu,
              "--rbatch " << o.rbatch << " is smaller than the per-round batch " << o.batch_gpu
                          << ": the reference batch must contain the training batch");
    STF_CHECK(o.duration_mimg > 0, "--duration must be positive");
    STF_CHECK(o.lr > 0, "--lr must be positive");
    STF_CHECK(o.augment >= 0 && o.augment <= 1, "--augment is a probability in [0, 1], got " << o.augment);
    STF_CHECK(o.tick_kimg > 0, "--tick must be positive");
    STF_CHECK(o.net.unet.dropout >= 0 && o.net.unet.dropout < 1, "--dropout must be in [0, 1)");
}

// ---- small helpers ---------------------------------------------------------------------------------

static std::string kimg_name(const char* prefix, double kimg) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s-%06lld.safetensors", prefix, static_cast<long long>(std::llround(kimg)));
    return buf;
}

static double peak_memory_gib(Device device) {
    if (device.is_cuda()) return static_cast<double>(cuda::allocator_stats().peak_allocated) / (1 << 30);
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1 << 20);  // kB -> GiB
    return 0;
}

class Log {
public:
    explicit Log(const fs::path& path) : file_(path, std::ios::app) {}
    void line(const std::string& text) {
        std::printf("%s\n", text.c_str());
        std::fflush(stdout);
        file_ << text << "\n";
        file_.flush();
    }

private:
    std::ofstream file_;
};

// Per-sample statistics split by noise level: the training loss (mean and variance, which shows how
// noisy each band's target is) and, with STF, the effective sample size of the reference weights.
struct SigmaBands {
    static constexpr double kEdges[3] = {0.2, 1.0, 5.0};
    static constexpr const char* kNames[4] = {"sigma<0.2", "0.2<=sigma<1", "1<=sigma<5", "sigma>=5"};
    double count[4] = {}, loss_sum[4] = {}, loss_sq[4] = {}, ess_sum[4] = {}, ess_count[4] = {};
    static int band(double sigma) {
        int b = 0;
        while (b < 3 && sigma >= kEdges[b]) ++b;
        return b;
    }
    void add(const std::vector<double>& sigma, const std::vector<double>& loss, const std::vector<double>& ess) {
        for (size_t i = 0; i < sigma.size(); ++i) {
            int b = band(sigma[i]);
            count[b] += 1;
            loss_sum[b] += loss[i];
            loss_sq[b] += loss[i] * loss[i];
            if (!ess.empty()) ess_sum[b] += ess[i], ess_count[b] += 1;
        }
    }
    // NaN marks a band that saw no samples this tick (JSON writes it as null).
    double loss_mean(int b) const { return count[b] ? loss_sum[b] / count[b] : NAN; }
    double loss_var(int b) const {
        if (count[b] < 2) return NAN;
        double m = loss_mean(b);
        return std::max(0.0, (loss_sq[b] - count[b] * m * m) / (count[b] - 1));
    }
    double ess_mean(int b) const { return ess_count[b] ? ess_sum[b] / ess_count[b] : NAN; }
};

// ---- the training state file -----------------------------------------------------------------------

struct Progress {
    int64_t step = 0, tick = 0;
    double cur_nimg = 0, tick_start_nimg = 0;
};

struct Rngs {
    Generator noise, dropout, augment;
};

static json rng_json(const Generator& g) { return json::array({g.seed(), g.offset()}); }
static void rng_from(Generator& g, const json& j) { g.set_state(j.at(0).get<uint64_t>(), j.at(1).get<uint64_t>()); }

static void save_state(const fs::path& path, const TrainOptions& o, const nn::Precond& net, const nn::Precond& ema,
                       const nn::Adam& adam, const Progress& p, const Rngs& rng, const InfiniteSampler& sampler) {
    nn::NamedTensors tensors;
    for (auto& [n, t] : net.state_dict()) tensors.emplace_back("net." + n, t);
    for (auto& [n, t] : ema.state_dict()) tensors.emplace_back("ema." + n, t);
    for (auto& [n, t] : adam.state()) tensors.emplace_back("adam." + n, t);
    json progress = {{"step", p.step},
                     {"tick", p.tick},
                     {"cur_nimg", p.cur_nimg},
                     {"tick_start_nimg", p.tick_start_nimg},
                     {"rng", {{"noise", rng_json(rng.noise)}, {"dropout", rng_json(rng.dropout)}, {"augment", rng_json(rng.augment)}}},
                     {"sampler", {sampler.state().epoch, sampler.state().position}}};
    nn::save_safetensors(path.string(), tensors,
                         {{"options", o.to_json()}, {"progress", progress.dump()}, {"config", o.net.to_json()},
                          {"format", "stf-training-state"}});
}

// Splits a training state back into its parts; the caller owns the networks and optimiser.
struct LoadedState {
    TrainOptions options;
    json progress;
    std::map<std::string, Tensor> net, ema;
    nn::NamedTensors adam;
};

static LoadedState load_state(const std::string& path) {
    nn::SafetensorsFile f = nn::load_safetensors(path);
    STF_CHECK(f.metadata.count("options") && f.metadata.count("progress"),
              "--resume " << path << " is not a training state (no options/progress metadata); network snapshots "
                                     "hold only weights");
    LoadedState s;
    s.options = TrainOptions::from_json(f.metadata.at("options"));
    s.progress = json::parse(f.metadata.at("progress"));
    for (auto& [n, t] : f.tensors) {
        if (n.rfind("net.", 0) == 0) s.net[n.substr(4)] = t;
        else if (n.rfind("ema.", 0) == 0) s.ema[n.substr(4)] = t;
        else if (n.rfind("adam.", 0) == 0) s.adam.emplace_back(n.substr(5), t);
    }
    return s;
}

// ---- training --------------------------------------------------------------------------------------

TrainSummary train(TrainOptions o) {
    LoadedState resumed;
    bool resuming = !o.resume.empty();
    if (resuming) {
        std::string path = o.resume;
        double duration = o.duration_mimg;
        resumed = load_state(path);
        o = resumed.options;  // the run continues with the options it was started with
        o.resume = path;
        if (duration > 0) o.duration_mimg = duration;
    }
    if (o.batch_gpu == 0) o.batch_gpu = o.batch;
    validate(o);
    Device device = Device::parse(o.device);
    STF_CHECK(!device.is_cuda() || cuda::available(),
              "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                            : "stf was built without CUDA (use --device cpu)"));

    ImageDataset data = ImageDataset::load(o.data, o.pad_to);
    if (o.max_images > 0) data = data.subset(o.max_images);
    STF_CHECK(data.height() == data.width(), "training needs square images, " << data.source() << " is not");
    STF_CHECK(o.pad_to == 0 || data.height() == o.pad_to,
              "--res " << o.pad_to << ": the images of " << data.source() << " are larger than that");
    o.net.unet.in_channels = o.net.unet.out_channels = data.channels();
    o.net.unet.img_resolution = data.height();
    o.net.unet.augment_dim = o.augment > 0 ? 9 : 0;

    fs::path out(o.outdir);
    fs::create_directories(out);
    Log log(out / "log.txt");
    if (!resuming) {
        std::ofstream(out / "training_options.json") << o.to_json() << "\n";
    }

    Generator init(o.seed);
    std::shared_ptr<nn::Precond> net = nn::make_network(o.net, init);
    std::shared_ptr<nn::Precond> ema = nn::make_network(o.net, init);
    {
        std::map<std::string, Tensor> weights;
        for (auto& [n, t] : net->state_dict()) weights[n] = t;
        ema->load_state_dict(resuming ? resumed.ema : weights);
        if (resuming) net->load_state_dict(resumed.net);
    }
    net->to(device);
    ema->to(device);
    net->train();
    ema->eval();
    nn::Adam adam(net->parameters(), nn::AdamOptions{o.lr, 0.9, 0.999, 1e-8});
    nn::Ema ema_update(net->parameters(), ema->parameters());
    Rngs rng{Generator(o.seed), Generator(o.seed + 1000003), Generator(o.seed + 2000003)};
    InfiniteSampler sampler(data.size(), o.seed);
    Progress p;
    if (resuming) {
        adam.load_state(resumed.adam);
        const json& j = resumed.progress;
        p.step = j.at("step");
        p.tick = j.at("tick");
        p.cur_nimg = j.at("cur_nimg");
        p.tick_start_nimg = j.at("tick_start_nimg");
        rng_from(rng.noise, j.at("rng").at("noise"));
        rng_from(rng.dropout, j.at("rng").at("dropout"));
        rng_from(rng.augment, j.at("rng").at("augment"));
        sampler.set_state({j.at("sampler").at(0).get<int64_t>(), j.at("sampler").at(1).get<int64_t>()});
    }
    diffusion::AugmentPipe augment_pipe(diffusion::AugmentOptions::cifar10(o.augment));
    diffusion::LossOptions loss_options;
    loss_options.kind = o.net.precond;
    loss_options.sigma_data = o.net.sigma_data;

    const double total_nimg = o.duration_mimg * 1e6;
    char line[512];
    std::snprintf(line, sizeof(line), "%s training: %s, %s, %lld parameters, %s, %s target%s, batch %lld (%lld per round)",
                  resuming ? "Resuming" : "Starting", data.source().c_str(),
                  o.net.unet.embedding_type == "fourier" ? "NCSN++" : "DDPM++", (long long)net->num_parameters(),
                  device.str().c_str(), o.stf ? "STF" : "DSM",
                  o.stf ? (", reference batch " + std::to_string(o.rbatch)).c_str() : "", (long long)o.batch,
                  (long long)o.batch_gpu);
    log.line(line);
    if (resuming) {
        std::snprintf(line, sizeof(line), "Resumed from %s at kimg %.1f", o.resume.c_str(), p.cur_nimg / 1e3);
        log.line(line);
    }

    std::vector<double> curve_x, curve_y;
    double tick_loss_sum = 0, tick_images = 0;
    SigmaBands bands;
    auto tick_clock = std::chrono::steady_clock::now();
    double tick_clock_nimg = p.cur_nimg;
    TrainSummary summary;
    ProgressBar bar(static_cast<int64_t>(o.tick_kimg * 1000), "tick");
    const int64_t rounds = o.batch / o.batch_gpu;
    const int64_t draw = o.stf ? std::max(o.rbatch, o.batch_gpu) : o.batch_gpu;

    while (p.cur_nimg < total_nimg) {
        net->zero_grad();
        for (int64_t r = 0; r < rounds; ++r) {
            Tensor images = data.batch(sampler.next(draw), device);
            Tensor labels;
            if (o.augment > 0) {
                diffusion::AugmentPipe::Result a = augment_pipe.apply(images, rng.augment);
                images = a.images;
                labels = ops::contiguous(ops::narrow(a.labels, 0, 0, o.batch_gpu));
            }
            // With STF the round's training images lead the (augmented) reference batch.
            Tensor y = ops::contiguous(ops::narrow(images, 0, 0, o.batch_gpu));
            diffusion::LossTerms terms = diffusion::diffusion_loss(*net, y, labels, o.stf ? images : Tensor(),
                                                                   loss_options, rng.noise, rng.dropout);
            backward(mul(sum(terms.loss), 1.0 / static_cast<double>(o.batch)));
            std::vector<double> losses = terms.loss.to_vector();
            for (double v : losses) tick_loss_sum += v;
            tick_images += static_cast<double>(o.batch_gpu);
            bands.add(terms.sigma.to_vector(), losses,
                      terms.ess.defined() ? terms.ess.to_vector() : std::vector<double>());
        }
        std::vector<Tensor> params = net->parameters();
        nn::nan_to_num_grads(params);
        adam.step(nn::edm_learning_rate(o.lr, p.cur_nimg, o.lr_rampup_mimg * 1000));
        p.cur_nimg += static_cast<double>(o.batch);
        p.step++;
        ema_update.update(nn::Ema::beta(static_cast<double>(o.batch), p.cur_nimg, o.ema_mimg * 1000, o.ema_rampup));

        bool done = p.cur_nimg >= total_nimg;
        if (o.progress_bar) bar.update(static_cast<int64_t>(p.cur_nimg - p.tick_start_nimg));
        if (!done && p.cur_nimg < p.tick_start_nimg + o.tick_kimg * 1000) continue;

        // ---- end of a tick: report, then snapshots ----
        if (o.progress_bar) bar.finish();
        double loss = tick_loss_sum / std::max(tick_images, 1.0);
        if (!std::isfinite(loss))
            throw Error("training diverged: the mean loss of tick " + std::to_string(p.tick) + " is " +
                        std::to_string(loss) + " at kimg " + std::to_string(p.cur_nimg / 1e3) +
                        "; lower --lr or resume from the last training state");
        if (device.is_cuda()) cuda::synchronize();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - tick_clock).count();
        double imgs = p.cur_nimg - tick_clock_nimg;
        std::string ess_text;
        if (o.stf) {
            char e[160];
            std::snprintf(e, sizeof(e), "  ess[s<0.2] %.1f [0.2,1) %.1f [1,5) %.1f [>=5] %.1f", bands.ess_mean(0),
                          bands.ess_mean(1), bands.ess_mean(2), bands.ess_mean(3));
            ess_text = e;
        }
        std::snprintf(line, sizeof(line), "tick %-4lld kimg %-9.1f loss %-8.4f sec/kimg %-7.2f img/s %-8.1f mem %.2f GiB%s",
                      (long long)p.tick, p.cur_nimg / 1e3, loss, secs / (imgs / 1e3), imgs / secs,
                      peak_memory_gib(device), ess_text.c_str());
        log.line(line);
        json stats = {{"tick", p.tick},
                      {"kimg", p.cur_nimg / 1e3},
                      {"step", p.step},
                      {"loss", loss},
                      {"sec_per_kimg", secs / (imgs / 1e3)},
                      {"img_per_sec", imgs / secs},
                      {"peak_mem_gib", peak_memory_gib(device)},
                      {"lr", nn::edm_learning_rate(o.lr, p.cur_nimg, o.lr_rampup_mimg * 1000)}};
        auto finite_or_null = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
        for (int b = 0; b < 4; ++b) {
            stats["loss_bands"][SigmaBands::kNames[b]] = {{"count", bands.count[b]},
                                                          {"mean", finite_or_null(bands.loss_mean(b))},
                                                          {"var", finite_or_null(bands.loss_var(b))}};
            if (o.stf) stats["ess"][SigmaBands::kNames[b]] = finite_or_null(bands.ess_mean(b));
        }
        std::ofstream(out / "stats.jsonl", std::ios::app) << stats.dump() << "\n";
        curve_x.push_back(p.cur_nimg / 1e3);
        curve_y.push_back(loss);
        write_line_plot_png((out / "loss.png").string(), {{"loss", curve_x, curve_y, {31, 119, 180}}},
                            PlotOptions{.title = o.stf ? "training loss (STF)" : "training loss (DSM)",
                                        .x_label = "kimg", .y_label = "loss", .log_y = true});
        summary.last_loss = loss;

        bool snap = done || (o.snap_ticks > 0 && p.tick % o.snap_ticks == 0);
        bool dump = done || (o.dump_ticks > 0 && p.tick % o.dump_ticks == 0);
        double kimg = p.cur_nimg / 1e3;
        p.tick++;
        p.tick_start_nimg = p.cur_nimg;
        if (snap) {
            summary.snapshot = (out / kimg_name("network-snapshot", kimg)).string();
            nn::save_network(summary.snapshot, *ema);
        }
        if (dump) {
            summary.state = (out / kimg_name("training-state", kimg)).string();
            save_state(summary.state, o, *net, *ema, adam, p, rng, sampler);
        }
        tick_loss_sum = tick_images = 0;
        bands = SigmaBands();
        tick_clock = std::chrono::steady_clock::now();
        tick_clock_nimg = p.cur_nimg;
    }
    summary.steps = p.step;
    summary.kimg = p.cur_nimg / 1e3;
    std::snprintf(line, sizeof(line), "Done: %lld steps, kimg %.1f. Snapshot %s", (long long)p.step, summary.kimg,
                  summary.snapshot.c_str());
    log.line(line);
    return summary;
}

}  // namespace stf::apps
