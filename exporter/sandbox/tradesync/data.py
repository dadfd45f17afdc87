"""The Tradesync data set: a pure function of the seed, the size and drift knobs and a clock.

* account ids start at 1 241 400 with seeded gaps of 1-5; every account field is derived on demand
  from ``(seed, id)`` by a counter-based hash (:mod:`.accounts`), so a million accounts cost two
  int64 arrays, not a million dicts;
* trade rows live in the :class:`~.book.TradeBook`; balances, equity and margins, analyses,
  dailies and monthlies are aggregated from it per clock value;
* money is kept as integer cents and served as JSON numbers whose text is the exact 2-decimal value
  (``cents / 100`` through the encoder); zero is served as ``0``.

Clocks are epoch seconds. Nothing here knows about HTTP.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from .accounts import (
    ACCOUNT_ID_START,
    BROKER_BY_ID,
    BROKERS,
    CATALOG_CREATED,
    CURRENCIES,
    FIRST_NAMES,
    LAST_NAMES,
    LOGIN_RESPONSES,
    SERVERS,
    STATUSES,
    SUFFIXES,
    F,
    Money,
    Statics,
    account_statics,
    snapshot_money,
)
from .book import COMMENTS, DEPOSIT, KIND_NAMES, SELL, SYM_MODE, SYM_NAME, BookView, TradeBook
from .columns import DAY, Column, Dec, Hasher, Ts, epoch, iso, row_struct, to_rows, to_structs
from .config import TradesyncSimConfig

ANALYSIS_ID_START = 7_000_000
DAILY_ID_FACTOR = 100_000  # daily id = (account index + 1) * factor + day offset
MONTHLY_ID_FACTOR = 10_000
KYC_TIERS = (
    "tier-1", "tier-2", 'Stufe "Gold" \u2013 \u00fc', "back\\slash / sol\u00e9", "line\nbreak\ttab",
    "emoji \U0001f680 \u2028", "12.50", "", "null", "\x01ctl",
)
SPECIAL_LEVELS = ("12345678901234567890123456.12", "1.5e3", "-2.5E-2", "-0.0", "0", "7")
NEW_TRADE_FIELD = "strategy"

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
DAILY_KEYS = ("id", "account_id", "date", "running_balance", "profit_loss", "running_profit_loss",
              "running_growth", "lots")
MONTHLY_KEYS = ("id", "account_id", "date", "growth")
_ACCOUNT_STRUCT = row_struct("TradesyncAccount", ACCOUNT_KEYS)
_TRADE_STRUCT = row_struct("TradesyncTrade", TRADE_KEYS)


def new_trade_field_value(trade_id: int) -> int:
    """The ``strategy`` of a trade under ``trade_new_field``: a small integer derived from its id."""
    return trade_id % 97


def month_index(secs: Any) -> Any:
    """Months since 1970-01 for epoch seconds (scalar or array)."""
    return np.asarray(secs).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)


class TradesyncData:
    """Accounts and trade rows of one config, rendered as rows at any clock.

    The config object is shared with the simulator: the data knobs are read at construction, the
    drift knobs (``drift``, ``trade_new_field``) when rows are built.
    """

    def __init__(self, config: TradesyncSimConfig) -> None:
        self.config = cfg = config
        self.start = epoch(cfg.sim_start)
        self.t0 = self.start - cfg.history_days * DAY
        self.end = self.start + cfg.future_days * DAY
        n_new = cfg.new_accounts_per_hour * cfg.future_days * 24 if cfg.new_accounts_per_hour > 0 else 0
        self.ids, self.created = self._account_timeline(n_new)
        self.half = cfg.accounts // 2
        self.book: TradeBook | None = None
        self.suffix_all: np.ndarray | None = None
        if cfg.trades_per_account > 0 and len(self.ids):
            everyone = np.arange(len(self.ids))
            statics = account_statics(cfg.seed, everyone, self.ids, cfg.huge_values)
            self.suffix_all = statics.suffix
            self.book = TradeBook(cfg, self.created, cfg.accounts, statics, self.t0, self.end)
        self._lock = threading.RLock()
        self._views: OrderedDict[int, BookView] = OrderedDict()

    def _account_timeline(self, n_new: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        gaps = np.random.default_rng([cfg.seed, 11]).integers(1, 6, max(cfg.accounts - 1, 0))
        base = ACCOUNT_ID_START + np.concatenate(([0], np.cumsum(gaps)))[: cfg.accounts]
        # Existing accounts open during the first quarter of the history, in id order.
        span = cfg.history_days * DAY // 4
        created = self.t0 + np.arange(cfg.accounts, dtype=np.int64) * span // max(cfg.accounts, 1)
        if n_new:
            last = int(base[-1]) if len(base) else ACCOUNT_ID_START - 1
            extra = last + np.cumsum(np.random.default_rng([cfg.seed, 12]).integers(1, 6, n_new))
            born = self.start + (np.arange(1, n_new + 1, dtype=np.int64) * 3600) // cfg.new_accounts_per_hour
            base, created = np.concatenate((base, extra)), np.concatenate((created, born))
        return base.astype(np.int64), created.astype(np.int64)

    # ---- what is visible at a clock -----------------------------------------

    def visible_accounts(self, clock: int) -> int:
        """How many accounts exist at ``clock``: they are the first ones of ``ids``."""
        return int(np.searchsorted(self.created, clock, side="right"))

    def visible_trades(self, clock: int) -> int:
        return 0 if self.book is None else int(np.searchsorted(self.book.created, clock, side="right"))

    def view(self, clock: int) -> BookView | None:
        """The trade book at ``clock`` (None in account-only mode); the last few are kept."""
        if self.book is None:
            return None
        with self._lock:
            view = self._views.get(clock)
            if view is None:
                view = self._views[clock] = self.book.view(clock)
                if len(self._views) > 4:
                    self._views.popitem(last=False)
            return view

    def account_index(self, account_id: int, clock: int) -> int | None:
        """The index of an account visible at ``clock``, or None."""
        n = self.visible_accounts(clock)
        i = int(np.searchsorted(self.ids[:n], account_id))
        return i if i < n and self.ids[i] == account_id else None

    def trade_position(self, trade_id: int, view: BookView) -> int | None:
        """The row position of a trade visible in ``view``, or None."""
        ids = self.book.ids[: view.n_visible]  # type: ignore[union-attr]
        pos = int(np.searchsorted(ids, trade_id))
        return pos if pos < len(ids) and ids[pos] == trade_id else None

    # ---- account rows -------------------------------------------------------

    def _money(self, idx: np.ndarray, statics: Statics, clock: int) -> Money:
        view = self.view(clock)
        if view is None:
            return snapshot_money(statics.hasher, idx, self.config.huge_values)
        m = view.money
        return Money(*(getattr(m, f)[idx] for f in Money.__dataclass_fields__))

    def account_rows(self, idx: np.ndarray, clock: int, as_decimal: bool) -> list[dict[str, Any]]:
        rows = to_rows(ACCOUNT_KEYS, self._account_columns(idx, clock), as_decimal)
        if self.config.drift is not None:
            self._apply_drift(rows, idx, as_decimal)
        return rows

    def account_payload(self, idx: np.ndarray, clock: int) -> list[Any]:
        """Rows ready for the JSON encoder; drifted rows differ in shape, so they stay dicts."""
        if self.config.drift is not None:
            return self.account_rows(idx, clock, False)
        return to_structs(_ACCOUNT_STRUCT, self._account_columns(idx, clock))

    def _account_columns(self, idx: np.ndarray, clock: int) -> list[Column]:
        cfg = self.config
        ids, created = self.ids[idx], self.created[idx]
        st = account_statics(cfg.seed, idx, ids, cfg.huge_values)
        h, m = st.hasher, self._money(idx, st, clock)
        equity = m.balance + st.credit + m.floating
        ping = Ts(np.maximum(created, clock - h.below(F["ping"], 60)))
        restored_at = created + DAY
        server = [SERVERS[s] for s in st.server.tolist()]
        brokers = [BROKER_BY_ID[s[1]] for s in server]
        demo = [s[3] for s in server]
        currency = [CURRENCIES[c] for c in st.currency.tolist()]
        first = h.below(F["first"], len(FIRST_NAMES)).tolist()
        last = h.below(F["last"], len(LAST_NAMES)).tolist()
        numbers = st.account_number.tolist()
        status = np.where(h.uniform(F["status"]) < 0.9, 0, 1 + h.below(F["status_kind"], len(STATUSES) - 1))
        protect = h.uniform(F["eq_protect"]) < 0.1
        pending = np.where(h.uniform(F["pending"]) < 0.8, 0, 1 + h.below(F["pending"], 3))
        cols: list[Column] = [
            ids, Ts(created), ping, Ts(restored_at, (h.uniform(F["restored"]) >= 0.02) | (restored_at > clock)),
            ping,
            [f"{LAST_NAMES[b]} {c} {n}" for b, c, n in zip(last, currency, numbers, strict=True)],
            [f"{FIRST_NAMES[a]} {LAST_NAMES[b]}" for a, b in zip(first, last, strict=True)],
            numbers,
            [f"sim-{v:08x}" for v in (h.bits(F["password"]) >> np.uint64(32)).tolist()],
            [s[0] for s in server], [b[1] for b in brokers], [s[2] for s in server],
            [SUFFIXES[s] for s in st.suffix.tolist()], currency, st.leverage,
            [STATUSES[s] for s in status.tolist()], [LOGIN_RESPONSES[s] for s in status.tolist()],
            ["demo" if d else "real" for d in demo], ["yes" if d else "no" for d in demo],
            ["readonly" if t else "full" for t in (h.uniform(F["type"]) < 0.3).tolist()],
            [b[2] for b in brokers],
            ["yes" if t else "no" for t in (h.uniform(F["modify"]) < 0.1).tolist()],
            ["on" if p else "off" for p in protect.tolist()],
            Dec((1 + h.below(F["eq_value"], 50)) * 10_000, 2, ~protect),
            Dec(m.balance), Dec(st.credit), Dec(equity), Dec(equity - m.used_margin), Dec(m.used_margin),
            m.open_trades, Dec(m.open_lots), pending, Dec(pending * (1 + h.below(F["pending_lots"], 50))),
            Dec(m.daily), Dec(m.weekly), Dec(m.monthly), Dec(m.total),
        ]
        return cols

    def _apply_drift(self, rows: list[dict[str, Any]], idx: np.ndarray, as_decimal: bool) -> None:
        h = Hasher(self.config.seed, self.ids[idx])
        drift, risk = self.config.drift, h.below(F["risk"], 1000).tolist()
        if drift == "typed_fields":
            self._typed_fields(rows, idx, h, as_decimal)
            return
        for row, i, tenths in zip(rows, idx.tolist(), risk, strict=True):
            if i < self.half:
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

    def _typed_fields(self, rows: list[dict[str, Any]], idx: np.ndarray, h: Hasher, as_decimal: bool) -> None:
        """Fields of every JSON type; ``kyc_level`` is a number in the lower half of the id range and
        a string in the upper half. Numbers are served as their exact text (``msgspec.Raw``)."""
        kyc, margin = h.below(F["kyc"], 1_000_000).tolist(), h.below(F["margin"], 1_000_000).tolist()
        verified = h.below(F["verified"], 3).tolist()

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
            row["kyc_level"] = number(str(1 + k % 5)) if i < self.half else f"level-{1 + k % 5}"

    # ---- trade rows ---------------------------------------------------------

    def trade_rows(self, rows: np.ndarray, view: BookView, as_decimal: bool) -> list[dict[str, Any]]:
        out = to_rows(TRADE_KEYS, self._trade_columns(rows, view), as_decimal)
        if self.config.trade_new_field:
            for row in out:
                row[NEW_TRADE_FIELD] = new_trade_field_value(row["id"])
        return out

    def trade_payload(self, rows: np.ndarray, view: BookView) -> list[Any]:
        """Rows ready for the JSON encoder; drifted rows carry one more key, so they stay dicts."""
        if self.config.trade_new_field:
            return self.trade_rows(rows, view, False)
        return to_structs(_TRADE_STRUCT, self._trade_columns(rows, view))

    def _trade_columns(self, rows: np.ndarray, view: BookView) -> list[Column]:
        b = self.book
        assert b is not None
        closed = view.closed[rows]
        is_trade = b.kind[rows] <= SELL
        created, close_t = b.created[rows], b.close_t[rows]
        sym, digits = b.sym[rows], b.digits[rows]
        acc = b.account[rows]
        assert self.suffix_all is not None
        suffix = [SUFFIXES[s] for s in self.suffix_all[acc].tolist()]
        cols: list[Column] = [
            b.ids[rows], self.ids[acc], b.tickets[rows], b.magic[rows], Ts(created),
            Ts(np.where(closed, np.maximum(close_t, created), created)), Ts(b.open_t[rows]),
            Ts(close_t, ~closed), ["closed" if c else "open" for c in closed.tolist()],
            [KIND_NAMES[k] for k in b.kind[rows].tolist()],
            [SYM_NAME[s] + x if s >= 0 else "" for s, x in zip(sym.tolist(), suffix, strict=True)],
            [COMMENTS[c] for c in b.comment[rows].tolist()],
            Dec(b.lots[rows]), Dec(b.open_pts[rows], digits), Dec(b.sl[rows], digits), Dec(b.tp[rows], digits),
            Dec(np.where(is_trade, view.close_pts[rows], 0), digits, ~closed),
            Dec(b.commission[rows]), Dec(view.swap[rows]), Dec(view.profit[rows]), digits,
            Dec(b.tick_value[rows], 5), Dec(np.where(is_trade, 1, 0), digits), Dec(b.tick_value[rows], 5),
            [SYM_MODE[s] for s in sym.tolist()],
        ]
        return cols

    # ---- analyses, dailies, monthlies, catalog -------------------------------

    def analysis_rows(self, idx: np.ndarray, clock: int, as_decimal: bool) -> list[dict[str, Any]]:
        view = self.view(clock)
        if view is None:
            stats = {k: np.zeros(len(idx), np.int64) for k in _ANALYSIS_FIELDS}
            stats["best_date"] = stats["worst_date"] = np.full(len(idx), -1)
        else:
            full = self.book.analysis(view)  # type: ignore[union-attr]
            stats = {k: v[idx] for k, v in full.items()}
        deposits = stats["total_deposits"]
        growth = np.where(deposits > 0, np.rint(stats["profit_loss"] * 10_000 / np.maximum(deposits, 1)), 0)
        won, lost = stats["total_trades_won"], stats["total_trades_lost"]
        cols: list[Column] = [
            ANALYSIS_ID_START + idx, self.ids[idx], Dec(stats["profit_loss"]), Dec(growth.astype(np.int64)),
            Dec(deposits), Dec(stats["total_withdrawals"]), Dec(stats["total_lots"]),
            Dec(stats["total_commission"]), Dec(stats["total_swap"]), stats["total_trades"],
            stats["total_longs"], stats["total_shorts"], won, lost,
            Dec(np.rint(stats["sum_win"] / np.maximum(won, 1)).astype(np.int64)),
            Dec(np.rint(stats["sum_loss"] / np.maximum(lost, 1)).astype(np.int64)),
            Dec(stats["best_trade"]), Ts(stats["best_date"], stats["best_date"] < 0),
            Dec(stats["worst_trade"]), Ts(stats["worst_date"], stats["worst_date"] < 0),
            stats["longs_won"], stats["shorts_won"],
        ]
        return to_rows(ANALYSIS_KEYS, cols, as_decimal)

    def history(self, kind: str, a: int, clock: int, start: date | None, end: date | None) -> list[dict[str, Any]]:
        """Daily or monthly items of account index ``a``, ascending id, from ``start`` to ``end``."""
        items = self._dailies(a, clock) if kind == "dailies" else self._monthlies(a, clock)
        # ISO dates compare correctly as strings.
        if start is not None:
            items = [i for i in items if i["date"] >= start.isoformat()]
        if end is not None:
            items = [i for i in items if i["date"] <= end.isoformat()]
        return items

    def _closed_rows_of(self, a: int, clock: int) -> tuple[np.ndarray, BookView | None]:
        view = self.view(clock)
        if view is None or self.book is None:
            return np.zeros(0, np.int64), view
        rows = self.book.rows_of(a)
        rows = rows[rows < view.n_visible]
        return rows[view.closed[rows]], view

    def _dailies(self, a: int, clock: int) -> list[dict[str, Any]]:
        first_day, last_day = int(self.created[a]) // DAY, clock // DAY
        n_days = max(last_day - first_day + 1, 0)
        rows, view = self._closed_rows_of(a, clock)
        balance, pnl, lots, deposits = self._per_bucket(rows, view, lambda close_t: close_t // DAY - first_day, n_days)
        running_pnl, running_dep = np.cumsum(pnl), np.cumsum(deposits)
        growth = np.where(running_dep > 0, np.rint(running_pnl * 10_000 / np.maximum(running_dep, 1)), 0)
        days = np.arange(first_day, first_day + n_days, dtype=np.int64) * DAY
        cols: list[Column] = [
            (a + 1) * DAILY_ID_FACTOR + np.arange(n_days), np.full(n_days, self.ids[a]),
            [t[:10] for t in Ts(days).strings()],  # type: ignore[index]
            Dec(np.cumsum(balance)), Dec(pnl), Dec(running_pnl), Dec(growth.astype(np.int64)), Dec(lots),
        ]
        return to_rows(DAILY_KEYS, cols, False)

    def _monthlies(self, a: int, clock: int) -> list[dict[str, Any]]:
        first = month_index(int(self.created[a]))
        n_months = max(month_index(clock) - first + 1, 0)
        rows, view = self._closed_rows_of(a, clock)
        balance, pnl, _, deposits = self._per_bucket(rows, view, lambda t: month_index(t) - first, n_months)
        opening = np.cumsum(balance) - balance  # balance at the start of each month
        base = opening + deposits
        growth = np.where(base > 0, np.rint(pnl * 10_000 / np.maximum(base, 1)), 0).astype(np.int64)
        months = (first + np.arange(n_months)).astype("datetime64[M]")
        cols: list[Column] = [
            (a + 1) * MONTHLY_ID_FACTOR + np.arange(n_months), np.full(n_months, self.ids[a]),
            [m + "-01" for m in np.datetime_as_string(months).tolist()], Dec(growth),
        ]
        return to_rows(MONTHLY_KEYS, cols, False)

    def _per_bucket(self, rows: np.ndarray, view: BookView | None, bucket_of: Callable[[np.ndarray], np.ndarray],
                    n: int) -> tuple[np.ndarray, ...]:
        """(balance change, trade P&L, lots, deposits) summed per day or month bucket."""
        b = self.book
        if view is None or b is None or not len(rows) or n == 0:
            return tuple(np.zeros(n, np.int64) for _ in range(4))
        bucket = np.clip(bucket_of(b.close_t[rows]), 0, n - 1)
        net, trade = view.net[rows], b.kind[rows] <= SELL

        def total(weights: np.ndarray) -> np.ndarray:
            return np.rint(np.bincount(bucket, weights=weights, minlength=n)).astype(np.int64)

        deposits = np.where(b.kind[rows] == DEPOSIT, view.profit[rows], 0)
        return total(net), total(np.where(trade, net, 0)), total(np.where(trade, b.lots[rows], 0)), total(deposits)

    @staticmethod
    def catalog(kind: str, application: str | None) -> list[dict[str, Any]]:
        stamp = iso(CATALOG_CREATED)
        if kind == "brokers":
            return [{"id": i, "created_at": stamp, "updated_at": stamp, "name": name, "application": app}
                    for i, name, app in BROKERS]
        servers = [{"id": i, "created_at": stamp, "updated_at": stamp, "name": name,
                    "application": BROKER_BY_ID[broker][2], "broker_id": broker} for i, broker, name, _ in SERVERS]
        return [s for s in servers if application is None or s["application"] == application]
