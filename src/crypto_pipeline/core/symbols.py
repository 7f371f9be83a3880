"""Binance symbol names: the one pattern the producer, the job and the dashboard check."""

from __future__ import annotations

import re

# 2-20 capital letters and digits, as Binance spot names its symbols.
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
SYMBOL_RULE = "2-20 capital letters and digits"


def is_symbol(text: str) -> bool:
    return SYMBOL_RE.match(text) is not None


def java_pattern() -> str:
    """SYMBOL_RE for Spark's rlike: Java's `$` also matches before a trailing newline,
    `\\z` only at the very end."""
    return SYMBOL_RE.pattern.removesuffix("$") + r"\z"
