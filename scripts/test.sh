#!/usr/bin/env bash
# The test command: installs what the build needs (and an arm64 cross compiler with qemu for the
# NEON kernels), fetches the small real checkpoints used by the integration tests (all-MiniLM-L6-v2,
# and SmolLM2-135M-Instruct converted from its GGUF; skipped, with the reason printed, if they
# cannot be fetched), runs the C kernel tests natively and under qemu-aarch64,
# compiles the CUDA kernels (nvcc from PyPI if needed; run against the CPU reference when a GPU is
# present), then every Swift test in release mode (numeric code is far too slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --cross
scripts/fetch-minilm.sh || echo "test: could not fetch all-MiniLM-L6-v2; its integration test will be skipped"
swift build -c release --product lqlora
scripts/fetch-smollm2.sh || echo "test: could not fetch SmolLM2-135M-Instruct; its integration tests will be skipped"
scripts/test-kernels-c.sh
scripts/test-cuda.sh
swift test -c release --disable-xctest "$@"
