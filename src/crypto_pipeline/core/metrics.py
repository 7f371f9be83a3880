"""Each component's health at `/metrics`, in Prometheus' text format (prometheus_client).

A component serves one collector that reads its live status at every scrape: a number is
counted once, where the component already counts it for its status file, and the two
always agree. Names are `crypto_pipeline_<component>_<what>` with Prometheus' suffixes:
counters end in `_total`, times in `_seconds`. The process's own CPU, memory and file
descriptors come along as `crypto_pipeline_process_*`.
"""

from __future__ import annotations

import logging
from typing import Iterable, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from crypto_pipeline.core.errors import one_line

log = logging.getLogger(__name__)

PREFIX = "crypto_pipeline"


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class Families:
    """The metric families of one component for one scrape. A value of None (not known
    yet) leaves the family without a sample rather than reporting a made-up zero."""

    def __init__(self, component: str):
        self.prefix = f"{PREFIX}_{component}_"
        self.families: list[Metric] = []

    def gauge(self, name: str, documentation: str, value: float | None) -> None:
        family = GaugeMetricFamily(self.prefix + name, documentation)
        if value is not None:
            family.add_metric([], value)
        self.families.append(family)

    def counter(self, name: str, documentation: str, value: float | None) -> None:
        """`name` ends in `_total`, as the exposition writes it."""
        family = CounterMetricFamily(self.prefix + name, documentation)
        if value is not None:
            family.add_metric([], value)
        self.families.append(family)

    def counters(self, name: str, documentation: str, label: str,
                 values: dict[str, float]) -> None:
        """One counter per value of `label` (errors by kind)."""
        family = CounterMetricFamily(self.prefix + name, documentation, labels=[label])
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
        self.families.append(family)

    def labelled_gauge(self, name: str, documentation: str, labels: tuple[str, ...],
                       values: dict[tuple[str, ...], float]) -> None:
        """One gauge per combination of label values."""
        family = GaugeMetricFamily(self.prefix + name, documentation, labels=list(labels))
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        self.families.append(family)

    def state(self, current: str) -> None:
        """`..._state{state="..."} 1`: the state the status file holds, for alerts that
        match on it."""
        family = GaugeMetricFamily(self.prefix + "state", "current state (the status file's)",
                                   labels=["state"])
        family.add_metric([current], 1)
        self.families.append(family)


class MetricsServer:
    """A running `/metrics` endpoint (prometheus_client's HTTP server in a daemon thread)."""

    def __init__(self, address: str, port: int, registry: CollectorRegistry):
        self.httpd, self._thread = start_http_server(port, addr=address, registry=registry)
        self.url = f"http://{address}:{self.httpd.server_port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def serve(port: int, address: str, collector: Collector) -> MetricsServer | None:
    """Serve `collector` at http://address:port/metrics; None when the port is 0 (off) or
    cannot be listened on: a component runs on without its metrics, and says so."""
    if not port:
        return None
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(namespace=PREFIX, registry=registry)
    try:
        server = MetricsServer(address, port, registry)
    except OSError as err:
        log.warning("no metrics: cannot listen on %s:%d (%s)", address, port,
                    one_line(err, named=True))
        return None
    log.info("metrics at %s", server.url)
    return server

