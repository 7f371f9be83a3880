"""Where ticks come from (PRICE_SOURCE): Binance's REST API or trade streams, a file
replay, or a simulation; one module each, the shared protocol in `base`."""

from __future__ import annotations

from crypto_pipeline.producer.sources.base import PriceSource, SourceStatus
from crypto_pipeline.producer.sources.replay import ReplayFileError, ReplaySource
from crypto_pipeline.producer.sources.rest_poller import BinancePoller
from crypto_pipeline.producer.sources.simulated import SimulatedSource
from crypto_pipeline.producer.sources.trade_stream import BinanceTradeStream

SOURCES: dict[str, type[PriceSource]] = {
    "binance": BinancePoller, "binance-ws": BinanceTradeStream, "replay": ReplaySource,
    "simulated": SimulatedSource}

__all__ = ["SOURCES", "PriceSource", "ReplayFileError", "SourceStatus"]
