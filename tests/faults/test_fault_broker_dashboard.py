"""Scenarios 2 and 3 on one whole pipeline, each component run as start.sh runs it (under
its supervisor): the real producer polling the Binance stand-in, the real job, the real
dashboard open in Chromium, and a broker of their own to stop.

2. The broker stopped (SIGTERM) for 30 s mid-stream and started again on the same data:
   every price the stand-in served lands on the topic once, the job resumes, the final
   aggregates equal the oracle, and the open page shows the new values without a reload.
3. The dashboard killed and restarted by its supervisor while Kafka is down: the history
   store alone puts the windows on the page at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pytest

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.schema import parse_time
from crypto_pipeline.core.settings import Duration, Settings
from crypto_pipeline.kafka_io.embedded import EmbeddedKafka
from crypto_pipeline.ops.components import dashboard_health
from crypto_pipeline.producer.sources.replay import tick_from_message
from support import browser
from support.fake_binance import FakeBinance
from support.helpers import (
    METRICS_OFF,
    history_by_key,
    latest_by_key,
    producer_status,
    read_topic,
    spark_status,
    wait_for,
    windows,
)
from support.oracle import mismatches
from support.supervised import Supervised

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.browser]

SYMBOLS = ("BTCUSDT", "ETHUSDT")
OUTAGE_SECONDS = 30
START_TIMEOUT = 240
PAGE_TIMEOUT_MS = 120_000
# The dashboard's first visitor waits up to 5 s for the feed's first answer (page.py).
AT_ONCE_SECONDS = 20


@dataclass
class Pipeline:
    settings: Settings
    broker: EmbeddedKafka
    binance: FakeBinance
    producer: Supervised
    job: Supervised
    dashboard: Supervised

    @property
    def url(self) -> str:
        return f"http://{self.settings.dashboard_address}:{self.settings.dashboard_port}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    broker = EmbeddedKafka(work / "kafka", work / "logs", port=free_port(consecutive=2),
                           heap="384m").start(timeout=120)
    binance = FakeBinance().start()
    settings = Settings.load(environ={}, env_file=None).replace(
        kafka_bootstrap_servers=broker.bootstrap_servers, binance_base_url=binance.url,
        symbols=SYMBOLS, poll_interval_seconds=0.5, http_read_timeout_seconds=5.0,
        trigger_interval=Duration.parse("1 second"), spark_master="local[2]",
        shuffle_partitions=2, spark_ui_port=free_port(), dashboard_port=free_port(),
        dashboard_refresh_seconds=1.0, checkpoint_dir=work / "checkpoints" / "aggregates",
        history_url=sqlite_url(work / "history.sqlite"), run_dir=work / "run",
        backfill_enabled=False, **METRICS_OFF)
    logs = work / "logs"
    components = [Supervised("producer", settings, logs),
                  Supervised("spark", settings, logs, SPARK_LOCAL_DIRS=str(work / "spark")),
                  Supervised("dashboard", settings, logs)]
    try:
        for component in components:
            component.start()
        for component in components:
            component.wait_healthy(START_TIMEOUT)
        yield Pipeline(settings, broker, binance, *components)
    finally:
        for component in reversed(components):
            component.stop()
        broker.stop()
        binance.stop()


def count_shown(page, symbol: str) -> str:
    return page.locator(browser.kpi_selector(symbol, "count")).inner_text()


def latest_per_symbol(aggregates: dict[str, dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for aggregate in aggregates.values():
        symbol = aggregate["symbol"]
        if symbol not in latest or aggregate["window_start"] > latest[symbol]["window_start"]:
            latest[symbol] = aggregate
    return latest


def test_broker_stopped_for_30_seconds(pipeline, chromium, fault_report):
    settings, node = pipeline.settings, pipeline.broker.nodes[0]
    scenario = fault_report(2, f"broker stopped (SIGTERM) for {OUTAGE_SECONDS} s while the "
                               f"producer polls every 0.5 s, then started on the same data")
    page = chromium.new_page()
    page.goto(pipeline.url)
    for symbol in SYMBOLS:
        page.locator(browser.kpi_selector(symbol, "count")).wait_for(timeout=PAGE_TIMEOUT_MS)
    page.evaluate("window.__stillTheSamePage = true")

    pipeline.broker.stop_node(node)
    stopped = time.monotonic()
    wait_for(lambda: producer_status(pipeline.settings.run_dir).state == "kafka-unreachable",
             OUTAGE_SECONDS, "the producer to notice the outage")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))  # the injection
    held = producer_status(pipeline.settings.run_dir).ticks_buffered
    batch = spark_status(pipeline.settings.run_dir).batch_id
    pipeline.broker.start_node(node)
    pipeline.broker.wait_until_ready(120)
    back = datetime.now(timezone.utc)
    scenario.note(f"broker down {time.monotonic() - stopped:.0f} s (stop, {OUTAGE_SECONDS} s, "
                  f"start); the producer held {held} ticks at the end of it")

    wait_for(lambda: producer_status(pipeline.settings.run_dir).state == "ok" and
             producer_status(pipeline.settings.run_dir).ticks_buffered == 0, 120,
             "the producer to deliver what it held")
    wait_for(lambda: (spark_status(pipeline.settings.run_dir).last_batch_at or "") and
             parse_time(spark_status(pipeline.settings.run_dir).last_batch_at) > back,
             START_TIMEOUT,
             "the job to run a micro-batch after the outage")
    scenario.note(f"job: batch {batch} before the outage, "
                  f"{spark_status(pipeline.settings.run_dir).batch_id} after it; "
                  f"supervisor restarts: "
                  f"{pipeline.job.restarts}")

    pipeline.producer.stop()  # delivers everything it accepted, then exits
    status = producer_status(pipeline.settings.run_dir)
    served = pipeline.binance.served_prices()
    records = read_topic(settings.kafka_bootstrap_servers, settings.input_topic,
                         min_records=len(served), timeout=60, idle=0.5)
    scenario.count_deliveries(served, [(r.key.decode(), json.loads(r.value)["price"])
                                       for r in records])
    scenario.note(f"producer: {status.ticks_sent} sent, {status.ticks_dropped} dropped, "
                  f"{status.ticks_failed} failed; errors {status.errors}")
    # Each tick as it was sent: its source says whether a window expects polls.
    expected = windows([replace(tick_from_message(r.value.decode()),
                                source=json.loads(r.value)["source"]) for r in records],
                       settings)
    try:
        def counted() -> bool:
            problems = mismatches(history_by_key(settings), expected)
            assert not problems, problems  # named when the wait times out
            return True

        wait_for(counted, START_TIMEOUT, "the job to count every tick", interval=1.0)
    finally:
        actual = latest_by_key(read_topic(settings.kafka_bootstrap_servers,
                                          settings.output_topic, idle=0.5, timeout=60))
        scenario.count_windows(actual, expected, settings)
    assert mismatches(actual, expected) == []
    assert status.ticks_dropped == 0 and status.ticks_failed == 0
    assert scenario.lost == 0 and scenario.duplicated == 0

    began = time.monotonic()
    for symbol, aggregate in latest_per_symbol(actual).items():
        wait_for(lambda: count_shown(page, symbol) == fmt.count(aggregate["count"]), 60,
                 f"the page to show {symbol}'s final count")
    assert page.evaluate("window.__stillTheSamePage") is True, "the page was reloaded"
    scenario.note(f"the open page showed the final values {time.monotonic() - began:.0f} s "
                  f"after the job counted them, without a reload")


def test_dashboard_restarted_while_kafka_is_down(pipeline, chromium, fault_report):
    settings, node = pipeline.settings, pipeline.broker.nodes[0]
    scenario = fault_report(3, "dashboard killed (SIGKILL) and restarted by its supervisor "
                               "while the broker is down")
    wait_for(lambda: {row["symbol"] for row in open_history(settings.history_url).load()}
             == set(SYMBOLS), START_TIMEOUT, "history for every symbol")
    pipeline.producer.stop()
    pipeline.job.stop()
    history = history_by_key(settings)
    pipeline.broker.stop_node(node)

    killed = pipeline.dashboard.kill_child()
    pipeline.dashboard.restarted_child(killed, 60)
    wait_for(lambda: dashboard_health(settings, 0) is None, 60, "the dashboard to answer")
    page = chromium.new_page()
    opened = time.monotonic()
    page.goto(pipeline.url)
    shown = page.locator(".st-key-windows [data-testid='stMetricValue']")
    try:
        for symbol, aggregate in latest_per_symbol(history).items():
            wait_for(lambda: count_shown(page, symbol) == fmt.count(aggregate["count"]),
                     AT_ONCE_SECONDS, f"{symbol}'s latest window from the history store")
        seconds = time.monotonic() - opened
    finally:
        held = int(shown.inner_text().replace(",", "")) if shown.count() else 0
        scenario.windows_compared = len(history)
        scenario.lost, scenario.duplicated = max(0, len(history) - held), \
            max(0, held - len(history))
        scenario.note(f"windows in the history store: {len(history)}; windows on the page: "
                      f"{held} (lost and duplicated count windows here)")
    scenario.note(f"from opening the page to every card shown: {seconds:.1f} s, with Kafka "
                  f"down: the windows come from the history store alone")
    assert held == len(history)
    assert pipeline.dashboard.restarts == 1
