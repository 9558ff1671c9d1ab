// The full CIFAR-10 networks: exact parameter counts and EDM's tensor names (construction only).
#include <doctest/doctest.h>

#include <set>

#include "nn/precond.h"

using namespace stf;
using namespace stf::nn;

namespace {
std::set<std::string> names(const Module& m) {
    std::set<std::string> out;
    for (auto& [n, t] : m.state_dict()) out.insert(n);
    return out;
}
}  // namespace

TEST_CASE("DDPM++ has EDM's parameter count and tensor names") {
    Generator gen(0);
    SongUNetConfig c = SongUNetConfig::ddpmpp();
    EDMPrecond net(c, 0.5, gen);
    CHECK(net.num_parameters() == 55732739);
    CHECK(net.state_dict().size() == 424);
    std::set<std::string> n = names(net);
    for (const char* want : {"model.enc.32x32_conv.weight", "model.enc.16x16_block0.qkv.weight",
                             "model.dec.32x32_aux_conv.bias", "model.enc.16x16_down.conv0.resample_filter",
                             "model.map_layer0.weight", "model.dec.8x8_in0.proj.weight", "model.dec.16x16_block4.norm2.bias"})
        CHECK_MESSAGE(n.count(want), want);
    CHECK_FALSE(n.count("model.map_noise.freqs"));
    c.augment_dim = 9;
    Generator gen2(0);
    EDMPrecond aug(c, 0.5, gen2);
    CHECK(aug.num_parameters() == 55733891);
    CHECK(aug.state_dict().size() == 425);
}

TEST_CASE("NCSN++ has EDM's parameter count and tensor names") {
    Generator gen(0);
    SongUNetConfig c = SongUNetConfig::ncsnpp();
    EDMPrecond net(c, 0.5, gen);
    CHECK(net.num_parameters() == 56395523);
    CHECK(net.state_dict().size() == 431);
    std::set<std::string> n = names(net);
    CHECK(n.count("model.map_noise.freqs"));
    CHECK(n.count("model.enc.16x16_aux_residual.weight"));
    c.augment_dim = 9;
    Generator gen2(0);
    EDMPrecond aug(c, 0.5, gen2);
    CHECK(aug.num_parameters() == 56397827);
    CHECK(aug.state_dict().size() == 432);
}

TEST_CASE("forward FLOPs: DDPM++ at 32x32x3 is 42.4 GFLOP per image (docs/design.md)") {
    SongUNetConfig c = SongUNetConfig::ddpmpp();
    double gflop = forward_flops(c) / 1e9;
    // The figure has three digits: the count must round to 42.4 (within 0.12%). Counting the PyTorch reference
    // network's convolution, attention and linear calls the same way gives 42.38 (tools/torch_reference_bench.py).
    CHECK(gflop >= 42.35);
    CHECK(gflop < 42.45);
    c.augment_dim = 9;  // the augmentation labels add one 9 x 128 linear layer
    CHECK(forward_flops(c) / 1e9 - gflop == doctest::Approx(2 * 9 * 128 / 1e9));
}

TEST_CASE("forward FLOPs: a tiny SongUNet counted by hand") {
    // One level at 4x4, 4 channels, one block, no attention resolutions, 1 image channel, embedding 4 wide.
    SongUNetConfig c = SongUNetConfig::ddpmpp();
    c.img_resolution = 4;
    c.in_channels = c.out_channels = 1;
    c.model_channels = 4;
    c.channel_mult = {1};
    c.channel_mult_emb = 1;
    c.num_blocks = 1;
    c.attn_resolutions = {};
    const double px = 16;                                  // output pixels of every convolution
    double mapping = 2 * 4 * 4 + 2 * 4 * 4;                // map_layer0, map_layer1 (4 -> 4)
    double conv_in = 2 * 1 * 4 * 9 * px;                   // enc.4x4_conv 1 -> 4, 3x3
    double block = 2 * 4 * 4 * 9 * px * 2 + 2 * 4 * 4;    // conv0 and conv1 4 -> 4, affine
    double attention = 2 * 4 * 12 * px + 2 * (2 * px * px * 4) + 2 * 4 * 4 * px;  // qkv, two products, proj
    double wide = 2 * 8 * 4 * 9 * px + 2 * 4 * 4 + 2 * 4 * 4 * 9 * px + 2 * 8 * 4 * px;  // 8 -> 4 with a 1x1 skip
    double aux = 2 * 4 * 1 * 9 * px;                       // dec.4x4_aux_conv 4 -> 1
    // Encoder: conv, block0. Decoder: in0 (always attends), in1, block0 and block1 (each 4 + 4 skip channels).
    double expected = mapping + conv_in + block + (block + attention) + block + 2 * wide + aux;
    CHECK(expected == 66016);
    CHECK(forward_flops(c) == expected);
}

TEST_CASE("class-conditional DDPM++ (EDM's --cond=1): map_label holds EDM's names and shapes") {
    Generator gen(0);
    SongUNetConfig c = SongUNetConfig::ddpmpp();
    c.label_dim = 10;
    c.augment_dim = 9;
    EDMPrecond net(c, 0.5, gen);
    // The unconditional network with augmentation labels, plus a linear layer from 10 classes to the
    // 128-wide noise embedding (weight and bias), as EDM's SongUNet builds map_label.
    CHECK(net.num_parameters() == 55733891 + 10 * 128 + 128);
    CHECK(net.state_dict().size() == 427);
    for (auto& [name, t] : net.state_dict()) {
        if (name == "model.map_label.weight") CHECK(t.shape() == (Shape{128, 10}));
        if (name == "model.map_label.bias") CHECK(t.shape() == (Shape{128}));
    }
    CHECK(names(net).count("model.map_label.weight"));
}

TEST_CASE("EDM's FFHQ/AFHQv2 64x64 networks: four levels, attention at 16x16 only") {
    // train.py --arch=ddpmpp|ncsnpp --cres=1,2,2,2 (EDM's README), 3 channels at 64x64.
    for (const char* arch : {"ddpmpp", "ncsnpp"}) {
        CAPTURE(arch);
        SongUNetConfig c = std::string(arch) == "ddpmpp" ? SongUNetConfig::ddpmpp() : SongUNetConfig::ncsnpp();
        c.img_resolution = 64;
        c.channel_mult = {1, 2, 2, 2};
        c.dropout = 0.05;
        Generator gen(0);
        EDMPrecond net(c, 0.5, gen);
        std::set<std::string> n = names(net);
        for (const char* want : {"model.enc.64x64_conv.weight", "model.enc.64x64_block3.conv1.weight",
                                 "model.enc.32x32_down.conv0.weight", "model.enc.8x8_block3.conv1.weight",
                                 "model.enc.16x16_block0.qkv.weight", "model.dec.8x8_in0.qkv.weight",
                                 "model.dec.16x16_block4.qkv.weight", "model.dec.64x64_aux_conv.weight"})
            CHECK_MESSAGE(n.count(want), want);
        for (const char* absent : {"model.enc.32x32_block0.qkv.weight", "model.enc.8x8_block0.qkv.weight",
                                   "model.dec.64x64_block4.qkv.weight", "model.enc.4x4_conv.weight"})
            CHECK_MESSAGE(!n.count(absent), absent);
        int64_t widest = 0;
        for (auto& [name, t] : net.state_dict())
            if (name == "model.enc.64x64_block0.conv0.weight") widest = t.size(0);
        CHECK(widest == 128);  // channel_mult 1 at 64x64
    }
}
