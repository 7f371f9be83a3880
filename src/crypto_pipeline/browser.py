"""Headless Chromium for looking at the dashboard: the browser test, the benchmark's
tick-to-page latency and the README's screenshots all open it the same way.

Debian's chromium package, driven by Playwright (its own browser download does not work
everywhere; a system Chromium does). The flags keep it from reaching for the internet.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def missing_reason() -> str | None:
    """Why no browser can be opened here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's chromium package (or set CHROMIUM)"
    return None


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium browser (Playwright's Browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def kpi_selector(symbol: str, name: str) -> str:
    """The value of one KPI on a symbol's card (the dashboard keys its containers)."""
    return f".st-key-kpi-{symbol}-{name} [data-testid='stMetricValue']"
