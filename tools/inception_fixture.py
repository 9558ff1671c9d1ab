#!/usr/bin/env python3
"""Writes the fixture that checks stf's Inception-v3 (metrics/inception.h) against pytorch-fid's on
seeded random weights, and the Fréchet-distance fixture values, without committing any weights.

    PYTHONPATH=path/to/pytorch_fid_source /usr/bin/python3 tools/inception_fixture.py \
        --out tests/metrics/data/inception_random_features.npy [--weights-out random.safetensors]

Needs PyTorch, torchvision, numpy and scipy (Debian: python3-torch python3-torchvision python3-scipy) and
pytorch-fid's source (PyPI `pytorch-fid`, code only). Nothing here is needed to build or test stf.

The weights follow the formula of metrics::random_inception_weights (seed 2015): element i of tensor
`name` is u = splitmix64((fnv1a64(name) ^ seed) + (i + 1) * 0x9E3779B97F4A7C15) / 2^64, mapped to He-uniform
convolution weights, gamma and running_var 0.5 + u, beta and running_mean 0.2 (2u - 1); stf computes the
same numbers in C++, so only the seed and the features are committed. pytorch-fid's own InceptionV3 class
builds the network (its FIDInceptionA/C/E_1/E_2 blocks), in float64, with these weights in place of the
published ones. The test images are two 32x32 RGB images with pixels floor(256 u) of tensor "image".

Output: an array [2, 2, 2048] (float64): [convention, image, feature], convention 0 being pytorch-fid's
(F.interpolate with align_corners=False, then 2 x / 255 - 1) and 1 EDM's detector's (TensorFlow 1's
resize_bilinear alignment through affine_grid + grid_sample, then (x - 128) / 128). It also prints the
Fréchet distances of seeded random statistics computed as EDM's fid.py does (scipy.linalg.sqrtm), which
tests/metrics/test_frechet.cpp holds as numbers.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inception_layers  # noqa: E402

SEED = 2015
MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode("utf-8"):
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def seeded_uniform(name, seed, n):
    """u in [0, 1) for elements 0..n-1 of tensor `name` (metrics::seeded_uniform)."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name) ^ seed) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def random_weights(seed):
    """{name: float32 array} in the layout of an "stf-inception" file."""
    out = {}
    for name, cin, cout, kh, kw in inception_layers.LAYERS:
        bound = np.sqrt(6.0 / (cin * kh * kw))
        for part, shape in (("conv.weight", (cout, cin, kh, kw)), ("bn.weight", (cout,)), ("bn.bias", (cout,)),
                            ("bn.running_mean", (cout,)), ("bn.running_var", (cout,))):
            key = f"{name}.{part}"
            u = seeded_uniform(key, seed, int(np.prod(shape)))
            if part == "conv.weight":
                v = (2 * u - 1) * bound
            elif part in ("bn.weight", "bn.running_var"):
                v = 0.5 + u
            else:
                v = 0.2 * (2 * u - 1)
            out[key] = v.reshape(shape).astype(np.float32)
    return out


def test_images():
    u = seeded_uniform("image", SEED, 2 * 3 * 32 * 32)
    return np.floor(256 * u).reshape(2, 3, 32, 32)


def pytorch_fid_model(weights, torch):
    """pytorch-fid's InceptionV3 (2048-d pool features) with `weights` instead of the published file."""
    import torchvision
    from pytorch_fid import inception as pf
    shell = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, init_weights=False, weights=None)
    state = {}
    for key, value in shell.state_dict().items():
        if key in weights:
            state[key] = torch.from_numpy(weights[key])
        else:  # the classifier and the batch-norm counters, unused for features
            state[key] = torch.zeros_like(value)
    pf.load_state_dict_from_url = lambda *args, **kwargs: state
    return pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).double().eval()


def tf1_resize(x, size, torch):
    """tf.image.resize_bilinear (TensorFlow 1, align_corners=False) as EDM's detector emulates it: an
    affine grid shifted so that output pixel j samples input coordinate j * in / out, sampled with
    border clamping."""
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / w - 1 / size
    theta[:, 1, 2] = 1 / h - 1 / size
    grid = torch.nn.functional.affine_grid(theta, [n, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def features(weights, torch):
    model = pytorch_fid_model(weights, torch)
    pixels = torch.from_numpy(test_images())  # float64, 0..255
    with torch.no_grad():
        pytorch_fid = model(pixels / 255)[0].reshape(2, 2048)
        model.resize_input = False
        model.normalize_input = False
        edm = model((tf1_resize(pixels, 299, torch) - 128) / 128)[0].reshape(2, 2048)
    return np.stack([pytorch_fid.numpy(), edm.numpy()])


def frechet_fixture():
    """FD of seeded statistics, as EDM's fid.py computes it (scipy.linalg.sqrtm of sigma @ sigma_ref)."""
    import scipy.linalg
    for dim, count in ((8, 20), (64, 100)):
        def stats(tag):
            x = seeded_uniform(f"frechet_{tag}_{dim}", SEED, count * dim).reshape(count, dim)
            x = x * np.linspace(0.5, 2, dim) + (1 if tag == "b" else 0) * np.linspace(0, 0.3, dim)
            return x.mean(0), np.cov(x, rowvar=False)
        mu1, s1 = stats("a")
        mu2, s2 = stats("b")
        root, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
        fd = float(np.real(np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * root)))
        print(f"frechet fixture dim {dim} count {count}: {fd!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the .npy of features to write")
    p.add_argument("--weights-out", help="also write the random weights as an stf-inception safetensors file")
    args = p.parse_args()
    import torch
    weights = random_weights(SEED)
    f = features(weights, torch)
    np.save(args.out, f)
    print(f"wrote {args.out}: {f.shape}, |f| per convention {np.linalg.norm(f, axis=(1, 2))}")
    if args.weights_out:
        inception_layers.write_safetensors(args.weights_out, weights, {
            "format": "stf-inception", "source": f"random (seed {SEED})", "resize": "half_pixel",
            "input_offset": "127.5", "input_scale": "127.5"})
        print(f"wrote {args.weights_out}")
    frechet_fixture()


if __name__ == "__main__":
    main()
