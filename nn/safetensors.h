// Safetensors weight files: the format PyTorch users already read and write (the `safetensors`
// package). A file is
//
//   [8 bytes: N, little-endian uint64]
//   [N bytes: UTF-8 JSON header, padded with spaces so that N is a multiple of 8]
//   [data section: the raw little-endian C-order bytes of every tensor]
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
// offsets counted in bytes from the start of the data section, plus an optional "__metadata__"
// object of string -> string (stf puts the network's constructor arguments under "config").
//
// We write F32, F64 and BF16 and read those plus F16 (converted to F32, since EDM checkpoints may
// hold half-precision weights). A file is never trusted: every header field is checked against the
// file's real size before a byte of tensor data is read.
#pragma once
#include <map>
#include <string>

#include "nn/module.h"

namespace stf::nn {

struct SafetensorsFile {
    NamedTensors tensors;  // CPU tensors, in the order of their data in the file
    std::map<std::string, std::string> metadata;
};

// Writes `tensors` (on any device, any layout) to `path`. The file appears whole or not at all:
// it is written to a temporary file next to `path` and renamed over it. Throws stf::Error naming
// the path on an undefined tensor, a repeated or reserved name, an unwritable file, or a short write.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file into CPU tensors. Throws stf::Error naming the path and what is wrong.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace stf::nn
