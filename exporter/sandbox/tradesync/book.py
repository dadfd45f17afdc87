"""The trade book of the Tradesync data: every deposit, withdrawal, buy and sell, generated up
front as numpy columns sorted by ``created_at`` and numbered from 37 000 000 with gaps; a view per
clock value gives what is visible, open or closed, and the account money aggregated from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from .accounts import HUGE_BALANCE_CENTS, USD_TO, Money, Statics
from .columns import DAY, epoch
from .config import TradesyncSimConfig

TRADE_ID_START = 37_000_000
TICKET_START = 70_000_000
NEVER = np.iinfo(np.int64).max // 4  # close_time of trades still open at the end of the timeline

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
SYM_NAME = [s[0] for s in SYMBOLS] + [""]  # index -1 (balance operations) maps to ""
SYM_MODE = [s[5] for s in SYMBOLS] + [""]
SYM_DIGITS = np.array([s[1] for s in SYMBOLS] + [0], dtype=np.int64)
_SYM_CONTRACT = np.array([s[2] for s in SYMBOLS] + [0], dtype=np.float64)
_SYM_QUOTE_USD = np.array([s[4] for s in SYMBOLS] + [0.0])
_SYM_COMMISSION = np.array([s[6] for s in SYMBOLS] + [False])
KIND_NAMES = ("buy", "sell", "deposit", "withdrawal")
BUY, SELL, DEPOSIT, WITHDRAWAL = range(4)
COMMENTS = ("", "", "", "", "scalper v2", "grid#3", "manual", "Initial deposit", "Deposit", "Withdrawal")
_C_INITIAL, _C_DEPOSIT, _C_WITHDRAWAL = 7, 8, 9



@dataclass
class BookView:
    """The trade book seen at one clock value (rows ``[0, n_visible)`` are visible)."""

    clock: int
    n_visible: int
    closed: np.ndarray
    profit: np.ndarray
    swap: np.ndarray
    net: np.ndarray
    close_pts: np.ndarray
    money: Money
    _analysis: dict[str, np.ndarray] | None = None


class TradeBook:
    """All trade and balance-operation rows, in id order, as numpy columns."""

    def __init__(self, cfg: TradesyncSimConfig, created: np.ndarray, n_base: int,
                 statics: Statics, t0: int, end: int) -> None:
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

    def _assign(self, cols: dict[str, np.ndarray], seed: int, statics: Statics) -> None:
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
        self.digits = SYM_DIGITS[self.sym]
        self.open_pts = np.where(self.sym >= 0, self.price_at(self.sym, self.open_t), 0)
        self.sl = _stop_level(self.open_pts, cols["sl_frac"], self.kind, -1)
        self.tp = _stop_level(self.open_pts, cols["tp_frac"], self.kind, +1)
        fx = _SYM_QUOTE_USD[self.sym] * USD_TO[statics.currency[self.account]]
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

    def view(self, clock: int) -> BookView:
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
        return BookView(clock, n, closed, profit, swap, net, close_pts, money)

    def _sum(self, rows: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
        acc = self.account[:n][rows]
        w = None if weights is None else weights[rows]
        # Float sums are exact here: every partial sum of cents stays far below 2**53.
        return np.rint(np.bincount(acc, weights=w, minlength=self.n_accounts)).astype(np.int64)

    def _money(self, clock: int, n: int, closed: np.ndarray, is_open: np.ndarray, net: np.ndarray) -> Money:
        trade_closed = closed & (self.kind[:n] <= SELL)
        close_t = self.close_t[:n]
        day = clock - clock % DAY
        week = day - ((clock // DAY + 3) % 7) * DAY  # 1970-01-01 was a Thursday; weeks start on Monday
        moment = datetime.fromtimestamp(clock, UTC)
        month = epoch(datetime(moment.year, moment.month, 1, tzinfo=UTC))
        return Money(
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

    def analysis(self, view: BookView) -> dict[str, np.ndarray]:
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
