"""Figures from what a run observed: memory peaks, a query's micro-batches, drain and
keep-up verdicts, latency percentiles. Pure functions where they can be, so tests check them."""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
import statistics
import threading
from dataclasses import dataclass
from typing import Any

from crypto_pipeline.core.processes import pid_alive, process_tree, tree_rss_bytes
from crypto_pipeline.core.schema import parse_time

log = logging.getLogger(__name__)

# A live run keeps up when it processes at least this share of what was produced.
KEEPS_UP_SHARE = 0.97

def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --- memory ---------------------------------------------------------------------------------

class PeakMemory:
    """Samples the RSS of named process trees five times a second; keeps the peaks."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def reset(self) -> None:
        self.peaks.clear()
        self.peak_total = 0

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for name, pid in list(self.pids.items()):
                rss = tree_rss_bytes(pid) if pid_alive(pid) else 0
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
                total += rss
            self.peak_total = max(self.peak_total, total)


# --- progress of a streaming query ----------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """One micro-batch with input, from a query's progress report."""
    started: float  # epoch seconds
    seconds: float
    rows: int
    backlog: int | None
    state_rows: int
    ms_by_phase: dict[str, int]

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def batches(query) -> list[Batch]:
    """The batches that read something, from the query's recent progress (keep
    spark.sql.streaming.numRecentProgressUpdates above the batches of a phase); raises
    if the query died."""
    from crypto_pipeline.streaming.job import kafka_backlog

    if query.exception() is not None:
        raise RuntimeError(f"query {query.name} failed: {query.exception()}")
    result = []
    for progress in query.recentProgress:
        if not progress.numInputRows:
            continue
        source = progress.sources[0]
        result.append(Batch(
            started=parse_time(progress.timestamp).timestamp(),
            seconds=progress.durationMs["triggerExecution"] / 1000,
            rows=progress.numInputRows,
            backlog=kafka_backlog(source.endOffset, source.latestOffset),
            state_rows=sum(operator.numRowsTotal for operator in progress.stateOperators),
            ms_by_phase=dict(progress.durationMs)))
    return result


def rows_read(query) -> int:
    """Records a query has read so far (0 before its first batch); raises if it died."""
    from crypto_pipeline.streaming.job import total_offset

    if query.exception() is not None:
        raise RuntimeError(f"query {query.name} failed: {query.exception()}")
    progress = query.lastProgress
    if not progress or not progress["sources"]:
        return 0
    try:
        return total_offset(progress["sources"][0]["endOffset"])
    except (TypeError, ValueError):
        return 0


def drain_rate(runs: list[list[Batch]], total: int) -> dict[str, Any]:
    """Ticks/s of a backlog drain by one or more queries reading the same `total` ticks:
    from the end of the first query's first batch (which pays for start-up) until the
    last batch of any query ended."""
    main = runs[0]
    if len(main) < 3:
        raise ValueError(f"{len(main)} batches: a drain needs at least 3 to leave the first "
                         "out (more ticks or a smaller MAX_OFFSETS_PER_TRIGGER)")
    began = main[0].ended
    ended = max(batch.ended for run in runs for batch in run)
    rows = total - main[0].rows
    steady = main[1:]
    return {"rows_per_second": round(rows / (ended - began)), "rows": rows,
            "seconds": round(ended - began, 2), "batches": len(steady),
            "batch_seconds_median": round(statistics.median(b.seconds for b in steady), 2),
            "ms_by_phase": {name: sum(b.ms_by_phase.get(name, 0) for b in steady)
                            for name in ("addBatch", "latestOffset", "queryPlanning",
                                         "walCommit", "commitOffsets")}}


