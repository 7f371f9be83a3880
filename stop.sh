#!/usr/bin/env bash
# Stop what start.sh started, in reverse order: SIGTERM, then SIGKILL after a timeout.
# Only processes recorded by start.sh are touched; running it twice is harmless.
#
#   ./stop.sh                   everything
#   ./stop.sh producer          only the named components (kafka producer spark dashboard)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(kafka producer spark dashboard)
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { echo "nothing to stop (the project was never set up)"; exit 0; }
ctl() { "$PY" "$ROOT/src/pipelinectl.py" "$@"; }

requested=("$@")
[[ ${#requested[@]} -eq 0 ]] && requested=("${ALL[@]}")
for name in "${requested[@]}"; do
  [[ " ${ALL[*]} " == *" $name "* ]] || { echo "error: unknown component '$name' (expected: ${ALL[*]})" >&2; exit 2; }
done
RUN_DIR="$(ctl get RUN_DIR)"

for ((i = ${#ALL[@]} - 1; i >= 0; i--)); do
  name="${ALL[$i]}"
  [[ " ${requested[*]} " == *" $name "* ]] || continue
  step_start=$SECONDS
  printf '==> Stopping %s ... ' "$name"
  if [[ "$name" == kafka && -f "$RUN_DIR/kafka.docker" ]]; then
    docker compose -f "$ROOT/docker/docker-compose.yml" stop kafka >/dev/null
    rm -f "$RUN_DIR/kafka.docker"
    outcome="stopped (docker)"
  else
    outcome="$(ctl stop "$name")"
  fi
  printf '%s (%ss)\n' "$outcome" "$((SECONDS - step_start))"
done
