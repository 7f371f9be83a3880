"""The producer's run loop: a price source feeding the Kafka tick sink, with the status
file, a progress line a minute, and a clean stop that delivers what was accepted."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Callable

from crypto_pipeline.binance.listing import NoMatchError
from crypto_pipeline.binance.rest import BinanceError, UnknownSymbolError
from crypto_pipeline.core import logs, metrics
from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.schema import format_time
from crypto_pipeline.core.settings import Settings, SettingsError, exit_config_error, load_or_exit
from crypto_pipeline.core.status import SOURCE_FAULTS, ProducerStatus, State
from crypto_pipeline.kafka_io.readback import newest_positions
from crypto_pipeline.producer.metrics import ProducerCollector
from crypto_pipeline.producer.sink import KafkaTickSink, ProducerFenced, connect_problem
from crypto_pipeline.producer.sources import SOURCES, PriceSource, ReplayFileError, SourceStatus
from crypto_pipeline.producer.sources.base import STATE_BY_FAULT
from crypto_pipeline.producer.symbol_set import SymbolSet

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 60.0
# How long a stop may take to deliver what is buffered before giving up on it; below the
# supervisor's grace period (components.py), so the give-up is logged, not SIGKILLed.
CLOSE_TIMEOUT_SECONDS = 10.0
RESUME_BACKOFF = {"base": 1.0, "cap": 10.0}
SYMBOLS_BACKOFF = {"base": 1.0, "cap": 60.0}


def build_source(settings: Settings) -> PriceSource:
    """The source PRICE_SOURCE names; a setting it cannot run with raises SettingsError."""
    source = SOURCES.get(settings.price_source)
    if source is None:
        raise SettingsError(f"PRICE_SOURCE={settings.price_source}: this producer reads "
                            f"{', '.join(SOURCES)}")
    if settings.price_source == "replay" and not settings.replay_file.is_file():
        raise SettingsError(f"REPLAY_FILE={settings.replay_file}: no such file")
    return source(settings)


def symbol_set_for(settings: Settings, source: PriceSource) -> SymbolSet | None:
    """The patterns of SYMBOLS to follow, for a source that takes a changing set of
    symbols; None for plain names (nothing to ask Binance) or a replay (its file)."""
    if settings.symbol_patterns and hasattr(source, "update_symbols"):
        return SymbolSet(settings)
    return None


class ProducerApp:
    def __init__(self, settings: Settings, source: PriceSource, sink: KafkaTickSink, *,
                 symbols: SymbolSet | None = None,
                 progress_seconds: float = PROGRESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.source = source
        self.sink = sink
        self.symbols = symbols
        self.progress_seconds = progress_seconds
        self._clock = clock
        self._last_progress = (clock(), self._totals())

    def run(self, stop: threading.Event) -> int:
        """Produce until the source ends (replay) or `stop` is set. Returns the exit code, 0:
        ticks Kafka did not take in time are logged; a fault that stops it raises."""
        self._write_status()
        try:
            if self.symbols is not None and not self._first_symbols(stop):
                return 0
            if hasattr(self.source, "resume"):
                self._resume(stop)
            for batch in self.source.batches(stop):
                if batch:
                    self._deliver(batch, stop)
                self._maybe_refresh_symbols()
                self._write_status()
                self._maybe_log_progress()
        finally:
            if self.symbols is not None:
                self.symbols.close()
            self._close()
        return 0

    def _first_symbols(self, stop: threading.Event) -> bool:
        """Resolve SYMBOLS' patterns before anything is polled or streamed, waiting for
        Binance as long as it does not answer; False when stopped meanwhile. A pattern
        that matches nothing raises NoMatchError."""
        failures = 0
        while not stop.is_set():
            try:
                symbols = self.symbols.start()
            except BinanceError as err:
                failures += 1
                delay = max(backoff_seconds(failures, **SYMBOLS_BACKOFF), err.retry_after or 0)
                self.source.status.state = STATE_BY_FAULT.get(err.kind,
                                                              State.BINANCE_UNREACHABLE)
                self.source.status.errors[err.kind] += 1
                self.source.status.last_error = f"cannot resolve SYMBOLS: {err}"
                log.warning("%s; next try in %.1f s", self.source.status.last_error, delay)
                self._write_status()
                stop.wait(delay)
                continue
            self.source.status.state = State.STARTING
            self.source.status.last_error = None
            self.source.update_symbols(symbols)
            return True
        return False

    def _maybe_refresh_symbols(self) -> None:
        if self.symbols is None or not self.symbols.due():
            return
        joined, left = self.symbols.refresh()
        if joined or left:
            self.source.update_symbols(self.symbols.current)

    def _resume(self, stop: threading.Event) -> None:
        """Read back where Kafka stands for this source before sending anything: starting
        over instead would send again what Kafka already holds."""
        failures = 0
        while not stop.is_set():
            try:
                positions = newest_positions(self.settings, self.source.origin,
                                             self.source.resume_keys)
            except Exception as err:  # noqa: BLE001 - kafka-python's errors, OSError
                failures += 1
                reason = connect_problem(self.settings, err)
                if failures == 1:
                    log.warning("cannot read back where %s stands in %s (%s); waiting for "
                                "Kafka before sending anything", self.source.origin,
                                self.settings.input_topic, reason)
                self.source.status.state = State.KAFKA_UNREACHABLE
                self.source.status.last_error = f"{self.sink.where} unreachable: {reason}"
                self._write_status()
                stop.wait(backoff_seconds(failures, **RESUME_BACKOFF))
                continue
            self.source.status.state = State.STARTING
            self.source.status.last_error = None
            self.source.resume(positions)
            return

    def _deliver(self, batch: list, stop: threading.Event) -> None:
        # A replay waits for room rather than dropping data; live prices do not wait.
        while self.source.lossless and not stop.is_set() and \
                not self.sink.wait_for_room(len(batch), timeout=1.0):
            self._write_status()
        self.sink.offer(batch)

    def _close(self) -> None:
        held = self.sink.counters().buffered
        if held:
            log.info("stopping: delivering %d buffered ticks (up to %.0f s)", held,
                     CLOSE_TIMEOUT_SECONDS)
        undelivered = self.sink.close(CLOSE_TIMEOUT_SECONDS)
        counters = self.sink.counters()
        finished = self.source.status.state == State.FINISHED
        summary = (f"{self.source.status.polls} polls, {counters.sent} ticks sent, "
                   f"{counters.failed} failed, {counters.dropped} dropped, "
                   f"{self.source.status.bad_entries} bad entries skipped")
        if undelivered:
            log.error("%d accepted ticks were not delivered: %s", undelivered,
                      counters.last_error or "Kafka did not confirm them in time")
        log.info("%s: %s", "replay finished" if finished else "stopped", summary)
        self._write_status()

    def _totals(self) -> tuple[int, int, int, int, int, Counter]:
        counters = self.sink.counters()
        source = self.source.status
        return (source.polls, counters.sent, counters.failed, counters.dropped,
                source.bad_entries, Counter({**source.errors, **counters.errors}))

    def _maybe_log_progress(self) -> None:
        since, before = self._last_progress
        now = self._clock()
        if now - since < self.progress_seconds:
            return
        totals = self._totals()
        polls, sent, failed, dropped, bad = (a - b for a, b in zip(totals[:5], before[:5]))
        errors = totals[5] - before[5]
        log.info("last %.0f s: %d polls, %d ticks sent, %d failed, %d dropped, %d bad entries, "
                 "%d buffered; errors: %s", now - since, polls, sent, failed, dropped, bad,
                 self.sink.counters().buffered,
                 ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items())) or "none")
        self._last_progress = (now, totals)

    def status_record(self) -> ProducerStatus:
        source: SourceStatus = self.source.status
        sink = self.sink.counters()
        state, last_error = source.state, source.last_error
        if state not in SOURCE_FAULTS and state != State.FINISHED and not sink.reachable:
            state, last_error = State.KAFKA_UNREACHABLE, sink.last_error
        return ProducerStatus(
            source=self.source.name,
            state=state,
            symbols=list(getattr(self.source, "symbols", ())),  # a replay plays its file
            polls=source.polls,
            ticks_sent=sink.sent,
            ticks_failed=sink.failed,
            ticks_dropped=sink.dropped,
            ticks_buffered=sink.buffered,
            bad_entries=source.bad_entries,
            errors={**source.errors, **sink.errors},
            last_poll_at=_time(source.last_poll_at),
            last_success_at=_time(source.last_success_at),
            last_error=last_error or sink.last_error,
            kafka_reachable=sink.reachable,
            **self._symbol_fields(),
        )

    def _symbol_fields(self) -> dict:
        symbols = self.symbols
        if symbols is None:
            return {}
        return {"symbol_patterns": list(symbols.patterns),
                "symbols_refreshed_at": symbols.refreshed_at,
                "symbols_refresh_error": symbols.error,
                "symbol_changes": list(symbols.changes),
                "symbols_joined": symbols.joined_total, "symbols_left": symbols.left_total}

    def _write_status(self) -> None:
        try:
            self.status_record().write(self.settings.run_dir)
        except OSError as err:
            log.warning("cannot write the status file in %s: %s", self.settings.run_dir, err)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def run_producer(settings: Settings, stop: threading.Event) -> int:
    """Build the source and the sink PRICE_SOURCE and the Kafka settings ask for, and run
    with the metrics endpoint (PRODUCER_METRICS_PORT) up."""
    source = build_source(settings)
    app = ProducerApp(settings, source, KafkaTickSink(settings, origin=source.origin),
                      symbols=symbol_set_for(settings, source))
    server = metrics.serve(settings.producer_metrics_port, settings.metrics_address,
                           ProducerCollector(app.status_record))
    try:
        return app.run(stop)
    finally:
        if server:
            server.close()


def main() -> int:
    """The producer's process (`src/api_producer.py`): until SIGINT/SIGTERM or the end of
    a replay; a setting it cannot run with ends it with one line and EXIT_CONFIG_ERROR."""
    settings = load_or_exit()
    logs.configure(settings.log_level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        return run_producer(settings, stop)
    except (SettingsError, UnknownSymbolError, NoMatchError, ReplayFileError,
            ProducerFenced) as err:
        # A second producer with our transactional id is a configuration problem too: a
        # restart would fence it in turn.
        exit_config_error(str(err))
