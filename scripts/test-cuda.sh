#!/usr/bin/env bash
# The CUDA part of the tests: runs the GPU checker against the host emulation, compiles liblqlora_cuda.so and build/cuda/cuda-check (fetching nvcc
# from PyPI when the machine has none) and runs the check, which compares every GPU kernel with the
# CPU scalar reference. Without a GPU the check reports why and the kernels are only compiled;
# without any nvcc the CUDA build is skipped. A compile error or a failed check fails the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
# First the checker itself, against the host emulation of the library (Tests/CUDAEmulation): it
# needs no GPU and no nvcc, and proves the checks and their references on every machine.
emulated=$(mktemp -d)
trap 'rm -rf "$emulated"' EXIT
cc -O2 -std=c11 -ffp-contract=off -DLQ_CUDA_CHECK_EMULATED -ISources/CKernels/include -ISources/CKernels \
  -ITests/CUDAEmulation/include $(ls Sources/CKernels/*.c | grep -v cuda_loader.c) Tests/CUDAEmulation/emulation.c \
  Tests/cuda/cuda_check.c $(pkg-config --cflags --libs openblas) -lpthread -lm -o "$emulated/cuda-check" || exit 1
"$emulated/cuda-check" || exit 1
scripts/build-cuda.sh --fetch
status=$?
if [ $status = 3 ]; then echo "test-cuda: CUDA build skipped (no nvcc, and none could be fetched)"; exit 0; fi
[ $status = 0 ] || exit $status
build/cuda/cuda-check
status=$?
if [ $status = 77 ]; then echo "test-cuda: CUDA kernels compiled; not run (no usable GPU here)"; exit 0; fi
exit $status
