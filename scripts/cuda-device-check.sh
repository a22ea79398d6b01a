#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU and the CUDA toolkit (no Swift needed). It
# judges itself, in this order:
#   1. preflight: the nvcc that build-cuda.sh resolves, the cuBLAS files it links, LD_LIBRARY_PATH,
#      where libcuda.so.1 is found, the GPU's name and memory, compute-sanitizer, and the bundle's
#      lqlora resolved with `ldd` (the device's libstdc++ unless it lacks what lqlora needs)
#   2. build liblqlora_cuda.so and cuda-check with that nvcc (scripts/build-cuda.sh); if that fails,
#      the bundle's prebuilt copies stand in so that the rest still gives a verdict
#   3. compute-sanitizer --tool memcheck, then --tool racecheck, over cuda-check --quick
#   4. cuda-check: every kernel (NormalFloat and GPTQ's uniform integers) against the CPU scalar
#      reference (see Tests/cuda/cuda_check.c)
#   5. the benchmark (cuda-check --bench-only): each figure beside the device's copy bandwidth
#   6. with build/gpu-bundle.tar.xz carried over (scripts/make-gpu-bundle.sh): `lqlora` eval, greedy
#      generate and a short finetune on NF4/NF3 and GPTQ/RTN models, --device cpu and cuda
#      (scripts/lib/device-e2e.sh), compared
#      by scripts/device-judge.py: perplexity within 1e-5 relative, text identical, losses within 1e-5
# Usage: scripts/cuda-device-check.sh [OUTDIR]   (default build/cuda/device-check)
# Writes OUTDIR/cuda-device-check.log (everything it prints) and OUTDIR/cuda-device-check.json (every
# check, the preflight's facts, every figure), and ends with one line "N passed, M failed" (", K
# skipped" where a tool could not run). Exit status 1 when a check failed. Every step runs under a
# time limit cut to what is left of $LQLORA_DEVICE_CHECK_SECONDS (default 450), so the whole ends
# within 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/cuda/device-check}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checks=$work/checks.tsv facts=$work/facts.tsv
: >"$checks"
: >"$facts"
started=$(date +%s)
deadline=$((started + ${LQLORA_DEVICE_CHECK_SECONDS:-450}))
source scripts/lib/cuda-toolkit.sh
source scripts/lib/device-e2e.sh

check() {  # PASS|FAIL|SKIP NAME DETAIL
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$checks"
  echo "== $1 $2: $3"
}
fact() {  # KEY VALUE
  printf '%s\t%s\n' "$1" "$2" >>"$facts"
  printf '  %-20s %s\n' "$1" "$2"
}
# limited SECONDS COMMAND...: the command under a time limit cut to the time left; 124 when over.
limited() {
  local want=$1 left=$((deadline - $(date +%s)))
  shift
  [ $left -lt $want ] && want=$left
  if [ $want -lt 5 ]; then
    echo "(not started: the time budget is spent)"
    return 124
  fi
  timeout --kill-after=5 "$want" "$@"
}
# step NAME: starts a timed section; step_end records its seconds.
step() {
  step_name=$1 step_start=$(date +%s)
  echo
  echo "== $1 ($((step_start - started)) s in)"
}
step_end() { fact "seconds_$step_name" $(($(date +%s) - step_start)); }

