"""What start.sh, stop.sh and status.sh ask about components: running? healthy? stop it.

`status_report` gathers the facts once; `status_lines` prints them for a person and
`status_json` for a script, so both say the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crypto_pipeline.core.history import open_history, problem
from crypto_pipeline.core.processes import cmdline, pid_alive, port_in_use
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import (
    DASHBOARD,
    KAFKA,
    PRODUCER,
    SPARK,
    ProducerStatus,
    SparkStatus,
    State,
    StatusFile,
    SupervisorStatus,
    supervisor_file,
)
from crypto_pipeline.core.waiting import WaitTimeout, wait_until
from crypto_pipeline.ops.components import Component, components, dashboard_url, wait_healthy
from crypto_pipeline.ops.supervisor import pid_file

# Marks a line in a component's log where a start begins: the last error shown is the
# current run's.
START_MARK = "==== "
MARK_TIME = "%Y-%m-%dT%H:%M:%SZ"
# A mark this much older than its supervisor's start is of another run (the mark
# is written just before the supervisor starts, to the second).
MARK_SLACK_SECONDS = 60.0


def supervisor_pid(settings: Settings, name: str) -> int | None:
    """Pid of the running supervisor of `name`, or None (stale pid files are ignored)."""
    path = pid_file(settings.run_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    command = cmdline(pid)
    if pid_alive(pid) and "supervise" in command and name in command:
        return pid
    return None


def supervisor_status(settings: Settings, name: str) -> SupervisorStatus | None:
    return SupervisorStatus.read(settings.run_dir, supervisor_file(name))


def busy_ports(component: Component) -> list[int]:
    return [port for port in component.ports if port_in_use(port)]


def stop(settings: Settings, name: str, timeout: float | None = None) -> str:
    """SIGTERM the component's supervisor (which stops the child gracefully), SIGKILL both
    after the timeout; wait until its ports are free. Returns what happened, one line."""
    component = components(settings)[name]
    pid = supervisor_pid(settings, name)
    if pid is None:
        pid_file(settings.run_dir, name).unlink(missing_ok=True)
        return "not running"
    timeout = timeout if timeout is not None else component.stop_timeout + 10
    os.kill(pid, signal.SIGTERM)
    outcome = "stopped"
    try:
        wait_until(lambda: not pid_alive(pid), timeout, "stop")
    except WaitTimeout:
        child = (supervisor_status(settings, name) or SupervisorStatus()).child_pid
        # The child leads its own process group (JVMs and all): kill the group.
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        outcome = f"killed after {timeout:.0f}s"
    pid_file(settings.run_dir, name).unlink(missing_ok=True)
    with contextlib.suppress(WaitTimeout):
        wait_until(lambda: not busy_ports(component), 15, "free ports")
    still = busy_ports(component)
    return outcome + (f"; port {', '.join(map(str, still))} still in use" if still else "")


def wait_started(settings: Settings, name: str, timeout: float) -> str | None:
    """Wait until the supervised component is healthy: None, or why not (one line)."""
    deadline = time.monotonic() + timeout
    component = components(settings)[name]
    if name == KAFKA and settings.kafka_mode != "embedded":
        return wait_healthy(component, settings, 0, timeout, alive=lambda: True)
    try:
        pid = wait_until(lambda: supervisor_pid(settings, name), 10, f"{name} supervisor",
                         interval=0.1)
    except WaitTimeout:
        return f"the {name} supervisor did not start (see logs/{name}.log)"

    def own_status() -> SupervisorStatus:
        status = supervisor_status(settings, name)
        return status if status is not None and status.pid == pid else SupervisorStatus()

    def child_running() -> bool:
        return pid_alive(pid) and own_status().state in (State.STARTING, State.RUNNING)

    started_at = own_status().started_at or time.time() - 1
    return wait_healthy(component, settings, started_at, max(1.0, deadline - time.monotonic()),
                        alive=child_running)


# --- status ---------------------------------------------------------------------------

@dataclass
class ComponentReport:
    """What status.sh says of one component."""

    name: str
    state: str  # running, NOT RUNNING, stopped, reachable, UNREACHABLE
    expected: bool  # start.sh started it (or it was named), so it should run
    pid: int | None = None
    uptime_seconds: float | None = None
    restarts: int = 0
    child_state: str | None = None  # the supervisor's, when not "running"
    last_exit_code: int | None = None
    detail: str = ""
    last_error: str | None = None
    status: dict[str, Any] | None = field(default=None)  # the component's status file
    # More to say than fits the line: the symbols' changes, the backfill's progress.
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.expected or self.state in ("running", "reachable")


@dataclass
class StatusReport:
    components: list[ComponentReport]
    newest_aggregate_at: str | None
    newest_aggregate_age_seconds: float | None
    stale: bool
    history_error: str | None = None  # one line naming HISTORY_URL when it cannot be read

    @property
    def healthy(self) -> bool:
        return all(component.healthy for component in self.components)


_STATUS_FILES: dict[str, type[StatusFile]] = {PRODUCER: ProducerStatus, SPARK: SparkStatus}


def status_report(settings: Settings, expected: list[str] | None = None) -> StatusReport:
    """Every component's state, and the age of the newest aggregate; `expected`: the
    components that should run (default: those start.sh started and stop.sh did not stop)."""
    now = time.time()
    reports = []
    for name, component in components(settings).items():
        should_run = (expected is not None and name in expected) or (
            expected is None and pid_file(settings.run_dir, name).exists())
        if name == KAFKA and settings.kafka_mode != "embedded":
            reachable = component.health(settings, 0) is None
            reports.append(ComponentReport(
                name, "reachable" if reachable else "UNREACHABLE", should_run,
                detail=f"{settings.kafka_mode} at {settings.kafka_bootstrap_servers}"))
            continue
        pid = supervisor_pid(settings, name)
        supervisor = supervisor_status(settings, name) or SupervisorStatus()
        status_type = _STATUS_FILES.get(name)
        status = status_type.read(settings.run_dir) if status_type else None
        if pid is None:
            exit_code = (supervisor.last_exit or {}).get("code")
            reports.append(ComponentReport(name, "NOT RUNNING" if should_run else "stopped",
                                           should_run, last_exit_code=exit_code))
            continue
        reports.append(ComponentReport(
            name, "running", should_run, pid=pid,
            uptime_seconds=round(now - (supervisor.started_at or now), 1),
            restarts=supervisor.restarts,
            child_state=None if supervisor.state == State.RUNNING else str(supervisor.state),
            detail=component_detail(settings, name),
            last_error=(status.last_error if status else None)
            or last_error_line(component.log_file, supervisor.started_at),
            status=asdict(status) if status else None,
            notes=component_notes(status)))
    newest, history_error = _newest_emitted_at(settings)
    age = now - newest.timestamp() if newest else None
    return StatusReport(reports, newest.astimezone(timezone.utc).isoformat() if newest else None,
                        round(age, 1) if age is not None else None,
                        age is not None and age > settings.stale_after_seconds, history_error)


def _newest_emitted_at(settings: Settings) -> tuple[datetime | None, str | None]:
    """When the newest aggregate was written, or why the history could not say."""
    history = open_history(settings.history_url)
    try:
        return history.newest_emitted_at(), None
    except history.errors as err:
        return None, problem(settings.history_url, err)
    finally:
        history.close()


def status_lines(report: StatusReport) -> list[str]:
    """One line per component and a line for the newest aggregate."""
    lines = []
    for c in report.components:
        if c.state in ("reachable", "UNREACHABLE"):
            lines.append(f"{c.name:<10} {c.state:<11} {c.detail}")
        elif c.pid is None:
            exit_note = f"last exit code {c.last_exit_code}" if c.last_exit_code is not None else ""
            lines.append(f"{c.name:<10} {c.state:<11} {exit_note}".rstrip())
        else:
            parts = [f"{c.name:<10} {c.state:<11} pid {c.pid:<7} up {_age(c.uptime_seconds):<7} "
                     f"restarts {c.restarts}"]
            if c.child_state:
                parts.append(f"child {c.child_state}")
            if c.detail:
                parts.append(c.detail)
            if c.last_error:
                parts.append(f"last error: {c.last_error}")
            lines.append("  ".join(parts))
            lines += [f"{'':<10} {note}" for note in c.notes]
    lines.append(_freshness_line(report))
    return lines


def status_json(report: StatusReport) -> dict[str, Any]:
    """The same facts for scripts: one object per component, the newest aggregate's age."""
    return {"healthy": report.healthy,
            "components": {c.name: {**asdict(c), "healthy": c.healthy}
                           for c in report.components},
            "newest_aggregate": {"emitted_at": report.newest_aggregate_at,
                                 "age_seconds": report.newest_aggregate_age_seconds,
                                 "history_error": report.history_error,
                                 "stale": report.stale}}


