#!/usr/bin/env bash
# Stop what start.sh started, in reverse order: SIGTERM, then SIGKILL after a timeout.
# Only processes recorded by start.sh are touched; running it twice is harmless.
#
#   ./stop.sh                   everything
#   ./stop.sh producer          only the named components (kafka producer spark dashboard)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "nothing to stop (the project was never set up)"; exit 0; }
cd "$ROOT"
exec "$PY" "$ROOT/src/pipelinectl.py" stop "$@"
