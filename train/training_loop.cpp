#include "train/training_loop.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "cuda/runtime.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/sampler.h"
#include "diffusion/augment.h"
#include "diffusion/loss.h"
#include "nn/optim.h"
#include "report/plot.h"
#include "report/progress.h"
#include "train/distributed.h"
#include "train/graph_step.h"
#include "train/precision.h"
#include "train/run_dir.h"
#include "train/sigma_bands.h"
#include "train/stop_signal.h"
#include "train/training_state.h"
#include "train/transfer.h"

namespace stf::train {

using nlohmann::json;
namespace fs = std::filesystem;

// Per-sample random streams (tensor/random.h): training images take sample indices below
// kReferenceFirst, a step's extra reference images the indices from there on.
constexpr uint64_t kReferenceFirst = Generator::kRowKeyedSamples / 2;
constexpr int64_t kReferenceSamples = static_cast<int64_t>(Generator::kRowKeyedSamples - kReferenceFirst);

// DSM, STF n=1024, STF all or kNN k=2048 n=256: the target as plots and logs name it.
static std::string target_name(const TrainOptions& o) {
    if (o.target == "stf")
        return o.rbatch == TrainOptions::kWholeDataset ? "STF all" : "STF n=" + std::to_string(o.rbatch);
    if (o.target == "knn") return "kNN k=" + std::to_string(o.knn_k) + " n=" + std::to_string(o.rbatch);
    return "DSM";
}

static void validate(const TrainOptions& o, int ranks) {
    STF_CHECK(o.batch >= 1, "--batch must be positive, got " << o.batch);
    STF_CHECK(o.batch % ranks == 0, "--batch " << o.batch << " must split evenly over the " << ranks << " ranks");
    const int64_t local = o.batch / ranks;
    STF_CHECK(o.batch_gpu >= 1 && local % o.batch_gpu == 0,
              "--batch-gpu " << o.batch_gpu << " must divide --batch " << o.batch
                             << (ranks > 1 ? " / " + std::to_string(ranks) + " ranks = " + std::to_string(local) : ""));
    STF_CHECK(o.target == "dsm" || o.target == "stf" || o.target == "knn",
              "--target must be dsm, stf or knn, got '" << o.target << "'");
    const bool stf_batch = o.target == "stf" && o.rbatch != TrainOptions::kWholeDataset;
    STF_CHECK(!stf_batch || o.rbatch >= o.batch_gpu,
              "--rbatch " << o.rbatch << " is smaller than the per-round batch " << o.batch_gpu
                          << ": the reference batch must contain the training batch");
    STF_CHECK(o.target != "knn" || o.rbatch >= 1,
              "--rbatch " << o.rbatch << ": the kNN target needs at least one draw per sample (--rbatch N)");
    STF_CHECK(o.target != "knn" || o.knn_k >= 1, "--k must be positive, got " << o.knn_k);
    STF_CHECK(o.rbatch_scope == "local" || o.rbatch_scope == "global",
              "--rbatch-scope must be local or global, got '" << o.rbatch_scope << "'");
    STF_CHECK(!o.whole_dataset_target() || o.rbatch_scope == "local",
              "--rbatch-scope global gathers reference batches; the " << o.target << " target already uses the whole "
              "dataset on every rank");
    // Reference images are keyed by their index among the step's reference images (tensor/random.h).
    STF_CHECK(!stf_batch || (o.batch / o.batch_gpu) * (o.rbatch - o.batch_gpu) <= kReferenceSamples,
              "--rbatch " << o.rbatch << " with " << o.batch / o.batch_gpu
                          << " rounds per step needs more per-sample random streams than the " << kReferenceSamples
                          << " available; use a smaller --rbatch or a larger --batch-gpu");
    STF_CHECK(o.duration_mimg > 0 && std::isfinite(o.duration_mimg), "--duration must be positive, got " << o.duration_mimg);
    STF_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be positive and finite, got " << o.lr);
    STF_CHECK(o.lr_rampup_mimg >= 0 && std::isfinite(o.lr_rampup_mimg), "--lr-rampup must be >= 0, got " << o.lr_rampup_mimg);
    STF_CHECK(o.ema_mimg > 0 && std::isfinite(o.ema_mimg), "--ema (half-life in Mimg) must be positive, got " << o.ema_mimg);
    STF_CHECK(std::isfinite(o.ema_rampup), "--ema-rampup must be finite (<= 0 turns it off), got " << o.ema_rampup);
    STF_CHECK(o.max_images >= 0, "--max-images must be >= 0 (0: all), got " << o.max_images);
    // Padding allocates N x R x R bytes before the network sees an image; EDM trains at 32 and 64.
    STF_CHECK(o.pad_to >= 0 && o.pad_to <= 512, "--res must be in 0..512 (0: the images' own size), got " << o.pad_to);
    STF_CHECK(o.snap_ticks >= 0 && o.dump_ticks >= 0, "--snap and --dump must be >= 0 (0: only at the end)");
    STF_CHECK(o.target == "dsm" || o.rbatch >= 1 || (o.target == "stf" && o.rbatch == TrainOptions::kWholeDataset),
              "--rbatch must be a positive number of images (stf: or all), got " << o.rbatch);
    STF_CHECK(o.augment >= 0 && o.augment <= 1, "--augment is a probability in [0, 1], got " << o.augment);
    STF_CHECK(o.tick_kimg > 0 && std::isfinite(o.tick_kimg), "--tick must be positive, got " << o.tick_kimg);
    STF_CHECK(o.dist_timeout > 0, "--dist-timeout must be positive");
    STF_CHECK(o.net.unet.dropout >= 0 && o.net.unet.dropout < 1, "--dropout must be in [0, 1)");
    STF_CHECK(o.net.unet.label_dropout >= 0 && o.net.unet.label_dropout < 1,
              "--label-dropout must be in [0, 1), got " << o.net.unet.label_dropout);
    STF_CHECK(o.cond || o.net.unet.label_dropout == 0, "--label-dropout needs --cond (a class-conditional network)");
    STF_CHECK(!o.cond || !o.whole_dataset_target(),
              "--cond with the " << target_name(o) << " target is not supported: the whole-dataset targets do not "
              "group references by class (use --target stf with a reference batch, --rbatch N)");
    STF_CHECK(!(o.cond && o.target == "stf" && o.rbatch_scope == "global" && ranks > 1),
              "--rbatch-scope global with --cond is not supported: each class has its own reference block per "
              "round (use the default, local)");
    STF_CHECK(o.precision == "fp32" || o.precision == "tf32" || o.precision == "bf16",
              "--precision must be fp32, tf32 or bf16, got '" << o.precision << "'");
    STF_CHECK(o.precision != "tf32" || Device::parse(o.device).is_cuda(),
              "--precision tf32 needs --device cuda (TF32 is a tensor-core mode)");
    STF_CHECK(o.cuda_graph == "on" || o.cuda_graph == "off", "--cuda-graph must be on or off, got '" << o.cuda_graph << "'");
    STF_CHECK(o.cuda_graph == "off" || !o.whole_dataset_target(),
              "--cuda-graph on with the " << target_name(o) << " target is not supported: its references are the whole "
              "dataset (use --cuda-graph off)");
    STF_CHECK(o.cuda_graph == "off" || !(o.cond && o.target == "stf"),
              "--cuda-graph on with --cond and STF is not supported: each round's class blocks differ (use "
              "--cuda-graph off)");
}

// ---- small helpers ---------------------------------------------------------------------------------

// Progress lines on stdout and in log.txt; silent when given no path (ranks other than 0).
class Log {
public:
    explicit Log(const fs::path& path) : silent_(path.empty()) {
        if (!silent_) file_.open(path, std::ios::app);
    }
    void line(const std::string& text) {
        if (silent_) return;
        std::printf("%s\n", text.c_str());
        std::fflush(stdout);
        file_ << text << "\n";
        file_.flush();
    }

private:
    bool silent_;
    std::ofstream file_;
};

// Tick statistics are summed over ranks so that rank 0 reports the whole batch.
static void sum_over_ranks(ProcessGroup& group, SigmaBands& bands) {
    if (!group.distributed()) return;
    std::vector<double> v;
    for (double* field : {bands.count, bands.loss_sum, bands.loss_sq, bands.ess_sum, bands.ess_count})
        v.insert(v.end(), field, field + SigmaBands::kBands);
    group.all_reduce_sum(v);
    size_t at = 0;
    for (double* field : {bands.count, bands.loss_sum, bands.loss_sq, bands.ess_sum, bands.ess_count})
        for (int b = 0; b < SigmaBands::kBands; ++b) field[b] = v[at++];
}

// --resume continues a run with the options its state holds (its data order, randomness and optimiser
// state follow from them). It honours --duration (extends the run), --batch-gpu (how a step is split
// into rounds: the same images and randomness), --no-progress and --dist-timeout; any other option the
// user set to a value other than the state's is refused rather than silently ignored.
static void check_resume_options(const TrainOptions& asked, const TrainOptions& state) {
    // outdir is where the state lies (train/run_dir.h): the run directory, however it was spelled.
    static const std::vector<std::string> honoured = {"/duration_mimg", "/batch_gpu", "/outdir", "/resume"};
    const json a = json::parse(asked.to_json()).flatten(), s = json::parse(state.to_json()).flatten();
    std::string differing;
    for (const std::string& key : asked.explicitly_set) {
        if (std::find(honoured.begin(), honoured.end(), key) != honoured.end() || !a.contains(key)) continue;
        if (s.contains(key) && s[key] == a[key]) continue;
        differing += (differing.empty() ? "" : ", ") + key.substr(1) + " was given as " + a[key].dump() +
                     " and the state has " + (s.contains(key) ? s[key].dump() : std::string("no such option"));
    }
    if (differing.empty()) return;
    throw Error("--resume " + asked.resume + " continues the run with the options in its training state, but " +
                differing + ". Give only --duration, --batch-gpu, --no-progress, --cuda-graph, --dist-timeout and the --metrics/--fid "
                "flags with --resume, or start a new run");
}

// A non-finite network or EMA must never be written: it would replace a good checkpoint with one whose
// resume only continues the divergence (--lr 1e300 saved an all-NaN state at tick 0 and then advised
// resuming from it). `last_good` is the newest state written before, "" when none.
static void check_finite_before_saving(const nn::Precond& net, const nn::Precond& ema, double kimg,
                                       const std::string& last_good) {
    std::string bad = nn::first_non_finite(net.state_dict()), which = "network";
    if (bad.empty()) bad = nn::first_non_finite(ema.state_dict()), which = "EMA network";
    if (bad.empty()) return;
    throw Error("training diverged: weight '" + bad + "' of the " + which + " holds NaN or infinite values at kimg " +
                std::to_string(kimg) + "; nothing was written for it. " +
                (last_good.empty() ? std::string("No training state was written before: lower --lr and start again")
                                   : "Lower --lr and resume from the last good state, " + last_good));
}

// Checkpoints are written to NAME.tmp.PID and renamed (nn/safetensors.h); a process killed mid-write
// leaves its temporary behind. Those of processes no longer alive are removed.
static void remove_stale_temporaries(const fs::path& out, Log& log) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(out, ec)) {
        const std::string name = e.path().filename().string();
        const size_t at = name.rfind(".tmp.");
        if (at == std::string::npos || name.find(".safetensors") == std::string::npos) continue;
        const std::string pid_text = name.substr(at + 5);
        if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
        const long pid = std::stol(pid_text);
        if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
        if (fs::remove(e.path(), ec)) log.line("Removed the stale temporary file " + e.path().string());
    }
}

