"""The pipeline's pieces for one phase: private topics and state, components as processes."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port
from crypto_pipeline.core.settings import Settings

log = logging.getLogger(__name__)

# --- settings and processes -----------------------------------------------------------------

def phase_settings(base: Settings, bootstrap: str, work: Path, phase: str,
                   **overrides: Any) -> Settings:
    """The production settings, on topics and state private to one phase."""
    return base.replace(
        kafka_bootstrap_servers=bootstrap, kafka_mode="external",
        input_topic=f"bench-ticks-{phase}", output_topic=f"bench-aggregates-{phase}",
        dlq_topic=f"bench-dlq-{phase}", alerts_topic=f"bench-alerts-{phase}",
        candles_topic=f"bench-candles-{phase}",
        checkpoint_dir=work / phase / "checkpoint",
        history_url=sqlite_url(work / phase / "history.sqlite"),
        run_dir=work / phase / "run", spark_ui_port=free_port(), backfill_enabled=False,
        # Nothing scrapes them; their fixed ports may be taken by a running pipeline.
        producer_metrics_port=0, spark_metrics_port=0, dashboard_metrics_port=0,
        **overrides)


class Processes:
    """Components as their own processes, as start.sh runs them; stopped on exit."""

    def __init__(self, work: Path):
        self.work = work
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, settings: Settings, command: list[str]) -> subprocess.Popen:
        env = {**os.environ, **settings.to_environ()}
        with open(self.work / f"{name}.log", "wb") as log_file:
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.running[name] = process
        return process

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def exited(process: subprocess.Popen):
    """A `give_up` check for wait_until: the process ended."""
    return lambda: (f"the process exited with {process.returncode}"
                    if process.poll() is not None else None)
