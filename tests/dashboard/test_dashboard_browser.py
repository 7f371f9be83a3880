"""The dashboard as a user sees it: served by Streamlit, fed through a real broker, opened in
headless Chromium. KPI values read off the page must equal the data; new windows must
appear without a reload; alerts show in the feed and as markers on the chart. Screenshots
are kept in test-artifacts/dashboard.png and test-artifacts/alerts.png."""

import logging
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.rules import AlertRules
from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.kafka_io.keyed_records import json_value
from crypto_pipeline.kafka_io.topics import ensure_topics
from support import browser
from support.dashboard_support import (
    aggregate,
    candle,
    produce,
    produce_aggregates,
    produce_candles,
)
from support.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]
log = logging.getLogger(__name__)

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)
TIMEOUT_MS = 30_000
KPI_NAMES = ("avg_price", "spread", "min_price", "max_price", "count")


def kpi_value(page, symbol, name):
    return page.locator(browser.kpi_selector(symbol, name))


def expected_kpis(record):
    decimals = fmt.price_decimals(record["avg_price"])
    return {name: fmt.count(record[name]) if name == "count"
            else fmt.price(record[name], decimals) for name in KPI_NAMES}


def test_kpis_in_the_browser_equal_the_data_and_update_live(settings, serve, chromium,
                                                           artifacts_dir):
    from playwright.sync_api import expect

    settings = settings.replace(dashboard_refresh_seconds=1.0)
    ensure_topics(settings)
    data = [aggregate("BTCUSDT", NOW - MINUTE, 97000.0, low=96900.0, high=97100.0, count=40),
            {**aggregate("BTCUSDT", NOW, 97432.15, low=97400.5, high=97500.25, count=1234),
             "volume": 12.5, "vwap": 97431.0},
            aggregate("ETHUSDT", NOW - MINUTE, 3440.0, low=3430.0, high=3450.0, count=9),
            aggregate("ETHUSDT", NOW, 3456.789, low=3450.0, high=3460.0, count=7)]
    produce_aggregates(settings, data)
    produce(settings, settings.dlq_topic, [(None, b"a rejected tick")])
    url = serve(settings).url

    # Tall enough for cards and the first chart: Streamlit scrolls inside its own container,
    # so a "full page" screenshot is only the viewport.
    page = chromium.new_page(viewport={"width": 1400, "height": 1600})
    opened = time.monotonic()
    page.goto(url)
    expect(kpi_value(page, "BTCUSDT", "avg_price")).to_have_text("97,432.15", timeout=TIMEOUT_MS)
    log.info("dashboard, first visitor (the feed starts): %.2f s from page open to KPIs shown",
             time.monotonic() - opened)

    latest = {r["symbol"]: r for r in data if r["window_start"] == NOW}
    for symbol, record in latest.items():
        for name, text in expected_kpis(record).items():
            expect(kpi_value(page, symbol, name)).to_have_text(text, timeout=TIMEOUT_MS)
            read = float(kpi_value(page, symbol, name).inner_text().replace(",", ""))
            assert read == pytest.approx(record[name], abs=0.005), (symbol, name)
    # Trades carry quantities: BTCUSDT's window has a volume and a VWAP, ETHUSDT's has none.
    expect(kpi_value(page, "BTCUSDT", "volume")).to_have_text("12.500", timeout=TIMEOUT_MS)
    expect(kpi_value(page, "BTCUSDT", "vwap")).to_have_text("97,431.00", timeout=TIMEOUT_MS)
    assert kpi_value(page, "ETHUSDT", "volume").count() == 0
    expect(page.locator(".st-key-dead-letters [data-testid='stMetricValue']")).to_have_text(
        "1", timeout=TIMEOUT_MS)
    expect(page.locator(".st-key-freshness")).to_contain_text("Live")
    expect(browser.chart(page, "chart-band")).to_be_visible(timeout=TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=artifacts_dir / "dashboard.png", full_page=True)

    # A new window while the page is open: the live panel shows it, the page is not reloaded.
    page.evaluate("window.__stillTheSamePage = true")
    produce_aggregates(settings, [aggregate("BTCUSDT", NOW + MINUTE, 97500.5, low=97480.0,
                                            high=97520.0, count=5)])
    expect(kpi_value(page, "BTCUSDT", "avg_price")).to_have_text("97,500.50",
                                                                 timeout=TIMEOUT_MS)
    expect(page.locator(".st-key-kpi-BTCUSDT-count [data-testid='stMetricDelta']")).to_have_text(
        "-1,229", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__stillTheSamePage") is True

    page.close()  # the next visitor's time is the page's, not two tabs' fighting for 2 cores
    another = chromium.new_page()
    opened = time.monotonic()
    another.goto(url)
    expect(kpi_value(another, "BTCUSDT", "avg_price")).to_have_text("97,500.50",
                                                                    timeout=TIMEOUT_MS)
    log.info("dashboard, next visitor (the feed runs): %.2f s from page open to KPIs shown",
             time.monotonic() - opened)


def test_alerts_show_in_the_feed_and_on_the_chart(settings, serve, chromium, artifacts_dir):
    from playwright.sync_api import expect

    settings = settings.replace(dashboard_refresh_seconds=1.0)
    ensure_topics(settings)
    windows = [aggregate("BTCUSDT", NOW - k * MINUTE, 97000.0 + 40 * (k % 3), count=40)
               for k in range(30, -1, -1)]
    jump = NOW - 4 * MINUTE
    windows[-5] = {**windows[-5], "open_price": 97000.0, "close_price": 99134.0,
                   "max_price": 99134.0, "avg_price": 98100.0, "pct_change": 2.2}
    produce_aggregates(settings, windows + [aggregate("ETHUSDT", NOW, 3456.789)])
    calm = [0.05, -0.05] * 15
    produce(settings, settings.alerts_topic, [
        (alerts.key(alert).encode(), json_value(alert))
        for alert in alerts.detect(windows[-5], calm, AlertRules.from_settings(settings),
                                   NOW - 2 * MINUTE)])
    url = serve(settings).url

    page = chromium.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url)
    feed = page.locator(".st-key-alert-feed")
    move = page.locator(f".st-key-alert-BTCUSDT-{jump:%Y%m%dT%H%M}-move")
    expect(move).to_contain_text("BTCUSDT moved +2.20% (threshold ±1%) in the window "
                                 f"{jump:%Y-%m-%d %H:%M}–{jump + 5 * MINUTE:%H:%M} UTC",
                                 timeout=TIMEOUT_MS)
    expect(page.locator(f".st-key-alert-BTCUSDT-{jump:%Y%m%dT%H%M}-zscore")).to_contain_text(
        "from recent windows (threshold ±3σ)")

    band = browser.chart(page, "chart-band")

    def alert_markers():
        """(x, y) of the alert markers on the price band chart, as Plotly drew them."""
        return band.evaluate("""plot => {
            const trace = (plot._fullData || []).find(t => t.name === 'alert');
            return trace ? Array.from(trace.x, (x, i) => [String(x), trace.y[i]]) : [];
        }""")

    markers = wait_for(alert_markers, 30, "an alert marker on the chart")
    assert [(x[:16], y) for x, y in markers] == [(f"{jump:%Y-%m-%dT%H:%M}", 98100.0)]
    page.screenshot(path=artifacts_dir / "alerts.png")

    # A new alert while the page is open comes first in the feed, without a reload.
    fall = NOW - MINUTE
    produce(settings, settings.alerts_topic, [
        (alerts.key(alert).encode(), json_value(alert)) for alert in alerts.detect(
            {**windows[-2], "pct_change": -1.4}, [], AlertRules.from_settings(settings), NOW)])
    expect(feed.locator("[class*='st-key-alert-BTCUSDT-']").first).to_have_class(
        re.compile(f"st-key-alert-BTCUSDT-{fall:%Y%m%dT%H%M}-move"), timeout=TIMEOUT_MS)
    assert page.locator("[data-testid='stException']").count() == 0


