// ./train_cifar: EDM training (Karras et al. 2022) with the DSM, the Stable Target Field or the
// nearest-neighbour target.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "apps/common/flags.h"
#include "apps/common/target_flags.h"
#include "metrics/snapshot_fid.h"
#include "train/run_dir.h"
#include "train/training_loop.h"

using namespace stf;

static const char* kUsage = R"(usage: train_cifar [options]

Trains EDM's DDPM++ or NCSN++ on CIFAR-10 (or any dataset below) with the DSM target, the Stable Target
Field target (--target stf, or --stf) or the nearest-neighbour target (--target knn). Defaults are the
STF paper's CIFAR-10 recipe.

data and output
  --data PATH          EDM's dataset ZIP (dataset_tool.py's, or ./dataset_tool's) or a folder of PNGs in its
                       layout, any resolution, 1 or 3 channels, labels in dataset.json; a CIFAR-10 binary
                       directory (cifar-10-batches-bin); or IDX images (.gz or not), e.g. Fashion-MNIST from
                       Debian's dataset-fashion-mnist (default for --preset small)
  --cond               class-conditional: the dataset's labels go to the network (EDM's --cond=1); with
                       --target stf each image's reference batch is drawn from its own class
  --label-dropout P    with --cond, drop a sample's label (all zeros) with probability P, for classifier-free
                       guidance (sample --guidance); default 0
  --xflip              EDM's dataset x-flips: the dataset doubled with mirrored images
  --max-images N       use only the first N images (default: all)
  --outdir DIR         runs go to DIR/NNNNN-<data>-<cond|uncond>-<arch>-<precond>-gpus<G>-batch<B>-<precision>,
                       NNNNN the next free id (default training-runs)
  --desc TEXT          appended to the run directory's name
  --nosubdir           write into --outdir itself
  --preset NAME        small: a small DDPM++ on Fashion-MNIST on the CPU that ends in minutes, written into
                       training-runs/small (--nosubdir); each flag given explicitly still wins
network
  --arch ddpmpp|ncsnpp EDM's CIFAR-10 architectures (default ddpmpp)
  --precond edm|vp|ve  preconditioning and matching loss (default edm)
  --cbase N            model_channels (default 128)
  --cres 2,2,2         channel multiplier per resolution (default 2,2,2)
  --blocks N           residual blocks per resolution (default 4)
  --attn 16            attention resolutions (default 16; 0: none)
  --res R              pad smaller images to R x R (default 32; larger images keep their size)
  --dropout P          dropout probability (default 0.13)
objective
%s  --rbatch-scope S     stf with several ranks: local (each round's own reference batch, as the reference
                       code) or global (every rank's reference batches gathered: n x ranks images)
optimisation
  --batch N            images per optimiser step, over all ranks (default 512)
  --batch-gpu N        images per forward/backward round on one rank; rounds accumulate gradients
                       (default: --batch / ranks)
  --duration MIMG      training length in millions of images (default 200)
  --lr LR              learning rate (default 1e-3), ramped up linearly over --lr-rampup MIMG (default 10)
  --ema MIMG           EMA half-life in millions of images (default 0.5); --ema-rampup R (default 0.05)
  --augment P          augmentation probability (default 0.12; 0 turns it off)
  --seed N             random seed (default 0)
progress and checkpoints
  --tick KIMG          progress line every KIMG thousand images (default 50)
  --snap N             network snapshot every N ticks (default 50); always at the end
  --dump N             training state every N ticks (default 500); always at the end
  --resume FILE|DIR|auto  continue from a training-state-*.safetensors, or a run directory's newest one,
                       with the options the state holds; --duration (extend), --batch-gpu, --no-progress,
                       --cuda-graph, --dist-timeout may change, any other flag set to another value than the state's is
                       refused. auto: resume the run these flags would write if it has a training state,
                       else start it (for preempted jobs)
  --transfer FILE      start from a network snapshot's weights (ours, or an EDM/STF checkpoint converted by
                       tools/edm_to_safetensors.py) with a fresh optimiser and the EMA equal to them; the
                       network flags must describe the snapshot's network. As EDM, --ema-rampup defaults to 0
  --no-progress        no progress bar between ticks
  --device cpu|cuda    (default cuda)
  --precision MODE     fp32 (default; TF32 off), tf32 (CUDA tensor cores), or bf16: mixed precision, the
                       residual blocks' convolutions and the activations between them in bf16, float32
                       master weights, the rest TF32 on CUDA (emulated on the CPU, for checking numerics)
  --cuda-graph on|off  replay each round and optimiser step as a CUDA graph, captured at the second step
                       (default off; not yet run on a GPU). DSM and STF with a reference batch, without
                       --cond; on the CPU, on runs the same graph-ready step eagerly

several processes (built where MPI is installed; one rank per GPU)
  mpirun -np 8 ./train_cifar --stf ...   each rank trains on --batch / 8 images of every step
  --metrics fid50k     FID of the EMA network at every snapshot (fidN: N images, e.g. fid10k, fid1000;
                       default none), Heun 18 steps on the training device, in stats.jsonl and fid.png
  --fid-ref FILE       reference statistics for --metrics (EDM's fid-refs/*.npz or ./fid ref's output)
  --fid-net FILE       Inception weights (default inception-2015-12-05.safetensors; docs/fid.md)
  --fid-batch N        images per sampler batch for --metrics (default 256 on CUDA, 16 on the CPU)
  --dist-timeout S     seconds a rank waits for the others in a collective before failing (default 600)
)";

