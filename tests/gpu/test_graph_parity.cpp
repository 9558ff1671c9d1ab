// CUDA graphs against eager execution: the graph-ready optimiser step (constants read from memory)
// against the CPU, a captured step replayed against the same steps run eagerly, the capture pool
// keeping the graph's memory from eager code, host waits refused inside a capture, and random draws
// keyed to a row key in memory, captured once and replayed under new keys.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <memory>
#include <utility>
#include <vector>

#include "tests/gpu/parity.h"
#include "autograd/functions.h"
#include "cuda/runtime.h"
#include "diffusion/sampler.h"
#include "nn/graph_forward.h"
#include "nn/network.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tests/temp_files.h"
#include "tests/tiny_network.h"
#include "train/training_loop.h"

using namespace stf;

namespace {

Tensor randn_on(const Shape& shape, uint64_t seed, Device device) {
    Generator g(seed);
    return ops::to(ops::randn(shape, g), device);
}

struct Model {
    std::vector<Tensor> params, ema;
};

Model make_model(Device device) {
    Model m;
    m.params = {randn_on({70000}, 1, device), randn_on({3, 5}, 2, device), randn_on({129}, 3, device)};
    for (Tensor& p : m.params) {
        p.set_requires_grad();
        m.ema.push_back(ops::clone(p));
    }
    return m;
}

Tensor gradient_at(const Tensor& p, size_t i, int step) {
    return ops::to(ops::mul_scalar(randn_on(p.shape(), 100 + 10 * step + i, Device::cpu()), std::pow(10.0, step - 4)),
                   p.device());
}

void set_gradients(Model& m, int step) {
    for (size_t i = 0; i < m.params.size(); ++i) m.params[i].set_grad(gradient_at(m.params[i], i, step));
}

void check_equal(const Model& got, const Model& want) {
    for (size_t i = 0; i < want.params.size(); ++i) {
        CHECK(got.params[i].to_vector() == want.params[i].to_vector());
        CHECK(got.ema[i].to_vector() == want.ema[i].to_vector());
    }
}

double lr_at(int step) { return nn::edm_learning_rate(1e-2, 64.0 * step, 0.2); }
double beta_at(int step) { return nn::Ema::beta(64, 64.0 * (step + 1), 0.5, 0.05); }

}  // namespace

TEST_CASE("graph-ready Adam and EMA: CUDA equals the CPU bit for bit") {
    Model cpu = make_model(Device::cpu()), gpu = make_model(Device::cuda());
    nn::Adam a_cpu(cpu.params), a_gpu(gpu.params);
    nn::Ema e_cpu(cpu.params, cpu.ema), e_gpu(gpu.params, gpu.ema);
    for (int s = 0; s < 4; ++s) {
        set_gradients(cpu, s);
        set_gradients(gpu, s);
        a_cpu.step(lr_at(s));
        e_cpu.update(beta_at(s));
        a_gpu.stage(lr_at(s));
        a_gpu.apply_staged();
        e_gpu.stage(beta_at(s));
        e_gpu.apply_staged();
    }
    check_equal(gpu, cpu);
}

TEST_CASE("a captured optimiser step replayed equals the same steps run eagerly") {
    Model eager = make_model(Device::cuda()), graphed = make_model(Device::cuda());
    nn::Adam a_eager(eager.params), a_graph(graphed.params);
    nn::Ema e_eager(eager.params, eager.ema), e_graph(graphed.params, graphed.ema);
    cuda::Graph graph;
    for (int s = 0; s < 6; ++s) {
        set_gradients(eager, s);
        a_eager.step(lr_at(s));
        e_eager.update(beta_at(s));

        // The graph reads the gradients where it captured them: later steps copy into those tensors.
        for (size_t i = 0; i < graphed.params.size(); ++i) {
            if (s == 0) {
                graphed.params[i].set_grad(gradient_at(graphed.params[i], i, s));
            } else {
                Tensor g = graphed.params[i].grad();
                ops::copy_(g, gradient_at(graphed.params[i], i, s));
            }
        }
        a_graph.stage(lr_at(s));
        e_graph.stage(beta_at(s));
        if (s == 0) {  // warm-up, eagerly
            a_graph.apply_staged();
            e_graph.apply_staged();
            continue;
        }
        if (!graph.ready()) {
            graph.begin_capture();
            a_graph.apply_staged();
            e_graph.apply_staged();
            graph.end_capture();  // recorded, not run
        }
        graph.replay();
    }
    check_equal(graphed, eager);
}

