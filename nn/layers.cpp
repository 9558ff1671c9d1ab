#include "nn/layers.h"

#include <cmath>

namespace stf::nn {

Tensor weight_init(const Shape& shape, const std::string& mode, int64_t fan_in, int64_t fan_out, Generator& gen) {
    double fi = static_cast<double>(fan_in), fo = static_cast<double>(fan_out);
    auto uniform = [&](double bound) {  // bound * U(-1, 1)
        Tensor t = ops::empty(shape);
        ops::uniform_(t, -bound, bound, gen);
        return t;
    };
    auto normal = [&](double std) {
        Tensor t = ops::empty(shape);
        ops::normal_(t, 0.0, std, gen);
        return t;
    };
    if (mode == "xavier_uniform") return uniform(std::sqrt(6.0 / (fi + fo)));
    if (mode == "xavier_normal") return normal(std::sqrt(2.0 / (fi + fo)));
    if (mode == "kaiming_uniform") return uniform(std::sqrt(3.0 / fi));
    if (mode == "kaiming_normal") return normal(std::sqrt(1.0 / fi));
    throw Error("weight_init: unknown init mode '" + mode + "'");
}

static Tensor scaled(Tensor t, double s) {
    ops::unary_(UnaryOp::MulScalar, t, s);
    return t;
}

// ---- Linear ----------------------------------------------------------------------------------------

Linear::Linear(int64_t in, int64_t out, bool with_bias, const Init& init, Generator& gen)
    : in_features(in), out_features(out) {
    weight = register_parameter("weight", scaled(weight_init({out, in}, init.mode, in, out, gen), init.weight));
    if (with_bias) bias = register_parameter("bias", scaled(weight_init({out}, init.mode, in, out, gen), init.bias));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

// ---- Conv2d ----------------------------------------------------------------------------------------

Conv2d::Conv2d(int64_t in, int64_t out, int kernel, const Options& o, Generator& gen)
    : in_channels(in), out_channels(out), up(o.up), down(o.down), fused_resample(o.fused_resample) {
    STF_CHECK(!(o.up && o.down), "Conv2d: up and down at once");
    int64_t k2 = static_cast<int64_t>(kernel) * kernel;
    if (kernel) {
        weight = register_parameter("weight", scaled(weight_init({out, in, kernel, kernel}, o.init.mode, in * k2,
                                                                 out * k2, gen), o.init.weight));
        if (o.bias)
            bias = register_parameter("bias", scaled(weight_init({out}, o.init.mode, in * k2, out * k2, gen), o.init.bias));
    }
    if (o.up || o.down) {
        // The 2-D filter is the outer product of the 1-D taps, normalised to sum 1.
        const std::vector<double>& f = o.resample_filter;
        double total = 0;
        for (double v : f) total += v;
        int64_t n = static_cast<int64_t>(f.size());
        std::vector<double> f2(n * n);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j) f2[i * n + j] = f[i] * f[j] / (total * total);
        resample_filter = register_buffer("resample_filter", ops::from_vector(f2, {1, 1, n, n}));
    }
}

// A float32 weight converted (differentiably) to bf16 for a bf16 input under mixed precision, its
// gradient coming back to float32; otherwise t itself (other dtype mismatches stay errors).
static Tensor for_input(const Tensor& t, const Tensor& x) {
    return x.dtype() == DType::BF16 && t.dtype() == DType::F32 ? to(t, DType::BF16) : t;
}

// The filter repeated for a depthwise (groups = channels) convolution, in the dtype of `like`.
Tensor Conv2d::tiled_filter(int64_t channels, double gain, const Tensor& like) const {
    int64_t f = resample_filter.size(-1);
    Tensor t = ops::contiguous(ops::expand(resample_filter, {channels, 1, f, f}));
    return ops::to(gain == 1 ? t : ops::mul_scalar(t, gain), like.dtype());
}

Tensor Conv2d::forward(const Tensor& x) const {
    Tensor y = forward_unbiased(x);
    if (!bias.defined()) return y;
    // A bf16 y (mixed precision) widens to the float32 of its bias.
    return add(y.dtype() == DType::BF16 ? stf::to(y, bias.dtype()) : y, reshape(bias, {1, bias.size(0), 1, 1}));
}

Tensor Conv2d::forward_unbiased(const Tensor& x_in) const {
    Tensor x = x_in;
    const Tensor w = weight.defined() ? for_input(weight, x_in) : Tensor();
    int w_pad = weight.defined() ? static_cast<int>(weight.size(-1) / 2) : 0;
    int f_pad = resample_filter.defined() ? static_cast<int>((resample_filter.size(-1) - 1) / 2) : 0;
    if (fused_resample && up && weight.defined()) {
        x = conv_transpose2d(x, tiled_filter(in_channels, 4, x), Tensor(), 2, std::max(f_pad - w_pad, 0),
                             static_cast<int>(in_channels));
        x = conv2d(x, w, Tensor(), 1, std::max(w_pad - f_pad, 0));
    } else if (fused_resample && down && weight.defined()) {
        x = conv2d(x, w, Tensor(), 1, w_pad + f_pad);
        x = conv2d(x, tiled_filter(out_channels, 1, x), Tensor(), 2, 0, static_cast<int>(out_channels));
    } else {
        if (up) x = conv_transpose2d(x, tiled_filter(in_channels, 4, x), Tensor(), 2, f_pad, static_cast<int>(in_channels));
        if (down) x = conv2d(x, tiled_filter(in_channels, 1, x), Tensor(), 2, f_pad, static_cast<int>(in_channels));
        if (weight.defined()) x = conv2d(x, w, Tensor(), 1, w_pad);
    }
    return x;
}

// ---- GroupNorm -------------------------------------------------------------------------------------

GroupNorm::GroupNorm(int64_t num_channels, double eps_, int groups, int min_channels_per_group)
    : num_groups(static_cast<int>(std::min<int64_t>(groups, num_channels / min_channels_per_group))), eps(eps_) {
    STF_CHECK(num_groups >= 1 && num_channels % num_groups == 0,
              "GroupNorm: " << num_channels << " channels cannot form " << num_groups << " groups");
    weight = register_parameter("weight", ops::ones({num_channels}));
    bias = register_parameter("bias", ops::zeros({num_channels}));
}

Tensor GroupNorm::forward(const Tensor& x, std::optional<DType> y_dtype) const {
    return y_dtype ? group_norm(x, num_groups, weight, bias, eps, *y_dtype) : group_norm(x, num_groups, weight, bias, eps);
}
Tensor GroupNorm::forward_silu(const Tensor& x, const Tensor& offset, std::optional<DType> y_dtype) const {
    return group_norm_silu(x, num_groups, weight, bias, eps, offset, y_dtype);
}

Tensor GroupNorm::forward_silu_dropout(const Tensor& x, const Tensor& offset, double p, bool train, Generator& gen,
                                       std::optional<DType> y_dtype) const {
    return group_norm_silu_dropout(x, num_groups, weight, bias, eps, offset, p, train, gen, y_dtype);
}

// ---- noise embeddings ------------------------------------------------------------------------------

// x [n] times f [k] -> [n, k] (torch.ger)
static Tensor outer(const Tensor& x, const Tensor& f) {
    return mul(reshape(x, {x.numel(), 1}), reshape(f, {1, f.numel()}));
}

PositionalEmbedding::PositionalEmbedding(int64_t c, int max_pos, bool ep)
    : num_channels(c), max_positions(max_pos), endpoint(ep) {}

Tensor PositionalEmbedding::forward(const Tensor& x) const {
    int64_t half = num_channels / 2;
    if (!freqs_.defined() || freqs_.device() != x.device() || freqs_.dtype() != x.dtype()) {
        std::vector<double> f(half);
        for (int64_t i = 0; i < half; ++i)
            f[i] = std::pow(1.0 / max_positions, static_cast<double>(i) / static_cast<double>(half - (endpoint ? 1 : 0)));
        freqs_ = ops::to(ops::to(ops::from_vector(f, {half}), x.dtype()), x.device());
    }
    Tensor xf = outer(x, freqs_);
    return cat({cos(xf), sin(xf)}, 1);
}

FourierEmbedding::FourierEmbedding(int64_t num_channels, double scale, Generator& gen) {
    Tensor f = ops::randn({num_channels / 2}, gen);
    freqs = register_buffer("freqs", scaled(f, scale));
}

Tensor FourierEmbedding::forward(const Tensor& x) const {
    Tensor xf = outer(x, ops::mul_scalar(freqs, 2 * M_PI));
    return cat({cos(xf), sin(xf)}, 1);
}

// ---- UNetBlock -------------------------------------------------------------------------------------

UNetBlock::UNetBlock(int64_t in, int64_t out, const Options& o, Generator& gen)
    : in_channels(in), out_channels(out), o_(o), num_heads_(o.attention ? o.num_heads : 0) {
    Conv2d::Options resample{.bias = true, .up = o.up, .down = o.down, .fused_resample = false,
                             .resample_filter = o.resample_filter, .init = o.init};
    Conv2d::Options plain{.init = o.init}, zero{.init = o.init_zero}, attn{.init = o.init_attn};
    norm0_ = register_module("norm0", std::make_shared<GroupNorm>(in, o.eps));
    conv0_ = register_module("conv0", std::make_shared<Conv2d>(in, out, 3, resample, gen));
    affine_ = register_module("affine", std::make_shared<Linear>(o.emb_channels, out * (o.adaptive_scale ? 2 : 1),
                                                                 true, o.init, gen));
    norm1_ = register_module("norm1", std::make_shared<GroupNorm>(out, o.eps));
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(out, out, 3, zero, gen));
    if (out != in || o.up || o.down) {
        int kernel = (o.resample_proj || out != in) ? 1 : 0;
        skip_ = register_module("skip", std::make_shared<Conv2d>(in, out, kernel, resample, gen));
    }
    if (num_heads_) {
        STF_CHECK(out % num_heads_ == 0, "UNetBlock: " << num_heads_ << " heads do not divide " << out << " channels");
        norm2_ = register_module("norm2", std::make_shared<GroupNorm>(out, o.eps));
        qkv_ = register_module("qkv", std::make_shared<Conv2d>(out, out * 3, 1, attn, gen));
        proj_ = register_module("proj", std::make_shared<Conv2d>(out, out, 1, zero, gen));
    }
}

