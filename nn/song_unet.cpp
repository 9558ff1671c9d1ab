#include "nn/song_unet.h"

#include <cmath>

namespace stf::nn {

SongUNetConfig SongUNetConfig::ddpmpp() {
    SongUNetConfig c;
    c.channel_mult = {2, 2, 2};
    c.embedding_type = "positional";
    c.channel_mult_noise = 1;
    c.encoder_type = "standard";
    c.decoder_type = "standard";
    c.resample_filter = {1, 1};
    return c;
}

SongUNetConfig SongUNetConfig::ncsnpp() {
    SongUNetConfig c = ddpmpp();
    c.embedding_type = "fourier";
    c.channel_mult_noise = 2;
    c.encoder_type = "residual";
    c.resample_filter = {1, 3, 3, 1};
    return c;
}

namespace {
thread_local std::vector<LayerTrace>* g_trace = nullptr;

int64_t count(const NamedTensors& ts) {
    int64_t n = 0;
    for (auto& [name, t] : ts) n += t.numel();
    return n;
}

void trace(const std::string& name, const Module& m, const Tensor& out) {
    if (g_trace) g_trace->push_back({name, out.shape(), count(m.named_parameters()), count(m.named_buffers())});
}
}  // namespace

void set_layer_trace(std::vector<LayerTrace>* t) { g_trace = t; }

static bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

void validate_config(const SongUNetConfig& c) {
    STF_CHECK(c.embedding_type == "positional" || c.embedding_type == "fourier",
              "SongUNet: embedding_type '" << c.embedding_type << "' (expected positional or fourier)");
    STF_CHECK(c.encoder_type == "standard" || c.encoder_type == "skip" || c.encoder_type == "residual",
              "SongUNet: encoder_type '" << c.encoder_type << "' (expected standard, skip or residual)");
    STF_CHECK(c.decoder_type == "standard" || c.decoder_type == "skip",
              "SongUNet: decoder_type '" << c.decoder_type << "' (expected standard or skip)");
    const SongUNetLimits lim;
    auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
    STF_CHECK(in(c.model_channels, 1, lim.max_channels),
              "SongUNet: model_channels " << c.model_channels << " (expected 1.." << lim.max_channels << ")");
    STF_CHECK(in(static_cast<int64_t>(c.channel_mult.size()), 1, lim.max_levels),
              "SongUNet: channel_mult has " << c.channel_mult.size() << " levels (expected 1.." << lim.max_levels << ")");
    for (int64_t m : c.channel_mult)
        STF_CHECK(in(m, 1, lim.max_channel_mult),
                  "SongUNet: channel_mult " << shape_str(c.channel_mult) << " (each 1.." << lim.max_channel_mult << ")");
    STF_CHECK(in(c.num_blocks, 1, lim.max_blocks),
              "SongUNet: num_blocks " << c.num_blocks << " (expected 1.." << lim.max_blocks << ")");
    STF_CHECK(in(c.img_resolution, 1, lim.max_resolution),
              "SongUNet: img_resolution " << c.img_resolution << " (expected 1.." << lim.max_resolution << ")");
    STF_CHECK(in(c.in_channels, 1, lim.max_image_channels) && in(c.out_channels, 1, lim.max_image_channels),
              "SongUNet: image channels " << c.in_channels << " -> " << c.out_channels << " (expected 1.."
                                          << lim.max_image_channels << ")");
    STF_CHECK(in(c.label_dim, 0, lim.max_label_dim) && in(c.augment_dim, 0, lim.max_label_dim),
              "SongUNet: label_dim " << c.label_dim << ", augment_dim " << c.augment_dim << " (expected 0.."
                                     << lim.max_label_dim << ")");
    STF_CHECK(in(c.channel_mult_emb, 1, lim.max_emb_mult) && in(c.channel_mult_noise, 1, lim.max_emb_mult),
              "SongUNet: channel_mult_emb " << c.channel_mult_emb << ", channel_mult_noise " << c.channel_mult_noise
                                            << " (expected 1.." << lim.max_emb_mult << ")");
    STF_CHECK(c.dropout >= 0 && c.dropout < 1 && c.label_dropout >= 0 && c.label_dropout < 1,
              "SongUNet: dropout " << c.dropout << ", label_dropout " << c.label_dropout << " (expected [0, 1))");
    STF_CHECK(!c.resample_filter.empty() && c.resample_filter.size() <= 8,
              "SongUNet: resample_filter has " << c.resample_filter.size() << " taps (expected 1..8)");
    STF_CHECK(c.img_resolution % (int64_t{1} << (c.channel_mult.size() - 1)) == 0,
              "SongUNet: resolution " << c.img_resolution << " does not halve " << c.channel_mult.size() - 1 << " times");
    std::string levels;
    bool found_all = true;
    for (int64_t r : c.attn_resolutions) {
        bool found = r == 0;  // --attn 0: no attention layer
        for (size_t l = 0; l < c.channel_mult.size(); ++l) found = found || r == (c.img_resolution >> l);
        found_all = found_all && found;
    }
    for (size_t l = 0; l < c.channel_mult.size(); ++l) levels += (l ? ", " : "") + std::to_string(c.img_resolution >> l);
    STF_CHECK(found_all, "SongUNet: attention resolutions (--attn) " << shape_str(c.attn_resolutions)
                                                                     << " are not all among the network's resolutions "
                                                                     << levels);
}

SongUNet::SongUNet(const SongUNetConfig& c, Generator& gen) : config_(c) {
    validate_config(c);
    int64_t emb_channels = c.model_channels * c.channel_mult_emb;
    int64_t noise_channels = c.model_channels * c.channel_mult_noise;
    Init init{"xavier_uniform", 1, 0}, init_zero{"xavier_uniform", 1e-5, 0}, init_attn{"xavier_uniform", std::sqrt(0.2), 0};
    UNetBlock::Options block;
    block.emb_channels = emb_channels;
    block.num_heads = 1;
    block.dropout = c.dropout;
    block.skip_scale = std::sqrt(0.5);
    block.eps = 1e-6;
    block.resample_filter = c.resample_filter;
    block.resample_proj = true;
    block.adaptive_scale = false;
    block.init = init;
    block.init_zero = init_zero;
    block.init_attn = init_attn;

    // Mapping.
    if (c.embedding_type == "positional")
        map_noise_ = register_module("map_noise", std::make_shared<PositionalEmbedding>(noise_channels, 10000, true));
    else
        map_noise_ = register_module("map_noise", std::make_shared<FourierEmbedding>(noise_channels, 16.0, gen));
    if (c.label_dim)
        map_label_ = register_module("map_label", std::make_shared<Linear>(c.label_dim, noise_channels, true, init, gen));
    if (c.augment_dim)
        map_augment_ =
            register_module("map_augment", std::make_shared<Linear>(c.augment_dim, noise_channels, false, init, gen));
    map_layer0_ = register_module("map_layer0", std::make_shared<Linear>(noise_channels, emb_channels, true, init, gen));
    map_layer1_ = register_module("map_layer1", std::make_shared<Linear>(emb_channels, emb_channels, true, init, gen));

    // Encoder.
    enc_ = register_module("enc", std::make_shared<ModuleList>());
    int64_t cout = c.in_channels, caux = c.in_channels;
    std::vector<int64_t> skips;
    for (size_t level = 0; level < c.channel_mult.size(); ++level) {
        int64_t res = c.img_resolution >> level;
        std::string at = std::to_string(res) + "x" + std::to_string(res);
        if (level == 0) {
            int64_t cin = cout;
            cout = c.model_channels;
            enc_->add(at + "_conv", std::make_shared<Conv2d>(cin, cout, 3, Conv2d::Options{.init = init}, gen));
            skips.push_back(cout);
        } else {
            UNetBlock::Options down = block;
            down.down = true;
            enc_->add(at + "_down", std::make_shared<UNetBlock>(cout, cout, down, gen));
            skips.push_back(cout);
            if (c.encoder_type == "skip") {
                Conv2d::Options aux_down{.down = true, .resample_filter = c.resample_filter, .init = {}};
                enc_->add(at + "_aux_down", std::make_shared<Conv2d>(caux, caux, 0, aux_down, gen));
                enc_->add(at + "_aux_skip", std::make_shared<Conv2d>(caux, cout, 1, Conv2d::Options{.init = init}, gen));
            }
            if (c.encoder_type == "residual") {
                Conv2d::Options aux{.down = true, .fused_resample = true, .resample_filter = c.resample_filter, .init = init};
                enc_->add(at + "_aux_residual", std::make_shared<Conv2d>(caux, cout, 3, aux, gen));
                caux = cout;
            }
        }
        for (int64_t idx = 0; idx < c.num_blocks; ++idx) {
            int64_t cin = cout;
            cout = c.model_channels * c.channel_mult[level];
            UNetBlock::Options b = block;
            for (int64_t r : c.attn_resolutions) b.attention = b.attention || r == res;
            enc_->add(at + "_block" + std::to_string(idx), std::make_shared<UNetBlock>(cin, cout, b, gen));
            skips.push_back(cout);
        }
    }

    // Decoder.
    dec_ = register_module("dec", std::make_shared<ModuleList>());
    for (int level = static_cast<int>(c.channel_mult.size()) - 1; level >= 0; --level) {
        int64_t res = c.img_resolution >> level;
        std::string at = std::to_string(res) + "x" + std::to_string(res);
        if (level == static_cast<int>(c.channel_mult.size()) - 1) {
            UNetBlock::Options in0 = block;
            in0.attention = true;
            dec_->add(at + "_in0", std::make_shared<UNetBlock>(cout, cout, in0, gen));
            dec_->add(at + "_in1", std::make_shared<UNetBlock>(cout, cout, block, gen));
        } else {
            UNetBlock::Options upb = block;
            upb.up = true;
            dec_->add(at + "_up", std::make_shared<UNetBlock>(cout, cout, upb, gen));
        }
        for (int64_t idx = 0; idx <= c.num_blocks; ++idx) {
            int64_t cin = cout + skips.back();
            skips.pop_back();
            cout = c.model_channels * c.channel_mult[level];
            UNetBlock::Options b = block;
            for (int64_t r : c.attn_resolutions) b.attention = b.attention || (idx == c.num_blocks && r == res);
            dec_->add(at + "_block" + std::to_string(idx), std::make_shared<UNetBlock>(cin, cout, b, gen));
        }
        if (c.decoder_type == "skip" || level == 0) {
            if (c.decoder_type == "skip" && level < static_cast<int>(c.channel_mult.size()) - 1) {
                Conv2d::Options aux_up{.up = true, .resample_filter = c.resample_filter, .init = {}};
                dec_->add(at + "_aux_up", std::make_shared<Conv2d>(c.out_channels, c.out_channels, 0, aux_up, gen));
            }
            dec_->add(at + "_aux_norm", std::make_shared<GroupNorm>(cout, 1e-6));
            dec_->add(at + "_aux_conv",
                      std::make_shared<Conv2d>(cout, c.out_channels, 3, Conv2d::Options{.init = init_zero}, gen));
        }
    }
}

Tensor SongUNet::forward(const Tensor& x_in, const Tensor& noise_labels, const Tensor& class_labels,
                         const Tensor& augment_labels, Generator& dropout_gen) const {
    const SongUNetConfig& c = config_;
    STF_CHECK(x_in.ndim() == 4 && x_in.size(1) == c.in_channels && x_in.size(2) == c.img_resolution &&
                  x_in.size(3) == c.img_resolution,
              "SongUNet: input " << describe(x_in) << ", expected [n, " << c.in_channels << ", " << c.img_resolution
                                 << ", " << c.img_resolution << "]");
    int64_t n = x_in.size(0);
    STF_CHECK(noise_labels.shape() == Shape{n}, "SongUNet: noise labels " << describe(noise_labels) << " for batch " << n);

    // Mapping. The embedding comes out as [cos, sin] and EDM swaps the halves to [sin, cos].
    Tensor emb = c.embedding_type == "positional"
                     ? static_cast<const PositionalEmbedding&>(*map_noise_).forward(noise_labels)
                     : static_cast<const FourierEmbedding&>(*map_noise_).forward(noise_labels);
    trace("model.map_noise", *map_noise_, emb);
    int64_t half = emb.size(1) / 2;
    emb = cat({narrow(emb, 1, half, half), narrow(emb, 1, 0, half)}, 1);
    if (map_label_) {
        STF_CHECK(class_labels.defined() && class_labels.shape() == (Shape{n, c.label_dim}),
                  "SongUNet: class labels should be [" << n << ", " << c.label_dim << "], got " << describe(class_labels));
        Tensor labels = class_labels;
        if (is_training() && c.label_dropout > 0) {
            Tensor keep = ops::bernoulli({n, 1}, 1 - c.label_dropout, dropout_gen, x_in.dtype(), x_in.device());
            labels = mul(labels, keep);
        }
        emb = add(emb, map_label_->forward(mul(labels, std::sqrt(static_cast<double>(c.label_dim)))));
        trace("model.map_label", *map_label_, emb);
    }
    if (map_augment_ && augment_labels.defined()) {
        STF_CHECK(augment_labels.shape() == (Shape{n, c.augment_dim}),
                  "SongUNet: augment labels should be [" << n << ", " << c.augment_dim << "], got "
                                                         << describe(augment_labels));
        emb = add(emb, map_augment_->forward(augment_labels));
        trace("model.map_augment", *map_augment_, emb);
    }
    emb = silu(map_layer0_->forward(emb));
    trace("model.map_layer0", *map_layer0_, emb);
    emb = silu(map_layer1_->forward(emb));
    trace("model.map_layer1", *map_layer1_, emb);

    // Encoder: every output but the aux ones is kept for the decoder's skip connections.
    std::vector<Tensor> skips;
    Tensor x = x_in, aux = x_in;
    for (const auto& [name, m] : enc_->items()) {
        if (contains(name, "aux_down")) {
            aux = static_cast<const Conv2d&>(*m).forward(aux);
        } else if (contains(name, "aux_skip")) {
            x = skips.back() = add(x, static_cast<const Conv2d&>(*m).forward(aux));
        } else if (contains(name, "aux_residual")) {
            x = skips.back() = aux = mul(add(x, static_cast<const Conv2d&>(*m).forward(aux)), 1 / std::sqrt(2.0));
        } else if (auto block = std::dynamic_pointer_cast<UNetBlock>(m)) {
            x = block->forward(x, emb, dropout_gen);
            skips.push_back(x);
        } else {
            x = static_cast<const Conv2d&>(*m).forward(x);
            skips.push_back(x);
        }
        trace("model.enc." + name, *m, contains(name, "aux_down") ? aux : x);
    }

    // Decoder: a block whose input width differs from x takes the next skip, concatenated after x.
    Tensor out, tmp;
    for (const auto& [name, m] : dec_->items()) {
        if (contains(name, "aux_up")) {
            out = static_cast<const Conv2d&>(*m).forward(out);
        } else if (contains(name, "aux_norm")) {
            tmp = static_cast<const GroupNorm&>(*m).forward_silu(x);  // EDM: aux_conv(silu(aux_norm(x)))
        } else if (contains(name, "aux_conv")) {
            tmp = static_cast<const Conv2d&>(*m).forward(tmp);
            out = out.defined() ? add(tmp, out) : tmp;
        } else {
            const UNetBlock& block = static_cast<const UNetBlock&>(*m);
            if (x.size(1) != block.in_channels) {
                x = cat({x, skips.back()}, 1);
                skips.pop_back();
            }
            x = block.forward(x, emb, dropout_gen);
        }
        trace("model.dec." + name, *m, contains(name, "aux_norm") || contains(name, "aux_conv") ? tmp
                                       : contains(name, "aux_up")                               ? out
                                                                                                : x);
    }
    return out;
}


// ---- FLOP count ------------------------------------------------------------------------------------
// Walks the same layers as the constructor above, by size only. Every count is per image.
namespace {

// A convolution producing `out_res` x `out_res` pixels: each output value is k*k*cin/groups multiply-adds.
double conv_flops(int64_t cin, int64_t cout, int64_t k, int64_t out_res, int64_t groups = 1) {
    return 2.0 * static_cast<double>(cin / groups) * cout * k * k * out_res * out_res;
}

// The depthwise FIR filter of Conv2d's up/down-sampling on `c` channels of a `res` x `res` input: down
// is a stride-2 convolution (one f*f filter per output pixel), up a stride-2 transposed convolution
// (one f*f filter per input pixel).
double resample_flops(int64_t c, int64_t f, int64_t res, bool up) {
    int64_t pixels = up ? res : res / 2;
    return conv_flops(c, c, f, pixels, c);
}

struct BlockShape {
    int64_t in, out, res;  // res: the input resolution
    bool up = false, down = false, attention = false;
};

double block_flops(const SongUNetConfig& c, const BlockShape& b) {
    const int64_t f = static_cast<int64_t>(c.resample_filter.size());
    const int64_t emb = c.model_channels * c.channel_mult_emb;
    const int64_t res = b.up ? b.res * 2 : b.down ? b.res / 2 : b.res;  // output resolution
    double resample = (b.up || b.down) ? resample_flops(b.in, f, b.res, b.up) : 0;
    double total = resample + conv_flops(b.in, b.out, 3, res);  // conv0 (resampling first)
    total += 2.0 * emb * b.out;                                  // affine
    total += conv_flops(b.out, b.out, 3, res);                   // conv1
    if (b.out != b.in || b.up || b.down) total += resample + conv_flops(b.in, b.out, 1, res);  // skip (resample_proj)
    if (b.attention) {
        double hw = static_cast<double>(res * res);
        total += conv_flops(b.out, 3 * b.out, 1, res);  // qkv
        total += 2 * (2.0 * hw * hw * b.out);           // q^T k and v w^T, all heads together
        total += conv_flops(b.out, b.out, 1, res);      // proj
    }
    return total;
}

bool attends(const SongUNetConfig& c, int64_t res) {
    for (int64_t r : c.attn_resolutions)
        if (r == res) return true;
    return false;
}

}  // namespace

double forward_flops(const SongUNetConfig& c) {
    validate_config(c);
    const int64_t emb = c.model_channels * c.channel_mult_emb, noise = c.model_channels * c.channel_mult_noise;
    const int64_t f = static_cast<int64_t>(c.resample_filter.size()), levels = static_cast<int64_t>(c.channel_mult.size());
    double total = 2.0 * (c.label_dim + c.augment_dim) * noise + 2.0 * noise * emb + 2.0 * emb * emb;  // mapping

    // Encoder.
    int64_t cout = c.in_channels, caux = c.in_channels;
    std::vector<int64_t> skips;
    for (int64_t level = 0; level < levels; ++level) {
        int64_t res = c.img_resolution >> level;
        if (level == 0) {
            total += conv_flops(cout, c.model_channels, 3, res);
            cout = c.model_channels;
        } else {
            total += block_flops(c, {cout, cout, res * 2, false, true, false});
            if (c.encoder_type == "skip")
                total += resample_flops(caux, f, res * 2, false) + conv_flops(caux, cout, 1, res);
            if (c.encoder_type == "residual") {
                // Fused: the 3x3 convolution at the input resolution, padded by the filter's reach, then the
                // stride-2 filter on its output channels.
                int64_t padded = res * 2 + 2 * ((f - 1) / 2);
                total += conv_flops(caux, cout, 3, padded) + conv_flops(cout, cout, f, res, cout);
                caux = cout;
            }
        }
        skips.push_back(cout);
        for (int64_t idx = 0; idx < c.num_blocks; ++idx) {
            int64_t cin = cout;
            cout = c.model_channels * c.channel_mult[level];
            total += block_flops(c, {cin, cout, res, false, false, attends(c, res)});
            skips.push_back(cout);
        }
    }

    // Decoder.
    for (int64_t level = levels - 1; level >= 0; --level) {
        int64_t res = c.img_resolution >> level;
        if (level == levels - 1) {
            total += block_flops(c, {cout, cout, res, false, false, true});  // in0
            total += block_flops(c, {cout, cout, res, false, false, false});  // in1
        } else {
            total += block_flops(c, {cout, cout, res / 2, true, false, false});  // up
        }
        for (int64_t idx = 0; idx <= c.num_blocks; ++idx) {
            int64_t cin = cout + skips.back();
            skips.pop_back();
            cout = c.model_channels * c.channel_mult[level];
            total += block_flops(c, {cin, cout, res, false, false, idx == c.num_blocks && attends(c, res)});
        }
        if (c.decoder_type == "skip" || level == 0) {
            if (c.decoder_type == "skip" && level < levels - 1) total += resample_flops(c.out_channels, f, res / 2, true);
            total += conv_flops(cout, c.out_channels, 3, res);  // aux_conv
        }
    }
    return total;
}

}  // namespace stf::nn
