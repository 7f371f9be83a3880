"""The producer's symbols when SYMBOLS has patterns, without a server: resolved at the start,
matched again when due, changes recorded, a failed refresh keeping the last set; and how
status.sh shows them."""

import logging

import pytest

from crypto_pipeline.binance.listing import NoMatchError
from crypto_pipeline.binance.rest import BinanceError, SymbolInfo
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import BackfillProgress, ProducerStatus, SparkStatus, State
from crypto_pipeline.ops.control import component_notes
from crypto_pipeline.producer.symbol_set import RETRY_SECONDS, SymbolSet


class Listing:
    """exchangeInfo as a test says it is; `fail` makes the next request fail."""

    base_url = "https://binance.test"

    def __init__(self, *trading: str):
        self.trading = list(trading)
        self.requests = 0
        self.fail: BinanceError | None = None

    def trading_symbols(self):
        self.requests += 1
        if self.fail:
            raise self.fail
        return [SymbolInfo(symbol, "TRADING", symbol[:-4], symbol[-4:])
                for symbol in self.trading]

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def symbol_set(listing, symbols="*USDT", refresh=60):
    settings = Settings.load(environ={"SYMBOLS": symbols,
                                      "SYMBOLS_REFRESH_SECONDS": str(refresh)}, env_file=None)
    clock = Clock()
    return SymbolSet(settings, listing, clock=clock), clock


def test_patterns_are_resolved_at_the_start_and_again_when_due(caplog):
    listing = Listing("BTCUSDT", "ETHUSDT", "ETHBTC")
    symbols, clock = symbol_set(listing)
    assert symbols.start() == ("BTCUSDT", "ETHUSDT") and not symbols.due()
    clock.now += 59
    assert not symbols.due()
    clock.now += 1
    assert symbols.due()

    listing.trading = ["BTCUSDT", "SOLUSDT", "XRPUSDT", "ETHBTC"]  # ETHUSDT halted
    with caplog.at_level(logging.INFO):
        assert symbols.refresh() == (("SOLUSDT", "XRPUSDT"), ("ETHUSDT",))
    assert symbols.current == ("BTCUSDT", "SOLUSDT", "XRPUSDT")
    assert [(c.joined, c.left) for c in symbols.changes] == [(["SOLUSDT", "XRPUSDT"],
                                                              ["ETHUSDT"])]
    assert (symbols.joined_total, symbols.left_total) == (2, 1)
    assert "symbols changed: 2 joined (SOLUSDT, XRPUSDT), 1 left (ETHUSDT); now 3" in \
        caplog.messages
    assert symbols.refresh() == ((), ()) and len(symbols.changes) == 1  # nothing new


def test_a_failed_refresh_keeps_the_last_symbols_and_says_so(caplog):
    listing = Listing("BTCUSDT", "ETHUSDT")
    symbols, clock = symbol_set(listing, refresh=3600)
    symbols.start()
    clock.now += 3600
    listing.fail = BinanceError("timeout", "no answer within 10 s")
    with caplog.at_level(logging.WARNING):
        assert symbols.refresh() == ((), ())
    assert symbols.current == ("BTCUSDT", "ETHUSDT")
    assert symbols.error == "refreshing SYMBOLS failed (no answer within 10 s); keeping the " \
                            "last 2 symbols"
    assert any(symbols.error in message for message in caplog.messages)
    clock.now += RETRY_SECONDS  # tried again sooner than a whole period
    assert symbols.due()
    listing.fail = None
    symbols.refresh()
    assert symbols.error is None


def test_a_pattern_matching_nothing_stops_the_start_and_a_name_not_trading_is_warned_of(
        caplog):
    with pytest.raises(NoMatchError, match=r"^SYMBOLS: \*DOGE matches no symbol trading on "
                                           r"https://binance.test"):
        symbol_set(Listing("BTCUSDT"), "BTCUSDT,*DOGE")[0].start()
    with caplog.at_level(logging.WARNING):
        symbols = symbol_set(Listing("BTCUSDT", "ETHUSDT"), "LUNAUSDT,*USDT")[0]
        assert symbols.start() == ("BTCUSDT", "ETHUSDT")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["SYMBOLS: LUNAUSDT is not trading on https://binance.test "
                      "(exchangeInfo); going on with the other 2"]


def test_status_sh_shows_the_changes_and_the_backfill():
    producer = ProducerStatus(symbols=["BTCUSDT", "SOLUSDT"], symbol_patterns=["*USDT"],
                              symbols_refreshed_at="2026-12-01T10:00:00.000000Z",
                              symbols_joined=12, symbols_left=1,
                              symbols_refresh_error="refreshing SYMBOLS failed (x); keeping "
                                                    "the last 2 symbols")
    producer.symbol_changes = ProducerStatus(symbol_changes=[
        {"at": "2026-12-01T10:00:00.000000Z", "joined": [f"N{i}USDT" for i in range(10)],
         "left": ["ETHUSDT"]}]).symbol_changes
    assert component_notes(producer) == [
        "symbols: 12 joined, 1 left since the start; last matched 2026-12-01 10:00:00 UTC",
        "  2026-12-01 10:00:00 UTC: joined N0USDT, N1USDT, N2USDT, N3USDT, N4USDT, N5USDT, "
        "N6USDT, N7USDT and 2 more; left ETHUSDT",
        "symbols: refreshing SYMBOLS failed (x); keeping the last 2 symbols"]
    spark = SparkStatus(backfill=BackfillProgress(
        state=State.RUNNING.value, symbols_total=2000, symbols_done=600, requests=1200,
        weight_used=4100, weight_limit=6000, windows_written=860_000, seconds_left=95))
    assert component_notes(spark) == [
        "backfill: running, 600 of 2,000 symbols, 1,200 requests, weight 4,100/6,000 this "
        "minute, 860,000 windows written, about 1 min 35 s left"]
    assert component_notes(ProducerStatus(symbols=["BTCUSDT"])) == []
