"""The market overview as a user sees it in headless Chromium, with 1,000 symbols: it renders,
the search box finds one symbol, a symbol that jumps 8 % is named among the top movers in
words (not only inside the canvas grid), and its card is shown as one of them. The
screenshot is kept in test-artifacts/market.png."""

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.kafka_io.topics import ensure_topics
from support import browser
from support.dashboard_support import aggregate

pytestmark = [pytest.mark.integration, pytest.mark.browser]
log = logging.getLogger(__name__)

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)
TIMEOUT_MS = 30_000
SYMBOLS = [f"M{n:04d}USDT" for n in range(999)] + ["JUMPUSDT"]


def window(symbol: str, start: datetime, price: float, move_pct: float) -> dict:
    opened, closed = price, price * (1 + move_pct / 100)
    record = aggregate(symbol, start, (opened + closed) / 2, low=min(opened, closed) * 0.999,
                       high=max(opened, closed) * 1.001, count=30)
    return {**record, "open_price": opened, "close_price": closed, "pct_change": move_pct}


def market() -> list[dict]:
    """Two windows a symbol, moves within ±3 %; JUMPUSDT's last five minutes +8 % (the
    older window is the one that covers them, up to the newest's ticks)."""
    rows = []
    for n, symbol in enumerate(SYMBOLS):
        move = 8.0 if symbol == "JUMPUSDT" else ((n * 37) % 601 - 300) / 100
        price = 10.0 ** (n % 6 - 2) * (1 + n / 1000)
        rows += [window(symbol, NOW - 5 * MINUTE, price, move),
                 window(symbol, NOW - 4 * MINUTE, price * (1 + move / 200), move / 2)]
    return rows


def test_the_overview_of_1000_symbols_searches_and_names_the_top_movers(settings, serve,
                                                                      chromium,
                                                                      artifacts_dir):
    from playwright.sync_api import expect

    settings = settings.replace(symbols=("*USDT",), dashboard_refresh_seconds=1.0)
    ensure_topics(settings)
    open_history(settings.history_url).upsert(market())
    url = serve(settings).url

    page = chromium.new_page(viewport={"width": 1400, "height": 1500})
    opened = time.monotonic()
    page.goto(url)
    count = page.locator(".st-key-overview-count")
    expect(count).to_contain_text("1,000 of 1,000 symbols", timeout=TIMEOUT_MS)
    log.info("overview of 1,000 symbols shown %.1f s after the page opened",
             time.monotonic() - opened)
    gainers = page.locator(".st-key-top-gainers")
    expect(gainers).to_contain_text("Top gainers over the last 5 minutes: JUMPUSDT +8.00%",
                                    timeout=TIMEOUT_MS)
    expect(page.locator(".st-key-top-losers")).to_contain_text("Top losers over the last 5 "
                                                               "minutes: M")
    # SYMBOLS names no symbol: the cards are the top movers', the jump's first.
    expect(page.locator(browser.kpi_selector("JUMPUSDT", "count"))).to_have_text("30")
    expect(page.locator("[data-testid='stDataFrame']")).to_be_visible()
    page.screenshot(path=artifacts_dir / "market.png")

    search = page.get_by_label("Search symbols")
    search.fill("m0777")
    search.press("Enter")
    expect(count).to_contain_text("1 of 1,000 symbols", timeout=TIMEOUT_MS)
    search.fill("*77USDT")
    search.press("Enter")
    expect(count).to_contain_text("10 of 1,000 symbols", timeout=TIMEOUT_MS)  # M0077...M0977
    assert page.locator("[data-testid='stException']").count() == 0
