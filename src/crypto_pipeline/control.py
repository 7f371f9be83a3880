"""What start.sh, stop.sh and status.sh ask about components: running? healthy? stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timezone
from pathlib import Path

from crypto_pipeline.components import ORDER, Component, components, wait_healthy
from crypto_pipeline.history import HistoryStore
from crypto_pipeline.processes import cmdline, pid_alive, port_in_use
from crypto_pipeline.settings import Settings
from crypto_pipeline.status import read_status
from crypto_pipeline.supervisor import pid_file


def supervisor_pid(settings: Settings, name: str) -> int | None:
    """Pid of the running supervisor of `name`, or None (stale pid files are ignored)."""
    path = pid_file(settings.run_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    command = cmdline(pid)
    if pid_alive(pid) and any(part.endswith("supervise.py") for part in command) \
            and name in command:
        return pid
    return None


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
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    outcome = "stopped"
    if pid_alive(pid):
        child = (read_status(settings.run_dir, f"{name}-supervisor") or {}).get("child_pid")
        # The child leads its own process group (JVMs and all): kill the group.
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        outcome = f"killed after {timeout:.0f}s"
    pid_file(settings.run_dir, name).unlink(missing_ok=True)
    port_deadline = time.monotonic() + 15
    while busy_ports(component) and time.monotonic() < port_deadline:
        time.sleep(0.2)
    still = busy_ports(component)
    return outcome + (f"; port {', '.join(map(str, still))} still in use" if still else "")


def wait_started(settings: Settings, name: str, timeout: float) -> str | None:
    """Wait until the supervised component is healthy: None, or why not (one line)."""
    deadline = time.monotonic() + timeout
    component = components(settings)[name]
    if name == "kafka" and settings.kafka_mode != "embedded":
        return wait_healthy(component, settings, 0, timeout, alive=lambda: True)
    pid_deadline = time.monotonic() + 10
    while (pid := supervisor_pid(settings, name)) is None:
        if time.monotonic() > pid_deadline:
            return f"the {name} supervisor did not start (see logs/{name}.log)"
        time.sleep(0.1)

    def supervisor_status() -> dict:
        status = read_status(settings.run_dir, f"{name}-supervisor") or {}
        return status if status.get("pid") == pid else {}

    def child_running() -> bool:
        return pid_alive(pid) and supervisor_status().get("state") in ("starting", "running")

    started_at = supervisor_status().get("started_at") or time.time() - 1
    return wait_healthy(component, settings, started_at, max(1.0, deadline - time.monotonic()),
                        alive=child_running)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _last_error_line(log_file: Path) -> str | None:
    """The last ERROR line of the component's current run (start.sh marks each start)."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()[-2000:]
    except FileNotFoundError:
        return None
    starts = [i for i, line in enumerate(lines) if line.startswith("==== ")]
    current = lines[starts[-1]:] if starts else lines
    errors = [line for line in current if " ERROR " in line or line.startswith("error:")]
    return errors[-1][:200] if errors else None


def status_lines(settings: Settings, expected: list[str] | None = None) -> tuple[list[str], bool]:
    """One line per component and a summary line; True when everything that should run
    (everything started and not stopped, or `expected`) is running."""
    now = time.time()
    lines: list[str] = []
    healthy = True
    for name, component in components(settings).items():
        pid = supervisor_pid(settings, name)
        supervisor = read_status(settings.run_dir, f"{name}-supervisor") or {}
        should_run = (expected is not None and name in expected) or (
            expected is None and pid_file(settings.run_dir, name).exists())
        if name == "kafka" and settings.kafka_mode != "embedded":
            reachable = component.health(settings, 0) is None
            healthy &= reachable or not should_run
            lines.append(f"{name:<10} {'reachable' if reachable else 'UNREACHABLE':<11} "
                         f"{settings.kafka_mode} at {settings.kafka_bootstrap_servers}")
            continue
        if pid is None:
            healthy &= not should_run
            state = "NOT RUNNING" if should_run else "stopped"
            detail = ""
            last_exit = supervisor.get("last_exit")
            if last_exit:
                detail = f"last exit code {last_exit['code']}"
            lines.append(f"{name:<10} {state:<11} {detail}".rstrip())
            continue
        child_state = supervisor.get("state", "?")
        up = _age(now - supervisor.get("started_at", now))
        parts = [f"{name:<10} {'running':<11} pid {pid:<7} up {up:<7} "
                 f"restarts {supervisor.get('restarts', 0)}"]
        if child_state != "running":
            parts.append(f"child {child_state}")
        parts.extend(component_detail(settings, name))
        error = _component_error(settings, name, component)
        if error:
            parts.append(f"last error: {error}")
        lines.append("  ".join(parts))
    lines.append(_freshness_line(settings, now))
    return lines, healthy


def component_detail(settings: Settings, name: str) -> list[str]:
    status = read_status(settings.run_dir, name) or {}
    if name == "producer" and status:
        return [f"{status.get('source')} {status.get('state')}, {status.get('polls', 0)} polls, "
                f"{status.get('ticks_sent', 0)} ticks sent"]
    if name == "spark" and status:
        if status.get("batch_id") is None:
            return [f"query {status.get('state')}, no batch since it started"]
        backlog = status.get("backlog")
        return [f"query {status.get('state')}, batch {status['batch_id']} "
                f"({status.get('batch_duration_ms')} ms), backlog "
                f"{'unknown' if backlog is None else f'{backlog:,} ticks'}"]
    if name == "dashboard":
        return [f"http://{settings.dashboard_address}:{settings.dashboard_port}"]
    if name == "kafka":
        return [settings.kafka_bootstrap_servers]
    return []


def _component_error(settings: Settings, name: str, component: Component) -> str | None:
    status = read_status(settings.run_dir, name) or {}
    return status.get("last_error") or _last_error_line(component.log_file)


def _freshness_line(settings: Settings, now: float) -> str:
    newest = HistoryStore(settings.history_db).newest_emitted_at()
    if newest is None:
        return "newest aggregate: none yet"
    age = now - newest.timestamp()
    stale = "  (STALE)" if age > settings.stale_after_seconds else ""
    return (f"newest aggregate: {_age(age)} old "
            f"({newest.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC){stale}")


def ordered(names: list[str]) -> list[str]:
    return [name for name in ORDER if name in names]

