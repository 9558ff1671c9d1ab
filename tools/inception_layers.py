"""Inception-v3's feature network as FID uses it: its 94 convolution layers under pytorch-fid's
(torchvision's) names, each (name, in, out, kh, kw). Shared by tools/inception_to_safetensors.py and
tools/inception_fixture.py; stf's own table is metrics/inception.cpp."""


def _a(p, cin, pool):
    return [(f"{p}.branch1x1", cin, 64, 1, 1), (f"{p}.branch5x5_1", cin, 48, 1, 1), (f"{p}.branch5x5_2", 48, 64, 5, 5),
            (f"{p}.branch3x3dbl_1", cin, 64, 1, 1), (f"{p}.branch3x3dbl_2", 64, 96, 3, 3),
            (f"{p}.branch3x3dbl_3", 96, 96, 3, 3), (f"{p}.branch_pool", cin, pool, 1, 1)]


def _b(p, cin):
    return [(f"{p}.branch3x3", cin, 384, 3, 3), (f"{p}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{p}.branch3x3dbl_2", 64, 96, 3, 3), (f"{p}.branch3x3dbl_3", 96, 96, 3, 3)]


def _c(p, cin, c7):
    return [(f"{p}.branch1x1", cin, 192, 1, 1), (f"{p}.branch7x7_1", cin, c7, 1, 1), (f"{p}.branch7x7_2", c7, c7, 1, 7),
            (f"{p}.branch7x7_3", c7, 192, 7, 1), (f"{p}.branch7x7dbl_1", cin, c7, 1, 1),
            (f"{p}.branch7x7dbl_2", c7, c7, 7, 1), (f"{p}.branch7x7dbl_3", c7, c7, 1, 7),
            (f"{p}.branch7x7dbl_4", c7, c7, 7, 1), (f"{p}.branch7x7dbl_5", c7, 192, 1, 7),
            (f"{p}.branch_pool", cin, 192, 1, 1)]


def _d(p, cin):
    return [(f"{p}.branch3x3_1", cin, 192, 1, 1), (f"{p}.branch3x3_2", 192, 320, 3, 3),
            (f"{p}.branch7x7x3_1", cin, 192, 1, 1), (f"{p}.branch7x7x3_2", 192, 192, 1, 7),
            (f"{p}.branch7x7x3_3", 192, 192, 7, 1), (f"{p}.branch7x7x3_4", 192, 192, 3, 3)]


def _e(p, cin):
    return [(f"{p}.branch1x1", cin, 320, 1, 1), (f"{p}.branch3x3_1", cin, 384, 1, 1),
            (f"{p}.branch3x3_2a", 384, 384, 1, 3), (f"{p}.branch3x3_2b", 384, 384, 3, 1),
            (f"{p}.branch3x3dbl_1", cin, 448, 1, 1), (f"{p}.branch3x3dbl_2", 448, 384, 3, 3),
            (f"{p}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{p}.branch3x3dbl_3b", 384, 384, 3, 1),
            (f"{p}.branch_pool", cin, 192, 1, 1)]


LAYERS = ([("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
           ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]
          + _a("Mixed_5b", 192, 32) + _a("Mixed_5c", 256, 64) + _a("Mixed_5d", 288, 64) + _b("Mixed_6a", 288)
          + _c("Mixed_6b", 768, 128) + _c("Mixed_6c", 768, 160) + _c("Mixed_6d", 768, 160) + _c("Mixed_6e", 768, 192)
          + _d("Mixed_7a", 768) + _e("Mixed_7b", 1280) + _e("Mixed_7c", 2048))

# The five tensors of each layer in an "stf-inception" file.
PARTS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")


def tensor_shapes():
    """{name: shape} of every tensor an "stf-inception" file holds, in layer order."""
    out = {}
    for name, cin, cout, kh, kw in LAYERS:
        out[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for part in PARTS[1:]:
            out[f"{name}.{part}"] = (cout,)
    return out


def write_safetensors(path, arrays, metadata):
    """Writes float32 arrays ({name: C-order numpy array}) and string metadata as safetensors, through
    a temporary file and a rename."""
    import json
    import os
    import struct
    header = {"__metadata__": metadata}
    offset = 0
    for name, a in arrays.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays.values():
            f.write(a.astype("<f4").tobytes(order="C"))
    os.replace(tmp, path)
