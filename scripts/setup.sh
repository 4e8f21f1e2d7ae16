#!/usr/bin/env bash
# Install everything voxgate needs, on a fresh Debian 12 machine or an
# existing checkout. Safe to run again: each step checks first and skips what
# is already in place, so a second run takes seconds.
#
#   bash scripts/setup.sh          Debian build tools, .venv, voxgate, the models
#   bash scripts/setup.sh --test   the same plus the test tools, Chromium and llama-server
#
# Environment:
#   VOXGATE_PYTHON   Python 3.11 to create .venv with (default: python3.11)
#   CMAKE_ARGS       override the trimmed llama.cpp build flags set in this script
#   VOXGATE_CACHE    where the assembled LLM goes (default ~/.cache/voxgate)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.voxgate-installed"
# Only the llama.cpp library is needed: no tools, server, examples, tests or llava.
TRIMMED_CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAVA_BUILD=OFF"
PIP_VERSION="26.3"

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        -h | --help)
            sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup.sh: unknown option '$arg' (use --test or --help)" >&2
            exit 2
            ;;
    esac
done

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '\nsetup.sh: FAILED: %s\n' "$1" >&2
    shift
    for line in "$@"; do printf '    fix: %s\n' "$line" >&2; done
    exit 1
}

# The version pyproject.toml pins, so this script never drifts from it.
pinned_version() {
    sed -n "s/^ *\"$1==\([^\"]*\)\".*/\1/p" "$ROOT/pyproject.toml" | head -n 1
}

python_ok() { # $1: interpreter; true when it is CPython 3.11 with a working venv module
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

pick_python() {
    local candidate
    for candidate in "${VOXGATE_PYTHON:-}" python3.11 /usr/bin/python3.11; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

venv_ok() { [[ -x "$PY" ]] && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

# ---------------------------------------------------------------------------
step "Debian packages"
packages=(build-essential cmake git)
if ! venv_ok && ! pick_python >/dev/null; then
    packages+=(python3.11 python3.11-venv)
fi
if ((WITH_TEST)); then
    packages+=(chromium) # the browser end-to-end tests drive Debian's Chromium headless
fi

missing=()
if command -v dpkg-query >/dev/null; then
    for pkg in "${packages[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == installed ]] || missing+=("$pkg")
    done
else
    note "no dpkg here (not Debian?): assuming ${packages[*]} are installed"
fi

if ((${#missing[@]} == 0)); then
    note "all present: ${packages[*]}"
else
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null || die "installing ${missing[*]} needs root, and sudo is not available" \
            "as root, run: apt-get update && apt-get install -y ${missing[*]}"
        sudo_cmd=(sudo)
    fi
    note "installing: ${missing[*]}"
    "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q ||
        die "apt-get update failed" "check the network to Debian's mirrors, then run this script again"
    "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}" ||
        die "apt-get install failed" "run: apt-get install -y ${missing[*]}"
fi

# ---------------------------------------------------------------------------
step "Python virtual environment ($VENV)"
if venv_ok; then
    note "exists: $("$PY" --version)"
else
    if [[ -e "$VENV" ]]; then
        die "$VENV exists but is not a Python 3.11 environment" "remove it (rm -rf '$VENV') and run this script again"
    fi
    python="$(pick_python)" || die "no Python 3.11 with the venv module found" \
        "apt-get install -y python3.11 python3.11-venv, or set VOXGATE_PYTHON=/path/to/python3.11"
    note "creating it with $python"
    "$python" -m venv "$VENV" || die "could not create $VENV" "apt-get install -y python3.11-venv"
fi

if [[ "$("$PY" -m pip --version 2>/dev/null | cut -d' ' -f2)" != "$PIP_VERSION" ]]; then
    note "installing pip $PIP_VERSION"
    "$PY" -m pip install -q "pip==$PIP_VERSION" || die "could not install pip $PIP_VERSION" \
        "check that PyPI is reachable, then run this script again"
fi

# ---------------------------------------------------------------------------
llama_version="$(pinned_version llama-cpp-python)"
[[ -n "$llama_version" ]] || die "no llama-cpp-python pin found in pyproject.toml" \
    "restore the line \"llama-cpp-python==X.Y.Z\" in pyproject.toml"
step "llama-cpp-python $llama_version (llama.cpp, built from source)"
if "$PY" -c "import sys, llama_cpp; sys.exit(llama_cpp.__version__ != '$llama_version')" 2>/dev/null; then
    note "already built and importable, skipping"
else
    note "compiling with CMAKE_ARGS=${CMAKE_ARGS:-$TRIMMED_CMAKE_ARGS}"
    note "this takes about 5 minutes on 2 cores; pip caches the wheel, so another venv reuses it"
    CMAKE_ARGS="${CMAKE_ARGS:-$TRIMMED_CMAKE_ARGS}" \
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$PY" -m pip install "llama-cpp-python==$llama_version" ||
        die "building llama-cpp-python failed (the compiler output is above)" \
            "apt-get install -y build-essential cmake, then run this script again"
    "$PY" -c 'import llama_cpp' || die "llama_cpp was built but does not import" \
        "rebuild it: $PY -m pip install --force-reinstall --no-cache-dir llama-cpp-python==$llama_version"
fi

# ---------------------------------------------------------------------------
extras="runtime"
target="$ROOT"
if ((WITH_TEST)); then
    extras="dev"
    target="${ROOT}[dev]"
fi
step "voxgate and its pinned dependencies ($extras)"
# The stamp records pyproject.toml's hash: reinstall only when it changed.
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ -x "$VENV/bin/voxgate" && ("$have" == "$want dev" || "$have" == "$want $extras") ]]; then
    note "up to date with pyproject.toml, skipping"
else
    "$PY" -m pip install -e "$target" || die "pip install -e '$target' failed (see above)" \
        "check that PyPI is reachable, then run this script again"
    echo "$want $extras" >"$STAMP"
fi

# ---------------------------------------------------------------------------
step "default models (voxgate models assemble)"
"$VENV/bin/voxgate" models assemble || die "a default model is missing or corrupted (see above)" \
    "follow the fix printed above, or reinstall: rm -rf '$VENV' && bash '$ROOT/scripts/setup.sh'"

if ((WITH_TEST)); then
    step "llama.cpp's llama-server (for the --llm-url tests)"
    note "built from the llama.cpp that llama-cpp-python $llama_version vendors; cached per version"
    VOXGATE_PY="$PY" bash "$ROOT/scripts/build_llama_server.sh" >/dev/null ||
        die "building llama-server failed (see above)" \
            "apt-get install -y build-essential cmake, then run this script again"
fi

step "setup complete"
note "start the voice server:  bash scripts/run.sh"
((WITH_TEST)) && note "run the tests:           bash scripts/test.sh"
exit 0
