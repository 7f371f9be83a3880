#!/usr/bin/env bash
# One line per component (running or not, pid, uptime, restarts, last error), then the
# age of the newest aggregate. Exit status 0 when everything start.sh started is running.
#
#   ./status.sh                 components started by start.sh are expected to run
#   ./status.sh kafka spark     these are expected to run
#   ./status.sh --json          the same facts as JSON, for scripts
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "not set up yet: run ./start.sh"; exit 1; }
exec "$PY" "$ROOT/src/pipelinectl.py" status "$@"
