// ./train_classifier: the small CNN whose features ./stf_compare uses for its Fréchet distance.
#include <cstdio>

#include "metrics/classifier_training.h"
#include "apps/common/flags.h"

using namespace stf;

static const char* kUsage = R"(usage: train_classifier [options]

Trains the small image classifier of metrics/classifier.h on labelled images (Fashion-MNIST by default) with
Adam and a cosine learning-rate decay, prints its test accuracy, and writes it as a safetensors file with
metadata format "stf-classifier", config (the network's JSON), test_accuracy and data. ./stf_compare
computes its Fréchet distances on this network's penultimate features. About 8 minutes on 2 idle CPU cores
with the defaults.

  --data PATH          labelled training images: IDX (labels beside them) or CIFAR-10 binary
                       (default: Debian's Fashion-MNIST, /usr/share/datasets/fashion-mnist)
  --test-data PATH     labelled test images (default: the test split beside --data, e.g. t10k-images-idx3-ubyte.gz)
  --max-images N       use only the first N training images (default: all)
  --max-test-images N  evaluate on only the first N test images (default: all)
  --out FILE           checkpoint to write (default classifier.safetensors)
  --epochs E           passes over the training images (default 2; may be fractional)
  --steps N            optimiser steps instead of --epochs
  --batch N            images per step (default 128)
  --lr LR              Adam learning rate, decayed to 0 by a cosine (default 2e-3)
  --channels 16,32,64,128  channels per stage; each stage after the first halves the resolution; the
                       features are the last stage's channels, averaged over pixels (default 16,32,64,128)
  --convs N            3x3 convolutions per stage (default 2)
  --res R              input resolution: smaller images are padded to R x R (default 32, as the diffusion
                       models see Fashion-MNIST)
  --seed N             random seed for the initial weights and the data order (default 0)
  --log-every N        progress line every N steps (default 100)
  --device cpu|cuda    (default cpu)
)";

int main(int argc, char** argv) {
    return apps::run_program("train_classifier", argc, argv, kUsage, [&](apps::Flags& f) {
        metrics::ClassifierTrainOptions o;
        o.data = f.str("data", data::ImageDataset::default_fashion_mnist_path());
        o.test_data = f.str("test-data", "");
        o.max_images = f.integer("max-images", 0);
        o.max_test_images = f.integer("max-test-images", 0);
        o.out = f.str("out", o.out);
        o.epochs = f.real("epochs", o.epochs);
        o.steps = f.integer("steps", 0);
        o.batch = f.integer("batch", o.batch);
        o.lr = f.real("lr", o.lr);
        o.net.channels = f.int_list("channels", o.net.channels);
        o.net.convs_per_stage = f.integer("convs", o.net.convs_per_stage);
        o.net.resolution = f.integer("res", o.net.resolution);
        o.seed = static_cast<uint64_t>(f.integer("seed", 0));
        o.log_every = f.integer("log-every", o.log_every);
        o.device = f.str("device", o.device);
        f.check_all_used();
        STF_CHECK(o.max_images >= 0 && o.max_test_images >= 0, "--max-images and --max-test-images must be >= 0");
        STF_CHECK(o.steps >= 0, "--steps must be >= 0, got " << o.steps);
        metrics::train_classifier(o);
    });
}