# The latest changes of the symbols status.sh shows, and the symbols named in each.
SHOWN_CHANGES, SHOWN_SYMBOLS = 3, 8


def component_detail(settings: Settings, name: str) -> str:
    """A few words on how the component is doing (status.sh, start.sh's ok lines)."""
    if name == PRODUCER:
        producer = ProducerStatus.read(settings.run_dir)
        if producer:
            symbols = (f"{len(producer.symbols):,} symbols matching "
                       f"{','.join(producer.symbol_patterns)}, "
                       if producer.symbol_patterns else "")
            return (f"{producer.source} {producer.state}, {symbols}{producer.polls} polls, "
                    f"{producer.ticks_sent} ticks sent")
    if name == SPARK:
        spark = SparkStatus.read(settings.run_dir)
        if spark and spark.batch_id is None:
            return f"query {spark.state}, no batch since it started"
        if spark:
            backlog = "unknown" if spark.backlog is None else f"{spark.backlog:,} ticks"
            return (f"query {spark.state}, batch {spark.batch_id} "
                    f"({spark.batch_duration_ms} ms), backlog {backlog}")
    if name == DASHBOARD:
        return dashboard_url(settings)
    if name == KAFKA:
        return settings.kafka_bootstrap_servers
    return ""


def component_notes(status: StatusFile | None) -> list[str]:
    """Lines under a component's: how its symbols changed (producer), how far the
    backfill is (Spark job)."""
    notes = []
    if isinstance(status, ProducerStatus) and status.symbol_patterns:
        refreshed = (status.symbols_refreshed_at or "never")[:19].replace("T", " ")
        notes.append(f"symbols: {status.symbols_joined:,} joined, {status.symbols_left:,} "
                     f"left since the start; last matched {refreshed} UTC")
        for change in status.symbol_changes[-SHOWN_CHANGES:]:
            words = [f"{label} {_some(symbols)}" for label, symbols in
                     (("joined", change.joined), ("left", change.left)) if symbols]
            notes.append(f"  {change.at[:19].replace('T', ' ')} UTC: {'; '.join(words)}")
        if status.symbols_refresh_error:
            notes.append(f"symbols: {status.symbols_refresh_error}")
    if isinstance(status, SparkStatus) and status.backfill is not None:
        notes.append(f"backfill: {status.backfill.summary()}")
    return notes


