"""A pipeline component as start.sh runs it: `pipelinectl supervise NAME` in the background with
given settings, restarted by its supervisor after a crash, stopped as stop.sh stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import die_with_parent
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import State, SupervisorStatus
from crypto_pipeline.ops import control
from support.helpers import process_env, supervisor_status, wait_for


class Supervised:
    def __init__(self, name: str, settings: Settings, log_dir: Path, **env: str):
        self.name = name
        self.settings = settings
        self.log_file = Path(log_dir) / f"{name}.log"
        self.env = process_env(settings, **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> "Supervised":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            # Dies with the test run (PDEATHSIG), and takes its component with it.
            self.process = subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "src" / "pipelinectl.py"), "supervise",
                 self.name],
                cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        return self

    def supervisor_status(self) -> SupervisorStatus:
        """This supervisor's status (an empty one while another's file is there)."""
        status = supervisor_status(self.settings.run_dir, self.name)
        return status if status.pid == self.process.pid else SupervisorStatus()

    def running_child(self) -> int | None:
        """The pid of the child while the supervisor says it runs."""
        assert self.process.poll() is None, f"the {self.name} supervisor exited:\n{self.tail()}"
        status = self.supervisor_status()
        return status.child_pid if status.state == State.RUNNING else None

    def wait_healthy(self, timeout: float) -> None:
        """Until the component passes the health check start.sh waits on."""
        reason = control.wait_started(self.settings, self.name, timeout)
        assert reason is None, f"{self.name}: {reason}\n{self.tail()}"

    def kill_child(self) -> int:
        """SIGKILL the child's whole process group (a JVM with it): a crash, not a stop."""
        pid = wait_for(self.running_child, 60, f"the {self.name} child to run")
        os.killpg(pid, signal.SIGKILL)
        return pid

    def restarted_child(self, killed: int, timeout: float) -> int:
        """The pid of the child the supervisor started after `killed`."""
        def new_child() -> int | None:
            child = self.running_child()
            return child if child != killed else None

        return wait_for(new_child, timeout, f"the {self.name} supervisor to restart it")

    @property
    def restarts(self) -> int:
        return self.supervisor_status().restarts

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> str:
        """As ./stop.sh NAME: SIGTERM to the supervisor, which stops the child gracefully."""
        if self.process is None or self.process.poll() is not None:
            return "not running"
        outcome = control.stop(self.settings, self.name)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        return outcome
