"""The history's tables, declared once from the message fields, and the SQL built from them.

A table is its name, its columns (core/schema.py's field tuples, so a field added to a
message becomes a column) and its key; adding one is adding a `Table` to `TABLES`.
Statements are written with `?` placeholders and quoted identifiers, which both engines
read; an engine only swaps the placeholder and names its column types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from crypto_pipeline.core.schema import AGGREGATE_FIELDS, ALERT_FIELDS, CANDLE_FIELDS, Field


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    # index name -> its columns
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


# Latest value per window: a re-run batch replaces its windows instead of adding rows.
AGGREGATES = Table("aggregates", AGGREGATE_FIELDS, ("symbol", "window_start"),
                   {"aggregates_by_start": ("window_start",)})
# Latest value per 1-minute candle, as for windows.
CANDLES = Table("candles", CANDLE_FIELDS, ("symbol", "open_time"),
                {"candles_by_open_time": ("open_time",)})
# An alert sent is recorded once per symbol, window and kind, so it is never sent twice.
ALERTS = Table("alerts", ALERT_FIELDS, ("symbol", "window_start", "kind"),
               {"alerts_by_window_end": ("window_end",)})
TABLES: tuple[Table, ...] = (AGGREGATES, CANDLES, ALERTS)
# What retention deletes: rows whose span ended before the cut-off.
ENDS = {AGGREGATES.name: "window_end", CANDLES.name: "close_time", ALERTS.name: "window_end"}


def quoted(name: str) -> str:
    return f'"{name}"'


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(map(quoted, names))


def create_table(table: Table, types: Mapping[str, str], options: str = "") -> str:
    columns = ", ".join(f"{quoted(f.name)} {types[f.type]}" for f in table.fields)
    return (f"CREATE TABLE IF NOT EXISTS {quoted(table.name)} ({columns}, "
            f"PRIMARY KEY ({_names(table.key)})){options}")


def add_column(table: Table, column: Field, types: Mapping[str, str]) -> str:
    return (f"ALTER TABLE {quoted(table.name)} ADD COLUMN {quoted(column.name)} "
            f"{types[column.type]}")


def create_index(table: Table, name: str) -> str:
    return (f"CREATE INDEX IF NOT EXISTS {quoted(name)} ON {quoted(table.name)} "
            f"({_names(table.indexes[name])})")


def insert(table: Table, rows: int, *, replace: bool) -> str:
    """Insert `rows` rows in one statement; a key already there is updated (`replace`) or
    left as it was. Returns the keys of the rows it wrote (an update does not need to:
    it always writes)."""
    values = ", ".join(["(" + ", ".join("?" for _ in table.columns) + ")"] * rows)
    text = (f"INSERT INTO {quoted(table.name)} ({_names(table.columns)}) VALUES {values} "
            f"ON CONFLICT ({_names(table.key)}) ")
    if replace:
        return text + "DO UPDATE SET " + ", ".join(
            f"{quoted(c)} = excluded.{quoted(c)}" for c in table.columns if c not in table.key)
    return text + f"DO NOTHING RETURNING {_names(table.key)}"


def select(table: Table, where: str = "", order_by: tuple[str, ...] = ()) -> str:
    text = f"SELECT {_names(table.columns)} FROM {quoted(table.name)}"
    if where:
        text += f" WHERE {where}"
    if order_by:
        text += f" ORDER BY {_names(order_by)}"
    return text
