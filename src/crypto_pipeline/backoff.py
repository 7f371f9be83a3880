"""How long to wait before trying an unreachable service again."""

from __future__ import annotations

import random
from typing import Callable


def backoff_seconds(failures: int, *, base: float, cap: float,
                    rng: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter after `failures` failures in a row (>= 1).

    The wait doubles with each failure up to `cap`; half of it is fixed and half random
    ("equal jitter"), so it always grows yet clients that failed together spread out.
    """
    ceiling = min(cap, base * 2 ** (max(failures, 1) - 1))
    return ceiling / 2 + rng() * ceiling / 2