preflight() {
  step preflight
  fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  fact cpu_cores "$(nproc)"
  fact glibc "$(ldd --version 2>&1 | head -n 1)"
  if find_nvcc; then
    fact nvcc "$nvcc ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p'))"
    if find_cublas; then
      fact cublas "$cublas_link in $cublas_dir"
      fact cublas_files "$(cd "$cublas_dir" && ls libcublas* 2>/dev/null | tr '\n' ' ')"
    else
      fact cublas "none found"
    fi
  else
    fact nvcc "none found (NVCC, PATH, CUDA_HOME, /usr/local/cuda)"
  fi
  fact LD_LIBRARY_PATH "${LD_LIBRARY_PATH:-(unset)}"
  # Where the dynamic linker finds the driver for a program started here (as lqlora will be).
  local libcuda
  libcuda=$(python3 -c "import ctypes; ctypes.CDLL('libcuda.so.1'); print(next(l.split()[-1] for l in open('/proc/self/maps') if 'libcuda.so' in l))" 2>/dev/null)
  fact libcuda.so.1 "${libcuda:-not found by the dynamic linker}"
  [ -n "$libcuda" ] || check FAIL preflight "libcuda.so.1 is not found: no --device cuda run can start"
  fact ldconfig_libcuda "$( (ldconfig -p 2>/dev/null | grep -m 2 'libcuda.so.1' | tr -s ' \t' ' ') || true)"
  fact gpu "$(nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm,clocks.max.memory --format=csv,noheader 2>&1 | head -n 4 | tr '\n' ';')"
  sanitizer=$(command -v compute-sanitizer || true)
  for candidate in "${toolkit:-/nonexistent}/bin/compute-sanitizer" "${toolkit:-/nonexistent}/compute-sanitizer/compute-sanitizer"; do
    [ -z "$sanitizer" ] && [ -x "$candidate" ] && sanitizer=$candidate
  done
  fact compute-sanitizer "${sanitizer:-not found}"
  bundle_preflight
  step_end
}

# The bundle: unpacked, and its lqlora resolved against the device's libraries. libstdc++ and
# libgcc_s are the device's unless ldd says lqlora needs a version they lack (then lib-fallback/).
bundle_preflight() {
  b=
  if [ ! -f build/gpu-bundle.tar.xz ]; then
    fact bundle "build/gpu-bundle.tar.xz absent (scripts/make-gpu-bundle.sh, then carry it)"
    return
  fi
  # tar needs xz; Python's tarfile does without.
  tar -xJf build/gpu-bundle.tar.xz -C "$work" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' build/gpu-bundle.tar.xz "$work" ||
    { check FAIL bundle "build/gpu-bundle.tar.xz does not unpack"; return; }
  b=$work/gpu-bundle
  # Appended: where the driver (libcuda.so.1) is found through LD_LIBRARY_PATH, it must stay found.
  libpath=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$b/lib
  local resolved missing
  resolved=$(LD_LIBRARY_PATH=$libpath ldd "$b/bin/lqlora" 2>&1)
  if grep -E "libstdc\+\+|libgcc_s|GLIBCXX|CXXABI|GCC_[0-9]" <<<"$resolved" | grep -q "not found"; then
    libpath=$libpath:$b/lib-fallback
    fact bundle_libstdc++ "the bundle's ($(grep -m 1 'not found' <<<"$resolved" | tr -s ' \t' ' '))"
    resolved=$(LD_LIBRARY_PATH=$libpath ldd "$b/bin/lqlora" 2>&1)
  else
    fact bundle_libstdc++ "the device's: $(grep -m 1 'libstdc++' <<<"$resolved" | tr -s ' \t' ' ')"
  fi
  missing=$(grep "not found" <<<"$resolved" | tr -s ' \t' ' ' | tr '\n' ';')
  if [ -n "$missing" ]; then
    check FAIL bundle "lqlora cannot load: $missing"
    b=
  else
    check PASS bundle "lqlora resolves every library ($(grep -c '=>' <<<"$resolved") of them)"
  fi
}

