"""The entities of the TraderEvolution data (users, accounts, positions, fills, cash operations)
and the JSON objects the API serves for them. Money is in cents, prices in 10**-dp units."""

from __future__ import annotations

import bisect
from typing import Any

from .market import Instrument
from .values import day_start, money

OPERATION_TYPES: dict[int, str] = {1: "Trading", 2: "Deposit", 3: "Withdrawal", 12: "Adjustment"}
ASSETS: tuple[tuple[int, str], ...] = ((4800, "USD"), (4801, "EUR"), (4802, "GBP"))
USER_GROUPS: dict[int, str] = {11: "Retail", 12: "Professional", 13: "VIP"}
TERMINALS: tuple[str, ...] = ("Web", "Desktop", "Mobile", "API")


class User:
    __slots__ = ("accounts", "created", "email", "first", "group", "id", "last", "login")

    def __init__(self, uid: int, login: str, first: str, last: str, group: int) -> None:
        self.id, self.login, self.first, self.last, self.group = uid, login, first, last, group
        self.email = f"{first}.{last}.{login}@example.com".lower()
        self.accounts: list[Account] = []
        self.created = 0


class Account:
    __slots__ = ("ccy", "created", "fill_times", "fills", "id", "mode", "name", "op_balances",
                 "op_times", "ops", "positions", "status", "user")

    def __init__(self, aid: int, user: User, ccy: str, status: int, mode: int, created: int):
        self.id, self.user, self.ccy = aid, user, ccy
        self.status, self.mode, self.created = status, mode, created
        # Names identify accounts in reports, so a second account in one currency gets "-2".
        same = sum(1 for a in user.accounts if a.ccy == ccy)
        self.name = f"{user.login}-{ccy}" + (f"-{same + 1}" if same else "")
        self.positions: list[Position] = []
        self.ops: list[Op] = []
        self.op_times: list[int] = []
        self.op_balances: list[int] = []
        self.fills: list[Fill] = []
        self.fill_times: list[int] = []

    @property
    def trading_mode(self) -> str:
        return "Live" if self.mode == 1 else "Demo"

    def balance_at(self, t_ms: int) -> int:
        """Cash balance in cents after every operation at or before ``t_ms``."""
        i = bisect.bisect_right(self.op_times, t_ms)
        return self.op_balances[i - 1] if i else 0


class Position:
    __slots__ = ("acct", "close_cross", "close_fee", "close_fill", "close_px", "close_t", "id",
                 "inst", "lots", "open_cross", "open_fee", "open_fill", "open_px", "open_t",
                 "pnl", "side", "terminal")

    def __init__(self, pid: int, acct: Account, inst: Instrument, side: int, lots: int,
                 terminal: str, open_t: int, open_px: int, open_cross: int, open_fee: int,
                 close_t: int | None, close_px: int, close_cross: int, close_fee: int,
                 pnl: int) -> None:
        """Prices in 10**-dp units, crosses in 10**-CROSS_DP, money in cents, lots in 0.01."""
        self.id, self.acct, self.inst, self.side, self.lots = pid, acct, inst, side, lots
        self.terminal, self.open_t, self.open_px = terminal, open_t, open_px
        self.open_cross, self.open_fee, self.close_t = open_cross, open_fee, close_t
        self.close_px, self.close_cross, self.close_fee = close_px, close_cross, close_fee
        self.pnl = pnl  # realised gross P&L, zero while open
        self.open_fill: Fill | None = None
        self.close_fill: Fill | None = None

    def is_open_at(self, t_ms: int) -> bool:
        return self.open_t <= t_ms and (self.close_t is None or self.close_t > t_ms)


class Fill:
    __slots__ = ("is_close", "order_id", "pos", "t", "trade_id")

    def __init__(self, t: int, pos: Position, is_close: bool) -> None:
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


class Op:
    __slots__ = ("acct", "amount", "balance", "comment", "fill", "id", "rank", "t", "type_id")

    def __init__(self, acct: Account, type_id: int, amount: int, t: int, comment: str,
                 rank: int, fill: Fill | None = None) -> None:
        self.acct, self.type_id, self.amount, self.t = acct, type_id, amount, t
        self.comment, self.rank, self.fill = comment, rank, fill
        self.id = self.balance = 0


# --------------------------------------------------------------------------- JSON entities


def user_json(u: User) -> dict[str, Any]:
    return {"id": u.id, "login": u.login, "firstName": u.first, "lastName": u.last,
            "email": u.email, "userGroup": u.group, "createdAt": u.created}


def account_json(a: Account) -> dict[str, Any]:
    return {"id": a.id, "accountName": a.name, "userId": a.user.id, "login": a.user.login,
            "currency": a.ccy, "type": 0, "status": a.status, "mode": a.mode,
            "createdAt": a.created}


def op_json(op: Op) -> dict[str, Any]:
    fill = op.fill
    return {
        "id": op.id, "accountId": op.acct.id, "operationTypeId": op.type_id,
        "amount": money(op.amount), "currency": op.acct.ccy, "balance": money(op.balance),
        "createdAt": op.t, "valueDate": day_start(op.t), "frontendComment": op.comment,
        "orderId": fill.order_id if fill else None,
        "positionId": fill.pos.id if fill else None,
        "tradeId": fill.trade_id if fill else None,
    }
