"""The dashboard served by Streamlit as start.sh serves it, for the browser tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import end_process
from crypto_pipeline.ops.components import dashboard_command, dashboard_health, dashboard_url
from support.helpers import free_port, process_env, wait_for


@dataclass(frozen=True)
class Served:
    url: str
    log_file: Path


@pytest.fixture
def serve(tmp_path):
    """Starts the dashboard component's command line (`streamlit run src/dashboard.py`) on a
    free port with the given settings (as environment variables); stops it after the
    test."""
    processes = []

    def start(settings) -> Served:
        settings = settings.replace(dashboard_port=free_port(), dashboard_address="127.0.0.1")
        log_file = tmp_path / f"streamlit-{len(processes)}.log"
        with open(log_file, "wb") as output:
            process = subprocess.Popen(
                dashboard_command(settings), cwd=PROJECT_ROOT, env=process_env(settings),
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        processes.append(process)

        def healthy():
            assert process.poll() is None, f"streamlit exited:\n{log_file.read_text()}"
            return dashboard_health(settings, 0) is None

        wait_for(healthy, 60, "the dashboard server")
        return Served(dashboard_url(settings), log_file)

    yield start
    for process in processes:
        end_process(process, 15)
