#!/usr/bin/env bash
# Build llama.cpp's own llama-server from the llama.cpp source that the pinned
# llama-cpp-python release vendors (its sdist, SHA-256 pinned below), for the
# tests that run voxgate's --llm-url path against a real llama-server. The binary
# is cached per version, like the llama-cpp-python wheel: a second run takes
# a second.
#
#   bash scripts/build_llama_server.sh     prints the binary's path last
#
# Environment:
#   VOXGATE_CACHE   where the binary goes (default ~/.cache/voxgate)
set -euo pipefail

# The sdist this script has checked: pip download fetches it, sha256sum verifies it.
PINNED_VERSION="0.3.36"
PINNED_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VOXGATE_PY:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"

die() {
    printf 'build_llama_server.sh: FAILED: %s\n' "$1" >&2
    shift
    for line in "$@"; do printf '    fix: %s\n' "$line" >&2; done
    exit 1
}

version="$(sed -n 's/^ *"llama-cpp-python==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
[[ -n "$version" ]] || die "no llama-cpp-python pin in pyproject.toml" \
    "restore the line \"llama-cpp-python==X.Y.Z\" in pyproject.toml"
cache="${VOXGATE_CACHE:-$HOME/.cache/voxgate}/llama-server-$version"
binary="$cache/llama-server"
if [[ -x "$binary" ]] && "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

[[ "$version" == "$PINNED_VERSION" ]] || die \
    "pyproject.toml pins llama-cpp-python $version; this script knows the sdist of $PINNED_VERSION" \
    "set PINNED_VERSION and PINNED_SHA256 in scripts/build_llama_server.sh (sha256sum of the sdist)"
command -v cmake >/dev/null || die "cmake is missing" "apt-get install -y build-essential cmake"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "llama-server $version: fetching the llama-cpp-python sdist" >&2
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" ||
    die "could not fetch the llama-cpp-python $version sdist" "check that PyPI is reachable"
sdist="$work/llama_cpp_python-$version.tar.gz"
[[ -f "$sdist" ]] || die "pip saved no $(basename "$sdist") (found: $(ls "$work"))"
echo "$PINNED_SHA256  $sdist" | sha256sum -c --quiet - ||
    die "the llama-cpp-python $version sdist does not match its pinned SHA-256"
tar -xzf "$sdist" -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
[[ -f "$src/CMakeLists.txt" ]] || die "the sdist holds no vendor/llama.cpp" \
    "pin a llama-cpp-python release whose sdist vendors llama.cpp"

echo "llama-server $version: compiling (a few minutes on 2 cores)" >&2
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/cmake.log" 2>&1 ||
    { tail -30 "$work/cmake.log" >&2; die "cmake configure failed (above)"; }
cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; die "compiling llama-server failed (above)"; }
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$binary.tmp.$$"
mv "$binary.tmp.$$" "$binary"
"$binary" --version >/dev/null 2>&1 || die "the built llama-server does not run" \
    "remove $cache and run this script again"
echo "$binary"
