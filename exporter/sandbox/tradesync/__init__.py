"""A deterministic simulator of the Tradesync REST API (read-only subset), contract section 8.

The data is a pure function of the seed, the size knobs and a virtual clock (:mod:`.data`, built
from :mod:`.accounts`, :mod:`.book` and :mod:`.columns`); :mod:`.gates` holds maintenance, auth,
the rate limit and the fault answers; :mod:`.routes` what each route answers; :mod:`.simulator`
the HTTP server around them. What both simulators share lives in :mod:`exporter.sandbox.base`.
"""

from ..base import ALL_FAULTS
from .config import CODE_CASES, DRIFT_KINDS, TradesyncSimConfig
from .data import KYC_TIERS, NEW_TRADE_FIELD, SPECIAL_LEVELS, new_trade_field_value
from .routes import AccountPageSource, ListQuery
from .simulator import DEFAULT_PAGE_CACHE_BYTES, SIMULATOR_KEY, TradesyncSimulator, tradesync_simulator

__all__ = [
    "ALL_FAULTS",
    "CODE_CASES",
    "DEFAULT_PAGE_CACHE_BYTES",
    "DRIFT_KINDS",
    "KYC_TIERS",
    "NEW_TRADE_FIELD",
    "SIMULATOR_KEY",
    "SPECIAL_LEVELS",
    "AccountPageSource",
    "ListQuery",
    "TradesyncSimConfig",
    "TradesyncSimulator",
    "new_trade_field_value",
    "tradesync_simulator",
]
