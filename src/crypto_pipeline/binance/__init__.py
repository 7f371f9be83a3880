"""Binance's public market-data API: REST prices and klines, WebSocket trade streams, and
kline files."""
