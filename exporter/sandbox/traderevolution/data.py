"""The TraderEvolution data: users, accounts, positions, fills and cash operations (:mod:`.entities`)
on one deterministic timeline, generated once from the config; and what of it is visible at a
clock (epoch milliseconds). Nothing here knows about HTTP."""

from __future__ import annotations

import bisect
import gc
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from .config import TraderEvolutionSimConfig
from .entities import TERMINALS, USER_GROUPS, Account, Fill, Op, Position, User
from .market import (
    DEN_REDUCED,
    FX_INDEX,
    INST_INDEX,
    INSTRUMENT_PICK,
    INSTRUMENTS,
    LOT_REDUCED,
    PricePath,
    fee_cents_np,
    to_cents,
    volume_units,
)
from .values import CROSS_DP, DAY_MS, EPOCH, HOUR_MS, MINUTE_MS, day_start, rdiv, round_div_np

_FIRST_NAMES = ("Anna", "Boris", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Irina",
                "James", "Kenji", "Laura", "Marco", "Nadia", "Oscar", "Priya", "Quentin",
                "Rosa", "Stefan", "Tara")
_LAST_NAMES = ("Novak", "Schmidt", "Rossi", "Dubois", "Ivanova", "Kowalski", "Tanaka", "Silva",
               "Jensen", "Murphy", "Haddad", "Larsen", "Costa", "Weber", "Okafor", "Moreau")

_LN_MIN_HOLD = math.log(5 * MINUTE_MS)
_LN_MAX_HOLD = math.log(14 * DAY_MS)


@dataclass
class Draws:
    """Raw per-position random draws, gathered for every account before pricing."""

    acct: list[Account] = field(default_factory=list)
    inst: list[int] = field(default_factory=list)
    side: list[int] = field(default_factory=list)
    lots: list[int] = field(default_factory=list)
    open_t: list[int] = field(default_factory=list)
    close_t: list[int] = field(default_factory=list)  # -1: still open at the horizon
    terminal: list[int] = field(default_factory=list)


