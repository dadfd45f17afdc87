"""Explicit Arrow schemas and the conversion of API records into typed Arrow tables.

Types are declared, never inferred from the first rows: money and lots are ``decimal128(38, 10)``
built from the JSON text (never through a binary float), timestamps ``timestamp[us, tz=UTC]``,
ids ``int64``. Two routes produce identical tables:

- the fast route hands the page's raw JSON objects to Arrow's C++ JSON reader with the explicit
  schema (exact decimals straight from the text, no Python object per value);
- the careful route, taken when the fast one refuses a page (a value of an unexpected type, a
  field the schema does not know), decodes the page with ``Decimal`` numbers and converts value by
  value: a value that cannot be converted becomes null and its whole record is kept as a reject.

Unknown fields are never dropped silently: they become nullable string columns holding the
value's JSON text (``schema_drift = "evolve"``; drift.py gives them their final type once the
dataset is complete) or fail the run (``"strict"``). Fields that look like credentials are
withheld, whatever the mode, and named in the manifest.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .errors import DataError, SchemaDriftError

DECIMAL = pa.decimal128(38, 10)
TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "str": pa.string(),
    "decimal": DECIMAL,
    "timestamp": TIMESTAMP,
    "date": pa.date32(),
    "bool": pa.bool_(),
    "float": pa.float64(),
}
_DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL.scale)
_DECIMAL_MAX = Decimal(10) ** (DECIMAL.precision - DECIMAL.scale)
# quantize() fails when its result needs more digits than the context holds: Python's default
# context holds 28, the column 38 (26 integer digits and 10 decimals would be refused otherwise)
_DECIMAL_CONTEXT = Context(prec=DECIMAL.precision)

SECRET_PATTERN = re.compile(r"pass(word|wd)?|secret|token|api_?key|private_?key", re.IGNORECASE)
DEFAULT_NULL_TOKENS = frozenset({"N/A", "n/a", "NA", "-", ""})

# Python types that Arrow converts to each kind without loss; anything else goes value by value
# (pa.array would silently truncate Decimal("3.5") into an int64 column).
_VECTOR_TYPES: dict[str, set[type]] = {
    "int": {int, type(None)},
    "decimal": {int, Decimal, type(None)},
    "str": {str, type(None)},
    "bool": {bool, type(None)},
    "float": {float, int, type(None)},
}

_json_encoder = msgspec.json.Encoder(decimal_format="number")
_exact_decoder = msgspec.json.Decoder(list[dict[str, Any]], float_hook=Decimal)


@dataclass(frozen=True)
class Column:
    """One typed column; ``key`` is the API field it comes from (defaults to ``name``)."""

    name: str
    kind: str
    key: str | None = None
    fmt: str | None = None  # strptime format for text timestamps/dates (TraderEvolution reports)
    zone: tzinfo | None = None  # the zone text timestamps without an offset are read in (None: UTC)

    @property
    def source_key(self) -> str:
        return self.key or self.name

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]


@dataclass(frozen=True)
class RecordSchema:
    """The fields of one kind of API record, in output order."""

    name: str
    columns: tuple[Column, ...]
    secret_fields: frozenset[str] = frozenset()

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def source_schema(self) -> pa.Schema:
        """The schema under the API's own field names (what the JSON reader is given)."""
        return pa.schema([pa.field(c.source_key, c.arrow_type) for c in self.columns])

    @property
    def known_keys(self) -> frozenset[str]:
        return frozenset(c.source_key for c in self.columns)


def columns(spec: str) -> tuple[Column, ...]:
    """Compact declaration: ``"id:int created_at:timestamp balance:decimal"``."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        if kind not in ARROW_TYPES:
            raise ValueError(f"unknown column kind {kind!r} for {name!r}")
        out.append(Column(name, kind))
    return tuple(out)


@dataclass
class Reject:
    """A record with at least one value that could not be converted; it is kept whole.

    ``problems`` maps each failed column to the reason; those columns are null in the row.
    """

    record: dict[str, Any]
    problems: dict[str, str] = field(default_factory=dict)


@dataclass
class Converted:
    """One page as a typed table, plus what the manifest must know about it."""

    table: pa.Table
    withheld_fields: set[str] = field(default_factory=set)
    rejects: list[Reject] = field(default_factory=list)
    null_tokens: Counter = field(default_factory=Counter)


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table with no rows. Not ``Schema.empty_table()`` or ``pa.table()``: both import pandas
    (about 50 MB of resident memory and a heap the cyclic GC then walks all run long)."""
    return pa.Table.from_batches([], schema=schema)