def test_candles_switch_timeframe_and_a_zoomed_chart_stays_zoomed_across_refreshes(
        settings, serve, chromium, artifacts_dir):
    from playwright.sync_api import expect

    settings = settings.replace(dashboard_refresh_seconds=1.0, poll_interval_seconds=5.0)
    ensure_topics(settings)
    end = NOW - NOW.minute % 5 * MINUTE  # on a 5-minute boundary: twelve 5-minute candles
    start = end - 60 * MINUTE
    produce_aggregates(settings, [aggregate("BTCUSDT", start + k * MINUTE, 97000.0 + 10 * k)
                                  for k in range(56)])
    # Two minutes missing most of their polls every quarter of an hour: partial, and so
    # is their 5-minute candle (38 of 60 polls).
    produce_candles(settings, [candle("BTCUSDT", start + k * MINUTE, 97000.0 + 10 * k,
                                      close=97005.0 + 10 * k,
                                      count=1 if k % 15 in (6, 7) else 12,
                                      expected_count=12) for k in range(60)])
    url = serve(settings).url

    page = chromium.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    expect(kpi_value(page, "BTCUSDT", "avg_price")).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Candlesticks").click()
    chart = browser.chart(page, "chart-candles")
    chart.wait_for(timeout=TIMEOUT_MS)

    def drawn():
        """What Plotly drew: candles per trace, the x range, each trace's visibility
        ({} while it has not drawn yet)."""
        return chart.evaluate("""plot => !plot._fullData ? {} : ({
            candles: plot._fullData.filter(t => t.type === 'candlestick').map(t => t.x.length),
            last_close: plot._fullData.filter(t => t.type === 'candlestick')
                .map(t => t.close[t.close.length - 1]),
            range: plot._fullLayout.xaxis.range.map(String),
            visible: Object.fromEntries(plot._fullData.map(t => [t.name, t.visible])),
        })""")

    wait_for(lambda: drawn().get("candles") == [60], 30, "sixty 1-minute candles")
    page.get_by_text("5m", exact=True).click()
    wait_for(lambda: drawn().get("candles") == [12], 30, "twelve 5-minute candles")
    assert drawn()["visible"]["partial"] is True

    before = drawn()
    # As a user does: drag a zoom box across the middle of the chart, hide the partial
    # markers with a click on their legend entry.
    # The market overview sits above the charts: the mouse needs the chart in view.
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y + 2, steps=8)
    page.mouse.up()
    zoomed = wait_for(lambda: (d := drawn())["range"] != before["range"] and d, 10, "the zoom")
    chart.locator(".legend .traces", has_text="partial").click()
    wait_for(lambda: drawn()["visible"]["partial"] == "legendonly", 10, "partial hidden")

    # New candles arrive: the chart is redrawn with them (a thirteenth 5-minute candle,
    # then its close moving), and the view is the user's still.
    produce_candles(settings, [candle("BTCUSDT", end + k * MINUTE, 97700.0, count=12,
                                      expected_count=12) for k in range(3)])
    wait_for(lambda: drawn().get("candles") == [13], 30, "the new candle drawn")
    produce_candles(settings, [candle("BTCUSDT", end + 3 * MINUTE, 97700.0, close=97800.0)])
    wait_for(lambda: drawn().get("last_close") == [97800.0], 30, "the new candle redrawn")
    after = drawn()
    assert after["range"] == zoomed["range"], "the zoom was reset by a refresh"
    assert after["visible"]["partial"] == "legendonly", "the legend choice was reset"
    assert page.locator("[data-testid='stException']").count() == 0
    chart.screenshot(path=artifacts_dir / "candles-5m.png")


def test_a_chart_in_a_tab_shown_later_is_drawn_at_its_full_size(settings, serve, chromium):
    # A tab's chart arrives while its frame has no size; once the tab shows, the chart
    # must fill the frame (it once stayed 0 px high: an empty picture).
    settings = settings.replace(dashboard_refresh_seconds=120.0)
    ensure_topics(settings)
    produce_aggregates(settings, [aggregate("BTCUSDT", NOW - k * MINUTE, 97000.0 + k)
                                  for k in range(10)])
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(serve(settings).url)
    browser.chart(page, "chart-band").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Latest window").click()
    chart = browser.chart(page, "chart-bars")
    chart.wait_for(timeout=30_000)
    frame_height = page.locator(".st-key-chart-bars iframe").evaluate("f => f.height")
    wait_for(lambda: chart.evaluate("p => p.getBoundingClientRect().height") >= 0.9 * float(
        frame_height), 30, "the bars chart drawn at its frame's height")
    assert chart.evaluate("p => p._fullData.length") == 1
