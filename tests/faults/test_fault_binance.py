"""Scenario 4: Binance misbehaves in every way the producer meets, one fault after another,
against the real producer process: it never crashes, waits as long as Retry-After says,
and no bad tick reaches the topic; every price served in a good answer lands exactly once."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import pytest

from crypto_pipeline.core.paths import PROJECT_ROOT
from support.helpers import process_env, producer_status, read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RETRY_AFTER = 2
READ_TIMEOUT = 1.0
# (fault, options, what the producer counts it as)
SEQUENCE = [
    ("429", {"retry_after": RETRY_AFTER}, "rate-limited"),
    ("418", {"retry_after": RETRY_AFTER}, "banned"),
    ("5xx", {"status": 503}, "server-error"),
    ("5xx", {"status": 502}, "server-error"),
    ("slow", {"delay": READ_TIMEOUT + 1.0}, "timeout"),
    ("truncated", {}, "malformed-body"),
    ("cut", {}, "malformed-body"),
    ("html", {}, "malformed-body"),
    ("451", {}, "restricted-location"),
    ("bad-price", {"symbol": "ETHUSDT", "value": "NaN"}, "bad-entry"),
    ("bad-price", {"symbol": "BTCUSDT", "value": "-1"}, "bad-entry"),
]


def label(fault: str, options: dict) -> str:
    return " ".join([fault, *(f"{name}={value}" for name, value in options.items())])


def test_binance_faults_in_sequence(settings, fake_binance, tmp_path, fault_report):
    settings = settings.replace(binance_base_url=fake_binance.url, poll_interval_seconds=0.3,
                                symbols=("BTCUSDT", "ETHUSDT"),
                                http_read_timeout_seconds=READ_TIMEOUT)
    scenario = fault_report(4, "one after another: " + ", ".join(
        label(fault, options) for fault, options, _ in SEQUENCE))
    log_file = tmp_path / "producer.log"
    with open(log_file, "wb") as log:
        producer = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
                                    cwd=PROJECT_ROOT, env=process_env(settings), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def requests_after(moment: float):
        assert producer.poll() is None, f"the producer exited:\n{log_file.read_text()}"
        return [r for r in fake_binance.ticker_requests() if r.arrived > moment]

    try:
        last = wait_for(lambda: [r for r in requests_after(0) if r.status == 200], 60,
                        "a first good answer")[-1].answered
        for fault, options, _ in SEQUENCE:
            fake_binance.misbehave(fault, **options)
            spoiled = wait_for(lambda: [r for r in requests_after(last) if r.fault == fault
                                        and r.answered], 30, f"the {fault} answer")[0]
            good = wait_for(lambda: [r for r in requests_after(spoiled.answered)
                                     if r.fault is None and r.status == 200 and r.answered],
                            30, f"a good answer after the {fault}")[0]
            wait = good.arrived - spoiled.answered
            scenario.note(f"{label(fault, options)}: next request {wait:.1f} s after it")
            if fault in ("429", "418"):
                assert wait >= RETRY_AFTER, f"Retry-After {RETRY_AFTER} s ignored after {fault}"
            last = good.answered
        served = fake_binance.served_prices()
        wait_for(lambda: producer_status(settings.run_dir).ticks_sent >= len(served), 30,
                 "the producer to deliver every served price")
        assert producer.poll() is None, "the producer crashed"
        producer.send_signal(signal.SIGTERM)
        assert producer.wait(60) == 0, log_file.read_text()
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()

    served = fake_binance.served_prices()
    records = read_topic(settings.kafka_bootstrap_servers, settings.input_topic,
                         min_records=len(served), timeout=30, idle=0.5)
    landed = [(r.key.decode(), json.loads(r.value)["price"]) for r in records]
    scenario.count_deliveries(served, landed)
    status = producer_status(settings.run_dir)
    scenario.note(f"{status.polls} polls; producer's error counts: {status.errors}; "
                  f"{len(records)} ticks on the topic, every one a price served in a good "
                  f"answer")
    assert scenario.lost == 0 and scenario.duplicated == 0
    assert all(math.isfinite(price) and price > 0 for _, price in landed)
    assert status.ticks_failed == 0 and status.ticks_dropped == 0
    for kind in {kind for _, _, kind in SEQUENCE}:
        assert status.errors.get(kind, 0) == sum(1 for *_, k in SEQUENCE if k == kind), kind
