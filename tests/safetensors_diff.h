// Whether two safetensors files (snapshots, training states) hold the same tensors bit for bit: the
// resume, data-parallel and --cuda-graph tests compare whole runs this way.
#pragma once
#include <doctest/doctest.h>

#include <cstddef>
#include <string>

#include "nn/safetensors.h"

namespace stf::test {

// The tensors that differ, by name or in any value; 0 when the files agree bit for bit. A different
// number of tensors fails the test outright.
inline size_t differing_tensors(const std::string& a_path, const std::string& b_path) {
    const nn::NamedTensors a = nn::load_safetensors(a_path).tensors, b = nn::load_safetensors(b_path).tensors;
    REQUIRE(a.size() == b.size());
    size_t differing = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].first != b[i].first || a[i].second.to_vector() != b[i].second.to_vector()) ++differing;
    return differing;
}

}  // namespace stf::test
