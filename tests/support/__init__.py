"""What the tests share and the tooling borrows: stand-ins for Binance (REST, WebSocket) and
a webhook receiver, the independent oracle, tick scenarios, helpers, the browser."""

from crypto_pipeline.core.paths import PROJECT_ROOT

# Real Binance klines (see data/binance/README.md for their provenance).
DATA_DIR = PROJECT_ROOT / "tests" / "data" / "binance"
