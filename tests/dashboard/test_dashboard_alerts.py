"""The alert feed and the chart markers: the store keeps one alert per symbol, window and
kind; the views order and place them; after a restart the page shows the alerts the
history store remembers (AppTest, Kafka down). The browser test sees them live."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from crypto_pipeline.alerts.rules import AlertRules, detect
from crypto_pipeline.core.history import open_history
from crypto_pipeline.dashboard import charts, views
from crypto_pipeline.dashboard.store import AggregateStore, AlertStore, candle_store
from support.dashboard_support import aggregate, candle, offline_settings, shows
from support.helpers import wait_for

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)
RULES = AlertRules(1.0, 3.0, 60, 2)


def spike(symbol: str, start: datetime, pct: float, *, detected: datetime,
          calm: list[float] | None = None) -> list[dict]:
    """The alerts a window moving `pct` raises (both kinds after `calm` returns)."""
    window = {**aggregate(symbol, start, 100.0), "pct_change": pct}
    return detect(window, calm or [], RULES, detected)


def test_the_store_keeps_one_alert_per_window_and_kind_newest_first():
    store = AlertStore()
    first = spike("BTCUSDT", NOW - 5 * MINUTE, 2.0, detected=NOW - 4 * MINUTE)
    later = spike("ETHUSDT", NOW - 3 * MINUTE, -1.5, detected=NOW - 2 * MINUTE,
                  calm=[0.1, -0.1] * 5)
    store.put_many(first + later)
    store.put_many(spike("BTCUSDT", NOW - 5 * MINUTE, 2.1, detected=NOW))  # sent again
    shown = store.newest_first()
    assert [(a["symbol"], a["kind"], a["value"]) for a in shown] == [
        ("BTCUSDT", "move", 2.1), ("ETHUSDT", "move", -1.5),
        ("ETHUSDT", "zscore", shown[2]["value"])]
    assert shown[2]["value"] < -3
    assert store.prune(NOW - 4 * MINUTE) == 1
    assert [a["symbol"] for a in store.newest_first()] == ["ETHUSDT", "ETHUSDT"]


def test_the_feed_lists_the_newest_alerts_of_the_symbols_shown():
    alerts = (spike("ETHUSDT", NOW - 3 * MINUTE, -1.5, detected=NOW - MINUTE)
              + spike("BTCUSDT", NOW - 5 * MINUTE, 2.0, detected=NOW - 2 * MINUTE))
    lines = views.alert_feed(alerts, ("BTCUSDT", "ETHUSDT"))
    assert [(line.symbol, line.rising) for line in lines] == [("ETHUSDT", False),
                                                               ("BTCUSDT", True)]
    start = NOW - 3 * MINUTE
    assert lines[0].key == f"ETHUSDT-{start:%Y%m%dT%H%M}-move"
    assert lines[0].text == (f"ETHUSDT moved -1.50% (threshold ±1%) in the window "
                             f"{start:%Y-%m-%d %H:%M}–{start + 5 * MINUTE:%H:%M} UTC")
    assert lines[0].detected == f"{NOW - MINUTE:%Y-%m-%d %H:%M:%S} UTC"
    assert [line.symbol for line in views.alert_feed(alerts, ("BTCUSDT",))] == ["BTCUSDT"]
    assert len(views.alert_feed(alerts, ("BTCUSDT", "ETHUSDT"), limit=1)) == 1


def test_markers_sit_on_the_alerted_windows_of_the_charts():
    store = AggregateStore()
    store.put_many([aggregate("BTCUSDT", NOW - k * MINUTE, 100.0 + k) for k in range(6)])
    snapshot = store.snapshot()
    alerts = (spike("BTCUSDT", NOW - 2 * MINUTE, -2.0, detected=NOW)
              + spike("BTCUSDT", NOW - 9 * MINUTE, 2.0, detected=NOW))  # window not held
    markers = views.alert_markers(alerts, snapshot, ("BTCUSDT",))
    assert markers[["window_start", "price", "rising"]].values.tolist() == [
        [NOW - 2 * MINUTE, 102.0, True]]  # aggregate() windows rise: the marker points up
    assert "BTCUSDT moved -2.00%" in markers["label"][0]
    assert views.alert_markers(alerts, snapshot, ("BTCUSDT",), since=NOW - MINUTE).empty

    frame = views.windows_frame(snapshot, ("BTCUSDT",))
    minutes = candle_store()
    minutes.put_many(candle("BTCUSDT", NOW - k * MINUTE, 100.0 + k) for k in range(6))
    candles = views.candles_frame(minutes.snapshot(), ("BTCUSDT",), None, 1, 5.0, {}, 20.0)
    for figure in (charts.price_band(frame, markers), charts.candles(candles, markers)):
        traces = [t for t in figure.data if t.name == charts.ALERT_TRACE]
        assert len(traces) == 1 and list(traces[0].y) == [102.0]
        # Plotly keeps times as UTC without an offset, the windows' and the markers' alike.
        assert [pd.Timestamp(x) for x in traces[0].x] == [
            pd.Timestamp(NOW - 2 * MINUTE).tz_localize(None)]
    assert not [t for t in charts.price_band(frame).data if t.name == charts.ALERT_TRACE]


def test_after_a_restart_the_feed_shows_the_alerts_the_history_store_remembers(dashboard,
                                                                               tmp_path):
    settings = offline_settings(tmp_path)
    history = open_history(settings.history_url)
    history.upsert([aggregate("BTCUSDT", NOW - k * MINUTE, 97000.0 + k) for k in range(6)])
    history.record_alerts(spike("BTCUSDT", NOW - 3 * MINUTE, 1.8, detected=NOW - MINUTE))
    at = dashboard(settings)
    line = f"alert-BTCUSDT-{NOW - 3 * MINUTE:%Y%m%dT%H%M}-move"

    def feed_shown(at):
        try:
            return at.get_by_key(line).markdown[0].value
        except KeyError:
            return None

    text = wait_for(lambda: shows(at, feed_shown), 30, "the alert from the history store")
    assert "BTCUSDT moved +1.80% (threshold ±1%)" in text
    assert ":material/trending_up:" in text
