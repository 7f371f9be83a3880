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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(kafka producer spark dashboard)
BEGIN=$SECONDS

requested=("$@")
[[ ${#requested[@]} -eq 0 ]] && requested=("${ALL[@]}")
for name in "${requested[@]}"; do
  [[ " ${ALL[*]} " == *" $name "* ]] || { echo "error: unknown component '$name' (expected: ${ALL[*]})" >&2; exit 2; }
done
wanted() { [[ " ${requested[*]} " == *" $1 "* ]]; }

"$ROOT/scripts/setup.sh"
PY="$ROOT/.venv/bin/python"
ctl() { "$PY" "$ROOT/src/pipelinectl.py" "$@"; }

ctl settings > /dev/null  # a bad setting stops here, with one line naming it
KAFKA_MODE="$(ctl get KAFKA_MODE)"
LOG_DIR="$ROOT/logs"
RUN_DIR="$(ctl get RUN_DIR)"
mkdir -p "$LOG_DIR" "$RUN_DIR"

started=()
step_no=0
step_total=${#requested[@]}
if wanted kafka || wanted producer || wanted spark; then
  step_total=$((step_total + 1))  # the topics step
fi

progress() { step_no=$((step_no + 1)); step_start=$SECONDS; printf '==> [%d/%d] %s ... ' "$step_no" "$step_total" "$1"; }
ok() { printf 'ok (%ss)%s\n' "$((SECONDS - step_start))" "${1:+  $1}"; }

rollback() {
  local i
  if [[ ${#started[@]} -gt 0 ]]; then
    echo "==> Stopping what this run started: ${started[*]}"
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
      if [[ "${started[$i]}" == kafka-docker ]]; then
        docker compose -f "$ROOT/docker/docker-compose.yml" stop kafka >/dev/null 2>&1 || true
        rm -f "$RUN_DIR/kafka.docker"
      else
        printf '    %s: %s\n' "${started[$i]}" "$(ctl stop "${started[$i]}")"
      fi
    done
  fi
}

fail() {
  local name="$1" reason="$2"
  printf 'FAILED (%ss)\n' "$((SECONDS - step_start))"
  echo "error: $name: $reason" >&2
  for log in "$LOG_DIR/$name.log" "$LOG_DIR/kafka-broker.log"; do
    [[ -f "$log" ]] || continue
    [[ "$log" == *kafka-broker.log && "$name" != kafka ]] && continue
    echo "---- last lines of ${log#"$ROOT"/} ----" >&2
    tail -n 15 "$log" >&2
  done
  rollback
  exit 1
}

# Start NAME under its supervisor unless it already runs; wait until healthy.
launch() {
  local name="$1" label="$2" timeout="$3" detail reason
  progress "$label"
  if ctl running "$name"; then
    printf 'already running (pid %s) - not started again; ./stop.sh %s to restart it\n' \
      "$(cat "$RUN_DIR/$name.pid")" "$name"
    return 0
  fi
  if ! reason="$(ctl ports "$name")"; then
    fail "$name" "$reason (stop that program, or change the port setting)"
  fi
  printf '\n==== %s start.sh: starting %s ====\n' "$(date -u +%FT%TZ)" "$name" >> "$LOG_DIR/$name.log"
  setsid "$PY" "$ROOT/src/supervise.py" "$name" >> "$LOG_DIR/$name.log" 2>&1 < /dev/null &
  started+=("$name")
  if ! detail="$(ctl wait "$name" "$timeout")"; then
    fail "$name" "$detail"
  fi
  ok "$detail"
}

if wanted kafka; then
  case "$KAFKA_MODE" in
    embedded)
      launch kafka "Starting Kafka (embedded KRaft broker, $(ctl get KAFKA_BOOTSTRAP_SERVERS))" 120 ;;
    docker)
      progress "Starting Kafka with Docker (docker/docker-compose.yml)"
      command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 \
        || fail kafka "KAFKA_MODE=docker needs Docker with the compose plugin; use KAFKA_MODE=embedded (no Docker needed)"
      docker compose -f "$ROOT/docker/docker-compose.yml" up -d kafka >> "$LOG_DIR/kafka.log" 2>&1 \
        || fail kafka "docker compose up failed"
      touch "$RUN_DIR/kafka.docker"
      started+=(kafka-docker)
      detail="$(ctl wait kafka 120)" || fail kafka "$detail"
      ok "$detail" ;;
    external)
      progress "Checking the external Kafka ($(ctl get KAFKA_BOOTSTRAP_SERVERS))"
      detail="$(ctl wait kafka 30)" || fail kafka "$detail (KAFKA_MODE=external starts nothing)"
      ok "$detail" ;;
  esac
fi

if wanted kafka || wanted producer || wanted spark; then
  progress "Creating topics"
  detail="$(ctl topics 2>>"$LOG_DIR/kafka.log")" \
    || fail kafka "could not create the topics: is Kafka running at $(ctl get KAFKA_BOOTSTRAP_SERVERS)? (./start.sh kafka)"
  ok "$detail"
fi

wanted producer && launch producer "Starting the producer (PRICE_SOURCE=$(ctl get PRICE_SOURCE))" 90
wanted spark && launch spark "Starting the Spark job" 240
wanted dashboard && launch dashboard "Starting the dashboard" 90

echo "==> Started in $((SECONDS - BEGIN))s"
wanted dashboard && echo "    Dashboard  http://$(ctl get DASHBOARD_ADDRESS):$(ctl get DASHBOARD_PORT)"
wanted spark && echo "    Spark UI   http://localhost:$(ctl get SPARK_UI_PORT)"
wanted kafka && echo "    Kafka      $(ctl get KAFKA_BOOTSTRAP_SERVERS)"
echo "    Logs in logs/, ./status.sh for health, ./stop.sh to stop"
