"""The whole pipeline over a market of 600 symbols: the producer polling the stand-in for
`*USDT`, the Spark job aggregating, an aggregate for every symbol on the topic and in the
history store (and none for a symbol that is not trading or not USDT)."""

from __future__ import annotations

import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.streaming.job import StreamingJob
from support.fake_binance import FakeBinance
from support.helpers import latest_by_key, read_topic, wait_for
from support.producing import running

pytestmark = pytest.mark.integration

SYMBOLS = [f"P{n:03d}USDT" for n in range(600)]


def test_an_aggregate_for_every_one_of_600_symbols(spark, kafka, settings):
    prices = {symbol: 1.0 + n for n, symbol in enumerate(SYMBOLS)}
    prices |= {"P000BTC": 0.0001, "PBREAKUSDT": 2.0}
    with FakeBinance(prices=prices, statuses={"PBREAKUSDT": "BREAK"}) as fake:
        live = settings.replace(binance_base_url=fake.url, symbols=("*USDT",),
                                poll_interval_seconds=1.0, http_read_timeout_seconds=5.0)
        ensure_topics(live)
        job = StreamingJob(spark, live)
        job.start()
        try:
            with running(live):
                wait_for(lambda: len(open_history(live.history_url).newest_window_starts())
                         >= len(SYMBOLS), 180, "an aggregate of every symbol")
        finally:
            assert job.stop() == 0
    stored = open_history(live.history_url).newest_window_starts()
    assert set(stored) == set(SYMBOLS)
    topic = latest_by_key(read_topic(kafka, live.output_topic, min_records=len(SYMBOLS),
                                     timeout=30, idle=0.5))
    assert {value["symbol"] for value in topic.values()} == set(SYMBOLS)
