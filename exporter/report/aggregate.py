"""Aggregates over published Parquet files with Arrow, in bounded memory.

Files are read through the storage seam (a local file, or ranged reads on S3) one record batch
at a time, only the columns asked for. Sums and counts are kept per batch and merged. What needs
every id of a snapshot at once (accounts added and removed, the largest changes) is done per
*bucket* of ids (``id & (buckets - 1)``), one bucket at a time: memory holds about
``bucket_rows`` ids and values of each snapshot, whatever the table's size.

Money stays exact: decimal columns are summed as ``decimal256(76, s)`` (38-digit values cannot
overflow it) and subtracted as ``decimal256(40, s)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..storage import Storage

BATCH_ROWS = 65_536
BUCKET_ROWS = 1_000_000  # ids (and values) of one snapshot held at once by a comparison
NO_CURRENCY = "(none)"
BINS_PER_DECADE = 4


def scan(storage: Storage, keys: list[str], columns: list[str]) -> Iterator[pa.Table]:
    """The files' rows in batches, with those of ``columns`` each file has."""
    for key in keys:
        with storage.open_read(key) as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            if not present:
                continue
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=present):
                yield pa.Table.from_batches([batch])


def _exact(table: pa.Table, name: str, precision: int) -> pa.ChunkedArray:
    """A numeric column as ``decimal256(precision, scale)`` (nulls if absent or not a number)."""
    if name in table.column_names:
        column = table.column(name)
        if pa.types.is_decimal(column.type):
            return column.cast(pa.decimal256(precision, column.type.scale))
        if pa.types.is_integer(column.type):
            return column.cast(pa.decimal256(precision, 0))
    return pa.chunked_array([pa.nulls(table.num_rows, pa.decimal256(precision, 10))])


def _currency(table: pa.Table) -> pa.ChunkedArray:
    if "currency" not in table.column_names:
        return pa.chunked_array([pa.repeat(pa.scalar(NO_CURRENCY), table.num_rows)])
    return pc.fill_null(table.column("currency").cast(pa.string()), NO_CURRENCY)


# ---- per currency sums


def currency_totals(storage: Storage, keys: list[str], values: list[str]) -> dict[str, dict[str, Decimal | None]]:
    """``{currency: {column: exact sum}}`` over the files; None where no row has a value."""
    sums = [f"{v}_sum" for v in values]
    partials: list[pa.Table] = []
    for table in scan(storage, keys, ["currency", *values]):
        columns = {"currency": _currency(table)} | {v: _exact(table, v, 76) for v in values}
        partials.append(pa.table(columns).group_by("currency").aggregate([(v, "sum") for v in values]))
        if len(partials) >= 64:  # memory holds currencies, not batches
            partials = [_merge_sums(partials, sums)]
    if not partials:
        return {}
    merged = _merge_sums(partials, sums)
    return {row["currency"]: {v: row[s] for v, s in zip(values, sums, strict=True)}
            for row in sorted(merged.to_pylist(), key=lambda r: r["currency"])}


def _merge_sums(partials: list[pa.Table], sums: list[str]) -> pa.Table:
    """Partial sums per currency summed again, under the same column names."""
    table = pa.concat_tables(partials, promote_options="permissive")
    merged = table.group_by("currency").aggregate([(s, "sum") for s in sums])
    return merged.rename_columns([n.removesuffix("_sum") if n.endswith("_sum_sum") else n for n in merged.column_names])


# ---- latest against previous


@dataclass(frozen=True)
class Change:
    key: Any
    currency: str
    previous: Decimal
    latest: Decimal

    @property
    def change(self) -> Decimal:
        return self.latest - self.previous


@dataclass
class Diff:
    added: int = 0
    removed: int = 0
    kept: int = 0
    added_sample: list[Any] = field(default_factory=list)  # the smallest ids
    removed_sample: list[Any] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # the largest |change| first


def buckets_for(rows: int, bucket_rows: int = BUCKET_ROWS) -> int:
    """A power of two: ``id & (buckets - 1)`` spreads ids, negative ones included."""
    need = max(1, math.ceil(rows / max(1, bucket_rows)))
    return 1 << (need - 1).bit_length()


def diff(storage: Storage, latest: list[str], previous: list[str], key: str, value: str | None = None, *,
         buckets: int = 1, top: int = 20, sample: int = 10) -> Diff:
    """Keys added and removed from ``previous`` to ``latest``, and the ``top`` largest changes of
    ``value`` among the keys in both (zero changes left out)."""
    result = Diff()
    best: pa.Table | None = None
    for bucket in range(buckets):
        new = _bucket(storage, latest, key, value, buckets, bucket)
        old = _bucket(storage, previous, key, value, buckets, bucket)
        if new is None or old is None:
            return Diff()  # no such column: nothing to compare
        is_new = pc.invert(pc.is_in(new.column(key), value_set=old.column(key).combine_chunks()))
        is_gone = pc.invert(pc.is_in(old.column(key), value_set=new.column(key).combine_chunks()))
        added, removed = new.column(key).filter(is_new), old.column(key).filter(is_gone)
        result.added += len(added)
        result.removed += len(removed)
        result.kept += new.num_rows - len(added)
        result.added_sample = _smallest(result.added_sample, added, sample)
        result.removed_sample = _smallest(result.removed_sample, removed, sample)
        if value is not None:
            best = _largest_changes(best, new, old, key, value, top)
    if best is not None:
        result.changes = [Change(r[key], r["currency"], r["previous"], r["latest"]) for r in best.to_pylist()]
    return result


