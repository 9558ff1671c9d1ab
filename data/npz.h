// .npz archives as numpy.savez writes them: a ZIP file whose members are .npy arrays named KEY.npy.
// EDM's FID reference statistics (fid-refs/cifar10-32x32.npz: mu [2048] and sigma [2048, 2048],
// float64) are such files. Members may be stored (numpy.savez) or deflated (numpy.savez_compressed);
// ZIP64 records (numpy writes them) are understood. Arrays are what read_npy reads ('<f4' or '<f8').
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace stf::data {

// key -> CPU tensor. Throws stf::Error naming the file (and member) for a missing or truncated file,
// a file that is not a ZIP, an unsupported compression method, a CRC mismatch or a bad .npy member.
std::map<std::string, Tensor> read_npz(const std::string& path);

// Writes the arrays (float32 or float64, any device) as stored members KEY.npy, through a temporary
// file and a rename. numpy.load reads the result.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays);

}  // namespace stf::data
