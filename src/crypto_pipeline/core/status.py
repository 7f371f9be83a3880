"""The components, their states, and the status file each long-running one keeps in RUN_DIR.

The producer writes `producer.json` after every poll, the Spark job `spark.json` after
every micro-batch, each supervisor `NAME-supervisor.json` when its child starts, exits or
is restarted. start.sh waits on them, status.sh prints them and the dashboard explains
problems with them. One dataclass per file, used by the writer and every reader, so a
field has one name. Writes are atomic (a temporary file, then a rename), so a reader
never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from crypto_pipeline.core import formatting as fmt

# The components in start order; stop goes the other way. The one list of their names.
KAFKA, PRODUCER, SPARK, DASHBOARD = COMPONENTS = ("kafka", "producer", "spark", "dashboard")


class State(str, Enum):
    """Every state a status file can hold (its `state` field)."""

    STARTING = "starting"  # any component, before its first report
    # producer: the source's state, or Kafka's when the source is fine
    OK = "ok"
    FINISHED = "finished"  # a replay that played its whole file
    BINANCE_UNREACHABLE = "binance-unreachable"
    RATE_LIMITED = "rate-limited"
    RESTRICTED_LOCATION = "restricted-location"
    KAFKA_UNREACHABLE = "kafka-unreachable"
    # Spark job
    ACTIVE = "active"
    STOPPED = "stopped"  # also a supervisor that was stopped
    FAILED = "failed"  # also a supervisor whose child failed for good
    # supervisor
    RUNNING = "running"
    BACKOFF = "backoff"
    EXITED = "exited"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


# The producer's states that say Binance is the problem, not the producer or Kafka.
SOURCE_FAULTS = (State.BINANCE_UNREACHABLE, State.RATE_LIMITED, State.RESTRICTED_LOCATION)

S = TypeVar("S", bound="StatusFile")


def known_fields(cls: type, record: dict[str, Any]) -> dict[str, Any]:
    """The entries of `record` that are fields of the dataclass `cls` (a file another
    version wrote may have more)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in record.items() if key in known}


@dataclass
class StatusFile:
    """Fields every status file has; `write` sets pid and updated_at (epoch seconds)."""

    NAME: ClassVar[str]
    state: str = State.STARTING.value
    last_error: str | None = None
    pid: int | None = None
    updated_at: float = 0.0

    @classmethod
    def path(cls, run_dir: Path, name: str | None = None) -> Path:
        return Path(run_dir) / f"{name or cls.NAME}.json"

    def write(self, run_dir: Path, name: str | None = None) -> None:
        """Replace the file with this status, stamped with this process and now."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.pid, self.updated_at = os.getpid(), time.time()
        name = name or self.NAME
        fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(dataclasses.asdict(self), handle, default=str)
            os.replace(tmp, self.path(run_dir, name))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def read(cls: type[S], run_dir: Path, name: str | None = None) -> S | None:
        """The last status written, or None when there is none (fields a newer or older
        version wrote and this one does not know are left out)."""
        try:
            record = json.loads(cls.path(run_dir, name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(**known_fields(cls, record))

    def fresh_since(self, moment: float) -> bool:
        return self.updated_at >= moment


# The producer's status keeps this many of the latest changes to its symbols.
SYMBOL_CHANGES_KEPT = 10


@dataclass
class SymbolChange:
    """Symbols that joined and left at one refresh of SYMBOLS' patterns."""

    at: str
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass
class ProducerStatus(StatusFile):
    NAME: ClassVar[str] = PRODUCER
    source: str = ""
    symbols: list[str] = field(default_factory=list)
    # SYMBOLS' patterns, when it has any: `symbols` is what they matched at the last refresh.
    symbol_patterns: list[str] = field(default_factory=list)
    symbols_refreshed_at: str | None = None
    # Why the last refresh failed (the symbols of the one before are kept), else None.
    symbols_refresh_error: str | None = None
    symbol_changes: list[SymbolChange] = field(default_factory=list)  # oldest first
    symbols_joined: int = 0
    symbols_left: int = 0
    polls: int = 0
    ticks_sent: int = 0
    ticks_failed: int = 0
    ticks_dropped: int = 0
    ticks_buffered: int = 0
    bad_entries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_poll_at: str | None = None
    last_success_at: str | None = None
    kafka_reachable: bool = True

    def __post_init__(self) -> None:
        self.symbol_changes = [SymbolChange(**known_fields(SymbolChange, change))
                               if isinstance(change, dict) else change
                               for change in self.symbol_changes]


@dataclass
class BackfillProgress:
    """How far the Spark job's backfill is (spark.json's `backfill`)."""

    state: str = State.STARTING.value  # starting, running, finished, failed, stopped
    symbols_total: int = 0
    symbols_done: int = 0
    requests: int = 0
    # X-MBX-USED-WEIGHT-1M of the newest answer: the IP's request weight this minute.
    weight_used: int | None = None
    weight_limit: int | None = None
    klines: int = 0
    windows_written: int = 0
    started_at: float | None = None  # epoch seconds
    seconds_left: float | None = None  # an estimate from the pace so far
    last_error: str | None = None

    def summary(self) -> str:
        """The progress in a few words (the log, ./status.sh)."""
        parts = [f"{self.state}, {fmt.count(self.symbols_done)} of "
                 f"{fmt.count(self.symbols_total)} symbols",
                 f"{fmt.count(self.requests)} requests"]
        if self.weight_used is not None and self.weight_limit:
            parts.append(f"weight {fmt.count(self.weight_used)}/{fmt.count(self.weight_limit)}"
                         f" this minute")
        parts.append(f"{fmt.count(self.windows_written)} windows written")
        if self.state == State.RUNNING and self.seconds_left is not None:
            parts.append(f"about {fmt.age(self.seconds_left)} left")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return ", ".join(parts)


@dataclass
class SparkStatus(StatusFile):
    NAME: ClassVar[str] = SPARK
    query_id: str | None = None
    batch_id: int | None = None
    last_batch_at: str | None = None
    batch_duration_ms: int | None = None
    input_rows: int | None = None
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    backlog: int | None = None
    state_rows: int | None = None
    watermark: str | None = None
    # Window rows Spark dropped as later than the watermark: a tick that missed all of its
    # windows counts once per window (5 with the default windows).
    late_rows: int = 0
    emitted_rows: int = 0
    dlq_rows: int = 0
    input_topic: str | None = None
    output_topic: str | None = None
    dlq_topic: str | None = None
    backfill: BackfillProgress | None = None

    def __post_init__(self) -> None:
        if isinstance(self.backfill, dict):
            self.backfill = BackfillProgress(**known_fields(BackfillProgress, self.backfill))


@dataclass
class SupervisorStatus(StatusFile):
    """RUN_DIR/NAME-supervisor.json: `read(run_dir, supervisor_file(name))`."""

    NAME: ClassVar[str] = "supervisor"
    child_pid: int | None = None
    started_at: float | None = None
    child_started_at: float | None = None
    restarts: int = 0
    last_exit: dict[str, Any] | None = None


def supervisor_file(component: str) -> str:
    return f"{component}-supervisor"