TEST_CASE("a captured computation replays on new inputs, and its memory stays the graph's") {
    const Device dev = Device::cuda();
    Tensor x = randn_on({4096}, 7, dev), w = randn_on({4096}, 8, dev);
    Tensor y;
    cuda::Graph graph;
    graph.begin_capture();
    y = ops::mul(ops::add(x, w), w);  // its intermediate and output come from the graph's pool
    graph.end_capture();
    Tensor eager = ops::zeros({4096}, DType::F32, dev);  // allocated after the capture: not from the pool
    ops::copy_(eager, randn_on({4096}, 9, dev));
    const std::vector<double> eager_before = eager.to_vector();
    for (uint64_t seed : {10, 11}) {
        ops::copy_(x, randn_on({4096}, seed, dev));
        graph.replay();
        CHECK(y.to_vector() == ops::mul(ops::add(x, w), w).to_vector());
    }
    CHECK(eager.to_vector() == eager_before);
}

TEST_CASE("a host read inside a capture is refused with a clear error, and the capture still ends") {
    Tensor x = randn_on({16}, 12, Device::cuda());
    cuda::Graph graph;
    graph.begin_capture();
    CHECK(cuda::capturing());
    CHECK_THROWS_WITH(x.to_vector(), doctest::Contains("inside a CUDA graph capture"));
    CHECK_THROWS_WITH(cuda::synchronize(), doctest::Contains("inside a CUDA graph capture"));
    Tensor y = ops::mul_scalar(x, 2.0);
    graph.end_capture();
    CHECK_FALSE(cuda::capturing());
    graph.replay();
    std::vector<double> want = x.to_vector();
    for (double& v : want) v *= 2;
    CHECK(y.to_vector() == want);
}

TEST_CASE("draws keyed to a row key in device memory: CUDA equals the CPU, and a replayed capture follows the key") {
    auto on_gpu = std::make_shared<RowKey>(Device::cuda());
    auto on_cpu = std::make_shared<RowKey>(Device::cpu());
    // Uniform and Bernoulli draws are bit for bit the CPU's (cuda/philox.h); the normal's log/cos may
    // differ in the last ulp, so it is held to the parity bound.
    for (auto [step, first_row] : {std::pair<uint64_t, uint64_t>{3, 0}, {77, 512}}) {
        Generator g_gpu(9), g_cpu(9);
        on_gpu->set(step, first_row);
        on_cpu->set(step, first_row);
        g_gpu.key_rows(on_gpu);
        g_cpu.key_rows(on_cpu);
        CHECK(ops::rand({4, 33}, g_gpu, DType::F32, Device::cuda()).to_vector() == ops::rand({4, 33}, g_cpu).to_vector());
        CHECK(test::rel_error(ops::randn({4, 65}, g_gpu, DType::F32, Device::cuda()), ops::randn({4, 65}, g_cpu)) < 1e-6);
        CHECK(ops::bernoulli({4, 9}, 0.4, g_gpu, DType::F32, Device::cuda()).to_vector() ==
              ops::bernoulli({4, 9}, 0.4, g_cpu).to_vector());
    }
    // A key on the CPU cannot serve a draw on the GPU.
    Generator wrong(9);
    wrong.key_rows(on_cpu);
    CHECK_THROWS_WITH(ops::rand({2}, wrong, DType::F32, Device::cuda()), doctest::Contains("must live on the draw's device"));

    // Capture a draw once; each replay draws the numbers of the key set before it.
    Generator captured(9);
    on_gpu->set(1, 0);
    Tensor out;
    cuda::Graph graph;
    graph.begin_capture();
    captured.key_rows(on_gpu);
    out = ops::rand({4, 33}, captured, DType::F32, Device::cuda());
    graph.end_capture();
    for (uint64_t step : {2, 5, 6}) {
        on_gpu->set(step, 64);
        graph.replay();
        Generator by_value(9);
        by_value.key_rows(step, 64);
        CHECK(out.to_vector() == ops::rand({4, 33}, by_value).to_vector());
    }
}

namespace {

// A CIFAR-10 binary directory of 5 x 40 random-looking images (data/dataset.h reads data_batch_*.bin).
std::string write_small_cifar(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    uint32_t state = 12345;
    for (int f = 1; f <= 5; ++f) {
        std::string bytes;
        for (int r = 0; r < 40; ++r) {
            bytes.push_back(static_cast<char>(r % 10));
            for (int i = 0; i < 3 * 32 * 32; ++i) {
                state = state * 1664525u + 1013904223u;
                bytes.push_back(static_cast<char>(state >> 24));
            }
        }
        std::ofstream(dir / ("data_batch_" + std::to_string(f) + ".bin"), std::ios::binary) << bytes;
    }
    return dir.string();
}

train::TrainOptions graph_run(const std::string& data, const std::filesystem::path& out, const std::string& target,
                              const std::string& precision, const std::string& cuda_graph) {
    train::TrainOptions o;
    o.data = data;
    o.outdir = out.string();
    o.nosubdir = true;
    o.net = test::tiny_network(16, {16});
    o.net.unet.dropout = 0.1;
    o.target = target;
    o.rbatch = 64;
    o.batch = 32;
    o.batch_gpu = 16;
    o.duration_mimg = 32 * 8 / 1e6;
    o.lr_rampup_mimg = 32 * 4 / 1e6;
    o.ema_mimg = 0.001;
    o.augment = 0.3;
    o.tick_kimg = 32 * 8 / 1e3;
    o.device = "cuda";
    o.precision = precision;
    o.progress_bar = false;
    o.cuda_graph = cuda_graph;
    return o;
}

}  // namespace

