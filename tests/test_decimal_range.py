"""The whole range of ``decimal128(38, 10)`` on both conversion routes.

Each served text goes through the fast route (Arrow's JSON reader, ``from_json_objects``) and the
careful route (value by value, ``from_records``, as taken when a page holds an unknown field or an
unconvertible value); both must store the same value, or reject the record with the same reason.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from exporter.schema import PageConverter, arrow_may_misread_decimals
from exporter.sources.tradesync import ACCOUNT

LARGEST = "9999999999999999999999999999.9999999999"  # 28 integer digits and 10 decimals: 38
FITS = {
    LARGEST: Decimal(LARGEST),
    "-" + LARGEST: Decimal("-" + LARGEST),
    "12345678901234567890123456.12": Decimal("12345678901234567890123456.12"),  # 28 digits in all
    "0.0000000001": Decimal("1E-10"),
    "-0.0000000001": Decimal("-1E-10"),
    "1.10000000000": Decimal("1.1"),  # an 11th decimal that is a zero loses nothing
    "1.5e3": Decimal(1500),
    "-2.5E-2": Decimal("-0.025"),
    "1E+27": Decimal(10) ** 27,
    "-0.0": Decimal(0),
    '"123.45"': Decimal("123.45"),  # numeric strings
    '" 7.50 "': Decimal("7.5"),
    '"-2.5E-2"': Decimal("-0.025"),
}
TOO_BIG = "does not fit decimal128(38, 10)"
TOO_PRECISE = "has more than 10 decimals"
REJECTED = {
    "99999999999999999999999999999.9999999999": TOO_BIG,  # one integer digit more
    "-10000000000000000000000000000": TOO_BIG,
    "0.00000000001": TOO_PRECISE,  # one decimal more
    "9999999999999999999999999999.99999999991": TOO_PRECISE,
    "1e28": TOO_BIG,
    # Arrow's reader alone stores these two as 5515171095741521522303454600.4397391872 and
    # 13181135929278455956213638447.8721867776 (arrow 26)
    "3e30": TOO_BIG,
    "1000000000000000000000000000000": TOO_BIG,
    '"3E+30"': TOO_BIG,
    "1e-11": TOO_PRECISE,
}
_decoder = msgspec.json.Decoder(list[dict[str, Any]], float_hook=Decimal)


def record(text: str, account_id: int = 1) -> bytes:
    return (f'{{"id":{account_id},"currency":"USD","balance":{text},'
            f'"created_at":"2025-01-01T00:00:00Z"}}').encode()


def both_routes(objects: list[bytes]) -> tuple[Any, Any]:
    converter = PageConverter(ACCOUNT)
    fast = converter.from_json_objects(objects)
    careful = converter.from_records(_decoder.decode(b"[" + b",".join(objects) + b"]"))
    return fast, careful


@pytest.mark.parametrize("text", sorted(FITS))
def test_a_value_that_fits_is_stored_exactly_by_both_routes(text: str) -> None:
    for converted in both_routes([record(text)]):
        assert converted.rejects == []
        assert converted.table.column("balance").to_pylist() == [FITS[text]]


@pytest.mark.parametrize("text", sorted(REJECTED))
def test_a_value_that_does_not_fit_is_rejected_with_the_reason_by_both_routes(text: str) -> None:
    for converted in both_routes([record(text)]):
        assert converted.table.column("balance").to_pylist() == [None]
        (reject,) = converted.rejects
        reason = reject.problems["balance"]
        assert reason.startswith("decimal: ") and reason.endswith(REJECTED[text]), reason
        assert str(reject.record["balance"]) == str(_decoder.decode(b"[" + record(text) + b"]")[0]["balance"])


def test_a_page_of_edge_values_takes_the_fast_route_and_agrees_with_the_careful_one() -> None:
    # exponents are left to the careful route, and Arrow refuses a number string with spaces
    plain = [t for t in FITS if "e" not in t.lower() and " " not in t]
    objects = [record(text, i) for i, text in enumerate(plain, start=1)]
    converter = PageConverter(ACCOUNT)
    fast = converter._read_fast(objects)
    assert fast is not None, "Arrow's reader refused the page: the fast route was not tested"
    assert fast.column("balance").to_pylist() == [FITS[t] for t in plain]
    _, careful = both_routes(objects)
    assert careful.table.column("balance").to_pylist() == fast.column("balance").to_pylist()


def test_pages_with_an_exponent_or_29_integer_digits_skip_arrows_reader() -> None:
    converter = PageConverter(ACCOUNT)
    for text in ("1.5e3", "-2.5E-2", "3e30", '"3E+30"', "1" + "0" * 28, '"-1' + "0" * 30 + '"'):
        assert converter._read_fast([record("1"), record(text, 2)]) is None, text
    # digits around an "e" inside words are not numbers: the page still takes the fast route
    objects = [record("1").replace(b'"USD"', b'"sim-0a1e3b"'), record('"12.5"', 2)]
    assert not arrow_may_misread_decimals(b"\n".join(objects))
    assert converter._read_fast(objects) is not None
