"""The producer under test: in a thread or as the entry point's process, and what it sent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.producer.app import ProducerApp, build_source, symbol_set_for
from crypto_pipeline.producer.sink import KafkaTickSink
from support.helpers import producer_status, read_topic


@contextmanager
def running(settings: Settings, progress_seconds: float = 60.0,
            source=None) -> Iterator[ProducerApp]:
    """The producer in a thread; on leaving, stopped as SIGTERM would, and its result checked."""
    stop = threading.Event()
    source = source or build_source(settings)
    app = ProducerApp(settings, source, KafkaTickSink(settings, origin=source.origin),
                      symbols=symbol_set_for(settings, source), progress_seconds=progress_seconds)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["code"] = app.run(stop)
        except BaseException as err:  # noqa: BLE001 - handed to the test below
            outcome["error"] = err

    thread = threading.Thread(target=run, name="producer-under-test", daemon=True)
    thread.start()
    try:
        yield app
        assert thread.is_alive(), f"the producer ended by itself: {outcome}"
    finally:
        stop.set()
        thread.join(45)
    assert not thread.is_alive(), "the producer did not stop within 45 s"
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["code"] == 0


def sent_at_least(settings: Settings, count: int):
    def check() -> bool:
        return producer_status(settings.run_dir).ticks_sent >= count
    return check


def landed(kafka: str, settings: Settings, count: int) -> list:
    return read_topic(kafka, settings.input_topic, min_records=count, timeout=20, idle=0.3)


def assert_served_prices_landed(kafka: str, settings: Settings, fake) -> list:
    """Every price a good answer served is on the topic once, keyed by its symbol, and
    nothing else is: bad entries and spoiled answers never become ticks."""
    served = fake.served_prices()
    records = landed(kafka, settings, len(served))
    assert Counter((r.key.decode(), json.loads(r.value)["price"]) for r in records) == \
        Counter(served)
    return records


def start_producer(env: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
                            cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "producer.log", "w"))


@contextmanager
def producer_process(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    """The entry point as a process; on leaving, stopped with SIGTERM, which must end it
    with exit code 0 (killed if it does not end)."""
    process = start_producer(env, tmp_path)
    try:
        yield process
        process.send_signal(signal.SIGTERM)
        assert process.wait(45) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
