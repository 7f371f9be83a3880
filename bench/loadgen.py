"""Synthetic ticks for many symbols, fast: the load of the benchmark and the soak test.

Uses confluent-kafka (librdkafka, a dev dependency): kafka-python tops out far below the
hundreds of thousands of ticks per second a throughput benchmark needs. The messages are
exactly the pipeline's tick format (schema.TICK_FIELDS), built with string formatting
instead of json.dumps because encoding is the generator's bottleneck.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

SOURCE = "bench"


def bench_symbols(count: int) -> list[str]:
    """`count` distinct symbols shaped like Binance's (S0001USDT, ...)."""
    return [f"S{i:04d}USDT" for i in range(1, count + 1)]


def _base_price(index: int) -> float:
    return 10.0 ** (index % 5) * (1.0 + index / 1000)


class TimeText:
    """Epoch microseconds -> `2025-01-15T14:32:01.123456Z`, caching the part to the second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, micros: int) -> str:
        second, fraction = divmod(micros, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, tz=timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.")
        return f"{self._prefix}{fraction:06d}Z"


def tick_json(symbol: str, price: float, time_text: str, event_id: int) -> bytes:
    return (f'{{"symbol":"{symbol}","price":{price:.6f},"event_time":"{time_text}",'
            f'"source":"{SOURCE}","event_id":"{event_id}"}}').encode()


def fast_producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                     "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                     "compression.type": "lz4", "acks": "all"})


def _produce(producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let librdkafka deliver some first


@dataclass(frozen=True)
class Preload:
    bootstrap: str
    topic: str
    symbols: int
    ticks: int
    start_micros: int
    span_seconds: float


def _preload_part(job: Preload, part: int, parts: int) -> int:
    producer = fast_producer(job.bootstrap)
    names = bench_symbols(job.symbols)
    keys = [name.encode() for name in names]
    bases = [_base_price(i) for i in range(job.symbols)]
    step = job.span_seconds * 1e6 / job.ticks
    time_text = TimeText()
    sent = 0
    for i in range(part, job.ticks, parts):
        s = i % job.symbols
        price = bases[s] * (1.0 + 0.001 * math.sin(i / job.symbols))
        _produce(producer, job.topic, keys[s],
                 tick_json(names[s], price, time_text(job.start_micros + int(i * step)), i))
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} ticks not delivered")
    return sent


def preload(job: Preload, processes: int = 2) -> float:
    """Produce `job.ticks` ticks as fast as possible with event times spread evenly over
    `span_seconds` from `start_micros`; returns the seconds it took."""
    began = time.monotonic()
    if processes == 1:
        _preload_part(job, 0, 1)
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.starmap(_preload_part, [(job, p, processes) for p in range(processes)])
    return time.monotonic() - began


def paced(bootstrap: str, topic: str, symbols: int, rate: float, seconds: float,
          on_sent: Callable[[str, int, float], None] | None = None) -> int:
    """Produce `rate` ticks per second for `seconds`, event time = now, round-robin over the
    symbols; `on_sent(symbol, event_micros, monotonic_time)` sees each tick. Returns count."""
    producer = fast_producer(bootstrap)
    names = bench_symbols(symbols)
    keys = [name.encode() for name in names]
    bases = [_base_price(i) for i in range(symbols)]
    time_text = TimeText()
    began = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - began) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            s = sent % symbols
            micros = time.time_ns() // 1000
            price = bases[s] * (1.0 + 0.001 * math.sin(sent / symbols))
            _produce(producer, topic, keys[s], tick_json(names[s], price, time_text(micros), sent))
            if on_sent is not None:
                on_sent(names[s], micros, time.monotonic())
            sent += 1
        producer.poll(0)
        time.sleep(max(0.0, (sent / rate) - (time.monotonic() - began)))
    producer.flush(30)
    return sent
