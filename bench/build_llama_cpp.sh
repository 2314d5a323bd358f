#!/usr/bin/env bash
# Build llama.cpp (the copy vendored in the llama-cpp-python sdist) for the quantized-decode benchmark.
# Cached under .models/llama.cpp/ (git-ignored, never part of .ci/run): a second run with the binaries present is a no-op.
# Binaries: .models/llama.cpp/build/bin/{llama-bench,llama-cli,llama-server}
# Usage: bash bench/build_llama_cpp.sh [jobs]   (default -j2: the machine is shared)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=$ROOT/.models/llama.cpp
JOBS=${1:-2}
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$DEST/build/bin
if [[ -x $BIN/llama-bench && -x $BIN/llama-cli && -x $BIN/llama-server ]]; then
    echo "llama.cpp already built: $BIN"; exit 0
fi
mkdir -p "$DEST"
if [[ ! -d $DEST/src ]]; then
    rm -rf "$DEST/dl" && mkdir -p "$DEST/dl"
    "$PY" -m pip download --no-deps --no-binary :all: --dest "$DEST/dl" llama-cpp-python
    tar -xzf "$DEST"/dl/llama_cpp_python-*.tar.gz -C "$DEST/dl"
    mv "$DEST"/dl/llama_cpp_python-*/vendor/llama.cpp "$DEST/src"
    ls "$DEST"/dl/llama_cpp_python-*.tar.gz | sed 's/.*llama_cpp_python-//; s/.tar.gz//' > "$DEST/VERSION"
    rm -rf "$DEST"/dl/llama_cpp_python-*/
fi
cmake -S "$DEST/src" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF
cmake --build "$DEST/build" --config Release -j "$JOBS" --target llama-bench llama-cli llama-server
echo "built llama.cpp $(cat "$DEST/VERSION") at $BIN"
