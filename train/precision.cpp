#include "train/precision.h"

#include "cuda/math_mode.h"

namespace stf::train {

std::string set_precision(const std::string& precision, Device device, const std::string& flag) {
    if (precision == "fp32") {
        cuda::set_allow_tf32(false);
        return "fp32 (TF32 off)";
    }
    if (precision == "tf32") {
        STF_CHECK(device.is_cuda(), flag << " tf32 needs --device cuda (TF32 is a tensor-core mode)");
        cuda::set_allow_tf32(true);
        return "tf32 (cuBLAS and cuDNN on TF32 tensor cores)";
    }
    if (precision == "bf16") {
        cuda::set_allow_tf32(device.is_cuda());
        return device.is_cuda() ? "bf16 mixed precision (the blocks' convolutions in bf16, the rest TF32)"
                                : "bf16 mixed precision, emulated on the CPU (float arithmetic, bf16 rounding)";
    }
    throw Error(flag + " '" + precision + "' (expected fp32, tf32 or bf16)");
}

DType activation_dtype(const std::string& precision) { return precision == "bf16" ? DType::BF16 : DType::F32; }

}  // namespace stf::train