def keeps_up(run: list[Batch], produced_per_second: float, trigger_seconds: float,
             window: tuple[float, float]) -> dict[str, Any]:
    """Whether a query kept up with a steady input rate during `window` (epoch seconds):
    it processed at least KEEPS_UP_SHARE of what was produced, its backlog did not grow
    and its median batch was shorter than the trigger."""
    inside = [b for b in run if window[0] <= b.started and b.ended <= window[1]]
    if len(inside) < 2:
        raise ValueError(f"{len(inside)} batches in the measured window: too few to judge")
    seconds = inside[-1].ended - inside[0].started
    processed = sum(b.rows for b in inside) / seconds
    backlogs = [b.backlog for b in inside if b.backlog is not None]
    growth = backlogs[-1] - backlogs[0] if len(backlogs) >= 2 else None
    median = statistics.median(b.seconds for b in inside)
    # Backlog within a trigger's worth of ticks counts as not growing (batch timing).
    allowed = produced_per_second * trigger_seconds
    verdict = (processed >= KEEPS_UP_SHARE * produced_per_second
               and (growth is None or growth <= allowed) and median <= trigger_seconds)
    return {"keeps_up": verdict, "processed_per_second": round(processed),
            "backlog_first": backlogs[0] if backlogs else None,
            "backlog_last": backlogs[-1] if backlogs else None,
            "batch_seconds_median": round(median, 2),
            "batch_seconds_max": round(max(b.seconds for b in inside), 2),
            "state_rows_last": inside[-1].state_rows, "batches": len(inside)}


def percentiles(values: list[float]) -> dict[str, Any]:
    """p50/p95/p99 by the nearest-rank method (each one a value that occurred)."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "n": 0}

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "n": len(ordered)}


def tick_latencies(sent: list[tuple[str, int, float]],
                   seen: list[tuple[float, str, int]]) -> list[float]:
    """Seconds from each tick sent to the first aggregate of its symbol whose newest tick
    is at least as new, i.e. that contains it (ticks of a symbol are sent in order).
    sent: (symbol, event micros, wall time sent); seen: (wall time read, symbol, newest
    event micros of the aggregate). A tick no aggregate contains yet has no latency."""
    firsts: dict[str, list[tuple[int, float]]] = {}
    for at, symbol, newest in sorted(seen):
        entries = firsts.setdefault(symbol, [])
        if not entries or newest > entries[-1][0]:
            entries.append((newest, at))
    latencies = []
    for symbol, micros, sent_at in sent:
        entries = firsts.get(symbol, [])
        index = bisect.bisect_left(entries, (micros, float("-inf")))
        if index < len(entries):
            latencies.append(entries[index][1] - sent_at)
    return latencies


# --- the market phases ----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process tree has used so far."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = open(f"/proc/{member}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def per_second(samples: list[tuple[float, int]]) -> float | None:
    """Per second, from the first to the last of (time, count) samples."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def burst_drains(samples: list[tuple[float, int]],
                 bursts: list[tuple[float, int]]) -> list[float | None]:
    """Per burst (the time it was made, the trades made by then): seconds until the
    ticks sent (samples of (time, sent)) caught up with it; None if they never did."""
    drains = []
    for made_at, made in bursts:
        caught = next((at for at, sent in samples if at >= made_at and sent >= made), None)
        drains.append(None if caught is None else round(caught - made_at, 2))
    return drains


_SAMPLE = re.compile(r'^crypto_pipeline_dashboard_(page_run\w*)\{([^}]*)\} (\S+)$')


def page_run_times(metrics: str) -> dict[str, dict[str, float]]:
    """The dashboard's page-run figures from its /metrics text: per part (page, panels),
    runs, seconds (total) and the last/p50/p95/max of the recent runs."""
    parts: dict[str, dict[str, float]] = {}
    for line in metrics.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        label = dict(pair.split("=", 1) for pair in labels.split(","))
        part = parts.setdefault(label["part"].strip('"'), {})
        if name == "page_runs_total":
            part["runs"] = float(value)
        elif name == "page_run_seconds_total":
            part["seconds"] = float(value)
        elif name == "page_run_seconds":
            part[label["stat"].strip('"')] = float(value)
    return parts


def batch_summary(durations_ms: list[int]) -> dict[str, Any]:
    """Median and longest of micro-batch durations, in seconds."""
    if not durations_ms:
        return {"batches": 0, "median_seconds": None, "max_seconds": None}
    return {"batches": len(durations_ms),
            "median_seconds": round(statistics.median(durations_ms) / 1000, 2),
            "max_seconds": round(max(durations_ms) / 1000, 2)}
