"""A deterministic simulator of the Tradesync REST API (read-only subset).

The data is a pure function of the seed, the size knobs and a virtual clock:

* account ids start at 1 241 400 with seeded gaps of 1-5; every account field
  is derived on demand from ``(seed, id)`` by a counter-based hash, so a
  million accounts cost two int64 arrays, not a million dicts;
* trade rows (deposits, withdrawals, buys and sells) are materialised up front
  as numpy columns, sorted by ``created_at`` and numbered from 37 000 000 with
  gaps of 1-20; balances, equity and margins are aggregated from them per clock;
* money is kept as integer cents and served as JSON numbers whose text is the
  exact 2-decimal value (``cents / 100`` through orjson); zero is served as ``0``.

Worked example::

    sim = TradesyncSimulator(TradesyncSimConfig(accounts=3, trades_per_account=2))
    with run_simulator_in_thread(sim.make_app) as base_url:
        # GET {base_url}/accounts?order=asc&limit=2  (HTTP Basic sim-key:sim-secret)
        # -> {"result":"success","status":200,
        #     "meta":{"count":2,"limit":2,"order":"asc","last_id":1241403},"data":[...]}
        ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import orjson
from aiohttp import web

from exporter.sandbox._sim_base import (
    ALL_FAULTS,
    ChaosPlanner,
    KeyedRateLimiter,
    RequestPlan,
    RequestStats,
    drop_connection,
    html_502_response,
    mix64,
    run_simulator_in_thread,
)

__all__ = [
    "ALL_FAULTS",
    "DRIFT_KINDS",
    "TradesyncSimConfig",
    "TradesyncSimulator",
    "tradesync_simulator",
]

ACCOUNT_ID_START = 1_241_400
TRADE_ID_START = 37_000_000
TICKET_START = 70_000_000
ANALYSIS_ID_START = 7_000_000
DAILY_ID_FACTOR = 100_000  # daily id = (account index + 1) * factor + day offset
MONTHLY_ID_FACTOR = 10_000
HUGE_BALANCE_CENTS = 9_999_999_999_999  # 99999999999.99: breaks float64 -> decimal(…, 8) casts
DRIFT_KINDS = ("new_field", "null_field", "int_gets_decimals", "decimal_na", "typed_fields")
# typed_fields: every account gains fields of each JSON type (see _typed_fields); the strings test
# unescaping, the number texts exact decimals (26 integer digits, exponents, -0.0, trailing zeros)
KYC_TIERS = (
    "tier-1", "tier-2", 'Stufe "Gold" \u2013 \u00fc', "back\\slash / sol\u00e9", "line\nbreak\ttab",
    "emoji \U0001f680 \u2028", "12.50", "", "null", "\x01ctl",
)
SPECIAL_LEVELS = ("12345678901234567890123456.12", "1.5e3", "-2.5E-2", "-0.0", "0", "7")
CODE_CASES = ("upper", "lower", "mixed")
DEFAULT_PAGE_CACHE_BYTES = 64 * 2**20
NEVER = np.iinfo(np.int64).max // 4  # close_time of trades still open at the end of the timeline
DAY = 86_400

# (name, digits, contract size, start price, quote currency in USD, calc mode, pays commission)
SYMBOLS: tuple[tuple[str, int, int, float, float, str, bool], ...] = (
    ("EURUSD", 5, 100_000, 1.0850, 1.0, "forex", True),
    ("GBPUSD", 5, 100_000, 1.2650, 1.0, "forex", True),
    ("USDJPY", 3, 100_000, 148.50, 1 / 150, "forex", True),
    ("XAUUSD", 2, 100, 2030.00, 1.0, "cfd", True),
    ("US30", 1, 1, 38_500.0, 1.0, "cfd", False),
    ("BTCUSD", 2, 1, 43_000.00, 1.0, "cfd", False),
)
_SYM_VOL = np.array([0.00012, 0.00013, 0.00012, 0.00018, 0.00015, 0.0006])  # log-sigma per minute
_SYM_NAME = [s[0] for s in SYMBOLS] + [""]  # index -1 (balance operations) maps to ""
_SYM_MODE = [s[5] for s in SYMBOLS] + [""]
_SYM_DIGITS = np.array([s[1] for s in SYMBOLS] + [0], dtype=np.int64)
_SYM_CONTRACT = np.array([s[2] for s in SYMBOLS] + [0], dtype=np.float64)
_SYM_QUOTE_USD = np.array([s[4] for s in SYMBOLS] + [0.0])
_SYM_COMMISSION = np.array([s[6] for s in SYMBOLS] + [False])

CURRENCIES = ("USD", "EUR", "GBP")
_USD_TO = np.array([1.0, 0.92, 0.79])  # fixed FX: 1 USD in each account currency
LEVERAGES = np.array([30, 100, 200, 500], dtype=np.int64)
SUFFIXES = ("", ".r", "m", ".pro")
KIND_NAMES = ("buy", "sell", "deposit", "withdrawal")
BUY, SELL, DEPOSIT, WITHDRAWAL = range(4)
COMMENTS = ("", "", "", "", "scalper v2", "grid#3", "manual", "Initial deposit", "Deposit", "Withdrawal")
_C_INITIAL, _C_DEPOSIT, _C_WITHDRAWAL = 7, 8, 9
STATUSES = ("connection_ok", "connection_slow", "connection_lost", "attempt_failed", "installing")
LOGIN_RESPONSES = ("long_success", "long_success", "no_connection", "invalid_account", None)
FIRST_NAMES = ("Alice", "Bruno", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia",
               "Kofi", "Lena", "Marco", "Nadia", "Omar", "Petra", "Quinn", "Rosa", "Sven", "Tariq")
LAST_NAMES = ("Novak", "Silva", "Wong", "Meyer", "Okafor", "Rossi", "Kowalski", "Haddad", "Larsen",
              "Tanaka", "Dubois", "Ivanova", "Mensah", "Fischer", "Costa", "Nair", "Byrne", "Sato")

# Brokers are one row per (name, platform); servers reference them.  (id, name, application)
BROKERS = (
    (1, "Sim Markets Ltd", "mt4"), (2, "Sim Markets Ltd", "mt5"), (3, "Sim Prime", "mt4"), (4, "Sim Prime", "mt5"),
)
# (id, broker_id, name, is_demo)
SERVERS = (
    (101, 1, "SimMarkets-Live01", False), (102, 1, "SimMarkets-Live02", False), (103, 1, "SimMarkets-Demo01", True),
    (104, 2, "SimMarkets-Live05", False), (105, 2, "SimMarkets-Demo05", True),
    (201, 3, "SimPrime-Live01", False), (202, 3, "SimPrime-Demo01", True),
    (203, 4, "SimPrime-Live02", False), (204, 4, "SimPrime-Demo02", True),
)
_LIVE_SERVERS = np.array([i for i, s in enumerate(SERVERS) if not s[3]])
_DEMO_SERVERS = np.array([i for i, s in enumerate(SERVERS) if s[3]])
_BROKER_BY_ID = {b[0]: b for b in BROKERS}
_CATALOG_CREATED = int(datetime(2019, 6, 3, 9, 30, tzinfo=UTC).timestamp())

MESSAGES = {
    "AUTHORISATION_FAILED": "Authorisation header invalid",
    "NOT_AUTHORISED": "Authorisation failed",
    "FORBIDDEN": "Insufficient permissions to access this resource",
    "NOT_FOUND": "Resource does not exist",
    "METHOD_NOT_ALLOWED": "Method not allowed",
    "INVALID_CONTENT_TYPE": "Request header 'Content-Type: application/json' required",
    "VALIDATION_FAIL": "Input validation error",
    "TOO_MANY_REQUESTS": "Too many requests",
    "ERROR": "System error has occurred",
    "MAINTENANCE_MODE": "Maintenance mode enabled",
}

ACCOUNT_KEYS = (
    "id", "created_at", "updated_at", "restored_at", "last_ping", "account_name", "client_name",
    "account_number", "password", "broker_server_id", "broker", "server", "suffix", "currency",
    "leverage", "status", "login_response", "trade_mode", "is_demo", "type", "application",
    "modify_disabled", "equity_protect", "equity_protect_value", "balance", "credit", "equity",
    "free_margin", "used_margin", "open_trades", "open_trades_lots", "pending_orders",
    "pending_orders_lots", "daily_profit", "weekly_profit", "monthly_profit", "total_profit",
)
TRADE_KEYS = (
    "id", "account_id", "ticket", "magic", "created_at", "updated_at", "open_time", "close_time",
    "state", "type", "symbol", "comment", "lots", "open_price", "stop_loss", "take_profit",
    "close_price", "commission", "swap", "profit", "digits", "tick_value", "tick_size",
    "alt_tick_value", "profit_calc_mode",
)


@dataclass
class TradesyncSimConfig:
    """Every knob of the simulator (contract section 8 plus test-only extras)."""

    seed: int = 42
    accounts: int = 25
    trades_per_account: int = 200
    history_days: int = 90
    future_days: int = 30
    sim_start: datetime = datetime(2025, 1, 31, 12, tzinfo=UTC)
    api_keys: dict[str, str] = field(default_factory=lambda: {"sim-key": "sim-secret"})
    forbidden_keys: frozenset[str] = frozenset()
    max_limit: int = 1000
    strict_limit: bool = False
    latency_ms: float = 0
    latency_jitter_ms: float = 0
    error_rate: float = 0.0
    fail_every_n: int = 0
    maintenance: bool = False
    rate_limit_rps: float = 10
    rate_limit_burst: int = 20
    retry_after_header: bool = False
    code_case: str = "upper"
    fault_kinds: tuple[str, ...] = ("500",)
    drift: str | None = None
    huge_values: bool = True
    new_accounts_per_hour: int = 0
    # schema drift on trades (test-only): every trade carries ``strategy``, a field the contract
    # lacks. A data knob like the others: the same seed with and without it serves the same trades
    trade_new_field: bool = False

    def __post_init__(self) -> None:
        if self.code_case not in CODE_CASES:
            raise ValueError(f"code_case must be one of {CODE_CASES}")
        if self.drift is not None and self.drift not in DRIFT_KINDS:
            raise ValueError(f"drift must be None or one of {DRIFT_KINDS}")
        if not set(self.fault_kinds) <= set(ALL_FAULTS) or not self.fault_kinds:
            raise ValueError(f"fault_kinds must be a non-empty subset of {ALL_FAULTS}")
        if self.sim_start.tzinfo is None:
            raise ValueError("sim_start must be timezone-aware")
        if min(self.accounts, self.trades_per_account, self.history_days, self.future_days) < 0:
            raise ValueError("size knobs must be >= 0")
        if self.max_limit < 1:
            raise ValueError("max_limit must be >= 1")


# --------------------------------------------------------------------------- hashing


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _Hasher:
    """Counter-based random fields per account id: field ``f`` of id ``i`` never depends on others."""

    def __init__(self, seed: int, ids: np.ndarray) -> None:
        self._base = _splitmix(ids.astype(np.uint64) ^ np.uint64(mix64(seed, 0xACC0)))

    def bits(self, field_no: int) -> np.ndarray:
        return _splitmix(self._base ^ np.uint64(mix64(field_no)))

    def uniform(self, field_no: int) -> np.ndarray:
        return (self.bits(field_no) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)

    def below(self, field_no: int, k: int) -> np.ndarray:
        return (self.bits(field_no) % np.uint64(k)).astype(np.int64)


# --------------------------------------------------------------------------- columns


@dataclass
class _Dec:
    """A decimal column: ``ints / 10**scale``, optionally null where ``null`` is set."""

    ints: np.ndarray
    scale: int | np.ndarray = 2
    null: np.ndarray | None = None

    def json(self) -> list[Any]:
        # Correctly rounded division gives the double whose shortest repr is the exact decimal text.
        out: list[Any] = (self.ints / (10.0**self.scale)).tolist()
        for i in np.flatnonzero(self.ints == 0).tolist():
            out[i] = 0  # the API writes zero amounts as the integer 0
        return self._nulls(out)

    def decimals(self) -> list[Any]:
        ints = self.ints.tolist()
        scales = self.scale.tolist() if isinstance(self.scale, np.ndarray) else [self.scale] * len(ints)
        out = [Decimal(v).scaleb(-s) if v else 0 for v, s in zip(ints, scales, strict=True)]
        return self._nulls(out)

    def _nulls(self, out: list[Any]) -> list[Any]:
        if self.null is not None:
            for i in np.flatnonzero(self.null).tolist():
                out[i] = None
        return out


@dataclass
class _Ts:
    """A UTC timestamp column in epoch seconds, served as ``2025-04-28T10:11:50Z``."""

    secs: np.ndarray
    null: np.ndarray | None = None
    _text: list[str | None] | None = field(default=None, init=False, repr=False)

    def strings(self) -> list[str | None]:
        # Memoised: one column object may back two fields (updated_at and last_ping).
        if self._text is None:
            self._text = self._format()
        return self._text

    def _format(self) -> list[str | None]:
        safe = self.secs if self.null is None else np.where(self.null, 0, self.secs)
        text = np.datetime_as_string(safe.astype("datetime64[s]"), unit="s").tolist()
        out: list[str | None] = [s + "Z" for s in text]
        if self.null is not None:
            for i in np.flatnonzero(self.null).tolist():
                out[i] = None
        return out


Column = np.ndarray | list | _Dec | _Ts


def _values(col: Column, as_decimal: bool) -> list[Any]:
    if isinstance(col, _Dec):
        return col.decimals() if as_decimal else col.json()
    if isinstance(col, _Ts):
        return col.strings()
    if isinstance(col, np.ndarray):
        return col.tolist()
    return col


def _rows(keys: tuple[str, ...], cols: list[Column], as_decimal: bool) -> list[dict[str, Any]]:
    lists = [_values(c, as_decimal) for c in cols]
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*lists, strict=True)]


def _structs(struct: type[msgspec.Struct], cols: list[Column]) -> list[msgspec.Struct]:
    """The serving fast path: msgspec structs encode about 3x faster than dicts via orjson."""
    return [struct(*vals) for vals in zip(*(_values(c, False) for c in cols), strict=True)]


def _row_struct(name: str, keys: tuple[str, ...]) -> type[msgspec.Struct]:
    return msgspec.defstruct(name, [(k, Any) for k in keys], gc=False)  # scalar fields only: skip GC tracking


_ENCODER = msgspec.json.Encoder()


def _iso(secs: int) -> str:
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())


# --------------------------------------------------------------------------- account statics

_F = {name: i + 1 for i, name in enumerate((
    "currency", "leverage", "demo", "server", "suffix", "password", "first", "last", "status",
    "status_kind", "eq_protect", "eq_value", "type", "modify", "credit", "pending", "pending_lots",
    "restored", "ping", "risk", "balance", "open", "open_lots", "floating", "margin", "total",
    "monthly", "weekly", "daily", "zero", "kyc", "margin", "verified",
))}


@dataclass
class _Statics:
    """Clock-independent account attributes, vectorised over a block of accounts."""

    currency: np.ndarray
    leverage: np.ndarray
    server: np.ndarray
    suffix: np.ndarray
    credit: np.ndarray
    account_number: np.ndarray
    hasher: _Hasher


def _account_statics(seed: int, idx: np.ndarray, ids: np.ndarray, huge_values: bool) -> _Statics:
    h = _Hasher(seed, ids)
    u = h.uniform(_F["currency"])
    currency = np.where(u < 0.7, 0, np.where(u < 0.9, 1, 2))
    demo = h.uniform(_F["demo"]) < 0.1
    live_pick = _LIVE_SERVERS[h.below(_F["server"], len(_LIVE_SERVERS))]
    demo_pick = _DEMO_SERVERS[h.below(_F["server"], len(_DEMO_SERVERS))]
    credit = np.where(h.uniform(_F["credit"]) < 0.1, 50_000, 0).astype(np.int64)
    if huge_values:
        credit = np.where(idx == 1, 10, credit)  # 0.1 is not exact in binary floating point
    # A fixed odd multiplier coprime to the modulus makes account numbers unique 7-8 digit logins.
    number = 1_000_000 + (idx + mix64(seed, 7) % 98_000_000) * 2_654_435_761 % 98_000_000
    return _Statics(
        currency=currency,
        leverage=LEVERAGES[h.below(_F["leverage"], len(LEVERAGES))],
        server=np.where(demo, demo_pick, live_pick),
        suffix=h.below(_F["suffix"], len(SUFFIXES)),
        credit=credit,
        account_number=number,
        hasher=h,
    )


@dataclass
class _Money:
    """Account money fields in cents (lots in hundredths) for a block of accounts."""

    balance: np.ndarray
    floating: np.ndarray
    used_margin: np.ndarray
    open_trades: np.ndarray
    open_lots: np.ndarray
    daily: np.ndarray
    weekly: np.ndarray
    monthly: np.ndarray
    total: np.ndarray


def _snapshot_money(h: _Hasher, idx: np.ndarray, huge_values: bool) -> _Money:
    """Account-only mode (no trade rows): a plausible, internally consistent snapshot per id."""
    balance = np.rint(np.exp(np.log(1e5) + h.uniform(_F["balance"]) * np.log(1e3))).astype(np.int64)
    open_trades = np.where(h.uniform(_F["open"]) < 0.4, 0, 1 + h.below(_F["open"], 8))
    open_lots = open_trades * (1 + h.below(_F["open_lots"], 100))
    floating = np.where(open_trades > 0, np.rint((h.uniform(_F["floating"]) - 0.5) * 0.1 * balance), 0)
    margin = np.rint(open_lots * (200 + 1800 * h.uniform(_F["margin"])))
    zero = h.below(_F["zero"], 8)  # some profit fields are exactly 0, served as the integer 0

    def pnl(name: int, spread: float, zero_bit: int) -> np.ndarray:
        value = np.rint((h.uniform(name) - 0.35) * spread * balance)
        return np.where(zero & zero_bit, 0, value).astype(np.int64)

    if huge_values:
        balance = np.where(idx == 0, HUGE_BALANCE_CENTS, balance)
        open_trades = np.where(idx == 1, 1, open_trades)
        open_lots = np.where(idx == 1, 7, open_lots)
    return _Money(balance, floating.astype(np.int64), margin.astype(np.int64), open_trades, open_lots,
                  pnl(_F["daily"], 0.01, 1), pnl(_F["weekly"], 0.04, 2), pnl(_F["monthly"], 0.1, 4),
                  pnl(_F["total"], 0.6, 0))


# --------------------------------------------------------------------------- trade rows


@dataclass
class _BookView:
    """The trade book seen at one clock value (rows ``[0, n_visible)`` are visible)."""

    clock: int
    n_visible: int
    closed: np.ndarray
    profit: np.ndarray
    swap: np.ndarray
    net: np.ndarray
    close_pts: np.ndarray
    money: _Money
    _analysis: dict[str, np.ndarray] | None = None


class _TradeBook:
    """All trade and balance-operation rows, in id order, as numpy columns."""

    def __init__(self, cfg: TradesyncSimConfig, created: np.ndarray, n_base: int,
                 statics: _Statics, t0: int, end: int) -> None:
        self.n_accounts = len(created)
        self.t0, self.end = t0, end
        self._walk_step = max(60, math.ceil((end - t0) / 500_000))
        self._walk = self._price_walk(cfg.seed, (end - t0) // self._walk_step + 2)
        # Existing and later accounts draw from separate streams, so adding new ones leaves the others alone.
        groups = [_generate_rows(cfg, np.random.default_rng([cfg.seed, 21]), np.arange(n_base), created, end,
                                 cfg.huge_values)]
        if len(created) > n_base:
            later = np.arange(n_base, len(created))
            groups.append(_generate_rows(cfg, np.random.default_rng([cfg.seed, 22]), later, created, end, False))
        cols = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
        order = np.lexsort((np.arange(len(cols["created"])), cols["account"], cols["created"]))
        for key in cols:
            cols[key] = cols[key][order]
        self._assign(cols, cfg.seed, statics)

    # ---- generation -------------------------------------------------------

    def _price_walk(self, seed: int, points: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 20])
        walk = np.empty((len(SYMBOLS), points), dtype=np.int64)
        scale = math.sqrt(self._walk_step / 60)
        for s, (_, digits, _, start, *_rest) in enumerate(SYMBOLS):
            log_px = math.log(start) + np.cumsum(rng.standard_normal(points) * _SYM_VOL[s] * scale)
            walk[s] = np.rint(np.exp(log_px) * 10**digits)
        return walk

    def price_at(self, sym: np.ndarray, when: np.ndarray | int) -> np.ndarray:
        pos = np.clip((np.asarray(when) - self.t0) // self._walk_step, 0, self._walk.shape[1] - 1)
        return self._walk[np.clip(sym, 0, None), pos]

    def _assign(self, cols: dict[str, np.ndarray], seed: int, statics: _Statics) -> None:
        rng = np.random.default_rng([seed, 23])
        n = len(cols["created"])
        self.ids = TRADE_ID_START + np.concatenate(([0], np.cumsum(rng.integers(1, 21, max(n - 1, 0)))))[:n]
        self.tickets = TICKET_START + np.cumsum(rng.integers(1, 4, n))
        self.account = cols["account"]
        self.kind = cols["kind"]
        self.sym = cols["sym"]
        self.created = cols["created"]
        self.open_t = cols["open_t"]
        self.close_t = cols["close_t"]
        self.lots = cols["lots"]
        self.swap_rate = cols["swap_rate"]
        self.magic = cols["magic"]
        self.comment = cols["comment"]
        self.digits = _SYM_DIGITS[self.sym]
        self.open_pts = np.where(self.sym >= 0, self.price_at(self.sym, self.open_t), 0)
        self.sl = _stop_level(self.open_pts, cols["sl_frac"], self.kind, -1)
        self.tp = _stop_level(self.open_pts, cols["tp_frac"], self.kind, +1)
        fx = _SYM_QUOTE_USD[self.sym] * _USD_TO[statics.currency[self.account]]
        self.cents_per_point = _SYM_CONTRACT[self.sym] * fx * self.lots / 10.0**self.digits
        self.tick_value = np.rint(_SYM_CONTRACT[self.sym] * fx / 10.0**self.digits * 1e5).astype(np.int64)
        self.direction = np.where(self.kind == SELL, -1, 1)
        self.commission = np.where(_SYM_COMMISSION[self.sym] & (self.kind <= SELL), -7 * self.lots, 0)
        final_pts = self.price_at(self.sym, np.minimum(self.close_t, self.end))
        trade_pnl = np.rint((final_pts - self.open_pts) * self.direction * self.cents_per_point).astype(np.int64)
        self.final_profit = np.where(self.kind <= SELL, trade_pnl, cols["amount"])
        self.final_close_pts = np.where(self.kind <= SELL, final_pts, 0)
        # Margin = lots x contract x price x fx / leverage, in cents (lots are hundredths).
        notional = self.lots * _SYM_CONTRACT[self.sym] * self.open_pts / 10.0**self.digits * fx
        self.margin = np.rint(notional / statics.leverage[self.account]).astype(np.int64)
        by_account = np.argsort(self.account, kind="stable")
        self._by_account = by_account
        self._account_start = np.searchsorted(self.account[by_account], np.arange(self.n_accounts + 1))

    # ---- queries ----------------------------------------------------------

    def rows_of(self, account_index: int) -> np.ndarray:
        """Row positions of one account, ascending (hence ascending id)."""
        lo, hi = self._account_start[account_index], self._account_start[account_index + 1]
        return self._by_account[lo:hi]

    def view(self, clock: int) -> _BookView:
        n = int(np.searchsorted(self.created, clock, side="right"))
        close_t, kind = self.close_t[:n], self.kind[:n]
        closed = close_t <= clock
        is_open = ~closed & (kind <= SELL)
        clock_pts = self.price_at(self.sym[:n], clock)
        close_pts = np.where(closed, self.final_close_pts[:n], clock_pts)
        floating = np.rint((clock_pts - self.open_pts[:n]) * self.direction[:n] * self.cents_per_point[:n])
        profit = np.where(is_open, floating.astype(np.int64), self.final_profit[:n])
        nights = np.maximum(np.where(closed, close_t, clock) // DAY - self.open_t[:n] // DAY, 0)
        swap = np.rint(self.swap_rate[:n] * self.lots[:n] / 100 * nights).astype(np.int64)
        net = profit + self.commission[:n] + swap
        money = self._money(clock, n, closed, is_open, net)
        return _BookView(clock, n, closed, profit, swap, net, close_pts, money)

    def _sum(self, rows: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
        acc = self.account[:n][rows]
        w = None if weights is None else weights[rows]
        # Float sums are exact here: every partial sum of cents stays far below 2**53.
        return np.rint(np.bincount(acc, weights=w, minlength=self.n_accounts)).astype(np.int64)

    def _money(self, clock: int, n: int, closed: np.ndarray, is_open: np.ndarray, net: np.ndarray) -> _Money:
        trade_closed = closed & (self.kind[:n] <= SELL)
        close_t = self.close_t[:n]
        day = clock - clock % DAY
        week = day - ((clock // DAY + 3) % 7) * DAY  # 1970-01-01 was a Thursday; weeks start on Monday
        moment = datetime.fromtimestamp(clock, UTC)
        month = _epoch(datetime(moment.year, moment.month, 1, tzinfo=UTC))
        return _Money(
            balance=self._sum(closed, n, net),
            floating=self._sum(is_open, n, net),
            used_margin=self._sum(is_open, n, self.margin[:n]),
            open_trades=self._sum(is_open, n),
            open_lots=self._sum(is_open, n, self.lots[:n]),
            daily=self._sum(trade_closed & (close_t >= day), n, net),
            weekly=self._sum(trade_closed & (close_t >= week), n, net),
            monthly=self._sum(trade_closed & (close_t >= month), n, net),
            total=self._sum(trade_closed, n, net),
        )

    def analysis(self, view: _BookView) -> dict[str, np.ndarray]:
        """Per-account statistics over closed buy/sell rows (cached on the view)."""
        if view._analysis is not None:
            return view._analysis
        n = view.n_visible
        kind, closed, net = self.kind[:n], view.closed, view.net
        trade = closed & (kind <= SELL)
        won, lost = trade & (net > 0), trade & (net < 0)
        out = {
            "profit_loss": self._sum(trade, n, net),
            "total_deposits": self._sum(closed & (kind == DEPOSIT), n, view.profit),
            "total_withdrawals": -self._sum(closed & (kind == WITHDRAWAL), n, view.profit),
            "total_lots": self._sum(trade, n, self.lots[:n]),
            "total_commission": self._sum(trade, n, self.commission[:n]),
            "total_swap": self._sum(trade, n, view.swap),
            "total_trades": self._sum(trade, n),
            "total_longs": self._sum(trade & (kind == BUY), n),
            "total_shorts": self._sum(trade & (kind == SELL), n),
            "total_trades_won": self._sum(won, n),
            "total_trades_lost": self._sum(lost, n),
            "sum_win": self._sum(won, n, net),
            "sum_loss": self._sum(lost, n, net),
            "longs_won": self._sum(won & (kind == BUY), n),
            "shorts_won": self._sum(won & (kind == SELL), n),
        }
        out.update(self._extremes(np.flatnonzero(trade), net))
        view._analysis = out
        return out

    def _extremes(self, rows: np.ndarray, net: np.ndarray) -> dict[str, np.ndarray]:
        best, worst = np.zeros(self.n_accounts, np.int64), np.zeros(self.n_accounts, np.int64)
        best_t, worst_t = np.full(self.n_accounts, -1), np.full(self.n_accounts, -1)
        if len(rows):
            acc = self.account[rows]
            order = rows[np.lexsort((net[rows], acc))]  # by account, then by P&L ascending
            acc_sorted = self.account[order]
            first = np.flatnonzero(np.r_[True, acc_sorted[1:] != acc_sorted[:-1]])
            last = np.r_[first[1:] - 1, len(order) - 1]
            groups = acc_sorted[first]
            worst[groups], worst_t[groups] = net[order[first]], self.close_t[order[first]]
            best[groups], best_t[groups] = net[order[last]], self.close_t[order[last]]
        return {"best_trade": best, "worst_trade": worst, "best_date": best_t, "worst_date": worst_t}


def _generate_rows(cfg: TradesyncSimConfig, rng: np.random.Generator, acc: np.ndarray, created: np.ndarray,
               end: int, huge: bool) -> dict[str, np.ndarray]:
    """Deposits, withdrawals and trades of a group of accounts, unsorted."""
    n = len(acc)
    dep_t = created[acc] + rng.integers(60, 3601, n)
    dep_amt = np.rint(np.exp(rng.uniform(math.log(1_000), math.log(100_000), n)) * 100).astype(np.int64)
    n_ops = rng.integers(0, 4, n)
    n_trades = np.rint(cfg.trades_per_account * rng.uniform(0.5, 1.5, n)).astype(np.int64)
    if huge and n:
        # Account 0 holds one exact huge deposit; account 1 one open 0.07-lot trade for ever.
        dep_amt[0] = HUGE_BALANCE_CENTS
        n_ops[: min(n, 2)] = 0
        n_trades[: min(n, 2)] = 0
    initial = _balance_rows(acc, dep_t, dep_amt, np.full(n, _C_INITIAL), rng)
    ops = _extra_balance_ops(rng, acc, n_ops, dep_t, dep_amt, end)
    lot_cap = np.clip(dep_amt // 20_000, 1, 500)  # bigger deposits trade bigger: 0.01 lot per $200
    trades = _generate_trades(rng, np.repeat(acc, n_trades), np.repeat(dep_t, n_trades),
                              np.repeat(lot_cap, n_trades), end)
    parts = [initial, ops, trades]
    if huge and n >= 2:
        parts.append(_perpetual_trade(acc[1], int(dep_t[1]) + 600))
    return {k: np.concatenate([p[k] for p in parts]) for k in initial}


def _empty_rows(n: int) -> dict[str, np.ndarray]:
    z = np.zeros(n, dtype=np.int64)
    return {"account": z.copy(), "kind": z.copy(), "sym": z - 1, "created": z.copy(), "open_t": z.copy(),
            "close_t": z.copy(), "lots": z.copy(), "amount": z.copy(), "swap_rate": np.zeros(n),
            "sl_frac": np.zeros(n), "tp_frac": np.zeros(n), "magic": z.copy(), "comment": z.copy()}


def _balance_rows(acc: np.ndarray, when: np.ndarray, amount: np.ndarray, comment: np.ndarray,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = _empty_rows(len(acc))
    rows.update(account=acc, kind=np.where(amount < 0, WITHDRAWAL, DEPOSIT), open_t=when, close_t=when,
                created=when + rng.integers(1, 4, len(acc)), amount=amount, comment=comment)
    return rows


def _extra_balance_ops(rng: np.random.Generator, acc: np.ndarray, n_ops: np.ndarray, dep_t: np.ndarray,
                       dep_amt: np.ndarray, end: int) -> dict[str, np.ndarray]:
    owner = np.repeat(np.arange(len(acc)), n_ops)
    start = dep_t[owner]
    when = start + (rng.random(len(owner)) * np.maximum(end - start, 0)).astype(np.int64)
    withdraw = rng.random(len(owner)) < 0.4
    top_up = np.rint(np.exp(rng.uniform(math.log(100), math.log(10_000), len(owner))) * 100)
    taken = -np.rint(dep_amt[owner] * rng.uniform(0.05, 0.2, len(owner)))
    amount = np.where(withdraw, taken, top_up).astype(np.int64)
    comment = np.where(withdraw, _C_WITHDRAWAL, _C_DEPOSIT)
    return _balance_rows(acc[owner], when, amount, comment, rng)


def _generate_trades(rng: np.random.Generator, acc: np.ndarray, dep_t: np.ndarray, lot_cap: np.ndarray,
                     end: int) -> dict[str, np.ndarray]:
    m = len(acc)
    lo = dep_t + 60
    open_t = lo + (rng.random(m) * np.maximum(end - 60 - lo, 0)).astype(np.int64)
    hold = np.exp(rng.uniform(math.log(60), math.log(10 * DAY), m)).astype(np.int64)  # log-uniform 1 min-10 days
    close_t = np.where(open_t + hold > end, NEVER, open_t + hold)
    lots = np.clip(np.rint(np.exp(rng.random(m) * np.log(lot_cap))), 1, lot_cap).astype(np.int64)  # skewed small
    rows = {
        "account": acc, "kind": np.where(rng.random(m) < 0.5, BUY, SELL), "sym": rng.integers(0, len(SYMBOLS), m),
        "created": open_t + rng.integers(1, 4, m), "open_t": open_t, "close_t": close_t, "lots": lots,
        "amount": np.zeros(m, np.int64), "swap_rate": rng.uniform(-50, 20, m),
        "sl_frac": np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0.002, 0.02, m)),
        "tp_frac": np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0.002, 0.03, m)),
        "magic": np.where(rng.random(m) < 0.7, 0, rng.integers(1000, 100_000, m)),
        "comment": rng.integers(0, 7, m),
    }
    keep = end - 60 - lo > 60  # accounts created too close to the end of the timeline get no trades
    return {k: v[keep] for k, v in rows.items()}


def _perpetual_trade(account: int, when: int) -> dict[str, np.ndarray]:
    rows = _empty_rows(1)
    rows.update(account=np.array([account]), kind=np.array([BUY]), sym=np.array([0]), open_t=np.array([when]),
                created=np.array([when + 1]), close_t=np.array([NEVER]), lots=np.array([7]))
    return rows


def _stop_level(open_pts: np.ndarray, frac: np.ndarray, kind: np.ndarray, side: int) -> np.ndarray:
    sign = np.where(kind == SELL, -side, side)
    level = open_pts + sign * np.rint(open_pts * frac).astype(np.int64)
    return np.where((frac > 0) & (kind <= SELL), level, 0)


# --------------------------------------------------------------------------- requests


class _Reject(Exception):
    """A request that ends in a Tradesync error envelope."""

    def __init__(self, status: int, code: str, errors: dict[str, list[str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.errors, self.headers = status, code, errors, headers


@dataclass(frozen=True)
class _Route:
    kind: str  # accounts, account, trades, trade, analyses, analysis, dailies, monthlies, brokers, servers
    path_id: str | None = None


@dataclass(frozen=True)
class _Query:
    order: str
    limit: int
    last_id: int | None
    filters: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        return dict(self.filters).get(name)


_LIST_PARAMS = {
    "accounts": (), "trades": ("account_id", "account_ids", "state", "id", "ids"), "analyses": (),
    "dailies": ("start_date", "end_date"), "monthlies": ("start_date", "end_date"),
    "brokers": (), "servers": ("application",),
}
_INT_RE = re.compile(r"-?[0-9]+\Z")
_INT_LIST_RE = re.compile(r"-?[0-9]+(,-?[0-9]+)*\Z")
_ID_CAP = 2**62  # larger ids exist nowhere; capping keeps numpy searches in int64
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _match_route(path: str) -> _Route | None:
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]  # one trailing slash is tolerated
    parts = path.split("/")[1:]
    if not parts or any(p == "" for p in parts):
        return None
    head, rest = parts[0], parts[1:]
    if head in ("accounts", "trades", "analyses") and not rest:
        return _Route(head)
    if head in ("brokers", "broker-servers") and not rest:
        return _Route("brokers" if head == "brokers" else "servers")
    if head in ("accounts", "trades", "analyses") and len(rest) == 1:
        return _Route({"accounts": "account", "trades": "trade", "analyses": "analysis"}[head], rest[0])
    if head == "analyses" and len(rest) == 2 and rest[1] in ("dailies", "monthlies"):
        return _Route(rest[1], rest[0])
    return None


def _validate(kind: str, query: Any, max_limit: int, strict_limit: bool) -> _Query:
    errors: dict[str, list[str]] = {}
    limit = min(1000, max_limit)
    if "limit" in query:
        raw = query["limit"]
        if not _INT_RE.match(raw) or int(raw) < 1:
            errors["limit"] = ["The limit must be an integer greater than or equal to 1."]
        elif int(raw) > max_limit and strict_limit:
            errors["limit"] = [f"The limit may not be greater than {max_limit}."]
        else:
            limit = min(int(raw), max_limit)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        errors["order"] = ["The selected order is invalid."]
    last_id = None
    if "last_id" in query:
        raw = query["last_id"]
        if not _INT_RE.match(raw) or int(raw) < 0:
            errors["last_id"] = ["The last id must be an integer greater than or equal to 0."]
        else:
            last_id = min(int(raw), _ID_CAP)
    filters = [(name, _filter_value(name, query[name], errors)) for name in _LIST_PARAMS[kind] if name in query]
    start, end = dict(filters).get("start_date"), dict(filters).get("end_date")
    if isinstance(start, date) and isinstance(end, date) and start > end:
        errors["start_date"] = ["The start date must be a date before or equal to end date."]
    if errors:
        raise _Reject(422, "VALIDATION_FAIL", errors)
    return _Query(order, limit, last_id, tuple(filters))


def _filter_value(name: str, raw: str, errors: dict[str, list[str]]) -> Any:
    if name in ("account_id", "id"):
        if _INT_RE.match(raw):
            return max(min(int(raw), _ID_CAP), -_ID_CAP)
        errors[name] = [f"The {name.replace('_', ' ')} must be an integer."]
    elif name in ("account_ids", "ids"):
        if _INT_LIST_RE.match(raw):
            return tuple(sorted({max(min(int(v), _ID_CAP), -_ID_CAP) for v in raw.split(",")}))
        errors[name] = [f"The {name.replace('_', ' ')} must be a comma-separated list of integers."]
    elif name == "state":
        if raw in ("open", "closed"):
            return raw
        errors[name] = ["The selected state is invalid."]
    elif name == "application":
        if raw in ("mt4", "mt5"):
            return raw
        errors[name] = ["The selected application is invalid."]
    else:  # start_date / end_date
        try:
            if _DATE_RE.match(raw):
                return date.fromisoformat(raw)
        except ValueError:
            pass
        errors[name] = [f"The {name.replace('_', ' ')} must be a date in YYYY-MM-DD format."]
    return None


def _paginate(ids: np.ndarray, q: _Query) -> np.ndarray:
    """Positions into ascending ``ids`` for one keyset page, in response order."""
    if q.order == "asc":
        start = 0 if q.last_id is None else int(np.searchsorted(ids, q.last_id, side="right"))
        return np.arange(start, min(start + q.limit, len(ids)))
    stop = len(ids) if q.last_id is None else int(np.searchsorted(ids, q.last_id, side="left"))
    return np.arange(stop - 1, max(stop - q.limit, 0) - 1, -1)


def _parse_path_id(raw: str | None) -> int:
    if raw is None or not _INT_RE.match(raw) or len(raw) > 18:
        raise _Reject(404, "NOT_FOUND")
    return int(raw)


class _PageCache:
    """LRU of rendered page bodies, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> bool:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True
            if len(body) > self.max_bytes:
                return False
            self._items[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


# --------------------------------------------------------------------------- simulator

SIMULATOR_KEY: web.AppKey[TradesyncSimulator] = web.AppKey("tradesync_simulator")


class TradesyncSimulator:
    """The Tradesync API over a deterministic data set and a virtual clock.

    Data knobs (seed, sizes, drift, huge_values, new_accounts_per_hour) are read
    once; behaviour knobs (maintenance, faults, latency, rate limit, limits,
    code case, keys) are read from ``config`` on every request so tests may flip them.
    """

    def __init__(self, config: TradesyncSimConfig, page_cache_bytes: int = DEFAULT_PAGE_CACHE_BYTES) -> None:
        self.config = replace(config)
        cfg = self.config
        self._start = _epoch(cfg.sim_start)
        self._t0 = self._start - cfg.history_days * DAY
        self._end = self._start + cfg.future_days * DAY
        self._n_base = cfg.accounts
        n_new = cfg.new_accounts_per_hour * cfg.future_days * 24 if cfg.new_accounts_per_hour > 0 else 0
        self._ids, self._created = self._account_timeline(n_new)
        self._half = cfg.accounts // 2
        self._book: _TradeBook | None = None
        self._suffix_all: np.ndarray | None = None
        if cfg.trades_per_account > 0 and len(self._ids):
            everyone = np.arange(len(self._ids))
            statics = _account_statics(cfg.seed, everyone, self._ids, cfg.huge_values)
            self._suffix_all = statics.suffix
            self._book = _TradeBook(cfg, self._created, self._n_base, statics, self._t0, self._end)
        self._clock = self._start
        self._lock = threading.RLock()
        self._views: OrderedDict[int, _BookView] = OrderedDict()
        self._cache = _PageCache(page_cache_bytes)
        self._stats = RequestStats()
        self._limiter = KeyedRateLimiter(cfg.rate_limit_rps, cfg.rate_limit_burst)

    # ---- timeline and clock -------------------------------------------------

    def _account_timeline(self, n_new: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        gaps = np.random.default_rng([cfg.seed, 11]).integers(1, 6, max(cfg.accounts - 1, 0))
        base = ACCOUNT_ID_START + np.concatenate(([0], np.cumsum(gaps)))[: cfg.accounts]
        # Existing accounts open during the first quarter of the history, in id order.
        span = cfg.history_days * DAY // 4
        created = self._t0 + np.arange(cfg.accounts, dtype=np.int64) * span // max(cfg.accounts, 1)
        if n_new:
            last = int(base[-1]) if len(base) else ACCOUNT_ID_START - 1
            extra = last + np.cumsum(np.random.default_rng([cfg.seed, 12]).integers(1, 6, n_new))
            born = self._start + (np.arange(1, n_new + 1, dtype=np.int64) * 3600) // cfg.new_accounts_per_hour
            base, created = np.concatenate((base, extra)), np.concatenate((created, born))
        return base.astype(np.int64), created.astype(np.int64)

    @property
    def clock(self) -> datetime:
        return datetime.fromtimestamp(self._clock, UTC)

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (whole seconds)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._clock += int(seconds)

    def reset(self) -> None:
        """Back to ``sim_start`` with fresh counters, so fault sequences replay."""
        self._clock = self._start
        self._stats.reset()
        self._limiter.reset()

    def state(self) -> dict[str, Any]:
        clock = self._clock
        trades = 0 if self._book is None else int(np.searchsorted(self._book.created, clock, side="right"))
        return {"clock": _iso(clock), "accounts": self._visible_accounts(clock), "trades": trades,
                **self._stats.snapshot()}

    def _clock_of(self, clock: datetime | None) -> int:
        return self._clock if clock is None else _epoch(clock)

    def _visible_accounts(self, clock: int) -> int:
        return int(np.searchsorted(self._created, clock, side="right"))

    def _view(self, clock: int) -> _BookView | None:
        if self._book is None:
            return None
        with self._lock:
            view = self._views.get(clock)
            if view is None:
                view = self._views[clock] = self._book.view(clock)
                if len(self._views) > 4:
                    self._views.popitem(last=False)
            return view

    # ---- public data API ----------------------------------------------------

    def account_ids(self, clock: datetime | None = None) -> np.ndarray:
        """Ids of the accounts visible at ``clock`` (default: now), ascending."""
        return self._ids[: self._visible_accounts(self._clock_of(clock))].copy()

    def expected_accounts(self, clock: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The account objects the API serves at ``clock``, ascending id, money as ``Decimal``."""
        at = self._clock_of(clock)
        n = self._visible_accounts(at)
        for lo in range(0, n, 1000):
            yield from self._account_rows(np.arange(lo, min(lo + 1000, n)), at, as_decimal=True)

    def expected_trades(self, clock: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The trade rows the API serves at ``clock``, ascending id, money as ``Decimal``."""
        at = self._clock_of(clock)
        view = self._view(at)
        if view is None:
            return
        for lo in range(0, view.n_visible, 1000):
            yield from self._trade_rows(np.arange(lo, min(lo + 1000, view.n_visible)), view, as_decimal=True)

    def warm(self, max_bytes: int | None = None) -> int:
        """Pre-render every ``/accounts?order=asc&limit=1000`` page at the current clock.

        Pages stop being cached once ``max_bytes`` (default: the cache budget) is
        reached. Returns the number of pages rendered into the cache.
        """
        if max_bytes is not None and max_bytes > self._cache.max_bytes:
            self._cache.max_bytes = max_bytes
        clock, limit = self._clock, min(1000, self.config.max_limit)
        self._view(clock)  # trades-mode aggregates are shared by every page
        n, used, pages = self._visible_accounts(clock), 0, 0
        # Page k answers last_id = id of row k*limit-1; an exact multiple also gets the final empty page.
        for start in range(0, n + 1, limit):
            q = _Query("asc", limit, int(self._ids[start - 1]) if start else None)
            key = ("accounts", None, q, clock)
            body = self._cache.get(key) or self._render_accounts_page(q, clock)[0]
            if used + len(body) > self._cache.max_bytes or not self._cache.put(key, body):
                break
            used, pages = used + len(body), pages + 1
        return pages

    # ---- account rows -------------------------------------------------------

    def _money(self, idx: np.ndarray, statics: _Statics, clock: int) -> _Money:
        view = self._view(clock)
        if view is None:
            return _snapshot_money(statics.hasher, idx, self.config.huge_values)
        m = view.money
        return _Money(*(getattr(m, f)[idx] for f in _Money.__dataclass_fields__))

    def _account_rows(self, idx: np.ndarray, clock: int, as_decimal: bool) -> list[dict[str, Any]]:
        rows = _rows(ACCOUNT_KEYS, self._account_columns(idx, clock), as_decimal)
        if self.config.drift is not None:
            self._apply_drift(rows, idx, as_decimal)
        return rows

    def _account_payload(self, idx: np.ndarray, clock: int) -> list[Any]:
        """Rows ready for the JSON encoder; drifted rows differ in shape, so they stay dicts."""
        if self.config.drift is not None:
            return self._account_rows(idx, clock, False)
        return _structs(_ACCOUNT_STRUCT, self._account_columns(idx, clock))

    def _account_columns(self, idx: np.ndarray, clock: int) -> list[Column]:
        cfg = self.config
        ids, created = self._ids[idx], self._created[idx]
        st = _account_statics(cfg.seed, idx, ids, cfg.huge_values)
        h, m = st.hasher, self._money(idx, st, clock)
        equity = m.balance + st.credit + m.floating
        ping = _Ts(np.maximum(created, clock - h.below(_F["ping"], 60)))
        restored_at = created + DAY
        server = [SERVERS[s] for s in st.server.tolist()]
        brokers = [_BROKER_BY_ID[s[1]] for s in server]
        demo = [s[3] for s in server]
        currency = [CURRENCIES[c] for c in st.currency.tolist()]
        first = h.below(_F["first"], len(FIRST_NAMES)).tolist()
        last = h.below(_F["last"], len(LAST_NAMES)).tolist()
        numbers = st.account_number.tolist()
        status = np.where(h.uniform(_F["status"]) < 0.9, 0, 1 + h.below(_F["status_kind"], len(STATUSES) - 1))
        protect = h.uniform(_F["eq_protect"]) < 0.1
        pending = np.where(h.uniform(_F["pending"]) < 0.8, 0, 1 + h.below(_F["pending"], 3))
        cols: list[Column] = [
            ids, _Ts(created), ping, _Ts(restored_at, (h.uniform(_F["restored"]) >= 0.02) | (restored_at > clock)),
            ping,
            [f"{LAST_NAMES[b]} {c} {n}" for b, c, n in zip(last, currency, numbers, strict=True)],
            [f"{FIRST_NAMES[a]} {LAST_NAMES[b]}" for a, b in zip(first, last, strict=True)],
            numbers,
            [f"sim-{v:08x}" for v in (h.bits(_F["password"]) >> np.uint64(32)).tolist()],
            [s[0] for s in server], [b[1] for b in brokers], [s[2] for s in server],
            [SUFFIXES[s] for s in st.suffix.tolist()], currency, st.leverage,
            [STATUSES[s] for s in status.tolist()], [LOGIN_RESPONSES[s] for s in status.tolist()],
            ["demo" if d else "real" for d in demo], ["yes" if d else "no" for d in demo],
            ["readonly" if t else "full" for t in (h.uniform(_F["type"]) < 0.3).tolist()],
            [b[2] for b in brokers],
            ["yes" if t else "no" for t in (h.uniform(_F["modify"]) < 0.1).tolist()],
            ["on" if p else "off" for p in protect.tolist()],
            _Dec((1 + h.below(_F["eq_value"], 50)) * 10_000, 2, ~protect),
            _Dec(m.balance), _Dec(st.credit), _Dec(equity), _Dec(equity - m.used_margin), _Dec(m.used_margin),
            m.open_trades, _Dec(m.open_lots), pending, _Dec(pending * (1 + h.below(_F["pending_lots"], 50))),
            _Dec(m.daily), _Dec(m.weekly), _Dec(m.monthly), _Dec(m.total),
        ]
        return cols

    def _apply_drift(self, rows: list[dict[str, Any]], idx: np.ndarray, as_decimal: bool) -> None:
        h = _Hasher(self.config.seed, self._ids[idx])
        drift, risk = self.config.drift, h.below(_F["risk"], 1000).tolist()
        if drift == "typed_fields":
            self._typed_fields(rows, idx, h, as_decimal)
            return
        for row, i, tenths in zip(rows, idx.tolist(), risk, strict=True):
            if i < self._half:
                continue  # only the upper half of the id range drifts
            if drift == "new_field":
                row["risk_score"] = (Decimal(tenths).scaleb(-1) if as_decimal else tenths / 10) if tenths else 0
            elif drift == "null_field":
                row["leverage"] = None
            elif drift == "int_gets_decimals":
                half = Decimal("0.5") if as_decimal else 0.5
                row["open_trades"] = row["open_trades"] + half
            elif drift == "decimal_na":
                row["balance"] = "N/A"

    def _typed_fields(self, rows: list[dict[str, Any]], idx: np.ndarray, h: _Hasher, as_decimal: bool) -> None:
        """Fields of every JSON type; ``kyc_level`` is a number in the lower half of the id range and
        a string in the upper half. Numbers are served as their exact text (``msgspec.Raw``)."""
        kyc, margin = h.below(_F["kyc"], 1_000_000).tolist(), h.below(_F["margin"], 1_000_000).tolist()
        verified = h.below(_F["verified"], 3).tolist()

        def number(text: str) -> Any:
            return Decimal(text) if as_decimal else msgspec.Raw(text.encode())

        for row, i, k, m, v in zip(rows, idx.tolist(), kyc, margin, verified, strict=True):
            if k % 11:
                row["kyc_tier"] = KYC_TIERS[k % len(KYC_TIERS)]
            special = m % 40
            text = SPECIAL_LEVELS[special] if special < len(SPECIAL_LEVELS) else f"{m // 100}.{m % 100:02d}"
            row["margin_call_level"] = number(text)
            row["kyc_verified"] = None if v == 2 else bool(v)
            row["limits"] = {"daily": number(str(m % 1000)), "tags": ["vip"] if k % 2 else []}
            row["kyc_level"] = number(str(1 + k % 5)) if i < self._half else f"level-{1 + k % 5}"

    # ---- trade rows ---------------------------------------------------------

    def _trade_rows(self, rows: np.ndarray, view: _BookView, as_decimal: bool) -> list[dict[str, Any]]:
        out = _rows(TRADE_KEYS, self._trade_columns(rows, view), as_decimal)
        if self.config.trade_new_field:
            for row in out:
                row[NEW_TRADE_FIELD] = new_trade_field_value(row["id"])
        return out

    def _trade_payload(self, rows: np.ndarray, view: _BookView) -> list[Any]:
        """Rows ready for the JSON encoder; drifted rows carry one more key, so they stay dicts."""
        if self.config.trade_new_field:
            return self._trade_rows(rows, view, False)
        return _structs(_TRADE_STRUCT, self._trade_columns(rows, view))

    def _trade_columns(self, rows: np.ndarray, view: _BookView) -> list[Column]:
        b = self._book
        assert b is not None
        closed = view.closed[rows]
        is_trade = b.kind[rows] <= SELL
        created, close_t = b.created[rows], b.close_t[rows]
        sym, digits = b.sym[rows], b.digits[rows]
        acc = b.account[rows]
        assert self._suffix_all is not None
        suffix = [SUFFIXES[s] for s in self._suffix_all[acc].tolist()]
        cols: list[Column] = [
            b.ids[rows], self._ids[acc], b.tickets[rows], b.magic[rows], _Ts(created),
            _Ts(np.where(closed, np.maximum(close_t, created), created)), _Ts(b.open_t[rows]),
            _Ts(close_t, ~closed), ["closed" if c else "open" for c in closed.tolist()],
            [KIND_NAMES[k] for k in b.kind[rows].tolist()],
            [_SYM_NAME[s] + x if s >= 0 else "" for s, x in zip(sym.tolist(), suffix, strict=True)],
            [COMMENTS[c] for c in b.comment[rows].tolist()],
            _Dec(b.lots[rows]), _Dec(b.open_pts[rows], digits), _Dec(b.sl[rows], digits), _Dec(b.tp[rows], digits),
            _Dec(np.where(is_trade, view.close_pts[rows], 0), digits, ~closed),
            _Dec(b.commission[rows]), _Dec(view.swap[rows]), _Dec(view.profit[rows]), digits,
            _Dec(b.tick_value[rows], 5), _Dec(np.where(is_trade, 1, 0), digits), _Dec(b.tick_value[rows], 5),
            [_SYM_MODE[s] for s in sym.tolist()],
        ]
        return cols

    # ---- rendering ----------------------------------------------------------

    def _render_accounts_page(self, q: _Query, clock: int) -> tuple[bytes, int | None]:
        pos = _paginate(self._ids[: self._visible_accounts(clock)], q)
        last_id = int(self._ids[pos[-1]]) if len(pos) else None
        return self._list_body(self._account_payload(pos, clock), q, last_id), last_id

    @staticmethod
    def _list_body(data: list[Any], q: _Query, last_id: int | None) -> bytes:
        meta = {"count": len(data), "limit": q.limit, "order": q.order, "last_id": last_id}
        return _ENCODER.encode({"result": "success", "status": 200, "meta": meta, "data": data})

    def _items_page(self, items: list[dict[str, Any]], q: _Query) -> bytes:
        pos = _paginate(np.array([i["id"] for i in items], dtype=np.int64), q).tolist()
        return self._list_body([items[p] for p in pos], q, items[pos[-1]]["id"] if pos else None)

    def _list_page(self, route: _Route, q: _Query, clock: int) -> bytes:
        key = (route.kind, route.path_id, q, clock)
        body = self._cache.get(key)
        if body is None:
            body = self._render_list(route, q, clock)
            self._cache.put(key, body)
        return body

    def _render_list(self, route: _Route, q: _Query, clock: int) -> bytes:
        if route.kind == "accounts":
            return self._render_accounts_page(q, clock)[0]
        if route.kind == "trades":
            return self._render_trades_page(q, clock)
        if route.kind == "analyses":
            n = self._visible_accounts(clock)
            pos = _paginate(ANALYSIS_ID_START + np.arange(n), q)
            last_id = ANALYSIS_ID_START + int(pos[-1]) if len(pos) else None
            return self._list_body(self._analysis_rows(pos, clock, False), q, last_id)
        if route.kind in ("dailies", "monthlies"):
            return self._items_page(self._history(route.kind, self._account_index(route.path_id, clock), clock, q), q)
        return self._items_page(self._catalog(route.kind, q.get("application")), q)

    def _render_trades_page(self, q: _Query, clock: int) -> bytes:
        view = self._view(clock)
        if view is None:
            return self._list_body([], q, None)
        cand = self._trade_candidates(view, q)
        ids = self._book.ids[: view.n_visible] if cand is None else self._book.ids[cand]  # type: ignore[union-attr]
        pos = _paginate(ids, q)
        rows = pos if cand is None else cand[pos]
        last_id = int(ids[pos[-1]]) if len(pos) else None
        return self._list_body(self._trade_payload(rows, view), q, last_id)

    def _trade_candidates(self, view: _BookView, q: _Query) -> np.ndarray | None:
        """Visible row positions matching the filters, ascending; None means every visible row."""
        b, n = self._book, view.n_visible
        assert b is not None
        cand: np.ndarray | None = None
        accounts = [set(v) if isinstance(v, tuple) else {v} for k, v in q.filters if k in ("account_id", "account_ids")]
        if accounts:
            wanted = np.array(sorted(set.intersection(*accounts)), dtype=np.int64)
            idx = np.searchsorted(self._ids, wanted).clip(0, max(len(self._ids) - 1, 0))
            idx = idx[self._ids[idx] == wanted] if len(self._ids) else idx[:0]
            parts = [b.rows_of(int(i)) for i in idx]
            cand = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            cand = cand[cand < n]
        ids_filters = [set(v) if isinstance(v, tuple) else {v} for k, v in q.filters if k in ("id", "ids")]
        if ids_filters:
            wanted = np.array(sorted(set.intersection(*ids_filters)), dtype=np.int64)
            pos = np.searchsorted(b.ids[:n], wanted).clip(0, max(n - 1, 0))
            pos = np.unique(pos[b.ids[pos] == wanted]) if n else pos[:0]
            cand = pos if cand is None else np.intersect1d(cand, pos)
        state = q.get("state")
        if state is not None:
            base = np.arange(n) if cand is None else cand
            cand = base[view.closed[base] == (state == "closed")]
        return cand

    def _analysis_rows(self, idx: np.ndarray, clock: int, as_decimal: bool) -> list[dict[str, Any]]:
        view = self._view(clock)
        if view is None:
            stats = {k: np.zeros(len(idx), np.int64) for k in _ANALYSIS_FIELDS}
            stats["best_date"] = stats["worst_date"] = np.full(len(idx), -1)
        else:
            full = self._book.analysis(view)  # type: ignore[union-attr]
            stats = {k: v[idx] for k, v in full.items()}
        deposits = stats["total_deposits"]
        growth = np.where(deposits > 0, np.rint(stats["profit_loss"] * 10_000 / np.maximum(deposits, 1)), 0)
        won, lost = stats["total_trades_won"], stats["total_trades_lost"]
        cols: list[Column] = [
            ANALYSIS_ID_START + idx, self._ids[idx], _Dec(stats["profit_loss"]), _Dec(growth.astype(np.int64)),
            _Dec(deposits), _Dec(stats["total_withdrawals"]), _Dec(stats["total_lots"]),
            _Dec(stats["total_commission"]), _Dec(stats["total_swap"]), stats["total_trades"],
            stats["total_longs"], stats["total_shorts"], won, lost,
            _Dec(np.rint(stats["sum_win"] / np.maximum(won, 1)).astype(np.int64)),
            _Dec(np.rint(stats["sum_loss"] / np.maximum(lost, 1)).astype(np.int64)),
            _Dec(stats["best_trade"]), _Ts(stats["best_date"], stats["best_date"] < 0),
            _Dec(stats["worst_trade"]), _Ts(stats["worst_date"], stats["worst_date"] < 0),
            stats["longs_won"], stats["shorts_won"],
        ]
        return _rows(ANALYSIS_KEYS, cols, as_decimal)

    def _history(self, kind: str, a: int, clock: int, q: _Query) -> list[dict[str, Any]]:
        """Daily or monthly items of one account, ascending id, filtered by the query's dates."""
        items = self._dailies(a, clock) if kind == "dailies" else self._monthlies(a, clock)
        start, end = q.get("start_date"), q.get("end_date")
        # ISO dates compare correctly as strings.
        if start is not None:
            items = [i for i in items if i["date"] >= start.isoformat()]
        if end is not None:
            items = [i for i in items if i["date"] <= end.isoformat()]
        return items

    def _closed_rows_of(self, a: int, clock: int) -> tuple[np.ndarray, _BookView | None]:
        view = self._view(clock)
        if view is None or self._book is None:
            return np.zeros(0, np.int64), view
        rows = self._book.rows_of(a)
        rows = rows[rows < view.n_visible]
        return rows[view.closed[rows]], view

    def _dailies(self, a: int, clock: int) -> list[dict[str, Any]]:
        first_day, last_day = int(self._created[a]) // DAY, clock // DAY
        n_days = max(last_day - first_day + 1, 0)
        rows, view = self._closed_rows_of(a, clock)
        balance, pnl, lots, deposits = self._per_bucket(rows, view, lambda close_t: close_t // DAY - first_day, n_days)
        running_pnl, running_dep = np.cumsum(pnl), np.cumsum(deposits)
        growth = np.where(running_dep > 0, np.rint(running_pnl * 10_000 / np.maximum(running_dep, 1)), 0)
        days = np.arange(first_day, first_day + n_days, dtype=np.int64) * DAY
        cols: list[Column] = [
            (a + 1) * DAILY_ID_FACTOR + np.arange(n_days), np.full(n_days, self._ids[a]),
            [t[:10] for t in _Ts(days).strings()],  # type: ignore[index]
            _Dec(np.cumsum(balance)), _Dec(pnl), _Dec(running_pnl), _Dec(growth.astype(np.int64)), _Dec(lots),
        ]
        return _rows(DAILY_KEYS, cols, False)

    def _monthlies(self, a: int, clock: int) -> list[dict[str, Any]]:
        first = _month_index(int(self._created[a]))
        n_months = max(_month_index(clock) - first + 1, 0)
        rows, view = self._closed_rows_of(a, clock)
        balance, pnl, _, deposits = self._per_bucket(rows, view, lambda t: _month_index(t) - first, n_months)
        opening = np.cumsum(balance) - balance  # balance at the start of each month
        base = opening + deposits
        growth = np.where(base > 0, np.rint(pnl * 10_000 / np.maximum(base, 1)), 0).astype(np.int64)
        months = (first + np.arange(n_months)).astype("datetime64[M]")
        cols: list[Column] = [
            (a + 1) * MONTHLY_ID_FACTOR + np.arange(n_months), np.full(n_months, self._ids[a]),
            [m + "-01" for m in np.datetime_as_string(months).tolist()], _Dec(growth),
        ]
        return _rows(MONTHLY_KEYS, cols, False)

    def _per_bucket(self, rows: np.ndarray, view: _BookView | None, bucket_of: Callable[[np.ndarray], np.ndarray],
                    n: int) -> tuple[np.ndarray, ...]:
        """(balance change, trade P&L, lots, deposits) summed per day or month bucket."""
        b = self._book
        if view is None or b is None or not len(rows) or n == 0:
            return tuple(np.zeros(n, np.int64) for _ in range(4))
        bucket = np.clip(bucket_of(b.close_t[rows]), 0, n - 1)
        net, trade = view.net[rows], b.kind[rows] <= SELL

        def total(weights: np.ndarray) -> np.ndarray:
            return np.rint(np.bincount(bucket, weights=weights, minlength=n)).astype(np.int64)

        deposits = np.where(b.kind[rows] == DEPOSIT, view.profit[rows], 0)
        return total(net), total(np.where(trade, net, 0)), total(np.where(trade, b.lots[rows], 0)), total(deposits)

    @staticmethod
    def _catalog(kind: str, application: str | None) -> list[dict[str, Any]]:
        stamp = _iso(_CATALOG_CREATED)
        if kind == "brokers":
            return [{"id": i, "created_at": stamp, "updated_at": stamp, "name": name, "application": app}
                    for i, name, app in BROKERS]
        servers = [{"id": i, "created_at": stamp, "updated_at": stamp, "name": name,
                    "application": _BROKER_BY_ID[broker][2], "broker_id": broker} for i, broker, name, _ in SERVERS]
        return [s for s in servers if application is None or s["application"] == application]

    def _account_index(self, raw: str | None, clock: int) -> int:
        account_id = _parse_path_id(raw)
        n = self._visible_accounts(clock)
        i = int(np.searchsorted(self._ids[:n], account_id))
        if i >= n or self._ids[i] != account_id:
            raise _Reject(404, "NOT_FOUND")
        return i

    def _single(self, route: _Route, clock: int) -> dict[str, Any]:
        if route.kind == "account":
            return self._account_rows(np.array([self._account_index(route.path_id, clock)]), clock, False)[0]
        if route.kind == "analysis":
            return self._analysis_rows(np.array([self._account_index(route.path_id, clock)]), clock, False)[0]
        trade_id, view = _parse_path_id(route.path_id), self._view(clock)
        if view is None:
            raise _Reject(404, "NOT_FOUND")
        ids = self._book.ids[: view.n_visible]  # type: ignore[union-attr]
        pos = int(np.searchsorted(ids, trade_id))
        if pos >= len(ids) or ids[pos] != trade_id:
            raise _Reject(404, "NOT_FOUND")
        return self._trade_rows(np.array([pos]), view, False)[0]

    # ---- HTTP ---------------------------------------------------------------

    def make_app(self) -> web.Application:
        """An aiohttp app; one catch-all route so the contract's check order is ours to control."""
        app = web.Application()
        app[SIMULATOR_KEY] = self
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_sim/") or request.path == "/_sim":
            return self._control(request)
        seq = self._stats.enter()
        status: int | None = None
        try:
            response, status = await self._handle_api(request, seq)
            return response
        finally:
            self._stats.leave(status)

    async def _handle_api(self, request: web.Request, seq: int) -> tuple[web.StreamResponse, int | None]:
        cfg = self.config
        plan = ChaosPlanner(cfg.seed, cfg.latency_ms, cfg.latency_jitter_ms, cfg.error_rate, cfg.fail_every_n,
                            cfg.fault_kinds).plan(seq)
        if plan.delay_s > 0:
            await asyncio.sleep(plan.delay_s)
        try:
            self._check_gates(request)
            if plan.fault is not None:
                self._stats.faults_injected += 1
                return self._fault(request, plan)
            body = self._answer(request)
            return web.Response(body=body, content_type="application/json"), 200
        except _Reject as reject:
            return self._error(reject, seq), reject.status

    def _check_gates(self, request: web.Request) -> None:
        """Checks 1-3 of the contract: maintenance, auth, rate limit."""
        cfg = self.config
        if cfg.maintenance:
            raise _Reject(503, "MAINTENANCE_MODE")
        key = self._authenticate(request.headers.get("Authorization"))
        wait = self._limiter.take(key, cfg.rate_limit_rps, cfg.rate_limit_burst)
        if wait > 0:
            retry_after = str(KeyedRateLimiter.retry_after_seconds(wait))
            headers = {"Retry-After": retry_after} if cfg.retry_after_header else None
            raise _Reject(429, "TOO_MANY_REQUESTS", headers=headers)

    def _authenticate(self, header: str | None) -> str:
        scheme, _, token = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key, sep, secret = decoded.partition(":")
        if scheme.lower() != "basic" or not sep:
            raise _Reject(401, "AUTHORISATION_FAILED")
        if self.config.api_keys.get(key) != secret:
            raise _Reject(401, "NOT_AUTHORISED")
        if key in self.config.forbidden_keys:
            raise _Reject(403, "FORBIDDEN")
        return key

    def _answer(self, request: web.Request) -> bytes:
        """Checks 5-7 and the response body of a request that passed the gates."""
        route = _match_route(request.path)
        if route is None:
            raise _Reject(404, "NOT_FOUND")
        if request.method != "GET":
            raise _Reject(405, "METHOD_NOT_ALLOWED", headers={"Allow": "GET"})
        if request.body_exists and request.content_type != "application/json":
            raise _Reject(415, "INVALID_CONTENT_TYPE")
        clock = self._clock
        if route.kind in _LIST_PARAMS:
            q = _validate(route.kind, request.query, self.config.max_limit, self.config.strict_limit)
            return self._list_page(route, q, clock)
        body = {"result": "success", "status": 200, "data": self._single(route, clock)}
        if self.config.drift == "typed_fields":
            return _ENCODER.encode(body)  # its exact number texts are msgspec.Raw
        return orjson.dumps(body)

    def _code(self, code: str, seq: int) -> str:
        case = self.config.code_case
        if case == "lower" or (case == "mixed" and seq % 2 == 0):
            return code.lower()
        return code

    def _error_body(self, status: int, code: str, seq: int, errors: dict[str, list[str]] | None = None) -> bytes:
        body: dict[str, Any] = {"result": "error" if status >= 500 else "fail", "status": status,
                                "code": self._code(code, seq), "message": MESSAGES[code], "data": []}
        if errors:
            body["errors"] = errors  # simulator-only detail; clients must not rely on it
        return orjson.dumps(body)

    def _error(self, reject: _Reject, seq: int) -> web.Response:
        body = self._error_body(reject.status, reject.code, seq, reject.errors)
        return web.Response(status=reject.status, body=body, content_type="application/json", headers=reject.headers)

    def _fault(self, request: web.Request, plan: RequestPlan) -> tuple[web.StreamResponse, int | None]:
        kind = plan.fault
        if kind == "drop":
            return drop_connection(request), None
        if kind == "html502":
            return html_502_response(), 502
        status, code, headers = {
            "500": (500, "ERROR", None),
            "503": (503, "MAINTENANCE_MODE", None),
            "429": (429, "TOO_MANY_REQUESTS", None),
            "429-retry-after": (429, "TOO_MANY_REQUESTS", {"Retry-After": str(plan.retry_after)}),
        }[kind or "500"]
        body = self._error_body(status, code, plan.seq)
        return web.Response(status=status, body=body, content_type="application/json", headers=headers), status

    def _control(self, request: web.Request) -> web.Response:
        routes: dict[str, tuple[str, Callable[[], None]]] = {
            "/_sim/state": ("GET", lambda: None),
            "/_sim/advance": ("POST", lambda: self.advance(_seconds(request.query.get("seconds")))),
            "/_sim/reset": ("POST", self.reset),
        }
        entry = routes.get(request.path.rstrip("/"))
        if entry is None:
            return web.json_response({"error": "unknown control route"}, status=404)
        if request.method != entry[0]:
            return web.json_response({"error": "method not allowed"}, status=405)
        try:
            entry[1]()
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.Response(body=orjson.dumps(self.state()), content_type="application/json")


ANALYSIS_KEYS = (
    "id", "account_id", "profit_loss", "growth", "total_deposits", "total_withdrawals", "total_lots",
    "total_commission", "total_swap", "total_trades", "total_longs", "total_shorts", "total_trades_won",
    "total_trades_lost", "average_win", "average_loss", "best_trade", "best_trade_date", "worst_trade",
    "worst_trade_date", "longs_won", "shorts_won",
)
_ANALYSIS_FIELDS = (
    "profit_loss", "total_deposits", "total_withdrawals", "total_lots", "total_commission", "total_swap",
    "total_trades", "total_longs", "total_shorts", "total_trades_won", "total_trades_lost", "sum_win",
    "sum_loss", "longs_won", "shorts_won", "best_trade", "worst_trade",
)
_ACCOUNT_STRUCT = _row_struct("TradesyncAccount", ACCOUNT_KEYS)
NEW_TRADE_FIELD = "strategy"


def new_trade_field_value(trade_id: int) -> int:
    """The ``strategy`` of a trade under ``trade_new_field``: a small integer derived from its id."""
    return trade_id % 97
_TRADE_STRUCT = _row_struct("TradesyncTrade", TRADE_KEYS)
DAILY_KEYS = ("id", "account_id", "date", "running_balance", "profit_loss", "running_profit_loss",
              "running_growth", "lots")
MONTHLY_KEYS = ("id", "account_id", "date", "growth")


def _month_index(secs: Any) -> Any:
    """Months since 1970-01 for epoch seconds (scalar or array)."""
    return np.asarray(secs).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)


def _seconds(raw: str | None) -> float:
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError("seconds must be a non-negative number")
    return value


@contextmanager
def tradesync_simulator(
    config: TradesyncSimConfig | None = None, **overrides: Any
) -> Iterator[tuple[str, TradesyncSimulator]]:
    """Run a simulator in a background thread; yields ``(base_url, simulator)``.

    >>> with tradesync_simulator(accounts=3, rate_limit_rps=0) as (url, sim):  # doctest: +SKIP
    ...     ...
    """
    cfg = replace(config or TradesyncSimConfig(), **overrides)
    sim = TradesyncSimulator(cfg)
    with run_simulator_in_thread(sim.make_app) as base_url:
        yield base_url, sim
