// Training and using the feature classifier (metrics/classifier.h): the loop behind ./train_classifier, kept
// here so ./stf_compare and the tests can run it in-process; accuracy; features for the Fréchet distance.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "metrics/classifier.h"

namespace stf::metrics {

struct ClassifierTrainOptions {
    std::string data;                  // training images with labels (default: Debian's Fashion-MNIST)
    std::string test_data;             // labelled test images ("": the test split beside `data`)
    std::string out = "classifier.safetensors";
    int64_t max_images = 0;            // use only the first N training images (0: all)
    int64_t max_test_images = 0;       // evaluate on only the first N test images (0: all)
    ClassifierConfig net;
    double epochs = 2;                 // passes over the training images (ignored when steps > 0)
    int64_t steps = 0;                 // optimiser steps (0: from epochs)
    int64_t batch = 128;
    double lr = 2e-3;                  // Adam; cosine decay to 0 over the run
    uint64_t seed = 0;
    std::string device = "cpu";
    int64_t log_every = 100;           // progress line every N steps (0: none)
};

struct ClassifierTrainResult {
    int64_t steps = 0;
    std::vector<double> losses;        // mean cross-entropy of every step
    double test_accuracy = 0;          // on the test images
    int64_t test_images = 0;
    double seconds = 0;
    std::string checkpoint;            // path written
    std::string data_source, test_source;
};

// Trains, evaluates on the test set, writes the checkpoint (temporary file + rename) with metadata
// "test_accuracy" and "data". Prints progress lines to stdout. Throws stf::Error on bad options, data
// without labels, class labels outside the network's classes, or a non-finite loss.
ClassifierTrainResult train_classifier(const ClassifierTrainOptions& options);

// Fraction of `data` classified correctly (its labels are required).
double classifier_accuracy(const Classifier& net, const data::ImageDataset& data, Device device, int64_t batch = 256);

// Penultimate features of images [N, C, H, W] in [-1, 1] (any float dtype, CPU): float64 CPU [N, feature_dim].
// Runs in eval mode without gradients, `batch` images at a time on `device`.
Tensor classifier_features(const Classifier& net, const Tensor& images, Device device, int64_t batch = 256);
// The same for a whole dataset (scaled to [-1, 1] as in training).
Tensor classifier_features(const Classifier& net, const data::ImageDataset& data, Device device, int64_t batch = 256);

}  // namespace stf::metrics
