"""`./start.sh` and `./stop.sh`: start the named components in order, each under its
supervisor and waited on until healthy; stop them in reverse order.

One progress line per step (`==> [2/5] Creating topics ... ok (0s)  all topics exist`).
When a step fails, the last lines of that component's log are shown, what this run
started is stopped again and the exit status is 1. Kafka in Docker (KAFKA_MODE=docker)
is started and stopped with docker compose and remembered by a marker file in RUN_DIR.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from crypto_pipeline.core.paths import LOG_DIR, PROJECT_ROOT
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import COMPONENTS, DASHBOARD, KAFKA, PRODUCER, SPARK
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.ops import control
from crypto_pipeline.ops.components import CLI, components, dashboard_url

COMPOSE_FILE = PROJECT_ROOT / "docker" / "docker-compose.yml"
# Seconds each component may take to become healthy.
START_TIMEOUTS = {KAFKA: 120, PRODUCER: 90, SPARK: 240, DASHBOARD: 90}
EXTERNAL_KAFKA_TIMEOUT = 30
LOG_TAIL_LINES = 15
EXIT_FAILED, EXIT_USAGE = 1, 2


class StepFailed(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(reason)
        self.name = name


def unknown_components(names: Sequence[str]) -> str | None:
    """The usage error for names that are no component, or None."""
    for name in names:
        if name not in COMPONENTS:
            return f"error: unknown component '{name}' (expected: {' '.join(COMPONENTS)})"
    return None


def docker_marker(settings: Settings) -> Path:
    """Present while start.sh's Kafka runs in Docker."""
    return settings.run_dir / "kafka.docker"


def _compose(*args: str, log: TextIO | int = subprocess.DEVNULL) -> bool:
    return subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), *args],
                          stdout=log, stderr=subprocess.STDOUT).returncode == 0


