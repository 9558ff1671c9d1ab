// The arithmetic a run uses, shared by training, sampling and the benchmarks:
//   fp32  float32 everywhere, TF32 off (EDM's recipe);
//   tf32  float32 storage, cuBLAS and cuDNN on TF32 tensor cores (CUDA only);
//   bf16  mixed precision: the residual blocks' convolutions and the activations between them in
//         bfloat16, float32 master weights, the rest TF32 on CUDA; on the CPU emulated (float
//         arithmetic with the GPU's bf16 rounding), to check numerics rather than speed.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace stf::train {

// Sets the process-wide math mode for `precision` (fp32, tf32 or bf16) on `device` and returns a
// description such as "fp32 (TF32 off)". `flag` names the option in errors ("--precision", "--mode").
// The network's part of bf16 is its activation dtype: net.set_activation_dtype(activation_dtype(...)).
std::string set_precision(const std::string& precision, Device device, const std::string& flag = "--precision");
// The network's activation dtype for a precision (nn::Module::set_activation_dtype): bf16 for "bf16".
DType activation_dtype(const std::string& precision);

}  // namespace stf::train
