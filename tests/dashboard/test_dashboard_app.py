"""The dashboard script run by Streamlit's AppTest, through its production path: settings
from the environment, the shared feed reading a real broker, the page drawn from its store."""

import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.schema import AGGREGATE_FIELDS
from crypto_pipeline.kafka_io.topics import ensure_topics
from support.dashboard_support import (
    aggregate,
    candle,
    kpi,
    metric_value,
    offline_settings,
    overview,
    produce,
    produce_aggregates,
    shows,
    texts,
)
from support.helpers import wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)


def test_cards_show_the_latest_window_of_each_symbol(dashboard, settings):
    ensure_topics(settings)
    produce_aggregates(settings, [
        aggregate("BTCUSDT", NOW - MINUTE, 97000.0, low=96900.0, high=97100.0, count=40),
        aggregate("BTCUSDT", NOW, 97432.15, low=97400.5, high=97500.25, count=42),
        aggregate("ETHUSDT", NOW, 3456.789, low=3450.0, high=3460.0, count=7),
        aggregate("SOLUSDT", NOW, 145.25, count=3)])
    produce(settings, settings.output_topic, [(b"BTCUSDT|bad", b"not an aggregate")])
    produce(settings, settings.dlq_topic, [(None, b"bad tick"), (None, b"worse tick")])
    at = dashboard(settings)

    wait_for(lambda: shows(at, lambda at: "SOLUSDT" in overview(at)["symbol"].tolist()),
             30, "all three symbols in the overview")
    # The cards: the symbols SYMBOLS names (BTCUSDT, ETHUSDT), not every one with data.
    assert metric_value(at, "kpi-SOLUSDT-avg_price") is None
    assert kpi(at, "BTCUSDT", "avg_price") == ("97,432.15", "+432.15")
    assert kpi(at, "BTCUSDT", "spread") == ("99.75", "-100.25")
    assert kpi(at, "BTCUSDT", "min_price") == ("97,400.50", "+500.50")
    assert kpi(at, "BTCUSDT", "max_price") == ("97,500.25", "+400.25")
    assert kpi(at, "BTCUSDT", "count") == ("42", "+2")
    assert kpi(at, "ETHUSDT", "avg_price") == ("3,456.79", "")
    assert "SOLUSDT" in at.multiselect(key="symbols").options, "a new symbol is selectable"
    wait_for(lambda: shows(at, lambda at: metric_value(at, "dead-letters") == "2"),
             30, "the dead-letter count")
    assert at.get_by_key("malformed").metric[0].value == "1"
    assert at.get_by_key("freshness").metric[0].value.endswith("s old")
    assert "Live" in at.get_by_key("freshness").markdown[0].value
    assert any("Skipped 1 malformed" in text for text in texts(at.warning))
    assert not at.error

    at.multiselect(key="symbols").set_value(["ETHUSDT", "SOLUSDT"]).run()
    assert [m.label for m in at.get_by_key("card-ETHUSDT").metric][0] == "Average price"
    assert kpi(at, "SOLUSDT", "avg_price") == ("145.25", "")
    with pytest.raises(KeyError):
        at.get_by_key("card-BTCUSDT")


def test_a_card_shows_volume_and_vwap_when_its_ticks_are_trades(dashboard, settings):
    ensure_topics(settings)
    produce_aggregates(settings, [
        {**aggregate("BTCUSDT", NOW - MINUTE, 97000.0), "volume": 1.25, "vwap": 97001.5},
        {**aggregate("BTCUSDT", NOW, 97432.15), "volume": 3.5, "vwap": 97430.25},
        aggregate("ETHUSDT", NOW, 3456.789)])
    at = dashboard(settings)

    wait_for(lambda: shows(at, lambda at: metric_value(at, "kpi-BTCUSDT-vwap") == "97,430.25"),
             30, "the VWAP of BTCUSDT")
    assert kpi(at, "BTCUSDT", "volume") == ("3.5000", "+2.2500")
    assert kpi(at, "BTCUSDT", "vwap") == ("97,430.25", "+428.75")
    assert [m.label for m in at.get_by_key("card-ETHUSDT").metric] == [
        "Average price", "Spread", "Min price", "Max price", "Ticks"]
    assert not at.error and not at.exception


def test_records_with_only_the_contracts_fields_are_shown(dashboard, settings):
    """Another writer may leave out every field the contract does not require: the page
    shows their KPIs (no candle, no move), and their freshness from the window's end."""
    required = {f.name for f in AGGREGATE_FIELDS if f.required}
    assert required == {"symbol", "window_start", "window_end", "avg_price", "min_price",
                        "max_price", "count", "spread"}
    minimal = [{k: v for k, v in record.items() if k in required} for record in (
        aggregate("XRPUSDT", NOW - 6 * MINUTE, 2.1, count=4),
        aggregate("XRPUSDT", NOW - 5 * MINUTE, 2.1234, low=2.12, high=2.13, count=5))]
    settings = settings.replace(symbols=("XRPUSDT",))
    ensure_topics(settings)
    produce_aggregates(settings, minimal)
    at = dashboard(settings)

    wait_for(lambda: shows(at, lambda at: metric_value(at, "kpi-XRPUSDT-avg_price")
                           == "2.1234"), 30, "the card of the minimal records")
    assert kpi(at, "XRPUSDT", "count") == ("5", "+1")
    assert kpi(at, "XRPUSDT", "spread") == ("0.0100", "+0.0058")
    assert "no open and close in this window" in at.get_by_key("card-XRPUSDT").markdown[0].value
    # The overview's window covers the last 5 minutes up to the newest: the one that began
    # a minute before it (its window overlaps the newest's start).
    row = overview(at).set_index("symbol").loc["XRPUSDT"]
    assert row["ticks"] == 4 and row["spread"] == pytest.approx(2.1 * 0.002)
    assert pd.isna(row["change_pct"]) and pd.isna(row["last_price"])
    assert metric_value(at, "malformed") == "0"
    assert metric_value(at, "freshness").endswith("s old")  # from window_end
    assert not at.error and not at.exception


