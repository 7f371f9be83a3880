"""The pipeline run like a service, in one run of the producer, the Spark job and the
dashboard (each under its supervisor, as start.sh runs them): every component's /metrics
in Prometheus' format with numbers that move while ticks flow, Spark's own Prometheus
endpoint, `status --json` for scripts, and Kafka's own tools through scripts/kafka.sh."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.schema import parse_aggregate
from crypto_pipeline.core.settings import Duration, Settings
from crypto_pipeline.core.status import COMPONENTS, DASHBOARD, PRODUCER, SPARK
from crypto_pipeline.streaming.app import APP_NAME
from support.helpers import process_env, spark_status, wait_for
from support.supervised import Supervised

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

START_TIMEOUT = 240
SYMBOLS = ("BTCUSDT", "ETHUSDT")
CTL = PROJECT_ROOT / "src" / "pipelinectl.py"
KAFKA_SH = PROJECT_ROOT / "scripts" / "kafka.sh"


@dataclass
class Pipeline:
    settings: Settings
    components: dict[str, Supervised]

    def metrics_url(self, name: str) -> str:
        port = getattr(self.settings, f"{name}_metrics_port")
        return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture(scope="module")
def pipeline(kafka, tmp_path_factory):
    work = tmp_path_factory.mktemp("service")
    tag = work.name.replace("_", "-")
    settings = Settings.load(environ={}, env_file=None).replace(
        kafka_bootstrap_servers=kafka, kafka_mode="external",
        input_topic=f"ticks-{tag}", output_topic=f"aggregates-{tag}",
        dlq_topic=f"dlq-{tag}", alerts_topic=f"alerts-{tag}",
        candles_topic=f"candles-{tag}", topic_partitions=2,
        price_source="simulated", symbols=SYMBOLS, poll_interval_seconds=0.5,
        trigger_interval=Duration.parse("1 second"), spark_master="local[2]",
        spark_ui_port=free_port(), dashboard_port=free_port(), dashboard_refresh_seconds=1.0,
        producer_metrics_port=free_port(), spark_metrics_port=free_port(),
        dashboard_metrics_port=free_port(), checkpoint_dir=work / "checkpoints" / "aggregates",
        history_url=sqlite_url(work / "history.sqlite"), run_dir=work / "run",
        backfill_enabled=False)
    components = {PRODUCER: Supervised(PRODUCER, settings, work / "logs"),
                  SPARK: Supervised(SPARK, settings, work / "logs",
                                    SPARK_LOCAL_DIRS=str(work / "spark")),
                  DASHBOARD: Supervised(DASHBOARD, settings, work / "logs")}
    try:
        for component in components.values():
            component.start()
        for component in components.values():
            component.wait_healthy(START_TIMEOUT)
        yield Pipeline(settings, components)
    finally:
        for component in reversed(components.values()):
            component.stop()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read().decode()


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample, checking Prometheus' naming on the way."""
    samples = {}
    for family in text_string_to_metric_families(get(url)):
        assert family.name.startswith("crypto_pipeline_"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_each_component_serves_its_health_and_the_numbers_move(pipeline):
    # No visitor needed: the dashboard's health check ran its page once, which started its
    # feed and its /metrics.
    first = {name: scrape(pipeline.metrics_url(name)) for name in (PRODUCER, SPARK, DASHBOARD)}
    log.info("a scrape of the producer:\n%s", get(pipeline.metrics_url(PRODUCER)))
    producer, spark, dashboard = (first[name] for name in (PRODUCER, SPARK, DASHBOARD))
    assert producer['crypto_pipeline_producer_state{state="ok"}'] == 1
    assert producer["crypto_pipeline_producer_symbols"] == len(SYMBOLS)
    assert producer["crypto_pipeline_producer_kafka_reachable"] == 1
    assert producer["crypto_pipeline_producer_ticks_dropped_total"] == 0
    assert "crypto_pipeline_producer_ticks_buffered" in producer
    assert producer["crypto_pipeline_producer_last_success_age_seconds"] < 30
    assert "crypto_pipeline_process_resident_memory_bytes" in producer
    assert spark['crypto_pipeline_spark_state{state="active"}'] == 1
    for name in ("batch_duration_seconds", "input_rows_per_second", "processed_rows_per_second",
                 "backlog_records", "state_rows", "late_ticks_total", "dead_letters_total",
                 "last_batch_age_seconds"):
        assert f"crypto_pipeline_spark_{name}" in spark, name
    assert dashboard["crypto_pipeline_dashboard_kafka_reachable"] == 1
    for name in ("feed_lag_records", "newest_aggregate_age_seconds", "records_skipped_total",
                 "signed_in_sessions", "failed_logins_total"):
        assert f"crypto_pipeline_dashboard_{name}" in dashboard, name

    def moved(name: str, metric: str) -> bool:
        return scrape(pipeline.metrics_url(name))[metric] > first[name][metric]

    for name, metric in ((PRODUCER, "crypto_pipeline_producer_polls_total"),
                         (PRODUCER, "crypto_pipeline_producer_ticks_sent_total"),
                         (SPARK, "crypto_pipeline_spark_batch_id"),
                         (SPARK, "crypto_pipeline_spark_aggregates_emitted_total"),
                         (DASHBOARD, "crypto_pipeline_dashboard_records_read_total")):
        wait_for(lambda: moved(name, metric), 90, f"{metric} to grow")
    # The status file's number, counted once: the file, written after each batch's
    # progress event, is at most as far as the live count.
    in_file = spark_status(pipeline.settings.run_dir).emitted_rows
    live = scrape(pipeline.metrics_url(SPARK))["crypto_pipeline_spark_aggregates_emitted_total"]
    assert 0 < in_file <= live

    # Spark's own endpoints on its UI (spark.ui.prometheus.enabled and the servlet sink),
    # named after the application, not its id.
    ui = f"http://127.0.0.1:{pipeline.settings.spark_ui_port}"
    assert "metrics_executor_" in get(f"{ui}/metrics/executors/prometheus")
    driver = get(f"{ui}/metrics/prometheus")
    namespace = APP_NAME.replace("-", "_")  # as Prometheus names allow
    assert f"metrics_{namespace}_driver_spark_streaming_aggregates_to_" in driver, driver[:2000]

    # The README's table names exactly what is served (a family without a sample too:
    # errors by kind, before the first error).
    served = {family.name + ("_total" if family.type == "counter" else "")
              for name in (PRODUCER, SPARK, DASHBOARD)
              for family in text_string_to_metric_families(get(pipeline.metrics_url(name)))
              if not family.name.startswith("crypto_pipeline_process_")}
    assert documented_metrics() == served


def documented_metrics() -> set[str]:
    """The metric names in the README's table: `crypto_pipeline_producer_polls_total`,
    `_ticks_sent_total`, ... (the prefix of a row's first name goes with the others)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    names = set()
    for component in (PRODUCER, SPARK, DASHBOARD):
        row = re.search(rf"^\| (?:producer|Spark job|dashboard) \| `crypto_pipeline_{component}_"
                        rf".*$", readme, re.M).group(0)
        for name in re.findall(r"`(crypto_pipeline_\w+|_\w+)(?:\{[\w,]+\})?`", row):
            names.add(name if name.startswith("crypto") else f"crypto_pipeline_{component}{name}")
    return names


def status(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CTL), "status", *args],
                          env=process_env(pipeline.settings, **env), capture_output=True,
                          text=True, timeout=60)


def test_status_json_has_an_object_per_component_and_the_text_forms_exit_status(pipeline):
    wait_for(lambda: spark_status(pipeline.settings.run_dir).emitted_rows, 120, "aggregates")
    text, as_json = status(pipeline), status(pipeline, "--json")
    assert text.returncode == as_json.returncode == 0, text.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["healthy"] is True
    assert list(report["components"]) == list(COMPONENTS)
    for name in (PRODUCER, SPARK, DASHBOARD):
        component = report["components"][name]
        assert component["state"] == "running" and component["expected"], component
        assert component["healthy"] and component["pid"] and component["restarts"] == 0
    assert report["components"][PRODUCER]["status"]["ticks_sent"] > 0
    assert report["components"][SPARK]["status"]["state"] == "active"
    assert report["components"]["kafka"]["state"] == "reachable"
    newest = report["newest_aggregate"]
    assert newest["emitted_at"] and 0 <= newest["age_seconds"] < 120
    assert newest["stale"] is False

    # A component that should run and does not: exit status 1 in both forms.
    text, as_json = (status(pipeline, *args, "kafka", KAFKA_MODE="embedded")
                     for args in ((), ("--json",)))
    assert text.returncode == as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["healthy"] is False
    assert report["components"]["kafka"] | {"state": "NOT RUNNING", "healthy": False} == \
        report["components"]["kafka"]


def kafka_sh(pipeline: Pipeline, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KAFKA_SH), *args],
                          env=process_env(pipeline.settings, TMPDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)


def test_kafkas_own_tools_list_the_topics_and_read_an_aggregate(pipeline, tmp_path):
    settings = pipeline.settings
    wait_for(lambda: spark_status(settings.run_dir).emitted_rows, 120, "aggregates")
    listed = kafka_sh(pipeline, tmp_path, "topics", "--list")
    assert listed.returncode == 0, listed.stderr
    topics = set(listed.stdout.split())
    assert {settings.input_topic, settings.output_topic, settings.dlq_topic,
            settings.alerts_topic} <= topics

    read = kafka_sh(pipeline, tmp_path, "console-consumer", "--topic", settings.output_topic,
                    "--from-beginning", "--max-messages", "1", "--timeout-ms", "60000",
                    "--formatter-property", "print.key=true")
    assert read.returncode == 0, read.stderr
    # The default formatter: key, a tab, the value.
    key, value = read.stdout.splitlines()[0].split("\t", 1)
    aggregate = parse_aggregate(value.encode())
    assert aggregate["symbol"] in SYMBOLS and key.startswith(f"{aggregate['symbol']}|")

    described = kafka_sh(pipeline, tmp_path, "topics", "--describe", "--topic",
                         settings.output_topic)
    assert "cleanup.policy=compact,delete" in described.stdout, described.stdout
    assert list(tmp_path.iterdir()) == [], "the client properties file was left behind"
