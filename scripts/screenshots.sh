#!/usr/bin/env bash
# Regenerate docs/*.png: starts the pipeline replaying real Binance klines (own ports, state
# in a temporary folder), photographs the dashboard and Spark's UI in headless Chromium
# (Debian's chromium package), then stops it. Takes about two minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
# The browser helper lives with the test stand-ins, in tests/support/.
export PYTHONPATH="$ROOT/src:$ROOT/tests"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/screenshots.py" "$@"
