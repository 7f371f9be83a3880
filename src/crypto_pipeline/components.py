"""The pipeline's long-running components: how each is started and how it proves healthy.

start.sh, stop.sh and status.sh work through `src/supervise.py` and `src/pipelinectl.py`,
which read these definitions, so a component's command line, ports and health check are
written once.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from crypto_pipeline.kafka_clients import client_config, round_trip
from crypto_pipeline.paths import LOG_DIR, PROJECT_ROOT
from crypto_pipeline.settings import Settings
from crypto_pipeline.status import read_status

SRC = PROJECT_ROOT / "src"
ORDER = ("kafka", "producer", "spark", "dashboard")


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
    first = int(settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")[2])
    return tuple(first + i for i in range(2 * settings.kafka_brokers))


def kafka_health(settings: Settings, started_at: float) -> str | None:
    try:
        round_trip(client_config(settings), timeout=3)
        return None
    except Exception as err:  # noqa: BLE001 - any failure is "not healthy", said in words
        return f"no produce/consume round trip with {settings.kafka_bootstrap_servers} ({err})"


def _fresh_status(settings: Settings, component: str, started_at: float) -> dict | str:
    status = read_status(settings.run_dir, component)
    if status is None or status.get("updated_at", 0) < started_at:
        return f"no status from the {component} since it started"
    return status


def producer_health(settings: Settings, started_at: float) -> str | None:
    status = _fresh_status(settings, "producer", started_at)
    if isinstance(status, str):
        return status
    if status.get("polls", 0) < 1 and status.get("state") != "finished":
        return f"no poll done yet (state {status.get('state')})"
    return None


def spark_health(settings: Settings, started_at: float) -> str | None:
    status = _fresh_status(settings, "spark", started_at)
    if isinstance(status, str):
        return status
    if status.get("state") != "active":
        return f"query not active yet (state {status.get('state')})"
    return None


def dashboard_health(settings: Settings, started_at: float) -> str | None:
    url = f"http://{settings.dashboard_address}:{settings.dashboard_port}/_stcore/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read().decode(errors="replace").strip()
    except OSError as err:
        return f"{url} does not answer ({err})"
    return None if body == "ok" else f"{url} answered {body!r}"


def components(settings: Settings) -> dict[str, Component]:
    python = sys.executable
    return {
        "kafka": Component("kafka", [python, str(SRC / "kafka_server.py")],
                           _kafka_ports(settings), kafka_health, stop_timeout=45),
        "producer": Component("producer", [python, str(SRC / "api_producer.py")], (),
                              producer_health, stop_timeout=30),
        # Started with python rather than spark-submit so that SIGTERM reaches the driver
        # program first and it can stop its queries between batches.
        "spark": Component("spark", [python, str(SRC / "streaming_app.py")],
                           (settings.spark_ui_port,), spark_health, stop_timeout=60),
        "dashboard": Component(
            "dashboard",
            [python, "-m", "streamlit", "run", str(SRC / "dashboard.py"),
             "--server.port", str(settings.dashboard_port),
             "--server.address", settings.dashboard_address,
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            (settings.dashboard_port,), dashboard_health, stop_timeout=15),
    }


def wait_healthy(component: Component, settings: Settings, started_at: float, timeout: float,
                 alive: Callable[[], bool]) -> str | None:
    """Poll the health check until it passes (None), the process dies or time runs out
    (the reason, one line)."""
    deadline = time.monotonic() + timeout
    reason = "not checked"
    while time.monotonic() < deadline:
        if not alive():
            return f"the {component.name} process exited"
        reason = component.health(settings, started_at)
        if reason is None:
            return None
        time.sleep(0.5)
    return f"not healthy after {timeout:.0f}s: {reason}"
