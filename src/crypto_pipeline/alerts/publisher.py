"""Spike alerts on the aggregates the Spark job just wrote: detect, choose, send once,
remember.

The job's batch writer hands over each micro-batch's aggregates after the history upsert,
so the history store already holds every window the z-score looks back on. The alerts
recorded in the history store are the rules' memory: those of the cooldown before the
batch's windows decide what the batch's candidates may send (`rules.choose`), so a
window updated in a later batch, a re-run batch or a restarted job stays quiet, and the
cooldown holds across batches and restarts. An alert goes to ALERTS_TOPIC (key
`SYMBOL|window_start|kind`, confirmed by the broker) and only then is recorded; a crash
between the two sends it again under the same key, which compaction and every consumer
treat as one alert. Then the webhook, if set, gets it without waiting.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from crypto_pipeline.alerts import rules as alerts
from crypto_pipeline.alerts.webhook import AlertWebhook
from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.history import HistoryStore
from crypto_pipeline.core.schema import AGGREGATE_FIELDS, parse_time
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.kafka_io.keyed_records import json_value, send_confirmed

log = logging.getLogger(__name__)

_TIME_FIELDS = tuple(f.name for f in AGGREGATE_FIELDS if f.type == "timestamp")


class SpikeAlerts:
    def __init__(self, settings: Settings, history: HistoryStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.settings = settings
        self.history = history
        self.rules = alerts.AlertRules.from_settings(settings)
        self._clock = clock
        self._webhook: AlertWebhook | None = None

    def check(self, aggregates: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Alert on these aggregates (times as datetimes or ISO text); returns the alerts
        sent now. A failure to send raises, so the batch fails and is re-run."""
        rows = [_with_times(row) for row in aggregates]
        found = candidates(self.history, rows, self.rules, self._clock())
        if not found:
            return []
        sent = self.history.load_alerts(
            since=min(alert["window_start"] for alert in found) - self.rules.cooldown,
            symbols={alert["symbol"] for alert in found})
        new = alerts.choose(found, sent, self.rules)
        if not new:
            return []
        send_confirmed(self.settings, self.settings.alerts_topic,
                       [(alerts.key(alert), json_value(alert)) for alert in new])
        self.history.record_alerts(new)
        for alert in new:
            log.info("alert: %s", fmt.alert(alert))
        if self.settings.alert_webhook_url:
            for alert in new:
                self.webhook.offer(alert)
        return new

    @property
    def webhook(self) -> AlertWebhook:
        """Started with the first alert: a job that never alerts runs no sender thread."""
        if self._webhook is None:
            self._webhook = AlertWebhook(self.settings.alert_webhook_url)
        return self._webhook

    def close(self) -> None:
        if self._webhook is not None:
            self._webhook.close()


def candidates(history: HistoryStore, rows: Sequence[Mapping[str, Any]],
               rules: alerts.AlertRules, detected_at: datetime) -> list[dict[str, Any]]:
    """What the rules raise on these aggregates (times as datetimes), each z-score
    against the recent returns the history store holds."""
    recent = history.recent_returns(((row["symbol"], row["window_start"]) for row in rows),
                                    rules.zscore_windows)
    return [alert for row in rows for alert in alerts.detect(
        row, recent[(row["symbol"], row["window_start"])], rules, detected_at)]


def _with_times(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: parse_time(value) if name in _TIME_FIELDS and isinstance(value, str)
            else value for name, value in row.items()}
