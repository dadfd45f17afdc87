"""The cross-source ``balances`` and ``equity`` tables: one shape whatever the API.

Every source writes ``snapshot_at, source, account_id`` and then these columns, in this order and
of these types, with nulls where its API has no such value; a source may append its own columns
after them (TraderEvolution: every raw statement column as ``te_*``). So one query reads the
balances of every source and every tenant (``output/*/balances``).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from ..schema import DECIMAL, TIMESTAMP
from ..walk import Page

BALANCE_COLUMNS = ("currency", "balance", "credit")
EQUITY_COLUMNS = (
    "currency", "equity", "free_margin", "used_margin", "open_trades", "open_trades_lots",
    "daily_profit", "weekly_profit", "monthly_profit", "total_profit",
)
# every other canonical column is money or a quantity: decimal128(38, 10)
TYPES: Mapping[str, pa.DataType] = {"account_id": pa.int64(), "currency": pa.string(), "open_trades": pa.int64()}
HEAD = ("snapshot_at", "source", "account_id")


def column_type(name: str) -> pa.DataType:
    return TYPES.get(name, DECIMAL)


def snapshot_time(rows: int, page: Page) -> pa.Array:
    """The page's fetch time for every row: balances and equity are live values of that moment."""
    # pa.repeat, not a list of datetimes: ~3 ms per 1,000 rows less (each one went through tzinfo)
    return pa.repeat(pa.scalar(page.fetched_at, TIMESTAMP), rows)


def constant(value: str, rows: int) -> pa.Array:
    """A string column holding ``value`` in every row (the ``source`` column)."""
    return pa.repeat(pa.scalar(value, pa.string()), rows)


def canonical_table(
    names: tuple[str, ...], source: str, page: Page, rows: int, found: Mapping[str, pa.Array | pa.ChunkedArray]
) -> tuple[list[pa.Array | pa.ChunkedArray], list[str]]:
    """The canonical head and ``names`` columns, from what a source found (null where it found nothing)."""
    arrays: list[pa.Array | pa.ChunkedArray] = [snapshot_time(rows, page), constant(source, rows)]
    out = ["snapshot_at", "source"]
    for name in ("account_id", *names):
        column = found.get(name)
        arrays.append(column if column is not None else pa.nulls(rows, column_type(name)))
        out.append(name)
    return arrays, out
