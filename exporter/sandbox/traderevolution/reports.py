"""The saved reports of the TraderEvolution simulator (contract 5.4): their columns and ids, and
their rows over the data, with time cells written in the configured format and time zone."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .config import TraderEvolutionSimConfig
from .data import World
from .entities import ASSETS, OPERATION_TYPES, USER_GROUPS, Account, Fill, Op, Position
from .market import to_cents, volume_units
from .values import CROSS_DP, DAY_MS, day_start, dec, money, rdiv

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
class ReportSpec:
    key: str
    name: str
    demo_id: int
    snapshot: bool
    columns: tuple[tuple[str, str], ...]


REPORT_SPECS: tuple[ReportSpec, ...] = (
    ReportSpec("statement", "Account Statement Report", 119, True, _STATEMENT_COLS),
    ReportSpec(
        "statement_ccy", "Account statement in defined currency", 153, True, _STATEMENT_CCY_COLS
    ),
    ReportSpec("trades", "Trades Report", 117, False, _TRADES_COLS),
    ReportSpec("open_positions", "Open Positions Report", 114, True, _OPEN_POSITIONS_COLS),
    ReportSpec(
        "positions_history", "Positions History Report", 127, False, _POSITIONS_HISTORY_COLS
    ),
    ReportSpec(
        "operations", "Account operation report (settled and unsettled)", 150, False,
        _OPERATIONS_COLS,
    ),
)
SPEC_BY_NAME: dict[str, ReportSpec] = {s.name: s for s in REPORT_SPECS}

REPORT_COLUMNS: dict[str, list[str]] = {s.name: [c for c, _ in s.columns] for s in REPORT_SPECS}
REPORT_DEMO_IDS: dict[str, int] = {s.name: s.demo_id for s in REPORT_SPECS}


@dataclass
class ReportQuery:
    """A report run's filters, and the clock it runs at."""

    start: int
    end: int
    accounts: list[Account] | None  # None means every account
    clock: int
    asset_name: str | None = None


