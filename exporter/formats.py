"""The formats ``exporter pull`` writes: a table for the eye, CSV, JSON lines, Parquet.

Values stay exact in every text format: money is the decimal's own digits (``99999999999.99``,
never a float's ``99999999999.99000549``, no trailing zeros, no exponent), timestamps are ISO-8601
in UTC (``2025-01-31T12:00:00Z``, with microseconds only where there are some). Parquet keeps the
typed schema a run writes.

A file is written under a temporary name beside it, fsynced and renamed: an interrupted pull
never leaves a partial file under the requested name.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from decimal import Context, Decimal
from pathlib import Path
from typing import IO, BinaryIO

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMATS = ("table", "csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

_CONTEXT = Context(prec=76)  # room for any decimal128 (38 digits) at any scale
_encoder = msgspec.json.Encoder()


class FormatError(ValueError):
    """The format cannot be decided or does not fit the output; the text says what to give."""


def choose_format(given: str | None, output: str | None, stdout_is_terminal: bool) -> str:
    """``--format`` if given, else the file's extension, else a table on a terminal and CSV when piped."""
    to_stdout = output in (None, "-")
    if given is None:
        if not to_stdout:
            found = EXTENSIONS.get(Path(str(output)).suffix.lower())
            if found is None:
                raise FormatError(f"cannot tell the format from the name {output!r}: end it with "
                                  f"{', '.join(EXTENSIONS)} or give --format")
            return found
        given = "table" if stdout_is_terminal else "csv"
    if given == "parquet" and to_stdout and stdout_is_terminal:
        raise FormatError("Parquet is binary: write it to a file (-o NAME.parquet) or pipe it")
    return given


# ---- exact text of each value


def decimal_text(array: pa.Array) -> pa.Array:
    """Decimals as their shortest exact text: ``100000.15``, ``0``, ``-7``, ``0.0000000001``."""
    text = pc.cast(array, pa.string())
    # Arrow writes a zero and numbers below 1e-6 in scientific notation (0E-10, 1.5E-7)
    text = pc.replace_substring_regex(text, r"^0E-\d+$", "0")
    if pc.any(pc.match_substring(text, "E")).as_py():
        text = pa.array([None if v is None else _plain(v) for v in array.to_pylist()], pa.string())
    text = pc.replace_substring_regex(text, r"^(-?\d+\.\d*?)0+$", r"\1")
    return pc.replace_substring_regex(text, r"\.$", "")


def _plain(value: Decimal) -> str:
    return format(value.normalize(_CONTEXT), "f")


def timestamp_text(array: pa.Array) -> pa.Array:
    """``2025-01-31T12:00:00Z`` (UTC, microseconds only where there are some)."""
    utc = array.cast(pa.timestamp("us", tz="UTC"))
    text = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.000000$", "")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "")


def text_column(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One column as exact text (null stays null)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_decimal(kind):
        return decimal_text(array)
    if pa.types.is_timestamp(kind):
        return timestamp_text(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array
    return pc.cast(array, pa.string())


def as_text(table: pa.Table) -> pa.Table:
    return pa.Table.from_arrays([text_column(c) for c in table.columns], names=table.column_names)


# ---- writers


def write_csv(table: pa.Table, out: BinaryIO, batch_rows: int = 65_536) -> None:
    """A header line, then one line per row. A value is quoted only when it must be (a
    comma, a quote or a line break in it, a leading or trailing space) and an empty string always
    is: an empty cell is null, ``""`` an empty string (DuckDB and pandas read them so)."""
    out.write((",".join(_csv_cell(n) for n in table.column_names) + "\n").encode())
    for batch in table.to_batches(max_chunksize=batch_rows):
        if not batch.num_rows:
            continue
        cells = [_csv_cells(text_column(column)) for column in batch.columns]
        lines = pc.binary_join_element_wise(*cells, pa.scalar(",")) if len(cells) > 1 else cells[0]
        out.write(("\n".join(lines.to_pylist()) + "\n").encode())


_NEEDS_QUOTES = r'[",\r\n]|^$|^\s|\s$'


def _csv_cells(text: pa.Array) -> pa.Array:
    quoted = pc.binary_join_element_wise(pa.scalar('"'), pc.replace_substring(text, '"', '""'), pa.scalar('"'), "")
    return pc.fill_null(pc.if_else(pc.match_substring_regex(text, _NEEDS_QUOTES), quoted, text), "")


def _csv_cell(value: str) -> str:
    return _csv_cells(pa.array([value], pa.string()))[0].as_py()


def write_jsonl(table: pa.Table, out: BinaryIO, batch_rows: int = 10_000) -> None:
    """One JSON object per line; money as JSON numbers with exact digits, times as ISO text."""
    names = table.column_names
    for batch in table.to_batches(max_chunksize=batch_rows):
        columns = []
        for column in batch.columns:
            if pa.types.is_decimal(column.type):
                columns.append([None if v is None else msgspec.Raw(v.encode())
                                for v in decimal_text(column).to_pylist()])
            elif pa.types.is_timestamp(column.type):
                columns.append(timestamp_text(column).to_pylist())
            else:
                columns.append(column.to_pylist())
        lines = [_encoder.encode(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]
        if lines:
            out.write(b"\n".join(lines) + b"\n")


def write_parquet(table: pa.Table, out: BinaryIO | str) -> None:
    """The schema a run writes, with its compression."""
    pq.write_table(table, out, compression="zstd")


def write_table(table: pa.Table, out: IO[str]) -> None:
    """Aligned columns for a terminal: every value whole (nothing cut to fit), numbers on the right."""
    text = as_text(table)
    cells = [["" if v is None else v for v in column.to_pylist()] for column in text.columns]
    right = [pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t)
             for t in table.schema.types]
    widths = [max([len(name), *map(len, column)]) for name, column in zip(table.column_names, cells, strict=True)]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    buffer = io.StringIO()
    buffer.write(line(table.column_names) + "\n")
    buffer.write(line(["-" * w for w in widths]) + "\n")
    for row in zip(*cells, strict=True):
        buffer.write(line(list(row)) + "\n")
    buffer.write(f"({table.num_rows} row{'' if table.num_rows == 1 else 's'})\n")
    out.write(buffer.getvalue())


WRITERS: dict[str, Callable[[pa.Table, BinaryIO], None]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "parquet": write_parquet,
}


def write(table: pa.Table, fmt: str, out: BinaryIO) -> None:
    if fmt == "table":
        wrapper = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
        try:
            write_table(table, wrapper)
        finally:
            wrapper.detach()
        return
    WRITERS[fmt](table, out)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file that appears at ``path`` only once complete: written under a temporary name in the
    same folder, fsynced, then renamed over ``path``. Any failure, Ctrl-C included, removes it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # as any new file: mkstemp's 0600 is for secrets
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