build() {
  step build
  check_binary=build/cuda/cuda-check library=$PWD/build/cuda/liblqlora_cuda.so
  if limited 300 scripts/build-cuda.sh; then
    check PASS build "liblqlora_cuda.so and cuda-check in $(($(date +%s) - step_start)) s"
  else
    check FAIL build "scripts/build-cuda.sh failed (above)"
    if [ -n "$b" ] && [ -f "$b/prebuilt/liblqlora_cuda.so" ]; then
      echo "(the bundle's prebuilt library and cuda-check stand in; cuBLAS from ${cublas_dir:-the dynamic linker search path})"
      check_binary=$b/prebuilt/cuda-check library=$b/prebuilt/liblqlora_cuda.so
      [ -n "${cublas_dir:-}" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cublas_dir
    else
      check_binary=
    fi
  fi
  export LQLORA_CUDA_LIBRARY=$library
  step_end
}

# sanitize TOOL: compute-sanitizer --tool TOOL over cuda-check --quick.
sanitize() {
  local tool=$1 status
  step "$tool"
  if [ -z "$sanitizer" ]; then check SKIP "$tool" "compute-sanitizer not found"; return; fi
  if [ -z "$check_binary" ]; then check FAIL "$tool" "no cuda-check to run"; return; fi
  # API errors are not reported: cuda-check provokes one (a 1 PiB allocation) and checks every status itself.
  limited 120 "$sanitizer" --tool "$tool" --error-exitcode 86 --report-api-errors no --print-limit 20 "$check_binary" --quick \
    >"$work/$tool.log" 2>&1
  status=$?
  tail -n 25 "$work/$tool.log"
  local summary
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$work/$tool.log" | tail -n 1)
  if [ $status = 0 ]; then
    check PASS "$tool" "cuda-check --quick: ${summary:-no summary line}"
  elif [ $status = 86 ]; then
    check FAIL "$tool" "errors in the kernels: ${summary:-see the log}"
  elif [ $status = 124 ]; then
    check FAIL "$tool" "still running after its time limit"
  elif grep -qiE "not supported|unable to|error 999|cannot be" "$work/$tool.log" && ! grep -q "cuda-check: .* failures" "$work/$tool.log"; then
    check SKIP "$tool" "compute-sanitizer cannot instrument this device: $(grep -m 1 -iE 'not supported|unable to|error 999|cannot be' "$work/$tool.log")"
  else
    check FAIL "$tool" "exit status $status: $(tail -n 1 "$work/$tool.log")"
  fi
  step_end
}

kernels() {
  local status
  step kernels
  [ -n "$check_binary" ] || { check FAIL kernels "no cuda-check"; return; }
  limited 180 "$check_binary"
  status=$?
  case $status in
    0) check PASS kernels "cuda-check: every kernel against the CPU reference, refusals, failures, threads" ;;
    77) check FAIL kernels "cuda-check found no usable library or GPU (above)" ;;
    124) check FAIL kernels "cuda-check still running after its time limit" ;;
    *) check FAIL kernels "cuda-check exit status $status (its FAIL lines above)" ;;
  esac
  step_end
}

benchmark() {
  local status
  step benchmark
  [ -n "$check_binary" ] || { check SKIP benchmark "no cuda-check"; return; }
  limited 180 "$check_binary" --bench-only --json "$work/benchmark.json"
  status=$?
  if [ $status = 0 ]; then check PASS benchmark "figures in the JSON's figures.benchmark"; else check FAIL benchmark "exit status $status"; fi
  step_end
}

end_to_end() {
  step end_to_end
  if [ -z "$b" ]; then
    check SKIP end_to_end "no usable bundle (above): lqlora --device cuda not run"
    return
  fi
  lq() { LD_LIBRARY_PATH=$libpath limited 120 "$b/bin/lqlora" "$@"; }
  echo "lqlora $(lq --version 2>&1)"
  lq env 2>&1
  device_e2e "$work/e2e" "$b/models" "$b/text.txt"
  python3 scripts/device-judge.py compare "$work/e2e" --checks "$checks" --figures "$work/end_to_end.json"
  for f in "$work"/e2e/*-cuda.err; do  # what the GPU runs said (their device line, any warning)
    echo "-- $(basename "$f"): $(grep -m 2 -E 'GPU|warning' "$f" | tr '\n' ' ')"
  done
  step_end
}

main() {
  echo "== cuda-device-check: output in $out"
  preflight
  build
  sanitize memcheck
  sanitize racecheck
  kernels
  benchmark
  end_to_end
  fact seconds_total $(($(date +%s) - started))
  echo
  python3 scripts/device-judge.py summarize --checks "$checks" --facts "$facts" \
    --figures "$work/benchmark.json" "$work/end_to_end.json" --out "$out/cuda-device-check.json"
}
main 2>&1 | tee "$out/cuda-device-check.log"
exit "${PIPESTATUS[0]}"