def _some(symbols: list[str]) -> str:
    more = len(symbols) - SHOWN_SYMBOLS
    return ", ".join(symbols[:SHOWN_SYMBOLS]) + (f" and {more} more" if more > 0 else "")


def last_error(settings: Settings, name: str) -> str | None:
    status_type = _STATUS_FILES.get(name)
    status = status_type.read(settings.run_dir) if status_type else None
    return status.last_error if status else None


def _age(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def last_error_line(log_file: Path, started_at: float | None) -> str | None:
    """The last ERROR line of the component's current run (start.sh marks each start),
    when that run is the one of the supervisor started at `started_at`: a supervisor
    started otherwise (by hand, by a test) logs elsewhere, and the file is another run's."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()[-2000:]
    except FileNotFoundError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith(START_MARK)]
    if started_at is not None and starts:
        began = _mark_time(lines[starts[-1]])
        if began is not None and began < started_at - MARK_SLACK_SECONDS:
            return None
    current = lines[starts[-1]:] if starts else lines
    errors = [line for line in current if " ERROR " in line or line.startswith("error:")]
    return errors[-1][:200] if errors else None


def start_mark(name: str) -> str:
    """The line start.sh writes into a component's log as it starts it."""
    return (f"{START_MARK}{datetime.now(timezone.utc):{MARK_TIME}} start.sh: starting "
            f"{name} ====")


def _mark_time(line: str) -> float | None:
    try:
        moment = datetime.strptime(line[len(START_MARK):].split()[0], MARK_TIME)
    except (IndexError, ValueError):
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def _freshness_line(report: StatusReport) -> str:
    if report.history_error:
        return f"newest aggregate: unknown, history unavailable ({report.history_error})"
    if report.newest_aggregate_at is None:
        return "newest aggregate: none yet"
    shown = report.newest_aggregate_at[:19].replace("T", " ")
    stale = "  (STALE)" if report.stale else ""
    return (f"newest aggregate: {_age(report.newest_aggregate_age_seconds)} old "
            f"({shown} UTC){stale}")
