"""SYMBOLS against what Binance lists: its patterns matched with the symbols exchangeInfo
calls TRADING (one request, weight 20). Plain names alone ask nothing: they are used as
they are, as before patterns existed. The producer and the Spark job's backfill resolve
SYMBOLS the same way, here."""

from __future__ import annotations

import logging
from typing import Sequence

from crypto_pipeline.binance.rest import BinanceRestClient
from crypto_pipeline.core.symbols import Resolution, names, patterns, resolve

log = logging.getLogger(__name__)


class NoMatchError(Exception):
    """A pattern of SYMBOLS matches no symbol trading: a configuration error (one line)."""


def resolve_symbols(entries: Sequence[str], client: BinanceRestClient) -> Resolution:
    """What SYMBOLS stands for now. BinanceError when exchangeInfo cannot be had."""
    if not patterns(entries):
        return Resolution(names(entries), (), ())
    trading = [info.symbol for info in client.trading_symbols()]
    return resolve(entries, trading)


def resolve_at_start(entries: Sequence[str], client: BinanceRestClient) -> tuple[str, ...]:
    """SYMBOLS when a process starts: a pattern that matches nothing raises NoMatchError;
    a name that does not trade is named in one warning and left out."""
    resolution = resolve_symbols(entries, client)
    if resolution.unmatched:
        listed, one = ", ".join(resolution.unmatched), len(resolution.unmatched) == 1
        raise NoMatchError(f"SYMBOLS: {listed} {'matches' if one else 'match'} no symbol "
                           f"trading on {client.base_url} (exchangeInfo, "
                           f"symbolStatus=TRADING)")
    if resolution.not_trading:
        log.warning("SYMBOLS: %s %s not trading on %s (exchangeInfo); going on with the "
                    "other %d", ", ".join(resolution.not_trading),
                    "is" if len(resolution.not_trading) == 1 else "are", client.base_url,
                    len(resolution.symbols))
    return resolution.symbols
