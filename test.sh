#!/usr/bin/env bash
# Set up what is missing (as start.sh does, plus the test packages), then run the test
# suite: unit, integration against a real Kafka broker and real Spark, and browser tests.
#   ./test.sh                   the suite CI runs (everything but the long scenarios)
#   ./test.sh -m long           the long fault scenarios (soak etc.), see README
#   ./test.sh tests/test_x.py   any pytest arguments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
echo "==> Running the tests (pytest $*)"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