// Keeps the rows of stats.jsonl before tick `next_tick` (rewritten atomically) and their losses for
// loss.png; rows from ticks after the resumed state would otherwise appear twice.
static void continue_stats(const fs::path& path, int64_t next_tick, std::vector<double>& curve_x,
                           std::vector<double>& curve_y) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, kept;
    while (std::getline(in, line)) {
        json row;
        try {
            row = json::parse(line);
        } catch (const json::exception&) {
            continue;  // a line cut by a kill
        }
        if (!row.is_object() || !row.contains("tick") || !row["tick"].is_number() || row["tick"].get<int64_t>() >= next_tick)
            continue;
        kept += line + "\n";
        if (row.contains("kimg") && row.contains("loss") && row["kimg"].is_number() && row["loss"].is_number()) {
            curve_x.push_back(row["kimg"].get<double>());
            curve_y.push_back(row["loss"].get<double>());
        }
    }
    data::write_file_atomic(path.string(), kept.data(), kept.size());
}

// The first SIGINT or SIGTERM on any rank stops every rank after the same step.
static int stop_requested(ProcessGroup& group) {
    int sig = StopSignal::received();
    if (!group.distributed()) return sig;
    std::vector<double> v{static_cast<double>(sig)};
    group.all_reduce_sum(v);
    return v[0] > 0 ? (sig ? sig : SIGTERM) : 0;
}