def encode_json(value: Any) -> bytes:
    """JSON with ``Decimal`` written as a number, exactly as the API served it."""
    return _json_encoder.encode(value)


# a number (or numeric string) with an exponent, or more than 28 digits in a row (RE2 syntax)
_RISKY_NUMBER = r'[":,\[\s][-+]?[0-9.]*[0-9][eE]|[0-9]{' + str(DECIMAL.precision - DECIMAL.scale + 1) + "}"


def arrow_may_misread_decimals(payload: bytes) -> bool:
    """True if ``payload`` may hold a number Arrow's JSON reader stores wrongly as decimal128(38, 10).

    The reader rescales a number to 10 decimals without an overflow check, so one with more than
    28 integer digits, or with an exponent, can come out as a wrong value in range
    (``1000000000000000000000000000000`` and ``3e30`` both become
    13181135929278455956213638447.87…, arrow 26) instead of an error. Such pages go value by
    value. About 1 ms per MB, outside the GIL; a string that merely looks like such a number only
    costs the slower route, a digit-e-digit inside a word (``"sim-0a1e3b"``) not even that.

    >>> arrow_may_misread_decimals(b'{"a":"sim-0a1e3b","b":1.25}'), arrow_may_misread_decimals(b'{"b": -2.5E-2}')
    (False, True)
    """
    found = pc.match_substring_regex(pa.array([payload], pa.large_binary()), _RISKY_NUMBER)
    return bool(found[0].as_py())


def is_secret_field(name: str) -> bool:
    return bool(SECRET_PATTERN.search(name))


