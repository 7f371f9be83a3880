"""History from the first minutes: the last BACKFILL_HOURS of aggregates and 1-minute
candles, computed from one-minute klines in a thread of the Spark job's driver while the
live queries run.

Klines come from Binance (`binance_klines`, the producer's client rules) or BACKFILL_FILE;
each replays as four ticks (`Kline.ticks`, source `backfill`, the candle's volume spread
over them) through the live job's own `transforms.aggregate_windows` on a static
DataFrame, so a backfilled window or candle has the live record's shape and meaning
(a candle of four ticks, not the kline's trade count: what the job makes of them). Its
`emitted_at` is the window's end, when a live job would have emitted it last, so the
dashboard's freshness does not call a backfill "live".

Where backfill and live data meet, each window has one source: the backfill writes only
whole windows that end by `until` (the start of the minute it began, when the live range
begins) and start at or after the range it fetched, and only where the history store has
no value yet; the live job's value always wins (candles alike: the minutes from the
symbol's start up to `until`). After a restart with history present, a
symbol is fetched only from after its newest window that ended by then: the gap. The
windows and candles written also go to OUTPUT_TOPIC and CANDLES_TOPIC, so a dashboard
already running shows them.

At scale (24 h of 2,000 symbols is about 4,000 requests of weight 2, more than Binance's
6,000 a minute) the requests are paced by the weight Binance reports, so no 429 comes;
symbols are fetched and aggregated a few dozen at a time, so memory stays bounded and
the history grows while it runs; progress (symbols done, requests, weight used, time
left) goes to the log and to the job's status file. Why in the driver, beside the live
queries, rather than before them or in the producer: live data must not wait minutes
for history, the producer has no Spark to run the live job's transform with, and a
symbol the live data brings later (a new listing) is backfilled when it first appears
(`BackgroundBackfill.seen`), which only the job can notice. Its Spark jobs run in a pool
of their own under the FAIR scheduler (streaming/app.py), so micro-batches get their
share of the cores meanwhile.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping, Sequence

from kafka.errors import KafkaError

from crypto_pipeline.binance.klines import TICK_OFFSETS, Kline, read_klines
from crypto_pipeline.binance.klines_client import KlinesClient
from crypto_pipeline.binance.listing import NoMatchError, resolve_at_start
from crypto_pipeline.binance.rest import BinanceError
from crypto_pipeline.core.history import HistoryStore, open_history
from crypto_pipeline.core.schema import (
    TICK_FIELDS,
    aggregate_key,
    candle_key,
    spark_schema,
)
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import BackfillProgress, State
from crypto_pipeline.kafka_io.keyed_records import DeliveryFailed, send_confirmed

log = logging.getLogger(__name__)

SOURCE = "backfill"
# Ticks as `valid_ticks` hands them to the aggregation: event_time already a timestamp.
_TICK_COLUMNS = tuple(f._replace(type="timestamp") if f.name == "event_time" else f
                      for f in TICK_FIELDS)
# Klines aggregated in one Spark job (about 70 symbols of 24 h): memory stays bounded
# and the history store fills while the backfill goes on.
CHUNK_KLINES = 100_000
PROGRESS_LOG_SECONDS = 10.0
SCHEDULER_POOL = "backfill"


class BackfillStopped(Exception):
    """The job is stopping: the backfill ends where it is."""


@dataclass(frozen=True)
class BackfillResult:
    klines: int
    windows: int  # new windows written
    already_there: int  # computed windows the history store already had
    seconds: float
    candles: int = 0  # new candles written


def minute_floor(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(second=0, microsecond=0)


def fill_starts(symbols: Iterable[str], newest: Mapping[str, datetime], since: datetime,
                until: datetime, settings: Settings) -> dict[str, datetime]:
    """Per symbol, where its backfill begins: `since`, or just after its newest window in
    the history store. A symbol without room for one whole window before `until` is left
    out."""
    slide = timedelta(seconds=settings.window_slide.seconds)
    duration = timedelta(seconds=settings.window_duration.seconds)
    starts = {symbol: max(since, newest[symbol] + slide) if symbol in newest else since
              for symbol in symbols}
    return {symbol: start for symbol, start in starts.items() if start + duration <= until}


def tick_rows(klines: Iterable[Kline]):
    """Each kline's ticks (`Kline.ticks`), sharing its volume so a window's volume is
    exact, as a pandas frame of the tick columns: Spark takes it through Arrow, far
    faster than Tick objects row by row."""
    import pandas as pd

    columns: dict[str, list] = {"symbol": [], "price": [], "event_time": [], "quantity": []}
    for kline in klines:
        middle = (kline.low, kline.high) if kline.close >= kline.open else \
            (kline.high, kline.low)
        share = kline.volume / len(TICK_OFFSETS)
        for price, offset in zip((kline.open, *middle, kline.close), TICK_OFFSETS):
            columns["symbol"].append(kline.symbol)
            columns["price"].append(float(price))
            columns["event_time"].append(kline.open_time + offset)
            columns["quantity"].append(share)
    frame = pd.DataFrame(columns)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["source"] = SOURCE
    frame["event_id"] = None
    frame["missed_before"] = None
    return frame[[f.name for f in _TICK_COLUMNS]]


@dataclass(frozen=True)
class Records:
    """(key, value) of the windows and of the candles, as the live job writes them."""

    windows: list[tuple[str, str]]
    candles: list[tuple[str, str]]


def window_records(spark, klines: Sequence[Kline], starts: Mapping[str, datetime],
                   until: datetime, settings: Settings) -> Records:
    """Every whole window and every candle of the klines' ticks from the symbol's start
    up to `until`, as the live job writes them, oldest first."""
    from pyspark.sql import functions as F

    from crypto_pipeline.streaming.transforms import (
        aggregate_records,
        aggregate_windows,
        candle_records,
        candles,
    )

    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    frame = spark.createDataFrame(tick_rows(klines), spark_schema(_TICK_COLUMNS))
    first = F.create_map(*[F.lit(value) for symbol, start in starts.items()
                           for value in (symbol, start)])
    aggregated = aggregate_windows(frame, settings).cache()
    try:
        windows = (aggregated
                   .where((F.col("window_start") >= first[F.col("symbol")])
                          & (F.col("window_end") <= F.lit(until)))
                   .withColumn("emitted_at", F.col("window_end")))
        minutes = candles(aggregated).where((F.col("open_time") >= first[F.col("symbol")])
                                            & (F.col("close_time") <= F.lit(until)))
        return Records(
            [(row.key, row.value) for row in aggregate_records(
                windows.orderBy("window_start", "symbol")).collect()],
            [(row.key, row.value) for row in candle_records(
                minutes.orderBy("open_time", "symbol")).collect()])
    finally:
        aggregated.unpersist()


class Backfill:
    def __init__(self, spark, settings: Settings, *, history: HistoryStore | None = None,
                 wait: Callable[[float], None] = time.sleep,
                 report: Callable[[BackfillProgress], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.spark = spark
        self.settings = settings
        self.history = history or open_history(settings.history_url)
        self.progress = BackfillProgress()
        self.done: set[str] = set()  # symbols whose backfill was tried
        self.wait = wait  # how it pauses (for the weight budget, a Retry-After)
        self._report = report or (lambda progress: None)
        self._clock = clock
        self._wall_clock = wall_clock  # whose minutes the request weight is paced in
        self._began = clock()
        self._logged_at = 0.0
        self._candles_written = 0

    def run(self, now: datetime | None = None) -> BackfillResult | None:
        """Fill the history store for SYMBOLS (or BACKFILL_FILE's symbols); None when
        there was nothing to fetch or the klines could not be had (logged in one line).
        Never raises for Binance, Kafka or the history store: the live job goes on all
        the same. BackfillStopped when `wait` says the job stops."""
        if not self.settings.backfill_enabled:
            log.info("backfill off (BACKFILL_ENABLED=false)")
            self.finish(State.STOPPED, "off (BACKFILL_ENABLED=false)")
            return None
        until = minute_floor(now or datetime.now(timezone.utc))
        if self.settings.backfill_file is not None:
            return self._guarded(lambda: self._from_file(until))
        return self._guarded(lambda: self._from_binance(None, until))

    def fill(self, symbols: Iterable[str], now: datetime | None = None) -> BackfillResult | None:
        """The history of symbols that joined while the job ran (a new listing): the
        whole span before the minute they were seen, where the store has no window yet."""
        until = minute_floor(now or datetime.now(timezone.utc))
        return self._guarded(lambda: self._from_binance(sorted(symbols), until))

    # --- the work ----------------------------------------------------------------------

    def _guarded(self, work: Callable[[], BackfillResult | None]) -> BackfillResult | None:
        try:
            return work()
        except BinanceError as err:
            log.warning("backfill skipped: %s; the job goes on without that history "
                        "(BACKFILL_FILE reads klines from a file, BACKFILL_ENABLED=false "
                        "turns the backfill off)", err)
            self.finish(State.FAILED, str(err))
        except NoMatchError as err:
            log.warning("backfill skipped: %s", err)
            self.finish(State.FAILED, str(err))
        except (KafkaError, DeliveryFailed, *self.history.errors, OSError, ValueError) as err:
            log.error("backfill stopped: %s: %s; the job goes on without it",
                      type(err).__name__, err)
            self.finish(State.FAILED, f"{type(err).__name__}: {err}")
        return None

    def _from_file(self, until: datetime) -> BackfillResult | None:
        began = self._clock()
        span = timedelta(hours=self.settings.backfill_hours)
        every = list(read_klines(self.settings.backfill_file))
        if every:
            until = min(until, minute_floor(every[-1].open_time) + timedelta(minutes=1))
        newest = self.history.newest_window_starts(ended_by=until)
        starts = fill_starts({k.symbol for k in every}, newest, until - span, until,
                             self.settings)
        self.done |= {k.symbol for k in every}
        if not starts:
            return self._nothing(until)
        chosen = [k for k in every if k.symbol in starts
                  and starts[k.symbol] <= k.open_time < until]
        self._start_progress(len(starts))
        written, there = self._aggregate(chosen, starts, until)
        self.progress.symbols_done = len(starts)
        return self._result(len(chosen), written, there, began, starts, until)

    def _from_binance(self, joined: list[str] | None, until: datetime) -> BackfillResult | None:
        """Klines from Binance for SYMBOLS (`joined` None: the gap since each symbol's
        newest window) or for symbols that joined (their whole span)."""
        began = self._clock()
        span = timedelta(hours=self.settings.backfill_hours)
        client = KlinesClient(self.settings.binance_base_url,
                              self.settings.http_connect_timeout_seconds,
                              self.settings.http_read_timeout_seconds, clock=self._wall_clock)
        try:
            if joined is None:
                symbols = resolve_at_start(self.settings.symbols, client)
                newest = self.history.newest_window_starts(ended_by=until)
            else:
                symbols, newest = joined, {}
            self.done |= set(symbols)
            starts = fill_starts(symbols, newest, until - span, until, self.settings)
            if not starts:
                return self._nothing(until)
            self._start_progress(len(starts), client)
            klines, chunk, written, there, fetched = [], {}, 0, 0, 0
            for symbol, start in starts.items():
                try:
                    got = list(client.klines(symbol, start, until, self.wait))
                except BinanceError as err:
                    # Rejected (an unknown symbol): the others may still be had. Any other
                    # fault (unreachable, rate-limited past waiting) holds for all of them.
                    if err.kind != "rejected":
                        raise
                    log.warning("backfill: no klines for %s: %s", symbol, err)
                    got = []
                klines += got
                if got:
                    chunk[symbol] = start
                self.progress.symbols_done += 1
                self._tick(client)
                if len(klines) >= CHUNK_KLINES:
                    new, old = self._aggregate(klines, chunk, until)
                    written, there, fetched = written + new, there + old, fetched + len(klines)
                    klines, chunk = [], {}
            if klines:
                new, old = self._aggregate(klines, chunk, until)
                written, there, fetched = written + new, there + old, fetched + len(klines)
            if not fetched:
                log.info("backfill: no klines of %s up to %s", _names(starts), until.isoformat())
                self.finish(State.FINISHED)
                return None
            return self._result(fetched, written, there, began, starts, until)
        finally:
            client.close()

    def _aggregate(self, klines: list[Kline], starts: Mapping[str, datetime],
                   until: datetime) -> tuple[int, int]:
        """Windows and candles of these klines into the history store, OUTPUT_TOPIC and
        CANDLES_TOPIC: (windows written, windows already there)."""
        records = window_records(self.spark, klines, starts, until, self.settings)
        written = self._write(records.windows)
        self._candles_written += self._write_candles(records.candles)
        self.progress.klines += len(klines)
        self.progress.windows_written += written
        self._report(self.progress)
        return written, len(records.windows) - written

    def _write(self, records: list[tuple[str, str]]) -> int:
        """The windows into the history store where they are new, then to OUTPUT_TOPIC."""
        return self._write_new(records, self.history.insert_absent, aggregate_key,
                               "window_start", self.settings.output_topic)

    def _write_candles(self, records: list[tuple[str, str]]) -> int:
        """The candles likewise, to CANDLES_TOPIC."""
        return self._write_new(records, self.history.insert_absent_candles, candle_key,
                               "open_time", self.settings.candles_topic)

    def _write_new(self, records: list[tuple[str, str]], insert_absent, key_of,
                   start: str, topic: str) -> int:
        values = dict(records)
        inserted = insert_absent(json.loads(value) for value in values.values())
        new = [key_of(row["symbol"], row[start]) for row in inserted]
        if new:
            send_confirmed(self.settings, topic, [(key, values[key].encode()) for key in new])
        return len(new)

    # --- progress ----------------------------------------------------------------------

    def _start_progress(self, symbols: int, client: KlinesClient | None = None) -> None:
        self._began = self._clock()
        self._logged_at = self._clock()
        self._candles_written = 0
        self.progress = BackfillProgress(
            state=State.RUNNING.value, symbols_total=symbols, started_at=time.time(),
            weight_limit=client.weight_limit if client else None)
        self._report(self.progress)

    def _tick(self, client: KlinesClient) -> None:
        """After each symbol: the counts, the estimate, a log line now and then."""
        progress = self.progress
        progress.requests = client.requests
        progress.weight_used = client.pacer.used
        elapsed = self._clock() - self._began
        left = progress.symbols_total - progress.symbols_done
        progress.seconds_left = round(elapsed / max(1, progress.symbols_done) * left, 1)
        self._report(progress)
        if self._clock() - self._logged_at >= PROGRESS_LOG_SECONDS:
            self._logged_at = self._clock()
            log.info("backfill: %s", progress.summary())

    def _nothing(self, until: datetime) -> None:
        log.info("backfill: nothing to fetch, the history store already covers the last "
                 "%g hours up to %s", self.settings.backfill_hours, until.isoformat())
        self.finish(State.FINISHED)
        return None

    def _result(self, klines: int, written: int, there: int, began: float,
                starts: Mapping[str, datetime], until: datetime) -> BackfillResult:
        result = BackfillResult(klines, written, there, self._clock() - began,
                                self._candles_written)
        self.finish(State.FINISHED)
        log.info("backfill: %d klines of %s up to %s -> %d windows written (%d already "
                 "there) and %d candles in %.1f s", result.klines, _names(starts),
                 until.isoformat(), result.windows, result.already_there, result.candles,
                 result.seconds)
        return result

    def finish(self, state: State, error: str | None = None) -> None:
        self.progress.state = state.value
        self.progress.seconds_left = 0.0 if state == State.FINISHED else None
        self.progress.last_error = error
        self._report(self.progress)


def _names(symbols: Iterable[str], shown: int = 10) -> str:
    names = sorted(symbols)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class BackgroundBackfill:
    """The backfill in a thread of the driver, beside the live queries: SYMBOLS first,
    then any symbol the live data brings that it has not done (`seen`, called from the
    job's batches), each once."""

    def __init__(self, backfill: Backfill):
        self.backfill = backfill
        self._stop = threading.Event()
        self._joined: queue.Queue[set[str]] = queue.Queue()
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="backfill", daemon=True)
        backfill.wait = self._wait

    def start(self) -> "BackgroundBackfill":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._joined.put(set())
        if self._thread.is_alive():
            # A chunk being aggregated would hold the stop up: Spark drops its tasks.
            self.backfill.spark.sparkContext.cancelJobGroup(SCHEDULER_POOL)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def seen(self, symbols: Iterable[str]) -> None:
        """Symbols in a batch of live aggregates: those new to the job are backfilled."""
        with self._lock:
            new = set(symbols) - self._known
            self._known |= new
        if new:
            self._joined.put(new)

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise BackfillStopped

    def _run(self) -> None:
        context = self.backfill.spark.sparkContext
        context.setLocalProperty("spark.scheduler.pool", SCHEDULER_POOL)
        context.setJobGroup(SCHEDULER_POOL, "the backfill's windows", interruptOnCancel=True)
        try:
            self.backfill.run()
            if not self.backfill.settings.backfill_enabled or \
                    self.backfill.settings.backfill_file is not None:
                return
            while not self._stop.is_set():
                joined = self._joined.get()
                while not self._joined.empty():
                    joined |= self._joined.get_nowait()
                joined -= self.backfill.done
                if joined and not self._stop.is_set():
                    log.info("backfill: %d symbols joined (%s): fetching their last %g "
                             "hours", len(joined), _names(joined),
                             self.backfill.settings.backfill_hours)
                    self.backfill.fill(joined)
        except BackfillStopped:
            self.backfill.finish(State.STOPPED)
            log.info("backfill stopped with the job: %s", self.backfill.progress.summary())
        except Exception:  # noqa: BLE001 - the live job goes on; the cause is logged
            if self._stop.is_set():
                log.info("backfill stopped with the job: %s", self.backfill.progress.summary())
            else:
                log.exception("the backfill thread failed; the live job goes on without it")
