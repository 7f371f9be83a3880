"""The README's pictures, taken from the running pipeline: `./scripts/screenshots.sh`.

Starts the whole pipeline with start.sh, replaying real Binance klines
(tests/data/binance/), on free ports with its state in a temporary folder, waits for
four hours of windows, photographs the dashboard (its candles at two timeframes too) and
Spark's UI in headless Chromium, and stops it again with stop.sh. Then once more over a
market of MARKET_SYMBOLS USDT pairs (SYMBOLS=*USDT, polled from the Binance stand-in of
tests/support/), for the market overview. What the pictures show is what the project
does.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from crypto_pipeline.core import logs
from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.settings import load_or_exit
from crypto_pipeline.core.waiting import wait_until
from support import browser
from support.fake_binance import fake_binance_process

log = logging.getLogger(__name__)

DOCS = PROJECT_ROOT / "docs"
REPLAY = PROJECT_ROOT / "tests" / "data" / "binance" / "BTCUSDT-1m-2025-08-01_2025-08-10.csv"
WINDOWS_WANTED = 240
VIEWPORT = {"width": 1400, "height": 1000}
MARKET_SYMBOLS = 400
MARKET_MINUTES = 3  # of polls before the overview is photographed: the movers have moved


def _environment(state: Path) -> dict[str, str]:
    kafka = free_port(consecutive=2)
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{kafka}",
        "KAFKA_DATA_DIR": str(state / "kafka"), "RUN_DIR": str(state / "run"),
        "CHECKPOINT_DIR": str(state / "checkpoints" / "crypto-aggregates"),
        "HISTORY_URL": sqlite_url(state / "history.sqlite"),
        "DASHBOARD_PORT": str(free_port()), "SPARK_UI_PORT": str(free_port()),
        # Four hours of real BTCUSDT minutes a minute: four hours of windows in 60 s.
        "PRICE_SOURCE": "replay", "REPLAY_FILE": str(REPLAY), "REPLAY_SPEED": "240",
        "SYMBOLS": "BTCUSDT", "TRIGGER_INTERVAL": "1 second",
        # A slow refresh: a fragment rerun replaces the elements being photographed.
        "DASHBOARD_REFRESH_SECONDS": "120", "BACKFILL_ENABLED": "false",
        # Nothing scrapes them here; their fixed ports may be taken by a running pipeline.
        "PRODUCER_METRICS_PORT": "0", "SPARK_METRICS_PORT": "0", "DASHBOARD_METRICS_PORT": "0",
    }


def _run(script: str, env: dict[str, str]) -> None:
    log.info("running %s", script)
    subprocess.run([str(PROJECT_ROOT / script)], cwd=PROJECT_ROOT, env=env, check=True)


def _wait_for_windows(history_url: str, count: int, timeout: float = 300) -> None:
    def windows() -> int:
        with open_history(history_url) as history:
            return len(history.load())

    wait_until(lambda: windows() >= count, timeout, f"{count} windows in the history store",
               interval=1.0)


def _chart(page, key: str, path: Path) -> None:
    """A picture of the chart of this key once Plotly has drawn it at its width."""
    chart = browser.chart(page, key)
    chart.wait_for(timeout=30_000)
    wait_until(lambda: chart.evaluate(
        "plot => plot._fullLayout && plot._fullData && plot._fullData.length > 0"
        " && plot.getBoundingClientRect().width > 300"), 30, f"{key} drawn", interval=0.5)
    page.locator(f".st-key-{key}").screenshot(path=path)


def _dashboard(page, url: str) -> None:
    page.goto(url)
    page.locator(browser.kpi_selector("BTCUSDT", "avg_price")).wait_for(timeout=60_000)
    browser.chart(page, "chart-band").wait_for(timeout=60_000)
    page.screenshot(path=DOCS / "dashboard.png")
    page.locator(".st-key-card-BTCUSDT").screenshot(path=DOCS / "dashboard-kpis.png")
    for tab, key, name in (("Average price", "chart-band", "timeseries"),
                           ("Latest window", "chart-bars", "bars"),
                           ("Candlesticks", "chart-candles", "candles-1m")):
        page.get_by_role("tab", name=tab).click()
        _chart(page, key, DOCS / f"dashboard-{name}.png")
    # The candles of the last four hours at a quarter of an hour, rolled up from the
    # same 1-minute candles.
    page.get_by_text("6 hours", exact=True).click()
    page.locator("[role='tabpanel']:visible").get_by_text("15m", exact=True).click()
    wait_until(lambda: _candles_drawn(page) <= 24, 30, "15-minute candles drawn")
    _chart(page, "chart-candles", DOCS / "dashboard-candles-15m.png")


def _candles_drawn(page) -> int:
    """How many candles the candle chart shows."""
    return browser.chart(page, "chart-candles").evaluate(
        "plot => (plot._fullData || []).filter(t => t.type === 'candlestick')"
        ".reduce((n, t) => n + t.x.length, 0) || 1e9")


def _spark_ui(page, url: str) -> None:
    page.goto(f"{url}/jobs/")
    page.locator("#completed").first.wait_for(timeout=30_000)
    page.screenshot(path=DOCS / "spark-jobs.png")
    page.goto(f"{url}/StreamingQuery/")
    page.locator("table").first.wait_for(timeout=30_000)
    page.screenshot(path=DOCS / "spark-structured-streaming.png")
    # The statistics page of the aggregates query: rates, batch durations, state rows.
    link = page.locator("a[href*='StreamingQuery/statistics']").first
    link.click()
    page.locator("#stat-table, svg").first.wait_for(timeout=30_000)
    page.screenshot(path=DOCS / "spark-query-statistics.png", full_page=True)


def _market(page, url: str) -> None:
    page.goto(url)
    # Every symbol listed (the stand-in adds its own few, BTCUSDT..., to the market).
    listed = re.compile(r"([\d,]+) of \1 symbols")
    overview = page.locator(".st-key-overview-count").filter(has_text=listed)
    overview.wait_for(timeout=120_000)
    wait_until(lambda: int(listed.search(overview.inner_text()).group(1).replace(",", ""))
               >= MARKET_SYMBOLS, 120, f"{MARKET_SYMBOLS} symbols in the overview")
    # The widgets draw after the text: the search box and the table's canvas.
    page.get_by_label("Search symbols").wait_for(timeout=60_000)
    page.locator(".st-key-overview [data-testid='stDataFrame'] canvas").first.wait_for(
        timeout=60_000)
    page.locator(".st-key-overview").screenshot(path=DOCS / "dashboard-overview.png")


def _market_environment(state: Path, binance_url: str) -> dict[str, str]:
    return {**_environment(state), "PRICE_SOURCE": "binance", "BINANCE_BASE_URL": binance_url,
            "SYMBOLS": "*USDT", "POLL_INTERVAL_SECONDS": "2",
            "DASHBOARD_REFRESH_SECONDS": "120"}


def take(market_only: bool = False) -> list[Path]:
    DOCS.mkdir(exist_ok=True)
    if not market_only:
        _replay_pictures()
    _market_picture()
    return sorted(DOCS.glob("*.png"))


def _replay_pictures() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        env = _environment(Path(tmp))
        _run("start.sh", env)
        try:
            _wait_for_windows(env["HISTORY_URL"], WINDOWS_WANTED)
            with browser.chromium() as chromium:
                page = chromium.new_page(viewport=VIEWPORT)
                _dashboard(page, f"http://127.0.0.1:{env['DASHBOARD_PORT']}")
                _spark_ui(page, f"http://127.0.0.1:{env['SPARK_UI_PORT']}")
        finally:
            _run("stop.sh", env)


def _market_picture() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-market-") as tmp, \
            fake_binance_process(0, "--usdt", str(MARKET_SYMBOLS), "--no-record") as (_, url):
        env = _market_environment(Path(tmp), url)
        _run("start.sh", env)
        try:
            # Each minute of polls adds a window per symbol.
            _wait_for_windows(env["HISTORY_URL"], MARKET_SYMBOLS * MARKET_MINUTES, 600)
            with browser.chromium() as chromium:
                _market(chromium.new_page(viewport={"width": 1400, "height": 1400}),
                        f"http://127.0.0.1:{env['DASHBOARD_PORT']}")
        finally:
            _run("stop.sh", env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--market-only", action="store_true",
                        help="only the market overview's picture")
    args = parser.parse_args()
    logs.configure(load_or_exit().log_level)
    for path in take(args.market_only):
        print(path.relative_to(PROJECT_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