// ---- training ---------------------------------------------------------------------------------------

struct Rngs {
    Generator noise, dropout, augment;
    // Every draw that follows is keyed to the samples from `first_sample` on in `step`.
    void key(int64_t step, int64_t first_sample) {
        for (Generator* g : {&noise, &dropout, &augment})
            g->key_rows(static_cast<uint64_t>(step), static_cast<uint64_t>(first_sample));
    }
};

// One round's data: what the loss takes, and the training images' dataset rows (a whole-dataset target
// skips them in the dataset, their augmented copies standing in).
struct RoundData {
    diffusion::LossBatch batch;
    std::vector<int64_t> rows;
};

// Where each step's images come from. Training image g of step s is position s * batch + g of a
// shuffled stream of the dataset; the extra reference images of the step's round k are positions
// from (s * rounds + k) * extras of a second stream. Both follow from the step alone, so a resumed
// run, or one with another number of ranks, continues exactly.
//
// With class labels (--cond) and STF, every class c among a round's images gets a block of rbatch
// references: the round's images of class c, then rbatch minus their count images of class c from
// that class's own stream, from position (s * rounds + k) * rbatch; each image's softmax runs over its
// class's block alone (docs/design.md, "Class labels and the STF reference batch").
class StepData {
public:
    StepData(const TrainOptions& o, const data::ImageDataset& data, Device device)
        : o_(o), data_(data), device_(device), train_stream_(data.size(), o.seed),
          reference_stream_(data.size(), o.seed ^ 0x5EED5EED5EEDull),
          augment_(diffusion::AugmentOptions::cifar10(o.augment)) {
        if (o.whole_dataset_target()) {  // every image on the device once: the reference set's rows
            std::vector<int64_t> all(static_cast<size_t>(data.size()));
            for (int64_t i = 0; i < data.size(); ++i) all[static_cast<size_t>(i)] = i;
            all_images_ = data.batch(all, device);
        }
        if (!o.cond || o.target != "stf") return;
        class_images_.resize(static_cast<size_t>(o.net.unet.label_dim));
        for (int64_t i = 0; i < data.size(); ++i) class_images_[static_cast<size_t>(data.label(i))].push_back(i);
        for (size_t c = 0; c < class_images_.size(); ++c)
            class_streams_.emplace_back(std::max<int64_t>(1, static_cast<int64_t>(class_images_[c].size())),
                                        o.seed ^ 0xC1A55EEDull ^ (static_cast<uint64_t>(c + 1) << 40));
    }

