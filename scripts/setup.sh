#!/usr/bin/env bash
# Set up what is missing, and only that: the virtualenv with the Python packages, and the
# JVM artifacts (Kafka broker, Spark-Kafka connector, Kafka's command-line tools) from
# Maven Central into .jvm/.
# Shared by start.sh and test.sh; safe to run again (second runs reuse everything).
#
#   scripts/setup.sh          runtime packages
#   scripts/setup.sh --dev    runtime and test packages
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
JVM_DIR="$ROOT/.jvm"
POM="$ROOT/jvm/pom.xml"
TOOLS_POM="$ROOT/jvm/kafka-tools/pom.xml"
MAVEN_VERSION="3.9.11"
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

SETUP_START=$SECONDS
step_start=0
step() { step_start=$SECONDS; printf '==> %s\n' "$*"; }
done_step() { printf '    %s (%ss)\n' "${1:-done}" "$((SECONDS - step_start))"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- Java 17+ --------------------------------------------------------------------------
command -v java >/dev/null 2>&1 \
  || fail "Java not found: install a JDK or JRE 17 or newer (e.g. apt install openjdk-17-jre-headless) and run again"
java_version="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
java_major="${java_version%%.*}"
[[ "$java_major" == "1" ]] && java_major="$(echo "$java_version" | cut -d. -f2)"
[[ "$java_major" =~ ^[0-9]+$ && "$java_major" -ge 17 ]] \
  || fail "Java ${java_version:-unknown} is too old: Kafka 4 and Spark 4 need Java 17 or newer (set JAVA_HOME/PATH to one)"

# --- Python 3.10+ and the virtualenv ---------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || fail "python3 not found: install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "$("$PYTHON" -V 2>&1) is too old: install Python 3.10 or newer (or set PYTHON=/path/to/python3.x)"

requirements=("$ROOT/requirements.txt")
[[ "$DEV" == 1 ]] && requirements+=("$ROOT/requirements-dev.txt")
wanted_hash="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.requirements-$( [[ "$DEV" == 1 ]] && echo dev || echo runtime )"
if [[ ! -x "$VENV/bin/python" ]]; then
  step "Creating the virtualenv .venv/ ($("$PYTHON" -V 2>&1))"
  "$PYTHON" -m venv "$VENV" || fail "could not create .venv: install the venv module (e.g. apt install python3-venv)"
  done_step
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted_hash" ]]; then
  step "Installing Python packages from ${requirements[*]##*/} (PyPI)"
  pip_args=(install --disable-pip-version-check --progress-bar off)
  for file in "${requirements[@]}"; do pip_args+=(-r "$file"); done
  set +e
  "$VENV/bin/python" -m pip "${pip_args[@]}" 2>&1 | tee "$VENV/pip.log" \
    | { grep -E '^ *Downloading [^ ]+ \(' | sed -E 's/^ *Downloading /    downloading /' || true; }
  pip_status="${PIPESTATUS[0]}"
  set -e
  [[ "$pip_status" == 0 ]] || { tail -5 "$VENV/pip.log" >&2; fail "pip could not install the requirements (log: .venv/pip.log)"; }
  echo "$wanted_hash" > "$stamp"
  done_step
fi
spark_version="$("$VENV/bin/python" -c 'import pyspark; print(pyspark.__version__)')"

# --- Maven (the machine's, or Maven's own binary distribution) --------------------------
mvn_cmd=""
if command -v mvn >/dev/null 2>&1; then
  mvn_cmd="mvn"
elif [[ -x "$JVM_DIR/maven/bin/mvn" ]]; then
  mvn_cmd="$JVM_DIR/maven/bin/mvn"
fi

fetch_maven() {
  local url="https://repo1.maven.org/maven2/org/apache/maven/apache-maven/$MAVEN_VERSION/apache-maven-$MAVEN_VERSION-bin.tar.gz"
  step "Maven not found: downloading Maven $MAVEN_VERSION from Maven Central"
  printf '    %s\n' "$url"
  mkdir -p "$JVM_DIR"
  "$VENV/bin/python" - "$url" "$JVM_DIR" <<'PY' || fail "could not download Maven: install Maven 3.6+ (e.g. apt install maven) and run again"
import io, sys, tarfile, urllib.request
url, target = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=120) as response:
    data = response.read()
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    if hasattr(tarfile, "data_filter"):
        archive.extractall(target, filter="data")
    else:
        archive.extractall(target)
PY
  rm -rf "$JVM_DIR/maven"
  mv "$JVM_DIR/apache-maven-$MAVEN_VERSION" "$JVM_DIR/maven"
  mvn_cmd="$JVM_DIR/maven/bin/mvn"
  done_step
}

# Copy the runtime dependencies of a pom (jvm/pom.xml with a profile, or a pom of its own
# whose parent is jvm/pom.xml) into a folder, listing what Maven downloads. Skipped when
# the folder was filled from the same pom files before.
fetch_jars() {
  local pom="$1" profile="$2" target="$3" what="$4"; shift 4
  local poms=("$POM") mvn_args=(-B -f "$pom")
  if [[ "$pom" == "$POM" ]]; then mvn_args+=(-P "$profile"); else poms+=("$pom"); fi
  local pom_hash; pom_hash="$(cat "${poms[@]}" | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$target/.stamp" 2>/dev/null)" == "$pom_hash" ]]; then
    return 0
  fi
  [[ -n "$mvn_cmd" ]] || fetch_maven
  step "Fetching $what into ${target#"$ROOT"/} (Maven Central)"
  rm -rf "$target.tmp"
  local log="$JVM_DIR/maven-$profile.log"
  mkdir -p "$JVM_DIR"
  if ! "$mvn_cmd" "${mvn_args[@]}" "$@" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$target.tmp" \
      > "$log" 2>&1; then
    grep -E '^\[ERROR\]' "$log" | head -3 >&2 || true
    return 1
  fi
  grep -oE 'Downloaded from [^:]+: [^ ]+\.jar' "$log" | sed -E 's#.*/([^/]+\.jar)$#    downloaded \1#' || true
  echo "$pom_hash" > "$target.tmp/.stamp"
  rm -rf "$target"
  mv "$target.tmp" "$target"
  done_step "$(find "$target" -name '*.jar' | wc -l) jars, $(du -sh "$target" | cut -f1)"
}

fetch_jars "$POM" kafka-broker "$JVM_DIR/kafka" "the Kafka broker" \
  || fail "Maven could not fetch the Kafka broker jars (log: .jvm/maven-kafka-broker.log)"
fetch_jars "$TOOLS_POM" kafka-tools "$JVM_DIR/kafka-tools" "Kafka's command-line tools" \
  || fail "Maven could not fetch Kafka's tools (log: .jvm/maven-kafka-tools.log)"
fetch_jars "$POM" spark-connector "$JVM_DIR/spark-kafka-$spark_version" \
    "the Spark-Kafka connector for Spark $spark_version" -Dspark.version="$spark_version" \
  || fail "spark-sql-kafka-0-10_2.13:$spark_version could not be fetched from Maven Central (is it published? requirements.txt pins a pyspark whose connector is; log: .jvm/maven-spark-connector.log)"

printf '==> Set-up complete: Python %s, Spark %s, Kafka %s (%ss)\n' \
  "$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" \
  "$spark_version" \
  "$(ls "$JVM_DIR/kafka" | sed -nE 's/^kafka_2\.13-(.*)\.jar$/\1/p')" \
  "$((SECONDS - SETUP_START))"
