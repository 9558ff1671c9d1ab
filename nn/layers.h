// EDM's building blocks (training/networks.py), one class per concept, arguments named as there:
// Linear, Conv2d with FIR up/down-sampling, GroupNorm, the two noise embeddings and UNetBlock.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace stf::nn {

// EDM's weight_init: xavier_uniform, xavier_normal, kaiming_uniform or kaiming_normal, then scaled.
struct Init {
    std::string mode = "kaiming_normal";
    double weight = 1;  // init_weight
    double bias = 0;    // init_bias
};
Tensor weight_init(const Shape& shape, const std::string& mode, int64_t fan_in, int64_t fan_out, Generator& gen);

class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool bias, const Init& init, Generator& gen);
    Tensor forward(const Tensor& x) const;  // x [n, in_features]
    int64_t in_features, out_features;
    Tensor weight, bias;  // [out, in], [out] or undefined
};

// A 2-D convolution ("same" padding, odd kernel or none) with optional 2x up- or down-sampling by
// the separable FIR filter `resample_filter`, fused into the convolution or run before it.
class Conv2d : public Module {
public:
    struct Options {
        bool bias = true, up = false, down = false, fused_resample = false;
        std::vector<double> resample_filter{1, 1};
        Init init;
    };
    Conv2d(int64_t in_channels, int64_t out_channels, int kernel, const Options& o, Generator& gen);
    // x float32 (or float64), or bf16 under mixed precision: the float32 weight is converted to x's
    // dtype. A bf16 convolution with a bias returns float32 (the bias is added in float32).
    Tensor forward(const Tensor& x) const;
    // The convolution without its bias (output in x's dtype), for a caller that adds `bias` inside its
    // next fused op.
    Tensor forward_unbiased(const Tensor& x) const;
    int64_t in_channels, out_channels;
    bool up, down, fused_resample;
    Tensor weight, bias, resample_filter;  // resample_filter [1, 1, f, f] when up or down

private:
    Tensor tiled_filter(int64_t channels, double gain, const Tensor& like) const;
};

// Group normalisation with min(num_groups, C / min_channels_per_group) groups.
class GroupNorm : public Module {
public:
    GroupNorm(int64_t num_channels, double eps = 1e-5, int num_groups = 32, int min_channels_per_group = 4);
    // y_dtype: the output's dtype if not x's (bf16 from a float32 x, for mixed precision).
    Tensor forward(const Tensor& x, std::optional<DType> y_dtype = std::nullopt) const;
    // silu(forward(x + offset[:, :, None, None])) as one op (group_norm_silu); offset [n, c] or undefined
    Tensor forward_silu(const Tensor& x, const Tensor& offset = Tensor(),
                        std::optional<DType> y_dtype = std::nullopt) const;
    // dropout(forward_silu(x, offset), p) as one op (group_norm_silu_dropout)
    Tensor forward_silu_dropout(const Tensor& x, const Tensor& offset, double p, bool train, Generator& gen,
                                std::optional<DType> y_dtype = std::nullopt) const;
    int num_groups;
    double eps;
    Tensor weight, bias;
};

// Sinusoidal embedding of a noise level: [cos(x f_i), sin(x f_i)], f_i = (1/max_positions)^(i / (C/2 - endpoint)).
class PositionalEmbedding : public Module {
public:
    PositionalEmbedding(int64_t num_channels, int max_positions = 10000, bool endpoint = false);
    Tensor forward(const Tensor& x) const;  // x [n] -> [n, num_channels]
    int64_t num_channels;
    int max_positions;
    bool endpoint;

private:
    // The frequencies on x's device and in its dtype, made at the first forward there: uploading them at
    // every call would put a copy from host memory inside a captured CUDA graph. Not a buffer: EDM's
    // checkpoints have none here.
    mutable Tensor freqs_;
};

// Random Fourier features: [cos(2 pi x f), sin(2 pi x f)] with fixed f ~ N(0, scale^2) in buffer `freqs`.
class FourierEmbedding : public Module {
public:
    FourierEmbedding(int64_t num_channels, double scale, Generator& gen);
    Tensor forward(const Tensor& x) const;
    Tensor freqs;
};

// The residual block: GroupNorm, SiLU, conv (maybe resampling), noise-embedding bias, GroupNorm, SiLU,
// dropout, conv, skip connection; then optional self-attention over all pixels.
class UNetBlock : public Module {
public:
    struct Options {
        int64_t emb_channels = 0;
        bool up = false, down = false, attention = false;
        int num_heads = 1;
        double dropout = 0, skip_scale = 1, eps = 1e-5;
        std::vector<double> resample_filter{1, 1};
        bool resample_proj = false, adaptive_scale = true;
        Init init, init_zero{"kaiming_normal", 0, 0}, init_attn;
    };
    UNetBlock(int64_t in_channels, int64_t out_channels, const Options& o, Generator& gen);
    Tensor forward(const Tensor& x, const Tensor& emb, Generator& dropout_gen) const;
    int64_t in_channels, out_channels;

private:
    Tensor attention(const Tensor& x) const;
    bool mixed() const;                            // activation_dtype() is bf16
    Tensor activation(const Tensor& t) const;      // t as a convolution's input: bf16 when mixed()
    std::optional<DType> norm_output_dtype() const;  // a GroupNorm's output dtype before a convolution
    Options o_;
    int num_heads_;
    std::shared_ptr<GroupNorm> norm0_, norm1_, norm2_;
    std::shared_ptr<Conv2d> conv0_, conv1_, skip_, qkv_, proj_;
    std::shared_ptr<Linear> affine_;
};

}  // namespace stf::nn
