// ./stf_compare: training targets (DSM, STF, STF over the whole dataset, kNN) on Fashion-MNIST (or CIFAR-10)
// with the same seeds and image budget: loss curves, loss variance per noise-level band, sample grids and a
// Fréchet distance on classifier features.
#include <cstdio>
#include <sstream>
#include <string>

#include "experiments/comparison.h"
#include "apps/common/flags.h"

using namespace stf;

static const char* kUsage = R"(usage: stf_compare --preset cpu|gpu [options]

Trains DDPM++-small once per training target (--targets) with the same seed, data order, noise draws and
image budget; draws the same seeds' images from each final EMA snapshot with EDM's Heun sampler; and
measures each set's Fréchet distance (FD) to the test set on the penultimate features of a small classifier
trained by this framework on the dataset's labels (./train_classifier; trained here first unless
--classifier is given). A row "data" gives the FD of as many real training images: the floor at this sample
size; fd_std is the FD's standard deviation over bootstrap resamples of the samples (the noise of drawing N
images, not of training). Writes under --outdir: results.csv (method,kimg,steps,final_loss,fd,fd_std,samples,
train_seconds,sample_seconds,img_per_sec; rewritten after each target), loss_bands.csv (per target and sigma
band: images, loss mean and variance, mean ESS over the second half of the ticks), loss.png (each run's loss
per tick), loss_bands_var.png (variance of the per-image loss per sigma band and tick, from each run's
stats.jsonl), samples_<target>.png and .npy, one run directory per target, and classifier.safetensors when
trained here.

targets (--targets, comma-separated, in the order they run; default dsm,stf,stf-all,knn)
  dsm                  the clean image (denoising score matching)
  stf                  Stable Target Field over a reference batch of --rbatch images
  stf-all              Stable Target Field over the whole training set (E[x | y] without augmentation)
  knn                  the nearest-neighbour estimator (Niedoba et al. 2024): --k neighbours, --rbatch draws

presets (each flag given explicitly still wins)
  --preset cpu         DDPM++-small (train_cifar --preset small's network) on Fashion-MNIST on the CPU:
                       4.8 kimg per target (150 steps of 32), reference batch 256 (kNN: 256 draws, k 2048),
                       500 samples each with Heun 10 (19 evaluations), classifier 2 epochs (unless
                       --classifier); docs/experiments.md has the times
  --preset gpu         the same network on CUDA, sized for one 8-minute call on an H200 (not run yet):
                       1000 kimg per target (batch 512), reference batch 1024 (kNN: 1024 draws, k 2048),
                       10000 samples each with Heun 18, classifier 10 epochs (unless --classifier)
data and output
  --data PATH          training images (default: Debian's Fashion-MNIST, /usr/share/datasets/fashion-mnist)
  --test-data PATH     test images for the FD (default: the test split beside --data)
  --max-images N       train on only the first N images (default: all)
  --max-test-images N  compare against only the first N test images (default: all)
  --outdir DIR         (default compare-runs/cpu or compare-runs/gpu)
budget
  --kimg K             thousands of training images per method
  --targets LIST       the methods above           --k K        kNN neighbours (default 2048)
  --batch N            images per step            --rbatch N   STF reference batch; kNN draws
  --lr LR              learning rate              --tick KIMG  stats line every KIMG
  --ema MIMG           EMA half-life              --seed N     seed of both runs (default 0)
  --samples N          images drawn per method (seeds 0..N-1)
  --heun N             Heun steps (2N-1 network evaluations; cpu preset 10, gpu preset 18)
  --sample-batch N     images per sampler batch
network (for quick tests)
  --cbase N  --cres 1,2,2  --blocks N  --attn 16
classifier
  --classifier FILE    use this checkpoint from ./train_classifier instead of training one
  --classifier-epochs E / --classifier-steps N   budget when training one here
  --rescore            no training or sampling: recompute the FDs of a finished comparison in --outdir from
                       its samples_*.npy and runs, with --classifier (e.g. a better-trained one)
  --bootstrap N        resamples of each model's samples for the FD's spread, fd_std (default 50; 0: none)
  --device cpu|cuda    (default: the preset's)
)";

int main(int argc, char** argv) {
    return apps::run_program("stf_compare", argc, argv, kUsage, [&](apps::Flags& f) {
        std::string preset = f.str("preset", "");
        STF_CHECK(!preset.empty(), "give --preset cpu or --preset gpu (then any flag to change it)");
        experiments::CompareOptions o = experiments::compare_preset(preset);
        train::TrainOptions& t = o.train;
        t.data = f.str("data", t.data);
        o.test_data = f.str("test-data", "");
        t.max_images = f.integer("max-images", 0);
        o.max_test_images = f.integer("max-test-images", 0);
        o.outdir = f.str("outdir", o.outdir);
        t.duration_mimg = f.real("kimg", t.duration_mimg * 1e3) / 1e3;
        t.batch = f.integer("batch", t.batch);
        t.rbatch = f.integer("rbatch", t.rbatch);
        t.knn_k = f.integer("k", t.knn_k);
        if (f.given("targets")) {
            o.targets.clear();
            std::stringstream list(f.str("targets", ""));
            for (std::string name; std::getline(list, name, ',');) o.targets.push_back(name);
        }
        t.lr = f.real("lr", t.lr);
        t.tick_kimg = f.real("tick", t.tick_kimg);
        t.ema_mimg = f.real("ema", t.ema_mimg);
        t.seed = static_cast<uint64_t>(f.integer("seed", 0));
        o.samples = f.integer("samples", o.samples);
        o.heun_steps = static_cast<int>(f.integer("heun", o.heun_steps));
        o.sample_batch = f.integer("sample-batch", o.sample_batch);
        apps::model_size_flags(f, t.net.unet);
        o.classifier = f.str("classifier", "");
        o.classifier_train.epochs = f.real("classifier-epochs", o.classifier_train.epochs);
        o.classifier_train.steps = f.integer("classifier-steps", 0);
        o.rescore = f.boolean("rescore");
        o.bootstrap = f.integer("bootstrap", o.bootstrap);
        t.device = f.str("device", t.device);
        f.check_all_used();
        STF_CHECK(t.max_images >= 0 && o.max_test_images >= 0, "--max-images and --max-test-images must be >= 0");
        experiments::run_comparison(o);
    });
}
