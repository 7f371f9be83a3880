"""The backfill at the scale of a market: more klines requests than a minute's request weight
allows are paced by Binance's weight header so that no 429 comes, with progress reported
as it goes; a symbol the live data brings later gets its history when it joins. (The
stand-in's limit is lowered, and its minutes and the client's run on one test clock, so
the minute's end comes without waiting for it.)"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone

import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.status import State
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.backfill import Backfill, BackgroundBackfill
from support.fake_binance import FakeBinance
from support.helpers import wait_for

pytestmark = pytest.mark.integration

PRICES = {f"B{n:02d}USDT": 10.0 + n for n in range(30)} | {"B00BTC": 0.0001}


class Clock:
    """Wall time that moves only when the backfill waits."""

    def __init__(self):
        self.now = 60 * 30_000_000 + 1.0  # a second into a minute
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


def windows_of(settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in open_history(settings.history_url).load():
        counts[row["symbol"]] = counts.get(row["symbol"], 0) + 1
    return counts


def test_more_requests_than_a_minute_allows_are_paced_and_never_meet_a_429(spark, settings,
                                                                          caplog):
    clock = Clock()
    # Limit 60 a minute, so 48 before pausing: exchangeInfo (20) and 14 pages of klines
    # (2 each) in the first minute, 24 in the next.
    with FakeBinance(prices=PRICES, weight_limit=60, clock=clock) as fake:
        settings = settings.replace(backfill_enabled=True, binance_base_url=fake.url,
                                    symbols=("B*USDT",), backfill_hours=0.25)
        ensure_topics(settings)
        reports = []
        backfill = Backfill(spark, settings, wait=clock.wait, wall_clock=clock,
                            report=lambda p: reports.append(dataclasses.replace(p)))
        with caplog.at_level(logging.INFO, logger="crypto_pipeline.binance"):
            result = backfill.run(now=datetime.now(timezone.utc))
    assert fake.rate_limited == 0, "Binance answered 429"
    assert clock.waits == [59.0], "one pause, until the first minute ended"
    assert any("request weight used this minute; waiting 59 s" in m for m in caplog.messages)
    klines = [r for r in fake.requests if r.path == "/api/v3/klines"]
    assert len(klines) == 30 and all(r.status == 200 for r in fake.requests)
    # Every symbol's 15 klines make 11 whole windows of 5 minutes sliding by 1.
    assert windows_of(settings) == {symbol: 11 for symbol in PRICES if symbol.endswith("USDT")}
    assert result.windows == 30 * 11

    done = [r.symbols_done for r in reports if r.state == State.RUNNING.value]
    assert done == sorted(done) and done[-1] == 30 and reports[0].symbols_total == 30
    final = reports[-1]
    assert (final.state, final.symbols_done, final.requests, final.windows_written) == (
        State.FINISHED.value, 30, 31, 330)
    assert final.weight_limit == 60 and final.weight_used <= 48 and final.seconds_left == 0


def test_a_symbol_first_seen_in_the_live_data_gets_its_history_when_it_joins(spark,
                                                                           settings):
    with FakeBinance(prices=PRICES) as fake:
        settings = settings.replace(backfill_enabled=True, binance_base_url=fake.url,
                                    symbols=("B0*USDT",), backfill_hours=0.25)
        ensure_topics(settings)
        background = BackgroundBackfill(Backfill(spark, settings)).start()
        try:
            wait_for(lambda: len(windows_of(settings)) == 10, 120, "SYMBOLS' history")
            fake.list_symbol("NEWUSDT", 3.0)
            background.seen({"B01USDT", "NEWUSDT"})  # a batch of live aggregates
            wait_for(lambda: windows_of(settings).get("NEWUSDT") == 11, 120,
                     "the history of the symbol that joined")
            background.seen({"NEWUSDT"})  # seen again: not fetched again
        finally:
            background.stop()
        assert not background.alive
    fetched = [r.params["symbol"] for r in fake.requests if r.path == "/api/v3/klines"]
    assert sorted(fetched) == sorted([f"B0{n}USDT" for n in range(10)] + ["NEWUSDT"])
