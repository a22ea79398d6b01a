#!/usr/bin/env bash
# The CUDA part of the tests: compiles liblqlora_cuda.so and build/cuda/cuda-check (fetching nvcc
# from PyPI when the machine has none) and runs the check, which compares every GPU kernel with the
# CPU scalar reference. Without a GPU the check reports why and the kernels are only compiled;
# without any nvcc the CUDA build is skipped. A compile error or a failed check fails the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/build-cuda.sh --fetch
status=$?
if [ $status = 3 ]; then echo "test-cuda: CUDA build skipped (no nvcc, and none could be fetched)"; exit 0; fi
[ $status = 0 ] || exit $status
build/cuda/cuda-check
status=$?
if [ $status = 77 ]; then echo "test-cuda: CUDA kernels compiled; not run (no usable GPU here)"; exit 0; fi
exit $status