// The run's options from the flags (every flag but the --metrics/--fid ones).
static train::TrainOptions options_from_flags(apps::Flags& f) {
    train::TrainOptions o;
    std::string preset = f.str("preset", "");
    if (preset == "small") {
        o = train::TrainOptions::small();  // about 3 minutes on 2 CPU cores
    } else {
        STF_CHECK(preset.empty(), "unknown --preset '" << preset << "' (known: small)");
        o.net.unet.dropout = 0.13;
    }
    std::string arch = f.str("arch", "ddpmpp");
    nn::SongUNetConfig base = o.net.unet;
    o.net = nn::NetworkConfig::preset(arch);
    if (preset == "small") {
        o.net.unet.model_channels = base.model_channels;
        o.net.unet.channel_mult = base.channel_mult;
        o.net.unet.num_blocks = base.num_blocks;
    }
    o.net.unet.dropout = f.real("dropout", base.dropout);
    o.net.precond = f.str("precond", "edm");
    apps::model_size_flags(f, o.net.unet);
    o.pad_to = f.integer("res", o.pad_to);
    o.data = f.str("data", o.data);
    o.max_images = f.integer("max-images", o.max_images);
    o.cond = f.boolean("cond");
    o.net.unet.label_dropout = f.real("label-dropout", 0);
    o.xflip = f.boolean("xflip");
    o.outdir = f.str("outdir", o.outdir);
    o.desc = f.str("desc", "");
    o.nosubdir = o.nosubdir || f.boolean("nosubdir");
    o.transfer = f.str("transfer", "");
    apps::target_flags(f, o);
    o.rbatch_scope = f.str("rbatch-scope", o.rbatch_scope);
    o.batch = f.integer("batch", o.batch);
    o.batch_gpu = f.integer("batch-gpu", 0);
    o.duration_mimg = f.real("duration", o.duration_mimg);
    o.lr = f.real("lr", o.lr);
    o.lr_rampup_mimg = f.real("lr-rampup", o.lr_rampup_mimg);
    o.ema_mimg = f.real("ema", o.ema_mimg);
    // EDM's --transfer turns the EMA ramp-up off: the EMA of a pretrained network keeps its half-life.
    o.ema_rampup = f.real("ema-rampup", o.transfer.empty() ? o.ema_rampup : 0);
    o.augment = f.real("augment", o.augment);
    o.seed = static_cast<uint64_t>(f.integer("seed", 0));
    o.tick_kimg = f.real("tick", o.tick_kimg);
    o.snap_ticks = f.integer("snap", o.snap_ticks);
    o.dump_ticks = f.integer("dump", o.dump_ticks);
    o.resume = f.str("resume", "");
    o.device = f.str("device", o.device);
    o.precision = f.str("precision", o.precision);
    o.cuda_graph = f.on_off("cuda-graph", o.cuda_graph == "on") ? "on" : "off";
    o.progress_bar = !f.boolean("no-progress");
    o.dist_timeout = f.real("dist-timeout", o.dist_timeout);
    return o;
}

// The flattened option keys the flags set: those where the options differ from the preset's defaults.
static std::vector<std::string> explicitly_set(const train::TrainOptions& o, const std::string& preset) {
    std::vector<std::string> args = {"train_cifar"};
    if (!preset.empty()) args.insert(args.end(), {"--preset", preset});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    apps::Flags none(static_cast<int>(argv.size()), argv.data(), "");
    const nlohmann::json base = nlohmann::json::parse(options_from_flags(none).to_json()).flatten();
    const nlohmann::json given = nlohmann::json::parse(o.to_json()).flatten();
    std::vector<std::string> keys;
    for (auto& [key, value] : given.items())
        if (!base.contains(key) || base[key] != value) keys.push_back(key);
    return keys;
}

static std::string usage() {
    std::string text = kUsage;
    return text.replace(text.find("%s"), 2, apps::kTargetFlagsUsage);
}

int main(int argc, char** argv) {
    const std::string text = usage();
    return apps::run_program("train_cifar", argc, argv, text.c_str(), [&](apps::Flags& f) {
        train::TrainOptions o = options_from_flags(f);
        std::string metrics = f.str("metrics", "none"), fid_ref = f.str("fid-ref", "");
        std::string fid_net = f.str("fid-net", "inception-2015-12-05.safetensors");
        int64_t fid_batch = f.integer("fid-batch", o.device == "cpu" ? 16 : 256);
        f.check_all_used();
        o.explicitly_set = explicitly_set(o, f.given("preset") ? f.str("preset", "") : "");
        // --resume auto with --transfer: the first start transfers, a restart resumes (its state has the weights).
        STF_CHECK(o.transfer.empty() || o.resume.empty() || o.resume == "auto",
                  "--transfer and --resume cannot be given together (a resumed run has its own weights)");
        STF_CHECK(!o.data.empty() || (!o.resume.empty() && o.resume != "auto"),
                  "no dataset: give --data PATH (or --preset small)");
        // The run directory, and with --resume DIR|auto the training state to continue from ("" for auto
        // when this run has none yet: it starts).
        train::choose_run_directory(o, train::ProcessGroup::world(o.dist_timeout));
        if (!o.resume.empty() && !f.given("duration")) o.duration_mimg = 0;  // 0: keep the resumed run's duration
        // FID at snapshots: the hook is built (weights and reference loaded) before training starts.
        train::SnapshotMetrics snapshot_metrics;
        if (metrics != "none") {
            STF_CHECK(!fid_ref.empty(), "--metrics " << metrics << " needs --fid-ref FILE.npz (reference statistics)");
            auto fid = std::make_shared<metrics::SnapshotFid>(metrics, fid_ref, fid_net, Device::parse(o.device),
                                                              o.outdir.empty() ? "." : o.outdir, fid_batch);
            snapshot_metrics = [fid](const nn::Precond& ema, double kimg) { return (*fid)(ema, kimg); };
        }
        train::training_loop(o, snapshot_metrics);
    });
}
