"""Simulator of the TraderEvolution Back-Office REST API (``/proftrading/rest``).

A deterministic, in-process test double for the exporter. It serves bare
JSON arrays with blind limit/offset paging, Bearer tokens with a rotating
refresh token, the per-(token, collection) rate limiter that blocks a token
after repeated violations, saved reports (``{"headers", "data", "total"}``)
whose ids differ per installation, and injected faults.

Data is a pure function of ``seed``, the size knobs and the *virtual clock*.
A timeline spanning ``history_days`` before ``sim_start`` to ``future_days``
after it is generated up front; the API only shows what happened at or
before the clock. ``POST /_sim/advance?seconds=N`` moves the clock forward,
which reveals new fills and operations and closes positions under the same
``positionid``.

Time sources (one choice, documented here):

* Token lifetimes always run on real monotonic time plus an offset, and
  ``/_sim/advance`` adds its seconds to that offset. So a token with
  ``access_ttl_s=1`` expires after one real second, and advancing the clock
  by ``access_ttl_s`` also expires it. ``clock_real_time`` is accepted for
  compatibility with other simulators' configs and changes nothing.
* Rate-limit buckets and token blocks use real monotonic time only.
* The data clock moves only through ``/_sim/advance`` (or :meth:`advance`).
  ``/_sim/reset`` puts the clock back to ``sim_start`` and forgets tokens,
  rate-limit state, counters and the fault sequence (requests still running
  keep their ``in_flight`` slot).

Order of checks on every API request: token, block/rate limit, fault,
route/method, validation; latency is added to every answer, errors included.
``/v2/api-docs`` and ``/swagger-ui.html`` skip the token, limiter and faults.
A bare ``Authorization: <token>`` (no ``Bearer``) is refused unless
``accept_raw_token`` is set.

Simplifications: ``isTotal`` sums every numeric column (ids and prices
too) over all rows that match the filters, before paging; report latency
(``report_latency_ms_per_1000_rows``) is charged for the rows of the page
served; filters other than ``accountId``, ``login`` and ``assetName`` are
accepted and ignored; ``hh`` in a date format is the 12-hour clock as in
Java, ``DD``/``YYYY`` mean day of month/year as in moment.js.

Report time cells are the true instants written as wall-clock times in
``report_timezone`` (an IANA name, default UTC), as a back office running on
local time writes them; JSON entities keep epoch milliseconds. ``events_at``
places a deposit and a position opening of the first account at chosen
instants (say, both sides of a daylight-saving change), and
:meth:`TraderEvolutionSimulator.expected_trade_instants` gives the true
instant of every fill.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import gc
import math
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from aiohttp import web

BASE_PATH = "/proftrading/rest"
ALL_FAULTS: tuple[str, ...] = ("500", "503", "429", "drop", "html502")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
CROSS_DP = 8  # decimals of cross rates (counter currency -> account currency)

ERR_BAD_CREDENTIALS = "1.2.0.11"
ERR_NO_API_ACCESS = "2.0.2.4"
ERR_TOKEN = "1.1.1.11"
ERR_FILTER_EMPTY = "1.6.2.2"
ERR_RATE_LIMIT = "2.147.1.27"

ERROR_DESCRIPTIONS: dict[str, str] = {
    ERR_BAD_CREDENTIALS: "Wrong login or password",
    ERR_NO_API_ACCESS: "User has no REST API access",
    ERR_TOKEN: "Token expired or invalid",
    ERR_FILTER_EMPTY: "PARAM / REPORT_REQUEST / FILTER_TYPE / EMPTY",
    ERR_RATE_LIMIT: "Rate limit exceeded or token blocked",
}

NGINX_502_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

NEW_REPORT_COLUMN = "riskscore"


NEW_COLUMN_CELLS = ("number", "text", "label")


def new_column_value(row_number: int, cells: str = "number") -> Decimal | str:
    """The drift column's value in the report's ``row_number``-th row (0-based, before paging).

    ``cells``: ``number`` a JSON number; ``text`` the same number pre-formatted as text, and
    ``"N/A"`` in every 9th row; ``label`` that text, and a word in every 9th row.
    """
    value = Decimal(row_number % 400) / 4
    if cells == "number":
        return value
    if row_number % 9 == 4:
        return "N/A" if cells == "text" else f"band {row_number % 7}"
    return str(value)


OPERATION_TYPES: dict[int, str] = {1: "Trading", 2: "Deposit", 3: "Withdrawal", 12: "Adjustment"}
ASSETS: tuple[tuple[int, str], ...] = ((4800, "USD"), (4801, "EUR"), (4802, "GBP"))
USER_GROUPS: dict[int, str] = {11: "Retail", 12: "Professional", 13: "VIP"}
TERMINALS: tuple[str, ...] = ("Web", "Desktop", "Mobile", "API")

# --------------------------------------------------------------------------- reports

# Column kinds: i = integer, m = money (2 dp, zero is the integer 0),
# d = decimal (price, lots, rate), t = text, ts = formatted time string.
NUMERIC_KINDS = frozenset({"i", "m", "d"})


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    """Parse ``"name kind | name kind | ..."`` into (name, kind) pairs."""
    pairs = []
    for item in spec.replace("\n", " ").split("|"):
        name, kind = item.split()
        pairs.append((name, kind))
    return tuple(pairs)


_STATEMENT_COLS = _cols("""
accountname t | login t | groupname t | gi.balance m | blockedbalance m | opengrosspnl m |
gi.cur_balance m | unsettled_deposit m | gi.available_funds m | gi.margin_used m |
gi.available_margin m | gi.margin_warning m | gi.maintain_margin m | gi.risk_lvl d |
gi.withdrawal_available m | gi.cur_margin m | gi.today_released_pnl m | gi.stock_value m |
stock_value m | accountcurrency t | cash_balance m | unsettled_cash m | stock_req m |
option_value m | stocks_liquidity m | option_premium_req m | collateral m | omnibusname t |
waived_margin t | warning_margin m | warning_margin_req m | margin_before_warning m |
stop_out_value m | credit_value m | accountid i | blocked_for_fixed_income m |
fixed_income_value m | fixed_income_orders_req m
""")
_STATEMENT_CCY_COLS = _cols("""
accountname t | login t | cash_posted m | value_nav m | margin m | pl_unrealized m |
gi.available_funds m | omnibusname t
""")
_TRADES_COLS = _cols("""
account t | instrumentname t | orderid i | tradeid i | externalid t | routename t |
operation t | time ts | price d | amount d | crossprice d | profit m | executionfee m |
extprice d | tradevolume d | purchaseprice m | exchange t | type t | rebates m | expyear i |
expmonth i | expday i | derivativetype t | strikeprice d | external_order_id t |
trades_bought d | trades_sold d | symbol_type t | tradingmode t | tradableinstrumentid i |
clientorderid t | execvenue t | description t | leverage i | lot_size i | counter_currency t
""")
_OPEN_POSITIONS_COLS = _cols("""
positionid i | account t | login t | groupname t | instrumentname t | instrumentgroup t |
amount d | openprice d | buyselltype t | opentime ts | currentprice d | stoploss d |
sllimitprice d | takeprofit d | profit m | swaps m | comission m | currency t | routename t |
margin m | autotrade t | terminaltype t | tradingmode t | omnibusname t | exchange t
""")
_POSITIONS_HISTORY_COLS = _cols("""
time ts | login t | account t | sender t | instrumentname t | positionid i | orderid i |
tradeid i | externalid t | opentime ts | openprice d | operation t | type t |
positionstatus t | tradeamount d | positionamount d | price d | extprice d | crossprice d |
stoploss d | sllimitprice d | takeprofit d | routename t | swaps m | executionfee m |
totalfee m | profit m | spreadpnl m | balance m | valuedate ts | expiredate t | autotrade t |
terminaltype t | tradingmode t | optionexercisestatus t | omnibusname t | exchange t
""")
_OPERATIONS_COLS = _cols("""
account t | login t | createdat ts | valuedate ts | accountoperationid i | orderid i |
positionid i | tradeid i | operationtype t | value m | currency t | comments t | balance m |
omnibusname t
""")


@dataclass(frozen=True)
class _ReportSpec:
    key: str
    name: str
    demo_id: int
    snapshot: bool
    columns: tuple[tuple[str, str], ...]


_REPORT_SPECS: tuple[_ReportSpec, ...] = (
    _ReportSpec("statement", "Account Statement Report", 119, True, _STATEMENT_COLS),
    _ReportSpec(
        "statement_ccy", "Account statement in defined currency", 153, True, _STATEMENT_CCY_COLS
    ),
    _ReportSpec("trades", "Trades Report", 117, False, _TRADES_COLS),
    _ReportSpec("open_positions", "Open Positions Report", 114, True, _OPEN_POSITIONS_COLS),
    _ReportSpec(
        "positions_history", "Positions History Report", 127, False, _POSITIONS_HISTORY_COLS
    ),
    _ReportSpec(
        "operations", "Account operation report (settled and unsettled)", 150, False,
        _OPERATIONS_COLS,
    ),
)
_SPEC_BY_NAME: dict[str, _ReportSpec] = {s.name: s for s in _REPORT_SPECS}

REPORT_COLUMNS: dict[str, list[str]] = {s.name: [c for c, _ in s.columns] for s in _REPORT_SPECS}
REPORT_DEMO_IDS: dict[str, int] = {s.name: s.demo_id for s in _REPORT_SPECS}

# --------------------------------------------------------------------------- instruments


@dataclass(frozen=True)
class _Instrument:
    name: str
    group: str
    symbol_type: str
    start_price: float
    dp: int  # price decimals
    lot_size: int
    counter: str  # quote currency: P&L and volume are in it
    hourly_vol: float
    leverage: int
    tradable_id: int
    description: str
    exchange: str


INSTRUMENTS: tuple[_Instrument, ...] = (
    _Instrument("EUR/USD", "Forex", "Forex", 1.085, 5, 100_000, "USD", 0.0010, 100, 1001,
                "Euro vs US Dollar", "FOREX"),
    _Instrument("GBP/USD", "Forex", "Forex", 1.27, 5, 100_000, "USD", 0.0011, 100, 1002,
                "British Pound vs US Dollar", "FOREX"),
    _Instrument("USD/JPY", "Forex", "Forex", 148.5, 3, 100_000, "JPY", 0.0011, 100, 1003,
                "US Dollar vs Japanese Yen", "FOREX"),
    _Instrument("XAU/USD", "Metals", "CFD", 2030.0, 2, 100, "USD", 0.0015, 50, 1004,
                "Gold vs US Dollar", "OTC"),
    _Instrument("US500", "Indices", "CFD", 4850.0, 2, 1, "USD", 0.0015, 20, 1005,
                "US 500 Index CFD", "CME"),
    _Instrument("AAPL", "Stocks", "Equity", 185.0, 2, 100, "USD", 0.0025, 5, 1006,
                "Apple Inc.", "NASDAQ"),
)
_INST_INDEX = {inst.name: i for i, inst in enumerate(INSTRUMENTS)}
_INSTRUMENT_PICK = (0, 0, 0, 1, 1, 2, 2, 3, 4, 5)  # forex-heavy mix
_FX_INDEX = {"EUR": 0, "GBP": 1, "JPY": 2}  # instrument giving the currency's USD rate

_FIRST_NAMES = ("Anna", "Boris", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Irina",
                "James", "Kenji", "Laura", "Marco", "Nadia", "Oscar", "Priya", "Quentin",
                "Rosa", "Stefan", "Tara")
_LAST_NAMES = ("Novak", "Schmidt", "Rossi", "Dubois", "Ivanova", "Kowalski", "Tanaka", "Silva",
               "Jensen", "Murphy", "Haddad", "Larsen", "Costa", "Weber", "Okafor", "Moreau")

_LN_MIN_HOLD = math.log(5 * MINUTE_MS)
_LN_MAX_HOLD = math.log(14 * DAY_MS)

# --------------------------------------------------------------------------- config


@dataclass
class TraderEvolutionSimConfig:
    """Every knob of the contract, plus a few simulator-only ones."""

    seed: int = 42
    users: int = 20
    accounts_per_user: tuple[int, int] = (1, 3)
    positions_per_account: int = 150
    history_days: int = 90
    future_days: int = 30
    sim_start: datetime = datetime(2025, 1, 31, 12, tzinfo=UTC)
    login: str = "sim-user"
    password: str = "sim-pass"
    no_api_login: str = "sim-noapi"
    access_ttl_s: float = 300
    refresh_ttl_s: float = 3600
    empty_list_status: int = 200
    report_row_shape: str = "array"
    # schema drift: every report run gains a column the contract does not list (``riskscore``)
    report_new_column: bool = False
    report_new_column_cells: str = "number"  # how its cells are written: see new_column_value
    latency_ms: float = 0
    latency_jitter_ms: float = 0
    report_latency_ms_per_1000_rows: float = 0
    error_rate: float = 0.0
    fail_every_n: int = 0
    rate_limit_rps: float = 3
    blocking_threshold: int = 5
    blocking_duration_s: float = 10
    retry_after_header: bool = False
    default_limit: int = 1000
    max_limit: int = 1000
    report_ids: str = "demo"
    report_datetime_format: str = "dd.MM.yyyy HH:mm:ss"
    report_timezone: str = "UTC"  # IANA zone the report cells are written in
    # simulator-only: instants at which the first account deposits and opens a position
    events_at: tuple[datetime, ...] = ()
    rate_limit_burst: int | None = None
    fault_kinds: tuple[str, ...] = ("500",)
    clock_real_time: bool = False  # accepted for compatibility; see module docstring
    accept_raw_token: bool = False  # accept "Authorization: <token>" without "Bearer "

    def __post_init__(self) -> None:
        self.accounts_per_user = tuple(self.accounts_per_user)  # type: ignore[assignment]
        self.fault_kinds = tuple(self.fault_kinds)
        self.events_at = tuple(self.events_at)
        low, high = self.accounts_per_user
        checks = [
            (0 <= low <= high, "accounts_per_user must be (min, max) with 0 <= min <= max"),
            (self.users >= 0 and self.positions_per_account >= 0, "sizes must be >= 0"),
            (self.history_days >= 0 and self.future_days >= 0, "days must be >= 0"),
            (self.sim_start.tzinfo is not None, "sim_start must be timezone-aware"),
            (self.empty_list_status in (200, 204), "empty_list_status must be 200 or 204"),
            (self.report_row_shape in ("array", "object"), "report_row_shape: array|object"),
            (self.report_new_column_cells in NEW_COLUMN_CELLS, f"report_new_column_cells: {NEW_COLUMN_CELLS}"),
            (self.report_ids in ("demo", "shuffled"), "report_ids must be demo or shuffled"),
            (self.default_limit >= 1 and self.max_limit >= 1, "limits must be >= 1"),
            (bool(self.fault_kinds) and set(self.fault_kinds) <= set(ALL_FAULTS),
             f"fault_kinds must be a non-empty subset of {ALL_FAULTS}"),
            (0.0 <= self.error_rate <= 1.0, "error_rate must be within [0, 1]"),
            (all(isinstance(e, datetime) and e.tzinfo is not None for e in self.events_at),
             "events_at must be timezone-aware datetimes"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        _compile_time_format(self.report_datetime_format, self.zone)  # raises on unsupported tokens
        first = self.sim_start - timedelta(days=self.history_days)
        last = self.sim_start + timedelta(days=self.future_days)
        if not all(first <= e <= last for e in self.events_at):
            raise ValueError("events_at must lie within the timeline (history_days .. future_days)")

    @property
    def zone(self) -> tzinfo:
        if self.report_timezone == "UTC":
            return UTC
        try:
            return ZoneInfo(self.report_timezone)
        except (KeyError, ValueError, OSError):
            raise ValueError(f"report_timezone: unknown time zone {self.report_timezone!r}") from None

    @property
    def start_ms(self) -> int:
        """``sim_start`` in epoch milliseconds (integer maths, no float rounding)."""
        return (self.sim_start - _EPOCH) // timedelta(milliseconds=1)


# --------------------------------------------------------------------------- helpers


def _rdiv(num: int, den: int) -> int:
    """Integer division rounding half away from zero (how money is rounded)."""
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


def _dec(units: int, places: int) -> Decimal | int:
    """Exact decimal ``units * 10**-places``; zero stays the integer 0."""
    return Decimal(units).scaleb(-places) if units else 0


def _money(cents: int) -> Decimal | int:
    return _dec(cents, 2)


def _json_default(obj: Any) -> Any:
    # Decimals carry <= 15 significant digits, so the float's shortest text is the decimal.
    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_json_default)


_FMT_TOKEN = re.compile(r"yyyy|YYYY|SSS|MM|dd|DD|HH|hh|mm|ss|a")
_FMT_FIELD = {
    "yyyy": "{y:04d}", "YYYY": "{y:04d}", "MM": "{mo:02d}", "dd": "{d:02d}", "DD": "{d:02d}",
    "HH": "{H:02d}", "hh": "{h:02d}", "mm": "{mi:02d}", "ss": "{s:02d}", "SSS": "{ms:03d}",
    "a": "{a}",
}


def _compile_time_format(pattern: str, zone: tzinfo = UTC) -> Callable[[int], str]:
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


def _day_start(ms: int) -> int:
    return ms - ms % DAY_MS


# --------------------------------------------------------------------------- data model


class _PricePath:
    """Seeded hourly geometric random walk, linearly interpolated, in price units."""

    __slots__ = ("grid", "points", "scale")

    def __init__(self, inst: _Instrument, start_ms: int, hours: int, rng: random.Random) -> None:
        self.scale = 10**inst.dp
        price = inst.start_price
        points = [price]
        for _ in range(hours):
            price *= math.exp(rng.gauss(0.0, inst.hourly_vol))
            points.append(price)
        self.points = np.array(points, dtype=np.float64)
        self.grid = start_ms + np.arange(len(points), dtype=np.float64) * HOUR_MS

    def units_many(self, t_ms: np.ndarray) -> np.ndarray:
        """Prices in 10**-dp units at many times (clamped to the path's ends)."""
        return np.rint(np.interp(t_ms, self.grid, self.points) * self.scale).astype(np.int64)

    def units(self, t_ms: int) -> int:
        return int(self.units_many(np.array([t_ms], dtype=np.float64))[0])


class _User:
    __slots__ = ("accounts", "created", "email", "first", "group", "id", "last", "login")

    def __init__(self, uid: int, login: str, first: str, last: str, group: int) -> None:
        self.id, self.login, self.first, self.last, self.group = uid, login, first, last, group
        self.email = f"{first}.{last}.{login}@example.com".lower()
        self.accounts: list[_Account] = []
        self.created = 0


class _Account:
    __slots__ = ("ccy", "created", "fill_times", "fills", "id", "mode", "name", "op_balances",
                 "op_times", "ops", "positions", "status", "user")

    def __init__(self, aid: int, user: _User, ccy: str, status: int, mode: int, created: int):
        self.id, self.user, self.ccy = aid, user, ccy
        self.status, self.mode, self.created = status, mode, created
        # Names identify accounts in reports, so a second account in one currency gets "-2".
        same = sum(1 for a in user.accounts if a.ccy == ccy)
        self.name = f"{user.login}-{ccy}" + (f"-{same + 1}" if same else "")
        self.positions: list[_Position] = []
        self.ops: list[_Op] = []
        self.op_times: list[int] = []
        self.op_balances: list[int] = []
        self.fills: list[_Fill] = []
        self.fill_times: list[int] = []

    @property
    def trading_mode(self) -> str:
        return "Live" if self.mode == 1 else "Demo"

    def balance_at(self, t_ms: int) -> int:
        """Cash balance in cents after every operation at or before ``t_ms``."""
        i = bisect.bisect_right(self.op_times, t_ms)
        return self.op_balances[i - 1] if i else 0


class _Position:
    __slots__ = ("acct", "close_cross", "close_fee", "close_fill", "close_px", "close_t", "id",
                 "inst", "lots", "open_cross", "open_fee", "open_fill", "open_px", "open_t",
                 "pnl", "side", "terminal")

    def __init__(self, pid: int, acct: _Account, inst: _Instrument, side: int, lots: int,
                 terminal: str, open_t: int, open_px: int, open_cross: int, open_fee: int,
                 close_t: int | None, close_px: int, close_cross: int, close_fee: int,
                 pnl: int) -> None:
        """Prices in 10**-dp units, crosses in 10**-CROSS_DP, money in cents, lots in 0.01."""
        self.id, self.acct, self.inst, self.side, self.lots = pid, acct, inst, side, lots
        self.terminal, self.open_t, self.open_px = terminal, open_t, open_px
        self.open_cross, self.open_fee, self.close_t = open_cross, open_fee, close_t
        self.close_px, self.close_cross, self.close_fee = close_px, close_cross, close_fee
        self.pnl = pnl  # realised gross P&L, zero while open
        self.open_fill: _Fill | None = None
        self.close_fill: _Fill | None = None

    def is_open_at(self, t_ms: int) -> bool:
        return self.open_t <= t_ms and (self.close_t is None or self.close_t > t_ms)


class _Fill:
    __slots__ = ("is_close", "order_id", "pos", "t", "trade_id")

    def __init__(self, t: int, pos: _Position, is_close: bool) -> None:
        self.t, self.pos, self.is_close = t, pos, is_close
        self.order_id = self.trade_id = 0

    @property
    def buy(self) -> bool:
        # A close fill trades against the position's side.
        return (self.pos.side > 0) != self.is_close

    @property
    def price(self) -> int:
        return self.pos.close_px if self.is_close else self.pos.open_px

    @property
    def cross(self) -> int:
        return self.pos.close_cross if self.is_close else self.pos.open_cross

    @property
    def fee(self) -> int:
        return self.pos.close_fee if self.is_close else self.pos.open_fee


class _Op:
    __slots__ = ("acct", "amount", "balance", "comment", "fill", "id", "rank", "t", "type_id")

    def __init__(self, acct: _Account, type_id: int, amount: int, t: int, comment: str,
                 rank: int, fill: _Fill | None = None) -> None:
        self.acct, self.type_id, self.amount, self.t = acct, type_id, amount, t
        self.comment, self.rank, self.fill = comment, rank, fill
        self.id = self.balance = 0


def _volume_units(pos: _Position, price: int) -> int:
    """Trade volume ``lots * lot_size * price`` in units of 10**-(2 + dp)."""
    return pos.lots * pos.inst.lot_size * price


def _to_cents(units: int, dp: int, cross: int) -> int:
    """Convert an amount in 10**-(2+dp) counter-currency units to account cents."""
    return _rdiv(units * cross, 10 ** (dp + CROSS_DP))


def _reduced_lot(inst: _Instrument) -> tuple[int, int]:
    # Cancel the lot size against the 10**(dp + CROSS_DP) scale so int64 maths cannot overflow.
    den = 10 ** (inst.dp + CROSS_DP)
    g = math.gcd(inst.lot_size, den)
    return inst.lot_size // g, den // g


_LOT_REDUCED = np.array([_reduced_lot(i)[0] for i in INSTRUMENTS], dtype=np.int64)
_DEN_REDUCED = np.array([_reduced_lot(i)[1] for i in INSTRUMENTS], dtype=np.int64)


def _fee_cents(purchase_cents: int) -> int:
    # Commission of 0.3 bp of the traded value, at least one cent, booked negative.
    return -max(1, _rdiv(abs(purchase_cents) * 3, 100_000))


@dataclass
class _Draws:
    """Raw per-position random draws, gathered for every account before pricing."""

    acct: list[_Account] = field(default_factory=list)
    inst: list[int] = field(default_factory=list)
    side: list[int] = field(default_factory=list)
    lots: list[int] = field(default_factory=list)
    open_t: list[int] = field(default_factory=list)
    close_t: list[int] = field(default_factory=list)  # -1: still open at the horizon
    terminal: list[int] = field(default_factory=list)


class _World:
    """The whole deterministic timeline, generated once from the config.

    Random draws use ``random.Random`` streams (stable across Python versions);
    numpy only interpolates prices and sorts, and money is exact integer maths.
    """

    def __init__(self, cfg: TraderEvolutionSimConfig) -> None:
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of acyclic-looking objects: collector passes only cost time
        try:
            self._build(cfg)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _build(self, cfg: TraderEvolutionSimConfig) -> None:
        self.cfg = cfg
        self.start_ms = cfg.start_ms
        self.h0 = self.start_ms - cfg.history_days * DAY_MS
        self.h1 = self.start_ms + cfg.future_days * DAY_MS
        hours = (self.h1 - self.h0) // HOUR_MS + 2
        px_rng = random.Random(f"{cfg.seed}:prices")
        self.paths = [_PricePath(inst, self.h0, hours, px_rng) for inst in INSTRUMENTS]
        self.users: list[_User] = []
        self.accounts: list[_Account] = []
        self._make_users()
        ops: list[_Op] = []
        draws = _Draws()
        for acct in self.accounts:
            rng = random.Random(f"{cfg.seed}:account:{acct.id}")
            cash = self._make_cash(acct, rng)
            ops.extend(cash)
            self._draw_positions(acct, rng, cash[0], draws)
        self._pin_events(ops, draws)
        self.positions = self._make_positions(draws)
        self.fills = self._make_fills()
        ops.extend(self._trading_ops())
        self.ops = self._number_ops(ops)
        self.fill_times = [f.t for f in self.fills]
        self.op_times = [o.t for o in self.ops]
        self.position_open_times = [p.open_t for p in self.positions]
        self.user_by_id = {u.id: u for u in self.users}
        self.user_by_login = {u.login: u for u in self.users}
        self.account_by_id = {a.id: a for a in self.accounts}

    # -- market -----------------------------------------------------------

    def _usd_per_many(self, ccy: str, t_ms: np.ndarray) -> np.ndarray:
        """USD value of one unit of ``ccy`` at each time (from the served prices)."""
        if ccy == "USD":
            return np.ones(len(t_ms))
        index = _FX_INDEX[ccy]
        rate = self.paths[index].units_many(t_ms) / 10 ** INSTRUMENTS[index].dp
        return 1.0 / rate if ccy == "JPY" else rate

    def cross_many(self, counter: str, ccy: str, t_ms: np.ndarray) -> np.ndarray:
        """Rates converting ``counter`` into ``ccy``, in 10**-CROSS_DP units."""
        ratio = self._usd_per_many(counter, t_ms) / self._usd_per_many(ccy, t_ms)
        return np.rint(ratio * 10**CROSS_DP).astype(np.int64)

    def cross(self, counter: str, ccy: str, t_ms: int) -> int:
        return int(self.cross_many(counter, ccy, np.array([t_ms], dtype=np.float64))[0])

    # -- generation -------------------------------------------------------

    def _make_users(self) -> None:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:users")
        uid, aid = 146_000, 3_243_000
        span = max(1, min(5 * DAY_MS, (cfg.history_days * DAY_MS) // 5))
        for n in range(1, cfg.users + 1):
            uid += rng.randint(1, 4)  # ids with gaps
            user = _User(uid, f"trader{n:04d}", rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES),
                         rng.choice(tuple(USER_GROUPS)))
            for _ in range(rng.randint(*cfg.accounts_per_user)):
                aid += rng.randint(1, 5)
                roll = rng.random()
                ccy = "USD" if roll < 0.7 else "EUR" if roll < 0.9 else "GBP"
                status = 0 if rng.random() < 0.95 else 1
                mode = 1 if rng.random() < 0.8 else 0
                created = self.h0 + HOUR_MS + rng.randrange(span)
                acct = _Account(aid, user, ccy, status, mode, created)
                user.accounts.append(acct)
                self.accounts.append(acct)
            first = min((a.created for a in user.accounts), default=self.h0 + HOUR_MS)
            user.created = first - rng.randrange(MINUTE_MS, HOUR_MS)
            self.users.append(user)

    def _make_cash(self, acct: _Account, rng: random.Random) -> list[_Op]:
        opening_t = acct.created + rng.randrange(MINUTE_MS, 10 * MINUTE_MS)
        opening = round(math.exp(rng.uniform(math.log(1_000), math.log(100_000)))) * 100
        ops = [_Op(acct, 2, opening, opening_t, "Initial deposit", 0)]
        lo = opening_t + DAY_MS
        for _ in range(rng.randint(0, 3)):
            if lo >= self.h1:
                break
            t = rng.randrange(lo, self.h1)
            if rng.random() < 0.6:
                amount = round(math.exp(rng.uniform(math.log(500), math.log(20_000)))) * 100
                ops.append(_Op(acct, 2, amount, t, "Deposit by bank transfer", 0))
            else:
                amount = -round(opening * rng.uniform(0.05, 0.3) / 100) * 100
                ops.append(_Op(acct, 3, amount, t, "Withdrawal to bank account", 0))
        if rng.random() < 0.05 and lo < self.h1:  # rare manual correction
            amount = rng.choice((-1, 1)) * rng.randint(1, 5_000)
            ops.append(_Op(acct, 12, amount, rng.randrange(lo, self.h1), "Manual adjustment", 0))
        return ops

    def _draw_positions(self, acct: _Account, rng: random.Random, opening: _Op,
                        d: _Draws) -> None:
        lo, hi = opening.t + HOUR_MS, self.h1  # trading starts after the opening deposit
        if hi <= lo:
            return
        r = rng.random  # plain random() draws keep this hot loop fast
        hold_span = _LN_MAX_HOLD - _LN_MIN_HOLD
        # Small accounts trade small: 0.5 lot per 1 000 deposited, within 0.01 .. 5 lots.
        ln_max_lots = math.log(min(500, max(2, opening.amount // 2_000)))
        for _ in range(round(self.cfg.positions_per_account * (0.5 + r()))):
            d.acct.append(acct)
            d.inst.append(_INSTRUMENT_PICK[int(r() * len(_INSTRUMENT_PICK))])
            d.side.append(1 if r() < 0.55 else -1)
            d.lots.append(round(math.exp(r() * ln_max_lots)))
            open_t = lo + int(r() * (hi - lo))
            d.open_t.append(open_t)
            close_t = -1
            if r() >= 0.02:  # 2 % are never closed within the horizon
                close_t = open_t + round(math.exp(_LN_MIN_HOLD + r() * hold_span))
            d.close_t.append(close_t if close_t < hi else -1)
            d.terminal.append(int(r() * len(TERMINALS)))

    def _pin_events(self, ops: list[_Op], d: _Draws) -> None:
        """``events_at``: the first account deposits 1 000 and opens a 1-lot EUR/USD buy (left
        open) at each instant. Appended after every random draw, so the rest stays the same."""
        if not self.accounts:
            return
        acct = self.accounts[0]
        for moment in self.cfg.events_at:
            t = (moment - _EPOCH) // timedelta(milliseconds=1)
            ops.append(_Op(acct, 2, 100_000, t, "Deposit at a chosen instant", 0))
            d.acct.append(acct)
            d.inst.append(0)
            d.side.append(1)
            d.lots.append(100)
            d.open_t.append(t)
            d.close_t.append(-1)
            d.terminal.append(0)

    def _fill_prices(self, d: _Draws, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Instrument prices and counter->account cross rates at each position's times."""
        inst = np.array(d.inst, dtype=np.int64)
        ccy = np.array([a.ccy for a in d.acct])
        prices = np.zeros(len(times), dtype=np.int64)
        crosses = np.zeros(len(times), dtype=np.int64)
        for k, instrument in enumerate(INSTRUMENTS):
            mask = inst == k
            prices[mask] = self.paths[k].units_many(times[mask])
            for acct_ccy in ("USD", "EUR", "GBP"):
                both = mask & (ccy == acct_ccy)
                crosses[both] = self.cross_many(instrument.counter, acct_ccy, times[both])
        return prices, crosses

    def _make_positions(self, d: _Draws) -> list[_Position]:
        opens = np.array(d.open_t, dtype=np.int64)
        closes = np.array(d.close_t, dtype=np.int64)
        open_px, open_cross = self._fill_prices(d, opens.astype(np.float64))
        close_px, close_cross = self._fill_prices(d, np.maximum(closes, 0).astype(np.float64))
        inst = np.array(d.inst, dtype=np.int64)
        sized = np.array(d.lots, dtype=np.int64) * _LOT_REDUCED[inst]
        den = _DEN_REDUCED[inst]
        open_fee = _fee_cents_np(_round_div_np(sized * open_px * open_cross, den))
        close_fee = _fee_cents_np(_round_div_np(sized * close_px * close_cross, den))
        move = (close_px - open_px) * np.array(d.side, dtype=np.int64) * sized
        pnl = _round_div_np(move * close_cross, den)
        closed = closes >= 0
        acct_ids = np.array([a.id for a in d.acct], dtype=np.int64)
        order = np.lexsort((acct_ids, opens))  # position ids follow open time

        def take(values: Any, only_closed: bool = False) -> list[Any]:
            values = np.asarray(values)
            return (np.where(closed, values, 0) if only_closed else values)[order].tolist()

        side, lots, open_t = take(d.side), take(d.lots), take(opens)
        open_px_l, open_cross_l, open_fee_l = take(open_px), take(open_cross), take(open_fee)
        close_px_l, close_cross_l = take(close_px, True), take(close_cross, True)
        close_fee_l, pnl_l = take(close_fee, True), take(pnl, True)
        close_t = [None if t < 0 else t for t in take(closes)]
        order_l = order.tolist()
        positions = []
        for n, i in enumerate(order_l):
            acct = d.acct[i]
            pos = _Position(21_000_001 + n, acct, INSTRUMENTS[d.inst[i]], side[n], lots[n],
                            TERMINALS[d.terminal[i]], open_t[n], open_px_l[n], open_cross_l[n],
                            open_fee_l[n], close_t[n], close_px_l[n], close_cross_l[n],
                            close_fee_l[n], pnl_l[n])
            acct.positions.append(pos)
            positions.append(pos)
        return positions

    def _make_fills(self) -> list[_Fill]:
        fills = []
        for pos in self.positions:
            pos.open_fill = _Fill(pos.open_t, pos, False)
            fills.append(pos.open_fill)
            if pos.close_t is not None:
                pos.close_fill = _Fill(pos.close_t, pos, True)
                fills.append(pos.close_fill)
        times = np.array([f.t for f in fills], dtype=np.int64)
        pids = np.array([f.pos.id for f in fills], dtype=np.int64)
        order = np.lexsort((pids, times)).tolist()  # no position opens and closes in 1 ms
        r = random.Random(f"{self.cfg.seed}:fill-ids").random
        order_id, trade_id = 880_000_000, 1_200_000_000
        sorted_fills = []
        for i in order:
            fill = fills[i]
            order_id += 1 + int(r() * 3)  # gaps: cancelled orders never fill
            trade_id += 1
            fill.order_id, fill.trade_id = order_id, trade_id
            fill.pos.acct.fills.append(fill)
            sorted_fills.append(fill)
        for acct in self.accounts:
            acct.fill_times = [f.t for f in acct.fills]
        return sorted_fills

    def _trading_ops(self) -> list[_Op]:
        out = []
        for pos in self.positions:
            fill = pos.close_fill
            if fill is not None:
                net = pos.pnl + pos.open_fee + pos.close_fee
                out.append(_Op(pos.acct, 1, net, fill.t, f"Position {pos.id} closed", 1, fill))
        return out

    def _number_ops(self, ops: list[_Op]) -> list[_Op]:
        keys = (
            np.array([o.fill.trade_id if o.fill else 0 for o in ops], dtype=np.int64),
            np.array([o.rank for o in ops], dtype=np.int64),
            np.array([o.acct.id for o in ops], dtype=np.int64),
            np.array([o.t for o in ops], dtype=np.int64),
        )
        order = np.lexsort(keys).tolist() if ops else []
        r = random.Random(f"{self.cfg.seed}:op-ids").random
        op_id = 7_300_000
        balances: dict[int, int] = {}
        sorted_ops = []
        for i in order:
            op = ops[i]
            op_id += 1 + int(r() * 2)
            op.id = op_id
            acct = op.acct
            op.balance = balances.get(acct.id, 0) + op.amount  # running balance
            balances[acct.id] = op.balance
            acct.ops.append(op)
            acct.op_times.append(op.t)
            acct.op_balances.append(op.balance)
            sorted_ops.append(op)
        return sorted_ops


def _round_div_np(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Vectorised :func:`_rdiv` (half away from zero); inputs stay far below 2**62."""
    magnitude = (2 * np.abs(num) + den) // (2 * den)
    return np.where(num < 0, -magnitude, magnitude)


def _fee_cents_np(purchase_cents: np.ndarray) -> np.ndarray:
    return -np.maximum(1, _round_div_np(np.abs(purchase_cents) * 3, np.int64(100_000)))


# --------------------------------------------------------------------------- runtime state


class _ApiError(Exception):
    """An API error reply: ``{"errors": [code]}`` with an HTTP status."""

    def __init__(self, status: int, code: str | None = None, retry_after: int | None = None):
        super().__init__(status, code)
        self.status = status
        self.code = code or f"9.0.0.{status}"
        self.retry_after = retry_after


class _RateLimiter:
    """Token buckets per (key, collection) plus violation counting and blocking."""

    def __init__(self, cfg: TraderEvolutionSimConfig) -> None:
        self.rps = float(cfg.rate_limit_rps)
        self.burst = float(cfg.rate_limit_burst or max(1, math.ceil(self.rps)))
        self.threshold = cfg.blocking_threshold
        self.duration = float(cfg.blocking_duration_s)
        self.buckets: dict[tuple[str, str], list[float]] = {}
        self.violations: dict[str, deque[float]] = {}
        self.blocked_until: dict[str, float] = {}
        self.blocks = 0  # tokens (or logins) blocked so far

    def check(self, key: str, collection: str, now: float) -> _ApiError | None:
        if self.rps <= 0:
            return None
        until = self.blocked_until.get(key)
        if until is not None and now < until:
            return _ApiError(429, ERR_RATE_LIMIT, max(1, math.ceil(until - now)))
        if self._take(key, collection, now):
            return None
        return self._violation(key, now)

    def _take(self, key: str, collection: str, now: float) -> bool:
        bucket = self.buckets.setdefault((key, collection), [self.burst, now])
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rps)
        bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def _violation(self, key: str, now: float) -> _ApiError:
        window = self.violations.setdefault(key, deque())
        window.append(now)
        while window and window[0] <= now - 60.0:
            window.popleft()
        if 0 < self.threshold <= len(window):
            self.blocked_until[key] = now + self.duration
            self.blocks += 1
            window.clear()  # a fresh count starts once the block ends
            return _ApiError(429, ERR_RATE_LIMIT, max(1, math.ceil(self.duration)))
        return _ApiError(429, ERR_RATE_LIMIT, 1)

    def blocked_count(self, now: float) -> int:
        return sum(1 for until in self.blocked_until.values() if until > now)


@dataclass
class _Counters:
    requests_total: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    faults_injected: int = 0
    fault_stage_seen: int = 0  # requests that reached the fault stage (fail_every_n)
    logins: int = 0
    refreshes: int = 0
    rate_limited: int = 0
    responses_by_status: dict[str, int] = field(default_factory=dict)
    faults_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _Reply:
    status: int = 200
    payload: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    extra_delay_s: float = 0.0
    drop: bool = False


@dataclass
class _Ctx:
    request: web.Request
    match: re.Match[str]
    body: Any = None


@dataclass
class _Query:
    """Parsed report filters."""

    start: int
    end: int
    accounts: list[_Account] | None  # None means every account
    asset_name: str | None = None


class _Params:
    """Validation of query parameters following the contract's rules."""

    _INT = re.compile(r"-?\d+")

    def __init__(self, query: Any, cfg: TraderEvolutionSimConfig) -> None:
        self.query = query
        self.cfg = cfg

    def int_opt(self, name: str) -> int | None:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return None
        if not self._INT.fullmatch(raw):
            raise _ApiError(400)
        return int(raw)

    def limit(self) -> int:
        value = self.int_opt("limit")
        if value is None:
            return min(self.cfg.default_limit, self.cfg.max_limit)
        if value <= 0:
            raise _ApiError(406)
        return min(value, self.cfg.max_limit)  # silently clamped, as real servers do

    def offset(self) -> int:
        value = self.int_opt("offset")
        if value is not None and value < 0:
            raise _ApiError(406)
        return value or 0

    def dates(self) -> tuple[int | None, int | None]:
        start, end = self.int_opt("startDate"), self.int_opt("endDate")
        if start is not None and end is not None and start > end:
            raise _ApiError(406)
        return start, end

    def flag(self, name: str) -> bool:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return False
        if raw.lower() not in ("true", "false"):
            raise _ApiError(400)
        return raw.lower() == "true"

    def text(self, name: str) -> str | None:
        raw = self.query.get(name)
        return raw if raw else None


def _page(items: Sequence[Any], offset: int, limit: int) -> Sequence[Any]:
    return items[offset:offset + limit]


# --------------------------------------------------------------------------- simulator


class TraderEvolutionSimulator:
    """Deterministic TraderEvolution BO API: data, expected values and the aiohttp app."""

    def __init__(self, config: TraderEvolutionSimConfig | None = None) -> None:
        self.config = config or TraderEvolutionSimConfig()
        self.world = _World(self.config)
        self._fmt = _compile_time_format(self.config.report_datetime_format, self.config.zone)
        self._report_ids = self._assign_report_ids()
        self._spec_by_id = {rid: _SPEC_BY_NAME[name] for name, rid in self._report_ids.items()}
        self._lock = threading.Lock()
        self._routes = self._route_table()
        self._counters = _Counters()
        self._reset_state()

    # -- lifecycle --------------------------------------------------------

    def _reset_state(self) -> None:
        in_flight = self._counters.in_flight
        self._clock_ms = self.world.start_ms
        self._token_offset_s = 0.0
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self._limiter = _RateLimiter(self.config)
        # Requests still running keep their slot so in_flight never goes negative.
        self._counters = _Counters(in_flight=in_flight, peak_in_flight=in_flight)
        self._snapshot: tuple[int, dict[int, dict[str, Any]]] | None = None

    def reset(self) -> None:
        """Back to the start: clock, tokens, limiter, counters and fault sequence."""
        with self._lock:
            self._reset_state()

    def advance(self, seconds: float) -> None:
        """Move the data clock forward; token lifetimes see the same jump."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._clock_ms += round(seconds * 1000)
            self._token_offset_s += seconds
            self._snapshot = None

    @property
    def clock_ms(self) -> int:
        return self._clock_ms

    @property
    def report_ids(self) -> dict[str, int]:
        """Report name -> id as served by this installation."""
        return dict(self._report_ids)

    def _assign_report_ids(self) -> dict[str, int]:
        if self.config.report_ids == "demo":
            return dict(REPORT_DEMO_IDS)
        # Shuffled ids never reuse a demo id, so a client hard-coding them fails loudly.
        rng = random.Random(f"{self.config.seed}:report-ids")
        demo = set(REPORT_DEMO_IDS.values())
        ids = rng.sample([i for i in range(100, 1000) if i not in demo], len(_REPORT_SPECS))
        return {spec.name: rid for spec, rid in zip(_REPORT_SPECS, ids, strict=True)}

    # -- state ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Counters and clock, as served by ``GET /_sim/state``."""
        with self._lock:
            clock = self._clock_ms
            c = self._counters
            w = self.world
            snapshot = self._snapshot_at_clock()  # cached per clock value
            return {
                "clock": datetime.fromtimestamp(clock / 1000, UTC).isoformat(),
                "clock_ms": clock,
                "counts": {
                    "users": len(w.users),
                    "accounts": len(w.accounts),
                    "positions": bisect.bisect_right(w.position_open_times, clock),
                    "open_positions": sum(len(s["open"]) for s in snapshot.values()),
                    "fills": bisect.bisect_right(w.fill_times, clock),
                    "operations": bisect.bisect_right(w.op_times, clock),
                },
                "requests_total": c.requests_total,
                "responses_by_status": dict(c.responses_by_status),
                "faults_injected": c.faults_injected,
                "faults_by_kind": dict(c.faults_by_kind),
                "rate_limited": c.rate_limited,
                "peak_in_flight": c.peak_in_flight,
                "in_flight": c.in_flight,
                "logins": c.logins,
                "refreshes": c.refreshes,
                "blocked_tokens": self._limiter.blocked_count(time.monotonic()),
                "blocks_total": self._limiter.blocks,
                "report_ids": dict(self._report_ids),
            }

    # -- expected data (what the API serves at the current clock) ----------

    def expected_accounts(self) -> list[dict[str, Any]]:
        """``GET /accounts`` paged to the end: every account, ascending id."""
        return [self._account_json(a) for a in self.world.accounts]

    def expected_users(self) -> list[dict[str, Any]]:
        return [self._user_json(u) for u in self.world.users]

    def expected_account_operations(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """``GET /accountOperations`` paged to the end, ascending id, money as Decimal."""
        with self._lock:
            ops = self._visible_ops(None, start_ms, end_ms)
        return [self._op_json(op) for op in ops]

    def expected_report(
        self,
        name: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        *,
        account_id: int | None = None,
        login: str | None = None,
        asset_name: str = "USD",
    ) -> tuple[list[str], list[list[Any]]]:
        """Headers and every row (array shape, money as Decimal) of a report run: the contract's
        columns only (the ``report_new_column`` drift column is left out; see :func:`new_column_value`)."""
        spec = _SPEC_BY_NAME[name]
        with self._lock:
            accounts = self._filter_accounts(account_id, login)
            query = self._report_query(start_ms, end_ms, accounts, asset_name)
            rows = [self._report_row(spec, it, query) for it in self._report_items(spec, query)]
        return [c for c, _ in spec.columns], rows

    def expected_trade_instants(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> dict[int, datetime]:
        """Trade id -> true UTC instant of every fill the Trades Report serves for the window (its
        ``time`` cell is that instant written in ``report_timezone``)."""
        with self._lock:
            query = self._report_query(start_ms, end_ms, None, None)
            fills = self._visible_fills(None, query.start, query.end)
        return {f.trade_id: _EPOCH + timedelta(milliseconds=f.t) for f in fills}

    # -- JSON entities ----------------------------------------------------

    @staticmethod
    def _user_json(u: _User) -> dict[str, Any]:
        return {"id": u.id, "login": u.login, "firstName": u.first, "lastName": u.last,
                "email": u.email, "userGroup": u.group, "createdAt": u.created}

    @staticmethod
    def _account_json(a: _Account) -> dict[str, Any]:
        return {"id": a.id, "accountName": a.name, "userId": a.user.id, "login": a.user.login,
                "currency": a.ccy, "type": 0, "status": a.status, "mode": a.mode,
                "createdAt": a.created}

    @staticmethod
    def _op_json(op: _Op) -> dict[str, Any]:
        fill = op.fill
        return {
            "id": op.id, "accountId": op.acct.id, "operationTypeId": op.type_id,
            "amount": _money(op.amount), "currency": op.acct.ccy, "balance": _money(op.balance),
            "createdAt": op.t, "valueDate": _day_start(op.t), "frontendComment": op.comment,
            "orderId": fill.order_id if fill else None,
            "positionId": fill.pos.id if fill else None,
            "tradeId": fill.trade_id if fill else None,
        }

    # -- selection helpers ------------------------------------------------

    def _filter_accounts(self, account_id: int | None, login: str | None) -> list[_Account] | None:
        if account_id is None and login is None:
            return None
        accounts = self.world.accounts
        if login is not None:
            user = self.world.user_by_login.get(login)
            accounts = user.accounts if user else []
        if account_id is not None:
            accounts = [a for a in accounts if a.id == account_id]
        return accounts

    def _visible_ops(self, accounts: list[_Account] | None, start: int | None,
                     end: int | None) -> list[_Op]:
        lo = start if start is not None else -(2**62)
        hi = min(end, self._clock_ms) if end is not None else self._clock_ms
        return _select(self.world.ops, self.world.op_times, accounts,
                       lambda a: (a.ops, a.op_times), lo, hi, lambda o: o.id)

    def _visible_fills(self, accounts: list[_Account] | None, lo: int, hi: int) -> list[_Fill]:
        hi = min(hi, self._clock_ms)
        return _select(self.world.fills, self.world.fill_times, accounts,
                       lambda a: (a.fills, a.fill_times), lo, hi, lambda f: f.trade_id)

    # -- account snapshot (reports 119 / 153 / 114) ------------------------

    def _snapshot_at_clock(self) -> dict[int, dict[str, Any]]:
        """Live engine values per account at the clock, cached per clock value."""
        clock = self._clock_ms
        cached = self._snapshot
        if cached is not None and cached[0] == clock:
            return cached[1]
        w = self.world
        prices = [p.units(clock) for p in w.paths]
        crosses: dict[tuple[str, str], int] = {}
        day = _day_start(clock)
        snap: dict[int, dict[str, Any]] = {}
        for acct in w.accounts:
            open_rows = []
            for pos in acct.positions:
                if pos.open_t > clock:
                    break  # positions are sorted by open time
                if not pos.is_open_at(clock):
                    continue
                inst = pos.inst
                key = (inst.counter, acct.ccy)
                if key not in crosses:
                    crosses[key] = w.cross(inst.counter, acct.ccy, clock)
                cross = crosses[key]
                px = prices[_INST_INDEX[inst.name]]
                move = (px - pos.open_px) * pos.side * pos.lots * inst.lot_size
                pnl = _to_cents(move, inst.dp, cross)
                margin = _rdiv(_volume_units(pos, pos.open_px) * cross,
                               10 ** (inst.dp + CROSS_DP) * inst.leverage)
                open_rows.append((pos, px, pnl, margin))
            today_ops = [o for o in acct.ops if day <= o.t <= clock and o.type_id == 1]
            snap[acct.id] = {
                "balance": acct.balance_at(clock),
                "cash_balance": acct.balance_at(day - 1),
                "pnl": sum(r[2] for r in open_rows),
                "margin": sum(r[3] for r in open_rows),
                "today_pnl": sum(o.amount for o in today_ops),
                "open": open_rows,
            }
        self._snapshot = (clock, snap)
        return snap

    # -- reports ----------------------------------------------------------

    def _report_query(self, start: int | None, end: int | None,
                      accounts: list[_Account] | None, asset_name: str | None) -> _Query:
        """The window of a windowed report; without dates, the clock's UTC day."""
        if start is None and end is None:
            day = _day_start(self._clock_ms)
            start, end = day, day + DAY_MS - 1
        elif start is None:
            start = _day_start(end or 0)
        elif end is None:
            end = self._clock_ms
        return _Query(start, end, accounts, asset_name)

    def _report_items(self, spec: _ReportSpec, q: _Query) -> list[Any]:
        accounts = q.accounts if q.accounts is not None else self.world.accounts
        if spec.key in ("statement", "statement_ccy"):
            if spec.key == "statement_ccy" and q.asset_name not in {n for _, n in ASSETS}:
                return []  # unknown filter value -> no rows
            snap = self._snapshot_at_clock()
            return [(a, snap[a.id]) for a in accounts]
        if spec.key == "open_positions":
            snap = self._snapshot_at_clock()
            rows = [row for a in accounts for row in snap[a.id]["open"]]
            rows.sort(key=lambda r: r[0].id)
            return rows
        if spec.key in ("trades", "positions_history"):
            return self._visible_fills(q.accounts, q.start, q.end)
        return self._visible_ops(q.accounts, q.start, q.end)

    def _report_row(self, spec: _ReportSpec, item: Any, q: _Query) -> list[Any]:
        builder = {
            "statement": self._statement_row,
            "statement_ccy": self._statement_ccy_row,
            "trades": self._trade_row,
            "open_positions": self._open_position_row,
            "positions_history": self._position_event_row,
            "operations": self._operation_row,
        }[spec.key]
        return builder(item, q)

    def _statement_row(self, item: tuple[_Account, dict[str, Any]], q: _Query) -> list[Any]:
        acct, s = item
        m = _money
        balance, margin = s["balance"], s["margin"]
        equity = balance + s["pnl"]
        free = equity - margin
        maintain = _rdiv(margin, 2)
        risk = _rdiv(margin * 10_000, equity) if equity > 0 and margin else 0
        withdrawable = max(0, min(balance, free))
        return [
            acct.name, acct.user.login, USER_GROUPS[acct.user.group], m(balance), 0, m(s["pnl"]),
            m(equity), 0, m(free), m(margin), m(free), m(margin), m(maintain), _dec(risk, 2),
            m(withdrawable), m(margin), m(s["today_pnl"]), 0, 0, acct.ccy,
            m(s["cash_balance"]), 0, 0, 0, 0, 0, 0, "", "N/A", m(margin), 0,
            m(max(0, equity - margin)), m(maintain), 0, acct.id, 0, 0, 0,
        ]

    def _statement_ccy_row(self, item: tuple[_Account, dict[str, Any]], q: _Query) -> list[Any]:
        acct, s = item
        rate = self.world.cross(acct.ccy, q.asset_name or "USD", self._clock_ms)

        def conv(cents: int) -> Decimal | int:
            return _money(_rdiv(cents * rate, 10**CROSS_DP))

        equity = s["balance"] + s["pnl"]
        return [acct.name, acct.user.login, conv(s["balance"]), conv(equity), conv(s["margin"]),
                conv(s["pnl"]), conv(equity - s["margin"]), ""]

    def _trade_row(self, fill: _Fill, q: _Query) -> list[Any]:
        pos, inst, acct = fill.pos, fill.pos.inst, fill.pos.acct
        price, cross = _dec(fill.price, inst.dp), _dec(fill.cross, CROSS_DP)
        volume = _volume_units(pos, fill.price)
        lots = _dec(pos.lots, 2)
        return [
            acct.name, inst.name, fill.order_id, fill.trade_id, f"SIM-{fill.trade_id}",
            "SimRoute", "Buy" if fill.buy else "Sell", self._fmt(fill.t), price, lots, cross,
            _money(pos.pnl if fill.is_close else 0), _money(fill.fee), price,
            _dec(volume, 2 + inst.dp), _money(_to_cents(volume, inst.dp, fill.cross)),
            inst.exchange, "Market", 0, 0, 0, 0, "", 0, "",
            lots if fill.buy else 0, 0 if fill.buy else lots, inst.symbol_type,
            acct.trading_mode, inst.tradable_id, "", "", inst.description, inst.leverage,
            inst.lot_size, inst.counter,
        ]

    def _open_position_row(self, item: tuple[_Position, int, int, int], q: _Query) -> list[Any]:
        pos, px, pnl, margin = item
        inst, acct = pos.inst, pos.acct
        return [
            pos.id, acct.name, acct.user.login, USER_GROUPS[acct.user.group], inst.name,
            inst.group, _dec(pos.lots, 2), _dec(pos.open_px, inst.dp),
            "Buy" if pos.side > 0 else "Sell", self._fmt(pos.open_t), _dec(px, inst.dp),
            0, 0, 0, _money(pnl), 0, _money(pos.open_fee), acct.ccy, "SimRoute", _money(margin),
            "No", pos.terminal, acct.trading_mode, "", inst.exchange,
        ]

    def _position_event_row(self, fill: _Fill, q: _Query) -> list[Any]:
        pos, inst, acct = fill.pos, fill.pos.inst, fill.pos.acct
        price = _dec(fill.price, inst.dp)
        lots = _dec(pos.lots, 2)
        total_fee = pos.open_fee + (pos.close_fee if fill.is_close else 0)
        return [
            self._fmt(fill.t), acct.user.login, acct.name, acct.user.login, inst.name, pos.id,
            fill.order_id, fill.trade_id, f"SIM-{fill.trade_id}", self._fmt(pos.open_t),
            _dec(pos.open_px, inst.dp), "Buy" if fill.buy else "Sell", "Market",
            "Closed" if fill.is_close else "Opened", lots, 0 if fill.is_close else lots,
            price, price, _dec(fill.cross, CROSS_DP), 0, 0, 0, "SimRoute", 0,
            _money(fill.fee), _money(total_fee), _money(pos.pnl if fill.is_close else 0), 0,
            _money(acct.balance_at(fill.t)), self._fmt(_day_start(fill.t)), "", "No",
            pos.terminal, acct.trading_mode, "", "", inst.exchange,
        ]

    def _operation_row(self, op: _Op, q: _Query) -> list[Any]:
        fill = op.fill
        return [
            op.acct.name, op.acct.user.login, self._fmt(op.t), self._fmt(_day_start(op.t)),
            op.id, fill.order_id if fill else 0, fill.pos.id if fill else 0,
            fill.trade_id if fill else 0, OPERATION_TYPES[op.type_id], _money(op.amount),
            op.acct.ccy, op.comment, _money(op.balance), "",
        ]

    @staticmethod
    def _totals(spec: _ReportSpec, rows: list[list[Any]]) -> list[Any]:
        totals: list[Any] = []
        for index, (_, kind) in enumerate(spec.columns):
            if kind not in NUMERIC_KINDS:
                totals.append(None)
                continue
            total = sum((row[index] for row in rows), Decimal(0) if kind != "i" else 0)
            totals.append(total if total else 0)
        return totals

    # -- HTTP: app and pipeline -------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", BASE_PATH, self._entry)
        app.router.add_route("*", BASE_PATH + "/{tail:.*}", self._entry)
        app.router.add_get("/_sim/state", self._sim_state)
        app.router.add_post("/_sim/advance", self._sim_advance)
        app.router.add_post("/_sim/reset", self._sim_reset)
        return app

    async def _sim_state(self, request: web.Request) -> web.Response:
        return web.Response(body=_dumps(self.state()), content_type="application/json")

    async def _sim_advance(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", ""))
        except ValueError:
            seconds = -1.0
        if not math.isfinite(seconds) or seconds < 0:
            return _error_response(_ApiError(400))
        self.advance(seconds)
        return await self._sim_state(request)

    async def _sim_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return await self._sim_state(request)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        """Every API request: count it, run the checks, add latency, send."""
        with self._lock:
            c = self._counters
            c.requests_total += 1
            seq = c.requests_total
            c.in_flight += 1
            c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
        try:
            reply = await self._process(request, seq)
            delay = self._latency_s(seq) + reply.extra_delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            if reply.drop:
                self._count_status("drop")
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=599)  # never sent: the connection is gone
            response = _to_response(reply)
            self._count_status(str(reply.status))  # before sending: visible once received
            await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            with self._lock:
                self._counters.in_flight -= 1

    def _count_status(self, key: str) -> None:
        with self._lock:
            by_status = self._counters.responses_by_status
            by_status[key] = by_status.get(key, 0) + 1

    def _latency_s(self, seq: int) -> float:
        cfg = self.config
        jitter = 0.0
        if cfg.latency_jitter_ms > 0:
            jitter = self._fault_rng(seq, "jitter").uniform(0, cfg.latency_jitter_ms)
        return max(0.0, cfg.latency_ms + jitter) / 1000

    def _fault_rng(self, seq: int, purpose: str) -> random.Random:
        # Separate from the data RNG: a pure function of (seed, request number).
        return random.Random(f"{self.config.seed}:{purpose}:{seq}")

    async def _process(self, request: web.Request, seq: int) -> _Reply:
        tail = request.match_info.get("tail", "")
        try:
            if tail in ("v2/api-docs", "swagger-ui.html"):
                return self._dispatch(tail, request, None)  # documentation: no auth, no limits
            body = await self._read_login_body(request) if tail == "auth/token" else None
            key = self._auth_key(request, tail, body)
            self._check_rate(key, tail.split("/", 1)[0])
            fault = self._fault(seq)
            if fault is not None:
                return fault
            return self._dispatch(tail, request, body)
        except _ApiError as err:
            return self._error_reply(err)

    async def _read_login_body(self, request: web.Request) -> Any:
        if request.method != "POST":
            return None
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None

    def _auth_key(self, request: web.Request, tail: str, body: Any) -> str:
        """Stage 1: the token (or login) that identifies the caller for limiting."""
        if tail == "auth/token":
            login = body.get("login") if isinstance(body, dict) else None
            return f"login:{login if isinstance(login, str) else ''}"
        if tail == "auth/token/refresh":
            return f"refresh:{request.headers.get('token', '')}"
        token = self._bearer(request)
        with self._lock:
            expiry = self._access.get(token) if token else None
            if expiry is None or expiry <= self._token_now():
                self._access.pop(token or "", None)
                raise _ApiError(401, ERR_TOKEN)
        return f"token:{token}"

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "").strip()
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        if self.config.accept_raw_token and header:
            return header
        return None

    def _token_now(self) -> float:
        return time.monotonic() + self._token_offset_s

    def _check_rate(self, key: str, collection: str) -> None:
        """Stage 2: block and token bucket."""
        with self._lock:
            err = self._limiter.check(key, collection, time.monotonic())
            if err is not None:
                self._counters.rate_limited += 1
                raise err

    def _fault(self, seq: int) -> _Reply | None:
        """Stage 3: seeded fault injection (error_rate and fail_every_n)."""
        cfg = self.config
        with self._lock:
            self._counters.fault_stage_seen += 1
            nth = self._counters.fault_stage_seen
        rng = self._fault_rng(seq, "fault")
        roll = rng.random()
        hit = (cfg.fail_every_n > 0 and nth % cfg.fail_every_n == 0) or roll < cfg.error_rate
        if not hit:
            return None
        kind = cfg.fault_kinds[rng.randrange(len(cfg.fault_kinds))]
        with self._lock:
            self._counters.faults_injected += 1
            by_kind = self._counters.faults_by_kind
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return self._fault_reply(kind)

    def _fault_reply(self, kind: str) -> _Reply:
        if kind == "drop":
            return _Reply(status=0, drop=True)
        if kind == "html502":
            return _Reply(status=502, body=NGINX_502_HTML, content_type="text/html")
        if kind == "429":
            return self._error_reply(_ApiError(429, ERR_RATE_LIMIT, 1))
        return self._error_reply(_ApiError(int(kind)))

    def _error_reply(self, err: _ApiError) -> _Reply:
        headers = {}
        if err.retry_after is not None and self.config.retry_after_header:
            headers["Retry-After"] = str(err.retry_after)
        return _Reply(status=err.status, payload={"errors": [err.code]}, headers=headers)

    def _dispatch(self, tail: str, request: web.Request, body: Any) -> _Reply:
        """Stages 4-5: route, method, then the handler's own validation."""
        for pattern, methods in self._routes:
            match = pattern.fullmatch(tail)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                raise _ApiError(405)
            return handler(_Ctx(request, match, body))
        raise _ApiError(404)

    def _route_table(self) -> list[tuple[re.Pattern[str], dict[str, Callable[[_Ctx], _Reply]]]]:
        table: list[tuple[str, dict[str, Callable[[_Ctx], _Reply]]]] = [
            ("auth/token", {"POST": self._h_login}),
            ("auth/token/refresh", {"GET": self._h_refresh}),
            ("users", {"GET": self._h_users}),
            ("users/(?P<id>[^/]+)", {"GET": self._h_user}),
            ("users/(?P<id>[^/]+)/accounts", {"GET": self._h_user_accounts}),
            ("accounts", {"GET": self._h_accounts}),
            ("accounts/(?P<id>[^/]+)", {"GET": self._h_account}),
            ("accountOperations", {"GET": self._h_operations}),
            ("assets", {"GET": self._h_assets}),
            ("reports", {"GET": self._h_reports}),
            ("reports/(?P<id>[^/]+)", {"GET": self._h_run_report}),
            ("methods/errors", {"GET": self._h_error_info}),
            ("v2/api-docs", {"GET": self._h_api_docs}),
            ("swagger-ui.html", {"GET": self._h_swagger_ui}),
        ]
        return [(re.compile(pattern), methods) for pattern, methods in table]

    # -- HTTP: handlers ---------------------------------------------------

    def _params(self, ctx: _Ctx) -> _Params:
        return _Params(ctx.request.query, self.config)

    def _list_reply(self, items: Sequence[Any]) -> _Reply:
        if not items and self.config.empty_list_status == 204:
            return _Reply(status=204)
        return _Reply(payload=list(items))

    @staticmethod
    def _path_id(ctx: _Ctx) -> int:
        raw = ctx.match.group("id")
        if not _Params._INT.fullmatch(raw):
            raise _ApiError(400)
        return int(raw)

    def _issue_tokens(self) -> _Reply:
        cfg = self.config
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        now = self._token_now()
        self._access[access] = now + cfg.access_ttl_s
        self._refresh[refresh] = now + cfg.refresh_ttl_s
        return _Reply(payload={"accessToken": access, "refreshToken": refresh,
                               "accessTokenLifeTime": cfg.access_ttl_s,
                               "refreshTokenLifeTime": cfg.refresh_ttl_s})

    def _h_login(self, ctx: _Ctx) -> _Reply:
        body, cfg = ctx.body, self.config
        if not isinstance(body, dict):
            raise _ApiError(400)
        login, password = body.get("login"), body.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            raise _ApiError(400)
        if password != cfg.password or login not in (cfg.login, cfg.no_api_login):
            raise _ApiError(401, ERR_BAD_CREDENTIALS)
        if login == cfg.no_api_login:
            raise _ApiError(401, ERR_NO_API_ACCESS)
        with self._lock:
            self._counters.logins += 1
            return self._issue_tokens()

    def _h_refresh(self, ctx: _Ctx) -> _Reply:
        token = ctx.request.headers.get("token", "")
        with self._lock:
            expiry = self._refresh.pop(token, None)  # rotation: the old refresh token dies
            if expiry is None or expiry <= self._token_now():
                raise _ApiError(401, ERR_TOKEN)
            self._counters.refreshes += 1
            return self._issue_tokens()

    def _h_users(self, ctx: _Ctx) -> _Reply:
        p = self._params(ctx)
        login, limit, offset = p.text("login"), p.limit(), p.offset()
        users = [u for u in self.world.users if login is None or u.login == login]
        return self._list_reply([self._user_json(u) for u in _page(users, offset, limit)])

    def _h_user(self, ctx: _Ctx) -> _Reply:
        user = self.world.user_by_id.get(self._path_id(ctx))
        if user is None:
            raise _ApiError(404)
        return _Reply(payload=self._user_json(user))

    def _h_user_accounts(self, ctx: _Ctx) -> _Reply:
        user = self.world.user_by_id.get(self._path_id(ctx))
        if user is None:
            raise _ApiError(404)
        return self._list_reply([self._account_json(a) for a in user.accounts])

    def _h_accounts(self, ctx: _Ctx) -> _Reply:
        p = self._params(ctx)
        user_id, limit, offset = p.int_opt("userId"), p.limit(), p.offset()
        accounts = [a for a in self.world.accounts if user_id is None or a.user.id == user_id]
        return self._list_reply([self._account_json(a) for a in _page(accounts, offset, limit)])

    def _h_account(self, ctx: _Ctx) -> _Reply:
        acct = self.world.account_by_id.get(self._path_id(ctx))
        if acct is None:
            raise _ApiError(404)
        return _Reply(payload=self._account_json(acct))

    def _h_operations(self, ctx: _Ctx) -> _Reply:
        p = self._params(ctx)
        account_id, type_id = p.int_opt("accountId"), p.int_opt("operationTypeId")
        start, end = p.dates()
        limit, offset = p.limit(), p.offset()
        with self._lock:
            ops = self._visible_ops(self._filter_accounts(account_id, None), start, end)
        if type_id is not None:
            ops = [o for o in ops if o.type_id == type_id]
        return self._list_reply([self._op_json(o) for o in _page(ops, offset, limit)])

    def _h_assets(self, ctx: _Ctx) -> _Reply:
        p = self._params(ctx)
        limit, offset = p.limit(), p.offset()
        assets = [{"id": aid, "name": name} for aid, name in ASSETS]
        return self._list_reply(_page(assets, offset, limit))

    def _h_reports(self, ctx: _Ctx) -> _Reply:
        query = ctx.request.query
        names = query.get("name")
        # A '+' sent unencoded arrives as a space; accept both spellings.
        sort = (query.get("sort") or "+id").strip()
        field_name = sort.lstrip("+-")
        if field_name not in ("id", "name") or len(sort) - len(field_name) > 1:
            raise _ApiError(406)
        wanted = {n.strip() for n in names.split(",")} if names else None
        items = [{"name": name, "id": rid} for name, rid in self._report_ids.items()
                 if wanted is None or name in wanted]
        items.sort(key=lambda r: r[field_name], reverse=sort.startswith("-"))
        return self._list_reply(items)

    def _h_run_report(self, ctx: _Ctx) -> _Reply:
        spec = self._spec_by_id.get(self._path_id(ctx))
        if spec is None:
            raise _ApiError(404)
        p = self._params(ctx)
        start, end = p.dates()
        account_id, login = p.int_opt("accountId"), p.text("login")
        limit, offset, with_total = p.limit(), p.offset(), p.flag("isTotal")
        asset_name = p.text("assetName")
        if spec.key == "statement_ccy" and asset_name is None:
            raise _ApiError(406, ERR_FILTER_EMPTY)
        with self._lock:
            query = self._report_query(start, end, self._filter_accounts(account_id, login),
                                       asset_name)
            items = self._report_items(spec, query)
            rows = [self._report_row(spec, it, query) for it in _page(items, offset, limit)]
            all_rows = [self._report_row(spec, it, query) for it in items] if with_total else []
        headers = [c for c, _ in spec.columns]
        if self.config.report_new_column:
            headers.append(NEW_REPORT_COLUMN)
            cells = self.config.report_new_column_cells
            rows = [[*row, new_column_value(offset + i, cells)] for i, row in enumerate(rows)]
        data: list[Any] = rows
        if self.config.report_row_shape == "object":
            data = [dict(zip(headers, row, strict=True)) for row in rows]
        payload: dict[str, Any] = {"headers": headers, "data": data}
        if with_total:
            payload["total"] = self._totals(spec, all_rows) + [None] * (len(headers) - len(spec.columns))
        delay = self.config.report_latency_ms_per_1000_rows * len(rows) / 1_000_000
        return _Reply(payload=payload, extra_delay_s=delay)

    def _h_error_info(self, ctx: _Ctx) -> _Reply:
        code = ctx.request.query.get("errorId")
        if not code:
            raise _ApiError(400)
        description = ERROR_DESCRIPTIONS.get(code)
        generic = re.fullmatch(r"9\.0\.0\.(\d{3})", code)
        if description is None and generic:
            description = f"Simulator error for HTTP {generic.group(1)} (not a real TE code)"
        if description is None:
            raise _ApiError(404)
        return _Reply(payload={"errorId": code, "description": description})

    def _h_api_docs(self, ctx: _Ctx) -> _Reply:
        return _Reply(payload=_swagger_doc(ctx.request.host))

    def _h_swagger_ui(self, ctx: _Ctx) -> _Reply:
        page = (b"<!DOCTYPE html><html><head><title>Swagger UI</title></head><body>"
                b"<p>TraderEvolution BO API simulator. Spec: <a href=\"v2/api-docs\">"
                b"v2/api-docs</a></p></body></html>")
        return _Reply(body=page, content_type="text/html")


def _select(items: list[Any], times: list[int], accounts: list[_Account] | None,
            per_account: Callable[[_Account], tuple[list[Any], list[int]]],
            lo: int, hi: int, id_key: Callable[[Any], int]) -> list[Any]:
    """Items with ``lo <= t <= hi``, from the global list or the accounts' own lists."""
    if hi < lo:
        return []
    if accounts is None:
        return items[bisect.bisect_left(times, lo):bisect.bisect_right(times, hi)]
    out: list[Any] = []
    for acct in accounts:
        own, own_times = per_account(acct)
        out.extend(own[bisect.bisect_left(own_times, lo):bisect.bisect_right(own_times, hi)])
    if len(accounts) > 1:
        out.sort(key=id_key)
    return out


def _error_response(err: _ApiError) -> web.Response:
    return web.Response(status=err.status, body=_dumps({"errors": [err.code]}),
                        content_type="application/json")


def _to_response(reply: _Reply) -> web.Response:
    if reply.status == 204:
        return web.Response(status=204, headers=reply.headers)
    body = reply.body if reply.body is not None else _dumps(reply.payload)
    return web.Response(status=reply.status, body=body, content_type=reply.content_type,
                        headers=reply.headers)


def _swagger_doc(host: str) -> dict[str, Any]:
    """A minimal Swagger 2.0 description with Springfox-style operation ids."""
    ops = {
        "/auth/token": ("post", "getTokenUsingPOST", "auth"),
        "/auth/token/refresh": ("get", "refreshTokenUsingGET", "auth"),
        "/users": ("get", "getUsersUsingGET", "users"),
        "/users/{userId}": ("get", "getUserUsingGET", "users"),
        "/users/{userId}/accounts": ("get", "getUserAccountsUsingGET", "users"),
        "/accounts": ("get", "getAccountsUsingGET", "accounts"),
        "/accounts/{accountId}": ("get", "getAccountUsingGET", "accounts"),
        "/accountOperations": ("get", "getAccountOperationsUsingGET", "accountOperations"),
        "/assets": ("get", "getAssetsUsingGET", "assets"),
        "/reports": ("get", "reportsUsingGET", "reports"),
        "/reports/{reportId}": ("get", "runReportUsingGET", "reports"),
        "/methods/errors": ("get", "getErrorUsingGET", "methods"),
    }
    paths: dict[str, Any] = {}
    for path, (method, op_id, tag) in ops.items():
        params = [{"name": name, "in": "path", "required": True, "type": "integer"}
                  for name in re.findall(r"\{(\w+)\}", path)]
        paths[path] = {method: {"tags": [tag], "operationId": op_id, "parameters": params,
                                "responses": {"200": {"description": "OK"}}}}
    return {
        "swagger": "2.0",
        "info": {"title": "TraderEvolution BackOffice REST API (simulator)", "version": "sim"},
        "host": host,
        "basePath": BASE_PATH,
        "schemes": ["http"],
        "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization",
                                           "in": "header"}},
        "paths": paths,
    }


# --------------------------------------------------------------------------- serving


@contextmanager
def run_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                  *, ssl_context: Any = None) -> Iterator[str]:
    """Serve ``app`` on its own event loop in a daemon thread; yield the root URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            loop.run_until_complete(site.start())
            box["port"] = runner.addresses[0][1]
        except BaseException as exc:  # surfaced in the caller's thread
            box["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    thread = threading.Thread(target=main, name="te-simulator", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise RuntimeError("simulator failed to start") from box["error"]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://{host}:{box['port']}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@contextmanager
def te_simulator(
    config: TraderEvolutionSimConfig | None = None, **overrides: Any
) -> Iterator[tuple[str, TraderEvolutionSimulator]]:
    """Run a simulator in a background thread; yield ``(base_url, simulator)``."""
    cfg = dataclasses.replace(config or TraderEvolutionSimConfig(), **overrides)
    simulator = TraderEvolutionSimulator(cfg)
    with run_in_thread(simulator.make_app()) as root:
        yield root + BASE_PATH, simulator


__all__ = [
    "ALL_FAULTS",
    "BASE_PATH",
    "REPORT_COLUMNS",
    "REPORT_DEMO_IDS",
    "TraderEvolutionSimConfig",
    "TraderEvolutionSimulator",
    "run_in_thread",
    "te_simulator",
]
