"""Dataset sink: streaming Parquet part files and the rejects log of one dataset, through storage.

The sink knows nothing of HTTP, nor where its partition will be published: it writes part files
to the (staged) partition the commit protocol gives it, and reports what is durable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .drift import Decision, DriftRules, decide, rewrite_part
from .schema import Converted, dictionary_columns, encode_json
from .storage import Storage, Upload, join
from .walk import Page

log = logging.getLogger("exporter.sink")

REJECTS_SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class PartFile:
    """A closed, durable part file: its name inside the partition, row count and size.

    ``upload`` is what the storage needs to publish it later (a pending multipart upload on S3).
    """

    name: str
    rows: int
    bytes: int
    upload: dict[str, Any] | None = None
    spooled: bool = False  # holds staged drift columns: kept in the spool until they are settled

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes}

    def state(self) -> dict[str, Any]:
        return self.public() | ({"upload": self.upload} if self.upload else {}) | (
            {"spooled": True} if self.spooled else {})


@dataclass(frozen=True)
class WriterSettings:
    rows_per_file: int = 1_000_000
    row_group_rows: int = 128_000
    compression: str = "zstd"


def part_number(name: str) -> int:
    """``part-00007.parquet`` and ``part-00007-<tag>.parquet`` are both part 7."""
    return int(name.split("-")[1].split(".")[0])


class DatasetWriter:
    """Streams tables of one dataset into Parquet part files, in bounded memory.

    Tables are buffered until a row group is full, written as one row group, and the file is
    finished (durable: fsynced and renamed from ``*.inprogress``, or its last part uploaded) when it
    reaches ``rows_per_file`` or at a checkpoint. ``parts`` are the files a resumed run already has;
    numbering continues after them. ``tag`` goes into every name (object storage: the run's token,
    so that a rerun never overwrites a file an earlier snapshot's manifest lists).
    A table that brings a new column (schema drift, evolve mode) closes the current file: the next
    one has the wider schema, and goes to ``spool`` (a readable place in the staging area) until the
    drift columns' final types are settled (:mod:`exporter.drift`).
    """

    def __init__(
        self,
        storage: Storage,
        partition: str,
        schema: pa.Schema,
        settings: WriterSettings,
        *,
        parts: list[PartFile] | None = None,
        tag: str = "",
        spool: str = "",
    ) -> None:
        self.storage = storage
        self.partition = partition
        self.spool = spool or partition
        self.declared = frozenset(schema.names)
        self.base_schema = schema
        self.schema = schema
        self.settings = settings
        self.tag = tag
        self.parts: list[PartFile] = list(parts or [])
        self._next_part = 1 + max((part_number(p.name) for p in self.parts), default=-1)
        self._writer: pq.ParquetWriter | None = None
        self._upload: Upload | None = None
        self._name = ""
        self._spooled = False
        self._file_rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = sum(p.rows for p in self.parts)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            self._widen(table.schema)
            return
        if self._widen(table.schema):
            self._flush_buffer()
            self._close_file()
        self._buffer.append(self._conform(table))
        self._buffered += table.num_rows
        if self._buffered >= self.settings.row_group_rows:
            self._flush_buffer()

    def _widen(self, incoming: pa.Schema) -> bool:
        """Add columns this writer has not seen yet; True if the schema grew."""
        new = [f for f in incoming if self.schema.get_field_index(f.name) < 0]
        if not new:
            return False
        for f in new:
            self.schema = self.schema.append(pa.field(f.name, f.type, nullable=True))
        return True

    def _conform(self, table: pa.Table) -> pa.Table:
        if table.schema.equals(self.schema):
            return table
        arrays = []
        for f in self.schema:
            if f.name in table.column_names:
                column = table.column(f.name)
                arrays.append(column if column.type == f.type else column.cast(f.type))
            else:
                arrays.append(pa.nulls(table.num_rows, f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _flush_buffer(self) -> None:
        if not self._buffer:
            return
        # buffered tables may predate a widening: conform each to the current schema
        table = pa.concat_tables([self._conform(t) for t in self._buffer])
        self._buffer.clear()
        self._buffered = 0
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open_file()
            room = self.settings.rows_per_file - self._file_rows
            chunk = table.slice(offset, room)
            assert self._writer is not None
            self._writer.write_table(chunk, row_group_size=self.settings.row_group_rows)
            self._file_rows += chunk.num_rows
            self.rows += chunk.num_rows
            offset += chunk.num_rows
            if self._file_rows >= self.settings.rows_per_file:
                self._close_file()

    def _open_file(self) -> None:
        suffix = f"-{self.tag}" if self.tag else ""
        self._name = f"part-{self._next_part:05d}{suffix}.parquet"
        self._next_part += 1
        self._spooled = self.spool != self.partition and any(n not in self.declared for n in self.schema.names)
        where = self.spool if self._spooled else self.partition
        self._upload = self.storage.open_upload(join(where, self._name), visible=self._spooled)
        self._writer = pq.ParquetWriter(
            self._upload.target,
            self.schema,
            compression=self.settings.compression,
            use_dictionary=dictionary_columns(self.schema),
            write_statistics=True,
        )
        self._file_rows = 0

    def _close_file(self) -> None:
        if self._writer is None or self._upload is None:
            return
        self._writer.close()
        state = self._upload.finish()
        size = int(state.pop("bytes"))
        self.parts.append(PartFile(self._name, self._file_rows, size, state or None, self._spooled))
        self._writer = None
        self._upload = None
        self._file_rows = 0

    def checkpoint(self) -> None:
        """Make everything written so far durable: flush the buffer and close the open file."""
        self._flush_buffer()
        self._close_file()

    def close(self, *, keep_empty: bool = False) -> list[PartFile]:
        """Flush and close; ``keep_empty`` writes a row-less file if nothing was written at all."""
        self.checkpoint()
        if keep_empty and not self.parts:
            self._open_file()
            self._close_file()
        return list(self.parts)

    def abort(self) -> None:
        """Drop the unfinished file (its rows were never checkpointed)."""
        self._buffer.clear()
        self._buffered = 0
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            self._writer = None
        if self._upload is not None:
            try:
                self._upload.abort()
            except Exception as exc:  # the next run prunes it
                log.debug("could not abort %s: %s", self._upload.key, exc)
            self._upload = None


class RejectsLog:
    """Rejected records as JSON lines, in segments under the staging area (object storage has no
    append): a segment is written whole when it reaches 8 MiB or at a checkpoint. The commit joins
    the segments into the partition's ``_rejects.jsonl``."""

    def __init__(self, storage: Storage, prefix: str, segments: list[str]) -> None:
        self.storage = storage
        self.prefix = prefix
        self.segments = list(segments)
        self._buffer = bytearray()
        keep = set(segments)
        # segments written after the last checkpoint: their rows are fetched (and rejected) again
        stale = [o.key for o in storage.list(prefix + "/") if o.key.rsplit("/", 1)[-1] not in keep]
        storage.delete(stale)

    def add(self, line: bytes) -> None:
        self._buffer += line
        if len(self._buffer) >= REJECTS_SEGMENT_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        name = f"rejects-{len(self.segments):05d}.jsonl"
        self.storage.write_atomic(join(self.prefix, name), bytes(self._buffer))
        self.segments.append(name)
        self._buffer.clear()


class DatasetSink:
    """Part files, rejects and manifest counters of one dataset of a run."""

    def __init__(self, key: str, storage: Storage, partition: str, rejects_prefix: str, state: dict[str, Any],
                 settings: WriterSettings, schema: pa.Schema, *, tag: str = "", spool: str = "",
                 drift_rules: DriftRules | None = None,
                 written_names: Callable[[str], tuple[str, ...]] | None = None,
                 constants: dict[str, pa.Scalar] | None = None) -> None:
        self.key = key
        # columns every row of this run carries in the files themselves (an Iceberg table's
        # partition values: its add-files step reads them from the files' statistics)
        self.constants = dict(constants or {})
        for name, value in self.constants.items():
            schema = schema.append(pa.field(name, value.type))
        # the columns a record field is written as (the dataset's projection may rename it): the
        # manifest counts under those names, the ones a reader of the Parquet files sees
        self.written_names = written_names or (lambda column: (column,))
        self.storage = storage
        self.partition = partition
        self.state = state
        self.drift_rules = drift_rules or DriftRules()
        self.drift = Decision()
        parts = [PartFile(**p) for p in state.setdefault("parts", [])]
        # what a crash left after the last checkpoint: those rows get fetched again
        storage.prune_uploads(partition, [p.state() | (p.upload or {}) for p in parts], tag)
        if spool:
            storage.prune_uploads(spool, [p.state() for p in parts if p.spooled], tag)
        self.writer = DatasetWriter(storage, partition, schema, settings, parts=parts, tag=tag, spool=spool)
        self._declared = frozenset(schema.names)
        self.unknown = Counter(state.get("unknown_fields", {}))
        self.withheld = set(state.get("withheld_fields", []))
        self.rejects = Counter(state.get("rejects", {}))
        self.rejected_rows = int(state.get("rejected_rows", 0))
        self.null_tokens = Counter(state.get("null_tokens", {}))
        self.rejects_log = RejectsLog(storage, rejects_prefix, state.get("rejects_segments", []))

    def add(self, table: pa.Table, converted: Converted, page: Page) -> None:
        for name, value in self.constants.items():
            table = table.append_column(name, pa.repeat(value, len(table)))
        self.writer.write(table)
        # columns this dataset gained from fields the schema does not know, under the name it
        # writes them (a projection may rename them, or not carry them at all: balances of
        # Tradesync), with the rows that hold a value
        for name in table.column_names:
            if name not in self._declared:
                self.unknown[name] += len(table) - table.column(name).null_count
        self.withheld.update(converted.withheld_fields)
        columns = set(table.column_names)
        for column, count in converted.null_tokens.items():
            for name in self.written_names(column):
                if name in columns:
                    self.null_tokens[name] += count
        for reject in converted.rejects:
            carried = {name for column in reject.problems for name in self.written_names(column)} & columns
            # a projection without the failed column (balances for open_trades) lost nothing
            if not carried:
                continue
            self.rejects.update(carried)
            self.rejected_rows += 1
            line = {"fetched_at": page.fetched_at.isoformat(), "problems": reject.problems, "record": reject.record}
            self.rejects_log.add(encode_json(line) + b"\n")  # numbers exactly as served

    def make_durable(self) -> dict[str, Any]:
        """Finish the open part file and write the pending rejects; return the state now true.

        Runs in a writer thread; the caller applies the returned state to the checkpoint and saves
        it together with the walk's progress, in one step, so the two never disagree.
        """
        self.writer.checkpoint()
        self.rejects_log.flush()
        return dict(
            parts=[p.state() for p in self.writer.parts],
            rejects_segments=list(self.rejects_log.segments),
            unknown_fields=dict(self.unknown),
            withheld_fields=sorted(self.withheld),
            rejects=dict(self.rejects),
            rejected_rows=self.rejected_rows,
            null_tokens=dict(self.null_tokens),
        )

    def finish(self) -> dict[str, Any]:
        """The last part file (an empty one for an empty dataset, so readers see its schema)."""
        self.writer.close(keep_empty=True)
        return self.make_durable()

    def settle_drift(self) -> Decision:
        """Once the dataset is complete: the final form of its drift columns, decided from all
        their values, and its spooled part files written in that form into the staged partition."""
        spooled = [p for p in self.writer.parts if p.spooled]
        if not spooled:
            return self.drift
        keys = [join(self.writer.spool, p.name) for p in spooled]
        self.drift, staged_schema = decide(self.storage, keys, self.writer.declared, self.drift_rules)
        self.writer.parts = [self._settle(part) if part.spooled else part for part in self.writer.parts]
        # every file's columns in the order they appeared: a resumed writer knows only those it met
        # after resuming
        self.writer.schema = self.drift.apply(pa.unify_schemas([self.writer.base_schema, staged_schema]))
        self.null_tokens.update(self.drift.null_tokens)
        return self.drift

    def _settle(self, part: PartFile) -> PartFile:
        """One spooled part file, written in its final form into the staged partition."""
        upload = self.storage.open_upload(join(self.partition, part.name))
        rewrite_part(self.storage, join(self.writer.spool, part.name), upload, self.drift, self.drift_rules,
                     self.writer.settings.compression)
        state = upload.finish()
        size = int(state.pop("bytes"))
        return PartFile(part.name, part.rows, size, state or None)

    def abort(self) -> None:
        self.writer.abort()
