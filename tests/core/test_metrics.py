"""The /metrics endpoint every component serves: off with port 0, still running when its
port is taken, and a collector's families as Prometheus parses them."""

import logging
import socket
import urllib.request
from datetime import datetime, timezone

from prometheus_client.parser import text_string_to_metric_families

from crypto_pipeline.core import metrics
from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.status import ProducerStatus
from crypto_pipeline.producer.metrics import ProducerCollector
from support.helpers import free_port


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def families(collector) -> dict:
    server = metrics.serve(free_port(), "127.0.0.1", collector)
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_port_0_is_off():
    assert metrics.serve(0, "127.0.0.1", ProducerCollector(ProducerStatus)) is None


def test_a_taken_port_leaves_the_component_running_without_metrics(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING):
            assert metrics.serve(port, "127.0.0.1", ProducerCollector(ProducerStatus)) is None
    assert f"no metrics: cannot listen on 127.0.0.1:{port}" in caplog.text


def test_the_producers_status_as_metrics():
    clock = Clock()
    status = ProducerStatus(state="rate-limited", symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"],
                            polls=7, ticks_sent=12, ticks_buffered=3,
                            errors={"rate-limited": 2, "timeout": 1})
    collector = ProducerCollector(lambda: status, clock=clock)
    clock.now += 42
    found = families(collector)
    sample = {name: family.samples for name, family in found.items()}
    assert sample["crypto_pipeline_producer_polls"][0].value == 7
    assert found["crypto_pipeline_producer_polls"].type == "counter"
    assert {(s.labels["kind"], s.value) for s in sample["crypto_pipeline_producer_errors"]} == {
        ("rate-limited", 2), ("timeout", 1)}
    assert sample["crypto_pipeline_producer_state"][0].labels == {"state": "rate-limited"}
    assert sample["crypto_pipeline_producer_symbols"][0].value == 3
    # No good answer yet: the age counts from the start.
    assert sample["crypto_pipeline_producer_last_success_age_seconds"][0].value == 42
    status.last_success_at = format_time(datetime.fromtimestamp(clock.now - 5, timezone.utc))
    age = families(collector)["crypto_pipeline_producer_last_success_age_seconds"]
    assert age.samples[0].value == 5
    assert "crypto_pipeline_process_resident_memory_bytes" in found
