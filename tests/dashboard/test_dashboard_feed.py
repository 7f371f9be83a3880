"""The dashboard's feed against a real broker: rebuild, follow, skip bad records, reconnect;
and against a real PostgreSQL history store that goes away and comes back."""

from datetime import datetime, timedelta, timezone

import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.dashboard import feed as feed_module
from crypto_pipeline.dashboard.feed import KafkaFeed
from crypto_pipeline.kafka_io.topics import ensure_topics
from support.dashboard_support import (
    aggregate,
    candle,
    offline_settings,
    produce,
    produce_aggregates,
    produce_candles,
)
from support.helpers import free_port, wait_for
from support.postgres import PASSWORD

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
MINUTE = timedelta(minutes=1)


def prices(feed, symbol):
    return [r["avg_price"] for r in feed.store.snapshot().windows.get(symbol, ())]


def closes(feed, symbol):
    return [c["close"] for c in feed.candles.snapshot().windows.get(symbol, ())]


def test_feed_rebuilds_from_history_and_topic_then_follows(settings):
    history = open_history(settings.history_url)
    history.upsert([
        aggregate("BTCUSDT", NOW - 10 * MINUTE, 100.0),
        aggregate("BTCUSDT", NOW - 9 * MINUTE, 101.0),
        # Older than the topics' retention: a restart does not bring it back.
        aggregate("BTCUSDT", NOW - timedelta(days=30), 1.0)])
    history.upsert_candles([candle("BTCUSDT", NOW - 10 * MINUTE, 100.0, close=100.5),
                            candle("BTCUSDT", NOW - timedelta(days=30), 1.0)])
    feed = KafkaFeed(settings).start()
    try:
        assert feed.wait_for_first_answer(30)
        assert feed.health().topic_exists is False
        assert prices(feed, "BTCUSDT") == [100.0, 101.0]
        assert closes(feed, "BTCUSDT") == [100.5]
        assert feed.health().history_loaded == 2

        ensure_topics(settings)
        produce_aggregates(settings, [
            aggregate("BTCUSDT", NOW - 9 * MINUTE, 101.5),  # replaces the history's value
            aggregate("BTCUSDT", NOW - 8 * MINUTE, 102.0),
            aggregate("BTCUSDT", NOW - 8 * MINUTE, 102.5),  # Spark re-emitted the window
            aggregate("ETHUSDT", NOW - 8 * MINUTE, 3000.0)])
        produce(settings, settings.output_topic, [(b"BTCUSDT|x", b"{not json"),
                                                  (b"BTCUSDT|y", None)])
        produce(settings, settings.dlq_topic, [(None, b"bad tick %d" % i) for i in range(3)])
        produce_candles(settings, [candle("BTCUSDT", NOW - 10 * MINUTE, 100.0, close=100.7),
                                   candle("BTCUSDT", NOW - 9 * MINUTE, 101.0, close=101.2)])

        wait_for(lambda: prices(feed, "BTCUSDT") == [100.0, 101.5, 102.5]
                 and prices(feed, "ETHUSDT") == [3000.0], 30, "the topic's latest values")
        health = wait_for(lambda: (h := feed.health()).dead_letters == 3 and h.malformed == 2
                          and h.backlog == 0 and h, 30, "dead letters and skipped records")
        wait_for(lambda: closes(feed, "BTCUSDT") == [100.7, 101.2], 30, "the candles' topic")
        assert health.kafka == "ok" and health.topic_exists and health.records_read >= 6
        assert "offset" in health.last_malformed

        produce_aggregates(settings, [aggregate("ETHUSDT", NOW - 7 * MINUTE, 3001.0)])
        wait_for(lambda: prices(feed, "ETHUSDT") == [3000.0, 3001.0], 30, "a new window")
    finally:
        feed.stop()
    assert not feed.alive


def test_replayed_windows_years_old_are_kept(settings):
    """Retention counts back from the newest window, not from today: a replay of 2022's
    klines is still the page's data."""
    replayed = datetime(2022, 8, 14, 12, 0, tzinfo=timezone.utc)
    open_history(settings.history_url).upsert([
        aggregate("ETHUSDT", replayed + i * MINUTE, 1900.0 + i) for i in range(3)])
    ensure_topics(settings)
    produce_aggregates(settings, [aggregate("ETHUSDT", replayed + 3 * MINUTE, 1903.0)])
    feed = KafkaFeed(settings).start()
    try:
        wait_for(lambda: prices(feed, "ETHUSDT") == [1900.0, 1901.0, 1902.0, 1903.0], 30,
                 "the replayed windows")
        assert feed.wait_for_first_answer(30)
        assert prices(feed, "ETHUSDT") == [1900.0, 1901.0, 1902.0, 1903.0]
    finally:
        feed.stop()


def test_feed_reconnects_by_itself_when_kafka_comes_back(settings, tmp_path):
    from crypto_pipeline.kafka_io.embedded import EmbeddedKafka

    broker = EmbeddedKafka(tmp_path / "kafka", tmp_path / "kafka-logs",
                           port=free_port(consecutive=2), heap="256m").start(timeout=120)
    settings = settings.replace(kafka_bootstrap_servers=broker.bootstrap_servers)
    feed = KafkaFeed(settings).start()
    try:
        ensure_topics(settings)
        produce_aggregates(settings, [aggregate("BTCUSDT", NOW, 100.0)])
        wait_for(lambda: prices(feed, "BTCUSDT") == [100.0], 30, "the first window")

        broker.stop()
        wait_for(lambda: feed.health().kafka == "unreachable", 30, "the feed to notice")
        assert prices(feed, "BTCUSDT") == [100.0], "what was read stays on show"

        broker.start(timeout=120)
        produce_aggregates(settings, [aggregate("BTCUSDT", NOW + MINUTE, 101.0)])
        wait_for(lambda: prices(feed, "BTCUSDT") == [100.0, 101.0], 60,
                 "the feed to reconnect and read on")
        assert feed.health().kafka == "ok" and feed.health().records_read == 2
    finally:
        feed.stop()
        broker.stop()


def test_the_feed_says_when_the_history_store_goes_away_and_comes_back(
        postgres, postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(feed_module, "HISTORY_CHECK_SECONDS", 0.2)
    settings = offline_settings(tmp_path, history_url=postgres_url)
    with open_history(postgres_url) as history:
        history.upsert([aggregate("BTCUSDT", NOW - MINUTE, 97000.0)])
    database = postgres_url.rsplit("/", 1)[1]
    feed = KafkaFeed(settings).start()
    try:
        wait_for(lambda: feed.health().history_loaded == 1, 30, "the history loaded")
        assert feed.health().history_error is None
        # The database goes away: no new connection, the feed's own one cut.
        postgres.admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        postgres.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       f"WHERE datname = '{database}'")
        error = wait_for(lambda: feed.health().history_error, 30, "the history error")
        assert error.startswith(f"HISTORY_URL=postgresql://pipeline:***@127.0.0.1:"
                                f"{postgres.port}/{database}: ")
        # The cut connection first, then the refused new ones.
        error = wait_for(lambda: "not currently accepting connections" in (
            feed.health().history_error or "") and feed.health().history_error, 30,
            "the refused connection named")
        assert PASSWORD not in error and "\n" not in error
        assert prices(feed, "BTCUSDT") == [97000.0], "what was loaded stays on the page"

        postgres.admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        wait_for(lambda: feed.health().history_error is None, 30, "the history back")
    finally:
        feed.stop()
        postgres.admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
