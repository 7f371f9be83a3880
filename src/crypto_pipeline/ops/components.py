"""The pipeline's long-running components: how each is started and how it proves healthy.

start.sh, stop.sh and status.sh work through `pipelinectl` (ops.cli), which reads these
definitions, so a component's command line, ports and health check are written once.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from crypto_pipeline.core.paths import LOG_DIR, PROJECT_ROOT
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import (
    DASHBOARD,
    KAFKA,
    PRODUCER,
    SPARK,
    ProducerStatus,
    SparkStatus,
    State,
)
from crypto_pipeline.core.waiting import WaitTimeout, wait_until
from crypto_pipeline.kafka_io.clients import client_config, round_trip

SRC = PROJECT_ROOT / "src"
CLI = SRC / "pipelinectl.py"


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    ports: tuple[int, ...]
    # health(settings, started_at) -> None when healthy, else why not (one line)
    health: Callable[[Settings, float], str | None]
    stop_timeout: float

    @property
    def log_file(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def _kafka_ports(settings: Settings) -> tuple[int, ...]:
    first = settings.kafka_servers[0].port
    return tuple(first + i for i in range(2 * settings.kafka_brokers))


def kafka_health(settings: Settings, started_at: float) -> str | None:
    try:
        round_trip(client_config(settings), timeout=3)
        return None
    except Exception as err:  # noqa: BLE001 - any failure is "not healthy", said in words
        return f"no produce/consume round trip with {settings.kafka_bootstrap_servers} ({err})"


def producer_health(settings: Settings, started_at: float) -> str | None:
    status = ProducerStatus.read(settings.run_dir)
    if status is None or not status.fresh_since(started_at):
        return "no status from the producer since it started"
    if status.polls < 1 and status.state != State.FINISHED:
        return f"no poll done yet (state {status.state})"
    return None


def spark_health(settings: Settings, started_at: float) -> str | None:
    status = SparkStatus.read(settings.run_dir)
    if status is None or not status.fresh_since(started_at):
        return "no status from the spark job since it started"
    if status.state != State.ACTIVE:
        return f"query not active yet (state {status.state})"
    return None


def dashboard_url(settings: Settings) -> str:
    scheme = "https" if settings.dashboard_ssl_cert_file else "http"
    return f"{scheme}://{settings.dashboard_address}:{settings.dashboard_port}"


def dashboard_health(settings: Settings, started_at: float) -> str | None:
    # Streamlit runs the app only for a session; its script health check runs it once
    # without a browser, which proves the page loads and starts what the app starts once
    # per server (the /metrics endpoint, and without a password the Kafka feed) before
    # the first visitor comes.
    url = f"{dashboard_url(settings)}/_stcore/script-health-check"
    # Whether the server answers, not whom to trust: a self-signed certificate will do.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=15, context=context) as response:
            body = response.read().decode(errors="replace").strip()
    except OSError as err:
        return f"{url} does not answer ({err})"
    return None if body == "ok" else f"{url} answered {body!r}"


def dashboard_command(settings: Settings) -> list[str]:
    command = [sys.executable, "-m", "streamlit", "run", str(SRC / "dashboard.py"),
               "--server.port", str(settings.dashboard_port),
               "--server.address", settings.dashboard_address,
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.scriptHealthCheckEnabled", "true"]
    if settings.dashboard_ssl_cert_file:
        command += ["--server.sslCertFile", str(settings.dashboard_ssl_cert_file),
                    "--server.sslKeyFile", str(settings.dashboard_ssl_key_file)]
    return command


def _ports(*ports: int) -> tuple[int, ...]:
    """Without the metrics ports set to 0 (off)."""
    return tuple(port for port in ports if port)


def components(settings: Settings) -> dict[str, Component]:
    python = sys.executable
    return {
        KAFKA: Component(KAFKA, [python, str(CLI), "kafka-server"],
                         _kafka_ports(settings), kafka_health, stop_timeout=45),
        PRODUCER: Component(PRODUCER, [python, str(SRC / "api_producer.py")],
                            _ports(settings.producer_metrics_port), producer_health,
                            stop_timeout=30),
        # Started with python rather than spark-submit so that SIGTERM reaches the driver
        # program first and it can stop its queries between batches.
        SPARK: Component(SPARK, [python, str(SRC / "streaming_app.py")],
                         _ports(settings.spark_ui_port, settings.spark_metrics_port),
                         spark_health, stop_timeout=60),
        DASHBOARD: Component(DASHBOARD, dashboard_command(settings),
                             _ports(settings.dashboard_port, settings.dashboard_metrics_port),
                             dashboard_health, stop_timeout=15),
    }


def wait_healthy(component: Component, settings: Settings, started_at: float, timeout: float,
                 alive: Callable[[], bool]) -> str | None:
    """Poll the health check until it passes (None), the process dies or time runs out
    (the reason, one line)."""
    reasons: list[str | None] = []

    def healthy() -> bool:
        reasons.append(component.health(settings, started_at))
        return reasons[-1] is None

    try:
        wait_until(healthy, timeout, "health", interval=0.5,
                   give_up=lambda: None if alive() else f"the {component.name} process exited")
    except WaitTimeout:
        return f"not healthy after {timeout:.0f}s: {reasons[-1] if reasons else 'not checked'}"
    except RuntimeError:
        return f"the {component.name} process exited"
    return None
