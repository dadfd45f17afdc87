"""Account attributes of the Tradesync data: the clock-independent ones derived from ``(seed, id)``
on demand, and the money snapshot of account-only mode (no trade rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ..base import mix64
from .columns import Hasher

ACCOUNT_ID_START = 1_241_400
HUGE_BALANCE_CENTS = 9_999_999_999_999  # 99999999999.99: breaks float64 -> decimal(…, 8) casts
CURRENCIES = ("USD", "EUR", "GBP")
USD_TO = np.array([1.0, 0.92, 0.79])  # fixed FX: 1 USD in each account currency
LEVERAGES = np.array([30, 100, 200, 500], dtype=np.int64)
SUFFIXES = ("", ".r", "m", ".pro")
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
LIVE_SERVERS = np.array([i for i, s in enumerate(SERVERS) if not s[3]])
DEMO_SERVERS = np.array([i for i, s in enumerate(SERVERS) if s[3]])
BROKER_BY_ID = {b[0]: b for b in BROKERS}
CATALOG_CREATED = int(datetime(2019, 6, 3, 9, 30, tzinfo=UTC).timestamp())

# Field numbers of the per-account hash ("margin" is listed twice: the later number is the one used).
F = {name: i + 1 for i, name in enumerate((
    "currency", "leverage", "demo", "server", "suffix", "password", "first", "last", "status",
    "status_kind", "eq_protect", "eq_value", "type", "modify", "credit", "pending", "pending_lots",
    "restored", "ping", "risk", "balance", "open", "open_lots", "floating", "margin", "total",
    "monthly", "weekly", "daily", "zero", "kyc", "margin", "verified",
))}


@dataclass
class Statics:
    """Clock-independent account attributes, vectorised over a block of accounts."""

    currency: np.ndarray
    leverage: np.ndarray
    server: np.ndarray
    suffix: np.ndarray
    credit: np.ndarray
    account_number: np.ndarray
    hasher: Hasher


def account_statics(seed: int, idx: np.ndarray, ids: np.ndarray, huge_values: bool) -> Statics:
    h = Hasher(seed, ids)
    u = h.uniform(F["currency"])
    currency = np.where(u < 0.7, 0, np.where(u < 0.9, 1, 2))
    demo = h.uniform(F["demo"]) < 0.1
    live_pick = LIVE_SERVERS[h.below(F["server"], len(LIVE_SERVERS))]
    demo_pick = DEMO_SERVERS[h.below(F["server"], len(DEMO_SERVERS))]
    credit = np.where(h.uniform(F["credit"]) < 0.1, 50_000, 0).astype(np.int64)
    if huge_values:
        credit = np.where(idx == 1, 10, credit)  # 0.1 is not exact in binary floating point
    # A fixed odd multiplier coprime to the modulus makes account numbers unique 7-8 digit logins.
    number = 1_000_000 + (idx + mix64(seed, 7) % 98_000_000) * 2_654_435_761 % 98_000_000
    return Statics(
        currency=currency,
        leverage=LEVERAGES[h.below(F["leverage"], len(LEVERAGES))],
        server=np.where(demo, demo_pick, live_pick),
        suffix=h.below(F["suffix"], len(SUFFIXES)),
        credit=credit,
        account_number=number,
        hasher=h,
    )


@dataclass
class Money:
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


def snapshot_money(h: Hasher, idx: np.ndarray, huge_values: bool) -> Money:
    """Account-only mode (no trade rows): a plausible, internally consistent snapshot per id."""
    balance = np.rint(np.exp(np.log(1e5) + h.uniform(F["balance"]) * np.log(1e3))).astype(np.int64)
    open_trades = np.where(h.uniform(F["open"]) < 0.4, 0, 1 + h.below(F["open"], 8))
    open_lots = open_trades * (1 + h.below(F["open_lots"], 100))
    floating = np.where(open_trades > 0, np.rint((h.uniform(F["floating"]) - 0.5) * 0.1 * balance), 0)
    margin = np.rint(open_lots * (200 + 1800 * h.uniform(F["margin"])))
    zero = h.below(F["zero"], 8)  # some profit fields are exactly 0, served as the integer 0

    def pnl(name: int, spread: float, zero_bit: int) -> np.ndarray:
        value = np.rint((h.uniform(name) - 0.35) * spread * balance)
        return np.where(zero & zero_bit, 0, value).astype(np.int64)

    if huge_values:
        balance = np.where(idx == 0, HUGE_BALANCE_CENTS, balance)
        open_trades = np.where(idx == 1, 1, open_trades)
        open_lots = np.where(idx == 1, 7, open_lots)
    return Money(balance, floating.astype(np.int64), margin.astype(np.int64), open_trades, open_lots,
                 pnl(F["daily"], 0.01, 1), pnl(F["weekly"], 0.04, 2), pnl(F["monthly"], 0.1, 4),
                 pnl(F["total"], 0.6, 0))
