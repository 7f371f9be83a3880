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

# Each TOOL and the class Kafka's bin/kafka-TOOL.sh runs.
TOOLS="topics org.apache.kafka.tools.TopicCommand
console-consumer org.apache.kafka.tools.consumer.ConsoleConsumer
console-producer org.apache.kafka.tools.ConsoleProducer
consumer-groups org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
configs org.apache.kafka.tools.ConfigCommand
get-offsets org.apache.kafka.tools.GetOffsetShell
delete-records org.apache.kafka.tools.DeleteRecordsCommand
log-dirs org.apache.kafka.tools.LogDirsCommand
broker-api-versions org.apache.kafka.tools.BrokerApiVersionsCommand
metadata-quorum org.apache.kafka.tools.MetadataQuorumCommand
acls org.apache.kafka.tools.AclCommand
transactions org.apache.kafka.tools.TransactionsCommand"

main="$(awk -v tool="${1:-}" '$1 == tool { print $2 }' <<< "$TOOLS")"
if [[ -z "$main" ]]; then
  echo "usage: scripts/kafka.sh TOOL [ARGS...]" >&2
  echo "TOOL: $(cut -d' ' -f1 <<< "$TOOLS" | paste -sd' ')" >&2
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