class Reports:
    """Report rows over one world; ``fmt`` writes an epoch-ms instant as a report time cell."""

    def __init__(self, world: World, fmt: Callable[[int], str]) -> None:
        self.world = world
        self._fmt = fmt

    @staticmethod
    def query(start: int | None, end: int | None, accounts: list[Account] | None, asset_name: str | None,
              clock: int) -> ReportQuery:
        """The window of a windowed report; without dates, the clock's UTC day."""
        if start is None and end is None:
            day = day_start(clock)
            start, end = day, day + DAY_MS - 1
        elif start is None:
            start = day_start(end or 0)
        elif end is None:
            end = clock
        return ReportQuery(start, end, accounts, clock, asset_name)

    def items(self, spec: ReportSpec, q: ReportQuery) -> list[Any]:
        accounts = q.accounts if q.accounts is not None else self.world.accounts
        if spec.key in ("statement", "statement_ccy"):
            if spec.key == "statement_ccy" and q.asset_name not in {n for _, n in ASSETS}:
                return []  # unknown filter value -> no rows
            snap = self.world.snapshot(q.clock)
            return [(a, snap[a.id]) for a in accounts]
        if spec.key == "open_positions":
            snap = self.world.snapshot(q.clock)
            rows = [row for a in accounts for row in snap[a.id]["open"]]
            rows.sort(key=lambda r: r[0].id)
            return rows
        if spec.key in ("trades", "positions_history"):
            return self.world.visible_fills(q.accounts, q.start, q.end, q.clock)
        return self.world.visible_ops(q.accounts, q.start, q.end, q.clock)

    def row(self, spec: ReportSpec, item: Any, q: ReportQuery) -> list[Any]:
        builder = {
            "statement": self._statement_row,
            "statement_ccy": self._statement_ccy_row,
            "trades": self._trade_row,
            "open_positions": self._open_position_row,
            "positions_history": self._position_event_row,
            "operations": self._operation_row,
        }[spec.key]
        return builder(item, q)

    def _statement_row(self, item: tuple[Account, dict[str, Any]], q: ReportQuery) -> list[Any]:
        acct, s = item
        m = money
        balance, margin = s["balance"], s["margin"]
        equity = balance + s["pnl"]
        free = equity - margin
        maintain = rdiv(margin, 2)
        risk = rdiv(margin * 10_000, equity) if equity > 0 and margin else 0
        withdrawable = max(0, min(balance, free))
        return [
            acct.name, acct.user.login, USER_GROUPS[acct.user.group], m(balance), 0, m(s["pnl"]),
            m(equity), 0, m(free), m(margin), m(free), m(margin), m(maintain), dec(risk, 2),
            m(withdrawable), m(margin), m(s["today_pnl"]), 0, 0, acct.ccy,
            m(s["cash_balance"]), 0, 0, 0, 0, 0, 0, "", "N/A", m(margin), 0,
            m(max(0, equity - margin)), m(maintain), 0, acct.id, 0, 0, 0,
        ]

    def _statement_ccy_row(self, item: tuple[Account, dict[str, Any]], q: ReportQuery) -> list[Any]:
        acct, s = item
        rate = self.world.cross(acct.ccy, q.asset_name or "USD", q.clock)

        def conv(cents: int) -> Decimal | int:
            return money(rdiv(cents * rate, 10**CROSS_DP))

        equity = s["balance"] + s["pnl"]
        return [acct.name, acct.user.login, conv(s["balance"]), conv(equity), conv(s["margin"]),
                conv(s["pnl"]), conv(equity - s["margin"]), ""]

    def _trade_row(self, fill: Fill, q: ReportQuery) -> list[Any]:
        pos, inst, acct = fill.pos, fill.pos.inst, fill.pos.acct
        price, cross = dec(fill.price, inst.dp), dec(fill.cross, CROSS_DP)
        volume = volume_units(pos, fill.price)
        lots = dec(pos.lots, 2)
        return [
            acct.name, inst.name, fill.order_id, fill.trade_id, f"SIM-{fill.trade_id}",
            "SimRoute", "Buy" if fill.buy else "Sell", self._fmt(fill.t), price, lots, cross,
            money(pos.pnl if fill.is_close else 0), money(fill.fee), price,
            dec(volume, 2 + inst.dp), money(to_cents(volume, inst.dp, fill.cross)),
            inst.exchange, "Market", 0, 0, 0, 0, "", 0, "",
            lots if fill.buy else 0, 0 if fill.buy else lots, inst.symbol_type,
            acct.trading_mode, inst.tradable_id, "", "", inst.description, inst.leverage,
            inst.lot_size, inst.counter,
        ]

    def _open_position_row(self, item: tuple[Position, int, int, int], q: ReportQuery) -> list[Any]:
        pos, px, pnl, margin = item
        inst, acct = pos.inst, pos.acct
        return [
            pos.id, acct.name, acct.user.login, USER_GROUPS[acct.user.group], inst.name,
            inst.group, dec(pos.lots, 2), dec(pos.open_px, inst.dp),
            "Buy" if pos.side > 0 else "Sell", self._fmt(pos.open_t), dec(px, inst.dp),
            0, 0, 0, money(pnl), 0, money(pos.open_fee), acct.ccy, "SimRoute", money(margin),
            "No", pos.terminal, acct.trading_mode, "", inst.exchange,
        ]

    def _position_event_row(self, fill: Fill, q: ReportQuery) -> list[Any]:
        pos, inst, acct = fill.pos, fill.pos.inst, fill.pos.acct
        price = dec(fill.price, inst.dp)
        lots = dec(pos.lots, 2)
        total_fee = pos.open_fee + (pos.close_fee if fill.is_close else 0)
        return [
            self._fmt(fill.t), acct.user.login, acct.name, acct.user.login, inst.name, pos.id,
            fill.order_id, fill.trade_id, f"SIM-{fill.trade_id}", self._fmt(pos.open_t),
            dec(pos.open_px, inst.dp), "Buy" if fill.buy else "Sell", "Market",
            "Closed" if fill.is_close else "Opened", lots, 0 if fill.is_close else lots,
            price, price, dec(fill.cross, CROSS_DP), 0, 0, 0, "SimRoute", 0,
            money(fill.fee), money(total_fee), money(pos.pnl if fill.is_close else 0), 0,
            money(acct.balance_at(fill.t)), self._fmt(day_start(fill.t)), "", "No",
            pos.terminal, acct.trading_mode, "", "", inst.exchange,
        ]

    def _operation_row(self, op: Op, q: ReportQuery) -> list[Any]:
        fill = op.fill
        return [
            op.acct.name, op.acct.user.login, self._fmt(op.t), self._fmt(day_start(op.t)),
            op.id, fill.order_id if fill else 0, fill.pos.id if fill else 0,
            fill.trade_id if fill else 0, OPERATION_TYPES[op.type_id], money(op.amount),
            op.acct.ccy, op.comment, money(op.balance), "",
        ]

    @staticmethod
    def totals(spec: ReportSpec, rows: list[list[Any]]) -> list[Any]:
        totals: list[Any] = []
        for index, (_, kind) in enumerate(spec.columns):
            if kind not in NUMERIC_KINDS:
                totals.append(None)
                continue
            total = sum((row[index] for row in rows), Decimal(0) if kind != "i" else 0)
            totals.append(total if total else 0)
        return totals


def assign_report_ids(config: TraderEvolutionSimConfig) -> dict[str, int]:
    """Report name -> id as one installation serves them (``report_ids``: demo or shuffled)."""
    if config.report_ids == "demo":
        return dict(REPORT_DEMO_IDS)
    # Shuffled ids never reuse a demo id, so a client hard-coding them fails loudly.
    rng = random.Random(f"{config.seed}:report-ids")
    demo = set(REPORT_DEMO_IDS.values())
    ids = rng.sample([i for i in range(100, 1000) if i not in demo], len(REPORT_SPECS))
    return {spec.name: rid for spec, rid in zip(REPORT_SPECS, ids, strict=True)}