class World:
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
        self.paths = [PricePath(inst, self.h0, hours, px_rng) for inst in INSTRUMENTS]
        self.users: list[User] = []
        self.accounts: list[Account] = []
        self._make_users()
        ops: list[Op] = []
        draws = Draws()
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
        self._snapshot: tuple[int, dict[int, dict[str, Any]]] | None = None

    # -- market -----------------------------------------------------------

    def _usd_per_many(self, ccy: str, t_ms: np.ndarray) -> np.ndarray:
        """USD value of one unit of ``ccy`` at each time (from the served prices)."""
        if ccy == "USD":
            return np.ones(len(t_ms))
        index = FX_INDEX[ccy]
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
            user = User(uid, f"trader{n:04d}", rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES),
                         rng.choice(tuple(USER_GROUPS)))
            for _ in range(rng.randint(*cfg.accounts_per_user)):
                aid += rng.randint(1, 5)
                roll = rng.random()
                ccy = "USD" if roll < 0.7 else "EUR" if roll < 0.9 else "GBP"
                status = 0 if rng.random() < 0.95 else 1
                mode = 1 if rng.random() < 0.8 else 0
                created = self.h0 + HOUR_MS + rng.randrange(span)
                acct = Account(aid, user, ccy, status, mode, created)
                user.accounts.append(acct)
                self.accounts.append(acct)
            first = min((a.created for a in user.accounts), default=self.h0 + HOUR_MS)
            user.created = first - rng.randrange(MINUTE_MS, HOUR_MS)
            self.users.append(user)

    def _make_cash(self, acct: Account, rng: random.Random) -> list[Op]:
        opening_t = acct.created + rng.randrange(MINUTE_MS, 10 * MINUTE_MS)
        opening = round(math.exp(rng.uniform(math.log(1_000), math.log(100_000)))) * 100
        ops = [Op(acct, 2, opening, opening_t, "Initial deposit", 0)]
        lo = opening_t + DAY_MS
        for _ in range(rng.randint(0, 3)):
            if lo >= self.h1:
                break
            t = rng.randrange(lo, self.h1)
            if rng.random() < 0.6:
                amount = round(math.exp(rng.uniform(math.log(500), math.log(20_000)))) * 100
                ops.append(Op(acct, 2, amount, t, "Deposit by bank transfer", 0))
            else:
                amount = -round(opening * rng.uniform(0.05, 0.3) / 100) * 100
                ops.append(Op(acct, 3, amount, t, "Withdrawal to bank account", 0))
        if rng.random() < 0.05 and lo < self.h1:  # rare manual correction
            amount = rng.choice((-1, 1)) * rng.randint(1, 5_000)
            ops.append(Op(acct, 12, amount, rng.randrange(lo, self.h1), "Manual adjustment", 0))
        return ops

    def _draw_positions(self, acct: Account, rng: random.Random, opening: Op,
                        d: Draws) -> None:
        lo, hi = opening.t + HOUR_MS, self.h1  # trading starts after the opening deposit
        if hi <= lo:
            return
        r = rng.random  # plain random() draws keep this hot loop fast
        hold_span = _LN_MAX_HOLD - _LN_MIN_HOLD
        # Small accounts trade small: 0.5 lot per 1 000 deposited, within 0.01 .. 5 lots.
        ln_max_lots = math.log(min(500, max(2, opening.amount // 2_000)))
        for _ in range(round(self.cfg.positions_per_account * (0.5 + r()))):
            d.acct.append(acct)
            d.inst.append(INSTRUMENT_PICK[int(r() * len(INSTRUMENT_PICK))])
            d.side.append(1 if r() < 0.55 else -1)
            d.lots.append(round(math.exp(r() * ln_max_lots)))
            open_t = lo + int(r() * (hi - lo))
            d.open_t.append(open_t)
            close_t = -1
            if r() >= 0.02:  # 2 % are never closed within the horizon
                close_t = open_t + round(math.exp(_LN_MIN_HOLD + r() * hold_span))
            d.close_t.append(close_t if close_t < hi else -1)
            d.terminal.append(int(r() * len(TERMINALS)))

    def _pin_events(self, ops: list[Op], d: Draws) -> None:
        """``events_at``: the first account deposits 1 000 and opens a 1-lot EUR/USD buy (left
        open) at each instant. Appended after every random draw, so the rest stays the same."""
        if not self.accounts:
            return
        acct = self.accounts[0]
        for moment in self.cfg.events_at:
            t = (moment - EPOCH) // timedelta(milliseconds=1)
            ops.append(Op(acct, 2, 100_000, t, "Deposit at a chosen instant", 0))
            d.acct.append(acct)
            d.inst.append(0)
            d.side.append(1)
            d.lots.append(100)
            d.open_t.append(t)
            d.close_t.append(-1)
            d.terminal.append(0)

    def _fill_prices(self, d: Draws, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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

    def _make_positions(self, d: Draws) -> list[Position]:
        opens = np.array(d.open_t, dtype=np.int64)
        closes = np.array(d.close_t, dtype=np.int64)
        open_px, open_cross = self._fill_prices(d, opens.astype(np.float64))
        close_px, close_cross = self._fill_prices(d, np.maximum(closes, 0).astype(np.float64))
        inst = np.array(d.inst, dtype=np.int64)
        sized = np.array(d.lots, dtype=np.int64) * LOT_REDUCED[inst]
        den = DEN_REDUCED[inst]
        open_fee = fee_cents_np(round_div_np(sized * open_px * open_cross, den))
        close_fee = fee_cents_np(round_div_np(sized * close_px * close_cross, den))
        move = (close_px - open_px) * np.array(d.side, dtype=np.int64) * sized
        pnl = round_div_np(move * close_cross, den)
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
            pos = Position(21_000_001 + n, acct, INSTRUMENTS[d.inst[i]], side[n], lots[n],
                            TERMINALS[d.terminal[i]], open_t[n], open_px_l[n], open_cross_l[n],
                            open_fee_l[n], close_t[n], close_px_l[n], close_cross_l[n],
                            close_fee_l[n], pnl_l[n])
            acct.positions.append(pos)
            positions.append(pos)
        return positions

    def _make_fills(self) -> list[Fill]:
        fills = []
        for pos in self.positions:
            pos.open_fill = Fill(pos.open_t, pos, False)
            fills.append(pos.open_fill)
            if pos.close_t is not None:
                pos.close_fill = Fill(pos.close_t, pos, True)
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

    def _trading_ops(self) -> list[Op]:
        out = []
        for pos in self.positions:
            fill = pos.close_fill
            if fill is not None:
                net = pos.pnl + pos.open_fee + pos.close_fee
                out.append(Op(pos.acct, 1, net, fill.t, f"Position {pos.id} closed", 1, fill))
        return out

    def _number_ops(self, ops: list[Op]) -> list[Op]:
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

    # -- what is visible at a clock ---------------------------------------

    def filter_accounts(self, account_id: int | None, login: str | None) -> list[Account] | None:
        """The accounts a filter names; None when there is no filter (every account)."""
        if account_id is None and login is None:
            return None
        accounts = self.accounts
        if login is not None:
            user = self.user_by_login.get(login)
            accounts = user.accounts if user else []
        if account_id is not None:
            accounts = [a for a in accounts if a.id == account_id]
        return accounts

    def visible_ops(self, accounts: list[Account] | None, start: int | None, end: int | None,
                    clock: int) -> list[Op]:
        lo = start if start is not None else -(2**62)
        hi = min(end, clock) if end is not None else clock
        return select_window(self.ops, self.op_times, accounts,
                             lambda a: (a.ops, a.op_times), lo, hi, lambda o: o.id)

    def visible_fills(self, accounts: list[Account] | None, lo: int, hi: int, clock: int) -> list[Fill]:
        hi = min(hi, clock)
        return select_window(self.fills, self.fill_times, accounts,
                             lambda a: (a.fills, a.fill_times), lo, hi, lambda f: f.trade_id)

    def snapshot(self, clock: int) -> dict[int, dict[str, Any]]:
        """Live engine values per account at ``clock`` (reports 119 / 153 / 114), cached for the
        last clock asked. Callers serialise access (the simulator's lock)."""
        cached = self._snapshot
        if cached is not None and cached[0] == clock:
            return cached[1]
        prices = [p.units(clock) for p in self.paths]
        crosses: dict[tuple[str, str], int] = {}
        day = day_start(clock)
        snap: dict[int, dict[str, Any]] = {}
        for acct in self.accounts:
            open_rows = []
            for pos in acct.positions:
                if pos.open_t > clock:
                    break  # positions are sorted by open time
                if not pos.is_open_at(clock):
                    continue
                inst = pos.inst
                key = (inst.counter, acct.ccy)
                if key not in crosses:
                    crosses[key] = self.cross(inst.counter, acct.ccy, clock)
                cross = crosses[key]
                px = prices[INST_INDEX[inst.name]]
                move = (px - pos.open_px) * pos.side * pos.lots * inst.lot_size
                pnl = to_cents(move, inst.dp, cross)
                margin = rdiv(volume_units(pos, pos.open_px) * cross,
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


def select_window(items: list[Any], times: list[int], accounts: list[Account] | None,
            per_account: Callable[[Account], tuple[list[Any], list[int]]],
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