def _bucket(storage: Storage, keys: list[str], key: str, value: str | None, buckets: int,
            bucket: int) -> pa.Table | None:
    """The rows of one id bucket: key, currency and value (as ``decimal256(40, s)``)."""
    pieces = []
    wanted = [key, "currency"] + ([value] if value else [])
    for table in scan(storage, keys, wanted):
        if key not in table.column_names:
            return None
        ids = table.column(key)
        keep = pc.is_valid(ids)
        if buckets > 1:
            keep = pc.and_(keep, pc.equal(pc.bit_wise_and(ids, buckets - 1), bucket))
        table = table.filter(keep)
        columns = {key: table.column(key), "currency": _currency(table)}
        if value:
            columns["value"] = _exact(table, value, 40)
        pieces.append(pa.table(columns))
    if not pieces:
        return pa.table({key: pa.array([], pa.int64()), "currency": pa.array([], pa.string()),
                         "value": pa.array([], pa.decimal256(40, 10))})
    return pa.concat_tables(pieces, promote_options="permissive")


def _smallest(kept: list[Any], more: pa.ChunkedArray, n: int) -> list[Any]:
    if len(more) == 0:
        return kept
    candidates = pc.sort_indices(more)[:n]
    return sorted(kept + more.take(candidates).to_pylist())[:n]


def _largest_changes(best: pa.Table | None, new: pa.Table, old: pa.Table, key: str, value: str,
                     top: int) -> pa.Table:
    joined = new.join(old.select([key, "value"]).rename_columns([key, "previous"]), keys=key,
                      join_type="inner", use_threads=False)
    joined = joined.rename_columns([("latest" if n == "value" else n) for n in joined.column_names])
    joined = joined.filter(pc.and_(pc.is_valid(joined.column("latest")), pc.is_valid(joined.column("previous"))))
    change = pc.subtract(joined.column("latest"), joined.column("previous"))
    joined = joined.append_column("size", pc.abs(change)).filter(pc.not_equal(change, 0))
    joined = joined.select([key, "currency", "previous", "latest", "size"])
    if best is not None:
        joined = pa.concat_tables([best, joined], promote_options="permissive")
    if joined.num_rows == 0:
        return joined
    order = [("size", "descending"), (key, "ascending")]
    return joined.take(pc.select_k_unstable(joined, top, order)).sort_by(order)


# ---- distribution


def histogram(storage: Storage, keys: list[str], value: str) -> dict[str, dict[int, int]]:
    """Rows per currency and logarithmic bin of ``value`` (see :func:`bin_edges`)."""
    partials: list[pa.Table] = []
    for table in scan(storage, keys, ["currency", value]):
        if value not in table.column_names:
            continue
        numbers = table.column(value)
        if not (pa.types.is_decimal(numbers.type) or pa.types.is_integer(numbers.type)
                or pa.types.is_floating(numbers.type)):
            continue
        keep = pc.is_valid(numbers)
        floats = numbers.filter(keep).cast(pa.float64()).to_numpy()
        currency = _currency(table).filter(keep)
        bins = pa.table({"currency": currency, "bin": pa.array(bin_of(floats))})
        partials.append(bins.group_by(["currency", "bin"]).aggregate([([], "count_all")]))
        if len(partials) >= 64:
            partials = [_merge_counts(partials)]
    out: dict[str, dict[int, int]] = {}
    if partials:
        for row in _merge_counts(partials).to_pylist():
            out.setdefault(row["currency"], {})[row["bin"]] = row["count_all"]
    return out


def _merge_counts(partials: list[pa.Table]) -> pa.Table:
    merged = pa.concat_tables(partials).group_by(["currency", "bin"]).aggregate([("count_all", "sum")])
    return merged.rename_columns(["count_all" if n == "count_all_sum" else n for n in merged.column_names])


def bin_of(values: np.ndarray) -> np.ndarray:
    """Bin 0 holds ``|v| < 1``; bin ``k > 0`` holds ``10**((k-1)/4) <= v < 10**(k/4)`` (quarter
    decades), bin ``-k`` the same negative values. Balances span cents to billions: linear bins
    would put nearly every account into the first one."""
    magnitude = np.abs(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.floor(BINS_PER_DECADE * np.log10(np.where(magnitude >= 1, magnitude, 1))) + 1
    steps = np.where(magnitude >= 1, steps, 0)
    return (np.sign(values) * steps).astype(np.int64)


def bin_edges(bin_id: int) -> tuple[float, float]:
    """The half-open range ``[low, high)`` of a bin's magnitudes (negative bins mirror these)."""
    k = abs(bin_id)
    if k == 0:
        return (0.0, 1.0)
    return (10 ** ((k - 1) / BINS_PER_DECADE), 10 ** (k / BINS_PER_DECADE))
