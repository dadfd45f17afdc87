"""The final form of the columns schema drift adds (fields the schema does not know).

While a snapshot is written, such a field is staged as each value's JSON text: exact whatever the
values turn out to be, and identical after a resume. Once every page is in, and before anything is
published, each column takes the most natural form that holds *all* its values exactly, decided
from all of them at once (so a later page can never contradict an earlier choice):

- only JSON strings: ``string``, the unescaped value;
- only JSON numbers: ``decimal128(38, s)``, ``s`` the most decimals any value has, if every value
  then fits 38 digits; otherwise ``json``;
- only booleans: ``bool``; only objects or arrays: ``json``;
- anything mixed: ``json``, the exact JSON text of each value, and the manifest says why.

TraderEvolution report cells are pre-formatted text (``DriftRules.text_cells``): a cell that reads
as a number counts as one, and the stream's null tokens (``"N/A"``) as nulls, so a column of
numbers becomes a decimal; cells that are not all numbers become a ``string`` column of their text.

Part files that hold a drift column are spooled in the staging area as they are written; the
final files are written from them once the decision is made. The spooled files are never changed,
so a run killed while rewriting decides the same again and rewrites from the same files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import dictionary_columns
from .storage import Storage, Upload

STRING, BOOL, JSON = "string", "bool", "json"
MAX_PRECISION = 38
_DECIMAL_FORM = re.compile(r"decimal128\(38, (\d+)\)")
_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")  # how a report cell writes a number
_decode_text = msgspec.json.Decoder(str)


@dataclass(frozen=True)
class DriftRules:
    """How a stream's drift values are read."""

    text_cells: bool = False  # report cells: numbers may arrive as text, null tokens mean null
    null_tokens: frozenset[str] = frozenset()


def decimal_form(scale: int) -> str:
    return str(pa.decimal128(MAX_PRECISION, scale))


def arrow_type(form: str) -> pa.DataType:
    if form == BOOL:
        return pa.bool_()
    match = _DECIMAL_FORM.fullmatch(form)
    if match:
        return pa.decimal128(MAX_PRECISION, int(match.group(1)))
    return pa.string()


