"""The Tradesync simulator's knobs (contract section 8, plus test-only extras)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..base import ALL_FAULTS, check_fault_kinds

DRIFT_KINDS = ("new_field", "null_field", "int_gets_decimals", "decimal_na", "typed_fields")
# typed_fields: every account gains fields of each JSON type (see data.typed_fields); the strings test
# unescaping, the number texts exact decimals (26 integer digits, exponents, -0.0, trailing zeros)
CODE_CASES = ("upper", "lower", "mixed")


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
        check_fault_kinds(self.fault_kinds, ALL_FAULTS)
        if self.sim_start.tzinfo is None:
            raise ValueError("sim_start must be timezone-aware")
        if min(self.accounts, self.trades_per_account, self.history_days, self.future_days) < 0:
            raise ValueError("size knobs must be >= 0")
        if self.max_limit < 1:
            raise ValueError("max_limit must be >= 1")
