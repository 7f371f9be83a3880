"""Test stand-ins (Binance's REST API, its WebSocket streams) as processes of their own, for
end-to-end tests of the entry points: the script prints its URL and serves until SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from crypto_pipeline.core.paths import PROJECT_ROOT

# What a stand-in run as a module imports from: the library and tests/support.
PYTHONPATH = os.pathsep.join(str(PROJECT_ROOT / part) for part in ("src", "tests"))


@contextmanager
def stand_in_process(module: str, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """The stand-in `module` (support.fake_binance, ...) run with `args`, and the URL it
    printed; sent SIGTERM on leaving unless it already ended."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH})
    try:
        url = process.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"{module} exited with code {process.wait()}")
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(10)


def serve_until_signalled(server: Any) -> None:
    """Run `server` (a context manager with a `url`), print its URL, wait for SIGINT or
    SIGTERM: the `main()` of a stand-in's script."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        stop.wait()
