"""The text forms ``exporter pull`` writes: exact decimals, ISO times, CSV quoting, whole files."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from exporter.formats import FormatError, choose_format, decimal_text, replacing, timestamp_text, write_csv


def test_decimals_are_their_shortest_exact_digits_never_an_exponent() -> None:
    values = ["0", "0.0000000001", "-7", "100000.15", "99999999999.99", "-0.0000005", "1234567890123456789012345678",
              "123456789012345678901234567.1234567891", "0.1", None]
    array = pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(38, 10))
    assert decimal_text(array).to_pylist() == values
    cents = pa.array([Decimal("50.25"), Decimal("0"), Decimal("100"), Decimal("-0.5")], pa.decimal128(38, 2))
    assert decimal_text(cents).to_pylist() == ["50.25", "0", "100", "-0.5"]


def test_times_are_iso_utc_with_microseconds_only_where_there_are_some() -> None:
    moments = [datetime(2025, 1, 31, 12, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, 59, 120, tzinfo=UTC), None]
    array = pa.array(moments, pa.timestamp("us", tz="UTC"))
    assert timestamp_text(array).to_pylist() == ["2025-01-31T12:00:00Z", "2024-02-29T23:59:59.000120Z", None]


def test_csv_quotes_only_what_must_be_and_keeps_null_apart_from_empty(tmp_path: Path) -> None:
    texts = ["plain", "a,b", 'say "hi"', "two\nlines", " padded", "", None]
    table = pa.table({"id": list(range(len(texts))), "text": texts,
                      "money": [Decimal("1.50")] * len(texts)},
                     schema=pa.schema([("id", pa.int64()), ("text", pa.string()), ("money", pa.decimal128(38, 10))]))
    out = io.BytesIO()
    write_csv(table, out)
    assert out.getvalue().decode() == (
        'id,text,money\n0,plain,1.5\n1,"a,b",1.5\n2,"say ""hi""",1.5\n3,"two\nlines",1.5\n'
        '4," padded",1.5\n5,"",1.5\n6,,1.5\n'
    )
    path = tmp_path / "t.csv"
    path.write_bytes(out.getvalue())
    read = duckdb.read_csv(str(path), all_varchar=True, allow_quoted_nulls=False, header=True)
    assert [row[1] for row in read.fetchall()] == texts  # DuckDB reads back every value, null included


def test_formats_follow_the_file_name_or_the_terminal() -> None:
    assert choose_format(None, None, True) == "table"
    assert choose_format(None, "-", False) == "csv"
    assert choose_format(None, "x/trades.PARQUET", True) == "parquet"
    assert choose_format(None, "t.ndjson", False) == "jsonl"
    assert choose_format("csv", "t.parquet", False) == "csv"  # said outright: as said
    with pytest.raises(FormatError, match="cannot tell the format"):
        choose_format(None, "t.txt", False)
    with pytest.raises(FormatError, match="Parquet is binary"):
        choose_format("parquet", None, True)


def test_a_file_appears_only_once_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("before\n")
    with pytest.raises(KeyboardInterrupt), replacing(target) as out:
        out.write(b"half of it")
        raise KeyboardInterrupt
    assert target.read_text() == "before\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with replacing(target) as out:
        out.write(b"all of it\n")
    assert target.read_text() == "all of it\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
