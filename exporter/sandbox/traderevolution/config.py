"""The TraderEvolution simulator's knobs (contract section 8, plus simulator-only ones)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from ..base import check_fault_kinds
from .values import EPOCH, compile_time_format

BASE_PATH = "/proftrading/rest"  # every API route is under it; /_sim/* control routes are not
# The fault kinds of this API: a 429 here is the limiter's own error, never with a planned Retry-After.
ALL_FAULTS: tuple[str, ...] = ("500", "503", "429", "drop", "html502")
# report_new_column_cells: how the drift column's cells are written (see reports.new_column_value)
NEW_COLUMN_CELLS = ("number", "text", "label")


@dataclass
class TraderEvolutionSimConfig:
    """Every knob of the contract, plus a few simulator-only ones."""

    seed: int = 42
    users: int = 20
    accounts_per_user: tuple[int, int] = (1, 3)
    positions_per_account: int = 150
    history_days: int = 90
    future_days: int = 30
    sim_start: datetime = datetime(2025, 1, 31, 12, tzinfo=UTC)
    login: str = "sim-user"
    password: str = "sim-pass"
    no_api_login: str = "sim-noapi"
    access_ttl_s: float = 300
    refresh_ttl_s: float = 3600
    empty_list_status: int = 200
    report_row_shape: str = "array"
    # schema drift: every report run gains a column the contract does not list (``riskscore``)
    report_new_column: bool = False
    report_new_column_cells: str = "number"  # how its cells are written: see new_column_value
    latency_ms: float = 0
    latency_jitter_ms: float = 0
    report_latency_ms_per_1000_rows: float = 0
    # simulator-only, a heavy report: latency grows with the rows of the whole window (before
    # paging, as a database query does), and a window of more rows than this answers 504 (0: off)
    report_window_latency_ms_per_1000_rows: float = 0
    report_max_window_rows: int = 0
    # simulator-only: reports this user's permissions hide (not listed, and 404 when run)
    hidden_reports: tuple[str, ...] = ()
    error_rate: float = 0.0
    fail_every_n: int = 0
    rate_limit_rps: float = 3
    blocking_threshold: int = 5
    blocking_duration_s: float = 10
    retry_after_header: bool = False
    default_limit: int = 1000
    max_limit: int = 1000
    report_ids: str = "demo"
    report_datetime_format: str = "dd.MM.yyyy HH:mm:ss"
    report_timezone: str = "UTC"  # IANA zone the report cells are written in
    # simulator-only: instants at which the first account deposits and opens a position
    events_at: tuple[datetime, ...] = ()
    rate_limit_burst: int | None = None
    fault_kinds: tuple[str, ...] = ("500",)
    clock_real_time: bool = False  # accepted for compatibility; see module docstring
    accept_raw_token: bool = False  # accept "Authorization: <token>" without "Bearer "

    def __post_init__(self) -> None:
        self.accounts_per_user = tuple(self.accounts_per_user)  # type: ignore[assignment]
        self.fault_kinds = tuple(self.fault_kinds)
        self.events_at = tuple(self.events_at)
        self.hidden_reports = tuple(self.hidden_reports)
        low, high = self.accounts_per_user
        checks = [
            (0 <= low <= high, "accounts_per_user must be (min, max) with 0 <= min <= max"),
            (self.users >= 0 and self.positions_per_account >= 0, "sizes must be >= 0"),
            (self.history_days >= 0 and self.future_days >= 0, "days must be >= 0"),
            (self.sim_start.tzinfo is not None, "sim_start must be timezone-aware"),
            (self.empty_list_status in (200, 204), "empty_list_status must be 200 or 204"),
            (self.report_row_shape in ("array", "object"), "report_row_shape: array|object"),
            (self.report_new_column_cells in NEW_COLUMN_CELLS, f"report_new_column_cells: {NEW_COLUMN_CELLS}"),
            (self.report_ids in ("demo", "shuffled"), "report_ids must be demo or shuffled"),
            (self.default_limit >= 1 and self.max_limit >= 1, "limits must be >= 1"),
            (0.0 <= self.error_rate <= 1.0, "error_rate must be within [0, 1]"),
            (all(isinstance(e, datetime) and e.tzinfo is not None for e in self.events_at),
             "events_at must be timezone-aware datetimes"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_fault_kinds(self.fault_kinds, ALL_FAULTS)
        compile_time_format(self.report_datetime_format, self.zone)  # raises on unsupported tokens
        first = self.sim_start - timedelta(days=self.history_days)
        last = self.sim_start + timedelta(days=self.future_days)
        if not all(first <= e <= last for e in self.events_at):
            raise ValueError("events_at must lie within the timeline (history_days .. future_days)")

    @property
    def zone(self) -> tzinfo:
        if self.report_timezone == "UTC":
            return UTC
        try:
            return ZoneInfo(self.report_timezone)
        except (KeyError, ValueError, OSError):
            raise ValueError(f"report_timezone: unknown time zone {self.report_timezone!r}") from None

    @property
    def start_ms(self) -> int:
        """``sim_start`` in epoch milliseconds (integer maths, no float rounding)."""
        return (self.sim_start - EPOCH) // timedelta(milliseconds=1)
