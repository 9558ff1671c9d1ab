#!/usr/bin/env bash
# Packs what tests/gpu/run_on_device.sh needs on a GPU machine into devrun.tar.gz (git ignores it), from
# a CUDA build made here: the programs (stripped), the non-CUDA shared libraries they load (OpenBLAS,
# gfortran, quadmath, gomp, z, libzip with its bz2 and crypto, and oneDNN with libOpenCL when the build uses
# it; the machine has CUDA, cuBLAS, cuDNN and NCCL itself) and, where this
# machine has Debian's OpenMPI, its runtime as a tar of absolute paths (orterun, orted, libmpi and its
# plugins, PMIx, hwloc, libevent) for machines without mpirun. About 32 MB.
#
#   cmake -S . -B build -DSTF_CUDA=ON && cmake --build build -j
#   bash tests/gpu/build_baseline.sh [REV]      # optional: an earlier revision's benchmarks, for a before/after
#   bash tests/gpu/pack_devrun.sh [build]        # then carry devrun.tar.gz and run run_on_device.sh
#
# `pack_devrun.sh build compare` packs instead what the GPU-scale comparison of the training targets needs
# (run_on_device.sh, section stf_compare-gpu): stf_compare, bench_train and test_kernels, the libraries,
# Debian's Fashion-MNIST (30 MB; the GPU machine has no datasets) and, when there is one, a feature
# classifier from ./train_classifier (CLASSIFIER=path, default classifier.safetensors) so that the call does
# not spend its minutes training one. About 55 MB, under a lent machine's 64 MiB carry limit.
set -euo pipefail
build="${1:-build}"
mode="${2:-all}"
programs=(test_gpu test_kernels stf_demo train_cifar sample stf_info bench_stf_target bench_kernels bench_train bench_sample
          bench_fid fid bench_dataset)
[ "$mode" = compare ] && programs=(stf_compare bench_train test_kernels)
[ "$mode" = all ] || [ "$mode" = compare ] || { echo "pack_devrun: mode is all or compare, got '$mode'" >&2; exit 1; }
for p in "${programs[@]}"; do
    [ -x "$build/$p" ] || { echo "pack_devrun: $build/$p missing: build with -DSTF_CUDA=ON first" >&2; exit 1; }
done
grep -q "STF_CUDA:STRING=ON" "$build/CMakeCache.txt" ||
    { echo "pack_devrun: $build is not a CUDA build (configure with -DSTF_CUDA=ON)" >&2; exit 1; }

rm -rf devrun devrun.tar.gz
mkdir devrun
cp "${programs[@]/#/$build/}" devrun/
[ -f "$build/libstf_dist.so" ] && cp "$build/libstf_dist.so" devrun/
if [ "$mode" = compare ]; then
    fmnist=/usr/share/datasets/fashion-mnist
    [ -f "$fmnist/train-images-idx3-ubyte.gz" ] ||
        { echo "pack_devrun: $fmnist missing (Debian: apt-get install dataset-fashion-mnist)" >&2; exit 1; }
    mkdir devrun/fashion-mnist
    cp "$fmnist"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz devrun/fashion-mnist/
    classifier="${CLASSIFIER:-classifier.safetensors}"
    if [ -f "$classifier" ]; then cp "$classifier" devrun/classifier.safetensors
    else echo "pack_devrun: no $classifier: stf_compare will train its classifier on the device first (10 epochs, not timed on a GPU yet)"; fi
fi
# An earlier revision's benchmarks (tests/gpu/build_baseline.sh), timed beside these on the device.
if [ "$mode" = all ] && [ -f build-baseline/REVISION ]; then
    mkdir devrun/baseline
    cp build-baseline/{bench_train,bench_sample,bench_stf_target,bench_kernels,REVISION} devrun/baseline/
    strip --strip-unneeded devrun/baseline/bench_*
    echo "pack_devrun: with the baseline benchmarks of $(cat build-baseline/REVISION)"
fi
strip --strip-unneeded devrun/*  2>/dev/null || true

# The shared libraries the programs load that are not part of CUDA, as this machine resolves them.
ldd "${programs[@]/#/devrun/}" | awk '/=> \// {print $3}' | sort -u |
    grep -E '/lib(openblas|gfortran|quadmath|gomp|z|zip|bz2|crypto|dnnl|OpenCL)\.so' | xargs -I{} cp -L {} devrun/
# oneDNN (the CPU convolutions, -DSTF_ONEDNN) is 40 MB, 11 MB packed, and loads libOpenCL, which ldd lists
# only under libdnnl itself.
if [ -f devrun/libdnnl.so.2 ]; then
    ldd devrun/libdnnl.so.2 | awk '/=> \// {print $3}' | grep -E '/libOpenCL\.so' | xargs -I{} cp -L {} devrun/
fi

lib=usr/lib/x86_64-linux-gnu
if [ "$mode" = all ] && [ -d "/$lib/openmpi" ] && [ -x /usr/bin/orterun ]; then
    deps=$(cd / && ls -d $lib/libmpi.so.40* $lib/libmpi_cxx.so.40* $lib/libopen-rte.so.40* $lib/libopen-pal.so.40* \
        $lib/libhwloc.so.15* $lib/libevent_core-2.1.so.7* $lib/libevent_pthreads-2.1.so.7* $lib/libnuma.so.1* \
        $lib/libmca_common_*.so.* $lib/liboshmem.so.40* $lib/libpmix.so.2* $lib/libudev.so.1* 2>/dev/null)
    # shellcheck disable=SC2086  # word splitting of $deps is intended
    (cd / && tar --dereference -czf "$OLDPWD/devrun/ompi.tar.gz" usr/bin/orterun usr/bin/orted usr/bin/mpirun.openmpi \
        "$lib/openmpi" "$lib/pmix2" usr/share/openmpi etc/openmpi $deps)
fi
tar -czf devrun.tar.gz devrun
echo "devrun.tar.gz: $(du -h devrun.tar.gz | cut -f1) ($(ls devrun | wc -l) files)"
# A lent machine takes 64 MiB of carried files in all (the pack, ref-src/ and anything else carried).
if (($(stat -c %s devrun.tar.gz) > 60 * 1024 * 1024)); then
    echo "pack_devrun: devrun.tar.gz is over 60 MiB, near the 64 MiB a device call carries;" \
        "a build with -DSTF_ONEDNN=OFF leaves out oneDNN (CPU convolutions only, 11 MB packed)" >&2
fi
