#!/usr/bin/env python3
"""Convert the published FID Inception-v3 weights into stf's "stf-inception" safetensors file, once.

    python3 tools/inception_to_safetensors.py pt_inception-2015-12-05-6726825d.pth inception-2015-12-05.safetensors
    python3 tools/inception_to_safetensors.py inception-2015-12-05.pkl inception-2015-12-05.safetensors

Both files hold the 2015 TensorFlow graph's weights (docs/fid.md says where to download them):
  * pytorch-fid's pt_inception-2015-12-05-6726825d.pth, a state_dict under torchvision's names
    (Conv2d_1a_3x3.conv.weight, Conv2d_1a_3x3.bn.weight, ...). Its input convention: F.interpolate
    (bilinear, align_corners=False) to 299x299, then 2 x / 255 - 1.
  * EDM's (StyleGAN's) inception-2015-12-05.pkl, a pickled TorchScript module whose layers are named
    after the TensorFlow graph (layers.conv.weight, layers.mixed.tower.conv_1.beta, ...; batch norm
    without gamma: beta, mean, var). Its input convention: TensorFlow 1's resize_bilinear alignment,
    then (x - 128) / 128. EDM's published FIDs use this one.
The output holds each of the 94 layers' convolution weight and batch-norm parameters (gamma = 1 for
EDM's) under pytorch-fid's names, float32, and metadata format "stf-inception", "resize" (half_pixel
or tf1), "input_offset", "input_scale" and "source". stf folds the batch norms when it loads the file.
Needs PyTorch (Debian: python3-torch); nothing in stf's build or tests needs this tool.
"""
import argparse
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inception_layers  # noqa: E402


class ConversionError(Exception):
    pass


# EDM's TorchScript names for each pytorch-fid layer: stem layers, then per block type the branches.
STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2", "Conv2d_3b_1x1": "conv_3",
        "Conv2d_4a_3x3": "conv_4"}
BLOCKS = {"Mixed_5b": ("mixed", "A"), "Mixed_5c": ("mixed_1", "A"), "Mixed_5d": ("mixed_2", "A"),
          "Mixed_6a": ("mixed_3", "B"), "Mixed_6b": ("mixed_4", "C"), "Mixed_6c": ("mixed_5", "C"),
          "Mixed_6d": ("mixed_6", "C"), "Mixed_6e": ("mixed_7", "C"), "Mixed_7a": ("mixed_8", "D"),
          "Mixed_7b": ("mixed_9", "E"), "Mixed_7c": ("mixed_10", "E")}
BRANCHES = {
    "A": {"branch1x1": "conv", "branch5x5_1": "tower.conv", "branch5x5_2": "tower.conv_1",
          "branch3x3dbl_1": "tower_1.conv", "branch3x3dbl_2": "tower_1.conv_1", "branch3x3dbl_3": "tower_1.conv_2",
          "branch_pool": "tower_2.conv"},
    "B": {"branch3x3": "conv", "branch3x3dbl_1": "tower.conv", "branch3x3dbl_2": "tower.conv_1",
          "branch3x3dbl_3": "tower.conv_2"},
    "C": {"branch1x1": "conv", "branch7x7_1": "tower.conv", "branch7x7_2": "tower.conv_1", "branch7x7_3": "tower.conv_2",
          "branch7x7dbl_1": "tower_1.conv", "branch7x7dbl_2": "tower_1.conv_1", "branch7x7dbl_3": "tower_1.conv_2",
          "branch7x7dbl_4": "tower_1.conv_3", "branch7x7dbl_5": "tower_1.conv_4", "branch_pool": "tower_2.conv"},
    "D": {"branch3x3_1": "tower.conv", "branch3x3_2": "tower.conv_1", "branch7x7x3_1": "tower_1.conv",
          "branch7x7x3_2": "tower_1.conv_1", "branch7x7x3_3": "tower_1.conv_2", "branch7x7x3_4": "tower_1.conv_3"},
    "E": {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
          "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
          "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"},
}


def edm_name(layer):
    if layer in STEM:
        return f"layers.{STEM[layer]}"
    block, branch = layer.split(".")
    edm_block, kind = BLOCKS[block]
    return f"layers.{edm_block}.{BRANCHES[kind][branch]}"


def load(path, torch):
    if not os.path.isfile(path):
        raise ConversionError(f"{path!r}: no such file")
    if path.endswith(".pkl"):
        try:
            with open(path, "rb") as f:
                obj = pickle.load(f)
        except Exception as e:  # a TorchScript archive rather than a pickle
            try:
                obj = torch.jit.load(path, map_location="cpu")
            except Exception:
                raise ConversionError(f"{path!r}: neither a pickle nor a TorchScript file ({e})") from e
        state = obj.state_dict() if hasattr(obj, "state_dict") else obj
        return {k: v.detach().cpu().double().numpy() for k, v in state.items()}, "edm"
    state = torch.load(path, map_location="cpu")
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    return {k: v.detach().cpu().double().numpy() for k, v in state.items() if v.is_floating_point()}, "pytorch-fid"


def convert(state, kind):
    shapes = inception_layers.tensor_shapes()
    out = {}
    for name, cin, cout, kh, kw in inception_layers.LAYERS:
        if kind == "pytorch-fid":
            parts = {p: state.get(f"{name}.{p}") for p in inception_layers.PARTS}
        else:
            e = edm_name(name)
            parts = {"conv.weight": state.get(f"{e}.weight"), "bn.weight": np.ones(cout),
                     "bn.bias": state.get(f"{e}.beta"), "bn.running_mean": state.get(f"{e}.mean"),
                     "bn.running_var": state.get(f"{e}.var")}
        for part, value in parts.items():
            key = f"{name}.{part}"
            if value is None:
                raise ConversionError(f"tensor for {key!r} not found in the {kind} file "
                                      f"(it has e.g. {sorted(state)[:5]})")
            if tuple(value.shape) != shapes[key]:
                raise ConversionError(f"{key!r} has shape {tuple(value.shape)}, expected {shapes[key]}")
            out[key] = np.ascontiguousarray(value, dtype=np.float32)
    if kind == "edm":
        meta = {"resize": "tf1", "input_offset": "128", "input_scale": "128",
                "source": "EDM/StyleGAN inception-2015-12-05.pkl"}
    else:
        meta = {"resize": "half_pixel", "input_offset": "127.5", "input_scale": "127.5",
                "source": "pytorch-fid pt_inception-2015-12-05-6726825d.pth"}
    return out, {"format": "stf-inception", **meta}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input", help="pt_inception-2015-12-05-6726825d.pth or inception-2015-12-05.pkl")
    p.add_argument("output", help="the .safetensors file to write")
    args = p.parse_args(argv)
    try:
        import torch
        state, kind = load(args.input, torch)
        arrays, meta = convert(state, kind)
        inception_layers.write_safetensors(args.output, arrays, meta)
    except (ConversionError, OSError) as e:
        print(f"inception_to_safetensors: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(arrays)} tensors ({kind} conventions: resize {meta['resize']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
