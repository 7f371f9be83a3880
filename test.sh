#!/usr/bin/env bash
# Set up what is missing (as start.sh does, plus the test packages), run the linter, then
# the test suite: unit, integration against a real Kafka broker and real Spark, and
# browser tests. Fails on a lint finding, a failed test, or no test collected.
#   ./test.sh                   the suite CI runs (everything but the long scenarios)
#   ./test.sh -m long           the long fault scenarios (soak etc.), see README
#   ./test.sh tests/core        any pytest arguments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
echo "==> Linting (ruff check, configured in pyproject.toml)"
"$ROOT/.venv/bin/ruff" check .
echo "==> Running the tests (pytest $*)"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
