#!/usr/bin/env bash
# Start the pipeline in the background: Kafka, topics, producer, Spark job, dashboard.
# Each component runs under a supervisor (restarted after a crash), logs to logs/NAME.log
# and is waited on until healthy. On a failure this run's components are stopped again.
#
#   ./start.sh                  everything
#   ./start.sh kafka spark      only the named components (kafka producer spark dashboard)
#
# Settings come from the environment or .env (see .env.example), for example
#   PRICE_SOURCE=simulated ./start.sh
# The steps themselves are `pipelinectl start` (src/crypto_pipeline/ops/launcher.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" "$ROOT/src/pipelinectl.py" start "$@"
