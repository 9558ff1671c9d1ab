#!/usr/bin/env python3
"""Convert an EDM network snapshot or an STF training state into an stf safetensors file.

    python3 tools/edm_to_safetensors.py --edm-src PATH_TO_EDM_REPO network-snapshot-*.pkl out.safetensors
    python3 tools/edm_to_safetensors.py --edm-src PATH_TO_EDM_REPO training-state-*.pkl out.safetensors

EDM's pickles hold whole Python objects, not just arrays, and unpickling them runs code from EDM's
`dnnlib` and `torch_utils` packages; --edm-src points at a checkout of the EDM (or STF) repository
that has them. Only this tool needs Python and PyTorch: stf itself reads the safetensors file.

What is written:
  * every tensor of the EMA network's state_dict(), as float32, under EDM's own names
    (model.enc.32x32_conv.weight, ...). EDM's snapshots and STF's training states both hold the EMA
    network under 'ema'; a pickle with only 'net' is converted from that, with a warning.
  * "__metadata__": {"config": JSON of the network's constructor arguments}, so the file says what
    network it holds (stf's docs/design.md lists the keys).

This tool writes the safetensors format itself (8-byte header length, JSON header, raw bytes), so
the `safetensors` package is not needed.
"""
import argparse
import io
import json
import math
import os
import pickle
import struct
import sys
import zipfile

# EDM's preconditioning classes and the names stf uses for them.
PRECOND_NAMES = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve"}

# model_type is optional in EDM's constructors, and its default differs per preconditioning.
DEFAULT_MODEL_TYPE = {"EDMPrecond": "DhariwalUNet", "VPPrecond": "SongUNet", "VEPrecond": "SongUNet"}

# SongUNet's constructor defaults: EDM records only the arguments a run passed, so anything left at
# its default is missing from init_kwargs and filled in from here.
SONGUNET_DEFAULTS = {
    "augment_dim": 0,
    "model_channels": 128,
    "channel_mult": [1, 2, 2, 2],
    "channel_mult_emb": 4,
    "num_blocks": 4,
    "attn_resolutions": [16],
    "dropout": 0.10,
    "label_dropout": 0,
    "embedding_type": "positional",
    "channel_mult_noise": 1,
    "encoder_type": "standard",
    "decoder_type": "standard",
    "resample_filter": [1, 1],
}

# Preconditioning parameters and their defaults, per class (VP and VE have no sigma_data; stf's
# config still carries one, EDM's default, which their preconditionings ignore).
PRECOND_DEFAULTS = {
    "EDMPrecond": {"sigma_data": 0.5, "sigma_min": 0.0, "sigma_max": math.inf},
    "VPPrecond": {"beta_d": 19.9, "beta_min": 0.1, "M": 1000, "epsilon_t": 1e-5},
    "VEPrecond": {"sigma_min": 0.02, "sigma_max": 100.0},
}

CONSTRUCTOR_POSITIONAL = ["img_resolution", "img_channels", "label_dim"]


class ConversionError(Exception):
    """A problem the user can fix; printed without a traceback."""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edm-src", required=True, metavar="DIR",
                   help="checkout of the EDM (or STF) repository, for its dnnlib and torch_utils packages")
    p.add_argument("pickle", help="network-snapshot-*.pkl or training-state-*.pkl")
    p.add_argument("output", help="the .safetensors file to write")
    return p.parse_args(argv)


def add_edm_to_path(edm_src):
    """Unpickling imports dnnlib and torch_utils, so EDM's checkout must be importable."""
    if not os.path.isdir(edm_src):
        raise ConversionError(f"--edm-src {edm_src!r} is not a directory")
    missing = [d + "/" for d in ("dnnlib", "torch_utils") if not os.path.isdir(os.path.join(edm_src, d))]
    if missing:
        raise ConversionError(f"--edm-src {edm_src!r} has no {' or '.join(missing)} folder: "
                              "point it at a checkout of NVlabs/edm (or Newbeeer/stf)")
    sys.path.insert(0, os.path.abspath(edm_src))


def import_torch():
    try:
        import torch
    except ImportError as e:
        raise ConversionError(f"this tool needs PyTorch to read EDM pickles ({e})") from e
    return torch


def load_checkpoint(path, torch):
    """Reads a pickle (EDM snapshots, STF training states) or a torch.save zip (EDM training states).

    Tensors that were on a GPU when saved are loaded onto the CPU, so no GPU is needed.
    """
    if not os.path.isfile(path):
        raise ConversionError(f"{path!r}: no such file")
    try:
        if zipfile.is_zipfile(path):
            return torch_load(io.FileIO(path), torch)
        with open(path, "rb") as f:
            with storages_on_cpu(torch):
                return pickle.load(f)
    except ModuleNotFoundError as e:
        raise ConversionError(f"{path!r}: unpickling needs module {e.name!r}; "
                              "is --edm-src a checkout of the EDM repository?") from e
    except (pickle.UnpicklingError, EOFError) as e:
        raise ConversionError(f"{path!r}: not a readable pickle ({e})") from e


def torch_load(f, torch):
    try:  # torch >= 2.6 refuses arbitrary objects unless told otherwise
        return torch.load(f, map_location="cpu", weights_only=False)
    except TypeError:  # torch too old to know weights_only
        return torch.load(f, map_location="cpu")


