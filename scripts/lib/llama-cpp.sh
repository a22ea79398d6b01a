# llama.cpp's tools built from the source that the llama-cpp-python sdist vendors (PyPI), for the
# scripts that check our GGUF files against llama.cpp itself. Never part of `swift test`.
# Source it from the repository root; then `llama_cpp_build` leaves, under build/llama.cpp:
#   src/              the vendored llama.cpp (convert_hf_to_gguf.py, convert_lora_to_gguf.py, gguf-py, ggml)
#   cmake/bin/llama-perplexity, llama-quantize, llama-bench, llama-tokenize, llama-logits (scripts/lib/llama-logits.cpp), lib*.so
#   ($LLAMA_CPP_BIN)
# LLAMA_CPP_PYTHON_VERSION picks the sdist (default below); a build is reused while its stamp matches.
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-build/llama.cpp}
LLAMA_CPP_BIN=$LLAMA_CPP_DIR/cmake/bin

# The vendored source: build/llama.cpp/src.
llama_cpp_source() {
  local sdist=build/sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
  [ -f "$LLAMA_CPP_DIR/src/CMakeLists.txt" ] && return 0
  mkdir -p build/sdist "$LLAMA_CPP_DIR"
  if [ ! -f "$sdist" ]; then
    # Only llama-cpp-python as source; its build tools as wheels (building cmake from source takes an hour).
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d build/sdist
  fi
  local tmp; tmp=$(mktemp -d)
  tar xzf "$sdist" -C "$tmp"
  rm -rf "$LLAMA_CPP_DIR/src"
  mv "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" "$LLAMA_CPP_DIR/src"
  rm -rf "$tmp"
}

# cmake (a wheel into a virtualenv when the machine has none).
llama_cpp_cmake() {
  if command -v cmake >/dev/null; then echo cmake; return; fi
  [ -x .venv-gguf/bin/cmake ] || { [ -x .venv-gguf/bin/pip ] || python3 -m venv .venv-gguf; .venv-gguf/bin/pip install --quiet cmake ninja; }
  echo .venv-gguf/bin/cmake
}

llama_cpp_build() {
  llama_cpp_source
  local targets="llama-perplexity llama-quantize llama-bench llama-tokenize"
  local stamp="$LLAMA_CPP_BIN/.built-$LLAMA_CPP_PYTHON_VERSION-$({ echo "$targets"; cat scripts/lib/llama-logits.cpp; } | sha256sum | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  local cmake; cmake=$(llama_cpp_cmake)
  local jobs=${LLAMA_CPP_JOBS:-$(nproc)}
  # CPU only, no network code; GGML_NATIVE for speed (the checks compare numbers, which llama.cpp's
  # CPU kernels give within their own rounding whatever the instruction set).
  "$cmake" -S "$LLAMA_CPP_DIR/src" -B "$LLAMA_CPP_DIR/cmake" -DCMAKE_BUILD_TYPE=Release -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF \
    -DBUILD_SHARED_LIBS=ON >/dev/null
  "$cmake" --build "$LLAMA_CPP_DIR/cmake" -j "$jobs" --target $targets
  local src="$LLAMA_CPP_DIR/src"
  g++ -O2 -std=c++17 scripts/lib/llama-logits.cpp -I"$src/include" -I"$src/ggml/include" \
    -L"$LLAMA_CPP_BIN" -lllama -lggml -lggml-base -Wl,-rpath,"$PWD/$LLAMA_CPP_BIN" -o "$LLAMA_CPP_BIN/llama-logits"
  touch "$stamp"
}
