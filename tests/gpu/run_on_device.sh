#!/usr/bin/env bash
# Runs the GPU suite and the CUDA demo on a GPU machine from binaries built elsewhere: copy
# build/test_gpu, build/stf_demo and the non-CUDA shared libraries they need (OpenBLAS, gfortran,
# quadmath, gomp) into devrun/, carry devrun/ there and run this script from the repository root.
set -uo pipefail
out="${OUT:-/tmp}"
cudnn=$(find /usr/local/cuda* /opt /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/devrun:${cudnn:+$(dirname "$cudnn"):}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
missing=$(ldd devrun/test_gpu | grep "not found")
[ -n "$missing" ] && { echo "missing libraries: $missing"; exit 1; }
./devrun/test_gpu 2>&1 | tee "$out/test_gpu.log" | tail -40
status=${PIPESTATUS[0]}
./devrun/stf_demo --device cuda --steps 100 2>&1 | tee "$out/demo.log"
exit "$status"
