"""The rule that gives a drift column its final form (exporter/drift.py), value by value.

The end-to-end tests (test_schema_drift.py, test_traderevolution_export.py) check the same over
loopback HTTP; these pin down each case of the rule and the exactness of each conversion.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pytest

from exporter.drift import Decision, DriftRules, DriftTyper, finalize
from exporter.schema import encode_json

PLAIN = DriftRules()  # Tradesync: JSON values as they are
REPORT = DriftRules(text_cells=True, null_tokens=frozenset({"N/A", "-", ""}))


def staged(values: list[object]) -> pa.Array:
    """A drift column as it is staged: each value's JSON text (what schema.py writes)."""
    return pa.array([None if v is None else encode_json(v).decode() for v in values], pa.string())


def decide(values: list[object], rules: DriftRules = PLAIN) -> Decision:
    typer = DriftTyper(rules)
    typer.observe("c", staged(values))
    return typer.decide()


CASES = [
    (["tier-1", None, 'say "hi"'], "string", None),
    ([Decimal("1"), Decimal("2.50"), Decimal("-0.0"), Decimal("1.5E+3"), 7], "decimal128(38, 2)", None),
    ([Decimal("12345678901234567890123456.12")], "decimal128(38, 2)", None),
    ([Decimal("1E-38")], "decimal128(38, 38)", None),  # 38 digits after the point: still fits
    ([Decimal("1E-39")], "json", "more than decimal128's 38"),
    ([10**28, Decimal("0.0000000001")], "json", "29 digits before the point and 10 after"),
    ([True, False, None], "bool", None),
    ([{"a": 1}, [1, "x"]], "json", None),
    ([None, None], "string", None),
    ([1, "1"], "json", "values mix number, string"),
    ([True, {"a": 1}], "json", "values mix bool, object/array"),
]


@pytest.mark.parametrize(("values", "form", "why"), CASES)
def test_the_form_follows_every_value(values: list[object], form: str, why: str | None) -> None:
    decision = decide(values)
    assert decision.types == {"c": form}
    if why is None:
        assert decision.fallbacks == {}
    else:
        assert why in decision.fallbacks["c"]


REPORT_CASES = [
    (["12.25", Decimal("0.5"), "N/A", None, " 7 "], "decimal128(38, 2)", None, 1),
    (["12.25", "band 3", Decimal("0.5")], "string", "cells mix numbers and text", 0),
    (["N/A", "-"], "string", None, 0),  # nothing numeric: the tokens stay text
    ([True, "1"], "json", "values mix bool, number", 0),
]


@pytest.mark.parametrize(("values", "form", "why", "tokens"), REPORT_CASES)
def test_report_cells_that_read_as_numbers_are_numbers(values: list[object], form: str, why: str | None,
                                                       tokens: int) -> None:
    decision = decide(values, REPORT)
    assert decision.types == {"c": form}
    assert decision.fallbacks.get("c") == why
    assert decision.null_tokens.get("c", 0) == tokens


def test_a_later_batch_that_breaks_the_type_makes_the_column_text() -> None:
    typer = DriftTyper()
    typer.observe("c", staged([Decimal("1.5"), 2]))
    assert typer.decide().types == {"c": "decimal128(38, 1)"}
    typer.observe("c", staged(["x"]))
    assert typer.decide().types == {"c": "json"}


def test_each_form_holds_the_exact_value() -> None:
    strings = ["tier-1", 'Stufe "Gold" \u2013 \u00fc', "back\\slash", "line\nbreak\ttab", "\U0001f680\u2028",
               "\x01", "", "null", "12.50", None]
    numbers = [Decimal("12345678901234567890123456.125"), Decimal("-0.0"), Decimal("1.5E+3"), Decimal("-0.025"),
               None, 7, 7, 0, Decimal("0.100"), -1]
    mixed = [1, "1", {"a": [1, "b"]}, None, Decimal("2.50"), True, [], "", 0, "x"]
    bools = [True, None, False] * 3 + [True]
    table = pa.table({"s": staged(strings), "n": staged(numbers), "b": staged(bools),
                      "m": staged(mixed), "o": staged(list(range(10)))})
    typer = DriftTyper()
    for name in ("s", "n", "b", "m"):  # "o" is not a drift column: it stays as it is
        typer.observe(name, table.column(name))
    decision = typer.decide()
    assert decision.types == {"s": "string", "n": "decimal128(38, 3)", "b": "bool", "m": "json"}
    out = finalize(table, decision)
    assert out.schema == decision.apply(table.schema)
    assert out.column("s").to_pylist() == strings
    assert out.column("n").to_pylist() == [None if v is None else Decimal(v) for v in numbers]
    assert out.column("b").to_pylist() == bools
    # mixed: each value's JSON text, digits as served (2.50 keeps its zero)
    assert out.column("m").to_pylist() == ["1", '"1"', '{"a":[1,"b"]}', None, "2.50", "true", "[]", '""', "0",
                                           '"x"']
    assert out.column("o").to_pylist() == table.column("o").to_pylist()


def test_report_cells_become_decimals_and_null_tokens_nulls() -> None:
    cells = ["12.25", Decimal("0.5"), "N/A", None, " 7 ", 0]
    table = pa.table({"c": staged(cells)})
    decision = decide(cells, REPORT)
    out = finalize(table, decision, REPORT)
    assert out.column("c").type == pa.decimal128(38, 2)
    assert out.column("c").to_pylist() == [Decimal("12.25"), Decimal("0.5"), None, None, Decimal(7), Decimal(0)]
    labels = ["12.25", "band 3", Decimal("0.50"), "N/A"]
    out = finalize(pa.table({"c": staged(labels)}), decide(labels, REPORT), REPORT)
    assert out.column("c").to_pylist() == ["12.25", "band 3", "0.50", "N/A"]  # each cell's text


def test_the_decision_survives_its_json_form() -> None:
    decision = decide(["12.25", "N/A", Decimal("1")], REPORT)
    assert Decision.from_json(decision.to_json()) == decision
    assert json.loads(decision.to_json())["types"] == {"c": "decimal128(38, 2)"}
