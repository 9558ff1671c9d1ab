// Whole networks in files: config JSON, save/load round trip, and the errors a user can meet.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "nn/network.h"
#include "nn/safetensors.h"
#include "tests/tiny_network.h"

using namespace stf;
using namespace stf::nn;
namespace fs = std::filesystem;

namespace {
NetworkConfig tiny(const std::string& arch) {
    NetworkConfig c = test::tiny_network(16, {4}, arch);
    c.unet.img_resolution = 8;
    c.unet.augment_dim = 9;
    return c;
}
struct TempDir {
    fs::path path = fs::temp_directory_path() / ("stf_test_network_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
};
}  // namespace

TEST_CASE("config JSON round trip and validation") {
    NetworkConfig c = tiny("ncsnpp");
    c.precond = "vp";
    NetworkConfig back = NetworkConfig::from_json(c.to_json());
    CHECK(back.to_json() == c.to_json());
    CHECK(back.unet.resample_filter == std::vector<double>{1, 3, 3, 1});
    CHECK_THROWS_WITH_AS(NetworkConfig::from_json("{\"precond\": \"xx\"}"), doctest::Contains("precond 'xx'"), Error);
    CHECK_THROWS_WITH_AS(NetworkConfig::from_json("{\"num_blocks\": \"four\"}"), doctest::Contains("'num_blocks'"), Error);
    CHECK_THROWS_WITH_AS(NetworkConfig::from_json("not json"), doctest::Contains("not valid JSON"), Error);
    CHECK_THROWS_WITH_AS(NetworkConfig::preset("unet"), doctest::Contains("unknown architecture 'unet'"), Error);
}

TEST_CASE("save then load gives the same weights, bit for bit, and the same function") {
    TempDir dir;
    for (const char* arch : {"ddpmpp", "ncsnpp"}) {
        CAPTURE(arch);
        Generator gen(3);
        std::shared_ptr<Precond> net = make_network(tiny(arch), gen);
        std::string path = (dir.path / (std::string(arch) + ".safetensors")).string();
        save_network(path, *net);
        LoadedNetwork loaded = load_network(path);
        CHECK(loaded.config.to_json() == config_of(*net).to_json());
        NamedTensors a = net->state_dict(), b = loaded.net->state_dict();
        REQUIRE(a.size() == b.size());
        for (size_t i = 0; i < a.size(); ++i) {
            CHECK(a[i].first == b[i].first);
            CHECK(a[i].second.to_vector() == b[i].second.to_vector());
        }
        net->eval();
        loaded.net->eval();
        Generator data(4);
        Tensor x = ops::randn({2, 3, 8, 8}, data), sigma = ops::from_vector({0.5, 3.0}, {2});
        Tensor aug = ops::randn({2, 9}, data);
        NoGradGuard no_grad;
        CHECK(net->forward(x, sigma, Tensor(), aug, data).to_vector() ==
              loaded.net->forward(x, sigma, Tensor(), aug, data).to_vector());
    }
}

TEST_CASE("weights of another architecture, a missing config and a truncated file fail clearly") {
    TempDir dir;
    Generator gen(5);
    std::shared_ptr<Precond> ncsn = make_network(tiny("ncsnpp"), gen);
    std::shared_ptr<Precond> ddpm = make_network(tiny("ddpmpp"), gen);
    // NCSN++ weights into a DDPM++ network: names differ (freqs, aux_residual) and filters differ in shape.
    std::map<std::string, Tensor> state;
    for (auto& [n, t] : ncsn->state_dict()) state[n] = t;
    std::string message;
    try {
        ddpm->load_state_dict(state);
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK(message.find("4 unexpected:") != std::string::npos);
    CHECK(message.find("model.map_noise.freqs") != std::string::npos);
    CHECK(message.find("with other shapes: model.map_augment.weight (file [32, 9], model [16, 9])") != std::string::npos);

    std::string no_config = (dir.path / "plain.safetensors").string();
    save_safetensors(no_config, ddpm->state_dict());
    CHECK_THROWS_WITH_AS(load_network(no_config), doctest::Contains("no 'config' metadata"), Error);

    std::string good = (dir.path / "good.safetensors").string();
    save_network(good, *ddpm);
    std::string cut = (dir.path / "cut.safetensors").string();
    fs::copy_file(good, cut);
    fs::resize_file(cut, fs::file_size(good) / 2);
    CHECK_THROWS_AS(load_network(cut), Error);
    CHECK_THROWS_WITH_AS(load_network((dir.path / "absent.safetensors").string()), doctest::Contains("absent.safetensors"),
                         Error);
}

// A snapshot's config is read from the file: a config of 10^7 blocks built the network (out of memory)
// before its weights were compared; --cres 0 ended in "GroupNorm: 0 channels cannot form 0 groups".
TEST_CASE("a config's sizes are checked before the network is built") {
    TempDir dir;
    Generator gen(5);
    std::shared_ptr<Precond> ddpm = make_network(tiny("ddpmpp"), gen);
    auto with_config = [&](const std::string& name, const NetworkConfig& c, const std::string& format = "stf") {
        std::string path = (dir.path / name).string();
        save_safetensors(path, ddpm->state_dict(), {{"config", c.to_json()}, {"format", format}});
        return path;
    };
    NetworkConfig huge = tiny("ddpmpp");
    huge.unet.num_blocks = 10000000;
    CHECK_THROWS_WITH_AS(load_network(with_config("huge.safetensors", huge)), doctest::Contains("num_blocks 10000000"),
                         Error);
    NetworkConfig wide = tiny("ddpmpp");
    wide.unet.num_blocks = 64;
    wide.unet.model_channels = 1024;
    CHECK_THROWS_WITH_AS(load_network(with_config("wide.safetensors", wide)), doctest::Contains("the file holds"), Error);
    NetworkConfig zero = tiny("ddpmpp");
    zero.unet.channel_mult = {0, 2};
    CHECK_THROWS_WITH_AS(load_network(with_config("zero.safetensors", zero)), doctest::Contains("channel_mult [0, 2]"),
                         Error);
    NetworkConfig attn = tiny("ddpmpp");
    attn.unet.attn_resolutions = {999};
    CHECK_THROWS_WITH_AS(make_network(attn, gen), doctest::Contains("attention resolutions (--attn) [999]"), Error);
    CHECK_THROWS_WITH_AS(load_network(with_config("state.safetensors", tiny("ddpmpp"), "stf-training-state")),
                         doctest::Contains("is a training state"), Error);
    CHECK(load_network(with_config("ok.safetensors", tiny("ddpmpp"))).net->num_parameters() == ddpm->num_parameters());
}

TEST_CASE("a class-conditional network given no labels sees all-zero labels, as EDM's preconditioning does") {
    NetworkConfig c = tiny("ddpmpp");
    c.unet.augment_dim = 0;
    c.unet.label_dim = 3;
    Generator gen(2);
    std::shared_ptr<Precond> net = make_network(c, gen);
    net->eval();
    // EDM initialises the last convolutions at 1e-5 of their scale, so at initialisation a label moves the
    // output by about one float32 rounding step; weights of unit scale make its effect plain.
    std::map<std::string, Tensor> state;
    for (auto& [name, t] : net->state_dict()) state[name] = ops::randn(t.shape(), gen);
    net->load_state_dict(state);
    Tensor x = ops::randn({2, 3, 8, 8}, gen), sigma = ops::full({2}, 0.7);
    Tensor onehot = ops::from_vector({0, 1, 0, 0, 0, 1}, {2, 3});
    Generator unused;
    std::vector<double> none = net->forward(x, sigma).to_vector();
    CHECK(none == net->forward(x, sigma, ops::zeros({2, 3}), Tensor(), unused).to_vector());
    std::vector<double> labelled = net->forward(x, sigma, onehot, Tensor(), unused).to_vector();
    double moved = 0;
    for (size_t i = 0; i < none.size(); ++i) moved = std::max(moved, std::abs(labelled[i] - none[i]));
    CHECK(moved > 1e-3);
    CHECK_THROWS_WITH_AS(net->forward(x, sigma, ops::zeros({2, 4}), Tensor(), unused),
                         doctest::Contains("class labels should be [2, 3]"), Error);
}
