#!/usr/bin/env bash
# The benchmark: sustained throughput against Spark's own ceiling on this machine,
# tick-to-aggregate and tick-to-page latency, peak memory, producer requests per poll.
# Starts its own broker; takes about fifteen minutes; prints a table and writes
# bench/results/bench-<time>.json.
#   ./bench.sh            the full run
#   ./bench.sh --quick    small phases (a smoke run, not a measurement)
#   ./bench.sh --only pipeline   phases 1-6 (no market)
#   ./bench.sh --only market     the market phases alone (2,000 symbols end to end)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" --dev
cd "$ROOT"
# bench/ uses the library (src/) and the Binance stand-in and browser of tests/support/.
export PYTHONPATH="$ROOT/src:$ROOT/tests:$ROOT"
exec "$ROOT/.venv/bin/python" -m bench "$@"
