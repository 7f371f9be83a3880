"""Binance symbol names and SYMBOLS' patterns: the rules the producer, the job and the
dashboard share.

SYMBOLS lists names (`BTCUSDT`) and shell-style patterns (`*USDT`, `BTC*`, `*`, `?`
for one character, `[AB]` for one of a set), mixed. Names need nobody's answer; patterns
are resolved against the symbols the exchange lists as trading (`resolve`), and that
resolution is redone now and then, so listings join and halted symbols leave (`changes`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

# 2-20 capital letters and digits, as Binance spot names its symbols.
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
SYMBOL_RULE = "2-20 capital letters and digits"
# A pattern: what a name may hold, and at least one of the wildcards * ? [ ].
PATTERN_RE = re.compile(r"^[A-Z0-9*?\[\]!]{1,40}$")
WILDCARDS = frozenset("*?[")
PATTERN_RULE = ("a shell-style pattern of capital letters, digits and the wildcards * "
                "(any run), ? (one character) and [...] (one of a set)")


def is_symbol(text: str) -> bool:
    return SYMBOL_RE.match(text) is not None


def is_pattern(text: str) -> bool:
    """True for an entry of SYMBOLS with a wildcard (it is matched, not looked up)."""
    return any(char in WILDCARDS for char in text)


def check_entry(text: str) -> str:
    """A SYMBOLS entry in upper case; ValueError says what is wrong with it."""
    entry = text.strip().upper()
    if is_pattern(entry):
        if not PATTERN_RE.match(entry) or entry.count("[") != entry.count("]"):
            raise ValueError(f"{entry!r} is not a symbol pattern ({PATTERN_RULE})")
    elif not is_symbol(entry):
        raise ValueError(f"{entry!r} is not a Binance symbol ({SYMBOL_RULE}) nor a pattern "
                         f"such as *USDT")
    return entry


def names(entries: Iterable[str]) -> tuple[str, ...]:
    """The plain names among SYMBOLS' entries, in their order."""
    return tuple(entry for entry in entries if not is_pattern(entry))


def patterns(entries: Iterable[str]) -> tuple[str, ...]:
    return tuple(entry for entry in entries if is_pattern(entry))


def matches(pattern: str, symbol: str) -> bool:
    return fnmatch.fnmatchcase(symbol, pattern)


@dataclass(frozen=True)
class Resolution:
    """What SYMBOLS stands for against one list of trading symbols."""

    symbols: tuple[str, ...]  # names that trade, in their order, then every match, sorted
    not_trading: tuple[str, ...]  # names the list lacks
    unmatched: tuple[str, ...]  # patterns that match nothing


def resolve(entries: Sequence[str], trading: Iterable[str]) -> Resolution:
    """SYMBOLS' entries against the symbols trading now: a name that does not trade is
    set aside (and named), a pattern stands for every symbol it matches."""
    trading = frozenset(trading)
    chosen = [name for name in names(entries) if name in trading]
    not_trading = tuple(name for name in names(entries) if name not in trading)
    unmatched = []
    matched: set[str] = set()
    for pattern in patterns(entries):
        found = {symbol for symbol in trading if matches(pattern, symbol)}
        if not found:
            unmatched.append(pattern)
        matched |= found
    chosen += sorted(matched - set(chosen))
    return Resolution(tuple(chosen), not_trading, tuple(unmatched))


def changes(before: Iterable[str], after: Iterable[str]) -> tuple[tuple[str, ...],
                                                                   tuple[str, ...]]:
    """(joined, left) from one set of symbols to the next, each sorted."""
    before, after = set(before), set(after)
    return tuple(sorted(after - before)), tuple(sorted(before - after))


def java_pattern() -> str:
    """SYMBOL_RE for Spark's rlike: Java's `$` also matches before a trailing newline,
    `\\z` only at the very end."""
    return SYMBOL_RE.pattern.removesuffix("$") + r"\z"