class PageConverter:
    """Converts pages of records of one :class:`RecordSchema` into Arrow tables."""

    def __init__(
        self,
        schema: RecordSchema,
        *,
        schema_drift: str = "evolve",
        null_tokens: Iterable[str] = DEFAULT_NULL_TOKENS,
    ) -> None:
        if schema_drift not in ("evolve", "strict"):
            raise ValueError("schema_drift must be 'evolve' or 'strict'")
        self.schema = schema
        self.schema_drift = schema_drift
        self.null_tokens = frozenset(null_tokens)
        self._target = schema.arrow_schema()
        self._source_schema = schema.source_schema()
        self._known = schema.known_keys
        # known secret fields are declared (as text) so the reader need not infer their type;
        # they are dropped right after parsing, like any field that looks like a credential
        self._read_schema = self._source_schema
        for secret in sorted(schema.secret_fields - self._known):
            self._read_schema = self._read_schema.append(pa.field(secret, pa.string()))
        self._parse_options = pa_json.ParseOptions(
            explicit_schema=self._read_schema, unexpected_field_behavior="infer"
        )
        self._fast_ok = all(c.fmt is None for c in schema.columns)
        self._has_decimals = any(c.kind == "decimal" for c in schema.columns)
        self._id_column = next((c.name for c in schema.columns if c.source_key == "id"), None)

    # -- fast route -------------------------------------------------------------------------
    def from_json_objects(self, objects: Sequence[Any]) -> Converted:
        """Convert raw JSON objects (one ``bytes`` per record) exactly, falling back when needed."""
        if not objects:
            return Converted(empty_table(self._target))
        if self._fast_ok:
            table = self._read_fast(objects)
            if table is not None:
                extra = [n for n in table.column_names if n not in self._known]
                withheld = {n for n in extra if self._is_withheld(n) and table.column(n).null_count < len(table)}
                if all(self._is_withheld(n) for n in extra):
                    table = table.select(list(self._source_schema.names))
                    table = table.rename_columns(self._target.names)
                    return Converted(table, withheld_fields=withheld)
        try:
            records = _exact_decoder.decode(b"[" + b",".join(objects) + b"]")
        except msgspec.DecodeError as exc:
            raise DataError(f"{self.schema.name}: records are not valid JSON objects: {exc}") from exc
        converted = self.from_records(records)
        return converted

    def _read_fast(self, objects: Sequence[Any]) -> pa.Table | None:
        payload = b"\n".join(objects)
        if self._has_decimals and arrow_may_misread_decimals(payload):
            return None  # value by value instead: see arrow_may_misread_decimals
        options = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 20, len(payload) + 1))
        parse = self._parse_options
        if payload.count(b"\n") != len(objects) - 1:
            # pretty-printed objects: let the reader find object boundaries itself
            parse = pa_json.ParseOptions(
                explicit_schema=self._read_schema,
                unexpected_field_behavior="infer",
                newlines_in_values=True,
            )
        try:
            table = pa_json.read_json(io.BytesIO(payload), read_options=options, parse_options=parse)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if table.num_rows != len(objects):
            return None
        return table

    def check_ids(self, table: pa.Table, ids: Sequence[int]) -> None:
        """Fail if the ids a walk paged by differ from the id column parsed from the same records."""
        name = self._id_column
        if name is None or name not in table.column_names:
            return
        if table.column(name).to_pylist() != list(ids):
            raise DataError(f"{self.schema.name}: the records' ids differ from the ids the page was walked by")

    def _is_withheld(self, name: str) -> bool:
        return name in self.schema.secret_fields or is_secret_field(name)

    # -- careful route ----------------------------------------------------------------------
    def from_records(self, records: Sequence[dict[str, Any]]) -> Converted:
        """Value-by-value conversion: bad values become null and their record a :class:`Reject`."""
        result = Converted(empty_table(self._target))
        rejected_rows: dict[int, Reject] = {}
        arrays: list[pa.Array] = []
        for column in self.schema.columns:
            key = column.source_key
            values = [r.get(key) if isinstance(r, dict) else None for r in records]
            arrays.append(self._convert_column(column, values, records, rejected_rows, result))
        names = list(self._target.names)
        unknown = self._unknown_columns(records, result)
        for name, values in unknown.items():
            names.append(name)
            arrays.append(pa.array(values, pa.string()))
        result.table = pa.Table.from_arrays(arrays, names=names)
        result.rejects = [rejected_rows[i] for i in sorted(rejected_rows)]
        return result

    def _convert_column(
        self,
        column: Column,
        values: list[Any],
        records: Sequence[Any],
        rejected_rows: dict[int, Reject],
        result: Converted,
    ) -> pa.Array:
        target = column.arrow_type
        if column.fmt is None and {type(v) for v in values} <= _VECTOR_TYPES.get(column.kind, set()):
            try:
                return pa.array(values, target)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                pass  # some value is off (too many decimals, out of range): one by one below
        converted: list[Any] = []
        for index, value in enumerate(values):
            if value is None:
                converted.append(None)
                continue
            if isinstance(value, str) and value.strip() in self.null_tokens and column.kind != "str":
                result.null_tokens[column.name] += 1
                converted.append(None)
                continue
            try:
                converted.append(convert_value(column, value))
            except (ValueError, TypeError, ArithmeticError) as exc:
                converted.append(None)
                if index not in rejected_rows:
                    record = records[index] if isinstance(records[index], dict) else {"_": records[index]}
                    rejected_rows[index] = Reject(self.redact(record))
                rejected_rows[index].problems[column.name] = f"{column.kind}: {exc}"
        return pa.array(converted, target)

    def _unknown_columns(self, records: Sequence[Any], result: Converted) -> dict[str, list[str | None]]:
        names: dict[str, None] = {}
        for record in records:
            if isinstance(record, dict):
                for key in record:
                    if key not in self._known and key not in names:
                        names[key] = None
        out: dict[str, list[str | None]] = {}
        for key in names:
            if self._is_withheld(key):
                result.withheld_fields.add(key)
                continue
            column = []
            for record in records:
                value = record.get(key) if isinstance(record, dict) else None
                column.append(None if value is None else encode_json(value).decode())
            out[key] = column
        if out and self.schema_drift == "strict":
            raise SchemaDriftError(
                f"{self.schema.name}: the API sent fields the schema does not know: "
                f"{', '.join(sorted(out))} (schema_drift = \"strict\")"
            )
        return out

    def redact(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record without its credential fields, for rejects files and messages."""
        return {k: v for k, v in record.items() if not self._is_withheld(k)}


def convert_value(column: Column, value: Any) -> Any:
    """Convert one JSON value to the Python value Arrow stores for ``column``; raise if it cannot."""
    kind = column.kind
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise TypeError(f"expected text, got {type(value).__name__}")
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)
    if kind == "int":
        return _to_int(value)
    if kind == "decimal":
        return _to_decimal(value)
    if kind == "timestamp":
        return parse_timestamp(value, column.fmt, column.zone)
    if kind == "date":
        return _to_date(value, column.fmt)
    if kind == "bool":
        return _to_bool(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return float(value)
    raise ValueError(f"unknown kind {kind}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("expected a number, got a boolean")
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {value!r}") from exc
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    if number.copy_abs() >= _DECIMAL_MAX:  # abs() would round to the 28 digits of the default context
        raise ValueError(f"{value!r} does not fit decimal128({DECIMAL.precision}, {DECIMAL.scale})")
    if number != number.quantize(_DECIMAL_QUANTUM, rounding="ROUND_DOWN", context=_DECIMAL_CONTEXT):
        raise ValueError(f"{value!r} has more than {DECIMAL.scale} decimals")
    return number


def parse_timestamp(value: Any, fmt: str | None = None, zone: tzinfo | None = None) -> datetime:
    """UTC datetime from ISO-8601 (``Z``, offsets, a space, fractions), epoch milliseconds (an
    integer), or text in ``fmt`` (a ``strptime`` format). Text without an offset is a wall-clock
    time in ``zone`` (UTC when None), see :func:`from_wall_clock`."""
    if isinstance(value, bool):
        raise TypeError("expected a timestamp, got a boolean")
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    if not isinstance(value, str):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    text = value.strip()
    parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    if zone is None or zone is UTC:
        return parsed.replace(tzinfo=UTC)
    return from_wall_clock(parsed, zone)


def from_wall_clock(local: datetime, zone: tzinfo) -> datetime:
    """The UTC instant a naive wall-clock time in ``zone`` stands for.

    A time the clocks pass twice (the repeated hour when daylight saving ends) is the *earlier*
    instant (``fold=0``), the same answer every run. A time the clocks skip (the hour lost when
    daylight saving starts) names no instant: ValueError, so the value is rejected, not shifted.
    """
    instant = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # zoneinfo maps a skipped time with the offset before the change; only a round trip shows it
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        raise ValueError(f"{local.isoformat(sep=' ')} does not exist in {zone} (the clocks skip it)")
    return instant


def time_zone(name: str) -> tzinfo:
    """An IANA zone by name (``UTC``, ``Europe/Nicosia``); ValueError naming it when unknown."""
    if name == "UTC":
        return UTC
    if name == "localtime":  # a file some systems ship: the machine's zone, not the server's
        raise ValueError("'localtime' is this machine's zone; name the server's zone (e.g. Europe/Nicosia)")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found, not a relative key, a folder or no TZif file
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Nicosia)") from None


def _to_date(value: Any, fmt: str | None) -> date:
    if isinstance(value, str) and fmt:
        return datetime.strptime(value.strip(), fmt).date()
    if isinstance(value, str):
        return date.fromisoformat(value.strip()[:10])
    raise TypeError(f"expected a date, got {type(value).__name__}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


_SANITIZE = re.compile(r"[^a-z0-9_]+")


def sanitize_column_names(names: Sequence[str]) -> list[str]:
    """Deterministic Parquet-safe names: lowercase, ``[a-z0-9_]``, collisions suffixed in order.

    >>> sanitize_column_names(["gi.balance", "Instrument Name", "gi_balance", ""])
    ['gi_balance', 'instrument_name', 'gi_balance_2', 'column_4']
    """
    out: list[str] = []
    used: set[str] = set()
    for index, raw in enumerate(names, start=1):
        base = _SANITIZE.sub("_", raw.strip().lower()).strip("_") or f"column_{index}"
        if base[0].isdigit():
            base = f"c_{base}"
        name = base
        suffix = 2
        while name in used:
            name = f"{base}_{suffix}"
            suffix += 1
        used.add(name)
        out.append(name)
    return out


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Text columns: codes, names, currencies repeat and shrink to a dictionary.

    Numbers, decimals and timestamps are written plain: an account's balance or a creation time
    rarely repeats, Parquet's dictionary attempt on them cost about 40% of the writer's CPU, and
    zstd still catches the values that do repeat (bench/README.md: 3.2 -> 2.0 ms per 1,000
    accounts, and files 14% smaller).
    """
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
