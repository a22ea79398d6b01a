#!/usr/bin/env bash
# The test command: installs what the build needs (and an arm64 cross compiler with qemu for the
# NEON kernels), fetches the small real checkpoints used by the integration tests (all-MiniLM-L6-v2,
# and SmolLM2-135M-Instruct converted from its GGUF; skipped, with the reason printed, if they
# cannot be fetched), runs the C kernel tests natively and under qemu-aarch64,
# compiles the CUDA kernels (nvcc from PyPI if needed; run against the CPU reference when a GPU is
# present), then every Swift test in release mode (numeric code is far too slow in debug).
#
# In CI (CI=true) nothing that should work may turn into a skip: LQLORA_REQUIRE_MODELS=1 makes the
# real-model tests run, and fail, when a model could not be fetched, and LQLORA_REQUIRE_SANITIZERS=1
# makes a sanitizer build that fails, or a block of the C and CUDA checks that cannot run, fail, and
# LQLORA_REQUIRE_MPI=1 makes the MPI checks (mpirun tests, scripts/test-mpi-abi.sh) fail without OpenMPI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = true ]; then
  export LQLORA_REQUIRE_MODELS=${LQLORA_REQUIRE_MODELS:-1} LQLORA_REQUIRE_SANITIZERS=${LQLORA_REQUIRE_SANITIZERS:-1} LQLORA_REQUIRE_MPI=${LQLORA_REQUIRE_MPI:-1}
fi
fetch_failed() {
  if [ "${LQLORA_REQUIRE_MODELS:-}" = 1 ]; then echo "test: could not fetch $1 (LQLORA_REQUIRE_MODELS=1)" >&2; exit 1; fi
  echo "test: could not fetch $1; its integration tests will be skipped"
}
scripts/install-deps.sh --cross
scripts/fetch-minilm.sh || fetch_failed all-MiniLM-L6-v2
swift build -c release --product lqlora
scripts/fetch-smollm2.sh || fetch_failed SmolLM2-135M-Instruct
scripts/test-kernels-c.sh
scripts/test-cuda.sh
scripts/test-mpi-abi.sh
swift test -c release --disable-xctest "$@"
