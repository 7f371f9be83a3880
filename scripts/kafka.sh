#!/usr/bin/env bash
# Kafka's own command-line tools against the pipeline's Kafka: the bootstrap servers and
# the security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CAFILE) come
# from the project's settings (.env, the environment), as for every component.
#
#   scripts/kafka.sh topics --list
#   scripts/kafka.sh topics --describe [--topic crypto-aggregates]
#   scripts/kafka.sh console-consumer --topic crypto-aggregates --from-beginning \
#       --formatter-property print.key=true --max-messages 5
#   scripts/kafka.sh consumer-groups --list
#   scripts/kafka.sh TOOL --help
#
# TOOL is one of Kafka's bin/kafka-TOOL.sh scripts (TOOLS below). The jars are
# org.apache.kafka:kafka-tools at the broker's version, fetched by scripts/setup.sh into
# .jvm/kafka-tools/. The client settings go to the tool in a temporary properties file
# only this user can read, deleted when the tool ends: a SASL password never shows on a
# command line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
JARS="$ROOT/.jvm/kafka-tools"
CTL="$ROOT/src/pipelinectl.py"

TOOLS="acls broker-api-versions configs console-consumer console-producer consumer-groups
delete-records get-offsets log-dirs metadata-quorum topics transactions"

main_class() {
  case "$1" in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    configs) echo org.apache.kafka.tools.ConfigCommand ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    log-dirs) echo org.apache.kafka.tools.LogDirsCommand ;;
    broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    acls) echo org.apache.kafka.tools.AclCommand ;;
    transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
    *) return 1 ;;
  esac
}

if [[ $# == 0 ]] || ! main="$(main_class "$1")"; then
  echo "usage: scripts/kafka.sh TOOL [ARGS...]" >&2
  echo "TOOL: ${TOOLS//$'\n'/ }" >&2
  exit 2
fi
shift
[[ -x "$PY" ]] || { echo "error: not set up yet: run scripts/setup.sh" >&2; exit 1; }
compgen -G "$JARS/kafka-tools-*.jar" > /dev/null \
  || { echo "error: Kafka's tools are missing from .jvm/kafka-tools: run scripts/setup.sh" >&2; exit 1; }
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

bootstrap="$("$PY" "$CTL" get KAFKA_BOOTSTRAP_SERVERS)"
# mktemp creates the file readable by this user only (mode 600).
config="$(mktemp "${TMPDIR:-/tmp}/kafka-client.XXXXXX")"
trap 'rm -f "$config"' EXIT
chmod 600 "$config"
"$PY" "$CTL" kafka-client-properties > "$config"

# Not exec: the trap must remove the file after the tool ends.
"$JAVA" -Xmx256m -Dlog4j2.configurationFile="$ROOT/jvm/log4j2-tools.properties" \
  -cp "$JARS/*" "$main" --bootstrap-server "$bootstrap" --command-config "$config" "$@"
