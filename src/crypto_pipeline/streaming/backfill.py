"""History from the first second: the last BACKFILL_HOURS of aggregates and 1-minute
candles, computed from one-minute klines before the live queries start.

Klines come from Binance (`binance_klines`, the producer's client rules) or BACKFILL_FILE;
each replays as four ticks (`Kline.ticks`, source `backfill`, the candle's volume spread
over them) through the live job's own `transforms.aggregate_windows` on a static
DataFrame, so a backfilled window or candle has the live record's shape and meaning
(a candle of four ticks, not the kline's trade count: what the job makes of them). Its
`emitted_at` is the window's end, when a live job would have emitted it last, so the
dashboard's freshness does not call a backfill "live".

Where backfill and live data meet, each window has one source: the backfill writes only
whole windows that end by `until` (the start of the current minute, when the live range
begins) and start at or after the range it fetched, and only where the history store has
no value yet; the live job's value always wins (candles alike: the minutes from the
symbol's start up to `until`). After a restart with history present, a symbol is fetched
only from after its newest window: the gap. The windows and candles written also go to
OUTPUT_TOPIC and CANDLES_TOPIC, so a dashboard already running shows them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping, Sequence

from kafka.errors import KafkaError

from crypto_pipeline.binance.klines import Kline, read_klines
from crypto_pipeline.binance.klines_client import KlinesClient
from crypto_pipeline.binance.rest import BinanceError
from crypto_pipeline.core.history import HistoryStore, open_history
from crypto_pipeline.core.schema import (
    TICK_FIELDS,
    Tick,
    aggregate_key,
    candle_key,
    spark_schema,
)
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.keyed_records import send_confirmed

log = logging.getLogger(__name__)

SOURCE = "backfill"
# Ticks as `valid_ticks` hands them to the aggregation: event_time already a timestamp.
_TICK_COLUMNS = tuple(f._replace(type="timestamp") if f.name == "event_time" else f
                      for f in TICK_FIELDS)


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


def backfill_ticks(klines: Iterable[Kline]) -> list[Tick]:
    """Each kline's ticks, sharing its volume: a window's volume is then exact."""
    ticks = []
    for kline in klines:
        replayed = kline.ticks(SOURCE)
        ticks += [replace(tick, quantity=kline.volume / len(replayed)) for tick in replayed]
    return ticks


@dataclass(frozen=True)
class Records:
    """(key, value) of the windows and of the candles, as the live job writes them."""

    windows: list[tuple[str, str]]
    candles: list[tuple[str, str]]


def window_records(spark, ticks: Sequence[Tick], starts: Mapping[str, datetime],
                   until: datetime, settings: Settings) -> Records:
    """Every whole window and every candle of `ticks` from the symbol's start up to
    `until`, oldest first."""
    from pyspark.sql import functions as F

    from crypto_pipeline.streaming.transforms import (
        aggregate_records,
        aggregate_windows,
        candle_records,
        candles,
    )

    rows = [tuple(getattr(tick, f.name) for f in _TICK_COLUMNS) for tick in ticks]
    frame = spark.createDataFrame(rows, spark_schema(_TICK_COLUMNS))
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
                 wait: Callable[[float], None] = time.sleep):
        self.spark = spark
        self.settings = settings
        self.history = history or open_history(settings.history_url)
        self._wait = wait

    def run(self, now: datetime | None = None) -> BackfillResult | None:
        """Fill the history store; None when there was nothing to fetch or the klines
        could not be had (logged in one line). Never raises for Binance, Kafka or the
        history store: the live job starts all the same."""
        if not self.settings.backfill_enabled:
            log.info("backfill off (BACKFILL_ENABLED=false)")
            return None
        began = time.monotonic()
        until = minute_floor(now or datetime.now(timezone.utc))
        try:
            klines, starts, until = self._klines(until)
            if not starts:
                log.info("backfill: nothing to fetch, the history store already covers "
                         "the last %g hours up to %s", self.settings.backfill_hours,
                         until.isoformat())
                return None
            if not klines:
                log.info("backfill: no klines of %s up to %s", ", ".join(sorted(starts)),
                         until.isoformat())
                return None
            records = window_records(self.spark, backfill_ticks(klines), starts, until,
                                     self.settings)
            written = self._write(records.windows)
            candles_written = self._write_candles(records.candles)
        except BinanceError as err:
            log.warning("backfill skipped: %s; the job starts without that history "
                        "(BACKFILL_FILE reads klines from a file, BACKFILL_ENABLED=false "
                        "turns the backfill off)", err)
            return None
        except (KafkaError, *self.history.errors, OSError, ValueError) as err:
            log.error("backfill stopped: %s: %s; the job starts without it",
                      type(err).__name__, err)
            return None
        result = BackfillResult(len(klines), written, len(records.windows) - written,
                                time.monotonic() - began, candles_written)
        log.info("backfill: %d klines of %s up to %s -> %d windows written (%d already "
                 "there) and %d candles in %.1f s", result.klines, ", ".join(sorted(starts)),
                 until.isoformat(), result.windows, result.already_there, result.candles,
                 result.seconds)
        return result

    def _klines(self, until: datetime) -> tuple[list[Kline], dict[str, datetime], datetime]:
        """The klines to aggregate, where each symbol's windows begin, and the end."""
        span = timedelta(hours=self.settings.backfill_hours)
        newest = self.history.newest_window_starts()
        path = self.settings.backfill_file
        if path is not None:
            every = list(read_klines(path))
            if every:
                until = min(until, minute_floor(every[-1].open_time) + timedelta(minutes=1))
            starts = fill_starts({k.symbol for k in every}, newest, until - span, until,
                                 self.settings)
            chosen = [k for k in every if k.symbol in starts
                      and starts[k.symbol] <= k.open_time < until]
            return chosen, starts, until
        starts = fill_starts(self.settings.symbols, newest, until - span, until, self.settings)
        client = KlinesClient(self.settings.binance_base_url,
                              self.settings.http_connect_timeout_seconds,
                              self.settings.http_read_timeout_seconds)
        try:
            chosen = []
            for symbol, start in list(starts.items()):
                try:
                    chosen += client.klines(symbol, start, until, self._wait)
                except BinanceError as err:
                    # Rejected (an unknown symbol): the others may still be had. Any other
                    # fault (unreachable, rate-limited past waiting) holds for all of them.
                    if err.kind != "rejected":
                        raise
                    log.warning("backfill: no klines for %s: %s", symbol, err)
                    del starts[symbol]
            return chosen, starts, until
        finally:
            client.close()

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