    // Keyed per-sample streams that one round's class-conditional references use (validated up front).
    static int64_t class_reference_window(const TrainOptions& o) {
        return std::min(o.batch_gpu, o.net.unet.label_dim) * o.rbatch;
    }

    // Round with training samples first_sample .. first_sample + batch_gpu - 1 of `step`.
    RoundData round(int64_t step, int64_t first_sample, Rngs& rng, ProcessGroup& group) {
        const int64_t bg = o_.batch_gpu;
        RoundData out;
        diffusion::LossBatch& r = out.batch;
        rng.key(step, first_sample);
        out.rows = train_stream_.take(step * o_.batch + first_sample, bg);
        r.images = data_.batch(out.rows, device_);
        if (o_.cond) r.class_labels = data_.label_batch(out.rows, o_.net.unet.label_dim, device_);
        if (o_.augment > 0) {
            diffusion::AugmentPipe::Result a = augment_.apply(r.images, rng.augment);
            r.images = a.images;
            r.augment_labels = a.labels;
        }
        if (o_.target != "stf" || o_.rbatch == TrainOptions::kWholeDataset) return out;
        const int64_t round_index = first_sample / bg, rounds = o_.batch / bg;
        if (o_.cond) {
            class_references(r, out.rows, step * rounds + round_index, round_index, step, rng);
            return out;
        }
        r.reference = r.images;
        const int64_t extras = o_.rbatch - bg;
        if (extras > 0) {
            const int64_t first_extra = round_index * extras;
            Tensor more =
                data_.batch(reference_stream_.take((step * rounds) * extras + first_extra, extras), device_);
            if (o_.augment > 0) {
                rng.augment.key_rows(static_cast<uint64_t>(step), kReferenceFirst + first_extra);
                more = augment_.apply(more, rng.augment).images;
            }
            r.reference = ops::cat({r.images, more}, 0);
        }
        if (o_.rbatch_scope == "global" && group.distributed())
            r.reference = own_first(group.all_gather(r.reference), group);
        return out;
    }

    // The whole dataset on the device (whole-dataset targets only).
    const Tensor& all_images() const { return all_images_; }

private:
    // One block of rbatch references per class among the round's images (see the class comment). The
    // extras of all classes are loaded and augmented in one batch, keyed from the round's window of
    // per-sample streams.
    void class_references(diffusion::LossBatch& r, const std::vector<int64_t>& indices, int64_t global_round,
                          int64_t round_index, int64_t step, Rngs& rng) {
        std::map<int, std::vector<int64_t>> rows_of_class;
        for (size_t k = 0; k < indices.size(); ++k) rows_of_class[data_.label(indices[k])].push_back(static_cast<int64_t>(k));
        std::vector<int64_t> extra_indices;
        for (auto& [c, rows] : rows_of_class) {
            const int64_t need = o_.rbatch - static_cast<int64_t>(rows.size());
            const std::vector<int64_t>& members = class_images_[static_cast<size_t>(c)];
            for (int64_t pos : class_streams_[static_cast<size_t>(c)].take(global_round * o_.rbatch, need))
                extra_indices.push_back(members[static_cast<size_t>(pos)]);
        }
        Tensor more;
        if (!extra_indices.empty()) {
            more = data_.batch(extra_indices, device_);
            if (o_.augment > 0) {
                rng.augment.key_rows(static_cast<uint64_t>(step),
                                     kReferenceFirst + static_cast<uint64_t>(round_index * class_reference_window(o_)));
                more = augment_.apply(more, rng.augment).images;
            }
        }
        std::vector<Tensor> blocks;
        int64_t start = 0, taken = 0;
        for (auto& [c, rows] : rows_of_class) {
            for (int64_t k : rows) blocks.push_back(ops::narrow(r.images, 0, k, 1));
            const int64_t need = o_.rbatch - static_cast<int64_t>(rows.size());
            if (need > 0) blocks.push_back(ops::narrow(more, 0, taken, need));
            taken += need;
            r.groups.push_back({rows, start, o_.rbatch});
            start += o_.rbatch;
        }
        r.reference = ops::cat(blocks, 0);
    }

