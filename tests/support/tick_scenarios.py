"""Input for the Spark job's tests: real klines replayed as ticks, shuffled within a
bound and partly delivered twice, as a real feed may; and poison messages, each with the
reason the job must give for rejecting it."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timedelta, timezone
from itertools import islice

from crypto_pipeline.binance.klines import read_klines
from crypto_pipeline.core.schema import Tick, format_time
from support import DATA_DIR


def replay_ticks(file_name: str, minutes: int | None = None, *,
                 with_quantity: bool = False) -> list[Tick]:
    """The first `minutes` klines of a file as ticks (four per kline); with_quantity
    spreads each kline's volume evenly over its ticks."""
    ticks = []
    for kline in islice(read_klines(DATA_DIR / file_name), minutes):
        for tick in kline.ticks():
            quantity = kline.volume / 4 if with_quantity else None
            ticks.append(dataclasses.replace(tick, quantity=quantity))
    return ticks


def shifted(ticks: list[Tick], delta: timedelta) -> list[Tick]:
    """The same prices at other times: lines symbols from different days up in time."""
    return [dataclasses.replace(t, event_time=t.event_time + delta) for t in ticks]


def out_of_order(ticks: list[Tick], max_delay_seconds: float, seed: int) -> list[Tick]:
    """Delivery order when each tick is delayed by up to `max_delay_seconds`."""
    rng = random.Random(seed)
    delays = {id(t): timedelta(seconds=rng.uniform(0, max_delay_seconds)) for t in ticks}
    return sorted(ticks, key=lambda t: t.event_time + delays[id(t)])


def tick_json(**fields) -> str:
    """A tick's JSON with fields changed; None removes a field."""
    message = {"symbol": "BTCUSDT", "price": 97432.15,
               "event_time": "2025-01-15T14:32:01.123456Z", **fields}
    return json.dumps({k: v for k, v in message.items() if v is not None}, allow_nan=True)


def in_future(delta: timedelta) -> str:
    """An event time `delta` from now."""
    return format_time(datetime.now(timezone.utc) + delta)


POISON = {
    "not JSON": ("{not json", "value is not a JSON object"),
    "JSON array": ('[{"symbol": "BTCUSDT"}]', "value is not a JSON object"),
    "JSON number": ("42", "value is not a JSON object"),
    "empty value": ("", "value is not a JSON object"),
    "null value (tombstone)": (None, "value is not a JSON object"),
    "invalid UTF-8": (b"\xff\xfe{oops", "value is not a JSON object"),
    "missing symbol": (tick_json(symbol=None), "symbol is missing or null"),
    "missing price": (tick_json(price=None), "price is missing or null"),
    "missing event_time": (tick_json(event_time=None), "event_time is missing or null"),
    "price as a string": (tick_json(price="97432.15"), "price is not a JSON number"),
    "price as a boolean": (tick_json(price=True), "price is not a JSON number"),
    "lower-case symbol": (tick_json(symbol="btcusdt"),
                          "symbol is not a Binance symbol (2-20 capital letters and digits)"),
    "symbol with a newline": (tick_json(symbol="BTCUSDT\n"),
                              "symbol is not a Binance symbol (2-20 capital letters and digits)"),
    "symbol as an object": (tick_json(symbol={"a": 1}),
                            "symbol is not a Binance symbol (2-20 capital letters and digits)"),
    "negative price": (tick_json(price=-1.5), "price is not greater than zero"),
    "zero price": (tick_json(price=0), "price is not greater than zero"),
    "NaN price": (tick_json(price=float("nan")), "price is not a finite number"),
    "infinite price": (tick_json(price=float("inf")), "price is not a finite number"),
    "quantity as a string": (tick_json(quantity="1.5"), "quantity is not a JSON number"),
    "negative quantity": (tick_json(quantity=-2), "quantity is not a finite number >= 0"),
    "missed_before as a fraction": (tick_json(missed_before=1.5),
                                    "missed_before is not a whole JSON number"),
    "negative missed_before": (tick_json(missed_before=-3), "missed_before is negative"),
    "unparseable time": (tick_json(event_time="yesterday noon"),
                         "event_time is not an ISO-8601 date and time"),
    "impossible date": (tick_json(event_time="2025-13-45T14:32:01Z"),
                        "event_time is not an ISO-8601 date and time"),
    "date without time": (tick_json(event_time="2025-01-15"),
                          "event_time is not an ISO-8601 date and time"),
    "time as a number": (tick_json(event_time=1736951521),
                         "event_time is not an ISO-8601 date and time"),
    "no offset": (tick_json(event_time="2025-01-15T14:32:01.123456"),
                  "event_time has no UTC offset (Z or +hh:mm)"),
    "far future": (tick_json(event_time=in_future(timedelta(days=365))),
                   "event_time is more than 1 minute in the future"),
}
