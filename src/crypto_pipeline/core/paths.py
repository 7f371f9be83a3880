"""Where the project keeps things on disk, relative to its own checkout."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
LOG_DIR = PROJECT_ROOT / "logs"
RUN_DIR = PROJECT_ROOT / "logs" / "run"
# JVM artifacts fetched by scripts/setup.sh from Maven Central (git-ignored).
JVM_DIR = PROJECT_ROOT / ".jvm"
KAFKA_JARS_DIR = JVM_DIR / "kafka"
KAFKA_LOG4J_CONFIG = PROJECT_ROOT / "jvm" / "log4j2-kafka.properties"


def spark_connector_jars_dir(spark_version: str) -> Path:
    """The Spark-Kafka connector and its dependencies for one Spark version."""
    return JVM_DIR / f"spark-kafka-{spark_version}"
