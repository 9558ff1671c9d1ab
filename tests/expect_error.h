// For tests of error handling: the message an operation fails with, and a substring check on it.
#pragma once
#include <string>

#include "tensor/tensor.h"  // stf::Error

namespace stf::test {

// The stf::Error message f() throws, or "<no error>" when it returns normally.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const stf::Error& e) {
        return e.what();
    }
    return "<no error>";
}

inline bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace stf::test
