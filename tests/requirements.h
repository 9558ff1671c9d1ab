// Test cases that need something a machine may lack carry a doctest test-suite decorator; CTest runs
// them as a separate test that tests/test_main.cpp skips (exit 77) where the requirement is missing:
//   TEST_CASE("..." * stf::test::needs_fashion_mnist())   Debian's dataset-fashion-mnist
//   TEST_CASE("..." * stf::test::needs_gpu())             a usable CUDA device
#pragma once
#include <doctest/doctest.h>

#include <string>

namespace stf::test {

inline doctest::test_suite needs_fashion_mnist() { return doctest::test_suite("fashion-mnist"); }
inline doctest::test_suite needs_gpu() { return doctest::test_suite("gpu"); }

// Where Debian's dataset-fashion-mnist puts its files (data::ImageDataset::default_fashion_mnist_path()).
inline std::string fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }

}  // namespace stf::test
