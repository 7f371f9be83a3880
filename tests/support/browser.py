"""Headless Chromium for looking at the dashboard: the browser test, the benchmark's
tick-to-page latency and the README's screenshots all open it the same way.

Debian's chromium package, driven by Playwright (its own browser download does not work
everywhere; a system Chromium does). The flags keep it from reaching for the internet.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from crypto_pipeline.core.settings import load_or_exit

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def executable() -> Path:
    """The CHROMIUM setting."""
    return load_or_exit().chromium


def missing_reason() -> str | None:
    """Why no browser can be opened here, or None."""
    if not executable().exists():
        return (f"{executable()} is missing: install Debian's chromium package (or set "
                f"CHROMIUM)")
    return None


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (Playwright's Browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable()), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def chart(page, key: str):
    """The Plotly plot of the dashboard's chart of this key (drawn in its frame)."""
    return page.frame_locator(f".st-key-{key} iframe").locator(".js-plotly-plot")


def kpi_selector(symbol: str, name: str) -> str:
    """The value of one KPI on a symbol's card (the dashboard keys its containers)."""
    return f".st-key-kpi-{symbol}-{name} [data-testid='stMetricValue']"