    // Rotates a gathered reference batch so this rank's block leads it: its training images stay
    // reference[:batch_gpu], as the STF target expects.
    static Tensor own_first(const Tensor& gathered, const ProcessGroup& group) {
        const int64_t block = gathered.size(0) / group.size(), at = block * group.rank();
        if (at == 0) return gathered;
        return ops::cat({ops::narrow(gathered, 0, at, gathered.size(0) - at), ops::narrow(gathered, 0, 0, at)}, 0);
    }

    const TrainOptions& o_;
    const data::ImageDataset& data_;
    Device device_;
    data::InfiniteSampler train_stream_, reference_stream_;
    diffusion::AugmentPipe augment_;
    std::vector<std::vector<int64_t>> class_images_;  // dataset indices of each class (x-flips included)
    std::vector<data::InfiniteSampler> class_streams_;  // positions into class_images_[c]
    Tensor all_images_;
};

// Fails loudly when ranks were started with different options: a silent mismatch would train garbage.
static void check_same_options(ProcessGroup& group, const TrainOptions& o) {
    if (!group.distributed()) return;
    std::vector<std::string> all = group.all_gather(o.to_json());
    for (int r = 1; r < group.size(); ++r) {
        if (all[static_cast<size_t>(r)] == all[0]) continue;
        json a = json::parse(all[0]), b = json::parse(all[static_cast<size_t>(r)]);
        std::string key;
        for (auto& [k, v] : a.items())
            if (key.empty() && (!b.contains(k) || b[k] != v)) key = k;
        throw Error("rank " + std::to_string(r) + " was started with different options than rank 0 (first " +
                    "difference: '" + key + "'); start every rank with the same flags");
    }
}

// Every rank applies the same summed gradients, so weights, EMA and Adam moments must agree bit for
// bit; a difference means a rank computed something else and the run is no longer one model.
static void check_ranks_agree(ProcessGroup& group, const nn::Precond& net, const nn::Precond& ema,
                              const nn::Adam& adam, int64_t tick) {
    if (!group.distributed()) return;
    std::vector<Tensor> state = net.parameters();
    for (const Tensor& t : ema.parameters()) state.push_back(t);
    for (auto& [n, t] : adam.state()) state.push_back(t);
    std::vector<std::string> all = group.all_gather(std::to_string(fingerprint(state)));
    for (int r = 1; r < group.size(); ++r)
        STF_CHECK(all[static_cast<size_t>(r)] == all[0],
                  "the training state of rank " << r << " differs from rank 0's at tick " << tick
                                                << ": the ranks no longer train one model");
}