class storages_on_cpu:
    """A plain pickle of a tensor stores its storage as torch.save bytes, restored by
    torch.storage._load_from_bytes without a map_location; that fails on a machine without the GPU
    the tensor came from. While active, those storages load onto the CPU instead."""

    def __init__(self, torch):
        self.torch = torch
        self.module = getattr(torch, "storage", None)
        self.saved = getattr(self.module, "_load_from_bytes", None)

    def __enter__(self):
        if self.saved is not None:
            self.module._load_from_bytes = lambda b: torch_load(io.BytesIO(b), self.torch)

    def __exit__(self, *exc):
        if self.saved is not None:
            self.module._load_from_bytes = self.saved


def pick_network(data, path, torch):
    if not isinstance(data, dict):
        raise ConversionError(f"{path!r} holds a {type(data).__name__}, not the dict EDM and STF save")
    for key in ("ema", "net"):
        net = data.get(key)
        if isinstance(net, torch.nn.Module):
            if key == "net":
                print(f"warning: {path!r} has no 'ema' network; converting 'net' (the raw, non-averaged weights)",
                      file=sys.stderr)
            return net
    raise ConversionError(f"{path!r} has no 'ema' (or 'net') network; its keys are {sorted(map(str, data))}")


def recorded_kwargs(net):
    """The constructor arguments EDM's persistence wrapper recorded, positional ones named."""
    try:
        kwargs = dict(net.init_kwargs)
        args = list(net.init_args)
    except (AttributeError, AssertionError):
        print("warning: the network did not record its constructor arguments; "
              "using its attributes and EDM's defaults", file=sys.stderr)
        return {}
    kwargs.update(zip(CONSTRUCTOR_POSITIONAL, args))
    return kwargs


def plain(value):
    """JSON-friendly: tuples become lists, numpy and torch scalars become Python numbers."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def network_config(net):
    cls = type(net).__name__
    if cls not in PRECOND_NAMES:
        raise ConversionError(f"network is a {cls}; stf reads EDMPrecond, VPPrecond or VEPrecond networks")
    kwargs = recorded_kwargs(net)
    model = getattr(net, "model", None)
    model_type = type(model).__name__ if model is not None else kwargs.get("model_type", DEFAULT_MODEL_TYPE[cls])
    if model_type != "SongUNet":
        print(f"warning: the network is a {model_type}; stf implements SongUNet (DDPM++/NCSN++) only",
              file=sys.stderr)

    config = {"model_type": model_type, "precond": PRECOND_NAMES[cls]}
    for key in ("img_resolution", "img_channels", "label_dim"):
        if key in kwargs:
            config[key] = kwargs[key]
        elif hasattr(net, key):
            config[key] = getattr(net, key)
        elif key == "label_dim":
            config[key] = 0  # EDM's default: unconditional
        else:
            raise ConversionError(f"cannot tell the network's {key}")
    for key, default in SONGUNET_DEFAULTS.items():
        config[key] = kwargs.get(key, default)
    for key, default in PRECOND_DEFAULTS[cls].items():
        config[key] = kwargs.get(key, getattr(net, key, default))
    config.setdefault("sigma_data", 0.5)
    # Strict JSON has no infinity: EDMPrecond's default sigma_max (inf, "no limit") is left out.
    config = {k: plain(v) for k, v in config.items()}
    return {k: v for k, v in config.items() if not (isinstance(v, float) and not math.isfinite(v))}


def float32_arrays(net, torch):
    """The state_dict as little-endian float32 C-order numpy arrays, in EDM's order."""
    out = {}
    for name, t in net.state_dict().items():
        if not t.is_floating_point():
            raise ConversionError(f"tensor {name!r} is {t.dtype}; stf weights are floating point")
        out[name] = t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return out


def write_safetensors(path, arrays, metadata):
    """8-byte little-endian header length, JSON header padded with spaces to a multiple of 8, then
    the tensors' bytes back to back. Written to a temporary file and renamed, so `path` is either the
    old file or the complete new one."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, a in arrays.items():
        if name == "__metadata__":
            raise ConversionError("a tensor is named '__metadata__', which the format reserves")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 8)

    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for a in arrays.values():
                f.write(a.tobytes(order="C"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise ConversionError(f"cannot write {path!r}: {e.strerror or e}") from e
        raise


def main(argv=None):
    args = parse_args(argv)
    try:
        if os.path.abspath(args.pickle) == os.path.abspath(args.output):
            raise ConversionError("the output would overwrite the input")
        add_edm_to_path(args.edm_src)
        torch = import_torch()
        net = pick_network(load_checkpoint(args.pickle, torch), args.pickle, torch)
        config = network_config(net)
        arrays = float32_arrays(net, torch)
        write_safetensors(args.output, arrays, {"config": json.dumps(config, allow_nan=False)})
    except (ConversionError, OSError) as e:
        print(f"edm_to_safetensors: error: {e}", file=sys.stderr)
        return 1
    n = sum(a.size for a in arrays.values())
    print(f"wrote {args.output}: {len(arrays)} tensors, {n:,} values; config {json.dumps(config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