// The sum of two optional [c] biases (either may be undefined).
static Tensor bias_sum(const Tensor& a, const Tensor& b) {
    if (!a.defined()) return b;
    return b.defined() ? add(a, b) : a;
}

// EDM's block, with its elementwise steps fused: conv0's bias and the embedding enter norm1 as one
// [n, c] offset, and norm1, SiLU and dropout are one op (group_norm_silu_dropout, same mask as
// dropout() from the same generator); conv1 + skip + their biases, times skip_scale, is one
// scaled_residual. Same arithmetic as the unfused ops up to rounding.
//
// Mixed precision (activation_dtype() bf16): every convolution runs in bf16 with float32 weights
// converted on the way in. The GroupNorms before them store bf16, norm1 and scaled_residual read the
// convolutions' bf16 outputs, and the residual stream x, the embedding, the biases and the attention's
// softmax stay float32.
Tensor UNetBlock::forward(const Tensor& x_in, const Tensor& emb, Generator& dropout_gen) const {
    const std::optional<DType> store = norm_output_dtype();
    Tensor h = norm0_->forward_silu(x_in, Tensor(), store);
    Tensor params = affine_->forward(emb);  // [n, c] (or [n, 2c]: scale and shift)
    Tensor x;
    if (o_.adaptive_scale) {
        std::vector<Tensor> ss = split(unsqueeze(unsqueeze(params, 2), 3), {out_channels, out_channels}, 1);
        x = silu(add(ss[1], mul(norm1_->forward(conv0_->forward(h)), add(ss[0], 1.0))));
        x = activation(dropout(x, o_.dropout, is_training(), dropout_gen));
    } else {
        Tensor offset = conv0_->bias.defined() ? add(params, reshape(conv0_->bias, {1, out_channels})) : params;
        x = norm1_->forward_silu_dropout(conv0_->forward_unbiased(h), offset, o_.dropout, is_training(), dropout_gen,
                                         store);
    }
    x = conv1_->forward_unbiased(x);
    // A skip without weights (FIR resampling only) keeps the residual stream in float32.
    Tensor skip = skip_ ? skip_->forward_unbiased(skip_->weight.defined() ? activation(x_in) : x_in) : x_in;
    x = scaled_residual(x, skip, bias_sum(conv1_->bias, skip_ ? skip_->bias : Tensor()), o_.skip_scale);
    if (num_heads_) x = scaled_residual(proj_->forward_unbiased(activation(attention(x))), x, proj_->bias, o_.skip_scale);
    return x;
}

bool UNetBlock::mixed() const { return activation_dtype() == DType::BF16; }

// What a GroupNorm before a convolution stores: bf16 when mixed(), else its input's dtype.
std::optional<DType> UNetBlock::norm_output_dtype() const {
    return mixed() ? std::optional<DType>(DType::BF16) : std::nullopt;
}

// A float32 tensor entering a convolution, in the activation dtype.
Tensor UNetBlock::activation(const Tensor& t) const { return mixed() && t.dtype() != DType::BF16 ? stf::to(t, DType::BF16) : t; }

// Self-attention over the h*w pixels. EDM reshapes qkv's 3C channels to (n*heads, C/heads, 3, h*w), so
// channel 3c+i holds q (i = 0), k (1) or v (2) of channel c; self_attention computes it as one op, in
// float32 (the qkv convolution's bias add widens its bf16 output under mixed precision).
Tensor UNetBlock::attention(const Tensor& x) const {
    return self_attention(qkv_->forward(norm2_->forward(x, norm_output_dtype())), num_heads_);
}

}  // namespace stf::nn