// Replays against eager steps. cuDNN may pick other algorithms in the two runs, so the weights are held
// to the parity bound rather than compared bit for bit.
TEST_CASE("training with --cuda-graph on ends within parity of --cuda-graph off (DSM and STF, fp32 and bf16)") {
    test::TempDir dir("stf_gpu_graph_step");
    const std::string data = write_small_cifar(dir.path / "cifar");
    for (const char* target : {"dsm", "stf"})
        for (const char* precision : {"fp32", "bf16"}) {
            CAPTURE(target);
            CAPTURE(precision);
            const std::string tag = std::string(target) + "-" + precision;
            const train::TrainSummary off = train::training_loop(graph_run(data, dir.path / (tag + "-off"), target, precision, "off"));
            const train::TrainSummary on = train::training_loop(graph_run(data, dir.path / (tag + "-on"), target, precision, "on"));
            CHECK(on.steps == 8);
            const nn::NamedTensors a = nn::load_safetensors(off.state).tensors, b = nn::load_safetensors(on.state).tensors;
            REQUIRE(a.size() == b.size());
            double worst = 0;
            std::string worst_name;
            for (size_t i = 0; i < a.size(); ++i) {
                CHECK(a[i].first == b[i].first);
                const double err = test::rel_error(b[i].second, a[i].second);
                if (err >= worst) worst = err, worst_name = a[i].first;
            }
            MESSAGE(tag, ": largest relative difference ", worst, " (", worst_name, ")");
            CHECK(worst < (std::string(precision) == "bf16" ? 1e-3 : 1e-5));
        }
}

// The samplers' network evaluation as a graph (nn/graph_forward.h): replays equal direct evaluations
// bit for bit (the same kernels on the same inputs), each batch shape gets its own graph, and Heun
// through replays equals Heun through direct calls.
TEST_CASE("GraphForward: replayed network evaluations equal direct ones, per batch shape") {
    nn::NetworkConfig config = test::tiny_network(16, {16});
    config.unet.in_channels = config.unet.out_channels = 3;
    config.unet.img_resolution = 32;
    Generator init(3);
    std::shared_ptr<nn::Precond> net = nn::make_network(config, init);
    net->to(Device::cuda());
    net->eval();
    auto direct = [&](const Tensor& x, const Tensor& s) {
        NoGradGuard no_grad;
        return net->forward(x, s);
    };
    nn::GraphForward graphed([&](const std::vector<Tensor>& in) { return direct(in[0], in[1]); }, true);
    for (int64_t b : {4, 7})
        for (int call = 0; call < 4; ++call) {
            CAPTURE(b);
            CAPTURE(call);
            Tensor x = randn_on({b, 3, 32, 32}, 40 + call, Device::cuda());
            Tensor s = ops::full({b}, 0.5 + call, DType::F32, Device::cuda());
            const std::vector<double> want = direct(x, s).to_vector();
            CHECK(graphed({x, s}).to_vector() == want);
        }
    CHECK(graphed.graphs() == 2);
    CHECK(graphed.replays() == 6);  // calls 2-4 of each shape

    diffusion::SamplerOptions so;
    so.num_steps = 4;
    Generator g(5);
    const Tensor latents = ops::randn({4, 3, 32, 32}, g, DType::F64);
    auto denoiser = [&](bool use_graph) {
        return [&, use_graph](const Tensor& x, double sigma) {
            Tensor xd = ops::to(ops::to(x, DType::F32), Device::cuda());
            Tensor s = ops::full({x.size(0)}, sigma, DType::F32, Device::cuda());
            return ops::to(ops::to(use_graph ? graphed({xd, s}) : direct(xd, s), Device::cpu()), DType::F64);
        };
    };
    CHECK(diffusion::edm_sample(denoiser(true), latents, so).to_vector() ==
          diffusion::edm_sample(denoiser(false), latents, so).to_vector());
}
