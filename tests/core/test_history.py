"""The history store on both engines (SQLite and a real PostgreSQL): the same tests, the
same answers; the schema created and migrated from its declaration; HISTORY_URL checked,
its password masked, a database that cannot be used named in one line."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from crypto_pipeline.core.history import (
    HistoryStore,
    HistoryUnavailable,
    open_history,
    ready_history,
    sqlite_url,
)
from crypto_pipeline.core.history.schema import AGGREGATES, ALERTS, CANDLES, TABLES, Table
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.schema import Field, format_time
from support.helpers import free_port
from support.postgres import PASSWORD

START = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def aggregate(symbol: str, start: datetime, price: float, **changes) -> dict:
    row = {"symbol": symbol, "window_start": start, "window_end": start + 5 * MINUTE,
           "avg_price": price, "min_price": price - 1, "max_price": price + 1, "count": 3,
           "spread": 2.0, "open_price": price - 0.5, "close_price": price + 0.5,
           "pct_change": 100 * 1.0 / (price - 0.5), "stddev_price": 0.75, "volume": None,
           "vwap": None, "last_event_time": start + 4 * MINUTE + timedelta(microseconds=123),
           "emitted_at": start + 5 * MINUTE, "expected_count": None, "missed_trades": None}
    return {**row, **changes}


def candle(symbol: str, start: datetime, price: float, **changes) -> dict:
    row = {"symbol": symbol, "open_time": start, "close_time": start + MINUTE,
           "open": price, "high": price + 1, "low": price - 1, "close": price + 0.5,
           "count": 12, "volume": None, "expected_count": 12, "missed_trades": None}
    return {**row, **changes}


def alert(symbol: str, start: datetime, kind: str = "move", value: float = 1.5) -> dict:
    return {"symbol": symbol, "kind": kind, "value": value, "threshold": 1.0,
            "window_start": start, "window_end": start + 5 * MINUTE,
            "detected_at": start + 6 * MINUTE, "pct_change": value, "windows": 1,
            "first_window_start": start, "last_window_end": start + 5 * MINUTE}


@pytest.fixture
def history(history_url):
    with open_history(history_url) as store:
        yield store


def test_an_upsert_replaces_a_window_instead_of_adding_one(history):
    first = [aggregate("BTCUSDT", START, 97000.0), aggregate("BTCUSDT", START + MINUTE, 97100.0),
             aggregate("ETHUSDT", START, 3000.0, volume=12.5, vwap=3000.25)]
    assert history.upsert(first) == 3
    # The batch again (a re-run after a crash), one window with a newer value, times as
    # the job's JSON has them.
    again = [{**row, "window_start": format_time(row["window_start"])} for row in first]
    again[1] = aggregate("BTCUSDT", START + MINUTE, 97200.0, count=4)
    assert history.upsert(again) == 3

    rows = history.load()
    assert rows == [first[0], first[2], again[1]]  # oldest window first, then symbol
    assert all(row["window_start"].tzinfo == timezone.utc for row in rows)
    assert rows[0]["last_event_time"].microsecond == 123


def test_of_rows_with_one_key_the_last_counts(history):
    history.upsert([aggregate("BTCUSDT", START, 1.0), aggregate("BTCUSDT", START, 2.0)])
    assert [row["avg_price"] for row in history.load()] == [2.0]


def test_load_keeps_to_the_range_and_the_symbols_asked(history):
    history.upsert([aggregate(symbol, START + k * MINUTE, 100.0 + k)
                    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT") for k in range(4)])
    since = history.load(since=START + 2 * MINUTE)
    assert {row["window_start"] for row in since} == {START + 2 * MINUTE, START + 3 * MINUTE}
    assert len(since) == 6
    chosen = history.load(symbols=["ETHUSDT", "SOLUSDT"], since=START + 3 * MINUTE)
    assert [row["symbol"] for row in chosen] == ["ETHUSDT", "SOLUSDT"]
    assert history.load(symbols=[]) == []


def test_the_backfill_never_replaces_a_window_already_there(history):
    history.upsert([aggregate("BTCUSDT", START, 97000.0)])
    offered = [aggregate("BTCUSDT", START, 1.0), aggregate("BTCUSDT", START + MINUTE, 2.0),
               aggregate("ETHUSDT", START, 3.0)]
    assert history.insert_absent(offered) == offered[1:]
    assert [row["avg_price"] for row in history.load()] == [97000.0, 3.0, 2.0]
    assert history.insert_absent(offered) == []


def test_newest_windows_and_pruning(history):
    history.upsert([aggregate("BTCUSDT", START + k * MINUTE, 1.0,
                              emitted_at=START + (10 + k) * MINUTE) for k in range(5)]
                   + [aggregate("ETHUSDT", START, 2.0, emitted_at=START + 30 * MINUTE)])
    history.upsert_candles([candle("BTCUSDT", START + k * MINUTE, 1.0) for k in range(8)])
    history.record_alerts([alert("BTCUSDT", START + k * MINUTE) for k in (0, 1, 2, 3)])
    assert history.newest_window_starts() == {"BTCUSDT": START + 4 * MINUTE, "ETHUSDT": START}
    assert history.newest_emitted_at() == START + 30 * MINUTE
    # Windows and alerts end five minutes after they start, candles one: those ending
    # before 12:07 go, one ending at 12:07 stays.
    assert history.prune(START + 7 * MINUTE) == {"aggregates": 3, "candles": 6, "alerts": 2}
    assert {(row["symbol"], row["window_start"]) for row in history.load()} == {
        ("BTCUSDT", START + 2 * MINUTE), ("BTCUSDT", START + 3 * MINUTE),
        ("BTCUSDT", START + 4 * MINUTE)}
    assert [row["open_time"] for row in history.load_candles()] == [START + 6 * MINUTE,
                                                                    START + 7 * MINUTE]
    assert [row["window_start"] for row in history.load_alerts()] == [START + 2 * MINUTE,
                                                                      START + 3 * MINUTE]
    assert history.prune(START + 7 * MINUTE) == {"aggregates": 0, "candles": 0, "alerts": 0}


def test_candles_upsert_load_and_keep_what_is_there(history):
    first = [candle("BTCUSDT", START + k * MINUTE, 100.0 + k) for k in range(3)]
    assert history.upsert_candles(first) == 3
    newer = candle("BTCUSDT", START, 99.0, count=13)
    history.upsert_candles([{**newer, "open_time": format_time(START)}])
    assert history.load_candles() == [newer, *first[1:]]
    assert history.load_candles(since=START + 2 * MINUTE, symbols=["BTCUSDT"]) == first[2:]
    assert history.load_candles(symbols=["ETHUSDT"]) == []
    offered = [candle("BTCUSDT", START, 1.0), candle("ETHUSDT", START, 2.0)]
    assert history.insert_absent_candles(offered) == offered[1:]
    assert history.load_candles()[0] == newer


def test_windows_in_bulk_are_numbers_symbol_by_symbol(history):
    history.upsert([aggregate("ETHUSDT", START, 10.0, volume=2.5),
                    aggregate("BTCUSDT", START + MINUTE, 100.0, open_price=None),
                    aggregate("BTCUSDT", START, 99.0)])
    assert history.newest_window_starts(ended_by=START + 5 * MINUTE) == {
        "BTCUSDT": START, "ETHUSDT": START}
    chunks = list(history.iter_arrays(since=START, rows_per_chunk=2))
    assert [symbols for symbols, _ in chunks] == [["BTCUSDT", "BTCUSDT"], ["ETHUSDT"]]
    fields = [f.name for f in AGGREGATES.fields[1:]]
    btc = chunks[0][1]
    assert btc[:, fields.index("window_start")].tolist() == [
        START.timestamp(), (START + MINUTE).timestamp()]
    assert btc[1, fields.index("open_price")] != btc[1, fields.index("open_price")]  # NaN
    last = btc[0, fields.index("last_event_time")]
    assert round(last * 1e6) == round((START + 4 * MINUTE).timestamp() * 1e6) + 123
    assert chunks[1][1][0, fields.index("volume")] == 2.5


def test_candles_in_bulk_are_the_rows_load_candles_gives(history):
    history.upsert_candles([candle("ETHUSDT", START, 10.0, volume=2.5),
                            candle("BTCUSDT", START + MINUTE, 100.0, expected_count=None),
                            candle("BTCUSDT", START, 99.0),
                            candle("BTCUSDT", START - MINUTE, 98.0)])
    chunks = list(history.iter_arrays(since=START, rows_per_chunk=2, table=CANDLES))
    assert [symbols for symbols, _ in chunks] == [["BTCUSDT", "BTCUSDT"], ["ETHUSDT"]]
    fields = CANDLES.fields[1:]
    bulk = [{"symbol": symbol, **{f.name: value for f, value in zip(fields, row)}}
            for symbols, rows in chunks for symbol, row in zip(symbols, rows.tolist())]
    records = sorted(history.load_candles(since=START), key=lambda c: c["symbol"])
    assert len(bulk) == len(records) == 3
    for got, want in zip(bulk, records):
        for f in CANDLES.fields:
            value = want[f.name]
            if f.type == "timestamp":
                value = value.timestamp()
            elif value is None:
                value = math.nan
            assert got[f.name] == value or (got[f.name] != got[f.name] and value != value), (
                f.name, got, want)


def test_recent_returns_look_back_from_each_moment(history):
    history.upsert([aggregate("BTCUSDT", START + k * MINUTE, 100.0, pct_change=float(k))
                    for k in range(10)] + [aggregate("ETHUSDT", START, 1.0, pct_change=-9.0)])
    moment = START + 12 * MINUTE  # windows 0..7 have ended by then (each lasts five)
    returns = history.recent_returns([("BTCUSDT", moment), ("BTCUSDT", moment),
                                      ("ETHUSDT", START), ("XRPUSDT", moment)], limit=3)
    assert returns == {("BTCUSDT", moment): [7.0, 6.0, 5.0], ("ETHUSDT", START): [],
                       ("XRPUSDT", moment): []}
    # Several moments of one symbol (a batch's windows), each with its own look-back.
    moments = [START + k * MINUTE for k in (4, 5, 6, 9, 20)]
    returns = history.recent_returns([("BTCUSDT", m) for m in moments], limit=3)
    assert [returns[("BTCUSDT", m)] for m in moments] == [
        [], [0.0], [1.0, 0.0], [4.0, 3.0, 2.0], [9.0, 8.0, 7.0]]


def test_an_alert_is_recorded_once(history):
    alerts = [alert("BTCUSDT", START), alert("BTCUSDT", START, "zscore", 3.5),
              alert("ETHUSDT", START + MINUTE)]
    assert history.record_alerts(alerts[:2]) == 2
    # Recorded again (a re-run batch), with another value: the first record stays.
    assert history.record_alerts([{**alerts[0], "value": 9.0}, alerts[2]]) == 1
    assert history.load_alerts() == alerts
    assert history.load_alerts(since=START + MINUTE) == alerts[2:]
    assert history.load_alerts(symbols=["BTCUSDT"]) == alerts[:2]


def test_nothing_written_reads_as_empty(history):
    assert history.load() == [] and history.load_alerts() == []
    assert history.newest_window_starts() == {} and history.newest_emitted_at() is None
    assert history.load_candles() == [] and history.prune(START) == {
        "aggregates": 0, "candles": 0, "alerts": 0}


def test_a_sqlite_store_is_not_created_by_reading(tmp_path):
    path = tmp_path / "nested" / "history.sqlite"
    with open_history(sqlite_url(path)) as history:
        assert history.load() == [] and history.newest_emitted_at() is None
        assert not path.exists()
        history.upsert([aggregate("BTCUSDT", START, 1.0)])
    assert path.is_file()


def test_the_schema_is_migrated_from_its_declaration(history_url, caplog):
    """A database written before a column and a table were declared gains both, keeps
    its rows, and the next start changes nothing."""
    # Before volume, vwap, last_event_time and the completeness were fields.
    added = ("volume", "vwap", "last_event_time", "expected_count", "missed_trades")
    older = Table("aggregates", tuple(f for f in AGGREGATES.fields if f.name not in added),
                  AGGREGATES.key)
    row = aggregate("BTCUSDT", START, 97000.0)
    with HistoryStore(open_history(history_url).engine, (older,)) as old:
        old.write(older, [{name: row[name] for name in older.columns}])

    trades = Table("trades", (Field("symbol", "string", True, ""),
                              Field("traded_at", "timestamp", True, ""),
                              Field("price", "double", True, "")), ("symbol", "traded_at"))
    with caplog.at_level(logging.INFO, "crypto_pipeline.core.history.store"):
        with HistoryStore(open_history(history_url).engine, (*TABLES, trades)) as new:
            new.migrate()
            assert new.load() == [{**row, **{name: None for name in added}}]
            new.upsert([{**row, "vwap": 97001.0}])
            assert new.load()[0]["vwap"] == 97001.0
            assert new.write(trades, [{"symbol": "BTCUSDT", "traded_at": START,
                                       "price": 1.5}])
            assert new.read(trades) == [{"symbol": "BTCUSDT", "traded_at": START,
                                         "price": 1.5}]
            new.record_alerts([alert("BTCUSDT", START)])
        changes = [r.getMessage() for r in caplog.records]
        assert sum("ADD COLUMN" in change for change in changes) == len(added)
        assert sum(f'CREATE TABLE IF NOT EXISTS "{t}"' in change for change in changes
                   for t in ("alerts", "candles", "trades")) == 3

        caplog.clear()
        with HistoryStore(open_history(history_url).engine, (*TABLES, trades)) as again:
            again.migrate()
            assert len(again.load()) == 1
        assert caplog.records == []


def test_postgres_columns_have_types_psql_users_can_use(postgres_url):
    with open_history(postgres_url) as history:
        history.migrate()
    with psycopg.connect(postgres_url) as connection:
        types = dict(connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'aggregates'").fetchall())
    assert types["window_start"] == "timestamp with time zone"
    assert types["avg_price"] == "double precision" and types["count"] == "bigint"
    assert set(types) == set(AGGREGATES.columns)
    assert ALERTS.key == ("symbol", "window_start", "kind")


def test_a_broken_postgres_connection_fails_once_then_reconnects(postgres_url):
    with open_history(postgres_url) as history:
        history.upsert([aggregate("BTCUSDT", START, 1.0)])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'crypto-pipeline'")
        with pytest.raises(psycopg.OperationalError):
            history.load()
        assert len(history.load()) == 1


def test_ready_history_names_the_setting_and_masks_the_password(postgres):
    missing = postgres.url("no_such_database")
    with pytest.raises(HistoryUnavailable) as err:
        ready_history(missing, timeout=30)
    assert str(err.value).startswith(
        f"HISTORY_URL=postgresql://pipeline:***@127.0.0.1:{postgres.port}/no_such_database: ")
    assert 'database "no_such_database" does not exist' in str(err.value)

    wrong = postgres.url(password="not-the-password")
    with pytest.raises(HistoryUnavailable, match="password authentication failed") as err:
        ready_history(wrong, timeout=30)
    assert "not-the-password" not in str(err.value) and "\n" not in str(err.value)

    refused = f"postgresql://pipeline:{PASSWORD}@127.0.0.1:{free_port()}/crypto"
    with pytest.raises(HistoryUnavailable, match="Connection refused.*still after 1 s") as err:
        ready_history(refused, timeout=1)
    assert PASSWORD not in str(err.value)

    # libpq quotes what it cannot read of a URL, here the password itself.
    unreadable = f"postgresql://pipeline:se%zzcret@127.0.0.1:{postgres.port}/crypto"
    with pytest.raises(HistoryUnavailable, match="invalid percent-encoded token") as err:
        ready_history(unreadable, timeout=30)
    assert "zz" not in str(err.value) and "se%" not in str(err.value)


@pytest.mark.parametrize("case", ["missing database", "refused", "bad scheme"])
def test_the_spark_entry_point_stops_with_one_line_naming_the_url(case, postgres, tmp_path):
    url = {"missing database": postgres.url("no_such_database"),
           "refused": f"postgresql://pipeline:{PASSWORD}@127.0.0.1:{free_port()}/crypto",
           "bad scheme": f"mysql://pipeline:{PASSWORD}@127.0.0.1/crypto"}[case]
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "src" / "streaming_app.py")],
        env={"HISTORY_URL": url, "HISTORY_CONNECT_TIMEOUT": "1 second",
             "RUN_DIR": str(tmp_path / "run"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: HISTORY_URL=") and "pipeline:***@127.0.0.1" in last, last
    if case != "refused":
        # The refused connection was waited for, and a warning said so.
        assert result.stderr.strip() == last
