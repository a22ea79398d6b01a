#!/usr/bin/env bash
# Installs the system libraries lqlora links (OpenBLAS, LAPACKE, zlib, SQLite, ICU, SentencePiece, and hnswlib's headers)
# when pkg-config (or, for hnswlib, the header) cannot be found.
# With --cross (the tests), also the arm64 cross compiler and qemu-user that run the NEON kernel tests,
# unzip for the CUDA compiler wheels, and OpenMPI (mpirun, and mpi.h for scripts/test-mpi-abi.sh) for
# the data-parallel tests; lqlora itself builds and runs without MPI.
set -euo pipefail
missing=()
if [ "${1:-}" = "--cross" ]; then
  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
  command -v unzip >/dev/null 2>&1 || missing+=(unzip)  # unpacks the PyPI CUDA compiler (scripts/fetch-cuda-toolkit.sh)
  { command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1; } || missing+=(openmpi-bin libopenmpi-dev)
fi
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openblas 2>/dev/null || missing+=(libopenblas-dev)
pkg-config --exists lapacke 2>/dev/null || missing+=(liblapacke-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
pkg-config --exists sqlite3 2>/dev/null || missing+=(libsqlite3-dev)
pkg-config --exists icu-uc 2>/dev/null || missing+=(libicu-dev)
[ -f /usr/include/hnswlib/hnswlib.h ] || missing+=(libhnswlib-dev)
[ -f /usr/include/sentencepiece_processor.h ] || missing+=(libsentencepiece-dev)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  pkg-config libopenblas-dev liblapacke-dev zlib1g-dev libsqlite3-dev libicu-dev libhnswlib-dev libsentencepiece-dev "${missing[@]}" >/dev/null
