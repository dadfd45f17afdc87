"""The TraderEvolution market: instruments, their seeded hourly price paths, and the exact integer
arithmetic of volumes, cross rates and fees."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .values import CROSS_DP, HOUR_MS, rdiv, round_div_np

if TYPE_CHECKING:
    from .entities import Position

@dataclass(frozen=True)
class Instrument:
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


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("EUR/USD", "Forex", "Forex", 1.085, 5, 100_000, "USD", 0.0010, 100, 1001,
                "Euro vs US Dollar", "FOREX"),
    Instrument("GBP/USD", "Forex", "Forex", 1.27, 5, 100_000, "USD", 0.0011, 100, 1002,
                "British Pound vs US Dollar", "FOREX"),
    Instrument("USD/JPY", "Forex", "Forex", 148.5, 3, 100_000, "JPY", 0.0011, 100, 1003,
                "US Dollar vs Japanese Yen", "FOREX"),
    Instrument("XAU/USD", "Metals", "CFD", 2030.0, 2, 100, "USD", 0.0015, 50, 1004,
                "Gold vs US Dollar", "OTC"),
    Instrument("US500", "Indices", "CFD", 4850.0, 2, 1, "USD", 0.0015, 20, 1005,
                "US 500 Index CFD", "CME"),
    Instrument("AAPL", "Stocks", "Equity", 185.0, 2, 100, "USD", 0.0025, 5, 1006,
                "Apple Inc.", "NASDAQ"),
)
INST_INDEX = {inst.name: i for i, inst in enumerate(INSTRUMENTS)}
INSTRUMENT_PICK = (0, 0, 0, 1, 1, 2, 2, 3, 4, 5)  # forex-heavy mix
FX_INDEX = {"EUR": 0, "GBP": 1, "JPY": 2}  # instrument giving the currency's USD rate


class PricePath:
    """Seeded hourly geometric random walk, linearly interpolated, in price units."""

    __slots__ = ("grid", "points", "scale")

    def __init__(self, inst: Instrument, start_ms: int, hours: int, rng: random.Random) -> None:
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


def volume_units(pos: Position, price: int) -> int:
    """Trade volume ``lots * lot_size * price`` in units of 10**-(2 + dp)."""
    return pos.lots * pos.inst.lot_size * price


def to_cents(units: int, dp: int, cross: int) -> int:
    """Convert an amount in 10**-(2+dp) counter-currency units to account cents."""
    return rdiv(units * cross, 10 ** (dp + CROSS_DP))


def reduced_lot(inst: Instrument) -> tuple[int, int]:
    # Cancel the lot size against the 10**(dp + CROSS_DP) scale so int64 maths cannot overflow.
    den = 10 ** (inst.dp + CROSS_DP)
    g = math.gcd(inst.lot_size, den)
    return inst.lot_size // g, den // g


LOT_REDUCED = np.array([reduced_lot(i)[0] for i in INSTRUMENTS], dtype=np.int64)
DEN_REDUCED = np.array([reduced_lot(i)[1] for i in INSTRUMENTS], dtype=np.int64)


def fee_cents_np(purchase_cents: np.ndarray) -> np.ndarray:
    """Commissions of 0.3 bp of the traded values, at least one cent each, booked negative."""
    return -np.maximum(1, round_div_np(np.abs(purchase_cents) * 3, np.int64(100_000)))
