#!/usr/bin/env bash
# Packs what the GPU machine's check needs and cannot build itself (it has no Swift) into
# build/gpu-bundle.tar.xz (about 30 MB): the release `lqlora` with the shared libraries it loads
# beyond the C library (Swift runtime, Foundation, OpenBLAS, LAPACKE, gfortran), a tiny random Llama
# in NF4, NF3 and GPTQ's uniform integers (scripts/lib/device-e2e.sh's device_e2e_models), a text, and liblqlora_cuda.so + cuda-check built here (used there only if its own
# nvcc build fails). libstdc++ and libgcc_s go to lib-fallback/: the device's own (newer, and what
# its CUDA libraries expect) are used unless `ldd` there says lqlora needs ours.
# Carry the tarball to the device; scripts/cuda-device-check.sh unpacks it. The device needs a glibc
# at least as new as this machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product lqlora >/dev/null
scripts/build-cuda.sh --fetch >/dev/null
root=build/gpu-bundle
rm -rf "$root" "$root.tar.xz"
mkdir -p "$root/bin" "$root/lib" "$root/lib-fallback" "$root/models" "$root/prebuilt"
cp .build/release/lqlora "$root/bin/"
cp build/cuda/liblqlora_cuda.so build/cuda/cuda-check "$root/prebuilt/"
# Every resolved dependency except the C library's own parts, which must come from the device.
ldd .build/release/lqlora | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
    libstdc++.so.*|libgcc_s.so.*) cp -L "$lib" "$root/lib-fallback/" ;;
    *) cp -L "$lib" "$root/lib/" ;;
  esac
done
python3 scripts/make-tiny-llama.py "$root/models/dense" >/dev/null
head -c 20000 data/wikitext-2-raw-test.txt > "$root/text.txt"
lq() { "$root/bin/lqlora" "$@"; }
source scripts/lib/device-e2e.sh
device_e2e_models "$root/models/dense" "$root/models" "$root/text.txt"
tar -cJf "$root.tar.xz.tmp" -C build gpu-bundle
mv "$root.tar.xz.tmp" "$root.tar.xz"
rm -rf "$root"
echo "make-gpu-bundle: $root.tar.xz ($(du -h "$root.tar.xz" | cut -f1)); carry it to the device"
