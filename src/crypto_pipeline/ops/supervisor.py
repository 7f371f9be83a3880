"""Keep one component running: start it, restart it after a crash with backoff, stop it.

`./start.sh` runs one supervisor per component (`pipelinectl supervise NAME`). The supervisor
records its pid in RUN_DIR/NAME.pid and its state, restart count and last exit in
RUN_DIR/NAME-supervisor.json (read by status.sh). A child that exits 0 (a finished
replay) or with EXIT_CONFIG_ERROR (a bad setting) is not restarted: a restart would not
change the outcome. SIGTERM stops the child gracefully, then the supervisor exits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import die_with_parent
from crypto_pipeline.core.settings import EXIT_CONFIG_ERROR
from crypto_pipeline.core.status import State, SupervisorStatus, supervisor_file
from crypto_pipeline.ops.components import Component

log = logging.getLogger(__name__)

# Restarts wait 1, 2, 4, ... seconds, up to a minute.
RESTART_BACKOFF = {"base": 1.0, "cap": 60.0, "jitter": False}
# A child that ran this long before crashing was healthy: its next restart is quick again.
STABLE_AFTER_SECONDS = 120.0


def pid_file(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / f"{name}.pid"


class Supervisor:
    def __init__(self, component: Component, run_dir: Path):
        self.component = component
        self.run_dir = Path(run_dir)
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.restarts = 0
        self.started_at = time.time()
        self.child_started_at: float | None = None
        self.last_exit: dict | None = None

    def _report(self, state: State) -> None:
        SupervisorStatus(state=state, child_pid=self.child.pid if self.child else None,
                         started_at=self.started_at, child_started_at=self.child_started_at,
                         restarts=self.restarts, last_exit=self.last_exit,
                         ).write(self.run_dir, supervisor_file(self.component.name))

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()

    def run(self) -> int:
        name = self.component.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Status first: whoever sees the pid file must not read a previous run's status.
        self._report(State.STARTING)
        pid_file(self.run_dir, name).write_text(f"{os.getpid()}\n")
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        consecutive = 0
        code = 0
        try:
            while not self.stopping.is_set():
                self._start_child()
                code = self._wait_child()
                if self.stopping.is_set():
                    break
                ran = time.time() - self.child_started_at
                self.last_exit = {"code": code, "at": time.time(), "ran_seconds": round(ran, 1)}
                if code == 0:
                    log.info("%s exited cleanly after %.0fs; not restarting", name, ran)
                    self._report(State.EXITED)
                    return 0
                if code == EXIT_CONFIG_ERROR:
                    log.error("%s stopped on a configuration error (see above); not restarting "
                              "- fix the setting and run ./start.sh %s", name, name)
                    self._report(State.FAILED)
                    return code
                consecutive = 1 if ran >= STABLE_AFTER_SECONDS else consecutive + 1
                delay = backoff_seconds(consecutive, **RESTART_BACKOFF)
                self.restarts += 1
                log.warning("%s exited with code %s after %.0fs; restart %d in %.0fs",
                            name, code, ran, self.restarts, delay)
                self._report(State.BACKOFF)
                self.stopping.wait(delay)
            return 0
        finally:
            self._stop_child()
            self._report(State.STOPPED)
            pid_file(self.run_dir, name).unlink(missing_ok=True)

    def _start_child(self) -> None:
        self.child_started_at = time.time()
        # Own session: a terminal's Ctrl-C reaches the supervisor only, which stops the
        # child in order; the child still dies with the supervisor (PDEATHSIG). The project
        # root as working directory: Streamlit reads .streamlit/config.toml from there.
        self.child = subprocess.Popen(self.component.command, stdin=subprocess.DEVNULL,
                                      cwd=PROJECT_ROOT, start_new_session=True,
                                      preexec_fn=die_with_parent)
        log.info("started %s (pid %d): %s", self.component.name, self.child.pid,
                 " ".join(self.component.command))
        self._report(State.RUNNING)

    def _wait_child(self) -> int:
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.stopping.is_set():
                    return -1

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        log.info("stopping %s (pid %d)", self.component.name, child.pid)
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.component.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.component.name,
                        self.component.stop_timeout)
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
