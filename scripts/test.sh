#!/usr/bin/env bash
# Install everything including the test tools, then lint, type-check and run
# the tests. Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"

bash "$ROOT/scripts/setup.sh" --test
cd "$ROOT" # ruff, mypy and pytest read their settings from pyproject.toml here

printf '\n==> ruff check src tests\n'
"$BIN/ruff" check src tests

printf '\n==> mypy (strict, src/voxgate)\n'
"$BIN/mypy"

printf '\n==> pytest\n'
status=0
"$BIN/pytest" -q "$@" || status=$?
if ((status == 5)); then
    # pytest's exit code 5: nothing was collected. A test run that ran no test did not pass.
    echo "test.sh: FAILED: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
