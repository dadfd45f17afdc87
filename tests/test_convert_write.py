"""Unit checks of the converter and the Parquet writer that the export tests do not isolate."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.errors import DataError
from exporter.schema import PageConverter, empty_table
from exporter.sink import DatasetWriter, WriterSettings
from exporter.sources.tradesync import ACCOUNT
from exporter.storage.local import LocalStorage

RECORDS = [
    b'{"id":1,"currency":"USD","balance":10.25,"created_at":"2025-01-01T00:00:00Z"}',
    b'{"id":2,"currency":"USD","balance":99999999999.99,"created_at":"2025-01-02T00:00:00Z"}',
]


def test_walked_ids_must_match_the_parsed_id_column() -> None:
    converter = PageConverter(ACCOUNT)
    table = converter.from_json_objects(RECORDS).table
    converter.check_ids(table, [1, 2])  # agrees: nothing raised
    with pytest.raises(DataError, match="differ"):
        converter.check_ids(table, [1, 3])


def test_text_columns_are_dictionary_encoded_and_numbers_are_not(tmp_path: Path) -> None:
    table = PageConverter(ACCOUNT).from_json_objects(RECORDS * 50).table
    writer = DatasetWriter(LocalStorage(tmp_path), "part", table.schema, WriterSettings(row_group_rows=1000))
    writer.write(table)
    writer.close()
    (part,) = (tmp_path / "part").glob("*.parquet")
    meta = pq.read_metadata(part).row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["currency"]
    assert "RLE_DICTIONARY" not in encodings["balance"]
    assert "RLE_DICTIONARY" not in encodings["id"]
    back = pq.read_table(part)
    assert back.column("balance").to_pylist()[:2] == table.column("balance").to_pylist()[:2]


def test_empty_table_has_the_schema_and_no_rows() -> None:
    schema = ACCOUNT.arrow_schema()
    table = empty_table(schema)
    assert table.schema == schema and table.num_rows == 0
    assert isinstance(table, pa.Table)
