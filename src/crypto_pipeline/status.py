"""Each long-running component reports how it is doing in a small JSON file in RUN_DIR.

The producer writes `producer.json` after every poll, the Spark job `spark.json` after
every micro-batch. start.sh waits on them (first poll done, query active), status.sh
prints them and the dashboard explains problems with them. Writes are atomic (write a
temporary file, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def status_path(run_dir: Path, component: str) -> Path:
    return Path(run_dir) / f"{component}.json"


def write_status(run_dir: Path, component: str, status: dict[str, Any]) -> None:
    """Replace the component's status; `updated_at` (epoch seconds) is added."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {**status, "component": component, "pid": os.getpid(), "updated_at": time.time()}
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{component}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, default=str)
        os.replace(tmp, status_path(run_dir, component))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(run_dir: Path, component: str) -> dict[str, Any] | None:
    """The component's last status, or None when it never wrote one."""
    try:
        return json.loads(status_path(run_dir, component).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
