"""Units and formats of the TraderEvolution data: exact money and decimal arithmetic, the JSON
encoder, and report time cells in a Java/moment-style pattern and a time zone."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
CROSS_DP = 8  # decimals of cross rates (counter currency -> account currency)


def rdiv(num: int, den: int) -> int:
    """Integer division rounding half away from zero (how money is rounded)."""
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def dec(units: int, places: int) -> Decimal | int:
    """Exact decimal ``units * 10**-places``; zero stays the integer 0."""
    return Decimal(units).scaleb(-places) if units else 0


def money(cents: int) -> Decimal | int:
    return dec(cents, 2)


def json_default(obj: Any) -> Any:
    # Decimals carry <= 15 significant digits, so the float's shortest text is the decimal.
    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=json_default)


_FMT_TOKEN = re.compile(r"yyyy|YYYY|SSS|MM|dd|DD|HH|hh|mm|ss|a")
_FMT_FIELD = {
    "yyyy": "{y:04d}", "YYYY": "{y:04d}", "MM": "{mo:02d}", "dd": "{d:02d}", "DD": "{d:02d}",
    "HH": "{H:02d}", "hh": "{h:02d}", "mm": "{mi:02d}", "ss": "{s:02d}", "SSS": "{ms:03d}",
    "a": "{a}",
}


def compile_time_format(pattern: str, zone: tzinfo = UTC) -> Callable[[int], str]:
    """Turn a Java/moment-style pattern into a fast epoch-ms -> wall-clock string function: the
    instant as a clock in ``zone`` shows it."""
    parts: list[str] = []
    pos = 0
    for match in [*_FMT_TOKEN.finditer(pattern), None]:
        end = match.start() if match else len(pattern)
        literal = pattern[pos:end]
        if re.search("[A-Za-z]", literal):
            raise ValueError(f"unsupported date format token in {pattern!r}: {literal!r}")
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if match:
            parts.append(_FMT_FIELD[match.group()])
            pos = match.end()
    template = "".join(parts)

    def fmt(ms: int) -> str:
        secs, milli = divmod(ms, 1000)
        # gmtime is the fast path; a zone's rules (daylight saving) need zoneinfo
        tm = time.gmtime(secs) if zone is UTC else datetime.fromtimestamp(secs, zone).timetuple()
        hour = tm.tm_hour
        return template.format(
            y=tm.tm_year, mo=tm.tm_mon, d=tm.tm_mday, H=hour, h=hour % 12 or 12,
            mi=tm.tm_min, s=tm.tm_sec, ms=milli, a="AM" if hour < 12 else "PM",
        )

    return fmt


def day_start(ms: int) -> int:
    return ms - ms % DAY_MS



def round_div_np(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Vectorised :func:`rdiv` (half away from zero); inputs stay far below 2**62."""
    magnitude = (2 * np.abs(num) + den) // (2 * den)
    return np.where(num < 0, -magnitude, magnitude)
