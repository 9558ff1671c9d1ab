// Fine-tuning from a network snapshot, as EDM's train.py --transfer: the run starts from the snapshot's
// weights (stf's own, or an EDM/STF checkpoint converted by tools/edm_to_safetensors.py) with a fresh
// optimiser, and its EMA starts equal to those weights.
#pragma once
#include <string>

#include "nn/network.h"

namespace stf::train {

// What differs between the snapshot's architecture and the run's, one "name: snapshot X, this run Y (flag)"
// per field, "; "-separated; "" when they match. Dropout and label dropout are training settings, not
// weights, and may differ (the run's apply).
std::string transfer_mismatch(const nn::NetworkConfig& snapshot, const nn::NetworkConfig& run);

// Copies the weights of `snapshot` (loaded from `path`) into net, after checking its config against `run`:
// an stf::Error naming the file and every mismatch, with the flags that set them, otherwise.
void copy_transfer_weights(const std::string& path, const nn::LoadedNetwork& snapshot, const nn::NetworkConfig& run,
                           nn::Precond& net);

}  // namespace stf::train
