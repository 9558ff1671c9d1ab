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
