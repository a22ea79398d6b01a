#!/usr/bin/env bash
# Builds the GPU side with nvcc (CUDA 12 or 13), outside SwiftPM:
#   build/cuda/liblqlora_cuda.so  the kernels of Sources/CKernels/cuda (sm_80, sm_90 and PTX for newer)
#   build/cuda/cuda-check         the standalone C program that checks every kernel against the CPU
#                                 scalar reference and benchmarks them (it loads the library as lqlora does)
# The compiler and cuBLAS are found as scripts/lib/cuda-toolkit.sh says ($NVCC, nvcc on PATH, links
# resolved; cuBLAS by its versioned name where the unversioned libcublas.so is absent). Put the library
# next to the lqlora executable (or set LQLORA_CUDA_LIBRARY) for `--device cuda`.
# Usage: scripts/build-cuda.sh [--fetch]   (--fetch: download the PyPI toolkit when no nvcc is found)
# Exit status 3: no compiler (or no cuBLAS).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/cuda-toolkit.sh
fetch=0
[ "${1:-}" = "--fetch" ] && fetch=1
if ! find_nvcc && [ $fetch = 1 ]; then
  NVCC=$(scripts/fetch-cuda-toolkit.sh) || { echo "build-cuda: could not fetch nvcc from PyPI" >&2; exit 3; }
  find_nvcc || true
fi
if [ -z "$nvcc" ]; then
  echo "build-cuda: no nvcc found (set NVCC, install the CUDA toolkit, or pass --fetch)" >&2
  exit 3
fi
if ! find_cublas; then
  echo "build-cuda: no libcublas.so* beside $nvcc (looked in: $(cublas_candidates | cut -d' ' -f1 | tr '\n' ' '))" >&2
  exit 3
fi
# Link against the toolkit's libraries and remember where they are: /usr/local/cuda is often not on
# the dynamic linker's path. DT_RPATH (not RUNPATH) so that cuBLAS finds its own libcublasLt there too.
libdirs=(-Xlinker --disable-new-dtags)
for d in "$toolkit/lib64" "$toolkit/lib" "$toolkit/targets/x86_64-linux/lib" "$cublas_dir"; do
  [ -d "$d" ] && libdirs+=(-L"$d" -Xlinker "-rpath=$d")
done
out=build/cuda
mkdir -p "$out"
version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
echo "build-cuda: $nvcc (CUDA $version, toolkit $toolkit, cuBLAS $cublas_link in $cublas_dir)"
arch=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
# --threads 0: the three targets compile in parallel.
"$nvcc" -O3 -std=c++17 --threads 0 "${arch[@]}" -Xcompiler -fPIC,-Wall -ISources/CKernels/include ${cublas_include:+"$cublas_include"} \
  -shared Sources/CKernels/cuda/lq_cuda.cu "${libdirs[@]}" "$cublas_link" -o "$out/liblqlora_cuda.so.tmp"
mv "$out/liblqlora_cuda.so.tmp" "$out/liblqlora_cuda.so"
cc -O2 -std=c11 -ffp-contract=off -ISources/CKernels/include -ISources/CKernels Sources/CKernels/*.c Tests/cuda/cuda_check.c \
  -ldl -lpthread -lm -o "$out/cuda-check"
echo "build-cuda: $out/liblqlora_cuda.so and $out/cuda-check"