class Launch:
    """One run of start.sh: the steps, what it started, the rollback on a failure."""

    def __init__(self, settings: Settings, names: Sequence[str], out: TextIO = sys.stdout):
        self.settings = settings
        self.wanted = [name for name in COMPONENTS if name in names]
        self.out = out
        self.started: list[str] = []
        self.step = 0
        self.total = len(self.wanted) + (1 if set(self.wanted) & {KAFKA, PRODUCER, SPARK} else 0)
        self.step_began = 0.0

    def run(self) -> int:
        began = time.monotonic()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if KAFKA in self.wanted:
                self._kafka()
            if set(self.wanted) & {KAFKA, PRODUCER, SPARK}:
                self._topics()
            labels = {PRODUCER: f"Starting the producer (PRICE_SOURCE="
                                f"{self.settings.price_source})",
                      SPARK: "Starting the Spark job", DASHBOARD: "Starting the dashboard"}
            for name in (PRODUCER, SPARK, DASHBOARD):
                if name in self.wanted:
                    self._launch(name, labels[name])
        except StepFailed as failure:
            self._fail(failure)
            return EXIT_FAILED
        self._say(f"==> Started in {time.monotonic() - began:.0f}s")
        if DASHBOARD in self.wanted:
            self._say(f"    Dashboard  {dashboard_url(self.settings)}")
        if SPARK in self.wanted:
            self._say(f"    Spark UI   http://localhost:{self.settings.spark_ui_port}")
        if KAFKA in self.wanted:
            self._say(f"    Kafka      {self.settings.kafka_bootstrap_servers}")
        self._say("    Logs in logs/, ./status.sh for health, ./stop.sh to stop")
        return 0

    # --- steps -------------------------------------------------------------------------

    def _kafka(self) -> None:
        servers = self.settings.kafka_bootstrap_servers
        mode = self.settings.kafka_mode
        if mode == "embedded":
            self._launch(KAFKA, f"Starting Kafka (embedded KRaft broker, {servers})")
            return
        if mode == "external":
            self._progress(f"Checking the external Kafka ({servers})")
            reason = control.wait_started(self.settings, KAFKA, EXTERNAL_KAFKA_TIMEOUT)
            if reason:
                raise StepFailed(KAFKA, f"{reason} (KAFKA_MODE=external starts nothing)")
            self._ok(control.component_detail(self.settings, KAFKA))
            return
        self._progress("Starting Kafka with Docker (docker/docker-compose.yml)")
        if shutil.which("docker") is None or not _compose("version"):
            raise StepFailed(KAFKA, "KAFKA_MODE=docker needs Docker with the compose plugin; "
                                    "use KAFKA_MODE=embedded (no Docker needed)")
        with open(LOG_DIR / f"{KAFKA}.log", "a") as log:
            if not _compose("up", "-d", KAFKA, log=log):
                raise StepFailed(KAFKA, "docker compose up failed")
        docker_marker(self.settings).touch()
        self.started.append(KAFKA)
        reason = control.wait_started(self.settings, KAFKA, START_TIMEOUTS[KAFKA])
        if reason:
            raise StepFailed(KAFKA, reason)
        self._ok(control.component_detail(self.settings, KAFKA))

    def _topics(self) -> None:
        self._progress("Creating topics")
        try:
            created = ensure_topics(self.settings)
        except Exception as err:  # noqa: BLE001 - any failure: Kafka is not there
            with open(LOG_DIR / f"{KAFKA}.log", "a") as log:
                log.write(f"creating the topics failed: {err}\n")
            raise StepFailed(KAFKA, f"could not create the topics: is Kafka running at "
                                    f"{self.settings.kafka_bootstrap_servers}? "
                                    f"(./start.sh kafka)") from None
        self._ok(f"created {', '.join(created)}" if created else "all topics exist")

    def _launch(self, name: str, label: str) -> None:
        """Start `name` under its supervisor unless it runs already; wait until healthy."""
        self._progress(label)
        pid = control.supervisor_pid(self.settings, name)
        if pid is not None:
            self._say(f"already running (pid {pid}) - not started again; ./stop.sh {name} "
                      f"to restart it")
            return
        busy = control.busy_ports(components(self.settings)[name])
        if busy:
            raise StepFailed(name, f"port {', '.join(map(str, busy))} already in use by "
                                   f"another program (stop that program, or change the "
                                   f"port setting)")
        log_path = LOG_DIR / f"{name}.log"
        with open(log_path, "a") as log:
            log.write(f"\n{control.start_mark(name)}\n")
            log.flush()
            # A session of its own: the supervisor outlives this command and a terminal's
            # Ctrl-C meant for it.
            subprocess.Popen([sys.executable, str(CLI), "supervise", name], cwd=PROJECT_ROOT,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        self.started.append(name)
        reason = control.wait_started(self.settings, name, START_TIMEOUTS[name])
        if reason:
            raise StepFailed(name, reason)
        detail = control.component_detail(self.settings, name)
        error = control.last_error(self.settings, name)
        if name == DASHBOARD and self.settings.dashboard_exposed:
            error = (f"the dashboard listens on {self.settings.dashboard_address} without a "
                     f"password: set DASHBOARD_PASSWORD (pipelinectl.py hash-password)")
        self._ok(detail + (f"\n    warning: {error}" if error else ""))

    # --- output and failure ------------------------------------------------------------

    def _say(self, text: str, end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def _progress(self, label: str) -> None:
        self.step += 1
        self.step_began = time.monotonic()
        self._say(f"==> [{self.step}/{self.total}] {label} ... ", end="")

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self.step_began:.0f}s"

    def _ok(self, detail: str = "") -> None:
        self._say(f"ok ({self._elapsed()})" + (f"  {detail}" if detail else ""))

    def _fail(self, failure: StepFailed) -> None:
        self._say(f"FAILED ({self._elapsed()})")
        print(f"error: {failure.name}: {failure}", file=sys.stderr)
        logs = [LOG_DIR / f"{failure.name}.log"]
        if failure.name == KAFKA:
            logs.append(LOG_DIR / "kafka-broker.log")
        for path in logs:
            if path.is_file():
                print(f"---- last lines of {path.relative_to(PROJECT_ROOT)} ----",
                      file=sys.stderr)
                tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                print("\n".join(tail), file=sys.stderr)
        if self.started:
            self._say(f"==> Stopping what this run started: {' '.join(self.started)}")
            for name in reversed(self.started):
                self._say(f"    {name}: {stop_one(self.settings, name)}")


def stop_one(settings: Settings, name: str) -> str:
    """Stop one component as start.sh started it; what happened, one line."""
    marker = docker_marker(settings)
    if name == KAFKA and marker.exists():
        _compose("stop", KAFKA)
        marker.unlink(missing_ok=True)
        return "stopped (docker)"
    return control.stop(settings, name)


def stop(settings: Settings, names: Sequence[str], out: TextIO = sys.stdout) -> int:
    """./stop.sh: the named components (all when none), in reverse start order."""
    for name in reversed(COMPONENTS):
        if name not in names:
            continue
        began = time.monotonic()
        out.write(f"==> Stopping {name} ... ")
        out.flush()
        outcome = stop_one(settings, name)
        out.write(f"{outcome} ({time.monotonic() - began:.0f}s)\n")
        out.flush()
    return 0