TrainSummary training_loop(TrainOptions o, const SnapshotMetrics& snapshot_metrics, const RoundObserver& observe_round) {
    ProcessGroup& group = ProcessGroup::world(o.dist_timeout);
    TrainingState resumed;
    bool resuming = !o.resume.empty();
    if (resuming) {
        STF_CHECK(o.resume != "auto", "--resume auto is resolved by choose_run_directory (train/run_dir.h) before "
                                      "training starts");
        const TrainOptions asked = o;
        std::error_code ec;
        if (fs::is_directory(o.resume, ec)) {  // a run directory: its newest training state
            o.resume = newest_training_state(asked.resume);
            STF_CHECK(!o.resume.empty(), "--resume " << asked.resume << ": no training-state-*.safetensors in this directory");
        }
        const std::string state_path = o.resume;
        resumed = load_training_state(state_path);
        check_resume_options(asked, resumed.options);
        o = resumed.options;  // the run continues with the options it was started with, where its state is
        o.resume = state_path;
        o.outdir = fs::path(state_path).parent_path().string();
        if (o.outdir.empty()) o.outdir = ".";
        o.progress_bar = asked.progress_bar;
        o.cuda_graph = asked.cuda_graph;
        o.dist_timeout = asked.dist_timeout;
        if (asked.duration_mimg > 0) o.duration_mimg = asked.duration_mimg;
        // A new --batch-gpu, or a number of ranks the old one does not fit, changes the rounds; the
        // images and randomness of a step stay (with STF the reference batches follow the rounds).
        const int64_t local = o.batch / group.size();
        if (asked.batch_gpu > 0 || o.batch % group.size() != 0 || local % o.batch_gpu != 0)
            o.batch_gpu = asked.batch_gpu;
    }
    if (o.batch_gpu == 0 && o.batch % group.size() == 0) o.batch_gpu = o.batch / group.size();
    validate(o, group.size());
    check_same_options(group, o);
    Device device = Device::parse(o.device);
    STF_CHECK(!device.is_cuda() || cuda::available(),
              "--device cuda: " << (cuda::built_with_cuda() ? "no CUDA device is available (use --device cpu)"
                                                            : "stf was built without CUDA (use --device cpu)"));

    std::optional<nn::LoadedNetwork> transfer;  // names the file when it is not a network snapshot
    if (!resuming && !o.transfer.empty()) transfer = nn::load_network(o.transfer);
    data::ImageDataset data = data::ImageDataset::load(o.data, o.pad_to, o.max_images);
    data.set_xflip(o.xflip);
    STF_CHECK(data.height() == data.width(), "training needs square images, " << data.source() << " is not");
    o.net.unet.in_channels = o.net.unet.out_channels = data.channels();
    o.net.unet.img_resolution = data.height();
    o.net.unet.augment_dim = o.augment > 0 ? 9 : 0;
    if (o.cond) {
        STF_CHECK(data.has_labels(), "--cond needs class labels, and " << data.source() << " has none (a ZIP's or "
                                     "folder's dataset.json, CIFAR-10's label bytes or an IDX labels file beside the images)");
        // EDM's label_dim: the largest class + 1. A resumed run keeps its own; a transferred network's
        // counts when the dataset's classes fit it (fine-tuning on a subset of its classes).
        if (!resuming) {
            o.net.unet.label_dim = data.num_classes();
            if (transfer && transfer->config.unet.label_dim > data.num_classes())
                o.net.unet.label_dim = transfer->config.unet.label_dim;
        }
        STF_CHECK(data.num_classes() <= o.net.unet.label_dim,
                  "the classes of " << data.source() << " go up to " << data.num_classes() - 1 << ", the network has "
                                    << o.net.unet.label_dim << " (label_dim)");
        if (o.target == "stf") {
            const int64_t needed = (o.batch / o.batch_gpu) * StepData::class_reference_window(o);
            STF_CHECK(needed <= kReferenceSamples,
                      "--cond with --rbatch " << o.rbatch << ": " << o.batch / o.batch_gpu << " rounds of up to "
                                              << std::min(o.batch_gpu, o.net.unet.label_dim) << " class blocks need "
                                              << needed << " per-sample random streams, more than the "
                                              << kReferenceSamples << " available; use a smaller --rbatch");
        }
    } else {
        o.net.unet.label_dim = 0;
    }
    if (transfer) {  // before anything is written
        const std::string mismatch = transfer_mismatch(transfer->config, o.net);
        STF_CHECK(mismatch.empty(), "--transfer " << o.transfer << ": the snapshot's network does not match this "
                                                  << "run's flags: " << mismatch);
    }

    const bool root = group.is_root();
    fs::path out(o.outdir);
    if (root) fs::create_directories(out);
    Log log(root ? out / "log.txt" : fs::path());
    if (root && !resuming) {
        const std::string text = o.to_json() + "\n";  // through a checked write: a full disk is an error
        data::write_file_atomic((out / "training_options.json").string(), text.data(), text.size());
    }
    if (root) remove_stale_temporaries(out, log);

    Generator init(o.seed);
    std::shared_ptr<nn::Precond> net = nn::make_network(o.net, init);
    std::shared_ptr<nn::Precond> ema = nn::make_network(o.net, init);
    if (transfer) copy_transfer_weights(o.transfer, *transfer, o.net, *net);
    {
        std::map<std::string, Tensor> weights;
        for (auto& [n, t] : net->state_dict()) weights[n] = t;
        ema->load_state_dict(resuming ? resumed.ema : weights);
        if (resuming) net->load_state_dict(resumed.net);
    }
    net->to(device);
    ema->to(device);
    const std::string precision_text = set_precision(o.precision, device);
    net->set_activation_dtype(activation_dtype(o.precision));
    net->train();
    ema->eval();
    nn::Adam adam(net->parameters(), nn::AdamOptions{o.lr, 0.9, 0.999, 1e-8});
    nn::Ema ema_update(net->parameters(), ema->parameters());
    Rngs rng{Generator(o.seed), Generator(o.seed + 1000003), Generator(o.seed + 2000003)};
    StepData step_data(o, data, device);
    TrainingProgress p;
    if (resuming) {
        adam.load_state(resumed.adam);
        p = resumed.progress;
    }
    diffusion::LossOptions loss_options;
    loss_options.kind = o.net.precond;
    loss_options.sigma_data = o.net.sigma_data;

    STF_CHECK(o.target != "knn" || o.knn_k <= data.size(),
              "--k " << o.knn_k << " is larger than the dataset (" << data.size() << " images)");
    const double total_nimg = o.duration_mimg * 1e6;
    std::string target_text = "DSM target";
    if (o.target == "stf" && o.rbatch != TrainOptions::kWholeDataset)
        target_text = "STF target, reference batch " + std::to_string(o.rbatch) +
                      (group.distributed() ? " (" + o.rbatch_scope + ")" : "");
    else if (o.target == "stf")
        target_text = "STF target, the whole dataset as reference (" + std::to_string(data.size()) + " images)";
    else if (o.target == "knn")
        target_text = "kNN target, k " + std::to_string(o.knn_k) + ", " + std::to_string(o.rbatch) +
                      " draws per sample over the whole dataset (" + std::to_string(data.size()) + " images)";
    char line[640];
    std::snprintf(line, sizeof(line), "%s training: %s, %s, %lld parameters, %s, %s, batch %lld (%lld per round), %s",
                  resuming ? "Resuming" : "Starting", data.source().c_str(),
                  o.net.unet.embedding_type == "fourier" ? "NCSN++" : "DDPM++", (long long)net->num_parameters(),
                  device.str().c_str(), target_text.c_str(), (long long)o.batch, (long long)o.batch_gpu,
                  group.describe().c_str());
    log.line(line);
    if (o.cond || o.xflip || transfer) {
        std::string text = "Data and start:";
        if (o.cond)
            text += " class-conditional, " + std::to_string(o.net.unet.label_dim) + " classes (label dropout " +
                    std::to_string(o.net.unet.label_dropout).substr(0, 5) + ")" +
                    (o.target == "stf" ? ", each image's references of its own class" : "") + ";";
        if (o.xflip) text += " x-flips (" + std::to_string(data.size()) + " images);";
        if (transfer) text += " weights from " + o.transfer + ";";
        text.pop_back();
        log.line(text);
    }
    log.line("Arithmetic: " + precision_text);
    if (resuming) {
        std::snprintf(line, sizeof(line), "Resumed from %s at kimg %.1f", o.resume.c_str(), p.cur_nimg / 1e3);
        log.line(line);
    }

    std::vector<double> curve_x, curve_y;
    // A resumed run continues stats.jsonl and loss.png: rows of ticks after the state (written before a
    // kill) are dropped, the rest seed the curve.
    if (root && resuming) continue_stats(out / "stats.jsonl", p.tick, curve_x, curve_y);
    SigmaBandSums band_sums;  // this tick's per-sample statistics, on the training device
    std::optional<GraphStep> graph_step;
    if (o.cuda_graph == "on") {
        graph_step.emplace(GraphStep::Parts{*net, adam, ema_update, band_sums, loss_options, 1.0 / static_cast<double>(o.batch)},
                           device, device.is_cuda());
        log.line(device.is_cuda() ? "Step: CUDA graphs, the second step captured and every later one replayed"
                                  : "Step: the graph-ready step, run eagerly (the CPU has nothing to capture)");
    }
    auto tick_clock = std::chrono::steady_clock::now();
    double tick_clock_nimg = p.cur_nimg;
    TrainSummary summary;
    report::ProgressBar bar(static_cast<int64_t>(o.tick_kimg * 1000), "tick");
    const bool show_bar = o.progress_bar && root;
    const int64_t local_batch = o.batch / group.size(), rounds = local_batch / o.batch_gpu;

    StopSignal stop_signal;  // the first SIGINT/SIGTERM ends the loop after a step, with a training state
    std::string last_good_state = resuming ? o.resume : "";
    while (p.cur_nimg < total_nimg) {
        if (graph_step)
            graph_step->begin_step();
        else
            net->zero_grad();
        for (int64_t r = 0; r < rounds; ++r) {
            const int64_t first_sample = group.rank() * local_batch + r * o.batch_gpu;
            RoundData d = step_data.round(p.step, first_sample, rng, group);
            if (graph_step) {
                const diffusion::LossTerms terms = graph_step->round(d.batch, p.step, first_sample, rng.noise, rng.dropout);
                if (observe_round) observe_round(p.step, terms);
                continue;
            }
            diffusion::LossTerms terms =
                o.whole_dataset_target()
                    ? diffusion::diffusion_loss(
                          *net, d.batch,
                          diffusion::DatasetTarget{o.target, {d.batch.images, step_data.all_images(), d.rows},
                                                   o.knn_k, o.rbatch},
                          loss_options, rng.noise, rng.dropout)
                    : diffusion::diffusion_loss(*net, d.batch, loss_options, rng.noise, rng.dropout);
            backward(mul(sum(terms.loss), 1.0 / static_cast<double>(o.batch)));
            band_sums.add(terms.sigma, terms.loss, terms.ess);  // queued on the device, read once per tick
            if (observe_round) observe_round(p.step, terms);
        }
        std::vector<Tensor> params = net->parameters();
        all_reduce_gradients(group, params);  // before the NaN guard, as one process would see them
        const double lr = nn::edm_learning_rate(o.lr, p.cur_nimg, o.lr_rampup_mimg * 1000);
        p.cur_nimg += static_cast<double>(o.batch);
        p.step++;
        const double ema_beta = nn::Ema::beta(static_cast<double>(o.batch), p.cur_nimg, o.ema_mimg * 1000, o.ema_rampup);
        if (graph_step) {
            graph_step->end_step(lr, ema_beta);
        } else {
            nn::nan_to_num_grads(params);
            adam.step(lr);
            ema_update.update(ema_beta);
        }

        if (const int sig = stop_requested(group)) {
            if (show_bar) bar.finish();
            const double kimg = p.cur_nimg / 1e3;
            const std::string path = (out / kimg_file_name("training-state", kimg, o.tick_kimg)).string();
            check_finite_before_saving(*net, *ema, kimg, last_good_state);
            if (root) save_training_state(path, o, *net, *ema, adam, p);
            char msg[160];
            std::snprintf(msg, sizeof msg, "Stopped by %s after step %lld (kimg %.3f).", StopSignal::name(sig),
                          (long long)p.step, kimg);
            log.line(std::string(msg) + " Training state: " + path);
            throw Error(std::string(msg) + " Continue with: train_cifar --resume " + path);
        }
        bool done = p.cur_nimg >= total_nimg;
        if (show_bar) bar.update(static_cast<int64_t>(p.cur_nimg - p.tick_start_nimg));
        if (!done && p.cur_nimg < p.tick_start_nimg + o.tick_kimg * 1000) continue;

        // ---- end of a tick: report, then snapshots ----
        if (show_bar) bar.finish();
        SigmaBands bands = band_sums.read_and_reset();
        sum_over_ranks(group, bands);
        check_ranks_agree(group, *net, *ema, adam, p.tick);
        double loss = bands.total_loss() / std::max(bands.total_count(), 1.0);
        if (!std::isfinite(loss))
            throw Error("training diverged: the mean loss of tick " + std::to_string(p.tick) + " is " +
                        std::to_string(loss) + " at kimg " + std::to_string(p.cur_nimg / 1e3) + "; lower --lr and " +
                        (last_good_state.empty() ? std::string("start again (no training state was written yet)")
                                                 : "resume from the last training state, " + last_good_state));
        if (device.is_cuda()) cuda::synchronize();
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - tick_clock).count();
        const double imgs = p.cur_nimg - tick_clock_nimg, sec_per_kimg = secs / (imgs / 1e3);
        const double img_per_sec = imgs / secs, mem_gib = report::peak_memory_gib(device);
        // On a GPU the peak is per tick, as in EDM's loop: tick 0's includes cuDNN's one-off algorithm
        // search (its scratch buffer), which would otherwise stand in every later line.
        if (device.is_cuda()) cuda::reset_peak();
        std::string ess_text;
        if (o.target != "dsm") {
            char e[160];
            std::snprintf(e, sizeof(e), "  ess[s<0.2] %.1f [0.2,1) %.1f [1,5) %.1f [>=5] %.1f", bands.ess_mean(0),
                          bands.ess_mean(1), bands.ess_mean(2), bands.ess_mean(3));
            ess_text = e;
        }
        std::snprintf(line, sizeof(line), "tick %-4lld kimg %-9.1f loss %-8.4f sec/kimg %-7.2f img/s %-8.1f mem %.2f GiB%s",
                      (long long)p.tick, p.cur_nimg / 1e3, loss, sec_per_kimg, img_per_sec, mem_gib,
                      ess_text.c_str());
        log.line(line);
        summary.last_loss = loss;
        bool snap = done || (o.snap_ticks > 0 && p.tick % o.snap_ticks == 0);
        bool dump = done || (o.dump_ticks > 0 && p.tick % o.dump_ticks == 0);
        double kimg = p.cur_nimg / 1e3;
        if (root) {
            json stats = {{"tick", p.tick},
                          {"kimg", kimg},
                          {"step", p.step},
                          {"loss", loss},
                          {"sec_per_kimg", sec_per_kimg},
                          {"img_per_sec", img_per_sec},
                          {"peak_mem_gib", mem_gib},
                          {"lr", nn::edm_learning_rate(o.lr, p.cur_nimg, o.lr_rampup_mimg * 1000)}};
            auto finite_or_null = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
            for (int b = 0; b < 4; ++b) {
                stats["loss_bands"][kSigmaBandNames[b]] = {{"count", bands.count[b]},
                                                              {"mean", finite_or_null(bands.loss_mean(b))},
                                                              {"var", finite_or_null(bands.loss_var(b))}};
                if (o.target != "dsm") stats["ess"][kSigmaBandNames[b]] = finite_or_null(bands.ess_mean(b));
            }
            if (snap && snapshot_metrics)
                for (const auto& [name, value] : snapshot_metrics(*ema, kimg)) stats[name] = finite_or_null(value);
            std::ofstream(out / "stats.jsonl", std::ios::app) << stats.dump() << "\n";
            curve_x.push_back(kimg);
            curve_y.push_back(loss);
            report::write_line_plot_png((out / "loss.png").string(), {{"loss", curve_x, curve_y, {31, 119, 180}}},
                                report::PlotOptions{.title = "training loss (" + target_name(o) + ")",
                                            .x_label = "kimg", .y_label = "loss", .log_y = true});
        }
        p.tick++;
        p.tick_start_nimg = p.cur_nimg;
        if (snap || dump) check_finite_before_saving(*net, *ema, kimg, last_good_state);
        if (snap) {
            summary.snapshot = (out / kimg_file_name("network-snapshot", kimg, o.tick_kimg)).string();
            if (root) nn::save_network(summary.snapshot, *ema);
        }
        if (dump) {
            summary.state = (out / kimg_file_name("training-state", kimg, o.tick_kimg)).string();
            if (root) save_training_state(summary.state, o, *net, *ema, adam, p);
            last_good_state = summary.state;
        }
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

}  // namespace stf::train
