"""PRICE_SOURCE=replay: a kline file or a file of tick messages, at REPLAY_SPEED."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from crypto_pipeline.binance.klines import read_klines, ticks_of
from crypto_pipeline.core.schema import Tick, parse_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State
from crypto_pipeline.producer.sources.base import SourceStatus, idle_until, now_utc

log = logging.getLogger(__name__)

REPLAY_BATCH = 500


class ReplayFileError(ValueError):
    """REPLAY_FILE cannot be read as klines or ticks; the message names file and line."""


def tick_from_message(line: str) -> Tick:
    """A tick message as on INPUT_TOPIC, replayed: its data, labelled as a replay.
    ValueError or TypeError when it is not one (Tick validates the values)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a tick message is a JSON object")
    quantity = message.get("quantity")
    try:
        return Tick(str(message["symbol"]).upper(), float(message["price"]),
                    parse_time(str(message["event_time"])), "replay",
                    quantity=None if quantity is None else float(quantity),
                    event_id=message.get("event_id"))
    except KeyError as err:
        raise ValueError(f"no {err.args[0]}") from None


def _is_tick_file(path: Path) -> bool:
    with open(path) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


class ReplaySource:
    """REPLAY_FILE (a kline file of either layout, or JSON-lines ticks) at REPLAY_SPEED:
    event times come from the data, and the gaps between them shrink by the speed.

    A tick's position is its index among the file's ticks; a restarted replay goes on
    after the newest position Kafka holds for the file (transactions commit in order,
    so every tick before it is there too), and one that finished sends nothing again."""

    name = "replay"
    lossless = True  # a replay waits for Kafka rather than dropping its data
    resume_keys = None

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self.path = settings.replay_file
        self.speed = settings.replay_speed
        self.origin = f"replay:{self.path.name}"
        self.status = SourceStatus()
        self._clock = clock
        self._started = 0.0
        self._first: datetime | None = None
        self._resume_after = -1

    def resume(self, positions: dict[str, int]) -> None:
        if positions:
            self._resume_after = max(positions.values())
            log.info("resuming %s after its tick %d: Kafka holds the ticks before",
                     self.path.name, self._resume_after)

    def ticks(self) -> Iterator[Tick]:
        """The file's ticks, each with its position."""
        for position, tick in enumerate(self._file_ticks()):
            yield dataclasses.replace(tick, position=position)

    def _file_ticks(self) -> Iterator[Tick]:
        try:
            if not _is_tick_file(self.path):
                yield from ticks_of(read_klines(self.path))
                return
        except ValueError as err:  # a kline file that is not one
            self.status.last_error = f"REPLAY_FILE={self.path}: {err}"
            raise ReplayFileError(self.status.last_error) from None
        with open(self.path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield tick_from_message(line)
                except (ValueError, TypeError) as err:
                    self.status.bad_entries += 1
                    self.status.errors["bad-entry"] += 1
                    self.status.last_error = f"{self.path.name}, line {number}: {err}"
                    log.warning("skipped %s", self.status.last_error)

    def batches(self, stop: threading.Event) -> Iterator[list[Tick]]:
        log.info("replaying %s at %s", self.path,
                 "full speed" if self.speed == 0 else f"{self.speed:g}x real time")
        self._started = self._clock()
        batch: list[Tick] = []
        for tick in self.ticks():
            if tick.position <= self._resume_after:
                continue
            due = self._due(tick)
            # Send what is due before waiting for the next tick.
            if batch and (len(batch) >= REPLAY_BATCH or due > self._clock()):
                yield self._emitted(batch)
                batch = []
            yield from idle_until(due, stop, self._clock)
            if stop.is_set():
                return
            batch.append(tick)
        if batch:
            yield self._emitted(batch)
        self.status.state = State.FINISHED

    def _due(self, tick: Tick) -> float:
        """When `tick` is to be sent (monotonic clock): its distance in event time from the
        first tick, shrunk by the speed; at speed 0, at once."""
        self._first = self._first or tick.event_time
        if not self.speed:
            return self._started
        return self._started + (tick.event_time - self._first).total_seconds() / self.speed

    def _emitted(self, batch: list[Tick]) -> list[Tick]:
        self.status.polls += 1
        self.status.last_poll_at = self.status.last_success_at = now_utc()
        if self.status.state == State.STARTING:
            self.status.state = State.OK
        return batch
