"""How long to wait before trying again: the one backoff rule of the library."""

from __future__ import annotations

import random
from typing import Callable


def backoff_seconds(failures: int, *, base: float, cap: float, jitter: bool = True,
                    rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff after `failures` failures in a row (>= 1).

    The wait doubles with each failure up to `cap`. With jitter, half of it is fixed and
    half random ("equal jitter"), so it always grows yet clients that failed together
    spread out; without, it is exactly base, 2 base, 4 base, ... (a person waiting on a
    login, a supervisor's restarts)."""
    ceiling = min(cap, base * 2 ** (max(failures, 1) - 1))
    return ceiling / 2 + rng() * ceiling / 2 if jitter else ceiling
