#!/usr/bin/env bash
# Fetches a CUDA 13 compiler from PyPI (NVIDIA's wheels: nvcc, runtime headers and libraries, cuBLAS
# headers and libcublas) into .cache/cuda-toolkit, for machines without the CUDA toolkit; this is
# enough to compile and link liblqlora_cuda.so, not to run it (that needs a GPU and its driver).
# Prints the nvcc path on success.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cache/cuda-toolkit
nvcc=$root/nvidia/cu13/bin/nvcc
if [ -x "$nvcc" ]; then echo "$nvcc"; exit 0; fi
wheels=.cache/cuda-wheels
mkdir -p "$wheels"
python3 -m pip download --quiet --no-deps --dest "$wheels" \
  nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-crt==13.5.37 nvidia-nvvm==13.5.37 \
  nvidia-cuda-cccl==13.3.5.0.6 nvidia-cublas==13.10.0.20 >&2
rm -rf "$root.partial"
mkdir -p "$root.partial"
for wheel in "$wheels"/*.whl; do
  case "$wheel" in
    # cuBLAS: headers and the one library we link (its 550 MB libcublasLt is only needed at run time).
    *nvidia_cublas-*) unzip -q -o "$wheel" 'nvidia/cu13/include/*' 'nvidia/cu13/lib/libcublas.so.13' -d "$root.partial" ;;
    *) unzip -q -o "$wheel" 'nvidia/*' -d "$root.partial" ;;
  esac
done
# No unversioned libcublas.so, as in the wheels: build-cuda.sh links the versioned name.
ln -sf libcudart.so.13 "$root.partial/nvidia/cu13/lib/libcudart.so"
chmod +x "$root.partial"/nvidia/cu13/bin/*
rm -rf "$root"
mv "$root.partial" "$root"
echo "$nvcc"