def test_empty_state_says_what_to_run(dashboard, settings):
    ensure_topics(settings)
    at = dashboard(settings)
    wait_for(lambda: shows(at, lambda at: any(
        "No aggregates yet — is the Spark job running? Start it with ./start.sh spark" in text
        for text in texts(at.warning))), 30, "the empty-state explanation")
    assert any("No aggregates to show yet" in text for text in texts(at.info))
    assert at.get_by_key("freshness").metric[0].value == "no data yet"
    assert not at.error


def test_without_kafka_the_page_says_so_and_names_the_source(dashboard, tmp_path):
    settings = offline_settings(tmp_path, price_source="simulated")
    at = dashboard(settings)
    wait_for(lambda: shows(at, lambda at: any(
        f"Kafka is not reachable at {settings.kafka_bootstrap_servers} — start it with "
        f"./start.sh kafka" in text for text in texts(at.error))), 30, "the Kafka error")
    assert "Simulated prices" in at.get_by_key("source-banner").warning[0].value
    assert "Not live" in at.get_by_key("freshness").markdown[0].value


def test_history_is_shown_after_a_restart_and_marked_stale(dashboard, tmp_path):
    settings = offline_settings(tmp_path)
    open_history(settings.history_url).upsert([
        aggregate("BTCUSDT", NOW - 10 * MINUTE, 97000.0, emitted_at=NOW - 6 * MINUTE),
        aggregate("BTCUSDT", NOW - 9 * MINUTE, 97100.0, emitted_at=NOW - 5 * MINUTE)])
    at = dashboard(settings)
    wait_for(lambda: shows(at, lambda at: metric_value(at, "kpi-BTCUSDT-avg_price")
                           == "97,100.00"), 30, "the card from the history store")
    assert metric_value(at, "freshness").startswith("STALE: ")
    wait_for(lambda: shows(at, lambda at: "Not live" in at.get_by_key("freshness").markdown[0].value
                           and "it is not live" in at.error[0].value), 30, "the Kafka error")


def test_a_partial_window_is_marked_and_candles_switch_timeframe(dashboard, tmp_path):
    """The history of a polling source with an outage: the latest window marked partial on
    its card; the candles tab rolls the history's candles up to the timeframe picked."""
    settings = offline_settings(tmp_path)
    history = open_history(settings.history_url)
    history.upsert([aggregate("BTCUSDT", NOW - 10 * MINUTE, 97000.0, count=60,
                              expected_count=60),
                    aggregate("BTCUSDT", NOW - 9 * MINUTE, 97100.0, count=30,
                              expected_count=60)])
    history.upsert_candles([candle("BTCUSDT", NOW - k * MINUTE, 97000.0 + k, expected_count=12)
                            for k in range(10, 0, -1)])
    at = dashboard(settings)
    wait_for(lambda: shows(at, lambda at: "partial: 30 of 60 polls"
                           in at.get_by_key("card-BTCUSDT").markdown[0].value), 30,
             "the card marked partial")
    radio = at.radio(key="timeframe")
    assert radio.options == ["1m", "5m", "15m", "1h"] and radio.value == "1m"
    candles = at.get_by_key("chart-candles")
    assert candles is not None
    radio.set_value("5m").run()
    assert not at.exception and at.radio(key="timeframe").value == "5m"


def test_a_bad_setting_is_one_clear_line(dashboard, tmp_path, monkeypatch):
    at = dashboard(offline_settings(tmp_path))
    monkeypatch.setenv("DASHBOARD_REFRESH_SECONDS", "often")
    at.run()
    assert not at.exception
    assert "DASHBOARD_REFRESH_SECONDS='often': expected a number" in at.error[0].value


def test_login_guards_the_page_and_slows_wrong_tries(dashboard, tmp_path):
    at = dashboard(offline_settings(tmp_path, dashboard_password="s3cret"))
    at.run()
    assert at.text_input[0].label == "Password" and not at.metric and not at.error

    started = time.monotonic()
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    first = time.monotonic() - started
    assert texts(at.error) == ["Wrong password."] and not at.metric
    started = time.monotonic()
    at.text_input[0].input("also wrong")
    at.button[0].click().run()
    second = time.monotonic() - started
    assert first >= 0.5 and second >= 1.0, (first, second)

    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert not at.text_input and at.title[0].value == "Crypto prices"
    assert at.get_by_key("freshness").metric, "the dashboard is shown"


