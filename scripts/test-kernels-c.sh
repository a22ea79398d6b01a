#!/usr/bin/env bash
# Builds the C kernels with the standalone test Tests/c/kernel_levels.c and runs it natively and,
# when an aarch64 cross compiler and qemu-aarch64 are installed (apt: gcc-aarch64-linux-gnu
# libc6-dev-arm64-cross qemu-user), as an arm64 binary under emulation so the NEON paths are
# checked against the scalar reference on an x86-64 machine (twice: with and without the ARMv8.2
# dot product; natively, the int8-activation kernels run with and without AVX-VNNI where the CPU
# has it). Natively it also runs under ThreadSanitizer (the thread pool) and under
# AddressSanitizer with UndefinedBehaviorSanitizer.
# Every block that does not run says so; with LQLORA_REQUIRE_SANITIZERS=1 (CI) a sanitizer build
# that fails, or a missing cross toolchain, fails the run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
skipped() {
  echo "test-kernels-c: $1; skipped"
  if [ "${LQLORA_REQUIRE_SANITIZERS:-}" = 1 ]; then echo "test-kernels-c: LQLORA_REQUIRE_SANITIZERS=1: failing" >&2; exit 1; fi
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
src=($(ls Sources/CKernels/*.c | grep -v -e cuda_loader.c -e mpi_loader.c) Tests/c/kernel_levels.c)  # the GPU and MPI loaders are not kernels
flags=(-O2 -std=c11 -ffp-contract=off -ISources/CKernels/include -ISources/CKernels)
cc "${flags[@]}" "${src[@]}" -lm -lpthread -o "$out/native"
echo "== native ($(uname -m))"
"$out/native"
# The int8-activation kernels' other x86 dot product (vpmaddubsw where the CPU has AVX-VNNI).
echo "== native, LQLORA_Q8_DOT=baseline"
LQLORA_Q8_DOT=baseline "$out/native" | tail -2
# The thread pool's synchronisation, checked by ThreadSanitizer (any report fails the run).
# Some kernels' address-space layouts stop TSan before it starts ("FATAL: ThreadSanitizer: unexpected
# memory mapping"): that is reported and skipped; a race report (exit 66) or a failed check fails.
if cc -fsanitize=thread -O1 -g "${flags[@]}" "${src[@]}" -lm -lpthread -o "$out/tsan" 2>"$out/tsan-build.log"; then
  echo "== native under ThreadSanitizer"
  status=0
  TSAN_OPTIONS=halt_on_error=1:exitcode=66 "$out/tsan" >"$out/tsan.log" 2>&1 || status=$?
  if [ $status -ne 0 ] && grep -q "FATAL: ThreadSanitizer" "$out/tsan.log" && ! grep -q "WARNING: ThreadSanitizer" "$out/tsan.log"; then
    # The kernel's address-space layout, not our code: reported, and not a failure even in CI.
    echo "test-kernels-c: ThreadSanitizer cannot run here ($(grep -m1 FATAL "$out/tsan.log")); skipped"
  else
    tail -1 "$out/tsan.log"
    [ $status -eq 0 ] || { cat "$out/tsan.log"; exit $status; }
  fi
else
  skipped "the ThreadSanitizer build failed ($(head -c 300 "$out/tsan-build.log"))"
fi
# Memory errors and undefined behaviour (a kernel writing past a block, an overflowing shift).
if cc -fsanitize=address,undefined -fno-sanitize-recover=undefined -O1 -g "${flags[@]}" "${src[@]}" -lm -lpthread \
  -o "$out/asan" 2>"$out/asan-build.log"; then
  echo "== native under AddressSanitizer and UndefinedBehaviorSanitizer"
  ASAN_OPTIONS=detect_leaks=0 "$out/asan" | tail -1
else
  skipped "the AddressSanitizer build failed ($(head -c 300 "$out/asan-build.log"))"
fi
if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
  aarch64-linux-gnu-gcc "${flags[@]}" -static "${src[@]}" -lm -lpthread -o "$out/arm64"
  echo "== arm64 under qemu"
  qemu-aarch64 "$out/arm64"
  # qemu's default CPU has the ARMv8.2 dot product (the int8 kernels' SDOT path); a Cortex-A57 is
  # baseline ARMv8, so the same binary takes the SMULL path.
  echo "== arm64 under qemu, baseline ARMv8 (-cpu cortex-a57)"
  qemu-aarch64 -cpu cortex-a57 "$out/arm64"
else
  skipped "no aarch64 cross compiler or qemu-aarch64: the NEON paths are not run"
fi
