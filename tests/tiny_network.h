// The small networks the tests train and sample: an EDM preset cut to two resolutions of `channels` and
// 2 x `channels` with one block each, so that a step takes milliseconds on the CPU. Callers set what
// else they need (dropout, resolution, augmentation labels).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/network.h"

namespace stf::test {

inline nn::NetworkConfig tiny_network(int64_t channels, std::vector<int64_t> attn_resolutions,
                                      const std::string& arch = "ddpmpp") {
    nn::NetworkConfig c = nn::NetworkConfig::preset(arch);
    c.unet.model_channels = channels;
    c.unet.channel_mult = {1, 2};
    c.unet.num_blocks = 1;
    c.unet.attn_resolutions = std::move(attn_resolutions);
    return c;
}

}  // namespace stf::test
