"""Binance klines (candles): read from files or API rows, and replay a candle as ticks.

Two file layouts exist, both with the columns of `GET /api/v3/klines`:
- Binance's bulk archive files: no header, times in epoch milliseconds (microseconds in
  spot files from 2025 on);
- exports with a header row and ISO-8601 times.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from crypto_pipeline.core.schema import Tick, parse_time

# A kline replays as four ticks at these offsets into its minute: the open first, the
# close last, and high and low between them in the order the candle implies.
TICK_OFFSETS = (timedelta(seconds=0), timedelta(seconds=15), timedelta(seconds=30),
                timedelta(seconds=59))


@dataclass(frozen=True)
class Kline:
    symbol: str
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: datetime
    trades: int

    def ticks(self, source: str = "replay") -> list[Tick]:
        """The candle as four ticks: open, then low and high (rising candle) or high and
        low (falling candle), then close. Window statistics of these ticks are exactly
        computable from the candle itself."""
        middle = (self.low, self.high) if self.close >= self.open else (self.high, self.low)
        prices = (self.open, *middle, self.close)
        stamp = int(self.open_time.timestamp() * 1000)
        return [Tick(self.symbol, float(price), self.open_time + offset, source,
                     event_id=f"{self.symbol}-{stamp}-{i}")
                for i, (price, offset) in enumerate(zip(prices, TICK_OFFSETS))]


def _time(value: str | int | float) -> datetime:
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        number = float(text)
        # Epoch seconds (10 digits), milliseconds (13) or microseconds (16).
        seconds = number / 1e6 if number > 1e14 else number / 1e3 if number > 1e11 else number
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    return parse_time(text.replace(" ", "T", 1))


def kline_from_row(symbol: str, row: Sequence) -> Kline:
    """One kline from a file row or an API row: [open_time, open, high, low, close,
    volume, close_time, quote_volume, trades, ...]."""
    if len(row) < 9:
        raise ValueError(f"a kline row has at least 9 columns, got {len(row)}")
    return Kline(symbol=symbol, open_time=_time(row[0]), open=float(row[1]),
                 high=float(row[2]), low=float(row[3]), close=float(row[4]),
                 volume=float(row[5]), close_time=_time(row[6]), trades=int(float(row[8])))


def symbol_from_filename(path: Path) -> str:
    """`BTCUSDT-1m-2025-08-01.csv` -> `BTCUSDT`, as Binance names its archive files."""
    match = re.match(r"([A-Z0-9]{2,20})-", path.name)
    if not match:
        raise ValueError(f"cannot tell the symbol from the file name {path.name!r}; "
                         f"name it like BTCUSDT-1m-2025-08-01.csv")
    return match.group(1)


def read_klines(path: Path, symbol: str | None = None) -> Iterator[Kline]:
    """Every kline of a file of either layout, in file order."""
    symbol = symbol or symbol_from_filename(path)
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and not row[0].strip()[:1].isdigit()):
                continue  # blank line or header row
            try:
                yield kline_from_row(symbol, row)
            except ValueError as err:
                raise ValueError(f"{path.name}, line {number}: {err}") from None


def ticks_of(klines: Iterable[Kline], source: str = "replay") -> Iterator[Tick]:
    for kline in klines:
        yield from kline.ticks(source)