@dataclass
class Decision:
    """Per drift column: its form, why it fell back to JSON text, and null tokens it turned to null."""

    types: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)
    null_tokens: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {"types": self.types, "fallbacks": self.fallbacks, "null_tokens": self.null_tokens}, sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Decision:
        raw = json.loads(data)
        return cls(dict(raw["types"]), dict(raw["fallbacks"]), dict(raw["null_tokens"]))

    def apply(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with each decided column in its final type."""
        for name, form in self.types.items():
            index = schema.get_field_index(name)
            if index >= 0:
                schema = schema.set(index, schema.field(index).with_type(arrow_type(form)))
        return schema


@dataclass
class _Seen:
    """What one column's values were: their kinds, and how many digits its numbers need."""

    kinds: set[str] = field(default_factory=set)  # string, number, bool, json
    scale: int = 0  # most digits after the point
    integer_digits: int = 0  # most digits before it
    null_tokens: int = 0


class DriftTyper:
    """Observes the staged JSON text of drift columns, batch by batch; ``decide()`` gives their forms.

    It only keeps a few counters per column, and only looks at each distinct value once.
    """

    def __init__(self, rules: DriftRules = DriftRules()) -> None:
        self.rules = rules
        self._seen: dict[str, _Seen] = {}

    def observe(self, name: str, raw: pa.Array | pa.ChunkedArray) -> None:
        seen = self._seen.setdefault(name, _Seen())
        counts = pc.value_counts(raw.drop_null())
        for text, count in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
            kind, number = _classify(text, self.rules)
            if kind == "null":
                seen.null_tokens += count
                continue
            seen.kinds.add(kind)
            if number is not None:
                scale, integer_digits = _digits(number)
                seen.scale = max(seen.scale, scale)
                seen.integer_digits = max(seen.integer_digits, integer_digits)

    def decide(self) -> Decision:
        decision = Decision()
        for name in sorted(self._seen):
            form, why = self._form(self._seen[name])
            decision.types[name] = form
            if why:
                decision.fallbacks[name] = why
            if form not in (STRING, JSON, BOOL) and self._seen[name].null_tokens:
                decision.null_tokens[name] = self._seen[name].null_tokens
        return decision

    def _form(self, seen: _Seen) -> tuple[str, str | None]:
        kinds = seen.kinds
        digits = seen.integer_digits + seen.scale
        if kinds == {"number"}:
            if digits <= MAX_PRECISION:
                return decimal_form(seen.scale), None
            why = (f"numbers need {seen.integer_digits} digits before the point and {seen.scale} after it, "
                   f"more than decimal128's {MAX_PRECISION}")
            return (STRING if self.rules.text_cells else JSON), why
        if kinds <= {STRING} or kinds == {BOOL} or kinds == {JSON}:
            return (next(iter(kinds)) if kinds else STRING), None
        if self.rules.text_cells and kinds == {STRING, "number"}:
            return STRING, "cells mix numbers and text"
        return JSON, "values mix " + ", ".join(sorted("object/array" if k == JSON else k for k in kinds))


def _classify(text: str, rules: DriftRules) -> tuple[str, Decimal | None]:
    """The kind of one staged JSON text, and its number if it is one."""
    first = text[0]
    if first == '"':
        if rules.text_cells:
            cell = _decode_text.decode(text).strip()
            if cell in rules.null_tokens:
                return "null", None
            if _NUMBER_TEXT.fullmatch(cell):
                return "number", Decimal(cell)
        return STRING, None
    if first in "{[":
        return JSON, None
    if text in ("true", "false"):
        return BOOL, None
    try:
        return "number", Decimal(text)
    except InvalidOperation:  # not written by the staging encoder: keep it as text
        return JSON, None


def _digits(number: Decimal) -> tuple[int, int]:
    """(digits after the point, digits before it) that ``number`` needs as written: 50.250 -> (3, 2)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # JSON has no NaN or infinity
    if not any(digits):
        return max(0, -exponent), 0
    return max(0, -exponent), max(0, len(digits) + exponent)


# --------------------------------------------------------------------------- conversion


def finalize(table: pa.Table, decision: Decision, rules: DriftRules = DriftRules()) -> pa.Table:
    """``table`` with each decided column converted from its staged JSON text to its final form."""
    for name, form in decision.types.items():
        index = table.schema.get_field_index(name)
        if index < 0 or form == JSON or not pa.types.is_string(table.schema.field(index).type):
            continue
        column = table.column(index)
        target = arrow_type(form)
        if form == BOOL:
            converted: pa.ChunkedArray | pa.Array = pc.equal(column, "true")
        else:
            # each distinct text converted once, then spread over the rows
            distinct = pc.unique(column)
            values = [None if t is None else _convert(t, form, rules) for t in distinct.to_pylist()]
            converted = pc.take(pa.array(values, target), pc.index_in(column, value_set=distinct))
        table = table.set_column(index, pa.field(name, target), converted)
    return table


def _convert(text: str, form: str, rules: DriftRules) -> Any:
    if text[0] == '"':
        cell = _decode_text.decode(text)
        if form == STRING:
            return cell
        cell = cell.strip()  # a decimal form means every text cell was a number or a null token
        return None if cell in rules.null_tokens else Decimal(cell)
    if form == STRING:
        return text  # a number among report cells: its text as served
    return Decimal(text)


# --------------------------------------------------------------------------- part files


def decide(storage: Storage, keys: Sequence[str], declared: Iterable[str],
           rules: DriftRules = DriftRules()) -> tuple[Decision, pa.Schema]:
    """The decision for the drift columns of one dataset's spooled part files (every file that
    holds one), and the union of their staged schemas. The spooled files are never changed, so a
    run killed while rewriting decides the same again."""
    known = frozenset(declared)
    typer = DriftTyper(rules)
    schemas = []
    for key in keys:
        with storage.open_read(key) as handle:
            source = pq.ParquetFile(handle)
            schemas.append(source.schema_arrow)
            drift = [name for name in source.schema_arrow.names if name not in known]
            table = source.read(columns=drift)
        for name in drift:
            typer.observe(name, table.column(name))
    return typer.decide(), pa.unify_schemas(schemas)


def rewrite_part(storage: Storage, key: str, upload: Upload, decision: Decision, rules: DriftRules,
                 compression: str) -> None:
    """The spooled part file ``key`` with its drift columns in their final form, row group by row
    group (bounded memory), into ``upload`` (the part file's place in the staged partition)."""
    with storage.open_read(key) as handle:
        source = pq.ParquetFile(handle)
        schema = decision.apply(source.schema_arrow)
        options = {"compression": compression, "use_dictionary": dictionary_columns(schema), "write_statistics": True}
        with pq.ParquetWriter(upload.target, schema, **options) as writer:
            for group in range(source.num_row_groups):
                table = finalize(source.read_row_group(group), decision, rules)
                writer.write_table(table, row_group_size=table.num_rows)
