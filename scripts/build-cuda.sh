#!/usr/bin/env bash
# Builds the GPU side with nvcc (CUDA 12 or 13), outside SwiftPM:
#   build/cuda/liblqlora_cuda.so  the kernels of Sources/CKernels/cuda (sm_80, sm_90 and PTX for newer)
#   build/cuda/cuda-check         the standalone C program that checks every kernel against the CPU
#                                 scalar reference and benchmarks them (it loads the library as lqlora does)
# The compiler: $NVCC, else nvcc on PATH, else /usr/local/cuda/bin/nvcc, else the PyPI toolkit that
# scripts/fetch-cuda-toolkit.sh unpacks. Put the library next to the lqlora executable (or set
# LQLORA_CUDA_LIBRARY) for `--device cuda`.
# Usage: scripts/build-cuda.sh [--fetch]   (--fetch: download the PyPI toolkit when no nvcc is found)
# Exit status 3: no compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
fetch=0
[ "${1:-}" = "--fetch" ] && fetch=1
nvcc=${NVCC:-}
if [ -z "$nvcc" ]; then
  for candidate in "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc .cache/cuda-toolkit/nvidia/cu13/bin/nvcc; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then nvcc=$candidate; break; fi
  done
fi
if [ -z "$nvcc" ] && [ $fetch = 1 ]; then
  nvcc=$(scripts/fetch-cuda-toolkit.sh) || { echo "build-cuda: could not fetch nvcc from PyPI" >&2; exit 3; }
fi
if [ -z "$nvcc" ]; then
  echo "build-cuda: no nvcc found (set NVCC, install the CUDA toolkit, or pass --fetch)" >&2
  exit 3
fi
# The toolkit is the folder above nvcc's real location (/usr/bin/nvcc is often a link into it).
toolkit=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
# Link against the toolkit's cuBLAS and remember where it is: /usr/local/cuda is often not on the
# dynamic linker's path. DT_RPATH (not RUNPATH) so that cuBLAS finds its own libcublasLt there too.
libdirs=(-Xlinker --disable-new-dtags)
for d in "$toolkit/lib64" "$toolkit/lib" "$toolkit/targets/x86_64-linux/lib"; do
  [ -d "$d" ] && libdirs+=(-L"$d" -Xlinker "-rpath=$d")
done
# cuBLAS by its unversioned name where the toolkit has it, else by its versioned file (PyPI wheels
# and some distributions ship only libcublas.so.N).
cublas=-lcublas
for d in "$toolkit/lib64" "$toolkit/lib" "$toolkit/targets/x86_64-linux/lib"; do
  if [ -e "$d/libcublas.so" ]; then cublas=-lcublas; break; fi
  versioned=$(ls "$d"/libcublas.so.[0-9]* 2>/dev/null | head -n 1 || true)
  if [ -n "$versioned" ]; then cublas=-l:$(basename "$versioned"); break; fi
done
out=build/cuda
mkdir -p "$out"
version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
echo "build-cuda: $nvcc (CUDA $version, toolkit $toolkit, cuBLAS $cublas)"
arch=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
"$nvcc" -O3 -std=c++17 "${arch[@]}" -Xcompiler -fPIC,-Wall -ISources/CKernels/include -shared \
  Sources/CKernels/cuda/lq_cuda.cu "${libdirs[@]}" "$cublas" -o "$out/liblqlora_cuda.so.tmp"
mv "$out/liblqlora_cuda.so.tmp" "$out/liblqlora_cuda.so"
cc -O2 -std=c11 -ffp-contract=off -ISources/CKernels/include -ISources/CKernels Sources/CKernels/*.c Tests/cuda/cuda_check.c \
  -ldl -lpthread -lm -o "$out/cuda-check"
echo "build-cuda: $out/liblqlora_cuda.so and $out/cuda-check"
