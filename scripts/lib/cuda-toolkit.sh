# Finds the CUDA compiler and cuBLAS, for scripts/build-cuda.sh (which links with them) and
# scripts/cuda-device-check.sh (whose preflight reports them). Source it, then:
#   find_nvcc      sets nvcc (links resolved: /usr/bin/nvcc is often one into the toolkit) and
#                  toolkit (the folder above nvcc's bin/); returns 1 when there is none. Looks at $NVCC,
#                  nvcc on PATH, $CUDA_HOME/bin, /usr/local/cuda/bin, then the PyPI toolkit that
#                  scripts/fetch-cuda-toolkit.sh unpacks.
#   find_cublas    after find_nvcc: sets cublas_dir (the folder holding libcublas), cublas_link (-lcublas,
#                  or -l:libcublas.so.N where only the versioned file exists, as in NVIDIA's PyPI
#                  wheels) and cublas_include (an -I for cublas_v2.h outside the toolkit, or empty);
#                  returns 1 when there is none. Looks in the toolkit, then beside it (CUDA 12's
#                  wheels put cuBLAS in nvidia/cublas/), then in python3's nvidia packages.
find_nvcc() {
  local candidate
  nvcc=
  for candidate in "${NVCC:-}" "$(command -v nvcc || true)" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc \
    .cache/cuda-toolkit/nvidia/cu13/bin/nvcc; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then nvcc=$(readlink -f "$candidate"); break; fi
  done
  [ -n "$nvcc" ] || return 1
  toolkit=$(cd "$(dirname "$nvcc")/.." && pwd)
}

# The folders a cuBLAS may sit in, each as "LIBDIR INCLUDEDIR", most likely first.
cublas_candidates() {
  local d site
  for d in lib64 lib targets/x86_64-linux/lib; do echo "$toolkit/$d $toolkit/include"; done
  echo "$toolkit/../cublas/lib $toolkit/../cublas/include"
  site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
  if [ -n "$site" ]; then
    for d in "$site"/nvidia/cu*/ "$site"/nvidia/cublas/; do [ -d "$d" ] && echo "${d}lib ${d}include"; done
  fi
}

find_cublas() {
  local lib include versioned
  cublas_dir= cublas_link= cublas_include=
  while read -r lib include; do
    [ -d "$lib" ] || continue
    if [ -e "$lib/libcublas.so" ]; then
      cublas_link=-lcublas
    else
      versioned=$(ls "$lib"/libcublas.so.[0-9]* 2>/dev/null | sort -V | head -n 1 || true)
      [ -n "$versioned" ] || continue
      cublas_link=-l:$(basename "$versioned")
    fi
    cublas_dir=$(cd "$lib" && pwd)
    if [ ! -f "$toolkit/include/cublas_v2.h" ] && [ -f "$include/cublas_v2.h" ]; then cublas_include=-I$(cd "$include" && pwd); fi
    return 0
  done < <(cublas_candidates)
  return 1
}
