"""Waiting for something with a deadline: the one polling loop of the library.

Readiness is polled, never slept for: a condition is asked again every `interval` seconds
until it holds or the deadline passes, and a `give_up` check (a process that died) ends the
wait at once instead of at the deadline.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The deadline passed; the message names what was awaited and the last reason."""


def wait_until(condition: Callable[[], T], timeout: float, what: str, *,
               interval: float = 0.2, give_up: Callable[[], str | None] | None = None,
               reason: Callable[[], str | None] | None = None) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Raises WaitTimeout after `timeout` seconds, naming `what` (and `reason()`, why it is
    not there yet, when given), or RuntimeError as soon as `give_up()` returns a reason."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if give_up is not None:
            stop = give_up()
            if stop:
                raise RuntimeError(f"{what}: {stop}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = reason() if reason is not None else None
            raise WaitTimeout(f"no {what} after {timeout:.0f}s" + (f": {why}" if why else ""))
        time.sleep(min(interval, remaining))
