#!/usr/bin/env bash
# Install everything (a no-op when already done), then start the voice server
# with the offline default stack and open the web client. Extra arguments go
# to `voxgate serve`, e.g. `bash scripts/run.sh --port 9000 --persona ada`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$ROOT/scripts/setup.sh"
printf '\n==> starting voxgate serve (Ctrl-C stops it; it prints the URL to open)\n'
exec "$ROOT/.venv/bin/voxgate" serve --open "$@"
