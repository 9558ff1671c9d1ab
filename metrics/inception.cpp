#include "metrics/inception.h"

#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include "nn/safetensors.h"
#include "tensor/ops.h"

namespace stf::metrics {

namespace {

void add_a(std::vector<InceptionLayer>& l, const std::string& p, int64_t in, int64_t pool_features) {
    l.push_back({p + ".branch1x1", in, 64, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch5x5_1", in, 48, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch5x5_2", 48, 64, 5, 5, 1, 2, 2});
    l.push_back({p + ".branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1});
    l.push_back({p + ".branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1});
    l.push_back({p + ".branch_pool", in, pool_features, 1, 1, 1, 0, 0});
}

void add_b(std::vector<InceptionLayer>& l, const std::string& p, int64_t in) {
    l.push_back({p + ".branch3x3", in, 384, 3, 3, 2, 0, 0});
    l.push_back({p + ".branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1});
    l.push_back({p + ".branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0});
}

void add_c(std::vector<InceptionLayer>& l, const std::string& p, int64_t in, int64_t c7) {
    l.push_back({p + ".branch1x1", in, 192, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch7x7_1", in, c7, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch7x7_2", c7, c7, 1, 7, 1, 0, 3});
    l.push_back({p + ".branch7x7_3", c7, 192, 7, 1, 1, 3, 0});
    l.push_back({p + ".branch7x7dbl_1", in, c7, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0});
    l.push_back({p + ".branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3});
    l.push_back({p + ".branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0});
    l.push_back({p + ".branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3});
    l.push_back({p + ".branch_pool", in, 192, 1, 1, 1, 0, 0});
}

void add_d(std::vector<InceptionLayer>& l, const std::string& p, int64_t in) {
    l.push_back({p + ".branch3x3_1", in, 192, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3_2", 192, 320, 3, 3, 2, 0, 0});
    l.push_back({p + ".branch7x7x3_1", in, 192, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3});
    l.push_back({p + ".branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0});
    l.push_back({p + ".branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0});
}

void add_e(std::vector<InceptionLayer>& l, const std::string& p, int64_t in) {
    l.push_back({p + ".branch1x1", in, 320, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3_1", in, 384, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3_2a", 384, 384, 1, 3, 1, 0, 1});
    l.push_back({p + ".branch3x3_2b", 384, 384, 3, 1, 1, 1, 0});
    l.push_back({p + ".branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0});
    l.push_back({p + ".branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1});
    l.push_back({p + ".branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1});
    l.push_back({p + ".branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0});
    l.push_back({p + ".branch_pool", in, 192, 1, 1, 1, 0, 0});
}

std::vector<InceptionLayer> make_layers() {
    std::vector<InceptionLayer> l;
    l.push_back({"Conv2d_1a_3x3", 3, 32, 3, 3, 2, 0, 0});
    l.push_back({"Conv2d_2a_3x3", 32, 32, 3, 3, 1, 0, 0});
    l.push_back({"Conv2d_2b_3x3", 32, 64, 3, 3, 1, 1, 1});
    l.push_back({"Conv2d_3b_1x1", 64, 80, 1, 1, 1, 0, 0});
    l.push_back({"Conv2d_4a_3x3", 80, 192, 3, 3, 1, 0, 0});
    add_a(l, "Mixed_5b", 192, 32);
    add_a(l, "Mixed_5c", 256, 64);
    add_a(l, "Mixed_5d", 288, 64);
    add_b(l, "Mixed_6a", 288);
    add_c(l, "Mixed_6b", 768, 128);
    add_c(l, "Mixed_6c", 768, 160);
    add_c(l, "Mixed_6d", 768, 160);
    add_c(l, "Mixed_6e", 768, 192);
    add_d(l, "Mixed_7a", 768);
    add_e(l, "Mixed_7b", 1280);
    add_e(l, "Mixed_7c", 2048);
    return l;
}

// The five tensors of a layer in the file, and each one's shape.
std::vector<std::pair<std::string, Shape>> layer_tensors(const InceptionLayer& l) {
    return {{l.name + ".conv.weight", {l.out, l.in, l.kh, l.kw}},
            {l.name + ".bn.weight", {l.out}},
            {l.name + ".bn.bias", {l.out}},
            {l.name + ".bn.running_mean", {l.out}},
            {l.name + ".bn.running_var", {l.out}}};
}

uint64_t fnv1a64(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double parse_number(const std::map<std::string, std::string>& metadata, const std::string& key,
                    const std::string& what, bool nonzero) {
    auto it = metadata.find(key);
    STF_CHECK(it != metadata.end(), "Inception weights " << what << ": metadata has no '" << key << "'");
    std::istringstream in(it->second);
    double v = 0;
    in >> v;
    STF_CHECK(!in.fail() && in.eof() && std::isfinite(v) && (v != 0 || !nonzero),
              "Inception weights " << what << ": metadata '" << key << "' = '" << it->second << "' is not a "
                                   << (nonzero ? "non-zero " : "") << "number");
    return v;
}

}  // namespace

const std::vector<InceptionLayer>& inception_layers() {
    static const std::vector<InceptionLayer> layers = make_layers();
    return layers;
}

namespace {
// Element i of the stream whose key is fnv1a64(name) ^ seed.
double uniform_at(uint64_t key, int64_t i) {
    const uint64_t z = key + static_cast<uint64_t>(i + 1) * 0x9e3779b97f4a7c15ull;
    return static_cast<double>(splitmix64(z) >> 11) * 0x1.0p-53;
}
}  // namespace

double seeded_uniform(const std::string& name, uint64_t seed, int64_t i) { return uniform_at(fnv1a64(name) ^ seed, i); }

InceptionWeights random_inception_weights(uint64_t seed, const std::string& resize) {
    STF_CHECK(resize == "half_pixel" || resize == "tf1",
              "random_inception_weights: resize must be half_pixel or tf1, got '" << resize << "'");
    InceptionWeights w;
    for (const InceptionLayer& l : inception_layers())
        for (const auto& [name, shape] : layer_tensors(l)) {
            int64_t n = 1;
            for (int64_t d : shape) n *= d;
            std::vector<double> v(static_cast<size_t>(n));
            const double bound = std::sqrt(6.0 / static_cast<double>(l.in * l.kh * l.kw));
            const bool conv = name.ends_with(".conv.weight");
            const bool positive = name.ends_with(".bn.weight") || name.ends_with(".bn.running_var");
            const uint64_t key = fnv1a64(name) ^ seed;
#pragma omp parallel for schedule(static) if (n > 65536)
            for (int64_t i = 0; i < n; ++i) {
                const double u = uniform_at(key, i);
                v[i] = conv ? (2 * u - 1) * bound : positive ? 0.5 + u : 0.2 * (2 * u - 1);
            }
            w.tensors.emplace_back(name, ops::from_vector(v, shape));
        }
    w.metadata["format"] = "stf-inception";
    w.metadata["source"] = "random (seed " + std::to_string(seed) + ")";
    w.metadata["resize"] = resize;
    w.metadata["input_offset"] = resize == "tf1" ? "128" : "127.5";
    w.metadata["input_scale"] = resize == "tf1" ? "128" : "127.5";
    return w;
}

InceptionV3 InceptionV3::load(const std::string& path, Device device) {
    nn::SafetensorsFile f = nn::load_safetensors(path);
    return InceptionV3(f.tensors, f.metadata, device, "'" + path + "'");
}

InceptionV3::InceptionV3(const nn::NamedTensors& tensors, const std::map<std::string, std::string>& metadata,
                         Device device, const std::string& what)
    : device_(device) {
    auto format = metadata.find("format");
    STF_CHECK(format != metadata.end() && format->second == "stf-inception",
              "Inception weights " << what << ": metadata format is "
                                   << (format == metadata.end() ? "missing" : "'" + format->second + "'")
                                   << ", expected 'stf-inception' (convert EDM's inception-2015-12-05.pkl or "
                                      "pytorch-fid's pt_inception-2015-12-05-6726825d.pth with "
                                      "tools/inception_to_safetensors.py)");
    auto resize = metadata.find("resize");
    STF_CHECK(resize != metadata.end() && (resize->second == "half_pixel" || resize->second == "tf1"),
              "Inception weights " << what << ": metadata 'resize' must be 'half_pixel' or 'tf1', got '"
                                   << (resize == metadata.end() ? "" : resize->second) << "'");
    input_.half_pixel = resize->second == "half_pixel";
    input_.offset = parse_number(metadata, "input_offset", what, false);
    input_.scale = parse_number(metadata, "input_scale", what, true);

    // Names and shapes first, so that a wrong file fails before any arithmetic.
    std::map<std::string, Tensor> by_name;
    for (const auto& [name, t] : tensors) by_name[name] = t;
    std::set<std::string> expected;
    for (const InceptionLayer& l : inception_layers())
        for (const auto& [name, shape] : layer_tensors(l)) {
            expected.insert(name);
            auto it = by_name.find(name);
            STF_CHECK(it != by_name.end(), "Inception weights " << what << ": tensor '" << name << "' is missing");
            STF_CHECK(it->second.shape() == shape, "Inception weights " << what << ": tensor '" << name << "' has shape "
                                                                        << shape_str(it->second.shape())
                                                                        << ", expected " << shape_str(shape));
        }
    for (const auto& [name, t] : tensors)
        STF_CHECK(expected.count(name), "Inception weights " << what << ": unexpected tensor '" << name
                                                             << "' (not part of Inception-v3's feature network)");

    for (const InceptionLayer& l : inception_layers()) {
        auto part = [&](const char* suffix) { return ops::to(ops::to(by_name.at(l.name + suffix), Device::cpu()), DType::F64); };
        // Fold the batch norm in float64, then store float32 on the device.
        Tensor factor = ops::div(part(".bn.weight"),
                                 ops::unary(UnaryOp::Sqrt, ops::add_scalar(part(".bn.running_var"), kBatchNormEps)));
        Tensor weight = ops::mul(part(".conv.weight"), ops::reshape(factor, {l.out, 1, 1, 1}));
        Tensor bias = ops::sub(part(".bn.bias"), ops::mul(part(".bn.running_mean"), factor));
        std::vector<double> check = factor.to_vector(), bcheck = bias.to_vector();
        check.insert(check.end(), bcheck.begin(), bcheck.end());
        for (double v : check)
            STF_CHECK(std::isfinite(v), "Inception weights " << what << ": layer '" << l.name
                                                             << "' has a non-finite batch-norm scale or shift "
                                                                "(negative running_var?)");
        convs_[l.name] = Conv{ops::to(ops::to(weight, DType::F32), device),
                              ops::to(ops::to(ops::reshape(bias, {1, l.out, 1, 1}), DType::F32), device), l.stride,
                              l.pad_h, l.pad_w};
    }
}

Tensor InceptionV3::layer(const std::string& name, const Tensor& x) const {
    const Conv& c = convs_.at(name);
    Tensor y = ops::conv2d_hw(x, c.weight, c.stride, c.pad_h, c.pad_w);
    ops::binary_(BinaryOp::Add, y, c.bias);
    ops::unary_(UnaryOp::Clamp, y, 0.0, std::numeric_limits<double>::infinity());  // ReLU
    return y;
}

Tensor InceptionV3::block_a(const std::string& p, const Tensor& x) const {
    Tensor b1 = layer(p + ".branch1x1", x);
    Tensor b5 = layer(p + ".branch5x5_2", layer(p + ".branch5x5_1", x));
    Tensor b3 = layer(p + ".branch3x3dbl_3", layer(p + ".branch3x3dbl_2", layer(p + ".branch3x3dbl_1", x)));
    Tensor bp = layer(p + ".branch_pool", ops::avg_pool2d(x, 3, 1, 1, /*count_include_pad*/ false));
    return ops::cat({b1, b5, b3, bp}, 1);
}

Tensor InceptionV3::block_b(const std::string& p, const Tensor& x) const {
    Tensor b3 = layer(p + ".branch3x3", x);
    Tensor bd = layer(p + ".branch3x3dbl_3", layer(p + ".branch3x3dbl_2", layer(p + ".branch3x3dbl_1", x)));
    return ops::cat({b3, bd, ops::max_pool2d(x, 3, 2)}, 1);
}

Tensor InceptionV3::block_c(const std::string& p, const Tensor& x) const {
    Tensor b1 = layer(p + ".branch1x1", x);
    Tensor b7 = layer(p + ".branch7x7_3", layer(p + ".branch7x7_2", layer(p + ".branch7x7_1", x)));
    Tensor bd = x;
    for (int i = 1; i <= 5; ++i) bd = layer(p + ".branch7x7dbl_" + std::to_string(i), bd);
    Tensor bp = layer(p + ".branch_pool", ops::avg_pool2d(x, 3, 1, 1, false));
    return ops::cat({b1, b7, bd, bp}, 1);
}

Tensor InceptionV3::block_d(const std::string& p, const Tensor& x) const {
    Tensor b3 = layer(p + ".branch3x3_2", layer(p + ".branch3x3_1", x));
    Tensor b7 = x;
    for (int i = 1; i <= 4; ++i) b7 = layer(p + ".branch7x7x3_" + std::to_string(i), b7);
    return ops::cat({b3, b7, ops::max_pool2d(x, 3, 2)}, 1);
}

// E_1 (Mixed_7b) pools its last branch with an average that excludes padding; E_2 (Mixed_7c) with a max.
Tensor InceptionV3::block_e(const std::string& p, const Tensor& x, bool max_pool) const {
    Tensor b1 = layer(p + ".branch1x1", x);
    Tensor a = layer(p + ".branch3x3_1", x);
    Tensor b = layer(p + ".branch3x3dbl_2", layer(p + ".branch3x3dbl_1", x));
    Tensor pooled = max_pool ? ops::max_pool2d(x, 3, 1, 1) : ops::avg_pool2d(x, 3, 1, 1, false);
    return ops::cat({b1, layer(p + ".branch3x3_2a", a), layer(p + ".branch3x3_2b", a), layer(p + ".branch3x3dbl_3a", b),
                     layer(p + ".branch3x3dbl_3b", b), layer(p + ".branch_pool", pooled)},
                    1);
}

Tensor InceptionV3::features(const Tensor& pixels) const {
    STF_CHECK(pixels.ndim() == 4 && (pixels.size(1) == 3 || pixels.size(1) == 1) && pixels.size(2) >= 1 &&
                  pixels.size(3) >= 1,
              "InceptionV3: expected pixels [N, 3 or 1, H, W], got " << describe(pixels));
    Tensor x = ops::to(ops::to(pixels, DType::F32), device_);
    if (x.size(1) == 1) x = ops::expand(x, {x.size(0), 3, x.size(2), x.size(3)});
    x = ops::mul_scalar(ops::add_scalar(x, -input_.offset), 1.0 / input_.scale);
    x = ops::resize_bilinear(x, kResolution, kResolution, input_.half_pixel);
    x = layer("Conv2d_2b_3x3", layer("Conv2d_2a_3x3", layer("Conv2d_1a_3x3", x)));
    x = ops::max_pool2d(x, 3, 2);
    x = layer("Conv2d_4a_3x3", layer("Conv2d_3b_1x1", x));
    x = ops::max_pool2d(x, 3, 2);
    x = block_a("Mixed_5d", block_a("Mixed_5c", block_a("Mixed_5b", x)));
    x = block_b("Mixed_6a", x);
    for (const char* p : {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"}) x = block_c(p, x);
    x = block_d("Mixed_7a", x);
    x = block_e("Mixed_7c", block_e("Mixed_7b", x, false), true);
    return ops::mean(x, {2, 3});  // the 8x8 average pool: [N, 2048]
}

}  // namespace stf::metrics
